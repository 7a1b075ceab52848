#!/usr/bin/env python3
"""Regenerate the tiny Hugging Face reference models in tests/fixtures/models/.

This script is run once, by hand, by a developer; CI never runs it. The files
it writes are committed, so the Rust tests need neither Python nor a network.
Rerunning it with the versions below reproduces the files byte for byte
(fixed seeds, single-threaded CPU math).

What it makes
-------------
tests/fixtures/models/tiny-llama/   LlamaForCausalLM, float32, random weights
    vocab 128, hidden 64, intermediate 128, 2 layers, 4 query heads,
    2 key/value heads (grouped-query attention, head_dim 16),
    max_position_embeddings 64, rms_norm_eps 1e-5, rope_theta 10000,
    untied lm_head, no biases.
tests/fixtures/models/tiny-gpt2/    GPT2LMHeadModel, float32, random weights
    vocab 128, n_embd 64, 2 layers, 4 heads, n_positions 64,
    layer_norm_epsilon 1e-5, lm_head tied to transformer.wte
    (bos/eos set to 127 = vocab_size - 1, as GPT-2's 50256 would be out of
    range for a 128-token vocabulary).

tests/fixtures/models/tiny-llama3/  LlamaForCausalLM, float32, random weights,
    the sizes of tiny-llama, with Llama 3.x rotary scaling: rope_parameters
    {rope_type llama3, rope_theta 10000, factor 8, low_freq_factor 1,
    high_freq_factor 4, original_max_position_embeddings 32} (with head_dim
    16 the 8 frequencies fall in all three bands: kept, interpolated,
    divided by the factor), and a 36-token prompt, longer than the original
    32 positions. Also, for the same weights, linear scaling (factor 4):
    config.linear.json, config.linear.v4.json and the *_linear references.
    Float32 weights only.

Each of tiny-llama and tiny-gpt2 holds:
    model.safetensors       float32 weights, as save_pretrained writes them
    model.bf16.safetensors  the same tensors (same names) rounded to bfloat16
    model.f16.safetensors   the same tensors (same names) rounded to float16
    config.json             as save_pretrained writes it with transformers 5.x
                            (rope_parameters {rope_theta, rope_type}, "dtype")
    config.v4.json          the same config hand-converted to the conventions
                            of transformers 4.x before 4.56 (top-level
                            rope_theta + rope_scaling null, "torch_dtype"),
                            matching what 4.55.4 writes for this model
    reference.json          prompt_ids        the 7-token prompt
                            logits            [7][128] float32 logits of the
                                              float32 model for every prompt
                                              position (exact float32 values)
                            greedy_ids        16 new tokens, greedy, use_cache=True
                            greedy_ids_no_cache  the same with use_cache=False
                            logits_bf16, greedy_ids_bf16,
                            logits_f16,  greedy_ids_f16
                                              the same from the bf16 / f16
                                              weights upcast exactly to float32
                                              (math in float32), i.e. what a
                                              float32-accumulating
                                              implementation with half-precision
                                              weights must reproduce
                            greedy_min_margin*  smallest top-1 minus top-2 logit
                                              gap along each greedy path (how
                                              much numerical slack argmax has)
                            torch_version, transformers_version,
                            attn_implementation

tiny-llama3 holds model.safetensors, config.json and config.v4.json (llama3
scaling; the 4.x form has top-level rope_theta and rope_scaling {rope_type,
factor, ...}), config.linear.json and config.linear.v4.json (linear scaling;
the 4.x form spells it the old way, rope_scaling {type, factor}), and
reference.json with prompt_ids (36 tokens), logits, greedy_ids,
greedy_ids_no_cache, greedy_min_margin, inv_freq (the float32 inverse
frequencies transformers computed) and the same with the suffix _linear for
linear scaling.

tiny-llama also holds the generation files (the step "tiny-llama-generation",
run after tiny-llama, or alone by that name: it rewrites only these three):
    tokenizer_config.json   PreTrainedTokenizerFast over the word-level
                            tokenizer.json, bos "t1", eos "t2", and SmolLM2's
                            published ChatML chat_template
    generation_config.json  GenerationConfig(bos_token_id 1, eos_token_id
                            [2, 126]) as save_pretrained writes it (126 is
                            the 16th and last greedy token of reference.json,
                            and only there: a run of 20 stops after 16, and
                            .ci/run's runs of 16 give all 16)
    chat_reference.json     cases: messages, add_generation_prompt, and what
                            apply_chat_template gives: text (tokenize=False)
                            and ids (tokenize=True)

Greedy decoding never stops early: end-of-sequence stopping is switched off,
so every list has exactly 16 tokens (new tokens only, the prompt excluded).
The script checks generate() against a plain argmax loop over full forwards.

Weights: matrices and embeddings get the model's own init (normal with
std = initializer_range = 0.1, large enough for distinct logits). The 1-D
parameters, which that init would leave at 1 (norm weights) and 0 (biases),
are drawn at random too (norms ~ N(1, 0.2), biases ~ N(0, 0.1)), so that a
fixture catches an implementation that skips a norm weight or a bias.

Layout notes for readers of the files: Llama linear weights are [out, in],
q_proj/k_proj in the Hugging Face rotate-half RoPE layout (dimension i pairs
with i + head_dim/2); the attention is eager softmax(q k^T / sqrt(head_dim)).
GPT-2 uses Conv1D weights stored [in, out], c_attn fuses q, k, v (in that
order) along out, activation is gelu_new (tanh approximation), and
model.safetensors has no lm_head.weight (it is tied to transformer.wte.weight).
No attention-mask or rotary buffers are saved.

Versions it was run with
------------------------
Python 3.11.7, torch 2.15.0+cu132 (the PyPI wheel, run on CPU), transformers
5.24.0, safetensors 0.8.0, numpy 2.4.6. It needs transformers >= 5 (it writes
the 5.x config.json and converts that to 4.x form). Other torch/transformers
versions may change the random init or the last bits of the logits;
reference.json records the versions used. The logits are bit-exact only for
the same attention implementation (eager) and one CPU thread, both set here;
sdpa or more threads move them by about 1e-6, so Rust tests should compare
logits with a tolerance and greedy ids exactly.

config.v4.json was checked once by hand against transformers 4.55.4: it is
what that version writes for this model, and 4.55.4 loading it with
model.safetensors gives the same logits, bit for bit.

How to run
----------
    python3 -m venv /tmp/venv-fixtures
    /tmp/venv-fixtures/bin/pip install torch transformers safetensors
    /tmp/venv-fixtures/bin/python scripts/make_model_fixtures.py

It rewrites every folder completely, then reloads each model with
from_pretrained and checks that it reproduces reference.json exactly.
Fixture names as arguments rewrite only those, e.g.

    /tmp/venv-fixtures/bin/python scripts/make_model_fixtures.py tiny-llama3

(tiny-llama3 was made that way with torch 2.15.0 and transformers 5.25.0;
the other two are as the versions above made them.)
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

OUT_ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models"

PROMPT_IDS = [1, 17, 42, 99, 3, 64, 5]
MAX_NEW_TOKENS = 16
ATTN_IMPLEMENTATION = "eager"  # plain matmul-softmax-matmul attention
INITIALIZER_RANGE = 0.1
NORM_WEIGHT_STD = 0.2
BIAS_STD = 0.1

# The rotary scalings of tiny-llama3 (5.x rope_parameters) and its prompt,
# longer than the original context length so that positions past it run.
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}
# YaRN (Qwen2.5's long-context form: factor and original length; the
# attention factor inferred, 0.1 ln 4 + 1), LongRoPE (Phi-3's form: a factor per
# frequency, short and long; the factor inferred from 64 / 32 positions and
# the attention factor from it) and dynamic NTK (which changes nothing within
# max_position_embeddings, and is checked to change nothing).
YARN_ROPE = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32}
LONGROPE_ROPE = {
    "rope_type": "longrope",
    "rope_theta": 10000.0,
    "short_factor": [1.0, 1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.6],
    "long_factor": [1.0, 1.1, 1.3, 1.8, 2.5, 3.5, 5.0, 7.0],
    "original_max_position_embeddings": 32,
}
DYNAMIC_ROPE = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
# Each scaling of tiny-llama3: the suffix of its config file and reference keys.
SCALED_ROPES = (
    ("", LLAMA3_ROPE),
    ("_linear", LINEAR_ROPE),
    ("_yarn", YARN_ROPE),
    ("_longrope", LONGROPE_ROPE),
    ("_dynamic", DYNAMIC_ROPE),
)
LONG_PROMPT_IDS = [(37 * i + 11) % 128 for i in range(36)]

# Seeds chosen so that every greedy list has several distinct tokens and a
# clear top-1/top-2 gap at each step (checked below).
LLAMA_SEED = 1
LLAMA3_SEED = 5
GPT2_SEED = 28

# The rounded weight files: suffix in the file name and reference keys.
HALF_DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}

# Top-level keys that transformers 4.x leaves out of config.json when they
# hold the PretrainedConfig default, but 5.x writes out.
V4_OMITTED_DEFAULTS = {"pad_token_id": None, "add_cross_attention": False, "tie_word_embeddings": True}
V4_TRANSFORMERS_VERSION = "4.55.4"  # the last 4.x whose config.json says "torch_dtype"


def build_llama(seed, rope_parameters=None):
    rope = {} if rope_parameters is None else {"rope_parameters": dict(rope_parameters)}
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        **({} if rope_parameters else {"rope_theta": 10000.0}),
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=INITIALIZER_RANGE,
        attn_implementation=ATTN_IMPLEMENTATION,
        **rope,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    randomize_1d_params(model, seed)
    return model.eval()


def build_gpt2(seed):
    config = GPT2Config(
        vocab_size=128,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=64,
        layer_norm_epsilon=1e-5,
        bos_token_id=127,
        eos_token_id=127,
        initializer_range=INITIALIZER_RANGE,
        attn_implementation=ATTN_IMPLEMENTATION,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    randomize_1d_params(model, seed)
    assert model.lm_head.weight is model.transformer.wte.weight, "GPT-2 embeddings should be tied"
    return model.eval()


@torch.no_grad()
def randomize_1d_params(model, seed):
    """Replace the constant init of norm weights (1) and biases (0) by random values."""
    generator = torch.Generator().manual_seed(seed + 1)
    for name, param in sorted(model.named_parameters()):
        if param.ndim != 1:
            continue
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith(".bias"):
            param.copy_(BIAS_STD * noise)
        else:
            param.copy_(1.0 + NORM_WEIGHT_STD * noise)


def load_float32(folder, weights_file="model.safetensors", config_file="config.json"):
    """Load a fixture folder with from_pretrained, upcasting any weights to float32."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(folder / config_file, Path(tmp) / "config.json")
        shutil.copy(folder / weights_file, Path(tmp) / "model.safetensors")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, attn_implementation=ATTN_IMPLEMENTATION
        )
    for param in model.parameters():
        assert param.dtype == torch.float32
    return model.eval()


@torch.no_grad()
def prompt_logits(model, prompt_ids=PROMPT_IDS):
    logits = model(torch.tensor([prompt_ids])).logits[0]
    assert logits.dtype == torch.float32 and logits.shape == (len(prompt_ids), model.config.vocab_size)
    return logits


@torch.no_grad()
def generate_greedy(model, use_cache, prompt_ids=PROMPT_IDS):
    # generate() fills unset options from model.generation_config, so switch
    # end-of-sequence stopping off there to always get MAX_NEW_TOKENS tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    prompt = torch.tensor([prompt_ids])
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        use_cache=use_cache,
    )
    new_ids = out[0, len(prompt_ids) :].tolist()
    assert len(new_ids) == MAX_NEW_TOKENS
    return new_ids


@torch.no_grad()
def argmax_loop(model, prompt_ids=PROMPT_IDS):
    """Greedy decoding by full forwards: the new ids and the smallest top-1/top-2 gap."""
    ids = list(prompt_ids)
    margins = []
    for _ in range(MAX_NEW_TOKENS):
        last = model(torch.tensor([ids])).logits[0, -1]
        top2 = torch.topk(last, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        ids.append(int(top2.indices[0]))
    return ids[len(prompt_ids) :], min(margins)


def greedy_reference(model, prompt_ids=PROMPT_IDS):
    """Greedy ids with and without the KV cache, checked against each other and an argmax loop."""
    with_cache = generate_greedy(model, use_cache=True, prompt_ids=prompt_ids)
    without_cache = generate_greedy(model, use_cache=False, prompt_ids=prompt_ids)
    looped, margin = argmax_loop(model, prompt_ids)
    assert with_cache == without_cache == looped, (with_cache, without_cache, looped)
    assert len(set(with_cache)) >= 3, f"greedy output is degenerate: {with_cache}"
    assert margin > 1e-3, f"greedy top-1/top-2 gap too small: {margin}"
    return with_cache, without_cache, margin


def write_half_variants(folder):
    """Write model.<suffix>.safetensors: every tensor of model.safetensors rounded to half precision."""
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for suffix, dtype in HALF_DTYPES.items():
        rounded = {name: t.to(dtype).contiguous() for name, t in tensors.items()}
        save_file(rounded, folder / f"model.{suffix}.safetensors", metadata=metadata)


def to_v4_config(v5):
    """Convert a transformers 5.x config dict to the form transformers 4.x (< 4.56) writes."""
    v4 = dict(v5)
    v4["torch_dtype"] = v4.pop("dtype")
    rope = v4.pop("rope_parameters", None)
    if rope is not None:
        rope = dict(rope)
        v4["rope_theta"] = rope.pop("rope_theta")
        if rope["rope_type"] == "default":
            v4["rope_scaling"] = None
        elif rope["rope_type"] == "linear":
            # Linear-scaled 4.x checkpoints spell the type the old way.
            v4["rope_scaling"] = {"type": "linear", "factor": rope["factor"]}
        else:
            assert rope["rope_type"] in ("llama3", "yarn", "longrope", "dynamic"), rope
            v4["rope_scaling"] = rope
    for key, default in V4_OMITTED_DEFAULTS.items():
        if key in v4 and v4[key] == default:
            del v4[key]
    v4["transformers_version"] = V4_TRANSFORMERS_VERSION
    return v4


def write_word_tokenizer(folder, vocab):
    # A word-level tokenizer.json (the tokenizers library's format): word "t<i>" is id i,
    # so the Rust side's text in and out can be checked against the reference ids.
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {f"t{i}": i for i in range(vocab)}, "unk_token": "t0"},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tok, indent=1))


def write_json(path, obj):
    # The layout save_pretrained uses for config.json.
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_reference(path, ref):
    """Write reference.json with one logits row per line.

    Python's repr of a float32 upcast to float64 is exact, so every number
    parses back to the same float32, whether read as f32 or as f64.
    """
    lines = []
    for key, value in ref.items():
        if key.startswith("logits"):
            rows = ",\n".join("    " + json.dumps(row) for row in value)
            text = "[\n" + rows + "\n  ]"
        else:
            text = json.dumps(value)
        lines.append(f"  {json.dumps(key)}: {text}")
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def make_fixture(name, model):
    folder = OUT_ROOT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    # save_pretrained also writes generation_config.json; keep only the weights and config.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(Path(tmp) / "model.safetensors", folder / "model.safetensors")
        shutil.copy(Path(tmp) / "config.json", folder / "config.json")
    config_v5 = json.loads((folder / "config.json").read_text())
    assert config_v5["dtype"] == "float32"
    write_json(folder / "config.v4.json", to_v4_config(config_v5))
    write_half_variants(folder)
    if name == "tiny-llama":
        write_word_tokenizer(folder, model.config.vocab_size)

    # Half-precision weights, loaded back into float32 models.
    half_models = {}
    for suffix, dtype in HALF_DTYPES.items():
        half_model = load_float32(folder, f"model.{suffix}.safetensors")
        for (n, p), (_, q) in zip(model.named_parameters(), half_model.named_parameters()):
            assert torch.equal(q, p.detach().to(dtype).float()), n
        half_models[suffix] = half_model

    greedy, greedy_no_cache, margin = greedy_reference(model)
    ref = {
        "prompt_ids": PROMPT_IDS,
        "greedy_ids": greedy,
        "greedy_ids_no_cache": greedy_no_cache,
        "greedy_min_margin": margin,
    }
    for suffix, half_model in half_models.items():
        ref[f"greedy_ids_{suffix}"], _, ref[f"greedy_min_margin_{suffix}"] = greedy_reference(half_model)
    ref["torch_version"] = torch.__version__
    ref["transformers_version"] = transformers.__version__
    ref["attn_implementation"] = ATTN_IMPLEMENTATION
    ref["logits"] = prompt_logits(model).tolist()
    for suffix, half_model in half_models.items():
        ref[f"logits_{suffix}"] = prompt_logits(half_model).tolist()
    write_reference(folder / "reference.json", ref)
    return folder


def verify(folder, original):
    """Reload the saved fixture from disk and check it against reference.json."""
    ref = json.loads((folder / "reference.json").read_text())
    model = load_float32(folder)
    original_state = original.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, original_state[name]), name
    assert torch.equal(prompt_logits(model), torch.tensor(ref["logits"], dtype=torch.float32))
    assert generate_greedy(model, use_cache=True) == ref["greedy_ids"]
    for suffix in HALF_DTYPES:
        half_model = load_float32(folder, f"model.{suffix}.safetensors")
        expected = torch.tensor(ref[f"logits_{suffix}"], dtype=torch.float32)
        assert torch.equal(prompt_logits(half_model), expected), suffix
        assert generate_greedy(half_model, use_cache=True) == ref[f"greedy_ids_{suffix}"], suffix

    # The hand-converted 4.x config must describe the same model to transformers.
    config_class = type(model.config)
    v5 = config_class.from_pretrained(folder)
    v4 = config_class.from_dict(json.loads((folder / "config.v4.json").read_text()))
    for key in ("dtype", "rope_parameters", "tie_word_embeddings", "vocab_size", "hidden_size"):
        assert getattr(v4, key, None) == getattr(v5, key, None), key

    print(f"{folder.relative_to(OUT_ROOT.parent.parent.parent)}: verified")
    for file in sorted(folder.glob("*.safetensors")):
        print(f"  {file.name} ({file.stat().st_size} bytes)")
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                t = f.get_slice(name)
                print(f"    {name} {t.get_dtype()} {t.get_shape()}")
    print(f"  greedy_ids      {ref['greedy_ids']}")
    print(f"  greedy_ids_bf16 {ref['greedy_ids_bf16']}")
    print(f"  greedy_ids_f16  {ref['greedy_ids_f16']}")


def make_scaled_fixture(name, seed):
    """tiny-llama3: llama3 scaling (config.json) and linear scaling (config.linear.json), f32 only."""
    folder = OUT_ROOT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ref = {"prompt_ids": LONG_PROMPT_IDS}
    logits = {}
    for suffix, rope in SCALED_ROPES:
        model = build_llama(seed, rope)
        config_name = "config.json" if suffix == "" else f"config.{suffix[1:]}.json"
        # Before any forward (dynamic and longrope rewrite the buffer in one).
        inv_freq = model.model.rotary_emb.inv_freq.clone()
        attention_factor = model.model.rotary_emb.attention_scaling
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            if suffix == "":
                shutil.copy(Path(tmp) / "model.safetensors", folder / "model.safetensors")
            else:
                # The same weights: only the rotary scaling differs.
                with safe_open(Path(tmp) / "model.safetensors", framework="pt") as a, safe_open(
                    folder / "model.safetensors", framework="pt"
                ) as b:
                    assert sorted(a.keys()) == sorted(b.keys())
                    for key in a.keys():
                        assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
            shutil.copy(Path(tmp) / "config.json", folder / config_name)
        config_v5 = json.loads((folder / config_name).read_text())
        assert config_v5["dtype"] == "float32"
        saved_rope = {k: v for k, v in config_v5["rope_parameters"].items() if k not in rope}
        assert {k: config_v5["rope_parameters"][k] for k in rope} == rope, config_v5["rope_parameters"]
        # (5.x writes the original length it defaulted for longrope.)
        assert saved_rope in ({}, {"original_max_position_embeddings": 64}), saved_rope
        write_json(folder / config_name.replace(".json", ".v4.json"), to_v4_config(config_v5))
        greedy, greedy_no_cache, margin = greedy_reference(model, LONG_PROMPT_IDS)
        ref[f"greedy_ids{suffix}"] = greedy
        ref[f"greedy_ids_no_cache{suffix}"] = greedy_no_cache
        ref[f"greedy_min_margin{suffix}"] = margin
        ref[f"inv_freq{suffix}"] = inv_freq.tolist()
        if suffix in ("_yarn", "_longrope"):
            ref[f"attention_factor{suffix}"] = attention_factor
        logits[f"logits{suffix}"] = prompt_logits(model, LONG_PROMPT_IDS).tolist()
        if suffix == "_longrope":
            # The prompt ends past the original 32 positions: the long factors ran.
            ref["inv_freq_longrope_long"] = model.model.rotary_emb.inv_freq.tolist()
    ref["torch_version"] = torch.__version__
    ref["transformers_version"] = transformers.__version__
    ref["attn_implementation"] = ATTN_IMPLEMENTATION
    ref.update(logits)
    write_reference(folder / "reference.json", ref)
    return folder


def verify_scaled(folder, seed):
    """Reload tiny-llama3 from disk with each config, both forms, and check reference.json."""
    ref = json.loads((folder / "reference.json").read_text())
    for suffix, rope in SCALED_ROPES:
        config_name = "config.json" if suffix == "" else f"config.{suffix[1:]}.json"
        model = load_float32(folder, config_file=config_name)
        original_state = build_llama(seed, rope).state_dict()
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, original_state[name]), name
        inv_freq = torch.tensor(ref[f"inv_freq{suffix}"], dtype=torch.float32)
        assert torch.equal(model.model.rotary_emb.inv_freq, inv_freq), suffix
        if suffix == "_dynamic":
            # Within max_position_embeddings dynamic NTK is the default rotary.
            default = build_llama(seed, {"rope_type": "default", "rope_theta": 10000.0})
            assert torch.equal(default.model.rotary_emb.inv_freq, inv_freq)
        expected = torch.tensor(ref[f"logits{suffix}"], dtype=torch.float32)
        assert torch.equal(prompt_logits(model, LONG_PROMPT_IDS), expected), suffix
        assert generate_greedy(model, True, LONG_PROMPT_IDS) == ref[f"greedy_ids{suffix}"], suffix
        # The 4.x form must describe the same model, and give the same logits.
        v4_name = config_name.replace(".json", ".v4.json")
        v4 = type(model.config).from_dict(json.loads((folder / v4_name).read_text()))
        # (transformers keeps the old spelling `type` beside the `rope_type` it adds.)
        v4_rope = {k: v for k, v in v4.rope_parameters.items() if k != "type"}
        assert v4_rope == model.config.rope_parameters, (v4.rope_parameters, rope)
        v4_model = load_float32(folder, config_file=v4_name)
        assert torch.equal(prompt_logits(v4_model, LONG_PROMPT_IDS), expected), v4_name
        print(f"  {config_name}: greedy_ids {ref[f'greedy_ids{suffix}']}")
    print(f"{folder.relative_to(OUT_ROOT.parent.parent.parent)}: verified")


# The families beyond Llama and GPT-2: each a tiny random model of its own
# config class, chosen so that every part of the family runs: 6 query heads
# over 2 key/value heads (uneven at tp 4, key/value heads fewer than tp), the
# long prompt, random norm weights and biases. f32 weights, the 5.x config
# and its 4.x form, transformers' logits at every prompt position and its
# greedy tokens (with and without its cache, checked equal).
FAMILY_SEEDS = {"tiny-qwen2": 12, "tiny-qwen3": 11, "tiny-phi3": 13, "tiny-gemma2": 14, "tiny-gemma3": 14, "tiny-mistral": 16}


# Variants of a family fixture: the same weights under another config
# (config.<variant>.json and .v4.json; reference keys with _<variant>).
FAMILY_VARIANTS = {
    # Qwen2's window in the layers from max_window_layers (1) on: layer 0 full,
    # layer 1 sliding over 8 positions.
    "tiny-qwen2": {"window": {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}},
    # Phi-3-mini-4k's window (2047 there) in every layer, here 6.
    "tiny-phi3": {"window": {"sliding_window": 6}},
}


def build_family(name, seed, extra=None):
    extra = extra or {}
    common = dict(
        vocab_size=128,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        initializer_range=INITIALIZER_RANGE,
        attn_implementation=ATTN_IMPLEMENTATION,
    )
    if name == "tiny-qwen2":
        # Qwen2.5's shape: biases on q, k, v (always), tied head, theta 1e6,
        # a window named but unused (use_sliding_window false).
        config = transformers.Qwen2Config(
            hidden_size=96,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **{"use_sliding_window": False, "sliding_window": 4096, **extra},
            **common,
        )
        model_class = transformers.Qwen2ForCausalLM
    elif name == "tiny-qwen3":
        # Qwen3: q_norm/k_norm over each head, head_dim 32 with 6 heads over a
        # hidden size of 64 (the heads total 192), untied head.
        config = transformers.Qwen3Config(
            hidden_size=64,
            head_dim=32,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            attention_bias=False,
            **common,
        )
        model_class = transformers.Qwen3ForCausalLM
    elif name == "tiny-mistral":
        # Mistral's sliding window: 8 positions, shorter than the 36-token prompt,
        # in every layer; untied head.
        config = transformers.MistralConfig(
            hidden_size=96,
            tie_word_embeddings=False,
            sliding_window=8,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **common,
        )
        model_class = transformers.MistralForCausalLM
    elif name == "tiny-phi3":
        # Phi-3.5's shape: fused qkv_proj and gate_up_proj, LongRoPE with the
        # original length at the top level (32: the long prompt ends past it,
        # so the long factors run), no window.
        config = transformers.Phi3Config(
            hidden_size=96,
            tie_word_embeddings=False,
            original_max_position_embeddings=32,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "short_factor": LONGROPE_ROPE["short_factor"],
                "long_factor": LONGROPE_ROPE["long_factor"],
            },
            **{"sliding_window": None, **extra},
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            **common,
        )
        model_class = transformers.Phi3ForCausalLM
    elif name in ("tiny-gemma2", "tiny-gemma3"):
        # Gemma's layers: (1 + w) RMSNorms before and after attention and MLP,
        # embeddings times sqrt(hidden), GeGLU, query_pre_attn_scalar (24, not
        # head_dim 32), head_dim * heads (192) != hidden (96), layers alternating
        # sliding (a window of 8 < the 36-token prompt) and full attention.
        # Gemma 2 caps attention logits and final logits (small caps, so that
        # they matter for these small logits); Gemma 3 norms each query and key
        # head and gives its sliding layers their own rotary base, its full
        # layers linear scaling.
        gemma = dict(
            hidden_size=96,
            head_dim=32,
            query_pre_attn_scalar=24,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            tie_word_embeddings=True,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=1,
        )
        if name == "tiny-gemma2":
            config = transformers.Gemma2Config(
                attn_logit_softcapping=2.0,
                final_logit_softcapping=3.0,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                **gemma,
                **common,
            )
            model_class = transformers.Gemma2ForCausalLM
        else:
            config = transformers.Gemma3TextConfig(
                rope_parameters={
                    "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 4.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                },
                **gemma,
                **common,
            )
            model_class = transformers.Gemma3ForCausalLM
    else:
        raise ValueError(name)
    torch.manual_seed(seed)
    model = model_class(config)
    randomize_1d_params(model, seed)
    return model.eval()


def gemma3_v4_config(v5):
    """Gemma 3's 5.x config (rope_parameters per layer type) in the 4.x form:
    rope_theta and rope_scaling of the full layers, rope_local_base_freq of the
    sliding ones, layer_types as 4.5x writes them."""
    v4 = dict(v5)
    v4["torch_dtype"] = v4.pop("dtype")
    rope = v4.pop("rope_parameters")
    full, sliding = dict(rope["full_attention"]), dict(rope["sliding_attention"])
    v4["rope_theta"] = full.pop("rope_theta")
    v4["rope_local_base_freq"] = sliding.pop("rope_theta")
    assert sliding == {"rope_type": "default"}, sliding
    v4["rope_scaling"] = None if full["rope_type"] == "default" else full
    v4["transformers_version"] = V4_TRANSFORMERS_VERSION
    return v4


def write_family_configs(folder, name, model, stem):
    """config<stem>.json as save_pretrained writes it, and its 4.x form."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if stem == "":
            shutil.copy(Path(tmp) / "model.safetensors", folder / "model.safetensors")
        else:
            # A variant keeps the fixture's weights.
            with safe_open(Path(tmp) / "model.safetensors", framework="pt") as a, safe_open(
                folder / "model.safetensors", framework="pt"
            ) as b:
                assert sorted(a.keys()) == sorted(b.keys())
                for key in a.keys():
                    assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
        shutil.copy(Path(tmp) / "config.json", folder / f"config{stem}.json")
    config_v5 = json.loads((folder / f"config{stem}.json").read_text())
    assert config_v5["dtype"] == "float32"
    if name == "tiny-gemma3":
        v4 = gemma3_v4_config(config_v5)
    else:
        v4 = to_v4_config(config_v5)
    if not name.startswith("tiny-gemma"):
        v4.pop("layer_types", None)  # 4.x before 4.56 derived it, never wrote it
    # 4.x omitted a key only when it held both PretrainedConfig's default and the
    # class's own (Qwen2's tie_word_embeddings defaults to False, so True is written).
    class_default = type(model.config)().tie_word_embeddings
    if config_v5["tie_word_embeddings"] != class_default:
        v4["tie_word_embeddings"] = config_v5["tie_word_embeddings"]
    write_json(folder / f"config{stem}.v4.json", v4)


def make_family_fixture(name, seed):
    folder = OUT_ROOT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ref = {"prompt_ids": LONG_PROMPT_IDS}
    logits = {}
    variants = [("", {})] + [(f"_{v}", extra) for v, extra in FAMILY_VARIANTS.get(name, {}).items()]
    for suffix, extra in variants:
        model = build_family(name, seed, extra)
        stem = suffix.replace("_", ".")
        write_family_configs(folder, name, model, stem)
        greedy, greedy_no_cache, margin = greedy_reference(model, LONG_PROMPT_IDS)
        ref[f"greedy_ids{suffix}"] = greedy
        ref[f"greedy_ids_no_cache{suffix}"] = greedy_no_cache
        ref[f"greedy_min_margin{suffix}"] = margin
        logits[f"logits{suffix}"] = prompt_logits(model, LONG_PROMPT_IDS).tolist()
        print(f"{name}{stem}: greedy_ids {greedy}")
    ref["torch_version"] = torch.__version__
    ref["transformers_version"] = transformers.__version__
    ref["attn_implementation"] = ATTN_IMPLEMENTATION
    ref.update(logits)
    write_reference(folder / "reference.json", ref)
    # Reloaded from disk, both config forms give the same logits.
    for suffix, _ in variants:
        expected = torch.tensor(ref[f"logits{suffix}"], dtype=torch.float32)
        stem = suffix.replace("_", ".")
        for config_file in (f"config{stem}.json", f"config{stem}.v4.json"):
            again = load_float32(folder, config_file=config_file)
            assert torch.equal(prompt_logits(again, LONG_PROMPT_IDS), expected), config_file
    print(f"{name}: verified")


# SmolLM2-135M-Instruct's chat template, verbatim (HuggingFaceTB/SmolLM2-135M-Instruct,
# tokenizer_config.json): ChatML with a default system message.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GENERATION_EOS_IDS = [2, 126]
# Words without "t1" or "t2" in them: transformers matches the special tokens bos "t1"
# and eos "t2" inside longer words ("t17" -> "t1", "7"), which tokenizer.json alone
# (what the Rust side reads) does not know.
CHAT_CASES = [
    {"messages": [{"role": "user", "content": "t5 t9 t37"}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": "t3 t4"},
            {"role": "user", "content": "t30 t33"},
            {"role": "assistant", "content": "t40"},
            {"role": "user", "content": "t41 t45"},
        ],
        "add_generation_prompt": True,
    },
    {"messages": [{"role": "user", "content": "t7  t8"}], "add_generation_prompt": False},
]


def make_generation_files(name="tiny-llama"):
    """tokenizer_config.json, generation_config.json and chat_reference.json beside
    the weights of `name` (its tokenizer.json must exist); nothing else is touched."""
    from transformers import AutoTokenizer, GenerationConfig

    folder = OUT_ROOT / name
    assert (folder / "tokenizer.json").exists(), "make tiny-llama first"
    reference = json.loads((folder / "reference.json").read_text())
    assert reference["greedy_ids"][15] == GENERATION_EOS_IDS[1]
    assert GENERATION_EOS_IDS[1] not in reference["greedy_ids"][:15]
    assert GENERATION_EOS_IDS[0] not in reference["greedy_ids"]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "t1",
        "eos_token": "t2",
        "unk_token": "t0",
        "model_max_length": 64,
        "clean_up_tokenization_spaces": False,
        "chat_template": SMOLLM2_CHAT_TEMPLATE,
    }
    write_json(folder / "tokenizer_config.json", config)
    GenerationConfig(bos_token_id=1, eos_token_id=GENERATION_EOS_IDS).save_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    cases = []
    for case in CHAT_CASES:
        text = tok.apply_chat_template(case["messages"], tokenize=False,
                                       add_generation_prompt=case["add_generation_prompt"])
        ids = tok.apply_chat_template(case["messages"], tokenize=True,
                                      add_generation_prompt=case["add_generation_prompt"])
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        cases.append({**case, "text": text, "ids": list(ids)})
    write_json(folder / "chat_reference.json", {
        "transformers_version": transformers.__version__,
        "cases": cases,
    })
    print(f"{folder.relative_to(OUT_ROOT.parent.parent.parent)}: generation files written")


def main():
    assert int(transformers.__version__.split(".")[0]) >= 5, "needs transformers 5.x"
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # fixed reduction order, reproducible last bits
    torch.use_deterministic_algorithms(True)
    only = set(sys.argv[1:])
    for name, build, seed in (("tiny-llama", build_llama, LLAMA_SEED), ("tiny-gpt2", build_gpt2, GPT2_SEED)):
        if only and name not in only:
            continue
        model = build(seed)
        folder = make_fixture(name, model)
        verify(folder, model)
        if name == "tiny-llama":
            make_generation_files(name)
    if "tiny-llama-generation" in only and "tiny-llama" not in only:
        make_generation_files("tiny-llama")
    if not only or "tiny-llama3" in only:
        verify_scaled(make_scaled_fixture("tiny-llama3", LLAMA3_SEED), LLAMA3_SEED)
    for name, seed in FAMILY_SEEDS.items():
        if not only or name in only:
            make_family_fixture(name, seed)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
