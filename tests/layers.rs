//! Every layer against the f64 reference at tp 1, 2, 3, 4 and 8, with uneven splits,
//! both weight layouts, with and without bias, every activation.

mod common;

use common::host;

use common::{assert_within, in_layout, linear_data, LinearCase, TP_SIZES};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, ParallelMlp, Placement,
    RowParallelConfig, RowParallelLinear, WeightLayout,
};

const LAYOUTS: [WeightLayout; 2] = [WeightLayout::InOut, WeightLayout::OutIn];
const ACTIVATIONS: [Activation; 3] = [Activation::Relu, Activation::GeluTanh, Activation::GeluErf];
// Sizes that no tp in TP_SIZES divides evenly (but 1), and a K over several 16-wide tiles.
const BATCH: usize = 5;
const IN: usize = 37;
const OUT: usize = 19;

#[test]
fn column_parallel_matches_reference() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    for act in [Activation::Identity, Activation::GeluErf] {
                        let ctx = format!("column tp {tp} {layout:?} bias {with_bias} {act:?}");
                        let LinearCase { x, w, stored, b } = LinearCase::new(
                            tp as u64 * 7 + with_bias as u64,
                            (BATCH, IN, OUT),
                            layout,
                            with_bias,
                        );
                        let want = reference::activation(
                            &common::reference_linear(&x, [BATCH, IN], &w, OUT, b.as_deref()),
                            act,
                        );
                        let xd = DistTensor::replicate(&group, &x, [BATCH, IN]).unwrap();
                        for gather_output in [false, true] {
                            let layer = ColumnParallelLinear::from_full(
                                &group,
                                host(&stored, &b, IN, OUT, layout),
                                ColumnParallelConfig::default()
                                    .gather_output(gather_output)
                                    .activation(act),
                            )
                            .unwrap();
                            assert_eq!(
                                layer.out_features_per_rank(),
                                wgpu_tp::split_sizes(OUT, tp).unwrap()
                            );
                            let y = layer.forward(&xd).unwrap();
                            let expect = if gather_output {
                                Placement::Replicate
                            } else {
                                Placement::Shard(1)
                            };
                            assert_eq!(y.placement(), expect, "{ctx}");
                            assert_eq!(y.shape(), [BATCH, OUT], "{ctx}");
                            assert_within(&want, &y.to_host().unwrap(), &ctx);
                            if gather_output {
                                common::assert_every_rank_within(&want, &y, &ctx);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn row_parallel_matches_reference() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    let LinearCase { x, w, stored, b } = LinearCase::new(
                        100 + tp as u64 * 3 + with_bias as u64,
                        (BATCH, IN, OUT),
                        layout,
                        with_bias,
                    );
                    let with_b = common::reference_linear(&x, [BATCH, IN], &w, OUT, b.as_deref());
                    let without_b = common::reference_linear(&x, [BATCH, IN], &w, OUT, None);
                    for input_is_parallel in [false, true] {
                        for skip_bias_add in [false, true] {
                            let ctx = format!("row tp {tp} {layout:?} bias {with_bias} parallel-in {input_is_parallel} skip {skip_bias_add}");
                            let layer = RowParallelLinear::from_full(
                                &group,
                                host(&stored, &b, IN, OUT, layout),
                                RowParallelConfig::default()
                                    .input_is_parallel(input_is_parallel)
                                    .skip_bias_add(skip_bias_add),
                            )
                            .unwrap();
                            let xd = if input_is_parallel {
                                DistTensor::shard(&group, &x, [BATCH, IN], 1).unwrap()
                            } else {
                                DistTensor::replicate(&group, &x, [BATCH, IN]).unwrap()
                            };
                            let y = layer.forward(&xd).unwrap();
                            assert_eq!(y.placement(), Placement::Replicate, "{ctx}");
                            let want = if skip_bias_add { &without_b } else { &with_b };
                            common::assert_every_rank_within(want, &y, &ctx);
                            if skip_bias_add && with_bias {
                                let bias = layer.bias().unwrap().to_host().unwrap();
                                assert_eq!(
                                    &bias,
                                    b.as_ref().unwrap(),
                                    "{ctx}: skipped bias is handed back"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn mlp_matches_reference() {
    const FFN: usize = 29;
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    for act in ACTIVATIONS {
                        let ctx = format!("mlp tp {tp} {layout:?} bias {with_bias} {act:?}");
                        let mut rng = Rng::new(200 + tp as u64);
                        let (w1, b1) = linear_data(&mut rng, OUT, FFN, with_bias);
                        let (w2, b2) = linear_data(&mut rng, FFN, OUT, with_bias);
                        let x = rng.normal(BATCH * OUT);
                        let (s1, s2) = (
                            in_layout(&w1, OUT, FFN, layout),
                            in_layout(&w2, FFN, OUT, layout),
                        );
                        let mlp = ParallelMlp::from_full(
                            &group,
                            host(&s1, &b1, OUT, FFN, layout),
                            host(&s2, &b2, FFN, OUT, layout),
                            act,
                        )
                        .unwrap();
                        let h = common::reference_linear(&x, [BATCH, OUT], &w1, FFN, b1.as_deref());
                        let want = common::reference_linear_of(
                            &reference::activation(&h, act),
                            [BATCH, FFN],
                            &w2,
                            OUT,
                            b2.as_deref(),
                        );
                        let y = mlp
                            .forward(&DistTensor::replicate(&group, &x, [BATCH, OUT]).unwrap())
                            .unwrap();
                        common::assert_every_rank_within(&want, &y, &ctx);
                    }
                }
            }
        }
    }
}

/// Shapes spanning several 64 x 64 output tiles and 16-wide K steps, with ragged edges.
#[test]
fn multi_tile_shapes_match_reference() {
    for group in common::groups(3) {
        let (batch, inf, outf) = (70, 131, 197);
        for layout in LAYOUTS {
            let LinearCase { x, w, stored, b } =
                LinearCase::new(7, (batch, inf, outf), layout, true);
            let want = common::reference_linear(&x, [batch, inf], &w, outf, b.as_deref());
            let xd = DistTensor::replicate(&group, &x, [batch, inf]).unwrap();
            let col = ColumnParallelLinear::from_full(
                &group,
                host(&stored, &b, inf, outf, layout),
                ColumnParallelConfig::default(),
            )
            .unwrap();
            assert_within(
                &want,
                &col.forward(&xd).unwrap().to_host().unwrap(),
                &format!("column {layout:?}"),
            );
            let row = RowParallelLinear::from_full(
                &group,
                host(&stored, &b, inf, outf, layout),
                RowParallelConfig::default(),
            )
            .unwrap();
            assert_within(
                &want,
                &row.forward(&xd).unwrap().to_host().unwrap(),
                &format!("row {layout:?}"),
            );
        }
    }
}

/// Layers built from shards a caller already has give the same answer as from full weights.
#[test]
fn layers_from_shards_match_from_full() {
    for group in common::groups(3) {
        let mut rng = Rng::new(11);
        let (w1, b1) = linear_data(&mut rng, OUT, IN, true);
        let (w2, b2) = linear_data(&mut rng, IN, OUT, true);
        let x = rng.normal(BATCH * OUT);
        let sizes = wgpu_tp::split_sizes(IN, 3).unwrap();
        let w1_parts = common::split_host(&w1, [OUT, IN], 1, &sizes);
        let b1_parts = common::split_host(b1.as_ref().unwrap(), [1, IN], 1, &sizes);
        let w2_parts = common::split_host(&w2, [IN, OUT], 0, &sizes);
        let ranks = group.ranks();
        let t = |r: usize, d: &[f32], s: [usize; 2]| {
            wgpu_tp::Tensor::from_host(&ranks[r], d, s).unwrap()
        };
        let fc1 = ColumnParallelLinear::from_shards(
            &group,
            (0..3)
                .map(|r| t(r, &w1_parts[r], [OUT, sizes[r]]))
                .collect(),
            Some((0..3).map(|r| t(r, &b1_parts[r], [1, sizes[r]])).collect()),
            WeightLayout::InOut,
            ColumnParallelConfig::default()
                .gather_output(false)
                .activation(Activation::Relu),
        )
        .unwrap();
        let fc2 = RowParallelLinear::from_shards(
            &group,
            (0..3)
                .map(|r| t(r, &w2_parts[r], [sizes[r], OUT]))
                .collect(),
            Some(
                (0..3)
                    .map(|r| t(r, b2.as_ref().unwrap(), [1, OUT]))
                    .collect(),
            ),
            WeightLayout::InOut,
            RowParallelConfig::default().input_is_parallel(true),
        )
        .unwrap();
        let from_shards = ParallelMlp::from_layers(fc1, fc2).unwrap();
        let from_full = ParallelMlp::from_full(
            &group,
            host(&w1, &b1, OUT, IN, WeightLayout::InOut),
            host(&w2, &b2, IN, OUT, WeightLayout::InOut),
            Activation::Relu,
        )
        .unwrap();
        let xd = DistTensor::replicate(&group, &x, [BATCH, OUT]).unwrap();
        let a = from_shards.forward(&xd).unwrap().to_host().unwrap();
        let b = from_full.forward(&xd).unwrap().to_host().unwrap();
        common::assert_same_bits(&a, &b, "from_shards vs from_full");
    }
}
