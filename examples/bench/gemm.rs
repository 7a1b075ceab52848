//! GEMM GFLOP/s: the WGSL kernel on the first rank against the `gemm` crate on all cores.

use std::time::Duration;

use wgpu_tp::reference::Rng;
use wgpu_tp::{ops, Activation, Group, Tensor, WeightLayout};

use crate::best;

/// The figures of one run: the adapter that ran the WGSL kernel, one row per size.
pub struct Gemm {
    /// Name and backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits), Vulkan`.
    pub adapter: String,
    pub rows: Vec<Row>,
}

/// One size's figures.
pub struct Row {
    pub n: usize,
    pub wgsl_gflops: f64,
    pub cpu_gflops: f64,
    /// GFLOP/s from GPU timestamps around the kernels alone, where the adapter has them.
    pub kernel_gflops: Option<f64>,
}

const TIMESTAMPS: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

/// GPU time of `batch` products, from timestamps written before and after them on the
/// queue: kernel time only, no submission, allocation or read-back.
fn gpu_time(
    rank: &wgpu_tp::Rank,
    batch: usize,
    mut run: impl FnMut() -> Result<(), wgpu_tp::Error>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let device = rank.device();
    let set = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    let resolve = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.write_timestamp(&set, 0);
    rank.queue().submit([enc.finish()]);
    for _ in 0..batch {
        run()?;
    }
    let mut enc = device.create_command_encoder(&Default::default());
    enc.write_timestamp(&set, 1);
    enc.resolve_query_set(&set, 0..2, &resolve, 0);
    enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
    rank.queue().submit([enc.finish()]);
    read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&read.slice(..).get_mapped_range()?);
    let ns =
        (ticks[1].saturating_sub(ticks[0])) as f64 * f64::from(rank.queue().get_timestamp_period());
    Ok(Duration::from_nanos(ns as u64) / batch as u32)
}

fn gflops(n: usize, t: Duration) -> f64 {
    2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9
}

/// Best of `reps`; a batch of back-to-back products per timing, so the figure is kernel time, not
/// submission or read-back latency (the transfer section measures those).
pub fn run(sizes: &[usize], reps: usize) -> Result<Gemm, Box<dyn std::error::Error>> {
    let group = match Group::builder()
        .ranks_on_one_adapter(1)
        .required_features(TIMESTAMPS)
        .build()
    {
        Ok(g) => g,
        Err(_) => Group::builder().ranks_on_one_adapter(1).build()?,
    };
    let timed = group.ranks()[0].device().features().contains(TIMESTAMPS);
    let rank = &group.ranks()[0];
    let info = rank.adapter_info();
    println!(
        "GEMM, f32, [N, N] x [N, N]: {} ({:?}, {:?}) vs the gemm crate on {} threads",
        info.name,
        info.backend,
        info.device_type,
        threads()
    );
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>12} {:>7}",
        "N", "kernel", "WGSL GF/s", "(timestamps)", "CPU GF/s", "ratio"
    );
    let mut rows = Vec::new();
    for &n in sizes {
        let mut rng = Rng::new(n as u64);
        let (a, b) = (rng.normal(n * n), rng.normal(n * n));
        let x = Tensor::from_host(rank, &a, [n, n])?;
        let w = Tensor::from_host(rank, &b, [n, n])?;
        let batch = if n <= 512 { 8 } else { 2 };
        let t = best(reps, || {
            for _ in 0..batch {
                ops::matmul(&x, &w, None, WeightLayout::InOut, Activation::Identity)?;
            }
            rank.wait_idle()
        })?;
        let wgsl = gflops(n, t / batch as u32);
        let mm = || ops::matmul(&x, &w, None, WeightLayout::InOut, Activation::Identity).map(drop);
        let kernel_gflops = if timed {
            Some(gflops(n, gpu_time(rank, batch, mm)?))
        } else {
            None
        };
        let mut c = vec![0f32; n * n];
        let t = best(2 * reps * batch, || {
            cpu_gemm(n, &a, &b, &mut c);
            Ok::<(), wgpu_tp::Error>(())
        })?;
        let cpu = gflops(n, t);
        // A fast wrong answer is no figure: both results must agree.
        let y = ops::matmul(&x, &w, None, WeightLayout::InOut, Activation::Identity)?.to_host()?;
        let diff = y
            .iter()
            .zip(&c)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        // Entries are sums of n products of N(0, 1) values: |entry| ~ sqrt(n), and two
        // f32 summation orders differ by at most about n * 2^-24 * n in the worst case.
        let bound = (n * n) as f32 * f32::EPSILON;
        if diff > bound {
            return Err(format!("N = {n}: WGSL and CPU differ by {diff} (> {bound})").into());
        }
        let kernel = ops::gemm_kernel_for(rank, n, n, n, WeightLayout::InOut);
        println!(
            "{n:>6} {:>8} {wgsl:>12.1} {:>14} {cpu:>12.1} {:>7.3}",
            format!("{kernel:?}"),
            kernel_gflops.map_or("n/a".into(), |g| format!("{g:.1}")),
            wgsl / cpu
        );
        rows.push(Row {
            n,
            wgsl_gflops: wgsl,
            cpu_gflops: cpu,
            kernel_gflops,
        });
    }
    Ok(Gemm {
        adapter: format!("{}, {:?}", info.name, info.backend),
        rows,
    })
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `c = a · b`, row-major `[n, n]`, with the `gemm` crate on every core.
fn cpu_gemm(n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() == n * n && b.len() == n * n && c.len() == n * n);
    let n_i = n as isize;
    // SAFETY: the three slices hold n * n elements each (checked above); strides describe
    // row-major matrices (column stride 1, row stride n) inside them, and `c` does not
    // alias `a` or `b`.
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n_i,
            false,
            a.as_ptr(),
            1,
            n_i,
            b.as_ptr(),
            1,
            n_i,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads()),
        );
    }
}
