#!/usr/bin/env python3
"""Check a model or adapter `cargo run --example finetune -- ... --out DIR` wrote:
transformers loads DIR (its model.safetensors, written by Transformer::save_safetensors,
beside the copied config and tokenizer), or, for an adapter (`--lora R`: DIR holds
adapter_config.json and adapter_model.safetensors, written by Lora::save_peft), PEFT
loads it onto its base checkpoint (`base_model_name_or_path`); and its logits of the
first training window are the ones the example's model gave (DIR/logits.json). Run by
hand, never by CI:

    pip install torch transformers peft
    cargo run --example finetune -- --model tests/fixtures/models/tiny-llama \\
        --text tests/fixtures/finetune/text.txt --tp-size 2 --lr 0.01 --out /tmp/finetuned
    python3 scripts/check_finetune.py /tmp/finetuned
    cargo run --example finetune -- --model tests/fixtures/models/tiny-llama \\
        --text tests/fixtures/finetune/text.txt --tp-size 3 --lr 0.01 --lora 8 --out /tmp/lora
    python3 scripts/check_finetune.py /tmp/lora

Exits nonzero when a tensor is missing or unexpected, or a logit differs by more than
1e-4 (both are f32 forwards of the same weights: the fixture's logits agree with
transformers' to 5e-6, tests/model.rs).
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def main(out):
    with open(f"{out}/logits.json") as f:
        ours = json.load(f)
    adapter = Path(out, "adapter_config.json")
    base = json.loads(adapter.read_text())["base_model_name_or_path"] if adapter.exists() else out
    model, info = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        sys.exit(f"loading {base}: {bad}")
    if adapter.exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, out)
        trained = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().max() > 0]
        if not trained:
            sys.exit(f"{out}: every lora_B is zero")
        print(f"{out}: PEFT loads the adapter onto {base} ({len(trained)} trained lora_B)")
    ids = torch.tensor([ours["ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].reshape(-1)
    want = torch.tensor(ours["logits"], dtype=torch.float32)
    diff = (logits - want).abs().max().item()
    print(f"{out}: max |logit diff| {diff:.3e} over {want.numel()} logits")
    if diff > 1e-4:
        sys.exit("the logits differ")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/finetuned")
