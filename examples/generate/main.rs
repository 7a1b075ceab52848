//! Generation with a Hugging Face checkpoint (safetensors) or a GGUF file (its blocks kept
//! quantized on the devices; Llama 1-3, Mistral, Qwen2/2.5, Qwen3, Phi-3, Gemma 2 and 3,
//! GPT-2) sharded over wgpu ranks: greedy, or sampled (`--temperature`, `--top-k`, `--top-p`,
//! `--min-p`, `--repetition-penalty`, `--seed`), ending at the checkpoint's
//! end-of-sequence ids (`generation_config.json`, else `config.json`), a `--stop` string
//! or `--max-new-tokens`.
//!
//! ```text
//! cargo run --release --example generate -- --model tests/fixtures/models/tiny-llama \
//!     --tp-size 4 --prompt-ids 1,17,42 --max-new-tokens 16
//! cargo run --release --example generate -- \
//!     --model tests/fixtures/gguf/models/llama-k.gguf --tp-size 2 --chat "hello"
//! cargo run --release --example generate -- --model tests/fixtures/models/tiny-llama \
//!     --tp-size 2 --chat "t5 t9" --temperature 0.8 --top-p 0.9 --seed 1
//! ```
//!
//! Prints the text as it comes, when a `tokenizer.json` sits beside the weights or the
//! GGUF file holds its tokenizer (`--prompt TEXT` then takes the prompt as text, `--chat
//! QUESTION` renders it with the chat template of `tokenizer_config.json` or the file's,
//! after `--system`), then the tokens, the
//! prefill and decode rates, and the bytes of tensors each rank's device holds once the
//! weights are loaded. Under `mpirun` (built with `--features
//! mpi`) the ranks spread over the processes as in `verify`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use wgpu_tp::load::{Checkpoint, Gguf, Tokenizer};
use wgpu_tp::model::ModelConfig;
use wgpu_tp::model::{Sampling, TextStream, Transformer};
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
#[command(about = "Generation with a safetensors checkpoint or a GGUF file on wgpu ranks")]
struct Args {
    /// Folder with config.json and model.safetensors (or model.safetensors.index.json),
    /// or one .safetensors file in such a folder (e.g. its bf16 weights), or a .gguf file
    /// (the first of a split one). f16 and bf16 weights stay at two bytes a value on the
    /// devices, quantized ones in their blocks.
    #[arg(long)]
    model: PathBuf,
    /// Tensor parallelism degree.
    #[arg(short, long, default_value_t = 1)]
    tp_size: usize,
    /// The prompt's token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["prompt", "chat"])]
    prompt_ids: Vec<u32>,
    /// The prompt as text, through the tokenizer.json beside the weights.
    #[arg(long, conflicts_with_all = ["prompt_ids", "chat"])]
    prompt: Option<String>,
    /// A question, as the user's message of a chat rendered with the chat template of
    /// the tokenizer_config.json beside the weights.
    #[arg(long, conflicts_with = "prompt_ids")]
    chat: Option<String>,
    /// The system message before --chat's question.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (transformers' default 50); 0 is off.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// Keep the most likely tokens up to this probability; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the tokens at least this times as likely as the most likely; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Divides the positive logits (multiplies the negative ones) of tokens already in
    /// the sequence; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// The seed of the random stream.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop strings (repeatable); the text ends before one.
    #[arg(long)]
    stop: Vec<String>,
    /// Do not stop at the checkpoint's end-of-sequence ids.
    #[arg(long)]
    ignore_eos: bool,
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

/// The weights: a safetensors checkpoint, or a GGUF file.
enum Weights {
    Checkpoint(Checkpoint),
    Gguf(Gguf),
}

impl Weights {
    fn open(path: &std::path::Path) -> wgpu_tp::Result<Self> {
        if path.extension().is_some_and(|e| e == "gguf") {
            Ok(Weights::Gguf(Gguf::open(path)?))
        } else {
            Ok(Weights::Checkpoint(Checkpoint::open(path)?))
        }
    }

    fn config(&self) -> wgpu_tp::Result<ModelConfig> {
        match self {
            Weights::Checkpoint(c) => ModelConfig::read(c),
            Weights::Gguf(g) => ModelConfig::read_gguf(g),
        }
    }

    fn load(&self, group: &Group) -> wgpu_tp::Result<Transformer> {
        match self {
            Weights::Checkpoint(c) => Transformer::from_checkpoint(group, c),
            Weights::Gguf(g) => Transformer::from_gguf(group, g),
        }
    }

    fn file_bytes(&self, path: &std::path::Path) -> u64 {
        match self {
            Weights::Checkpoint(c) => c.file_bytes(),
            Weights::Gguf(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }

    /// The tokenizer: beside the checkpoint, or in the GGUF file's metadata.
    fn tokenizer(&self) -> wgpu_tp::Result<Option<Tokenizer>> {
        match self {
            Weights::Checkpoint(c) => Tokenizer::beside(c.dir()),
            Weights::Gguf(g) if g.get("tokenizer.ggml.model").is_some() => {
                Tokenizer::from_gguf(g).map(Some)
            }
            Weights::Gguf(_) => Ok(None),
        }
    }

    /// Where a missing tokenizer should be.
    fn tokenizer_place(&self, path: &std::path::Path) -> String {
        match self {
            Weights::Checkpoint(c) => format!("a tokenizer.json in {}", c.dir().display()),
            Weights::Gguf(_) => format!("tokenizer metadata in {}", path.display()),
        }
    }

    /// The end-of-sequence ids without a tokenizer.
    fn eos_ids(&self) -> wgpu_tp::Result<Vec<u32>> {
        match self {
            Weights::Checkpoint(c) => Tokenizer::eos_token_ids(c.dir()),
            Weights::Gguf(g) => Ok(g
                .get("tokenizer.ggml.eos_token_id")
                .and_then(|v| v.as_count())
                .and_then(|v| u32::try_from(v).ok())
                .into_iter()
                .collect()),
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let weights = Weights::open(&args.model)?;
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
    let c = &weights.config()?;
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
        weights.file_bytes(&args.model)
    );
    let t = Instant::now();
    let model = weights.load(&group)?;
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
    let tokenizer = weights.tokenizer()?;
    let needs = |flag: &str| format!("{flag} needs {}", weights.tokenizer_place(&args.model));
    let prompt = &match (&args.prompt, &args.chat, &tokenizer) {
        (Some(text), _, Some(t)) => t.encode(text)?,
        (_, Some(question), Some(t)) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(("system", system.as_str()));
            }
            messages.push(("user", question.as_str()));
            t.encode_chat(&messages, true)?
        }
        (Some(_), _, None) => return Err(needs("--prompt").into()),
        (_, Some(_), None) => return Err(needs("--chat").into()),
        (None, None, _) => args.prompt_ids.clone(),
    };
    if prompt.is_empty() {
        return Err("an empty prompt".into());
    }
    let sampling = Sampling::default()
        .temperature(args.temperature)
        .top_k(args.top_k)
        .top_p(args.top_p)
        .min_p(args.min_p)
        .repetition_penalty(args.repetition_penalty)
        .seed(args.seed);
    let eos = match (&tokenizer, args.ignore_eos) {
        (_, true) => Vec::new(),
        (Some(t), false) => t.eos_ids().to_vec(),
        (None, false) => weights.eos_ids()?,
    };
    let most = c.max_positions.saturating_sub(prompt.len()) + 1;
    let max_new = args.max_new_tokens.min(most);
    let mut text = tokenizer
        .as_ref()
        .map(|t| TextStream::new(t).stop_strings(&args.stop));
    if let Some(t) = &tokenizer {
        say!("prompt: {:?}", t.decode(prompt)?);
    }
    let mut stream = model.stream(prompt, max_new, sampling)?.stop_ids(&eos);
    let mut tokens = Vec::new();
    let t0 = Instant::now();
    let mut first_at = None;
    let show = |piece: &str| {
        if spmd::lead() && !piece.is_empty() {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        }
    };
    for token in stream.by_ref() {
        tokens.push(token?);
        first_at.get_or_insert_with(|| t0.elapsed().as_secs_f64());
        if let Some(text) = &mut text {
            show(&text.push(tokens[tokens.len() - 1])?);
            if text.is_stopped() {
                break;
            }
        }
    }
    let total = t0.elapsed().as_secs_f64();
    if let Some(text) = &mut text {
        show(&text.finish()?);
        say!();
    }
    let prefill = first_at.unwrap_or(total);
    let decode = total - prefill;
    let steps = tokens.len().saturating_sub(1);
    let why = if text.as_ref().is_some_and(TextStream::is_stopped) {
        "a stop string"
    } else if tokens.last().is_some_and(|t| eos.contains(t)) {
        "an end-of-sequence id"
    } else {
        "--max-new-tokens"
    };
    say!("prompt ids: {prompt:?}");
    say!("generated:  {tokens:?} (ended by {why})");
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
