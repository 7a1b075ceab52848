#!/usr/bin/env python3
"""Write tests/fixtures/lora/: PEFT adapters on the tiny Llama and Phi-3 fixtures and PyTorch
autograd's gradients of them, which tests/lora.rs checks `Lora` against. Run by hand,
never by CI; the files are committed (about 200 KB).

    pip install torch transformers peft safetensors
    python3 scripts/make_lora_fixtures.py

Two adapters, both with A and B drawn by torch.Generator seeded 0 (B nonzero, so that
both factors' gradients are):
- all/: r 4, lora_alpha 16 (scale 4) on q_proj, k_proj, v_proj, o_proj, gate_proj,
  up_proj and down_proj;
- qv/: r 2, lora_alpha 2 (scale 1) on q_proj and v_proj only (the fused q/k/v weight
  partly adapted);
- bf16/: all/'s adapter on the checkpoint's bf16 weights (model.bf16.safetensors),
  widened to float32 as the library's GEMMs widen them;
- phi3/: r 4, lora_alpha 8 (scale 2) on the tiny Phi-3's four modules, two of them fused
  (qkv_proj, gate_up_proj: one adapter each over the fused outputs), o_proj, down_proj;
- gpt2/: r 4, lora_alpha 8 on the tiny GPT-2's Conv1D modules (weights stored [in, out],
  PEFT's fan_in_fan_out): c_attn (q, k and v fused), both c_proj, c_fc.
Each folder holds the adapter as PeftModel.save_pretrained writes it
(adapter_config.json, adapter_model.safetensors) and expected.safetensors: the loss of
the 16 ids (i * 37 + 5) % 128 with labels the ids (transformers' next-token
cross-entropy over 15 tokens, eager attention, float32 on the CPU), the logits of those
ids, and grad.<name> for every adapter tensor (PEFT's names).
"""

import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
OUT = ROOT / "tests" / "fixtures" / "lora"


def make(name, r, alpha, targets, weights=None, model_name="tiny-llama"):
    MODEL = MODELS / model_name
    g = torch.Generator().manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        MODEL, dtype=torch.float32, attn_implementation="eager")
    if weights:
        state = {k: v.float() for k, v in load_file(MODEL / weights).items()}
        base.load_state_dict(state)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ids = torch.tensor([[(i * 37 + 5) % 128 for i in range(16)]])
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    expected = {"loss": out.loss.detach().reshape(1),
                "logits": out.logits.detach()[0].contiguous()}
    for n, p in model.named_parameters():
        if "lora_" in n:
            key = n.replace(".default", "")
            expected[f"grad.{key}"] = p.grad.contiguous()
    folder = OUT / name
    model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's model card template
    # PEFT writes its target set in hash order and the base's absolute path: made stable.
    path = folder / "adapter_config.json"
    saved = json.loads(path.read_text())
    saved["target_modules"] = sorted(saved["target_modules"])
    saved["base_model_name_or_path"] = str(MODEL.relative_to(ROOT))
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    save_file(expected, folder / "expected.safetensors")
    print(f"{folder}: loss {out.loss.item():.6f}, {len(expected) - 2} gradients")


def main():
    torch.manual_seed(0)
    make("all", 4, 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"])
    make("qv", 2, 2, ["q_proj", "v_proj"])
    make("bf16", 4, 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                         "down_proj"], weights="model.bf16.safetensors")
    make("phi3", 4, 8, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
         model_name="tiny-phi3")
    make("gpt2", 4, 8, ["c_attn", "c_proj", "c_fc"], model_name="tiny-gpt2")


if __name__ == "__main__":
    main()
