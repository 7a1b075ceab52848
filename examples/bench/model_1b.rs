//! A Llama-3.2-1B-shaped model (bf16 random weights the bench writes to a temporary
//! file) decoding one token at a time at tp 1, against the floor: the time the device
//! takes to read the bytes of weights a token reads once (a device copy of as many
//! bytes). `decode_1b_vs_floor` is their ratio.

use std::path::PathBuf;

use wgpu_tp::load::Checkpoint;
use wgpu_tp::ops::matmul;
use wgpu_tp::reference::{write_synthetic_llama_as, Rng, SyntheticLlama};
use wgpu_tp::{Activation, DType, Group, Rank, Tensor, WeightLayout};

use crate::best;
use crate::decode::copy_time;
use crate::model::decode_seconds;

pub struct Figures {
    pub decode_1b_vs_floor: f64,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Llama-3.2-1B's sizes (its head untied here: the bytes a token reads are the same).
pub const SHAPE: SyntheticLlama = SyntheticLlama {
    vocab: 128_256,
    hidden: 2048,
    intermediate: 8192,
    layers: 16,
    heads: 32,
    kv_heads: 8,
    positions: 4096,
};

pub fn dir() -> PathBuf {
    std::env::temp_dir().join("wgpu-tp-bench-1b")
}

/// `[1, k] x [k, n]` with bf16 weights stored `[n, k]`, waited for (the best of `reps`).
fn gemv_bf16(rank: &Rank, n: usize, k: usize, reps: usize) -> Res<f64> {
    let layout = WeightLayout::OutIn;
    let bits: Vec<u16> = Rng::new(5)
        .normal(n * k)
        .iter()
        .map(|v| (v.to_bits() >> 16) as u16)
        .collect();
    let w = Tensor::from_half(rank, DType::BF16, &bits, layout.stored_shape(k, n))?;
    let x = Tensor::from_host(rank, &Rng::new(4).normal(k), [1, k])?;
    Ok(best(reps, || {
        let y = matmul(&x, &w, None, layout, Activation::Identity)?;
        rank.wait_idle()?;
        drop(y);
        Ok::<(), wgpu_tp::Error>(())
    })?
    .as_secs_f64())
}

pub fn run(reps: usize) -> Res<Figures> {
    let dir = dir();
    if !dir.join("model.safetensors").exists() {
        println!(
            "  writing a Llama-3.2-1B-shaped bf16 checkpoint to {} ...",
            dir.display()
        );
        write_synthetic_llama_as(&dir, &SHAPE, 11, DType::BF16)?;
    }
    let checkpoint = Checkpoint::open(&dir)?;
    let group = Group::builder().ranks_on_one_adapter(1).build()?;
    let step = decode_seconds(&[(&group, &checkpoint)])?[0];
    // The weights a token reads: every block's projections and the head, 2 bytes each
    // (the embedding table gives one row).
    let s = SHAPE;
    let hd = s.hidden / s.heads;
    let (q, kv) = (s.heads * hd, s.kv_heads * hd);
    let block = s.hidden * (q + 2 * kv) + q * s.hidden + 3 * s.hidden * s.intermediate;
    let bytes = 2 * (s.layers * block + s.vocab * s.hidden) as u64;
    // Copied in 256 MiB pieces (under every adapter's largest buffer); the copy rate is
    // flat at that size.
    let piece = 256u64 << 20;
    let floor =
        copy_time(&group.ranks()[0], piece, reps)?.as_secs_f64() * bytes as f64 / piece as f64;
    // Where a step's time goes: each product of a block and the head alone, bf16.
    let rank = &group.ranks()[0];
    let mut products = 0.0;
    for (what, n, k, times) in [
        ("q|k|v", q + 2 * kv, s.hidden, s.layers),
        ("o", s.hidden, q, s.layers),
        ("gate|up", 2 * s.intermediate, s.hidden, s.layers),
        ("down", s.hidden, s.intermediate, s.layers),
        ("head", s.vocab, s.hidden, 1),
    ] {
        let t = gemv_bf16(rank, n, k, reps)?;
        products += t * times as f64;
        println!(
            "  {what} [1, {k}] x [{k}, {n}] bf16 [out, in]: {:.2} ms (x {times}); floor {:.2} ms",
            t * 1e3,
            copy_time(rank, (2 * n * k) as u64, reps)?.as_secs_f64() * 1e3
        );
    }
    println!("  the products alone: {:.1} ms a step", products * 1e3);
    println!(
        "  decode step, Llama-3.2-1B shape, bf16, tp 1: {:.1} ms; floor (copy {:.2} GB): {:.1} ms",
        step * 1e3,
        bytes as f64 / 1e9,
        floor * 1e3
    );
    Ok(Figures {
        decode_1b_vs_floor: step / floor,
    })
}
