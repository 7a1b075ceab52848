//! The seed's three verifications (column-parallel, row-parallel, Megatron MLP) on real
//! wgpu ranks, each checked against the unsharded computation in f64.
//!
//! ```text
//! cargo run --example verify -- --tp-size 4
//! cargo run --example verify -- --tp-size 3 --ranks per-adapter --activation gelu-erf
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use wgpu_tp::reference::{self, Approx, Check, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Group, HostLinear,
    Numerics, ParallelMlp, RowParallelConfig, RowParallelLinear, WeightLayout,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Ranks {
    /// tp-size devices requested from one adapter
    OneAdapter,
    /// ranks spread round-robin over every adapter found (one per adapter when
    /// --tp-size equals the adapter count)
    PerAdapter,
    /// tp-size logical ranks sharing one device (collectives run on the device)
    SharedDevice,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NumericsArg {
    /// each kernel's fastest fixed order (the default)
    Fast,
    /// the same output bits at tp 1, 2, 4 and 8 (inner sizes multiples of 8)
    TpInvariant,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Layout {
    /// weights stored [in, out] (the seed's layout)
    InOut,
    /// weights stored [out, in] (PyTorch nn.Linear.weight)
    OutIn,
}

#[derive(Debug, Parser)]
#[command(about = "Tensor-parallel linear layers on wgpu ranks: the seed's three checks")]
struct Args {
    /// Tensor parallelism degree (any size up to the split dimension; need not divide it).
    /// With --ranks per-adapter the default is one rank per adapter.
    #[arg(short, long)]
    tp_size: Option<usize>,
    /// Rows of the input.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// in = out features of the column and row checks; hidden size of the MLP.
    #[arg(long, default_value_t = 8)]
    hidden: usize,
    /// Intermediate size of the MLP.
    #[arg(long, default_value_t = 32)]
    ffn: usize,
    /// Seed of the weights and inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// MLP activation: relu, gelu-tanh, gelu-erf.
    #[arg(long, default_value = "relu")]
    activation: String,
    /// How ranks are made.
    #[arg(long, value_enum, default_value_t = Ranks::OneAdapter)]
    ranks: Ranks,
    /// Backends to use: vulkan, gl, metal, dx12 (comma-separated); default WGPU_BACKEND or all.
    #[arg(long)]
    backend: Option<String>,
    /// How weights are stored.
    #[arg(long, value_enum, default_value_t = Layout::InOut)]
    layout: Layout,
    /// Give every layer a bias (the seed's layers have none).
    #[arg(long)]
    bias: bool,
    /// How sums are associated.
    #[arg(long, value_enum, default_value_t = NumericsArg::Fast)]
    numerics: NumericsArg,
}

fn report(name: &str, checks: &[Check], extra: &str) -> bool {
    let pass = checks.iter().all(|c| c.pass);
    let diff = checks.iter().map(|c| c.max_abs_diff).fold(0.0, f64::max);
    let tol = checks.iter().map(|c| c.tolerance).fold(0.0, f64::max);
    println!(
        "  max |diff| vs f64 reference: {diff:.3e}  (tolerance {tol:.3e}){extra}\n  {name}: {}",
        if pass { "PASS" } else { "FAIL" }
    );
    pass
}

fn header(title: &str) {
    println!("\n{}\n {title}\n{}", "=".repeat(60), "=".repeat(60));
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let activation: Activation = args.activation.parse()?;
    let layout = match args.layout {
        Layout::InOut => WeightLayout::InOut,
        Layout::OutIn => WeightLayout::OutIn,
    };
    let mut builder = Group::builder().numerics(match args.numerics {
        NumericsArg::Fast => Numerics::Fast,
        NumericsArg::TpInvariant => Numerics::TpInvariant,
    });
    if let Some(b) = &args.backend {
        builder = builder.backends(wgpu_tp::wgpu::Backends::from_comma_list(b));
    }
    builder = match (args.ranks, args.tp_size) {
        (Ranks::OneAdapter, tp) => builder.ranks_on_one_adapter(tp.unwrap_or(4)),
        (Ranks::SharedDevice, tp) => builder.ranks_sharing_one_device(tp.unwrap_or(4)),
        (Ranks::PerAdapter, Some(tp)) => builder.spread_over_adapters(tp),
        (Ranks::PerAdapter, None) => builder.one_rank_per_adapter(),
    };
    let group = builder.build()?;
    let tp = group.world_size();
    let (batch, hidden, ffn) = (args.batch, args.hidden, args.ffn);
    println!("wgpu-tp verify: tp {tp}, batch {batch}, hidden {hidden}, ffn {ffn}, seed {}, activation {activation:?}, layout {layout:?}, bias {}, numerics {:?}", args.seed, args.bias, args.numerics);
    for r in group.ranks() {
        let i = r.adapter_info();
        println!(
            "  rank {}: {} ({:?}, {:?})",
            r.index(),
            i.name,
            i.backend,
            i.device_type
        );
    }

    let mut rng = Rng::new(args.seed);
    let mut linear = |fan_in: usize, fan_out: usize| {
        let w = rng.xavier(fan_in * fan_out, fan_in, fan_out);
        let b = args.bias.then(|| rng.normal(fan_out));
        (w, b)
    };
    let (w_col, b_col) = linear(hidden, hidden);
    let (w_row, b_row) = linear(hidden, hidden);
    let (w1, b1) = linear(hidden, ffn);
    let (w2, b2) = linear(ffn, hidden);
    let x_host = Rng::new(args.seed.wrapping_add(81)).normal(batch * hidden);
    fn host<'a>(
        weight: &'a [f32],
        bias: &'a Option<Vec<f32>>,
        in_features: usize,
        out_features: usize,
        layout: WeightLayout,
    ) -> HostLinear<'a> {
        HostLinear {
            weight,
            bias: bias.as_deref(),
            in_features,
            out_features,
            layout,
        }
    }
    let x_ref = Approx::exact(&x_host);
    let mut all_pass = true;

    header("COLUMN-PARALLEL LINEAR");
    let col = ColumnParallelLinear::from_full(
        &group,
        host(&w_col, &b_col, hidden, hidden, layout),
        ColumnParallelConfig::default(),
    )?;
    let x = DistTensor::replicate(&group, &x_host, [batch, hidden])?;
    let y = col.forward(&x)?;
    let want = reference::linear(
        &x_ref,
        [batch, hidden],
        &w_col,
        hidden,
        layout,
        b_col.as_deref(),
    )?;
    let checks: Vec<Check> = y
        .to_host_per_rank()?
        .iter()
        .map(|v| want.check(v))
        .collect();
    println!("  weight {:?} split by output features over {tp} ranks: {:?}; all-gather -> {:?} on every rank", layout.stored_shape(hidden, hidden), col.out_features_per_rank(), y.shape());
    all_pass &= report(
        "column-parallel (all-gather of distinct shards == X.W)",
        &checks,
        "",
    );

    header("ROW-PARALLEL LINEAR");
    let row = RowParallelLinear::from_full(
        &group,
        host(&w_row, &b_row, hidden, hidden, layout),
        RowParallelConfig {
            input_is_parallel: true,
            skip_bias_add: false,
        },
    )?;
    let x_chunks = DistTensor::shard(&group, &x_host, [batch, hidden], 1)?;
    let before = group.stats().all_reduces();
    let y = row.forward(&x_chunks)?;
    let reduces = group.stats().all_reduces() - before;
    let want = reference::linear(
        &x_ref,
        [batch, hidden],
        &w_row,
        hidden,
        layout,
        b_row.as_deref(),
    )?;
    let checks: Vec<Check> = y
        .to_host_per_rank()?
        .iter()
        .map(|v| want.check(v))
        .collect();
    println!(
        "  input chunked by columns over {tp} ranks: {:?}; all-reduces: {reduces}",
        row.in_features_per_rank()
    );
    all_pass &= report("row-parallel (all-reduce of X_r.W_r == X.W)", &checks, "") && reduces == 1;

    header("MEGATRON MLP: column -> activation -> row");
    let mlp = ParallelMlp::from_full(
        &group,
        host(&w1, &b1, hidden, ffn, layout),
        host(&w2, &b2, ffn, hidden, layout),
        activation,
    )?;
    let before = group.stats().all_reduces();
    let y = mlp.forward(&x)?;
    let reduces = group.stats().all_reduces() - before;
    let h = reference::activation(
        &reference::linear(&x_ref, [batch, hidden], &w1, ffn, layout, b1.as_deref())?,
        activation,
    );
    let want = reference::linear(&h, [batch, ffn], &w2, hidden, layout, b2.as_deref())?;
    let per_rank = y.to_host_per_rank()?;
    let identical = per_rank.iter().all(|v| {
        v.iter()
            .map(|f| f.to_bits())
            .eq(per_rank[0].iter().map(|f| f.to_bits()))
    });
    let checks: Vec<Check> = per_rank.iter().map(|v| want.check(v)).collect();
    println!(
        "  [{batch}, {hidden}] -> fc1 shards {:?} -> {activation:?} -> fc2 -> [{batch}, {hidden}]",
        mlp.fc1().out_features_per_rank()
    );
    let extra = format!("\n  all-reduces in forward: {reduces} (expected 1)\n  identical bits on every rank: {identical}");
    all_pass &= report(
        "megatron mlp (value == reference, same on every rank, one all-reduce)",
        &checks,
        &extra,
    ) && reduces == 1
        && identical;

    println!(
        "\n{} in {:.2} s",
        if all_pass {
            "ALL PASS"
        } else {
            "SOME CHECKS FAILED"
        },
        start.elapsed().as_secs_f64()
    );
    Ok(all_pass)
}
