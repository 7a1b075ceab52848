//! Property tests: random shapes (1..300 per dimension, primes and sizes below tp
//! included), tp 1..8, uneven shards, both weight layouts, bias on and off, both kinds of
//! group, for every layer and every collective, against the f64 reference.
//!
//! The cases add up to `TOTAL_CASES` (>= 10,000) per run of the suite; `PROPTEST_CASES`
//! overrides every test's count. Groups are made once per tp and kind, so a case costs a
//! few dispatches and a read-back, not a device.

mod common;

use common::LinearCase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group, Numerics,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

const LAYER_CASES: u32 = 2_000;
const MLP_CASES: u32 = 1_500;
const COLLECTIVE_CASES: u32 = 3_000;
const REDISTRIBUTE_CASES: u32 = 1_500;
/// What the suite runs in CI: at least 10,000.
pub const TOTAL_CASES: u32 = 2 * LAYER_CASES + MLP_CASES + COLLECTIVE_CASES + REDISTRIBUTE_CASES;
const _: () = assert!(TOTAL_CASES >= 10_000);

/// Keeps the f64 reference (and lavapipe's GEMM) cheap enough for thousands of cases.
const MAX_MACS: usize = 600_000;

fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        ..Config::default()
    }
}

/// A dimension: uniform over 1..=300, or a prime, or a size at most 8 (below most tp).
fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=300,
        prop::sample::select(vec![2usize, 3, 5, 7, 11, 13, 31, 61, 127, 131, 251, 293]),
        1usize..=8,
    ]
}

/// `(batch, in, out)` with batch * in * out <= MAX_MACS.
fn linear_dims() -> impl Strategy<Value = (usize, usize, usize)> {
    (dim(), dim()).prop_flat_map(|(i, o)| {
        let most = (MAX_MACS / (i * o)).clamp(1, 300);
        ((1usize..=most), Just(i), Just(o))
    })
}

fn layout() -> impl Strategy<Value = WeightLayout> {
    prop_oneof![Just(WeightLayout::InOut), Just(WeightLayout::OutIn)]
}

fn activation() -> impl Strategy<Value = Activation> {
    prop::sample::select(vec![
        Activation::Identity,
        Activation::Relu,
        Activation::GeluTanh,
        Activation::GeluErf,
    ])
}

/// The group of `tp` ranks of the given kind (devices on one adapter, or logical ranks
/// sharing a device); `None` locally without an adapter.
fn group(tp: usize, shared: bool) -> Option<Group> {
    common::cached_group(tp, shared, Numerics::Fast)
}

/// Checks `got` against the reference bound, as a proptest failure (so it shrinks).
fn within(want: &Approx, got: &[f32], ctx: &str) -> Result<(), TestCaseError> {
    let c = want.check(got);
    prop_assert!(
        c.pass,
        "{ctx}: max |diff| {:.3e} exceeds the bound (max bound {:.3e})",
        c.max_abs_diff,
        c.tolerance
    );
    Ok(())
}

/// Every rank's copy of a replicated `y`, or the gathered value otherwise.
fn every_copy(want: &Approx, y: &DistTensor, ctx: &str) -> Result<(), TestCaseError> {
    if y.placement() == Placement::Replicate {
        for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
            within(want, v, &format!("{ctx} rank {r}"))?;
        }
        Ok(())
    } else {
        within(want, &y.to_host().unwrap(), ctx)
    }
}

/// A split of `n` over `tp` ranks must be refused when `tp > n`; returns whether it fits.
fn fits(result: &Result<impl Sized, Error>, n: usize, tp: usize) -> Result<bool, TestCaseError> {
    if tp <= n {
        prop_assert!(
            result.is_ok(),
            "tp {tp} over {n}: {:?}",
            result.as_ref().err()
        );
        return Ok(true);
    }
    prop_assert!(
        matches!(
            result,
            Err(Error::InvalidArgument { .. } | Error::Shape { .. })
        ),
        "tp {tp} > {n} must be refused, got {:?}",
        result.as_ref().err()
    );
    Ok(false)
}

proptest! {
    #![proptest_config(config(LAYER_CASES))]

    #[test]
    fn column_parallel_layer(
        tp in 1usize..=8, shared: bool, dims in linear_dims(), layout in layout(),
        bias: bool, gather_output: bool, act in activation(), seed: u64,
    ) {
        let Some(g) = group(tp, shared) else { return Ok(()) };
        let (m, k, n) = dims;
        let c = LinearCase::new(seed, dims, layout, bias);
        let layer = ColumnParallelLinear::from_full(
            &g, c.host(k, n, layout), ColumnParallelConfig::default().gather_output(gather_output).activation(act));
        if !fits(&layer, n, tp)? { return Ok(()) }
        let y = layer.unwrap().forward(&DistTensor::replicate(&g, &c.x, [m, k]).unwrap()).unwrap();
        let want = reference::activation(
            &common::reference_linear(&c.x, [m, k], &c.w, n, c.b.as_deref()), act);
        every_copy(&want, &y, &format!("column tp {tp} shared {shared} {dims:?} {layout:?}"))?;
    }

    #[test]
    fn row_parallel_layer(
        tp in 1usize..=8, shared: bool, dims in linear_dims(), layout in layout(),
        bias: bool, input_is_parallel: bool, seed: u64,
    ) {
        let Some(g) = group(tp, shared) else { return Ok(()) };
        let (m, k, n) = dims;
        let c = LinearCase::new(seed, dims, layout, bias);
        let cfg = RowParallelConfig::default().input_is_parallel(input_is_parallel);
        let layer = RowParallelLinear::from_full(&g, c.host(k, n, layout), cfg);
        if !fits(&layer, k, tp)? { return Ok(()) }
        let x = if input_is_parallel {
            DistTensor::shard(&g, &c.x, [m, k], 1).unwrap()
        } else {
            DistTensor::replicate(&g, &c.x, [m, k]).unwrap()
        };
        let y = layer.unwrap().forward(&x).unwrap();
        let want = common::reference_linear(&c.x, [m, k], &c.w, n, c.b.as_deref());
        every_copy(&want, &y, &format!("row tp {tp} shared {shared} {dims:?} {layout:?}"))?;
    }
}

proptest! {
    #![proptest_config(config(MLP_CASES))]

    #[test]
    fn megatron_mlp(
        tp in 1usize..=8, shared: bool, dims in linear_dims(), layout in layout(),
        bias: bool, act in activation(), seed: u64,
    ) {
        let Some(g) = group(tp, shared) else { return Ok(()) };
        // [batch, hidden] -> ffn -> hidden
        let (m, hidden, ffn) = dims;
        let c1 = LinearCase::new(seed, (m, hidden, ffn), layout, bias);
        let c2 = LinearCase::new(seed ^ 1, (m, ffn, hidden), layout, bias);
        let mlp = ParallelMlp::from_full(
            &g, c1.host(hidden, ffn, layout), c2.host(ffn, hidden, layout), act);
        if !fits(&mlp, ffn, tp)? { return Ok(()) }
        let y = mlp.unwrap().forward(&DistTensor::replicate(&g, &c1.x, [m, hidden]).unwrap()).unwrap();
        let h = common::reference_linear(&c1.x, [m, hidden], &c1.w, ffn, c1.b.as_deref());
        let want = common::reference_linear_of(&reference::activation(&h, act), [m, ffn], &c2.w, hidden, c2.b.as_deref());
        every_copy(&want, &y, &format!("mlp tp {tp} shared {shared} {dims:?} {layout:?}"))?;
    }
}

/// A `[rows, cols]` shape with at most 30,000 elements.
fn shape() -> impl Strategy<Value = [usize; 2]> {
    (dim(), dim()).prop_map(|(r, c)| [r, c.min(30_000 / r).max(1)])
}

fn partial(g: &Group, shape: [usize; 2], seed: u64) -> (DistTensor, Vec<Vec<f32>>) {
    let parts = common::normal_parts(&mut Rng::new(seed), g.world_size(), shape[0] * shape[1]);
    (common::partial(g, &parts, shape), parts)
}

fn same_bits(a: &[f32], b: &[f32], ctx: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len(), "{}", ctx);
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits());
    prop_assert!(first.is_none(), "{ctx}: bits differ at {first:?}");
    Ok(())
}

proptest! {
    #![proptest_config(config(COLLECTIVE_CASES))]

    #[test]
    fn collectives(
        tp in 1usize..=8, shared: bool, shape in shape(), dim in 0usize..2,
        which in 0usize..4, root in 0usize..8, seed: u64,
    ) {
        let Some(g) = group(tp, shared) else { return Ok(()) };
        let ctx = format!("collective {which} tp {tp} shared {shared} {shape:?} dim {dim}");
        match which {
            0 => {
                let (x, parts) = partial(&g, shape, seed);
                let want = common::rank_order_sum(&parts);
                for v in x.all_reduce().unwrap().to_host_per_rank().unwrap() {
                    same_bits(&v, &want, &ctx)?;
                }
            }
            1 => {
                let full = Rng::new(seed).normal(shape[0] * shape[1]);
                let x = DistTensor::shard(&g, &full, shape, dim);
                if !fits(&x, shape[dim], tp)? { return Ok(()) }
                for v in x.unwrap().all_gather().unwrap().to_host_per_rank().unwrap() {
                    same_bits(&v, &full, &ctx)?;
                }
            }
            2 => {
                let (x, parts) = partial(&g, shape, seed);
                let y = x.reduce_scatter(dim);
                if !fits(&y, shape[dim], tp)? { return Ok(()) }
                let y = y.unwrap();
                prop_assert_eq!(y.placement(), Placement::Shard(dim));
                same_bits(&y.to_host().unwrap(), &common::rank_order_sum(&parts), &ctx)?;
            }
            _ => {
                let root = root % tp;
                let full = Rng::new(seed).normal(shape[0] * shape[1]);
                let locals = g.ranks().iter().map(|r| {
                    let v = if r.index() == root { full.clone() } else { vec![f32::NAN; full.len()] };
                    Tensor::from_host(r, &v, shape).unwrap()
                }).collect();
                let x = DistTensor::from_locals(&g, locals, Placement::Replicate).unwrap();
                for v in x.broadcast(root).unwrap().to_host_per_rank().unwrap() {
                    same_bits(&v, &full, &ctx)?;
                }
            }
        }
    }
}

fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![
        Just(Placement::Replicate),
        Just(Placement::Shard(0)),
        Just(Placement::Shard(1)),
        Just(Placement::Partial),
    ]
}

proptest! {
    #![proptest_config(config(REDISTRIBUTE_CASES))]

    #[test]
    fn redistribute_keeps_the_value(
        tp in 1usize..=8, shared: bool, shape in shape(), from in placement(),
        to in placement(), seed: u64,
    ) {
        let Some(g) = group(tp, shared) else { return Ok(()) };
        let full = Rng::new(seed).normal(shape[0] * shape[1]);
        let x = match from {
            Placement::Replicate => Ok(DistTensor::replicate(&g, &full, shape).unwrap()),
            Placement::Shard(d) => DistTensor::shard(&g, &full, shape, d),
            Placement::Partial => {
                // Rank 0 holds the value, the others zeros: the sum is exact.
                let locals = g.ranks().iter().map(|r| {
                    let v = if r.index() == 0 { full.clone() } else { vec![0.0; full.len()] };
                    Tensor::from_host(r, &v, shape).unwrap()
                }).collect();
                DistTensor::from_locals(&g, locals, Placement::Partial)
            }
        };
        if let Placement::Shard(d) = from {
            if !fits(&x, shape[d], tp)? { return Ok(()) }
        }
        let y = x.unwrap().redistribute(to);
        if let Placement::Shard(d) = to {
            if !fits(&y, shape[d], tp)? { return Ok(()) }
        }
        let y = y.unwrap();
        prop_assert_eq!(y.placement(), to);
        same_bits(&y.to_host().unwrap(), &full, &format!("{from} -> {to} tp {tp} {shape:?}"))?;
    }
}
