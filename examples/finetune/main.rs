//! `cargo run --example finetune -- --model DIR --text FILE [--tp-size N] [--steps S]
//! [--lora R] [--out DIR]`: fine-tuning of a safetensors checkpoint (a folder with its
//! `config.json` and `tokenizer.json`) on a text file, tensor-parallel over N ranks: the
//! whole model (Llama, Mistral, Qwen2, Qwen3 and Gemma 2 and 3 save back), or with
//! `--lora R` low-rank adapters
//! of rank R on its projections (`model::Lora`, the base frozen; any family with `[out,
//! in]` projections), saved as a PEFT adapter.
//!
//! The text is tokenized once and cut into windows of `--seq-len` tokens, each token
//! predicting the next; step `s` trains on window `s` (cycling): the model's backward
//! (`Transformer::backward`, or with `--sequence-parallel`
//! `Transformer::backward_sequence_parallel`), the global gradient norm clipped at `--clip`, AdamW at
//! `--lr`. It prints the loss of every step, then the first and last losses. With
//! `--out DIR` it writes the fine-tuned weights as `DIR/model.safetensors` (transformers'
//! names, f32) beside copies of the checkpoint's config and tokenizer files, so that
//! `AutoModelForCausalLM.from_pretrained(DIR)` loads it; with `--lora`, the adapter as
//! PEFT writes one (`DIR/adapter_model.safetensors`, `DIR/adapter_config.json` naming the
//! checkpoint's folder as its base), which `PeftModel.from_pretrained` loads. Either way
//! `DIR/logits.json` holds this model's logits of the first window, which
//! `scripts/check_finetune.py` compares with transformers' (and PEFT's) own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use wgpu_tp::load::{Checkpoint, Tokenizer};
use wgpu_tp::model::{Lora, LoraConfig, Transformer};
use wgpu_tp::nn::{clip_grad_norm, AdamW, AdamWConfig};
use wgpu_tp::{DistTensor, Group};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ranks {
    /// One device per rank on the first adapter.
    OneAdapter,
    /// Logical ranks sharing one device.
    SharedDevice,
}

#[derive(Parser, Debug)]
#[command(about = "Full fine-tuning of a checkpoint on a text file, tensor-parallel")]
struct Args {
    /// The checkpoint's folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// The text to train on (UTF-8).
    #[arg(long)]
    text: PathBuf,
    /// Ranks.
    #[arg(short, long, default_value_t = 1)]
    tp_size: usize,
    #[arg(long, value_enum, default_value_t = Ranks::OneAdapter)]
    ranks: Ranks,
    /// Training steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Tokens per step.
    #[arg(long, default_value_t = 32)]
    seq_len: usize,
    /// AdamW's learning rate (the tiny fixture learns its phrase at 0.01).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// The global gradient norm is clipped to this.
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Train low-rank adapters of this rank on the projections instead of every weight
    /// (0: full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora: usize,
    /// The adapters' `lora_alpha` (their update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f32,
    /// The modules adapted, comma-separated (PEFT's `target_modules`; `all-linear`:
    /// every projection of the blocks).
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    lora_targets: Vec<String>,
    /// Sequence parallelism: the residual stream and kept activations on each rank's
    /// tokens (`Transformer::backward_sequence_parallel`).
    #[arg(long)]
    sequence_parallel: bool,
    /// Where to write the fine-tuned model or adapter (and its first window's logits).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let checkpoint = Checkpoint::open(&args.model)?;
    let tokenizer = Tokenizer::beside(checkpoint.dir())?
        .ok_or_else(|| format!("no tokenizer.json in {}", args.model.display()))?;
    let text = std::fs::read_to_string(&args.text)?;
    let ids = tokenizer.encode(&text)?;
    let len = args.seq_len;
    if len < 2 || ids.len() < len {
        return Err(format!(
            "{} tokens of text for windows of --seq-len {len} (at least 2)",
            ids.len()
        )
        .into());
    }
    let windows: Vec<&[u32]> = ids.chunks_exact(len).collect();
    let builder = Group::builder();
    let group = match args.ranks {
        Ranks::OneAdapter => builder.ranks_on_one_adapter(args.tp_size),
        Ranks::SharedDevice => builder.ranks_sharing_one_device(args.tp_size),
    }
    .build()?;
    let model = Transformer::from_checkpoint(&group, &checkpoint)?;
    println!(
        "wgpu-tp finetune: {} on {} ({} tokens, {} windows of {len}), tp {}, {} steps, lr {}",
        args.model.display(),
        args.text.display(),
        ids.len(),
        windows.len(),
        group.world_size(),
        args.steps,
        args.lr
    );
    let lora = match args.lora {
        0 => None,
        rank => {
            let targets: Vec<&str> = args.lora_targets.iter().map(String::as_str).collect();
            let config = LoraConfig::default()
                .rank(rank)
                .alpha(args.lora_alpha)
                .targets(&targets);
            let lora = Lora::new(&model, config)?;
            println!("LoRA of rank {rank} on {} modules", lora.modules().len());
            Some(lora)
        }
    };
    let params = match &lora {
        Some(lora) => lora.parameters(),
        None => model.parameters(),
    };
    let refs: Vec<&DistTensor> = params.iter().collect();
    let mut opt = AdamW::new(&refs, AdamWConfig::default().lr(args.lr))?;
    let mut losses = Vec::with_capacity(args.steps);
    let t = Instant::now();
    for step in 0..args.steps {
        let window = windows[step % windows.len()];
        // Each token predicts the next; the window's last has none.
        let targets: Vec<Option<u32>> = (0..len).map(|i| window.get(i + 1).copied()).collect();
        // LoRA: the base frozen, only the adapters' gradients computed.
        let (loss, grads, counted) = match (&lora, args.sequence_parallel) {
            (Some(lora), false) => {
                let g = lora.backward(&model, window, &targets)?;
                (g.loss, g.grads, g.counted)
            }
            (Some(lora), true) => {
                let g = lora.backward_sequence_parallel(&model, window, &targets)?;
                (g.loss, g.grads, g.counted)
            }
            (None, false) => {
                let g = model.backward(window, &targets)?;
                (g.loss, g.grads, g.counted)
            }
            (None, true) => {
                let g = model.backward_sequence_parallel(window, &targets)?;
                (g.loss, g.grads, g.counted)
            }
        };
        let counted: Vec<&DistTensor> = counted.iter().collect();
        let norm = clip_grad_norm(&counted, args.clip)?;
        let all: Vec<&DistTensor> = grads.iter().collect();
        opt.step(&refs, &all, norm.scale)?;
        println!("step {step:>4}: loss {loss:.5}  grad norm {:.4}", norm.norm);
        losses.push(loss);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!(
        "loss: first {first:.5} -> last {last:.5} ({:.2} s a step)",
        t.elapsed().as_secs_f64() / args.steps as f64
    );
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)?;
        match &lora {
            Some(lora) => {
                let base = std::fs::canonicalize(&args.model)?;
                lora.save_peft(out, Some(&base.to_string_lossy()))?;
            }
            None => model.save_safetensors(out.join("model.safetensors"))?,
        }
        for file in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            // An adapter's folder holds no model config (PEFT's neither).
            let model_file = !file.starts_with("tokenizer");
            let from = args.model.join(file);
            if from.exists() && !(lora.is_some() && model_file) {
                std::fs::copy(&from, out.join(file))?;
            }
        }
        let logits = model.logits(windows[0], &mut model.new_cache(len)?)?;
        let json = format!(
            "{{\"ids\": {:?}, \"vocab\": {}, \"logits\": {:?}}}\n",
            windows[0],
            model.config().vocab_size,
            logits
        );
        std::fs::write(out.join("logits.json"), json)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
