#!/usr/bin/env python3
"""Write tests/fixtures/backward/torch.safetensors: PyTorch autograd's gradients of the
layers tests/torch_grads.rs checks the library's backward against. Run by hand, never
by CI; the file is committed (a few KB).

    pip install torch safetensors
    python3 scripts/make_backward_fixtures.py

Every tensor is float32 (targets int64), made by torch.Generator seeded 0, computed on
the CPU in float32 as a training step would:
- linear.*: y = x @ w.T + b (nn.Linear, w [out, in] = [22, 24]), x [5, 24], the output's
  gradient dy [5, 22]; x.grad, w.grad, b.grad.
- mlp_{tanh,erf}.*: fc2(gelu(fc1(x))) with fc1 [24 -> 22], fc2 [22 -> 24], gelu
  approximate='tanh' or exact; x [5, 24], dy [5, 24]; the gradients of x and of both
  layers' weights and biases.
- ce.*: F.cross_entropy(logits, targets, ignore_index=-100) (mean over the rows with a
  target) for logits [7, 53] with standard deviation 3 and every fourth row's target
  -100; the loss and logits.grad.
- attn_{llama,gemma}.*: transformers' eager attention (Llama's rotary embedding with
  theta 10000 and rotate_half, repeat_kv, the causal mask) of x [7, 16] with 8 query
  heads over 2 key/value heads of 8, q/k/v [out, in] with biases (Qwen2's), o [16, 64]
  without; "gemma" adds a sliding window of 3, the scale 0.3 and a logit soft cap of 2
  (Gemma 2's order: scaled, capped, masked). The output's gradient dy [7, 16]; the
  gradients of x, every weight and every bias.
- gmlp_{silu,gelu}.*: Llama's MLP, down(act(gate(x)) * up(x)) with F.silu or F.gelu
  approximate='tanh' (Gemma's), gate and up [22, 16], down [16, 22], no biases; x
  [5, 16], dy [5, 16]; the gradients of x and the three weights.
- {llama,gemma2,gpt2,qwen3,gemma3}.*: transformers' AutoModelForCausalLM of
  tests/fixtures/models/tiny-{llama,gemma2,gpt2,qwen3,gemma3} (eager attention) on the 16 ids
  (i * 37 + 5) % 128, labels the ids (the next-token cross-entropy over 15 tokens):
  <model>.loss and <model>.grad.<name> for every parameter (a tied head's gradient is
  its embedding's). Needs transformers too (pip install transformers).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "backward"


def main():
    g = torch.Generator().manual_seed(0)
    rand = lambda *s, std=1.0: (torch.randn(*s, generator=g) * std).float()
    out = {}

    x = rand(5, 24).requires_grad_()
    w = rand(22, 24, std=0.2).requires_grad_()
    b = rand(22).requires_grad_()
    dy = rand(5, 22)
    (x @ w.T + b).backward(dy)
    out.update({"linear.x": x, "linear.w": w, "linear.b": b, "linear.dy": dy,
                "linear.dx": x.grad, "linear.dw": w.grad, "linear.db": b.grad})

    for name, approximate in [("tanh", "tanh"), ("erf", "none")]:
        x = rand(5, 24).requires_grad_()
        w1 = rand(22, 24, std=0.2).requires_grad_()
        b1 = rand(22).requires_grad_()
        w2 = rand(24, 22, std=0.2).requires_grad_()
        b2 = rand(24).requires_grad_()
        dy = rand(5, 24)
        h = F.gelu(x @ w1.T + b1, approximate=approximate)
        (h @ w2.T + b2).backward(dy)
        p = f"mlp_{name}."
        out.update({p + "x": x, p + "w1": w1, p + "b1": b1, p + "w2": w2, p + "b2": b2,
                    p + "dy": dy, p + "dx": x.grad, p + "dw1": w1.grad, p + "db1": b1.grad,
                    p + "dw2": w2.grad, p + "db2": b2.grad})

    logits = rand(7, 53, std=3.0).requires_grad_()
    targets = torch.randint(0, 53, (7,), generator=g)
    targets[3::4] = -100
    loss = F.cross_entropy(logits, targets, ignore_index=-100)
    loss.backward()
    out.update({"ce.logits": logits, "ce.targets": targets, "ce.loss": loss.reshape(1),
                "ce.dlogits": logits.grad})

    for name, window, scale, softcap in [("llama", None, None, None), ("gemma", 3, 0.3, 2.0)]:
        out.update(attention(rand, f"attn_{name}.", window, scale, softcap))

    for name, act in [("silu", F.silu), ("gelu", lambda z: F.gelu(z, approximate="tanh"))]:
        x = rand(5, 16, std=2.0).requires_grad_()
        gate = rand(22, 16, std=0.3).requires_grad_()
        up = rand(22, 16, std=0.3).requires_grad_()
        down = rand(16, 22, std=0.3).requires_grad_()
        dy = rand(5, 16)
        ((act(x @ gate.T) * (x @ up.T)) @ down.T).backward(dy)
        p = f"gmlp_{name}."
        out.update({p + "x": x, p + "gate": gate, p + "up": up, p + "down": down, p + "dy": dy,
                    p + "dx": x.grad, p + "dgate": gate.grad, p + "dup": up.grad,
                    p + "ddown": down.grad})

    for name in ["llama", "gemma2", "gpt2", "qwen3", "gemma3"]:
        out.update(model_grads(name))

    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in out.items()},
              str(OUT / "torch.safetensors"),
              metadata={"torch": torch.__version__})
    print(f"wrote {OUT / 'torch.safetensors'} (torch {torch.__version__})")


def model_grads(name):
    from transformers import AutoModelForCausalLM

    path = OUT.parent / "models" / f"tiny-{name}"
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                 attn_implementation="eager")
    ids = torch.tensor([[(i * 37 + 5) % 128 for i in range(16)]])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    out = {f"{name}.loss": loss.detach().reshape(1)}
    out.update({f"{name}.grad.{n}": p.grad for n, p in model.named_parameters()})
    return out


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def attention(rand, p, window, scale, softcap):
    t, hidden, heads, kv_heads, hd = 7, 16, 8, 2, 8
    x = rand(t, hidden).requires_grad_()
    wq = rand(heads * hd, hidden, std=0.25).requires_grad_()
    wk = rand(kv_heads * hd, hidden, std=0.75).requires_grad_()
    wv = rand(kv_heads * hd, hidden, std=0.25).requires_grad_()
    wo = rand(hidden, heads * hd, std=0.15).requires_grad_()
    bq, bk, bv = (rand(n).requires_grad_() for n in (heads * hd, kv_heads * hd, kv_heads * hd))
    dy = rand(t, hidden)
    q = (x @ wq.T + bq).view(t, heads, hd).transpose(0, 1)
    k = (x @ wk.T + bk).view(t, kv_heads, hd).transpose(0, 1)
    v = (x @ wv.T + bv).view(t, kv_heads, hd).transpose(0, 1)
    # LlamaRotaryEmbedding (default rope_type): inv_freq in float32, angles in float32.
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.arange(t).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(heads // kv_heads, dim=0)
    v = v.repeat_interleave(heads // kv_heads, dim=0)
    s = (q @ k.transpose(1, 2)) * (hd ** -0.5 if scale is None else scale)
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    masked = j > i
    if window is not None:
        masked = masked | (j <= i - window)
    s = s.masked_fill(masked, float("-inf"))
    probs = torch.softmax(s, dim=-1, dtype=torch.float32)
    o = (probs @ v).transpose(0, 1).reshape(t, heads * hd)
    (o @ wo.T).backward(dy)
    named = {"x": x, "wq": wq, "wk": wk, "wv": wv, "wo": wo, "bq": bq, "bk": bk, "bv": bv}
    out = {p + n: v for n, v in named.items()}
    out[p + "dy"] = dy
    out.update({p + "d" + n: v.grad for n, v in named.items()})
    return out


if __name__ == "__main__":
    main()
