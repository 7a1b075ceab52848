//! Every collective and redistribution against the host reference at tp 1, 2, 3, 4, 8,
//! with uneven shards; determinism of the all-reduce.
#![allow(clippy::needless_range_loop)] // dims and ranks index several arrays at once

mod common;

use common::{assert_same_bits, concat_host, rank_order_sum, split_host, TP_SIZES};
use wgpu_tp::reference::Rng;

use wgpu_tp::{split_sizes, DistTensor, Placement, Tensor};

const SHAPE: [usize; 2] = [11, 13];

/// Rank r's addend of a `Partial` tensor.
fn addends(tp: usize, seed: u64) -> Vec<Vec<f32>> {
    common::normal_parts(&mut Rng::new(seed), tp, SHAPE[0] * SHAPE[1])
}

fn partial(group: &wgpu_tp::Group, parts: &[Vec<f32>]) -> DistTensor {
    common::partial(group, parts, SHAPE)
}

/// The f64 sum and its f32 bound: summing tp terms in any order errs by at most
/// γ(tp - 1) Σ|terms| (Higham), γ(n) = n u / (1 - n u).
fn sum_reference(parts: &[Vec<f32>]) -> wgpu_tp::reference::Approx {
    let n = parts[0].len();
    let g = wgpu_tp::reference::gamma(parts.len().saturating_sub(1));
    let value: Vec<f64> = (0..n)
        .map(|i| parts.iter().map(|p| f64::from(p[i])).sum())
        .collect();
    let bound = (0..n)
        .map(|i| g * parts.iter().map(|p| f64::from(p[i]).abs()).sum::<f64>())
        .collect();
    wgpu_tp::reference::Approx { value, bound }
}

#[test]
fn all_reduce_sums_on_every_rank_in_rank_order() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            let parts = addends(tp, tp as u64);
            let x = partial(&group, &parts);
            let y = x.all_reduce().unwrap();
            assert_eq!(y.placement(), Placement::Replicate);
            let want = sum_reference(&parts);
            // The host sums in rank order in f32: ((x0 + x1) + x2) + ...; bit-exact.
            let mut exact = parts[0].clone();
            for p in &parts[1..] {
                exact.iter_mut().zip(p).for_each(|(a, b)| *a += *b);
            }
            for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                common::assert_within(&want, v, &format!("all_reduce tp {tp} rank {r}"));
                assert_same_bits(
                    v,
                    &exact,
                    &format!("all_reduce tp {tp} rank {r} rank-order sum"),
                );
            }
            // Same inputs, same bits, run after run.
            let again = x.all_reduce().unwrap().to_host().unwrap();
            assert_same_bits(&again, &exact, &format!("all_reduce tp {tp} second run"));
        }
    }
}

#[test]
fn all_gather_concatenates_uneven_shards() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            let full = Rng::new(5).normal(SHAPE[0] * SHAPE[1]);
            for dim in 0..2 {
                let x = DistTensor::shard(&group, &full, SHAPE, dim).unwrap();
                let sizes = split_sizes(SHAPE[dim], tp).unwrap();
                let shapes: Vec<_> = x.locals().iter().map(Tensor::shape).collect();
                assert_eq!(shapes.iter().map(|s| s[dim]).collect::<Vec<_>>(), sizes);
                let y = x.all_gather().unwrap();
                assert_eq!(y.placement(), Placement::Replicate);
                for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                    assert_same_bits(v, &full, &format!("all_gather tp {tp} dim {dim} rank {r}"));
                }
            }
        }
    }
}

#[test]
fn reduce_scatter_gives_each_rank_its_slice_of_the_sum() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            let parts = addends(tp, 50 + tp as u64);
            let want = sum_reference(&parts);
            let mut exact = parts[0].clone();
            for p in &parts[1..] {
                exact.iter_mut().zip(p).for_each(|(a, b)| *a += *b);
            }
            for dim in 0..2 {
                let y = partial(&group, &parts).reduce_scatter(dim).unwrap();
                assert_eq!(y.placement(), Placement::Shard(dim));
                let sizes = split_sizes(SHAPE[dim], tp).unwrap();
                let expect = split_host(&exact, SHAPE, dim, &sizes);
                for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                    assert_same_bits(
                        v,
                        &expect[r],
                        &format!("reduce_scatter tp {tp} dim {dim} rank {r}"),
                    );
                }
                common::assert_within(
                    &want,
                    &y.to_host().unwrap(),
                    &format!("reduce_scatter tp {tp} dim {dim}"),
                );
            }
        }
    }
}

#[test]
fn broadcast_copies_the_root_to_every_rank() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            let parts = addends(tp, 70);
            for root in [0, tp - 1] {
                let y = partial(&group, &parts).broadcast(root).unwrap();
                assert_eq!(y.placement(), Placement::Replicate);
                for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                    assert_same_bits(
                        v,
                        &parts[root],
                        &format!("broadcast tp {tp} root {root} rank {r}"),
                    );
                }
            }
            assert!(
                partial(&group, &parts).broadcast(tp).is_err(),
                "root past the world size"
            );
        }
    }
}

#[test]
fn redistribute_covers_every_placement_pair() {
    for tp in TP_SIZES {
        for group in common::groups(tp) {
            let full = Rng::new(9).normal(SHAPE[0] * SHAPE[1]);
            let rep = DistTensor::replicate(&group, &full, SHAPE).unwrap();
            let targets = [
                Placement::Replicate,
                Placement::Shard(0),
                Placement::Shard(1),
                Placement::Partial,
            ];
            for from in targets {
                let x = rep.redistribute(from).unwrap();
                assert_eq!(x.placement(), from);
                for to in targets {
                    let y = x.redistribute(to).unwrap();
                    assert_eq!(y.placement(), to);
                    assert_eq!(y.shape(), SHAPE);
                    let ctx = format!("tp {tp} {from} -> {to}");
                    // Every path adds only exact zeros or moves bits, so the value is bit-exact.
                    assert_same_bits(&y.to_host().unwrap(), &full, &ctx);
                    if let Placement::Shard(d) = to {
                        let sizes = split_sizes(SHAPE[d], tp).unwrap();
                        let parts = split_host(&full, SHAPE, d, &sizes);
                        let got = y.to_host_per_rank().unwrap();
                        let shapes: Vec<_> = y.locals().iter().map(Tensor::shape).collect();
                        assert_same_bits(&concat_host(&got, &shapes, d), &full, &ctx);
                        for r in 0..tp {
                            assert_same_bits(&got[r], &parts[r], &format!("{ctx} rank {r}"));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn all_reduce_of_large_and_vec4_tensors_is_the_rank_order_sum() {
    // [8, 12]: a length the on-device vec4 reduction takes; [1100, 1031] (4.5 MB): more
    // than one 4 MiB chunk of the host all-reduce, with a short last chunk, and summed on
    // two threads; [1031, 1101]: odd length, so the on-device path adds pairwise.
    for shape in [[8, 12], [1100, 1031], [1031, 1101]] {
        for tp in [2, 3, 5] {
            for group in common::groups(tp) {
                let mut rng = Rng::new(tp as u64);
                let parts = common::normal_parts(&mut rng, tp, shape[0] * shape[1]);
                let x = common::partial(&group, &parts, shape);
                let exact = rank_order_sum(&parts);
                let y = x.all_reduce().unwrap();
                for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
                    assert_same_bits(v, &exact, &format!("{shape:?} tp {tp} rank {r} {group:?}"));
                }
            }
        }
    }
}
