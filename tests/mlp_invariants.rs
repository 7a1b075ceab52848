//! The Megatron MLP's promises: exactly one all-reduce per forward, identical bits on every
//! rank, identical bits run to run, the seed's 1e-5 at the seed's shapes, and the async API.

mod common;

use common::{assert_same_bits, assert_within};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{Activation, DistTensor, HostLinear, ParallelMlp, WeightLayout};

// The seed's MLP: batch 4, hidden 8, intermediate 32, ReLU, no bias.
const BATCH: usize = 4;
const HIDDEN: usize = 8;
const FFN: usize = 32;

struct Seeded {
    w1: Vec<f32>,
    w2: Vec<f32>,
    x: Vec<f32>,
}

fn seeded() -> Seeded {
    let mut rng = Rng::new(42);
    Seeded {
        w1: rng.xavier(HIDDEN * FFN, HIDDEN, FFN),
        w2: rng.xavier(FFN * HIDDEN, FFN, HIDDEN),
        x: Rng::new(200).normal(BATCH * HIDDEN),
    }
}

fn mlp(group: &wgpu_tp::Group, s: &Seeded) -> ParallelMlp {
    ParallelMlp::from_full(
        group,
        HostLinear::new(&s.w1, HIDDEN, FFN, WeightLayout::InOut),
        HostLinear::new(&s.w2, FFN, HIDDEN, WeightLayout::InOut),
        Activation::Relu,
    )
    .unwrap()
}

#[test]
fn one_all_reduce_per_forward_and_nothing_else() {
    for tp in [1, 2, 4, 8] {
        for group in common::fresh_groups(tp) {
            let s = seeded();
            let mlp = mlp(&group, &s);
            let x = DistTensor::replicate(&group, &s.x, [BATCH, HIDDEN]).unwrap();
            for n in 1..=3 {
                mlp.forward(&x).unwrap();
                let st = group.stats();
                assert_eq!(
                    st.all_reduces(),
                    n,
                    "tp {tp}: all-reduces after {n} forwards"
                );
                assert_eq!(
                    st.all_gathers() + st.reduce_scatters() + st.broadcasts(),
                    0,
                    "tp {tp}"
                );
            }
        }
    }
}

#[test]
fn identical_bits_on_every_rank_and_every_run_within_the_seed_tolerance() {
    let s = seeded();
    let h = reference::activation(
        &common::reference_linear(&s.x, [BATCH, HIDDEN], &s.w1, FFN, None),
        Activation::Relu,
    );
    let want = common::reference_linear_of(&h, [BATCH, FFN], &s.w2, HIDDEN, None);
    for tp in [1, 2, 3, 4, 8] {
        for group in common::groups(tp) {
            let mlp = mlp(&group, &s);
            let x = DistTensor::replicate(&group, &s.x, [BATCH, HIDDEN]).unwrap();
            let first = mlp.forward(&x).unwrap().to_host_per_rank().unwrap();
            for (r, v) in first.iter().enumerate() {
                assert_same_bits(v, &first[0], &format!("tp {tp} rank {r} vs rank 0"));
                assert_within(&want, v, &format!("tp {tp} rank {r}"));
                // The seed's own criterion, at the seed's shapes.
                let c = want.check(v);
                assert!(
                    c.max_abs_diff < 1e-5,
                    "tp {tp}: {:.3e} >= 1e-5",
                    c.max_abs_diff
                );
            }
            for run in 0..3 {
                let again = mlp.forward(&x).unwrap().to_host_per_rank().unwrap();
                for (r, v) in again.iter().enumerate() {
                    assert_same_bits(v, &first[r], &format!("tp {tp} rank {r} run {run}"));
                }
            }
        }
    }
}

#[test]
fn async_api_gives_the_same_bits_as_the_blocking_one() {
    let group = group_or_skip!(2);
    let s = seeded();
    let mlp = mlp(&group, &s);
    let x = DistTensor::replicate(&group, &s.x, [BATCH, HIDDEN]).unwrap();
    let blocking = mlp.forward(&x).unwrap().to_host().unwrap();
    let asynchronous = pollster::block_on(async {
        let y = mlp.forward_async(&x).await.unwrap();
        y.to_host_async().await.unwrap()
    });
    assert_same_bits(&asynchronous, &blocking, "async vs blocking");
    let built = pollster::block_on(
        wgpu_tp::Group::builder()
            .ranks_on_one_adapter(2)
            .build_async(),
    )
    .unwrap();
    assert_eq!(built.world_size(), 2);
}
