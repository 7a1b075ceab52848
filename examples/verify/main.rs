//! The seed's three verifications (column-parallel, row-parallel, Megatron MLP) on real
//! wgpu ranks, each checked against the unsharded computation in f64.
//!
//! ```text
//! cargo run --example verify -- --tp-size 4
//! cargo run --example verify -- --tp-size 3 --ranks per-adapter --activation gelu-erf
//! cargo run --example verify -- --list-adapters
//! ```
//!
//! Every phase prints a line with the seconds since start, so a large shape never sits
//! silent.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wgpu_tp::reference::{self, Approx, Check, Rng};
use wgpu_tp::wgpu;
use wgpu_tp::{
    ColumnParallelConfig, ColumnParallelLinear, DistTensor, Group, HostLinear, ParallelMlp,
    RowParallelConfig, RowParallelLinear, WeightLayout,
};

mod args;
mod spmd;

use args::{Args, Ranks};

/// Progress lines stamped with the seconds since start, flushed at once.
struct Clock(Instant);

impl Clock {
    fn phase(&self, what: &str) {
        say!("[{:7.2} s] {what}", self.0.elapsed().as_secs_f64());
        // A failed flush only delays the line.
        let _ = std::io::stdout().flush();
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.list_adapters {
        list_adapters(&args).map(|()| true)
    } else {
        run(&args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--list-adapters`: every adapter of the chosen backends, as the group builder sees them.
fn list_adapters(args: &Args) -> AnyResult<()> {
    let backends = args
        .backends()
        .or_else(wgpu::Backends::from_env)
        .unwrap_or(wgpu::Backends::all());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    println!("{} adapter(s) for backends {backends:?}:", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let driver = format!("{} {}", info.driver, info.driver_info);
        println!(
            "  {i}: {} ({:?}, {:?}), driver: {}",
            info.name,
            info.backend,
            info.device_type,
            driver.trim()
        );
    }
    Ok(())
}

/// A layer's weight and optional bias on the host.
type Layer = (Vec<f32>, Option<Vec<f32>>);

/// The group, weights and input of the three checks (made on the host from the seed).
struct Setup<'a> {
    args: &'a Args,
    group: Group,
    w_col: Layer,
    w_row: Layer,
    w1: Layer,
    w2: Layer,
    x: Vec<f32>,
}

/// A layer's weight and bias as the library takes them.
fn host(
    (weight, bias): &Layer,
    in_features: usize,
    out_features: usize,
    layout: WeightLayout,
) -> HostLinear<'_> {
    let layer = HostLinear::new(weight, in_features, out_features, layout);
    match bias {
        Some(b) => layer.with_bias(b),
        None => layer,
    }
}

/// The f64 reference of one layer on the host.
fn reference_linear(
    x: &Approx,
    [m, k]: [usize; 2],
    (w, b): &Layer,
    n: usize,
    layout: WeightLayout,
) -> wgpu_tp::Result<Approx> {
    reference::linear(x, [m, k], w, n, layout, b.as_deref())
}

fn report(name: &str, checks: &[Check], extra: &str) -> bool {
    let pass = checks.iter().all(|c| c.pass);
    let diff = checks.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
    let tol = checks.iter().map(|c| c.tolerance).fold(0.0, f64::max);
    say!(
        "  max |diff| vs f64 reference: {diff:.3e}  (tolerance {tol:.3e}){extra}\n  {name}: {}",
        if pass { "PASS" } else { "FAIL" }
    );
    pass
}

fn header(title: &str) {
    say!("\n{}\n {title}\n{}", "=".repeat(60), "=".repeat(60));
}

fn run(args: &Args) -> AnyResult<bool> {
    let clock = Clock(Instant::now());
    clock.phase("finding adapters and making ranks...");
    let mut builder = Group::builder()
        .numerics(args.numerics)
        .gemm_kernel(args.gemm_kernel);
    if let Some(b) = args.backends() {
        builder = builder.backends(b);
    }
    if let Some(name) = &args.adapter_name {
        builder = builder.adapter_name(name);
    }
    // Under mpirun, this process makes its share of the ranks.
    let (builder, local) = spmd::spread(builder, args.tp_size.unwrap_or(4))?;
    let builder = match (args.ranks, local.or(args.tp_size)) {
        (Ranks::OneAdapter, tp) => builder.ranks_on_one_adapter(tp.unwrap_or(4)),
        (Ranks::SharedDevice, tp) => builder.ranks_sharing_one_device(tp.unwrap_or(4)),
        (Ranks::PerAdapter, Some(tp)) => builder.spread_over_adapters(tp),
        (Ranks::PerAdapter, None) => builder.one_rank_per_adapter(),
    };
    let group = builder.build()?;
    let (batch, hidden, ffn) = (args.batch, args.hidden, args.ffn);
    say!(
        "wgpu-tp verify: tp {}, batch {batch}, hidden {hidden}, ffn {ffn}, seed {}, \
         activation {}, layout {}, bias {}, numerics {}, gemm kernel {}",
        group.world_size(),
        args.seed,
        args.activation,
        args.layout,
        args.bias,
        args.numerics,
        args.gemm_kernel
    );
    say!("  {} process(es)", group.process_count());
    for r in group.ranks() {
        let i = r.adapter_info();
        println!(
            "  rank {}: process {} (pid {}), {} ({:?}, {:?})",
            r.index(),
            group.process_index(),
            std::process::id(),
            i.name,
            i.backend,
            i.device_type
        );
    }

    clock.phase("generating weights and input...");
    let mut rng = Rng::new(args.seed);
    let mut linear = |fan_in: usize, fan_out: usize| {
        let w = rng.xavier(fan_in * fan_out, fan_in, fan_out);
        let b = args.bias.then(|| rng.normal(fan_out));
        (w, b)
    };
    let process = group.process_index();
    let setup = Setup {
        w_col: linear(hidden, hidden),
        w_row: linear(hidden, hidden),
        w1: linear(hidden, ffn),
        w2: linear(ffn, hidden),
        x: Rng::new(args.seed.wrapping_add(81)).normal(batch * hidden),
        args,
        group,
    };
    let all_pass =
        column_check(&setup, &clock)? & row_check(&setup, &clock)? & mlp_check(&setup, &clock)?;
    if !all_pass && !spmd::lead() {
        println!("process {process}: SOME CHECKS FAILED");
    }
    say!(
        "\n{} in {:.2} s",
        if all_pass {
            "ALL PASS"
        } else {
            "SOME CHECKS FAILED"
        },
        clock.0.elapsed().as_secs_f64()
    );
    Ok(all_pass)
}

fn column_check(s: &Setup<'_>, clock: &Clock) -> AnyResult<bool> {
    let (batch, hidden, layout) = (s.args.batch, s.args.hidden, s.args.layout);
    let tp = s.group.world_size();
    header("COLUMN-PARALLEL LINEAR");
    clock.phase("column check: uploading weights and input...");
    let col = ColumnParallelLinear::from_full(
        &s.group,
        host(&s.w_col, hidden, hidden, layout),
        ColumnParallelConfig::default(),
    )?;
    let x = DistTensor::replicate(&s.group, &s.x, [batch, hidden])?;
    clock.phase("column check: computing on ranks and reading back...");
    let y = col.forward(&x)?;
    let got = y.to_host_per_rank()?;
    clock.phase("column check: computing the f64 reference...");
    let want = reference_linear(
        &Approx::exact(&s.x),
        [batch, hidden],
        &s.w_col,
        hidden,
        layout,
    )?;
    let checks: Vec<Check> = got.iter().map(|v| want.check(v)).collect();
    say!(
        "  weight {:?} split by output features over {tp} ranks: {:?}; all-gather -> {:?} on every rank",
        layout.stored_shape(hidden, hidden),
        col.out_features_per_rank(),
        y.shape()
    );
    Ok(report(
        "column-parallel (all-gather of distinct shards == X.W)",
        &checks,
        "",
    ))
}

fn row_check(s: &Setup<'_>, clock: &Clock) -> AnyResult<bool> {
    let (batch, hidden, layout) = (s.args.batch, s.args.hidden, s.args.layout);
    let tp = s.group.world_size();
    header("ROW-PARALLEL LINEAR");
    clock.phase("row check: uploading weights and input shards...");
    let row = RowParallelLinear::from_full(
        &s.group,
        host(&s.w_row, hidden, hidden, layout),
        RowParallelConfig::default().input_is_parallel(true),
    )?;
    let x_chunks = DistTensor::shard(&s.group, &s.x, [batch, hidden], 1)?;
    clock.phase("row check: computing on ranks and reading back...");
    let before = s.group.stats().all_reduces();
    let y = row.forward(&x_chunks)?;
    let reduces = s.group.stats().all_reduces() - before;
    let got = y.to_host_per_rank()?;
    clock.phase("row check: computing the f64 reference...");
    let want = reference_linear(
        &Approx::exact(&s.x),
        [batch, hidden],
        &s.w_row,
        hidden,
        layout,
    )?;
    let checks: Vec<Check> = got.iter().map(|v| want.check(v)).collect();
    say!(
        "  input chunked by columns over {tp} ranks: {:?}; all-reduces: {reduces}",
        row.in_features_per_rank()
    );
    Ok(report("row-parallel (all-reduce of X_r.W_r == X.W)", &checks, "") && reduces == 1)
}

fn mlp_check(s: &Setup<'_>, clock: &Clock) -> AnyResult<bool> {
    let (batch, hidden, ffn) = (s.args.batch, s.args.hidden, s.args.ffn);
    let (layout, activation) = (s.args.layout, s.args.activation);
    header("MEGATRON MLP: column -> activation -> row");
    clock.phase("mlp check: uploading weights and input...");
    let mlp = ParallelMlp::from_full(
        &s.group,
        host(&s.w1, hidden, ffn, layout),
        host(&s.w2, ffn, hidden, layout),
        activation,
    )?;
    let x = DistTensor::replicate(&s.group, &s.x, [batch, hidden])?;
    clock.phase("mlp check: computing on ranks and reading back...");
    let before = s.group.stats().all_reduces();
    let y = mlp.forward(&x)?;
    let reduces = s.group.stats().all_reduces() - before;
    let per_rank = y.to_host_per_rank()?;
    clock.phase("mlp check: computing the f64 reference...");
    let x_ref = Approx::exact(&s.x);
    let h = reference::activation(
        &reference_linear(&x_ref, [batch, hidden], &s.w1, ffn, layout)?,
        activation,
    );
    let want = reference_linear(&h, [batch, ffn], &s.w2, hidden, layout)?;
    let identical = per_rank.iter().all(|v| {
        v.iter()
            .map(|f| f.to_bits())
            .eq(per_rank[0].iter().map(|f| f.to_bits()))
    });
    let checks: Vec<Check> = per_rank.iter().map(|v| want.check(v)).collect();
    say!(
        "  [{batch}, {hidden}] -> fc1 shards {:?} -> {activation} -> fc2 -> [{batch}, {hidden}]",
        mlp.fc1().out_features_per_rank()
    );
    let extra = format!(
        "\n  all-reduces in forward: {reduces} (expected 1)\n  identical bits on every rank: {identical}"
    );
    Ok(report(
        "megatron mlp (value == reference, same on every rank, one all-reduce)",
        &checks,
        &extra,
    ) && reduces == 1
        && identical)
}
