//! Decode-shaped work in its steady state makes no wgpu buffer: a small all-reduce after
//! the first of its size, and a batch-1 MLP step (input upload, forward, read-back) after
//! the first, reuse the tensors, staging, upload and parameter buffers earlier calls made
//! (`Rank::stats().buffers_made`), on both kinds of group and with both numerics, and
//! still give the right sums.

mod common;

use common::LinearCase;
use wgpu_tp::{
    Activation, DistTensor, Group, Numerics, ParallelMlp, Placement, Tensor, WeightLayout,
};

/// A group of its own (the counts are per device: a group another test also uses would
/// count that test's buffers too).
fn own_group(tp: usize, shared: bool, numerics: Numerics) -> Option<Group> {
    let b = Group::builder().numerics(numerics);
    let b = if shared {
        b.ranks_sharing_one_device(tp)
    } else {
        b.ranks_on_one_adapter(tp)
    };
    common::build(b, "steady state")
}

fn made(group: &Group) -> Vec<u64> {
    group
        .ranks()
        .iter()
        .map(|r| r.stats().buffers_made)
        .collect()
}

#[test]
fn a_small_all_reduce_makes_no_buffer_after_the_first() {
    let elems = 4096; // 16 KiB
    for (shared, tp, numerics) in [false, true]
        .into_iter()
        .flat_map(|s| [2, 4].map(|tp| (s, tp)))
        .flat_map(|(s, tp)| [Numerics::Fast, Numerics::TpInvariant].map(|n| (s, tp, n)))
    {
        {
            let Some(group) = own_group(tp, shared, numerics) else {
                return;
            };
            let locals = group
                .ranks()
                .iter()
                .enumerate()
                .map(|(r, rank)| Tensor::from_host(rank, &vec![r as f32 + 0.25; elems], [1, elems]))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let x = DistTensor::from_locals(&group, locals, Placement::Partial).unwrap();
            let want: f32 = (0..tp).map(|r| r as f32 + 0.25).sum();
            let step = || {
                let y = x.all_reduce().unwrap();
                for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                    assert!(
                        v.iter().all(|&e| e == want),
                        "tp {tp} shared {shared} rank {r}"
                    );
                }
            };
            // The first calls make the buffers; an upload's comes back once the device has
            // been polled after its copy, by the next call's wait.
            for _ in 0..3 {
                step();
            }
            let before = made(&group);
            for _ in 0..10 {
                step();
            }
            assert_eq!(made(&group), before, "tp {tp} shared {shared} {numerics:?}");
        }
    }
}

#[test]
fn a_batch_1_mlp_step_makes_no_buffer_after_the_first() {
    let (hidden, ffn) = (256, 1024);
    for numerics in [Numerics::Fast, Numerics::TpInvariant] {
        for shared in [false, true] {
            let Some(group) = own_group(4, shared, numerics) else {
                return;
            };
            let c1 = LinearCase::new(41, (1, hidden, ffn), WeightLayout::InOut, true);
            let c2 = LinearCase::new(42, (1, ffn, hidden), WeightLayout::InOut, true);
            let mlp = ParallelMlp::from_full(
                &group,
                c1.host(hidden, ffn, WeightLayout::InOut),
                c2.host(ffn, hidden, WeightLayout::InOut),
                Activation::GeluTanh,
            )
            .unwrap();
            // A step: upload the input, forward, read the output back.
            let step = || {
                let x = DistTensor::replicate(&group, &c1.x, [1, hidden]).unwrap();
                mlp.forward(&x).unwrap().to_host().unwrap()
            };
            let first = step();
            for _ in 0..2 {
                step();
            }
            let before = made(&group);
            for i in 0..10 {
                common::assert_same_bits(&first, &step(), &format!("{numerics:?} step {i}"));
            }
            assert_eq!(made(&group), before, "{numerics:?} shared {shared}");
        }
    }
}

/// On ranks sharing one device an all-reduce of up to eight is one dispatch, in rank
/// order or along the tp-invariant tree, and gives the host collective's bits.
#[test]
fn a_shared_device_all_reduce_is_one_dispatch() {
    let elems = 4096;
    for numerics in [Numerics::Fast, Numerics::TpInvariant] {
        for tp in [2, 4, 8] {
            let (Some(shared), Some(host)) = (
                own_group(tp, true, numerics),
                own_group(tp, false, numerics),
            ) else {
                return;
            };
            // Addends whose sum depends on the association.
            let parts: Vec<Vec<f32>> = (0..tp)
                .map(|r| {
                    (0..elems)
                        .map(|i| match (r + i) % 4 {
                            0 => 1.0,
                            1 => 2f32.powi(-24),
                            2 => -1.0,
                            _ => 3.0 * 2f32.powi(-25),
                        })
                        .collect()
                })
                .collect();
            let sum = |g: &Group| {
                common::partial(g, &parts, [1, elems])
                    .all_reduce()
                    .unwrap()
                    .to_host_per_rank()
                    .unwrap()
            };
            let want = sum(&host);
            let rank = &shared.ranks()[0];
            sum(&shared); // the first compiles the pipeline
            let x = common::partial(&shared, &parts, [1, elems]);
            let before = rank.stats().dispatches;
            let got = x.all_reduce().unwrap().to_host_per_rank().unwrap();
            let ctx = format!("{numerics:?} tp {tp}");
            assert_eq!(rank.stats().dispatches - before, 1, "{ctx}");
            for (r, (a, b)) in got.iter().zip(&want).enumerate() {
                common::assert_same_bits(a, b, &format!("{ctx} rank {r}"));
            }
        }
    }
}
