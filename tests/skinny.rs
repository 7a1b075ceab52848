//! The skinny family (decode-shaped products, up to 16 rows of X): every row count from 1
//! to 17 against the f64 reference, with K split over workgroups and without, aligned and
//! odd shapes, both layouts, fused bias and activation; what `GemmKernel::Auto` picks;
//! the layers on it at uneven shards on both kinds of group; and its bits under
//! tp-invariant numerics (those of an unsplit sum, whatever the tp or the device limits).

mod common;

use common::{assert_same_bits, assert_within, in_layout, LinearCase};
use wgpu_tp::reference::{self, Rng};
use wgpu_tp::{
    ops, Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, GemmKernel, Group,
    Numerics, ParallelMlp, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

/// (k, n): aligned and wide (K not a multiple of 16: a sweep's last block is partial);
/// aligned and narrow over a long K (split into chunks on every adapter); odd
/// (single-column units) and split; odd and tiny (below the size where `Auto` takes the
/// skinny family on a CPU adapter).
const SHAPES: [(usize, usize); 4] = [(260, 384), (2048, 36), (1037, 67), (300, 5)];

/// The products `Auto` runs as 32³ multiply-adds or more on a CPU adapter (smaller ones
/// run the simple family, quicker to compile and as fast).
const CPU_MIN_PRODUCT: usize = 32 * 32 * 32;

fn forced(kernel: GemmKernel, numerics: Numerics) -> Option<Group> {
    common::build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .gemm_kernel(kernel)
            .numerics(numerics),
        &format!("{kernel:?}"),
    )
}

#[test]
fn every_row_count_from_1_to_17_matches_the_reference() {
    let (Some(skinny), Some(auto)) = (
        forced(GemmKernel::Skinny, Numerics::Fast),
        forced(GemmKernel::Auto, Numerics::Fast),
    ) else {
        return;
    };
    let cpu = auto.ranks()[0].adapter_info().device_type == wgpu_tp::wgpu::DeviceType::Cpu;
    for (k, n) in SHAPES {
        let mut rng = Rng::new((k * 100 + n) as u64);
        let (w, b) = (rng.xavier(k * n, k, n), rng.normal(n));
        for m in 1..=17 {
            let x = rng.normal(m * k);
            for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                let stored = in_layout(&w, k, n, layout);
                for group in [&skinny, &auto] {
                    let r = &group.ranks()[0];
                    let ran = ops::gemm_kernel_for(r, m, n, k, layout);
                    let want_skinny = group.ranks()[0].gemm_kernel() == GemmKernel::Skinny
                        || (m <= 16 && !(cpu && m * n * k < CPU_MIN_PRODUCT));
                    let ctx = format!("{:?} [{m}, {k}] x [{k}, {n}] {layout:?}", r.gemm_kernel());
                    assert_eq!(ran == GemmKernel::Skinny, want_skinny, "{ctx}: ran {ran:?}");
                    let xt = Tensor::from_host(r, &x, [m, k]).unwrap();
                    let wt = Tensor::from_host(r, &stored, layout.stored_shape(k, n)).unwrap();
                    let bt = Tensor::from_host(r, &b, [1, n]).unwrap();
                    for (act, bias) in [
                        (Activation::Identity, None),
                        (Activation::GeluTanh, Some(&bt)),
                    ] {
                        let want = reference::activation(
                            &common::reference_linear(&x, [m, k], &w, n, bias.map(|_| &b[..])),
                            act,
                        );
                        let y = ops::matmul(&xt, &wt, bias, layout, act).unwrap();
                        assert_within(&want, &y.to_host().unwrap(), &format!("{ctx} {act:?}"));
                    }
                }
            }
        }
    }
}

#[test]
fn a_split_product_gives_the_same_bits_every_run() {
    let Some(group) = forced(GemmKernel::Skinny, Numerics::Fast) else {
        return;
    };
    let r = &group.ranks()[0];
    let (m, k, n) = (3, 2048, 36);
    let mut rng = Rng::new(4);
    let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let w = Tensor::from_host(r, &rng.normal(k * n), layout.stored_shape(k, n)).unwrap();
        let first = ops::matmul(&x, &w, None, layout, Activation::Relu)
            .unwrap()
            .to_host()
            .unwrap();
        for run in 0..3 {
            let again = ops::matmul(&x, &w, None, layout, Activation::Relu)
                .unwrap()
                .to_host()
                .unwrap();
            assert_same_bits(&first, &again, &format!("{layout:?} run {run}"));
        }
    }
}

#[test]
fn under_tp_invariant_numerics_it_gives_the_simple_familys_bits() {
    // One chunk and fma in increasing k, in both layouts: the bits of an unsplit sum.
    let (Some(skinny), Some(simple)) = (
        forced(GemmKernel::Skinny, Numerics::TpInvariant),
        forced(GemmKernel::Simple, Numerics::TpInvariant),
    ) else {
        return;
    };
    for (m, k, n) in [(1, 2048, 36), (3, 1040, 67), (16, 256, 384), (17, 64, 20)] {
        let mut rng = Rng::new((m * k + n) as u64);
        let (x, w, b) = (rng.normal(m * k), rng.normal(k * n), rng.normal(n));
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let run = |g: &Group| {
                let r = &g.ranks()[0];
                let xt = Tensor::from_host(r, &x, [m, k]).unwrap();
                let wt = Tensor::from_host(r, &w, layout.stored_shape(k, n)).unwrap();
                let bt = Tensor::from_host(r, &b, [1, n]).unwrap();
                ops::matmul(&xt, &wt, Some(&bt), layout, Activation::GeluErf)
                    .unwrap()
                    .to_host()
                    .unwrap()
            };
            assert_same_bits(
                &run(&skinny),
                &run(&simple),
                &format!("[{m}, {k}] x [{k}, {n}] {layout:?}"),
            );
        }
    }
}

/// Column-parallel (gathered), row-parallel and the MLP at tp 3 (uneven shards: 100 and
/// 260 split 34/33/33 and 87/87/86, so every rank runs single-column units; 128 and 384
/// split evenly and run vec4 units), on both kinds of group, in both layouts, at every
/// batch size from 1 to 17.
#[test]
fn layers_at_uneven_shards_match_the_reference_at_decode_batch_sizes() {
    for (hidden, ffn) in [(100, 260), (128, 384)] {
        for shared in [false, true] {
            let Some(group) = common::cached_group(3, shared, Numerics::Fast) else {
                return;
            };
            // Every decode batch size on the uneven shards; three on the even ones.
            let batches: Vec<usize> = if hidden == 100 {
                (1..=17).collect()
            } else {
                vec![1, 3, 16]
            };
            for m in batches {
                for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                    let ctx = format!("{hidden}->{ffn} batch {m} {layout:?} shared {shared}");
                    let c1 = LinearCase::new(11, (m, hidden, ffn), layout, true);
                    let c2 = LinearCase::new(12, (m, ffn, hidden), layout, true);
                    let x = DistTensor::replicate(&group, &c1.x, [m, hidden]).unwrap();
                    let want1 =
                        common::reference_linear(&c1.x, [m, hidden], &c1.w, ffn, c1.b.as_deref());
                    let col = ColumnParallelLinear::from_full(
                        &group,
                        c1.host(hidden, ffn, layout),
                        ColumnParallelConfig::default().gather_output(true),
                    )
                    .unwrap();
                    common::assert_every_rank_within(&want1, &col.forward(&x).unwrap(), &ctx);
                    let xr = DistTensor::replicate(&group, &c2.x, [m, ffn]).unwrap();
                    let want2 =
                        common::reference_linear(&c2.x, [m, ffn], &c2.w, hidden, c2.b.as_deref());
                    let row = RowParallelLinear::from_full(
                        &group,
                        c2.host(ffn, hidden, layout),
                        RowParallelConfig::default(),
                    )
                    .unwrap();
                    common::assert_every_rank_within(&want2, &row.forward(&xr).unwrap(), &ctx);
                    let mlp = ParallelMlp::from_full(
                        &group,
                        c1.host(hidden, ffn, layout),
                        c2.host(ffn, hidden, layout),
                        Activation::Relu,
                    )
                    .unwrap();
                    let h = reference::activation(&want1, Activation::Relu);
                    let want =
                        common::reference_linear_of(&h, [m, ffn], &c2.w, hidden, c2.b.as_deref());
                    common::assert_every_rank_within(&want, &mlp.forward(&x).unwrap(), &ctx);
                }
            }
        }
    }
}

/// Batch 1 and 3 through the MLP: identical bits at tp 1, 2, 4 and 8 on both kinds of
/// group, the decode case of the tp-invariant promise.
#[test]
fn decode_steps_keep_the_tp_invariant_bits() {
    let (hidden, ffn) = (64, 256);
    for m in [1, 3] {
        let c1 = LinearCase::new(21, (m, hidden, ffn), WeightLayout::OutIn, true);
        let c2 = LinearCase::new(22, (m, ffn, hidden), WeightLayout::OutIn, true);
        let mut first: Option<Vec<f32>> = None;
        for shared in [false, true] {
            for tp in [1, 2, 4, 8] {
                let Some(group) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
                    return;
                };
                let mlp = ParallelMlp::from_full(
                    &group,
                    c1.host(hidden, ffn, WeightLayout::OutIn),
                    c2.host(ffn, hidden, WeightLayout::OutIn),
                    Activation::GeluTanh,
                )
                .unwrap();
                let x = DistTensor::replicate(&group, &c1.x, [m, hidden]).unwrap();
                for (r, y) in mlp
                    .forward(&x)
                    .unwrap()
                    .to_host_per_rank()
                    .unwrap()
                    .iter()
                    .enumerate()
                {
                    let ctx = format!("batch {m} tp {tp} shared {shared} rank {r}");
                    match &first {
                        Some(f) => assert_same_bits(f, y, &ctx),
                        None => first = Some(y.clone()),
                    }
                }
            }
        }
    }
}

/// Under tp-invariant numerics the family sums each element in one chunk, so banded
/// tensors (devices with 4 KiB buffers), K blocks that continue partial sums, column
/// blocks and 2 workgroups a side change no bit.
#[test]
fn under_tp_invariant_numerics_lowered_limits_change_no_bit() {
    let mut limits = wgpu_tp::wgpu::Limits::downlevel_defaults();
    limits.max_buffer_size = 4096;
    limits.max_storage_buffer_binding_size = 4096;
    limits.max_compute_workgroups_per_dimension = 2;
    let make = |small: bool| {
        let b = Group::builder()
            .ranks_on_one_adapter(1)
            .gemm_kernel(GemmKernel::Skinny)
            .numerics(Numerics::TpInvariant);
        let b = if small {
            b.required_limits(limits.clone())
        } else {
            b
        };
        common::build(b, "lowered limits")
    };
    let (Some(small), Some(big)) = (make(true), make(false)) else {
        return;
    };
    let (k, n) = (96, 200);
    for m in [1, 5, 16] {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let c = LinearCase::new(31, (m, k, n), layout, true);
            let run = |g: &Group| {
                let r = &g.ranks()[0];
                let x = Tensor::from_host(r, &c.x, [m, k]).unwrap();
                let w = Tensor::from_host(r, &c.stored, layout.stored_shape(k, n)).unwrap();
                let b = Tensor::from_host(r, c.b.as_deref().unwrap(), [1, n]).unwrap();
                ops::matmul(&x, &w, Some(&b), layout, Activation::GeluErf)
                    .unwrap()
                    .to_host()
                    .unwrap()
            };
            let ctx = format!("[{m}, {k}] x [{k}, {n}] {layout:?}");
            let got = run(&small);
            let want = reference::activation(
                &common::reference_linear(&c.x, [m, k], &c.w, n, c.b.as_deref()),
                Activation::GeluErf,
            );
            assert_within(&want, &got, &ctx);
            assert_same_bits(&got, &run(&big), &ctx);
        }
    }
}

/// Under the default numerics, with 2 workgroups a side, a split product's `finish` pass
/// covers columns and rows its grid does not reach (a sweep's column block spans 4,096
/// columns, 64 times what one `finish` workgroup does).
#[test]
fn split_products_run_within_two_workgroups_a_side() {
    let mut limits = wgpu_tp::wgpu::Limits::downlevel_defaults();
    limits.max_compute_workgroups_per_dimension = 2;
    let Some(group) = common::build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .required_limits(limits),
        "2 workgroups a side",
    ) else {
        return;
    };
    let r = &group.ranks()[0];
    for (m, k, n) in [(1, 64, 1000), (3, 256, 999), (5, 64, 1000)] {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let c = LinearCase::new(51, (m, k, n), layout, true);
            let x = Tensor::from_host(r, &c.x, [m, k]).unwrap();
            let w = Tensor::from_host(r, &c.stored, layout.stored_shape(k, n)).unwrap();
            let b = Tensor::from_host(r, c.b.as_deref().unwrap(), [1, n]).unwrap();
            let y = ops::matmul(&x, &w, Some(&b), layout, Activation::Relu).unwrap();
            let want = reference::activation(
                &common::reference_linear(&c.x, [m, k], &c.w, n, c.b.as_deref()),
                Activation::Relu,
            );
            assert_within(
                &want,
                &y.to_host().unwrap(),
                &format!("[{m}, {k}] x [{k}, {n}] {layout:?}"),
            );
        }
    }
}
