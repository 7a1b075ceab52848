//! Same inputs, same output bits: for every collective and layer, across repeated calls
//! in one process and across fresh groups (new devices, new pipelines: what a new run of
//! the program gets), on both kinds of group.

mod common;

use wgpu_tp::reference::Rng;
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Group, HostLinear,
    ParallelMlp, Placement, RowParallelConfig, RowParallelLinear, WeightLayout,
};

const SHAPE: [usize; 2] = [23, 37];
const TP: usize = 3;

/// Every collective's and layer's outputs, each read back from every rank.
fn outputs(g: &Group) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(11);
    let n = SHAPE[0] * SHAPE[1];
    let parts = common::normal_parts(&mut rng, TP, n);
    let partial = common::partial(g, &parts, SHAPE);
    let full = rng.normal(n);
    let sharded = DistTensor::shard(g, &full, SHAPE, 1).unwrap();
    let replicated = DistTensor::replicate(g, &full, SHAPE).unwrap();
    let (k, f) = (SHAPE[1], 41);
    let w1 = rng.xavier(k * f, k, f);
    let w2 = rng.xavier(f * k, f, k);
    let (b1, b2) = (rng.normal(f), rng.normal(k));
    let lin = |weight, bias, in_features, out_features| {
        HostLinear::new(weight, in_features, out_features, WeightLayout::InOut).with_bias(bias)
    };
    let column = ColumnParallelLinear::from_full(
        g,
        lin(&w1, &b1, k, f),
        ColumnParallelConfig::default()
            .gather_output(true)
            .activation(Activation::GeluErf),
    )
    .unwrap();
    let row = RowParallelLinear::from_full(
        g,
        lin(&w2, &b2, f, k),
        RowParallelConfig::default().input_is_parallel(true),
    )
    .unwrap();
    let mlp = ParallelMlp::from_full(
        g,
        lin(&w1, &b1, k, f),
        lin(&w2, &b2, f, k),
        Activation::GeluTanh,
    )
    .unwrap();
    let results = [
        partial.all_reduce().unwrap(),
        sharded.all_gather().unwrap(),
        partial.reduce_scatter(0).unwrap(),
        replicated.broadcast(2).unwrap(),
        partial.redistribute(Placement::Shard(1)).unwrap(),
        column.forward(&replicated).unwrap(),
        row.forward(
            &column
                .forward(&replicated)
                .unwrap()
                .redistribute(Placement::Shard(1))
                .unwrap(),
        )
        .unwrap(),
        mlp.forward(&replicated).unwrap(),
    ];
    results
        .iter()
        .flat_map(|y| y.to_host_per_rank().unwrap())
        .collect()
}

fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>], ctx: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        common::assert_same_bits(x, y, &format!("{ctx}, output {i}"));
    }
}

#[test]
fn identical_bits_across_calls_and_fresh_groups() {
    for (shared, kind) in [(false, "devices"), (true, "shared device")] {
        let make = || {
            let b = Group::builder();
            let b = if shared {
                b.ranks_sharing_one_device(TP)
            } else {
                b.ranks_on_one_adapter(TP)
            };
            common::build(b, kind)
        };
        let Some(g) = make() else { return };
        let first = outputs(&g);
        assert_same(&first, &outputs(&g), &format!("{kind}: second call"));
        assert_same(&first, &outputs(&g), &format!("{kind}: third call"));
        let fresh = make().unwrap();
        assert_same(&first, &outputs(&fresh), &format!("{kind}: fresh group"));
    }
}
