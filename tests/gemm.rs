//! Every GEMM kernel family, forced by the group option, against the f64 reference: odd
//! and aligned shapes, both layouts, bias and fused activations, and the column window
//! a row-parallel layer reads from a replicated input.

mod common;

use common::{assert_within, in_layout, transpose};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{
    ops, Activation, DistTensor, GemmKernel, Group, HostLinear, RowParallelConfig,
    RowParallelLinear, Tensor, WeightLayout,
};

const FAMILIES: [GemmKernel; 5] = [
    GemmKernel::Auto,
    GemmKernel::Cpu,
    GemmKernel::Tiled,
    GemmKernel::Simple,
    GemmKernel::Skinny,
];

/// (m, k, n): odd everywhere; aligned for the CPU family (k, n multiples of 4) over
/// several of its 16-row blocks and 32-column workgroups; a single row; more rows than
/// one 64-tile and more columns than one 128-column CPU workgroup; two large (128 x 128)
/// tiles each way, the last ones partial, with K not a multiple of the tiles' 8 or 16.
const SHAPES: [(usize, usize, usize); 5] = [
    (67, 33, 65),
    (37, 36, 68),
    (1, 4, 4),
    (130, 64, 196),
    (200, 45, 260),
];

fn forced(kernel: GemmKernel, tp: usize) -> Option<Group> {
    common::build(
        Group::builder()
            .ranks_sharing_one_device(tp)
            .gemm_kernel(kernel),
        &format!("{kernel:?}"),
    )
}

/// What the forced option must run for a shape (Auto depends on the adapter).
fn expected(kernel: GemmKernel, k: usize, n: usize, layout: WeightLayout) -> Option<GemmKernel> {
    let _ = layout;
    let cpu_fits = n.is_multiple_of(4) && k.is_multiple_of(4);
    match kernel {
        GemmKernel::Cpu if cpu_fits => Some(GemmKernel::Cpu),
        GemmKernel::Cpu | GemmKernel::Simple => Some(GemmKernel::Simple),
        GemmKernel::Tiled => Some(GemmKernel::Tiled),
        GemmKernel::Skinny => Some(GemmKernel::Skinny),
        _ => None,
    }
}

#[test]
fn every_family_matches_the_reference() {
    for family in FAMILIES {
        let Some(group) = forced(family, 1) else {
            return;
        };
        let r = &group.ranks()[0];
        for (m, k, n) in SHAPES {
            let mut rng = Rng::new((m * 1000 + k * 10 + n) as u64);
            let (x, w, b) = (rng.normal(m * k), rng.normal(k * n), rng.normal(n));
            let xt = Tensor::from_host(r, &x, [m, k]).unwrap();
            let bt = Tensor::from_host(r, &b, [1, n]).unwrap();
            for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                let ran = ops::gemm_kernel_for(r, m, n, k, layout);
                assert_ne!(ran, GemmKernel::Auto);
                if let Some(want) = expected(family, k, n, layout) {
                    assert_eq!(ran, want, "{family:?} [{m}, {k}] x [{k}, {n}] {layout:?}");
                }
                let stored = in_layout(&w, k, n, layout);
                let wt = Tensor::from_host(r, &stored, layout.stored_shape(k, n)).unwrap();
                for (act, bias) in [
                    (Activation::Identity, None),
                    (Activation::GeluErf, Some(&bt)),
                    (Activation::Relu, Some(&bt)),
                ] {
                    let ctx = format!(
                        "{family:?} ran {ran:?} [{m}, {k}] x [{k}, {n}] {layout:?} {act:?} bias {}",
                        bias.is_some()
                    );
                    let want = reference::activation(
                        &common::reference_linear(&x, [m, k], &w, n, bias.map(|_| &b[..])),
                        act,
                    );
                    let y = ops::matmul(&xt, &wt, bias, layout, act).unwrap();
                    assert_within(&want, &y.to_host().unwrap(), &ctx);
                }
            }
        }
    }
}

#[test]
fn every_family_reads_a_column_window_of_a_replicated_input() {
    // Row-parallel with a Replicate input: each rank's GEMM reads its columns of X in
    // place (an offset and a row stride), which the CPU family must honour too.
    // k = 72 splits into windows of 24 at offsets 0, 24, 48 (aligned for the CPU family);
    // k = 74 into 25, 25, 24 at 0, 25, 50 (not: those ranks run the simple family).
    for (family, k) in FAMILIES.into_iter().flat_map(|f| [(f, 72), (f, 74)]) {
        let (batch, n, tp) = (19, 40, 3);
        let Some(group) = forced(family, tp) else {
            return;
        };
        let mut rng = Rng::new(9);
        let (x, w, b) = (
            rng.normal(batch * k),
            rng.xavier(k * n, k, n),
            rng.normal(n),
        );
        let want = common::reference_linear(&x, [batch, k], &w, n, Some(&b));
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let stored = match layout {
                WeightLayout::InOut => w.clone(),
                WeightLayout::OutIn => transpose(&w, k, n),
            };
            let layer = RowParallelLinear::from_full(
                &group,
                HostLinear::new(&stored, k, n, layout).with_bias(&b),
                RowParallelConfig::default().input_is_parallel(false),
            )
            .unwrap();
            let xd = DistTensor::replicate(&group, &x, [batch, k]).unwrap();
            let y = layer.forward(&xd).unwrap();
            common::assert_every_rank_within(&want, &y, &format!("{family:?} k {k} {layout:?}"));
        }
    }
}
