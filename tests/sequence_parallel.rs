//! Sequence parallelism (Korthikanti et al. 2022): the Megatron MLP and the norms on each
//! rank's tokens (`Shard(0)`), the all-reduce replaced by an all-gather and a
//! reduce-scatter of the same bytes. Forward and backward give the bits of the MLP without
//! sequence parallelism (the reduce-scatter adds the same partials in the same rank order
//! as the all-reduce), at tp 1-4 with uneven token shards on both kinds of group; the
//! norms' weight gradients, each rank's tokens' share all-reduced, within the reference's
//! bound; and what a rank keeps between forward and backward divided by the tp size.

mod common;

use common::{assert_same_bits, assert_within, fresh_groups};
use wgpu_tp::nn::{Norm, NormKind};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{Activation, DistTensor, Error, HostLinear, ParallelMlp, Placement, WeightLayout};

#[test]
fn the_sequence_parallel_mlp_gives_the_bits_of_the_mlp_at_tp_1_to_4() {
    let (t, h, f) = (10, 16, 24);
    let mut rng = Rng::new(70);
    let (w1, b1) = (rng.xavier(h * f, h, f), rng.normal(f));
    let (w2, b2) = (rng.xavier(f * h, f, h), rng.normal(h));
    let (x, dy) = (rng.normal(t * h), rng.normal(t * h));
    let io = WeightLayout::InOut;
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            let mlp = ParallelMlp::from_full(
                &g,
                HostLinear::new(&w1, h, f, io).with_bias(&b1),
                HostLinear::new(&w2, f, h, io).with_bias(&b2),
                Activation::GeluTanh,
            )
            .unwrap();
            let xr = DistTensor::replicate(&g, &x, [t, h]).unwrap();
            let dyr = DistTensor::replicate(&g, &dy, [t, h]).unwrap();
            let want_y = mlp.forward(&xr).unwrap().to_host().unwrap();
            let want = mlp.backward(&xr, &dyr).unwrap();
            let xs = DistTensor::shard(&g, &x, [t, h], 0).unwrap();
            let dys = DistTensor::shard(&g, &dy, [t, h], 0).unwrap();
            let s = g.stats();
            let before = (s.all_reduces(), s.all_gathers(), s.reduce_scatters());
            let y = mlp.forward_sequence_parallel(&xs).unwrap();
            let s = g.stats();
            let after = (s.all_reduces(), s.all_gathers(), s.reduce_scatters());
            assert_eq!(
                after,
                (before.0, before.1 + 1, before.2 + 1),
                "tp {tp}: forward"
            );
            assert_eq!(y.placement(), Placement::Shard(0));
            assert_eq!(y.shard_sizes(), xs.shard_sizes());
            assert_same_bits(&want_y, &y.to_host().unwrap(), &format!("tp {tp}: y"));
            let grads = mlp.backward_sequence_parallel(&xs, &dys).unwrap();
            let s = g.stats();
            let last = (s.all_reduces(), s.all_gathers(), s.reduce_scatters());
            assert_eq!(
                last,
                (after.0, after.1 + 2, after.2 + 1),
                "tp {tp}: backward"
            );
            assert_eq!(grads.fc1.input.placement(), Placement::Shard(0));
            let pairs = [
                (&want.fc1.input, &grads.fc1.input, "dX"),
                (&want.fc1.weight, &grads.fc1.weight, "dW1"),
                (&want.fc2.weight, &grads.fc2.weight, "dW2"),
            ];
            for (a, b, what) in pairs {
                let (a, b) = (a.to_host().unwrap(), b.to_host().unwrap());
                assert_same_bits(&a, &b, &format!("tp {tp}: {what}"));
            }
            // A rank keeps its tokens of x, not all of them.
            let kept = xs.locals()[0].shape()[0];
            assert_eq!(kept, t.div_ceil(tp), "tp {tp}");
            // Placements it refuses.
            let e = mlp.forward_sequence_parallel(&xr).unwrap_err();
            assert!(matches!(e, Error::Placement { .. }), "{e:?}");
        }
    }
}

/// Both norms on each rank's tokens: dx the bits of the replicated backward (rows are
/// independent), the weight and bias gradients (each rank's share, all-reduced) within the
/// reference's bound, which holds for any order of the rows' sum.
#[test]
fn norms_on_token_shards_match_the_replicated_norms() {
    let (t, h, eps) = (10, 16, 1e-5);
    let mut rng = Rng::new(71);
    let x: Vec<f32> = rng.normal(t * h).iter().map(|v| 1.0 + v).collect();
    let w: Vec<f32> = rng.normal(h).iter().map(|v| 1.0 + 0.1 * v).collect();
    let b = rng.normal(h);
    let dy = rng.normal(t * h);
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            for kind in [NormKind::Rms, NormKind::Layer] {
                let ctx = format!("tp {tp} {kind:?}");
                let bias = (kind == NormKind::Layer).then_some(&b[..]);
                let norm = Norm::new(&g, kind, &w, bias, eps).unwrap();
                let xr = DistTensor::replicate(&g, &x, [t, h]).unwrap();
                let dyr = DistTensor::replicate(&g, &dy, [t, h]).unwrap();
                let xs = DistTensor::shard(&g, &x, [t, h], 0).unwrap();
                let dys = DistTensor::shard(&g, &dy, [t, h], 0).unwrap();
                let y = norm.forward(&xs).unwrap();
                assert_eq!(y.placement(), Placement::Shard(0));
                let want_y = norm.forward(&xr).unwrap().to_host().unwrap();
                assert_same_bits(&want_y, &y.to_host().unwrap(), &format!("{ctx}: y"));
                let want = norm.backward(&xr, &dyr).unwrap();
                let got = norm.backward(&xs, &dys).unwrap();
                let (a, c) = (want.input.to_host().unwrap(), got.input.to_host().unwrap());
                assert_same_bits(&a, &c, &format!("{ctx}: dx"));
                let (ref_w, ref_b) = match kind {
                    NormKind::Rms => (
                        reference::rms_norm_backward(&x, &w, &dy, [t, h], eps).1,
                        None,
                    ),
                    _ => {
                        let (_, dw, db) = reference::layer_norm_backward(&x, &w, &dy, [t, h], eps);
                        (dw, Some(db))
                    }
                };
                for (r, v) in got.weight.to_host_per_rank().unwrap().iter().enumerate() {
                    assert_within(&ref_w, v, &format!("{ctx}: dweight rank {r}"));
                }
                if let Some(ref_b) = ref_b {
                    let v = got.bias.as_ref().unwrap().to_host().unwrap();
                    assert_within(&ref_b, &v, &format!("{ctx}: dbias"));
                }
                // dy placed otherwise than x.
                assert!(matches!(
                    norm.backward(&xs, &dyr),
                    Err(Error::Placement { .. })
                ));
            }
        }
    }
}
