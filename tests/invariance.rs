//! `Numerics::TpInvariant`: the same inputs give identical output bits at tp 1, 2, 4 and 8,
//! for both kinds of group, for the MLP and both linear layers, over a property sweep of
//! the shapes the mode supports; the shapes and tp sizes it does not support are refused.

mod common;

use common::host;

use common::{assert_same_bits, in_layout, linear_data};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, Group, Numerics,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

const TPS: [usize; 4] = [1, 2, 4, 8];

/// Invariant groups by (tp, shared device), made once.
fn group(tp: usize, shared: bool) -> Option<Group> {
    common::cached_group(tp, shared, Numerics::TpInvariant)
}

struct Case {
    batch: usize,
    hidden: usize,
    ffn: usize,
    layout: WeightLayout,
    act: Activation,
    w1: Vec<f32>,
    b1: Option<Vec<f32>>,
    w2: Vec<f32>,
    b2: Option<Vec<f32>>,
    x: Vec<f32>,
}

impl Case {
    fn new(
        seed: u64,
        batch: usize,
        hidden: usize,
        ffn: usize,
        layout: WeightLayout,
        bias: bool,
        act: Activation,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let (w1, b1) = linear_data(&mut rng, hidden, ffn, bias);
        let (w2, b2) = linear_data(&mut rng, ffn, hidden, bias);
        let x = rng.normal(batch * hidden);
        Case {
            batch,
            hidden,
            ffn,
            layout,
            act,
            w1: in_layout(&w1, hidden, ffn, layout),
            b1,
            w2: in_layout(&w2, ffn, hidden, layout),
            b2,
            x,
        }
    }

    /// Every rank's output of the MLP, the column layer (gathered) and the row layer (from
    /// a replicated and from a sharded input), in that order.
    fn outputs(&self, g: &Group) -> Vec<Vec<Vec<f32>>> {
        let (h, f, l) = (self.hidden, self.ffn, self.layout);
        let xd = DistTensor::replicate(g, &self.x, [self.batch, h]).unwrap();
        let mlp = ParallelMlp::from_full(
            g,
            host(&self.w1, &self.b1, h, f, l),
            host(&self.w2, &self.b2, f, h, l),
            self.act,
        )
        .unwrap()
        .forward(&xd)
        .unwrap();
        let col = ColumnParallelLinear::from_full(
            g,
            host(&self.w1, &self.b1, h, f, l),
            ColumnParallelConfig::default()
                .gather_output(true)
                .activation(self.act),
        )
        .unwrap()
        .forward(&xd)
        .unwrap();
        let row = |input_is_parallel| {
            let layer = RowParallelLinear::from_full(
                g,
                host(&self.w2, &self.b2, f, h, l),
                RowParallelConfig::default().input_is_parallel(input_is_parallel),
            )
            .unwrap();
            let x = if input_is_parallel {
                col.redistribute(Placement::Shard(1)).unwrap()
            } else {
                col.clone()
            };
            layer.forward(&x).unwrap()
        };
        [mlp, col.clone(), row(false), row(true)]
            .iter()
            .map(|y| y.to_host_per_rank().unwrap())
            .collect()
    }
}

fn same(want: &[Vec<Vec<f32>>], got: &[Vec<Vec<f32>>], ctx: &str) -> Result<(), TestCaseError> {
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        for (r, v) in g.iter().enumerate() {
            let first = w[0]
                .iter()
                .zip(v)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            prop_assert!(
                first.is_none(),
                "{ctx}: output {i} rank {r} differs from tp 1 at {first:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 120, ..Config::default() })]

    #[test]
    fn identical_bits_at_tp_1_2_4_8(
        batch in 1usize..=24, h8 in 1usize..=12, f8 in 1usize..=24,
        out_in: bool, bias: bool,
        act in prop::sample::select(vec![Activation::Identity, Activation::Relu, Activation::GeluTanh, Activation::GeluErf]),
        seed: u64,
    ) {
        let layout = if out_in { WeightLayout::OutIn } else { WeightLayout::InOut };
        // Inner dimensions are multiples of 8 (what the mode supports); the layers'
        // output sizes must also cover tp 8.
        let c = Case::new(seed, batch, 8 * h8, 8 * f8, layout, bias, act);
        let Some(one) = group(1, false) else { return Ok(()) };
        let want = c.outputs(&one);
        for tp in TPS {
            for shared in [false, true] {
                let Some(g) = group(tp, shared) else { return Ok(()) };
                same(&want, &c.outputs(&g), &format!("tp {tp} shared {shared} {batch}x{}x{} {layout:?} {act:?}", c.hidden, c.ffn))?;
            }
        }
    }
}

#[test]
fn invariant_results_are_within_the_reference_bound() {
    // Bit-identical is worth little if wrong: check tp 8 against the f64 reference.
    let Some(g) = group(8, false) else { return };
    let (batch, hidden, ffn) = (7, 40, 96);
    let c = Case::new(
        3,
        batch,
        hidden,
        ffn,
        WeightLayout::InOut,
        true,
        Activation::GeluErf,
    );
    let out = c.outputs(&g);
    let h = reference::activation(
        &common::reference_linear(&c.x, [batch, hidden], &c.w1, ffn, c.b1.as_deref()),
        Activation::GeluErf,
    );
    let y = common::reference_linear_of(&h, [batch, ffn], &c.w2, hidden, c.b2.as_deref());
    for v in &out[0] {
        common::assert_within(&y, v, "mlp tp 8");
    }
    for v in &out[1] {
        common::assert_within(&h, v, "column tp 8");
    }
}

#[test]
fn unsupported_tp_sizes_and_shapes_are_refused() {
    for tp in [3, 5, 6] {
        let e = Group::builder()
            .ranks_sharing_one_device(tp)
            .numerics(Numerics::TpInvariant)
            .build()
            .err();
        if matches!(e, Some(Error::NoAdapter { .. })) && !common::in_ci() {
            return;
        }
        assert!(
            matches!(&e, Some(Error::InvalidArgument { message, .. }) if message.contains("tp 1, 2, 4 or 8")),
            "tp {tp}: {e:?}"
        );
    }
    let Some(g) = group(2, false) else { return };
    // An inner dimension that is not a multiple of 8: refused when the layer is made, not
    // computed another way.
    let c = Case::new(1, 3, 12, 16, WeightLayout::InOut, false, Activation::Relu);
    let e = ParallelMlp::from_full(
        &g,
        host(&c.w1, &c.b1, 12, 16, c.layout),
        host(&c.w2, &c.b2, 16, 12, c.layout),
        c.act,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(e.to_string().contains("not a multiple of 8"), "{e}");
    // Unequal row-parallel shards cannot follow the blocks.
    let w = vec![0.5f32; 16 * 4];
    let shards: Vec<Tensor> = [(0, 4), (4, 16)]
        .iter()
        .zip(g.ranks())
        .map(|(&(a, b), r)| Tensor::from_host(r, &w[a * 4..b * 4], [b - a, 4]).unwrap())
        .collect();
    let row = RowParallelLinear::from_shards(
        &g,
        shards,
        None,
        WeightLayout::InOut,
        RowParallelConfig::default(),
    );
    let e = row.unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "row_parallel.from_shards",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn ranks_on_vulkan_and_gl_stay_correct_and_deterministic() {
    // Ranks on different backends compile the same WGSL with different compilers; the
    // mode's guarantee is per adapter and backend. What holds across them: results within
    // the reference bound, and the same bits run after run.
    let b = Group::builder()
        .backends(wgpu_tp::wgpu::Backends::VULKAN | wgpu_tp::wgpu::Backends::GL)
        .spread_over_adapters(4)
        .numerics(Numerics::TpInvariant);
    let Some(g) = common::build(b, "vulkan + gl") else {
        return;
    };
    let (batch, hidden, ffn) = (5, 32, 64);
    let c = Case::new(
        9,
        batch,
        hidden,
        ffn,
        WeightLayout::OutIn,
        true,
        Activation::GeluTanh,
    );
    let first = c.outputs(&g);
    let h = reference::activation(
        &common::reference_linear(
            &c.x,
            [batch, hidden],
            &common::transpose(&c.w1, ffn, hidden),
            ffn,
            c.b1.as_deref(),
        ),
        Activation::GeluTanh,
    );
    let y = common::reference_linear_of(
        &h,
        [batch, ffn],
        &common::transpose(&c.w2, hidden, ffn),
        hidden,
        c.b2.as_deref(),
    );
    for v in &first[0] {
        common::assert_within(&y, v, "mixed mlp");
    }
    let again = c.outputs(&g);
    for (a, b) in first.iter().zip(&again) {
        for (x, z) in a.iter().zip(b) {
            assert_same_bits(x, z, "mixed backends, second run");
        }
    }
}
