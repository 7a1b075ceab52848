//! Half-precision weights (bf16 and f16, two values to a 32-bit word): every GEMM family
//! gives, for half weights, the bits of the f32 product of their widened values (the
//! kernels widen exactly, then run the f32 path's arithmetic), in both layouts, with bias
//! and activation, for aligned and odd shapes and banded weights; so the f32 path's
//! reference bounds hold as they are (tests/half_layers.rs: the layers). Half tensors
//! anywhere but a GEMM's weights or an embedding table are refused.

mod common;

use common::half::{bits, halves, widen};
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    ops, Activation, ColumnParallelConfig, ColumnParallelLinear, DType, DistTensor, Error,
    GemmKernel, Group, Numerics, Placement, Tensor, WeightLayout,
};

/// One rank running `kernel` whose buffers hold at most 4 KiB, so small tensors come in
/// several bands.
fn small_buffers(kernel: GemmKernel) -> Option<Group> {
    let mut limits = wgpu_tp::wgpu::Limits::downlevel_defaults();
    limits.max_buffer_size = 4096;
    limits.max_storage_buffer_binding_size = 4096;
    common::build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .gemm_kernel(kernel)
            .required_limits(limits),
        "4 KiB buffers",
    )
}

fn group_with(kernel: GemmKernel, numerics: Numerics) -> Option<Group> {
    common::build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .gemm_kernel(kernel)
            .numerics(numerics),
        &format!("{kernel:?} {numerics:?}"),
    )
}

#[test]
fn every_family_gives_the_bits_of_the_widened_f32_weights() {
    let kernels = [
        GemmKernel::Auto,
        GemmKernel::Simple,
        GemmKernel::Tiled,
        GemmKernel::Cpu,
        GemmKernel::Skinny,
    ];
    // (m, k, n): decode rows, odd shapes (scalar units, an odd count of halves a row; K not
    // a multiple of 8 only under the default numerics), the skinny family's largest block
    // plus one, and a batch.
    let shapes = [
        (1, 64, 40),
        (3, 136, 67),
        (2, 65, 33),
        (17, 128, 96),
        (64, 256, 128),
    ];
    let mut rng = Rng::new(21);
    for kernel in kernels {
        for numerics in [Numerics::Fast, Numerics::TpInvariant] {
            let Some(group) = group_with(kernel, numerics) else {
                return;
            };
            let r = &group.ranks()[0];
            for (m, k, n) in shapes {
                if numerics == Numerics::TpInvariant && k % 8 != 0 {
                    continue;
                }
                let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
                let b = Tensor::from_host(r, &rng.normal(n), [1, n]).unwrap();
                for dtype in [DType::BF16, DType::F16] {
                    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                        let (h, wide) = halves(&mut rng, dtype, k * n);
                        let shape = layout.stored_shape(k, n);
                        let half = Tensor::from_half(r, dtype, &h, shape).unwrap();
                        assert_eq!(half.dtype(), dtype);
                        assert_eq!(bits(&half.to_host().unwrap()), bits(&wide), "read back");
                        let full = Tensor::from_host(r, &wide, shape).unwrap();
                        let run = |w: &Tensor| {
                            ops::matmul(&x, w, Some(&b), layout, Activation::Relu)
                                .unwrap()
                                .to_host()
                                .unwrap()
                        };
                        assert_eq!(
                            bits(&run(&half)),
                            bits(&run(&full)),
                            "{kernel:?} {numerics:?} {dtype} {layout:?} [{m}, {k}] x [{k}, {n}]"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn banded_half_weights_give_the_same_bits_and_read_back_exactly() {
    // 4 KiB buffers: a [100, 70] weight lies in bands of 12 rows, the f32 rows a band
    // holds, whatever its type: a product's K blocks and output cuts follow the bands, so
    // the same bands give the same sums (the skinny family splits K inside each block).
    for kernel in [GemmKernel::Auto, GemmKernel::Skinny] {
        let Some(group) = small_buffers(kernel) else {
            return;
        };
        let r = &group.ranks()[0];
        let mut rng = Rng::new(22);
        for dtype in [DType::BF16, DType::F16] {
            for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                let (k, n) = (100, 70);
                let shape = layout.stored_shape(k, n);
                let (h, wide) = halves(&mut rng, dtype, k * n);
                let half = Tensor::from_half(r, dtype, &h, shape).unwrap();
                let full = Tensor::from_host(r, &wide, shape).unwrap();
                assert!(half.buffers().len() > 1, "the weight is banded");
                assert_eq!(half.buffers().len(), full.buffers().len());
                assert_eq!(bits(&half.to_host().unwrap()), bits(&wide));
                for m in [1, 5, 20] {
                    let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
                    let run = |w: &Tensor| {
                        let y = ops::matmul(&x, w, None, layout, Activation::Identity).unwrap();
                        y.to_host().unwrap()
                    };
                    let ctx = format!("{kernel:?} {dtype} {layout:?} m {m}");
                    assert_eq!(bits(&run(&half)), bits(&run(&full)), "{ctx}");
                }
            }
        }
        // An odd count of halves: the last word is padded and the value read back exactly.
        let (h, wide) = halves(&mut rng, DType::F16, 3 * 7);
        let t = Tensor::from_half(r, DType::F16, &h, [3, 7]).unwrap();
        assert_eq!(bits(&t.to_host().unwrap()), bits(&wide));
    }
}

#[test]
fn half_tensors_are_refused_everywhere_but_as_gemm_weights() {
    let Some(group) = common::group(2) else {
        return;
    };
    let r = &group.ranks()[0];
    let invalid = |e: Result<Tensor, Error>| matches!(e, Err(Error::InvalidArgument { .. }));
    let h = Tensor::from_half(r, DType::BF16, &[0x3f80; 8], [2, 4]).unwrap();
    let f = Tensor::from_host(r, &[1.0; 8], [2, 4]).unwrap();
    // Not a half type; the wrong count of values.
    assert!(invalid(Tensor::from_half(r, DType::F32, &[0; 8], [2, 4])));
    assert!(matches!(
        Tensor::from_half(r, DType::F16, &[0; 7], [2, 4]),
        Err(Error::Shape { .. })
    ));
    // As X, as a bias, in elementwise ops, norms, slices.
    let w = Tensor::from_host(r, &[1.0; 16], [4, 4]).unwrap();
    let row = Tensor::from_half(r, DType::BF16, &[0; 4], [1, 4]).unwrap();
    let layout = WeightLayout::InOut;
    assert!(invalid(ops::matmul(
        &h,
        &w,
        None,
        layout,
        Activation::Identity
    )));
    assert!(invalid(ops::matmul(
        &f,
        &w,
        Some(&row),
        layout,
        Activation::Identity
    )));
    assert!(invalid(ops::add(&h, &f)));
    assert!(invalid(ops::add(&f, &h)));
    assert!(invalid(ops::slice(&h, 0, 0, [1, 4])));
    assert!(invalid(ops::rms_norm(&h, &row, 1e-5)));
    // In a collective.
    let parts: Vec<Tensor> = group
        .ranks()
        .iter()
        .map(|r| Tensor::from_half(r, DType::F16, &[0x3c00; 8], [2, 4]).unwrap())
        .collect();
    let partial = DistTensor::from_locals(&group, parts.clone(), Placement::Partial).unwrap();
    assert!(matches!(
        partial.all_reduce(),
        Err(Error::InvalidArgument { .. })
    ));
    // A transport called directly refuses them too (the device one on one device).
    use wgpu_tp::Collective;
    let Some(shared) = common::cached_group(2, true, Numerics::Fast) else {
        return;
    };
    let on_one: Vec<Tensor> = shared
        .ranks()
        .iter()
        .map(|r| Tensor::from_half(r, DType::F16, &[0x3c00; 8], [2, 4]).unwrap())
        .collect();
    for (c, parts) in [
        (&wgpu_tp::HostCollective as &dyn Collective, &parts),
        (&wgpu_tp::DeviceCollective, &on_one),
    ] {
        let e = pollster::block_on(c.all_reduce(parts));
        assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
        let e = pollster::block_on(c.broadcast(parts, 0));
        assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
    }
    // Half weights that name no half type.
    let bad = wgpu_tp::nn::GatedMlp::new(
        &group,
        4,
        4,
        |_| Ok(wgpu_tp::nn::HostWeights::Half(DType::F32, vec![0; 8])),
        |_| Ok(wgpu_tp::nn::HostWeights::Half(DType::F32, vec![0; 8])),
        |_| Ok(wgpu_tp::nn::HostWeights::Half(DType::F32, vec![0; 8])),
    );
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })), "{bad:?}");
    // A half bias for a layer, refused when it is made.
    let shards = |dtype: Option<DType>| -> Vec<Tensor> {
        group
            .ranks()
            .iter()
            .map(|r| match dtype {
                Some(t) => Tensor::from_half(r, t, &[0; 4], [1, 4]).unwrap(),
                None => Tensor::from_host(r, &[0.0; 16], [4, 4]).unwrap(),
            })
            .collect()
    };
    let made = ColumnParallelLinear::from_shards(
        &group,
        shards(None),
        Some(shards(Some(DType::BF16))),
        WeightLayout::OutIn,
        ColumnParallelConfig::default(),
    );
    assert!(matches!(made, Err(Error::InvalidArgument { .. })));
}

#[test]
fn a_half_embedding_table_looks_up_the_widened_rows() {
    // 4 KiB buffers: a [90, 30] table of halves (5,400 bytes) lies in two bands.
    let Some(group) = small_buffers(GemmKernel::Auto) else {
        return;
    };
    let r = &group.ranks()[0];
    let (first, n, cols) = (100, 90, 30);
    let ids = Tensor::from_ids(r, &[100, 189, 150, 99, 190, 101]).unwrap();
    let mut rng = Rng::new(24);
    for dtype in [DType::BF16, DType::F16] {
        let (h, wide) = halves(&mut rng, dtype, n * cols);
        let half = Tensor::from_half(r, dtype, &h, [n, cols]).unwrap();
        assert!(half.buffers().len() > 1, "the table is banded");
        let full = Tensor::from_host(r, &wide, [n, cols]).unwrap();
        let look = |t: &Tensor| ops::embed(t, first, &ids).unwrap().to_host().unwrap();
        assert_eq!(bits(&look(&half)), bits(&look(&full)), "{dtype}");
    }
}

#[test]
fn infinities_and_nans_in_half_weights_are_widened_as_they_are() {
    let Some(group) = group_with(GemmKernel::Auto, Numerics::Fast) else {
        return;
    };
    let r = &group.ranks()[0];
    let (m, k, n) = (2, 64, 8);
    let x = Tensor::from_host(r, &Rng::new(25).normal(m * k), [m, k]).unwrap();
    // +inf, -inf and a quiet NaN in three columns; the other values ordinary.
    for (dtype, specials) in [
        (DType::BF16, [0x7f80u16, 0xff80, 0x7fc0]),
        (DType::F16, [0x7c00, 0xfc00, 0x7e00]),
    ] {
        let (mut h, _) = halves(&mut Rng::new(26), dtype, n * k);
        for (c, s) in specials.iter().enumerate() {
            h[c * k + 5] = *s; // [out, in]: column c, input 5
        }
        let wide: Vec<f32> = h.iter().map(|&v| widen(dtype, v)).collect();
        assert!(wide[5].is_infinite() && wide[k + 5] < 0.0 && wide[2 * k + 5].is_nan());
        let layout = WeightLayout::OutIn;
        let half = Tensor::from_half(r, dtype, &h, [n, k]).unwrap();
        let full = Tensor::from_host(r, &wide, [n, k]).unwrap();
        let run = |w: &Tensor| {
            ops::matmul(&x, w, None, layout, Activation::Identity)
                .unwrap()
                .to_host()
                .unwrap()
        };
        let (got, want) = (run(&half), run(&full));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // A NaN's payload is the hardware's; everything else bit for bit.
            assert!(
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
                "{dtype} [{i}]: {a} vs {b}"
            );
        }
        assert!(
            got[..n].iter().take(3).all(|v| !v.is_finite()),
            "{dtype}: {got:?}"
        );
    }
}
