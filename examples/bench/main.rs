//! `cargo run --release --example bench`: the figures of BENCHMARKS.md.
//!
//! Every figure is a ratio against a baseline measured in the same run, because the
//! machine is shared and noisy. Prints a table per section, then one `NAME: VALUE` line per
//! figure, and writes the GEMM plot (GFLOP/s against N) to
//! `target/bench/benchmarks-gemm.svg` (or `--plot PATH`).

mod decode;
mod gemm;
mod half;
mod layers;
mod model;
mod model_1b;
mod mpi;
mod plot;
mod quant;
mod sampling;
mod train;
mod transfer;

use std::time::{Duration, Instant};

use clap::Parser;

/// Flags; the defaults are BENCHMARKS.md's run.
#[derive(Parser, Debug)]
struct Args {
    /// GEMM sizes N (square N x N x N).
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 512, 1024, 2048])]
    sizes: Vec<usize>,
    /// All-reduce size in MiB.
    #[arg(long, default_value_t = 64)]
    allreduce_mib: usize,
    /// Timed repetitions per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Where the GEMM plot (SVG) goes; its folder is created.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/benchmarks-gemm.svg"))]
    plot: std::path::PathBuf,
    /// Skip the verify timing (it builds the verify example first).
    #[arg(long)]
    no_verify: bool,
    /// Run only these sections (gemm, transfer, decode, mlp, train, model, model1b, quant,
    /// half, sampling, mpi, verify);
    /// default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The multi-process half of section mpi (the bench starts it under mpirun).
    #[arg(long, hide = true)]
    mpi_worker: bool,
    /// The fresh process of section model that loads a checkpoint and reports its RSS.
    #[arg(long, hide = true)]
    load_worker: Option<std::path::PathBuf>,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The sorted wall times of `reps` runs of `f` (after one untimed warm-up run).
fn times<E>(reps: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Vec<Duration>, E> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

/// The median wall time of `reps` runs of `f` (after one untimed warm-up run).
pub fn median<E>(reps: usize, f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    let t = times(reps, f)?;
    Ok(t[t.len() / 2])
}

/// The best wall time of `reps` runs of `f`: for throughput figures, where noise from
/// the shared machine only ever slows a run down.
pub fn best<E>(reps: usize, f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    Ok(times(reps, f)?[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.mpi_worker {
        return mpi::worker(args.allreduce_mib, args.reps);
    }
    if let Some(dir) = &args.load_worker {
        return model::load_worker(dir);
    }
    let start = Instant::now();
    let mut summary: Vec<(&str, f64)> = Vec::new();

    if args.wants("gemm") {
        let g = gemm::run(&args.sizes, args.reps)?;
        let at_1024 = g.rows.iter().find(|r| r.n == 1024).or(g.rows.last());
        if let Some(r) = at_1024 {
            summary.push(("gemm_vs_cpu_blas", r.wgsl_gflops / r.cpu_gflops));
        }
        plot::gemm(&args.plot, &g.adapter, &g.rows)?;
        println!("plot: {}", args.plot.display());
    }
    if args.wants("transfer") {
        let t = transfer::run(args.allreduce_mib, args.reps)?;
        summary.push(("allreduce_vs_copy_limit", t.host_allreduce / t.copy_limit));
        summary.push((
            "allreduce_shared_vs_host",
            t.shared_allreduce / t.host_allreduce,
        ));
    }
    if args.wants("decode") {
        let d = decode::run(args.reps)?;
        summary.push(("gemv_vs_floor", d.gemv_vs_floor));
        summary.push(("mlp_batch1_vs_floor", d.mlp_batch1_vs_floor));
        summary.push(("allreduce_16k_vs_roundtrip", d.allreduce_16k_vs_roundtrip));
    }
    if args.wants("mlp") {
        summary.push(("mlp_tp4_vs_tp1", layers::mlp_tp4_vs_tp1(args.reps)?));
        summary.push(("tp_invariant_cost", layers::tp_invariant_cost(args.reps)?));
    }
    if args.wants("train") {
        let step = train::train_step_tp4_vs_tp1(args.reps)?;
        summary.push(("train_step_tp4_vs_tp1", step));
        summary.push((
            "sp_activation_bytes_vs_tp",
            train::sp_activation_bytes_vs_tp()?,
        ));
        let lora = train::lora_step_vs_full_step(args.reps)?;
        summary.push(("lora_step_vs_full_step", lora.time));
        summary.push(("lora_step_peak_bytes_vs_full", lora.peak_bytes));
    }
    if args.wants("model") {
        let m = model::run()?;
        summary.push(("decode_tp4_vs_tp1", m.decode_tp4_vs_tp1));
        summary.push(("decode_shared_vs_devices", m.decode_shared_vs_devices));
        summary.push(("weights_per_rank_vs_ideal", m.weights_per_rank_vs_ideal));
        summary.push(("load_peak_rss_vs_file", m.load_peak_rss_vs_file));
    }
    if args.wants("model1b") {
        let m = model_1b::run(args.reps)?;
        summary.push(("decode_1b_vs_floor", m.decode_1b_vs_floor));
    }
    if args.wants("quant") {
        let q = quant::run(args.reps)?;
        summary.push(("weights_bytes_q4k_vs_f32", q.weights_bytes_q4k_vs_f32));
        summary.push(("decode_q4k_vs_bf16", q.decode_q4k_vs_bf16));
        summary.push(("decode_q4k_vs_floor", q.decode_q4k_vs_floor));
    }
    if args.wants("half") {
        let h = half::run(args.reps)?;
        summary.push(("gemm_bf16w_vs_f32", h.gemm_bf16w_vs_f32));
        summary.push(("gemv_bf16w_vs_f32", h.gemv_bf16w_vs_f32));
        summary.push(("weights_bytes_bf16_vs_f32", h.weights_bytes_bf16_vs_f32));
        summary.push(("decode_bf16_vs_f32", h.decode_bf16_vs_f32));
    }
    if args.wants("sampling") {
        summary.push(("sample_vs_greedy", sampling::sample_vs_greedy()?));
    }
    if args.wants("mpi") {
        if let Some(m) = mpi::run(args.allreduce_mib, args.reps)? {
            summary.push(("allreduce_mpi_vs_inprocess", m.vs_inprocess));
            summary.push(("allreduce_mpi_vs_link", m.vs_link));
        }
    }
    if args.wants("verify") && !args.no_verify {
        let v = layers::verify_seconds()?;
        summary.push(("verify_seconds", v.warm));
        summary.push(("verify_cold_seconds", v.cold));
    }

    println!("\nbench took {:.1} s", start.elapsed().as_secs_f64());
    for (name, value) in summary {
        println!("{name}: {value:.3}");
    }
    Ok(())
}
