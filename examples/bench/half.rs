//! Section `half`: bf16 weights against f32 weights of the same values. A [64, 4096] x
//! [4096, 4096] product and a decode-shaped [1, 4096] x [4096, 4096] one (the checkpoint
//! layout, `[out, in]`), the bytes the weight holds on the device, and the decode step of
//! the synthetic Llama of section `model` written in bf16 against the same in f32 (the
//! two models taking turns step by step).

use std::time::Duration;

use wgpu_tp::load::Checkpoint;
use wgpu_tp::reference::{write_synthetic_llama_as, Rng};
use wgpu_tp::{ops::matmul, Activation, DType, Group, Rank, Tensor, WeightLayout};

use crate::best;
use crate::model::{decode_seconds, MODEL};

pub struct Figures {
    pub gemm_bf16w_vs_f32: f64,
    pub gemv_bf16w_vs_f32: f64,
    pub weights_bytes_bf16_vs_f32: f64,
    pub decode_bf16_vs_f32: f64,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `[m, k] x W` on `rank`, waited for (the best of `reps`).
fn product_time(rank: &Rank, m: usize, w: &Tensor, reps: usize) -> Res<Duration> {
    let k = w.shape()[1];
    let x = Tensor::from_host(rank, &Rng::new(4).normal(m * k), [m, k])?;
    let layout = WeightLayout::OutIn;
    Ok(best(reps, || {
        let y = matmul(&x, w, None, layout, Activation::Identity)?;
        rank.wait_idle()?;
        drop(y);
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

pub fn run(reps: usize) -> Res<Figures> {
    let group = Group::builder().ranks_on_one_adapter(1).build()?;
    let rank = &group.ranks()[0];
    let (k, n) = (4096, 4096);
    let bits: Vec<u16> = Rng::new(5)
        .normal(k * n)
        .iter()
        .map(|v| (v.to_bits() >> 16) as u16)
        .collect();
    let wide: Vec<f32> = bits
        .iter()
        .map(|&h| f32::from_bits(u32::from(h) << 16))
        .collect();
    let before = rank.stats().tensor_bytes;
    let w16 = Tensor::from_half(rank, DType::BF16, &bits, [n, k])?;
    let bytes16 = rank.stats().tensor_bytes - before;
    let w32 = Tensor::from_host(rank, &wide, [n, k])?;
    let bytes32 = rank.stats().tensor_bytes - before - bytes16;
    drop((bits, wide));
    let (gemm16, gemm32) = (
        product_time(rank, 64, &w16, reps)?,
        product_time(rank, 64, &w32, reps)?,
    );
    let (gemv16, gemv32) = (
        product_time(rank, 1, &w16, reps)?,
        product_time(rank, 1, &w32, reps)?,
    );
    drop((w16, w32));
    let root = std::env::temp_dir().join("wgpu-tp-bench-half");
    let dirs = [root.join("bf16"), root.join("f32")];
    write_synthetic_llama_as(&dirs[0], &MODEL, 5, DType::BF16)?;
    write_synthetic_llama_as(&dirs[1], &MODEL, 5, DType::F32)?;
    let (c16, c32) = (Checkpoint::open(&dirs[0])?, Checkpoint::open(&dirs[1])?);
    let steps = decode_seconds(&[(&group, &c16), (&group, &c32)])?;
    let _ = std::fs::remove_dir_all(&root);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nbf16 weights against f32 weights of the same values (best of {reps})");
    println!(
        "  [64, 4096] x [4096, 4096]: bf16 {:.2} ms, f32 {:.2} ms",
        ms(gemm16),
        ms(gemm32)
    );
    println!(
        "  [1, 4096] x [4096, 4096]:  bf16 {:.2} ms, f32 {:.2} ms",
        ms(gemv16),
        ms(gemv32)
    );
    println!("  weight bytes: bf16 {bytes16}, f32 {bytes32}");
    println!(
        "  synthetic Llama decode step, tp 1: bf16 {:.1} ms ({:.1} tokens/s), f32 {:.1} ms ({:.1} tokens/s)",
        steps[0] * 1e3,
        1.0 / steps[0],
        steps[1] * 1e3,
        1.0 / steps[1]
    );
    Ok(Figures {
        gemm_bf16w_vs_f32: gemm16.as_secs_f64() / gemm32.as_secs_f64(),
        gemv_bf16w_vs_f32: gemv16.as_secs_f64() / gemv32.as_secs_f64(),
        weights_bytes_bf16_vs_f32: bytes16 as f64 / bytes32 as f64,
        decode_bf16_vs_f32: steps[0] / steps[1],
    })
}
