#!/usr/bin/env python3
"""Write the GGUF model fixtures in tests/fixtures/gguf/models/.

Run once, by hand, by a developer (CI never runs it); the files it writes are
committed. Made with torch 2.15, transformers 5.25 and gguf 0.19 (llama.cpp's
Python package), single-threaded, from fixed seeds.

What it makes
-------------
From the tiny safetensors fixtures of tests/fixtures/models/ (made by
make_model_fixtures.py), for each family, GGUF files laid out as llama.cpp's
convert_hf_to_gguf.py lays them out: its metadata keys ({arch}.context_length,
.embedding_length, .block_count, .feed_forward_length, .attention.head_count,
.attention.head_count_kv, .attention.key_length, .rope.freq_base, the norm
epsilon, .attention.sliding_window, .rope.scaling.*, Gemma's soft caps), its
tensor names (token_embd, blk.N.attn_q, ..., output_norm, output), and what it
does to the weights:

    llama   the query and key rows permuted per head (LlamaModel.permute)
    gemma2, gemma3
            every norm weight stored as w + 1 (no lm_head: tied)
    phi3    attn_qkv and ffn_up (gate and up) fused as in the checkpoint;
            LongRoPE factors as the rope_factors_short / rope_factors_long
            tensors, rope.scaling.original_context_length and attn_factor
    gpt2    the Conv1D weights transposed to [out, in]; output.weight a copy
            of token_embd

    <family>.q8_0.gguf  2-D tensors Q8_0 (gguf.quants.quantize), 1-D ones f32
                        (convert --outtype q8_0), for every family: llama,
                        qwen2, qwen3, phi3, gemma2, gemma3, gpt2
    llama.f16.gguf      2-D tensors f16, 1-D f32 (convert --outtype f16)
    llama.q4_0.gguf     2-D tensors Q4_0, 1-D f32
    llama3.q8_0.gguf    tiny-llama3 (Llama 3.x rotary scaling), Q8_0: the
                        converter bakes the scaling into a rope_freqs tensor,
                        a divisor per frequency

An f16 file of every family would pass 3 MB in all; the Q8_0 files test each
family's names, metadata and transformations as well (the f16 path is the
family's own safetensors one). Mistral files are the llama architecture, which
llama.cpp runs without a window, so tiny-mistral (whose window matters) has
none.

llama.q8_0-split-0000{1,2,3}-of-00003.gguf: llama.q8_0 split by the package's
writer into three parts of at most 8 tensors (split.no, split.count,
split.tensors.count), as llama.cpp's gguf-split writes them.

llama-k.gguf: tiny-llama-k, a llama of its own (hidden 256, intermediate 1280 =
5 Q6_K blocks of down's inputs, so tp 1-4 run and split them unevenly, 8 heads
of 32, 2 key/value heads, 2 layers; its vocabulary and tokenizer those of
tests/fixtures/gguf/tokenizer/bpe.gguf, whose tokenizer.* keys it copies, so
generate takes text in and gives text out with nothing beside it) whose K-quant
weights are blocks of chosen random bytes (d and dmin modest f16 values,
random 6-bit scales and minimums and random quants; values about N(0, 0.05)):
layer 0 q, k, v Q5_K and gate, up Q4_K; layer 1 q, k Q4_K and v Q6_K (mixed,
as llama.cpp's Q4_K_M mixes them) and gate, up Q4_1; every ffn_down and the
output Q6_K; attn_output Q5_0 (its inputs, 256 values, would be a single K
block: tp 1 only); token_embd Q8_0. Q4_1, Q5_0 and Q8_0 are
gguf.quants.quantize of random normal values.

Each file has a reference <file stem>.json: prompt_ids (tiny-llama's 7-token
prompt; tiny-phi3's own 36 tokens for phi3, past its original 32 positions, so
the long factors run), logits ([positions][vocab] float32 values, each its
shortest decimal, of transformers run in float32 on the DEQUANTIZED weights,
gguf.quants.dequantize, the converter's changes undone), greedy_ids (16 greedy
tokens, or fewer: cut before the first step whose top-1/top-2 gap is under
0.01, as quantization may bring two logits that near; checked against
generate() with the cache) and greedy_min_margin.

What llama.cpp fixes rather than reads is fixed in the reference model too,
so the reference is what the file means: Gemma's attention scale is
key_length ** -0.5 (query_pre_attn_scalar = head_dim), Gemma 3's layers slide
but every sixth (both layers of the tiny model slide); Gemma 3's sliding
layers turn at base 10000 unscaled (as the tiny model's already do).
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as Q
import gguf
from gguf import GGUFWriter, RopeScalingType
from gguf.quants import dequantize, quantize
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_fixtures import (  # noqa: E402
    ATTN_IMPLEMENTATION,
    PROMPT_IDS,
    MAX_NEW_TOKENS,
    prompt_logits,
    write_reference,
)

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SOURCES = ROOT / "models"
OUT = ROOT / "gguf" / "models"

GGUF_ARCH = {
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "phi3": "phi3",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gpt2": "gpt2",
}


def permute(w, n_head):
    """LlamaModel.permute: each head's rows [first half | second half] interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


LLAMA_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.qkv_proj": "attn_qkv",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# Gemma's norms (tensor_mapping.py): post_attention_layernorm is its own tensor.
GEMMA_NAMES = {
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}
GPT2_NAMES = {
    "transformer.wte": "token_embd",
    "transformer.wpe": "position_embd",
    "transformer.ln_f": "output_norm",
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}


def gguf_name(hf, model_type):
    """llama.cpp's name of the Hugging Face tensor `hf`."""
    stem, leaf = hf.rsplit(".", 1)
    names = dict(LLAMA_NAMES)
    if model_type.startswith("gemma"):
        names.update(GEMMA_NAMES)
    else:
        names["post_attention_layernorm"] = "ffn_norm"
    if model_type == "gpt2":
        names = GPT2_NAMES
    for prefix in ("model.layers.", "transformer.h."):
        if stem.startswith(prefix):
            block, module = stem[len(prefix) :].split(".", 1)
            return f"blk.{block}.{names[module]}.{leaf}"
    return f"{names[stem]}.{leaf}"


def converted(folder):
    """The tensors of fixture `folder` as the converter would store them (f32 numpy,
    [out, in]), its config, and the metadata (key -> (writer method, value))."""
    config = json.loads((folder / "config.json").read_text())
    mt = config["model_type"]
    arch = GGUF_ARCH[mt]
    state = load_file(folder / "model.safetensors")
    tensors = {}
    for hf, t in state.items():
        if hf.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if mt.startswith("gemma") and hf == "lm_head.weight":
            continue
        w = t.to(torch.float32)
        if mt == "llama" and hf.endswith("q_proj.weight"):
            w = permute(w, config["num_attention_heads"])
        if mt == "llama" and hf.endswith("k_proj.weight"):
            w = permute(w, config["num_key_value_heads"])
        if mt.startswith("gemma") and hf.endswith("norm.weight"):
            w = w + 1
        if mt == "gpt2" and hf.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            w = w.transpose(0, 1).contiguous()
        tensors[gguf_name(hf, mt)] = w.numpy()
    if mt == "gpt2":
        tensors["output.weight"] = tensors["token_embd.weight"].copy()
    if mt == "gpt2":
        heads, hidden = config["n_head"], config["n_embd"]
        meta = [
            ("add_context_length", config["n_positions"]),
            ("add_embedding_length", hidden),
            ("add_feed_forward_length", config.get("n_inner") or 4 * hidden),
            ("add_block_count", config["n_layer"]),
            ("add_head_count", heads),
            ("add_layer_norm_eps", config["layer_norm_epsilon"]),
        ]
        return arch, tensors, config, meta
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config["rope_parameters"]
    rope = rope.get("full_attention", rope)
    meta = [
        ("add_context_length", config["max_position_embeddings"]),
        ("add_embedding_length", config["hidden_size"]),
        ("add_block_count", config["num_hidden_layers"]),
        ("add_feed_forward_length", config["intermediate_size"]),
        ("add_head_count", heads),
        ("add_head_count_kv", config["num_key_value_heads"]),
        ("add_key_length", head_dim),
        ("add_value_length", head_dim),
        ("add_rope_dimension_count", head_dim),
        ("add_rope_freq_base", rope["rope_theta"]),
        ("add_layer_norm_rms_eps", config["rms_norm_eps"]),
    ]
    kind = rope.get("rope_type", "default")
    if kind == "linear":
        meta += [("add_rope_scaling_type", RopeScalingType.LINEAR), ("add_rope_scaling_factor", rope["factor"])]
    elif kind == "longrope":
        original = config["original_max_position_embeddings"]
        scale = config["max_position_embeddings"] / original
        meta += [
            ("add_rope_scaling_orig_ctx_len", original),
            ("add_rope_scaling_attn_factors", float(np.sqrt(1 + np.log(scale) / np.log(original)))),
        ]
        tensors["rope_factors_long.weight"] = np.asarray(rope["long_factor"], np.float32)
        tensors["rope_factors_short.weight"] = np.asarray(rope["short_factor"], np.float32)
    elif kind == "llama3":
        # LlamaModel.generate_extra_tensors: a divisor per frequency.
        base, dim = rope["rope_theta"], head_dim
        freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        factors = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < high_wavelen:
                factors.append(1)
            elif wavelen > low_wavelen:
                factors.append(factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                factors.append(1 / ((1 - smooth) / factor + smooth))
        tensors["rope_freqs.weight"] = torch.tensor(factors, dtype=torch.float32).numpy()
    elif kind != "default":
        raise ValueError(kind)
    if mt in ("gemma2", "gemma3_text", "phi3") and config.get("sliding_window"):
        meta.append(("add_sliding_window", config["sliding_window"]))
    if mt == "gemma2":
        meta += [
            ("add_attn_logit_softcapping", config["attn_logit_softcapping"]),
            ("add_final_logit_softcapping", config["final_logit_softcapping"]),
        ]
    if mt == "gemma3_text" and config.get("final_logit_softcapping"):
        meta.append(("add_final_logit_softcapping", config["final_logit_softcapping"]))
    return arch, tensors, config, meta


def store(w, qtype):
    """`w` (f32) as the file holds it: (array for the writer, its ggml type)."""
    if w.ndim == 1 or qtype == Q.F32:
        return w.astype(np.float32), Q.F32
    if qtype == Q.F16:
        return w.astype(np.float16), Q.F16
    return quantize(w, qtype), qtype


def stored_f32(array, qtype):
    if qtype in (Q.F32, Q.F16):
        return array.astype(np.float32)
    return dequantize(array, qtype)


def tokenizer_fields():
    """The tokenizer.* keys of tests/fixtures/gguf/tokenizer/bpe.gguf: {key: (value,
    type, array element type)}."""
    r = gguf.GGUFReader(str(OUT.parent / "tokenizer" / "bpe.gguf"))
    out = {}
    for key, field in r.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[1] if len(field.types) > 1 else None
            out[key] = (field.contents(), field.types[0], sub)
    return out


def write_gguf(path, arch, meta, stored, split_max_tensors=0):
    writer = GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    writer.add_name(path.stem)
    for method, value in meta:
        if method == "add_key_value":
            key, v, t, sub = value
            writer.add_key_value(key, v, t, sub_type=sub)
        else:
            getattr(writer, method)(value)
    for name, (array, qtype) in stored.items():
        writer.add_tensor(name, array, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference_state(tensors, stored, config):
    """The Hugging Face state dict equal to what the file holds: each tensor as stored,
    decoded to f32, the converter's changes undone (a tensor stored as f32 is the
    original, so Gemma's 1 + w is the converter's own f32 sum)."""
    mt = config["model_type"]
    inverse = {}
    names = {}
    for hf in list(load_file(SOURCES / config["_fixture"] / "model.safetensors")):
        if hf.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if mt.startswith("gemma") and hf == "lm_head.weight":
            continue
        names[hf] = gguf_name(hf, mt)
    original = load_file(SOURCES / config["_fixture"] / "model.safetensors")
    for hf, g in names.items():
        array, qtype = stored[g]
        if qtype == Q.F32:
            inverse[hf] = original[hf].to(torch.float32)
            continue
        w = torch.from_numpy(np.ascontiguousarray(stored_f32(array, qtype)))
        if mt == "llama" and hf.endswith("q_proj.weight"):
            w = unpermute(w, config["num_attention_heads"])
        if mt == "llama" and hf.endswith("k_proj.weight"):
            w = unpermute(w, config["num_key_value_heads"])
        if mt == "gpt2" and hf.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            w = w.transpose(0, 1).contiguous()
        inverse[hf] = w
    return inverse


def reference_config(config):
    """The fixture's config with what llama.cpp fixes for the architecture."""
    c = {k: v for k, v in config.items() if not k.startswith("_")}
    mt = c["model_type"]
    if mt.startswith("gemma"):
        c["query_pre_attn_scalar"] = c["head_dim"]
    if mt == "gemma3_text":
        c["layer_types"] = [
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(c["num_hidden_layers"])
        ]
    return c


def hf_model(config, state):
    cfg = transformers.AutoConfig.for_model(**config)
    model = transformers.AutoModelForCausalLM.from_config(
        cfg, dtype=torch.float32, attn_implementation=ATTN_IMPLEMENTATION
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"}
    assert not unexpected and set(missing) <= tied, (missing, unexpected)
    return model.eval()


# The smallest top-1/top-2 gap a kept greedy step may have: the tests need twice their
# bound below it (about 5e-3 for logits under 4).
MIN_MARGIN = 0.01


@torch.no_grad()
def greedy_steps(model, prompt):
    """Up to MAX_NEW_TOKENS greedy tokens by full forwards, cut before the first step
    whose top-1/top-2 gap is under MIN_MARGIN (quantization moves logits, and a near
    tie is no test of anything), checked against generate() with the cache; and the
    smallest gap kept."""
    ids, margins = list(prompt), []
    for _ in range(MAX_NEW_TOKENS):
        top2 = torch.topk(model(torch.tensor([ids])).logits[0, -1], 2)
        margin = float(top2.values[0] - top2.values[1])
        if margin < MIN_MARGIN:
            break
        margins.append(margin)
        ids.append(int(top2.indices[0]))
    new = ids[len(prompt) :]
    assert len(new) >= 4, f"only {len(new)} greedy steps with a clear gap"
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    p = torch.tensor([prompt])
    out = model.generate(
        p, attention_mask=torch.ones_like(p), max_new_tokens=len(new), do_sample=False, use_cache=True
    )
    assert out[0, len(prompt) :].tolist() == new
    return new, min(margins)


def short_floats(rows):
    """Each float32 logit as its shortest decimal (it parses back to the same float32)."""
    return [[float(np.format_float_positional(np.float32(x), unique=True)) for x in row] for row in rows]


def write_ref(path, model, prompt):
    greedy, margin = greedy_steps(model, prompt)
    ref = {
        "prompt_ids": prompt,
        "logits": short_floats(prompt_logits(model, prompt).tolist()),
        "greedy_ids": greedy,
        "greedy_min_margin": margin,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    write_reference(path, ref)
    return margin, len(greedy)


def family_file(fixture, stem, qtype):
    folder = SOURCES / fixture
    arch, tensors, config, meta = converted(folder)
    config["_fixture"] = fixture
    stored = {name: store(w, qtype) for name, w in tensors.items()}
    path = OUT / f"{stem}.gguf"
    write_gguf(path, arch, meta, stored)
    if stem == "llama.q8_0":
        # The same model split by the package's writer as gguf-split splits one:
        # llama.q8_0-split-0000N-of-00003.gguf, 8 tensors a part (the reference is
        # llama.q8_0.json).
        write_gguf(OUT / "llama.q8_0-split.gguf", arch, meta, stored, split_max_tensors=8)
    # tiny-llama's 7-token prompt; Phi-3's own 36 tokens, past its original 32
    # positions, so its long factors run.
    prompt = PROMPT_IDS
    if config["model_type"] == "phi3":
        prompt = json.loads((folder / "reference.json").read_text())["prompt_ids"]
    model = hf_model(reference_config(config), reference_state(tensors, stored, config))
    margin, n = write_ref(OUT / f"{stem}.json", model, prompt)
    print(f"{path.name}: {path.stat().st_size} bytes, {n} greedy tokens, margin {margin:.3g}")


# tiny-llama-k's K-quant blocks: the byte offsets of each format's f16 scales, and the
# f16 values chosen for them (values of mean about 0 and deviation about 0.05: dmin
# 7.5 d for 4-bit and 15.5 d for 5-bit quants centres d sc q - dmin m).
K_BLOCKS = {
    # Q4_K: d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes of 4-bit quants.
    Q.Q4_K: ((0, 2.2e-4), (2, 1.65e-3)),
    # Q5_K: d, dmin, scales, 32 bytes of high bits, 128 of low nibbles.
    Q.Q5_K: ((0, 1.1e-4), (2, 1.7e-3)),
    # Q6_K: 128 bytes low nibbles, 64 high bits, 16 int8 scales, d at 208.
    Q.Q6_K: ((208, 3.0e-5),),
}
BLOCK_BYTES = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}


def random_k(rng, rows, cols, qtype):
    """A [rows, cols] tensor of random `qtype` blocks (as bytes)."""
    blocks = cols // 256
    raw = rng.integers(0, 256, size=(rows, blocks, BLOCK_BYTES[qtype]), dtype=np.uint8)
    for at, scale in K_BLOCKS[qtype]:
        d = (scale * rng.uniform(0.8, 1.2, size=(rows, blocks))).astype(np.float16)
        raw[:, :, at : at + 2] = d.view(np.uint8).reshape(rows, blocks, 2)
    return raw.reshape(rows, blocks * BLOCK_BYTES[qtype])


def llama_k(seed):
    rng = np.random.default_rng(seed)
    tokenizer = tokenizer_fields()
    vocab = len(tokenizer["tokenizer.ggml.tokens"][0])
    hidden, inter, heads, kv, hd, layers = 256, 1280, 8, 2, 32, 2
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hd,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
    }
    stored = {}
    normal = lambda *shape: (0.05 * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    norm = lambda: (1.0 + 0.2 * rng.standard_normal(hidden)).astype(np.float32)  # noqa: E731
    stored["token_embd.weight"] = (quantize(normal(vocab, hidden), Q.Q8_0), Q.Q8_0)
    # Layer 0: q, k, v Q5_K; gate, up Q4_K. Layer 1: q, k Q4_K and v Q6_K (mixed, as
    # llama.cpp's Q4_K_M gives v more bits: the loader joins q, k, v as row blocks
    # each in its own type); gate, up Q4_1. Every layer: o Q5_0 (its 256 inputs would be a single K
    # block: tp 1 only), down Q6_K.
    kinds = [
        {"attn_q": Q.Q5_K, "attn_k": Q.Q5_K, "attn_v": Q.Q5_K, "ffn_gate": Q.Q4_K, "ffn_up": Q.Q4_K},
        {"attn_q": Q.Q4_K, "attn_k": Q.Q4_K, "attn_v": Q.Q6_K, "ffn_gate": Q.Q4_1, "ffn_up": Q.Q4_1},
    ]
    shapes = {
        "attn_q": (heads * hd, hidden),
        "attn_k": (kv * hd, hidden),
        "attn_v": (kv * hd, hidden),
        "attn_output": (hidden, heads * hd),
        "ffn_gate": (inter, hidden),
        "ffn_up": (inter, hidden),
        "ffn_down": (hidden, inter),
    }
    for b in range(layers):
        p = f"blk.{b}."
        types = dict(kinds[b], attn_output=Q.Q5_0, ffn_down=Q.Q6_K)
        for module in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"):
            if module.endswith("norm"):
                stored[p + module + ".weight"] = (norm(), Q.F32)
                continue
            qtype, (rows, cols) = types[module], shapes[module]
            if qtype in BLOCK_BYTES:
                stored[p + module + ".weight"] = (random_k(rng, rows, cols, qtype), qtype)
            else:
                stored[p + module + ".weight"] = (quantize(normal(rows, cols), qtype), qtype)
    stored["output_norm.weight"] = (norm(), Q.F32)
    stored["output.weight"] = (random_k(rng, vocab, hidden, Q.Q6_K), Q.Q6_K)
    meta = [
        ("add_context_length", 64),
        ("add_embedding_length", hidden),
        ("add_block_count", layers),
        ("add_feed_forward_length", inter),
        ("add_head_count", heads),
        ("add_head_count_kv", kv),
        ("add_key_length", hd),
        ("add_value_length", hd),
        ("add_rope_dimension_count", hd),
        ("add_rope_freq_base", 10000.0),
        ("add_layer_norm_rms_eps", 1e-5),
    ]
    meta += [("add_key_value", (k, v, t, sub)) for k, (v, t, sub) in tokenizer.items()]
    # The Hugging Face weights: decoded, q and k rows back in the model's order.
    state = {}
    hf = {
        "token_embd": "model.embed_tokens",
        "output_norm": "model.norm",
        "output": "lm_head",
    }
    for name, (array, qtype) in stored.items():
        stem = name.rsplit(".", 1)[0]
        if stem.startswith("blk."):
            _, b, module = stem.split(".", 2)
            inverse = {v: k for k, v in LLAMA_NAMES.items() if not k.endswith("gate_up_proj")}
            inverse["ffn_norm"] = "post_attention_layernorm"
            key = f"model.layers.{b}.{inverse[module]}.weight"
        else:
            key = f"{hf[stem]}.weight"
        w = torch.from_numpy(np.ascontiguousarray(stored_f32(array, qtype)))
        if name.endswith("attn_q.weight"):
            w = unpermute(w, heads)
        if name.endswith("attn_k.weight"):
            w = unpermute(w, kv)
        state[key] = w
    return config, stored, meta, state


def main():
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    files = [
        ("tiny-llama", "llama.f16", Q.F16),
        ("tiny-llama", "llama.q8_0", Q.Q8_0),
        ("tiny-llama", "llama.q4_0", Q.Q4_0),
        ("tiny-llama3", "llama3.q8_0", Q.Q8_0),
    ]
    for family in ("qwen2", "qwen3", "phi3", "gemma2", "gemma3", "gpt2"):
        files += [(f"tiny-{family}", f"{family}.q8_0", Q.Q8_0)]
    for fixture, stem, qtype in files:
        if not only or stem in only:
            family_file(fixture, stem, qtype)
    if not only or "llama-k" in only:
        seed = LLAMA_K_SEED
        config, stored, meta, state = llama_k(seed)
        path = OUT / "llama-k.gguf"
        write_gguf(path, "llama", meta, stored)
        model = hf_model(config, state)
        margin, n = write_ref(OUT / "llama-k.json", model, PROMPT_IDS)
        print(f"{path.name}: {path.stat().st_size} bytes, {n} greedy tokens, margin {margin:.3g}")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{OUT}: {total} bytes in all")


LLAMA_K_SEED = 7

if __name__ == "__main__":
    main()
