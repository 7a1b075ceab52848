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

    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in out.items()},
              str(OUT / "torch.safetensors"),
              metadata={"torch": torch.__version__})
    print(f"wrote {OUT / 'torch.safetensors'} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
