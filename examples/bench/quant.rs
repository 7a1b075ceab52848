//! Section `quant`: GGUF Q4_K weights (kept in the file's blocks, decoded in the kernels)
//! against bf16 ones. The device bytes a weight takes against f32 of the same shape, the
//! decode-shaped `[1, 8192] x [8192, 2048]` product (Llama-3.2-1B's down projection) in
//! each type, and the decode step of a Llama-3.2-1B-shaped model written by the bench as a
//! Q4_K GGUF (Q6_K head, as llama.cpp's Q4_K_M) against the same shape in bf16, and
//! against its floor: the time the device takes to read the bytes a token reads once.

use std::path::PathBuf;
use std::time::Duration;

use wgpu_tp::load::{Checkpoint, Gguf};
use wgpu_tp::model::Transformer;
use wgpu_tp::reference::{write_synthetic_llama_as, write_synthetic_llama_gguf, Rng};
use wgpu_tp::{ops::matmul, Activation, DType, Group, Rank, Tensor, WeightLayout};

use crate::best;
use crate::decode::copy_time;
use crate::model::decode_seconds_of;
use crate::model_1b::SHAPE;

pub struct Figures {
    pub weights_bytes_q4k_vs_f32: f64,
    pub decode_q4k_vs_bf16: f64,
    pub decode_q4k_vs_floor: f64,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `[1, k] x W` on `rank`, waited for (the best of `reps`).
fn gemv_time(rank: &Rank, w: &Tensor, reps: usize) -> Res<Duration> {
    let k = w.shape()[1];
    let x = Tensor::from_host(rank, &Rng::new(4).normal(k), [1, k])?;
    Ok(best(reps, || {
        let y = matmul(&x, w, None, WeightLayout::OutIn, Activation::Identity)?;
        rank.wait_idle()?;
        drop(y);
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

/// `values` random bytes of Q4_K blocks under small scales.
fn q4k_blocks(values: usize) -> Vec<u8> {
    let mut rng = Rng::new(9);
    let mut out: Vec<u8> = (0..DType::Q4K.bytes_of(values))
        .map(|_| rng.next_u64() as u8)
        .collect();
    for b in out.chunks_exact_mut(DType::Q4K.block_bytes()) {
        b[..4].copy_from_slice(&[0x00, 0x0c, 0x00, 0x0c]);
    }
    out
}

fn dir() -> PathBuf {
    std::env::temp_dir().join("wgpu-tp-bench-quant")
}

pub fn run(reps: usize) -> Res<Figures> {
    let group = Group::builder().ranks_on_one_adapter(1).build()?;
    let rank = &group.ranks()[0];
    let (n, k) = (2048, 8192);
    let before = rank.stats().tensor_bytes;
    let q = Tensor::from_packed(rank, DType::Q4K, &q4k_blocks(n * k), [n, k])?;
    let bytes_q = rank.stats().tensor_bytes - before;
    let bits: Vec<u16> = Rng::new(5)
        .normal(n * k)
        .iter()
        .map(|v| (v.to_bits() >> 16) as u16)
        .collect();
    let b16 = Tensor::from_half(rank, DType::BF16, &bits, [n, k])?;
    let bytes_f32 = (4 * n * k) as f64;
    let (tq, t16) = (gemv_time(rank, &q, reps)?, gemv_time(rank, &b16, reps)?);
    let floor_q = copy_time(rank, bytes_q, reps)?;
    drop((q, b16, bits));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nQ4_K weights against bf16 (best of {reps})");
    println!(
        "  [1, {k}] x [{k}, {n}] [out, in]: q4_k {:.2} ms (floor {:.2} ms), bf16 {:.2} ms",
        ms(tq),
        ms(floor_q),
        ms(t16)
    );

    // The decode step of the 1B shape in both types, taking turns step by step.
    let dir = dir();
    let gguf_path = dir.join("model-q4_k.gguf");
    if !gguf_path.exists() {
        println!(
            "  writing a Llama-3.2-1B-shaped Q4_K GGUF to {} ...",
            dir.display()
        );
        write_synthetic_llama_gguf(&gguf_path, &SHAPE, 11, DType::Q4K, DType::Q6K)?;
    }
    let bf16_dir = crate::model_1b::dir();
    if !bf16_dir.join("model.safetensors").exists() {
        println!(
            "  writing the bf16 checkpoint to {} ...",
            bf16_dir.display()
        );
        write_synthetic_llama_as(&bf16_dir, &SHAPE, 11, DType::BF16)?;
    }
    let quantized = Transformer::from_gguf(&group, &Gguf::open(&gguf_path)?)?;
    let bf16 = Transformer::from_checkpoint(&group, &Checkpoint::open(&bf16_dir)?)?;
    let steps = decode_seconds_of(vec![quantized, bf16])?;
    // The bytes a token reads: every block's projections in Q4_K, the head in Q6_K.
    let s = SHAPE;
    let hd = s.hidden / s.heads;
    let (qo, kv) = (s.heads * hd, s.kv_heads * hd);
    let block = s.hidden * (qo + 2 * kv) + qo * s.hidden + 3 * s.hidden * s.intermediate;
    let bytes =
        (DType::Q4K.bytes_of(s.layers * block) + DType::Q6K.bytes_of(s.vocab * s.hidden)) as u64;
    let piece = 256u64 << 20;
    let floor = copy_time(rank, piece, reps)?.as_secs_f64() * bytes as f64 / piece as f64;
    println!(
        "  decode step, Llama-3.2-1B shape, tp 1: q4_k {:.1} ms, bf16 {:.1} ms; q4_k floor \
         (copy {:.2} GB): {:.1} ms",
        steps[0] * 1e3,
        steps[1] * 1e3,
        bytes as f64 / 1e9,
        floor * 1e3
    );
    Ok(Figures {
        weights_bytes_q4k_vs_f32: bytes_q as f64 / bytes_f32,
        decode_q4k_vs_bf16: steps[0] / steps[1],
        decode_q4k_vs_floor: steps[0] / floor,
    })
}
