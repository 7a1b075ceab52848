#!/usr/bin/env python3
"""Write tests/fixtures/attention_options.json: transformers' own attention layers and
gated MLP with the knobs of issue 22, for tests/attention_options.rs to match.

Run once, by hand (CI never runs it); the file it writes is committed. Fixed seeds and
single-threaded CPU math: rerunning it with the versions below reproduces the file.
Made with transformers 5.25.0 and torch 2.15.0, float32, eager attention.

Every case has hidden 12, 6 query heads over 2 key/value heads of head_dim 8, rope_theta
10000, and a 10-position input x (no cache; the masks come from transformers'
masking_utils mask functions, as create_causal_mask / create_sliding_window_causal_mask
build them):

  gemma2_sliding   Gemma2Attention, a sliding layer: sliding_window 3,
                   query_pre_attn_scalar 32 (scale 32 ** -0.5), attn_logit_softcapping 3
  qwen3            Qwen3Attention, full attention: q_norm and k_norm (eps 1e-6)
  gemma3_sliding   Gemma3Attention, a sliding layer: sliding_window 4,
                   query_pre_attn_scalar 24, q_norm / k_norm with (1 + w) (the file holds
                   the weights w as stored and as added, 1 + w, which the layer takes)
  gemma2_mlp       Gemma2MLP, hidden_activation gelu_pytorch_tanh, intermediate 20,
                   3 tokens

Weights are nn.Linear's [out, in]; outputs are the float32 results, each value the
shortest repr of its float32.
"""

import json
from pathlib import Path

import torch
import transformers
from transformers import Gemma2Config, Gemma3TextConfig, Qwen3Config
from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function
from transformers.models.gemma2.modeling_gemma2 import (
    Gemma2Attention,
    Gemma2MLP,
    Gemma2RotaryEmbedding,
)
from transformers.models.gemma3.modeling_gemma3 import Gemma3Attention, Gemma3RotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3RotaryEmbedding

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "attention_options.json"
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, POSITIONS = 12, 6, 2, 8, 10


def flat(t):
    return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]


def mask(fn, n):
    """The additive [1, 1, n, n] mask of a masking_utils mask function."""
    t = torch.tensor
    allowed = torch.tensor(
        [[bool(fn(t(0), t(0), t(q), t(k))) for k in range(n)] for q in range(n)]
    )
    m = torch.zeros(n, n)
    m[~allowed] = torch.finfo(torch.float32).min
    return m[None, None]


def common(**extra):
    return dict(
        hidden_size=HIDDEN,
        intermediate_size=20,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        num_hidden_layers=1,
        vocab_size=32,
        rms_norm_eps=1e-6,
        attn_implementation="eager",
        **extra,
    )


def attention_case(attn, rotary, rotary_args, window, x):
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0.0, 1.0)
        pos = torch.arange(POSITIONS)[None]
        cos, sin = rotary(x, pos, *rotary_args)
        fn = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
        out, _ = attn(x, (cos, sin), mask(fn, POSITIONS))
    case = {
        "x": flat(x),
        "q": flat(attn.q_proj.weight),
        "k": flat(attn.k_proj.weight),
        "v": flat(attn.v_proj.weight),
        "o": flat(attn.o_proj.weight),
        "window": window,
        "scale": attn.scaling,
        "softcap": getattr(attn, "attn_logit_softcapping", None),
        "out": flat(out),
    }
    return case


def main():
    torch.manual_seed(22)
    torch.set_num_threads(1)
    cases = {}
    x = 0.5 * torch.randn(1, POSITIONS, HIDDEN)

    c = Gemma2Config(
        **common(
            sliding_window=3,
            query_pre_attn_scalar=32,
            attn_logit_softcapping=3.0,
            layer_types=["sliding_attention"],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
    )
    attn = Gemma2Attention(c, layer_idx=0).eval()
    assert attn.sliding_window == 3
    cases["gemma2_sliding"] = attention_case(attn, Gemma2RotaryEmbedding(c), (), 3, x)

    c = Qwen3Config(
        **common(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    )
    attn = Qwen3Attention(c, layer_idx=0).eval()
    case = attention_case(attn, Qwen3RotaryEmbedding(c), (), None, x)
    case["q_norm"] = flat(attn.q_norm.weight)
    case["k_norm"] = flat(attn.k_norm.weight)
    case["eps"] = attn.q_norm.variance_epsilon
    cases["qwen3"] = case

    c = Gemma3TextConfig(
        **common(
            sliding_window=4,
            query_pre_attn_scalar=24,
            layer_types=["sliding_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            },
        )
    )
    attn = Gemma3Attention(c, layer_idx=0).eval()
    assert attn.sliding_window == 4 and attn.attn_logit_softcapping is None
    case = attention_case(attn, Gemma3RotaryEmbedding(c), ("sliding_attention",), 4, x)
    case["q_norm_stored"] = flat(attn.q_norm.weight)
    case["k_norm_stored"] = flat(attn.k_norm.weight)
    case["q_norm"] = flat(1.0 + attn.q_norm.weight)
    case["k_norm"] = flat(1.0 + attn.k_norm.weight)
    case["eps"] = attn.q_norm.eps
    cases["gemma3_sliding"] = case

    c = Gemma2Config(**common(hidden_activation="gelu_pytorch_tanh"))
    mlp = Gemma2MLP(c).eval()
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_(0.0, 1.0)
        xm = torch.randn(3, HIDDEN)
        out = mlp(xm)
    cases["gemma2_mlp"] = {
        "x": flat(xm),
        "gate": flat(mlp.gate_proj.weight),
        "up": flat(mlp.up_proj.weight),
        "down": flat(mlp.down_proj.weight),
        "out": flat(out),
    }
    cases["versions"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    OUT.write_text(json.dumps(cases, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
