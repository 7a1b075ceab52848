//! The layers' options beyond the defaults, against the f64 reference: a column layer's
//! `skip_bias_add` (the caller adds `bias()`), a row layer without `reduce_results` (its
//! `Partial` output, no all-reduce), the `layout()` and `bias()` accessors, and the
//! combinations refused when a layer is made.

mod common;

use common::{assert_same_bits, assert_within, host, linear_data, LinearCase, TP_SIZES};
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error, ParallelMlp,
    Placement, RowParallelConfig, RowParallelLinear, WeightLayout,
};

const LAYOUTS: [WeightLayout; 2] = [WeightLayout::InOut, WeightLayout::OutIn];
// Sizes that no tp in TP_SIZES divides evenly (but 1), as in tests/layers.rs.
const BATCH: usize = 5;
const IN: usize = 37;
const OUT: usize = 19;

/// `y + bias` with `bias` broadcast over the rows, in f32: the addition the caller fuses.
fn add_bias(y: &[f32], bias: &[f32]) -> Vec<f32> {
    y.chunks(bias.len())
        .flat_map(|row| row.iter().zip(bias).map(|(a, b)| a + b))
        .collect()
}

#[test]
fn column_with_skip_bias_add_leaves_the_sharded_bias_to_the_caller() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            for layout in LAYOUTS {
                let LinearCase { x, w, stored, b } =
                    LinearCase::new(300 + tp as u64, (BATCH, IN, OUT), layout, true);
                // The reference of `x · w + b`: its bound, γ(K + 2), has the one rounding of
                // a bias added after the product, which is what the caller's addition is.
                let want = common::reference_linear(&x, [BATCH, IN], &w, OUT, b.as_deref());
                let xd = DistTensor::replicate(&group, &x, [BATCH, IN]).unwrap();
                for gather_output in [false, true] {
                    let ctx = format!("column skip tp {tp} {layout:?} gather {gather_output}");
                    let layer = ColumnParallelLinear::from_full(
                        &group,
                        host(&stored, &b, IN, OUT, layout),
                        ColumnParallelConfig::default()
                            .gather_output(gather_output)
                            .skip_bias_add(true),
                    )
                    .unwrap();
                    let bias = layer.bias().unwrap();
                    assert_eq!(bias.placement(), Placement::Shard(1), "{ctx}");
                    assert_eq!(bias.shape(), [1, OUT], "{ctx}");
                    let bias = bias.to_host().unwrap();
                    assert_eq!(&bias, b.as_ref().unwrap(), "{ctx}: the bias is handed back");
                    let y = layer.forward(&xd).unwrap().to_host().unwrap();
                    assert_within(&want, &add_bias(&y, &bias), &ctx);
                }
            }
        }
    }
}

#[test]
fn row_without_reduce_results_returns_the_partial_output_and_no_all_reduce() {
    for tp in TP_SIZES {
        // Fresh groups: no other test's collectives move the counter in between.
        for group in common::fresh_groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    let LinearCase { x, w, stored, b } = LinearCase::new(
                        400 + tp as u64 * 3 + with_bias as u64,
                        (BATCH, IN, OUT),
                        layout,
                        with_bias,
                    );
                    let want = common::reference_linear(&x, [BATCH, IN], &w, OUT, b.as_deref());
                    for input_is_parallel in [false, true] {
                        let ctx = format!(
                            "row partial tp {tp} {layout:?} bias {with_bias} parallel-in {input_is_parallel}"
                        );
                        // A bias is the caller's once the sum is: it must be skipped.
                        let config = RowParallelConfig::default()
                            .input_is_parallel(input_is_parallel)
                            .skip_bias_add(with_bias);
                        let layer = RowParallelLinear::from_full(
                            &group,
                            host(&stored, &b, IN, OUT, layout),
                            config.reduce_results(false),
                        )
                        .unwrap();
                        let xd = if input_is_parallel {
                            DistTensor::shard(&group, &x, [BATCH, IN], 1).unwrap()
                        } else {
                            DistTensor::replicate(&group, &x, [BATCH, IN]).unwrap()
                        };
                        let before = group.stats().all_reduces();
                        let y = layer.forward(&xd).unwrap();
                        assert_eq!(group.stats().all_reduces(), before, "{ctx}: no all-reduce");
                        assert_eq!(y.placement(), Placement::Partial, "{ctx}");
                        assert_eq!(y.shape(), [BATCH, OUT], "{ctx}");
                        let sum = y.to_host().unwrap();
                        let got = match layer.bias() {
                            Some(bias) => add_bias(&sum, &bias.to_host().unwrap()),
                            None => sum,
                        };
                        assert_within(&want, &got, &ctx);
                        // Reduced later, the same bits as the layer reducing them itself.
                        let reduced = RowParallelLinear::from_full(
                            &group,
                            host(&stored, &b, IN, OUT, layout),
                            config,
                        )
                        .unwrap()
                        .forward(&xd)
                        .unwrap();
                        assert_same_bits(
                            &y.all_reduce().unwrap().to_host().unwrap(),
                            &reduced.to_host().unwrap(),
                            &ctx,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn layout_and_bias_accessors_say_what_the_layer_holds() {
    for group in common::groups(3) {
        for layout in LAYOUTS {
            for with_bias in [false, true] {
                let ctx = format!("{layout:?} bias {with_bias}");
                let c = LinearCase::new(5, (BATCH, IN, OUT), layout, with_bias);
                let col = ColumnParallelLinear::from_full(
                    &group,
                    c.host(IN, OUT, layout),
                    ColumnParallelConfig::default(),
                )
                .unwrap();
                let row = RowParallelLinear::from_full(
                    &group,
                    c.host(IN, OUT, layout),
                    RowParallelConfig::default(),
                )
                .unwrap();
                assert_eq!(col.layout(), layout, "{ctx}");
                assert_eq!(row.layout(), layout, "{ctx}");
                assert_eq!(col.bias().is_some(), with_bias, "{ctx}");
                assert_eq!(row.bias().is_some(), with_bias, "{ctx}");
                if let (Some(cb), Some(rb)) = (col.bias(), row.bias()) {
                    assert_eq!(cb.placement(), Placement::Shard(1), "{ctx}");
                    assert_eq!(rb.placement(), Placement::Replicate, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn option_combinations_that_would_lose_the_bias_are_refused_when_made() {
    let invalid = |e: Error, op: &str, ctx: &str| {
        assert!(
            matches!(&e, Error::InvalidArgument { op: o, .. } if *o == op),
            "{ctx}: {e:?}"
        );
    };
    for group in common::groups(2) {
        let mut rng = Rng::new(6);
        let (w, b) = linear_data(&mut rng, IN, OUT, true);
        let full = || host(&w, &b, IN, OUT, WeightLayout::InOut);
        // A row layer's bias belongs after the reduction: without it, the caller's.
        let e = RowParallelLinear::from_full(
            &group,
            full(),
            RowParallelConfig::default().reduce_results(false),
        )
        .unwrap_err();
        invalid(
            e,
            "row_parallel.from_full",
            "row bias without reduce_results",
        );
        // The activation would run before the skipped bias.
        let e = ColumnParallelLinear::from_full(
            &group,
            full(),
            ColumnParallelConfig::default()
                .activation(Activation::Relu)
                .skip_bias_add(true),
        )
        .unwrap_err();
        invalid(
            e,
            "column_parallel.from_full",
            "column skip with activation",
        );
        // Without a bias there is nothing to lose.
        let no_bias = common::lin(&w, IN, OUT);
        assert!(RowParallelLinear::from_full(
            &group,
            no_bias,
            RowParallelConfig::default().reduce_results(false)
        )
        .is_ok());
        assert!(ColumnParallelLinear::from_full(
            &group,
            no_bias,
            ColumnParallelConfig::default()
                .activation(Activation::Relu)
                .skip_bias_add(true)
        )
        .is_ok());
        // An MLP's fc1 needs its bias before the activation.
        let (w2, b2) = linear_data(&mut rng, OUT, IN, true);
        let fc1 = ColumnParallelLinear::from_full(
            &group,
            full(),
            ColumnParallelConfig::default()
                .gather_output(false)
                .skip_bias_add(true),
        )
        .unwrap();
        let fc2 = RowParallelLinear::from_full(
            &group,
            host(&w2, &b2, OUT, IN, WeightLayout::InOut),
            RowParallelConfig::default().input_is_parallel(true),
        )
        .unwrap();
        let e = ParallelMlp::from_layers(fc1, fc2).unwrap_err();
        invalid(e, "parallel_mlp.from_layers", "mlp fc1 skip");
    }
}
