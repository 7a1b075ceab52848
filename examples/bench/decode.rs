//! Decode-shaped work against its floors: a batch-1 product and a batch-1 MLP against the
//! time to copy their weights once on the device, and a small all-reduce against one
//! read-back plus upload of the same bytes.

use std::time::Duration;

use wgpu_tp::reference::Rng;
use wgpu_tp::{
    ops::{self, matmul},
    Activation, DistTensor, Group, HostLinear, ParallelMlp, Placement, Rank, Tensor, WeightLayout,
};

use crate::{best, median};

pub struct Figures {
    pub gemv_vs_floor: f64,
    pub mlp_batch1_vs_floor: f64,
    pub allreduce_16k_vs_roundtrip: f64,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The time to copy `bytes` from one device buffer to another on `rank`, waited for: the
/// floor of a product that reads that many bytes of weights once.
pub fn copy_time(rank: &Rank, bytes: u64, reps: usize) -> Res<Duration> {
    let device = rank.device();
    let make = || {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench copy"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let (src, dst) = (make(), make());
    // Touch both once so page faults are not timed.
    let mut enc = device.create_command_encoder(&Default::default());
    enc.clear_buffer(&src, 0, None);
    enc.clear_buffer(&dst, 0, None);
    rank.queue().submit([enc.finish()]);
    Ok(best(reps, || {
        let mut enc = device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        rank.queue().submit([enc.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ())
    })?)
}

/// `[1, k] x [k, n]` on one device, waited for, in `layout`.
fn gemv_time(rank: &Rank, k: usize, n: usize, layout: WeightLayout, reps: usize) -> Res<Duration> {
    let mut rng = Rng::new(3);
    let w = Tensor::from_host(rank, &rng.normal(k * n), layout.stored_shape(k, n))?;
    let x = Tensor::from_host(rank, &rng.normal(k), [1, k])?;
    Ok(best(reps, || {
        let y = matmul(&x, &w, None, layout, Activation::Identity)?;
        rank.wait_idle()?;
        drop(y);
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

/// The batch-1 Megatron MLP (forward and read-back) at `tp` on one adapter.
fn mlp_time(tp: usize, hidden: usize, ffn: usize, reps: usize) -> Res<Duration> {
    let group = Group::builder().ranks_on_one_adapter(tp).build()?;
    let mut rng = Rng::new(5);
    let w1 = rng.xavier(hidden * ffn, hidden, ffn);
    let w2 = rng.xavier(ffn * hidden, ffn, hidden);
    let (b1, b2) = (rng.normal(ffn), rng.normal(hidden));
    let mlp = ParallelMlp::from_full(
        &group,
        HostLinear::new(&w1, hidden, ffn, WeightLayout::InOut).with_bias(&b1),
        HostLinear::new(&w2, ffn, hidden, WeightLayout::InOut).with_bias(&b2),
        Activation::GeluTanh,
    )?;
    let x = DistTensor::replicate(&group, &rng.normal(hidden), [1, hidden])?;
    Ok(best(reps, || {
        mlp.forward(&x)?.to_host()?;
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

/// One read-back and one upload of `elems` floats on `rank`, through the library's own
/// paths (what an all-reduce of one rank would cost at least).
fn roundtrip_time(rank: &Rank, elems: usize, reps: usize) -> Res<Duration> {
    let t = Tensor::from_host(rank, &vec![1.0; elems], [1, elems])?;
    Ok(median(reps, || {
        let host = t.to_host()?;
        let back = Tensor::from_host(rank, &host, [1, elems])?;
        rank.wait_idle()?;
        drop(back);
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

/// A `ranks`-rank all-reduce of `elems` floats, waited for on every rank.
fn allreduce_time(group: &Group, elems: usize, reps: usize) -> Res<Duration> {
    let locals = group
        .ranks()
        .iter()
        .enumerate()
        .map(|(r, rank)| Tensor::from_host(rank, &vec![r as f32 + 0.5; elems], [1, elems]))
        .collect::<Result<Vec<_>, _>>()?;
    let x = DistTensor::from_locals(group, locals, Placement::Partial)?;
    let want: f32 = (0..group.world_size()).map(|r| r as f32 + 0.5).sum();
    if x.all_reduce()?.to_host()?.iter().any(|&v| v != want) {
        return Err("the all-reduce gave a wrong sum".into());
    }
    Ok(median(reps, || {
        let y = x.all_reduce()?;
        group.wait_idle()?;
        drop(y);
        Ok::<(), wgpu_tp::Error>(())
    })?)
}

/// Decode steps take milliseconds: many more repetitions than the other sections for the
/// same time, which steadies the figures on a shared machine.
const REPS_PER_REP: usize = 8;

pub fn run(reps: usize) -> Res<Figures> {
    let reps = reps.max(5) * REPS_PER_REP;
    let group = Group::builder().ranks_on_one_adapter(1).build()?;
    let rank = &group.ranks()[0];
    let (k, n) = (4096, 4096);
    let bytes = (k * n * 4) as u64;
    let floor = copy_time(rank, bytes, reps)?.as_secs_f64();
    println!(
        "\nDecode shapes on {} (best of {reps}; the 16 KiB figures medians of {})",
        rank.adapter_info().name,
        5 * reps
    );
    println!(
        "  copy of {} MiB on the device: {:.2} ms ({:.1} GB/s)",
        bytes >> 20,
        floor * 1e3,
        bytes as f64 / floor / 1e9
    );
    let mut gemv = f64::INFINITY;
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let t = gemv_time(rank, k, n, layout, reps)?.as_secs_f64();
        println!(
            "  [1, {k}] x [{k}, {n}] {layout} ({}): {:.2} ms, {:.2} x the copy",
            ops::gemm_kernel_for(rank, 1, n, k, layout),
            t * 1e3,
            t / floor
        );
        if layout == WeightLayout::InOut {
            gemv = t / floor;
        }
    }
    let (hidden, ffn) = (1024, 4096);
    let mlp_bytes = (2 * hidden * ffn * 4) as u64;
    let mlp_floor = copy_time(rank, mlp_bytes, reps)?.as_secs_f64();
    drop(group);
    let mlp = mlp_time(4, hidden, ffn, reps)?.as_secs_f64();
    println!(
        "  MLP {hidden} -> {ffn} -> {hidden}, batch 1, tp 4 on one adapter: {:.2} ms; \
         copy of its {} MiB of weights {:.2} ms",
        mlp * 1e3,
        mlp_bytes >> 20,
        mlp_floor * 1e3
    );
    let elems = 4096;
    let group = Group::builder().ranks_on_one_adapter(4).build()?;
    // Tenths of a millisecond each: five times the repetitions again, medians.
    let small_reps = 5 * reps;
    let roundtrip = roundtrip_time(&group.ranks()[0], elems, small_reps)?.as_secs_f64();
    let host = allreduce_time(&group, elems, small_reps)?.as_secs_f64();
    drop(group);
    let shared_group = Group::builder().ranks_sharing_one_device(4).build()?;
    let shared = allreduce_time(&shared_group, elems, small_reps)?.as_secs_f64();
    println!(
        "  16 KiB: read-back + upload on one device {:.3} ms; all-reduce over 4 devices \
         {:.3} ms, over 4 ranks sharing one device {:.3} ms",
        roundtrip * 1e3,
        host * 1e3,
        shared * 1e3
    );
    Ok(Figures {
        gemv_vs_floor: gemv,
        mlp_batch1_vs_floor: mlp / mlp_floor,
        allreduce_16k_vs_roundtrip: host / roundtrip,
    })
}
