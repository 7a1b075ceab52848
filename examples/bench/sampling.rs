//! Section `sampling`: the decode step of the synthetic Llama of section `model` (vocab
//! 32000) at tp 2 with sampling against greedy: temperature 0.8, top-k 50 (transformers'
//! default), top-p 0.9, a repetition penalty of 1.1. Each rank reads back its shard of
//! the last row either way; sampling adds the host's filter over its 16,000 logits and the
//! merge of 2 x 50 candidates.

use std::time::Instant;

use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::{Sampler, Sampling, Transformer};
use wgpu_tp::reference::write_synthetic_llama;
use wgpu_tp::Group;

use crate::model::MODEL;

const PROMPT: usize = 8;
const STEPS: usize = 16;

/// The median sampled step over the median greedy step (16 steps each, taking turns).
pub fn sample_vs_greedy() -> Result<f64, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("wgpu-tp-bench-sampling");
    write_synthetic_llama(&dir, &MODEL, 5)?;
    let checkpoint = Checkpoint::open(&dir)?;
    let group = Group::builder().ranks_on_one_adapter(2).build()?;
    let model = Transformer::from_checkpoint(&group, &checkpoint)?;
    let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| 1 + 37 * i).collect();
    let sampling = Sampling::default()
        .temperature(0.8)
        .top_k(50)
        .top_p(0.9)
        .repetition_penalty(1.1)
        .seed(1);
    let mut sampler = Sampler::new(sampling)?;
    let (mut greedy_cache, mut sampled_cache) = (
        model.new_cache(PROMPT + STEPS + 1)?,
        model.new_cache(PROMPT + STEPS + 1)?,
    );
    let mut g = model.next_token(&prompt, &mut greedy_cache)?;
    let mut s = model.next_token_with(&prompt, &mut sampled_cache, &mut sampler)?;
    let (mut greedy, mut sampled) = (Vec::new(), Vec::new());
    for _ in 0..STEPS {
        let t = Instant::now();
        g = model.next_token(&[g], &mut greedy_cache)?;
        greedy.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        s = model.next_token_with(&[s], &mut sampled_cache, &mut sampler)?;
        sampled.push(t.elapsed().as_secs_f64());
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (greedy, sampled) = (median(greedy), median(sampled));
    println!(
        "  decode step, tp 2: greedy {:.1} ms, sampled (top-p 0.9, top-k 50) {:.1} ms",
        greedy * 1e3,
        sampled * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(sampled / greedy)
}
