//! Greedy generation with a Hugging Face checkpoint (Llama family or GPT-2, safetensors)
//! sharded over wgpu ranks.
//!
//! ```text
//! cargo run --release --example generate -- --model tests/fixtures/models/tiny-llama \
//!     --tp-size 4 --prompt-ids 1,17,42 --max-new-tokens 16
//! ```
//!
//! Prints the tokens (and their text, when a `tokenizer.json` sits beside the weights;
//! `--prompt TEXT` then takes the prompt as text), the prefill and decode rates, and the
//! bytes of tensors each rank's device holds once the weights are loaded. Under `mpirun` (built with `--features
//! mpi`) the ranks spread over the processes as in `verify`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::Transformer;
use wgpu_tp::{wgpu, Group, Numerics};

#[path = "../verify/spmd.rs"]
mod spmd;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ranks {
    /// tp-size devices requested from one adapter
    OneAdapter,
    /// ranks spread round-robin over every adapter found
    PerAdapter,
    /// tp-size logical ranks sharing one device
    SharedDevice,
}

#[derive(Debug, Parser)]
#[command(about = "Greedy generation with a safetensors checkpoint on wgpu ranks")]
struct Args {
    /// Folder with config.json and model.safetensors (or model.safetensors.index.json),
    /// or one .safetensors file in such a folder (e.g. its bf16 weights). f16 and bf16
    /// weights stay at two bytes a value on the devices.
    #[arg(long)]
    model: PathBuf,
    /// Tensor parallelism degree.
    #[arg(short, long, default_value_t = 1)]
    tp_size: usize,
    /// The prompt's token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present = "prompt")]
    prompt_ids: Vec<u32>,
    /// The prompt as text, through the tokenizer.json beside the weights.
    #[arg(long, conflicts_with = "prompt_ids")]
    prompt: Option<String>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// How ranks are made.
    #[arg(long, value_enum, default_value_t = Ranks::OneAdapter)]
    ranks: Ranks,
    /// Backends, comma-separated (vulkan, gl, metal, dx12); default WGPU_BACKEND, else all.
    #[arg(long, value_delimiter = ',')]
    backend: Vec<String>,
    /// fast or tp-invariant.
    #[arg(long, default_value = "fast")]
    numerics: Numerics,
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
    let mut builder = Group::builder().numerics(args.numerics);
    if !args.backend.is_empty() {
        let list = args.backend.join(",");
        let backends = wgpu::Backends::from_comma_list(&list);
        if backends.is_empty() {
            return Err(format!("--backend {list}: no backend named").into());
        }
        builder = builder.backends(backends);
    }
    let (builder, local) = spmd::spread(builder, args.tp_size)?;
    let n = local.unwrap_or(args.tp_size);
    let builder = match args.ranks {
        Ranks::OneAdapter => builder.ranks_on_one_adapter(n),
        Ranks::PerAdapter => builder.spread_over_adapters(n),
        Ranks::SharedDevice => builder.ranks_sharing_one_device(n),
    };
    let group = builder.build()?;
    let c = &wgpu_tp::model::ModelConfig::read(&checkpoint)?;
    say!(
        "wgpu-tp generate: {} ({:?}, {} layers, hidden {}, {} heads / {} kv, vocab {}), tp {}, \
         {} process(es), {} bytes of weights on disk",
        args.model.display(),
        c.architecture,
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.vocab_size,
        group.world_size(),
        group.process_count(),
        checkpoint.file_bytes()
    );
    let t = Instant::now();
    let model = Transformer::from_checkpoint(&group, &checkpoint)?;
    let load = t.elapsed().as_secs_f64();
    for r in group.ranks() {
        let i = r.adapter_info();
        println!(
            "  rank {} (process {}): {} ({:?}), {} bytes of weights on its device",
            r.index(),
            group.process_index(),
            i.name,
            i.backend,
            r.stats().tensor_bytes
        );
    }
    say!("  loaded in {load:.2} s");
    let tokenizer = wgpu_tp::load::Tokenizer::beside(checkpoint.dir())?;
    let prompt = &match (&args.prompt, &tokenizer) {
        (Some(text), Some(t)) => t.encode(text)?,
        (Some(_), None) => {
            return Err(format!(
                "--prompt needs a tokenizer.json in {}",
                checkpoint.dir().display()
            )
            .into())
        }
        (None, _) => args.prompt_ids.clone(),
    };
    if prompt.is_empty() {
        return Err("an empty prompt".into());
    }
    let capacity = (prompt.len() + args.max_new_tokens).min(c.max_positions);
    let mut cache = model.new_cache(capacity)?;
    let t = Instant::now();
    let first = model.next_token(prompt, &mut cache)?;
    let prefill = t.elapsed().as_secs_f64();
    let mut tokens = vec![first];
    tokens.truncate(args.max_new_tokens);
    let t = Instant::now();
    while !tokens.is_empty() && tokens.len() < args.max_new_tokens {
        let last = tokens[tokens.len() - 1];
        tokens.push(model.next_token(&[last], &mut cache)?);
    }
    let decode = t.elapsed().as_secs_f64();
    let steps = tokens.len().saturating_sub(1);
    say!("prompt ids: {prompt:?}");
    say!("generated:  {tokens:?}");
    if let Some(t) = &tokenizer {
        say!(
            "text:       {:?} -> {:?}",
            t.decode(prompt)?,
            t.decode(&tokens)?
        );
    }
    say!(
        "prefill: {} tokens in {:.1} ms ({:.1} tokens/s); decode: {steps} tokens in {:.1} ms ({:.1} tokens/s)",
        prompt.len(),
        prefill * 1e3,
        prompt.len() as f64 / prefill,
        decode * 1e3,
        if steps > 0 { steps as f64 / decode } else { 0.0 }
    );
    Ok(())
}
