//! Section `model`: a synthetic Llama (hidden 1024, 4 layers, 16 heads, vocab 32000,
//! random weights written to a temporary safetensors file) decoding at tp 4 against tp 1,
//! on logical ranks sharing a device against devices; the bytes the largest rank holds
//! against the ideal; and the peak RSS of loading against the file (in a fresh process,
//! `--load-worker`, so the writing's memory does not count).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::Transformer;
use wgpu_tp::reference::{write_synthetic_llama, SyntheticLlama};
use wgpu_tp::Group;

pub const MODEL: SyntheticLlama = SyntheticLlama {
    vocab: 32000,
    hidden: 1024,
    intermediate: 2816,
    layers: 4,
    heads: 16,
    kv_heads: 16,
    positions: 256,
};
const PROMPT: usize = 8;
const STEPS: usize = 16;

pub struct Figures {
    pub decode_tp4_vs_tp1: f64,
    pub decode_shared_vs_devices: f64,
    pub weights_per_rank_vs_ideal: f64,
    pub load_peak_rss_vs_file: f64,
}

fn dir() -> PathBuf {
    std::env::temp_dir().join("wgpu-tp-bench-model")
}

/// Seconds per decode step of each (group, checkpoint) model (after an 8-token prefill),
/// the median of 16 steps. The models take turns step by step, so a change in the
/// machine's speed (it is shared) falls on all of them alike.
pub fn decode_seconds(
    models: &[(&Group, &Checkpoint)],
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let built = models
        .iter()
        .map(|(group, checkpoint)| Transformer::from_checkpoint(group, checkpoint))
        .collect::<Result<Vec<_>, _>>()?;
    decode_seconds_of(built)
}

/// [`decode_seconds`] of models already loaded.
pub fn decode_seconds_of(models: Vec<Transformer>) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| 1 + 37 * i).collect();
    let mut runs = Vec::with_capacity(models.len());
    for model in models {
        let mut cache = model.new_cache(PROMPT + STEPS + 1)?;
        let next = model.next_token(&prompt, &mut cache)?;
        runs.push((model, cache, next, Vec::with_capacity(STEPS)));
    }
    for _ in 0..STEPS {
        for (model, cache, next, times) in &mut runs {
            let t = Instant::now();
            *next = model.next_token(&[*next], cache)?;
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(runs
        .into_iter()
        .map(|(_, _, _, mut times)| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect())
}

/// `VmHWM` and `VmRSS` of this process in bytes (Linux; 0 elsewhere).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The `--load-worker` half: loads `dir` at tp 4 and prints `LOAD <peak RSS growth>
/// <file bytes> <device tensor bytes>`.
pub fn load_worker(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::builder().ranks_on_one_adapter(4).build()?;
    let (_, before) = rss();
    let checkpoint = Checkpoint::open(dir)?;
    let model = Transformer::from_checkpoint(&group, &checkpoint)?;
    group.wait_idle()?;
    let (peak, _) = rss();
    let device: u64 = group.ranks().iter().map(|r| r.stats().tensor_bytes).sum();
    println!(
        "LOAD {} {} {device}",
        peak.saturating_sub(before),
        checkpoint.file_bytes()
    );
    drop(model);
    Ok(())
}

pub fn run() -> Result<Figures, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let dir = dir();
    let file = write_synthetic_llama(&dir, &MODEL, 5)?;
    let checkpoint = Checkpoint::open(&dir)?;
    println!(
        "\nSynthetic Llama: hidden {}, {} layers, {} heads, vocab {}, {:.0} MB (written in {:.1} s)",
        MODEL.hidden,
        MODEL.layers,
        MODEL.heads,
        MODEL.vocab,
        file as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let one = Group::builder().ranks_on_one_adapter(1).build()?;
    let devices = Group::builder().ranks_on_one_adapter(4).build()?;
    let sharing = Group::builder().ranks_sharing_one_device(4).build()?;
    let c = &checkpoint;
    let times = decode_seconds(&[(&one, c), (&devices, c), (&sharing, c)])?;
    let (tp1, tp4, shared) = (times[0], times[1], times[2]);
    // The bytes each of 4 devices holds with the weights loaded, against the ideal: the
    // 2-D weights split 4 ways plus the replicated norms and rotary tables.
    let model = Transformer::from_checkpoint(&devices, &checkpoint)?;
    devices.wait_idle()?;
    let largest = devices
        .ranks()
        .iter()
        .map(|r| r.stats().tensor_bytes)
        .max()
        .unwrap_or(0);
    let (h, hd) = (MODEL.hidden as u64, (MODEL.hidden / MODEL.heads) as u64);
    let replicated = 4 * ((2 * MODEL.layers as u64 + 1) * h + MODEL.positions as u64 * hd);
    let sharded = file - 4 * (2 * MODEL.layers as u64 + 1) * h;
    let ideal = sharded as f64 / 4.0 + replicated as f64;
    drop(model);
    // Peak RSS of a fresh process loading the file.
    let out = Command::new(std::env::current_exe()?)
        .arg("--load-worker")
        .arg(&dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LOAD "))
        .ok_or_else(|| {
            format!(
                "the load worker failed: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (peak, device) = (v[0], v[2]);
    println!(
        "  decode step, tp 1:                     {:.1} ms",
        tp1 * 1e3
    );
    println!(
        "  decode step, tp 4 devices:             {:.1} ms",
        tp4 * 1e3
    );
    println!(
        "  decode step, tp 4 sharing one device:  {:.1} ms",
        shared * 1e3
    );
    println!(
        "  largest rank {:.1} MB, ideal {:.1} MB; loading grew RSS by {:.0} MB for a {:.0} MB file \
         ({:.0} MB of it the devices' tensors, host memory on a CPU adapter)",
        largest as f64 / 1e6,
        ideal / 1e6,
        peak / 1e6,
        file as f64 / 1e6,
        device / 1e6
    );
    println!("  ({:.1} s)", t0.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        decode_tp4_vs_tp1: tp4 / tp1,
        decode_shared_vs_devices: shared / tp4,
        weights_per_rank_vs_ideal: largest as f64 / ideal,
        load_peak_rss_vs_file: peak / file as f64,
    })
}
