//! GGUF's quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K), kept in the file's
//! bytes on the device:
//! - decoding is exact: `DType::dequantize` gives the f32 values of llama.cpp's `gguf`
//!   package bit for bit (tests/fixtures/gguf/quant, scripts/make_gguf_fixtures.py: random
//!   blocks, extreme and subnormal scales, zeros, every quant value), and the kernels read
//!   the same values back;
//! - every GEMM family and the embedding lookup give, for quantized weights, the bits of
//!   the f32 product of their decoded values (the preludes decode, then the f32 path's
//!   arithmetic runs), banded or not, so the f32 path's reference bounds hold as they are;
//! - layers split quantized inputs at whole blocks (`split_in_units`), as even as blocks
//!   allow, and give the bits of the same layers over the decoded f32 weights at tp 1-4.

mod common;

use std::path::Path;

use common::half::bits;
use wgpu_tp::nn::{GatedMlp, HostWeights};
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    ops, split_in_units, Activation, DType, DistTensor, Error, GemmKernel, Group, Numerics, Tensor,
    WeightLayout,
};

const QUANTIZED: [DType; 7] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
];

/// The fixture files' name of `dtype`.
fn file_name(dtype: DType) -> String {
    dtype.to_string()
}

/// The byte offsets of `dtype`'s f16 scale fields in a block.
fn scale_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        _ => &[],
    }
}

/// `blocks` random blocks of `dtype`: random quant bytes under f16 scales of magnitude
/// 2^-9 .. 2^-5 of either sign, so the values are of order 0.01 to 1.
fn random_blocks(rng: &mut Rng, dtype: DType, blocks: usize) -> Vec<u8> {
    let size = dtype.block_bytes();
    let mut out: Vec<u8> = (0..blocks * size).map(|_| rng.next_u64() as u8).collect();
    for b in out.chunks_exact_mut(size) {
        for &at in scale_fields(dtype) {
            let r = rng.next_u64();
            // Sign, exponent 6..10 (2^-9 .. 2^-5), any mantissa.
            let h = ((r as u16 & 1) << 15)
                | (((6 + (r >> 8) % 5) as u16) << 10)
                | ((r >> 16) as u16 & 0x3ff);
            b[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    out
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/quant")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn decoding_gives_the_gguf_packages_values_bit_for_bit() {
    for dtype in QUANTIZED {
        let blocks = fixture(&format!("{}.blocks", file_name(dtype)));
        let want: Vec<f32> = fixture(&format!("{}.f32", file_name(dtype)))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(blocks.len() % dtype.block_bytes(), 0);
        let got = dtype.dequantize(&blocks).unwrap();
        assert_eq!(got.len(), want.len(), "{dtype}");
        // The fixture has the extremes it promises: a subnormal scale and the largest.
        assert!(
            want.iter().any(|v| v.abs() > 1e5),
            "{dtype}: no large scale"
        );
        assert_eq!(bits(&got), bits(&want), "{dtype}");
        // Not whole blocks.
        let cut = dtype.dequantize(&blocks[..blocks.len() - 1]);
        assert!(matches!(cut, Err(Error::Shape { .. })), "{dtype}: {cut:?}");
    }
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
fn the_kernels_read_back_the_fixtures_values() {
    let Some(group) = common::group(1) else {
        return;
    };
    let r = &group.ranks()[0];
    for dtype in QUANTIZED {
        let blocks = fixture(&format!("{}.blocks", file_name(dtype)));
        let want = fixture(&format!("{}.f32", file_name(dtype)));
        // 40 blocks as 8 rows of 5 (an odd byte count a row for some types).
        let cols = 5 * dtype.block_values();
        let t = Tensor::from_packed(r, dtype, &blocks, [8, cols]).unwrap();
        assert_eq!(t.dtype(), dtype);
        let got: Vec<u8> = t
            .to_host()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(got == want, "{dtype}: read back");
        // An embedding lookup decodes on the device: rows 7, 0 and 3 of the table.
        let ids = Tensor::from_ids(r, &[7, 0, 3]).unwrap();
        let rows = ops::embed(&t, 0, &ids).unwrap().to_host().unwrap();
        let wide = dtype.dequantize(&blocks).unwrap();
        let want: Vec<f32> = [7, 0, 3]
            .iter()
            .flat_map(|&i| wide[i * cols..(i + 1) * cols].to_vec())
            .collect();
        assert_eq!(bits(&rows), bits(&want), "{dtype}: embed");
    }
}

#[test]
fn every_family_gives_the_bits_of_the_decoded_f32_weights() {
    let kernels = [
        GemmKernel::Auto,
        GemmKernel::Simple,
        GemmKernel::Tiled,
        GemmKernel::Cpu,
        GemmKernel::Skinny,
    ];
    let mut rng = Rng::new(31);
    for kernel in kernels {
        for numerics in [Numerics::Fast, Numerics::TpInvariant] {
            let Some(group) = group_with(kernel, numerics) else {
                return;
            };
            let r = &group.ranks()[0];
            for dtype in QUANTIZED {
                let bv = dtype.block_values();
                // (m, blocks a row, n): decode rows, a batch, odd output counts.
                for (m, kb, n) in [(1, 2, 40), (3, 1, 67), (17, 3, 24)] {
                    let k = kb * bv;
                    let packed = random_blocks(&mut rng, dtype, n * kb);
                    let w = Tensor::from_packed(r, dtype, &packed, [n, k]).unwrap();
                    let wide = dtype.dequantize(&packed).unwrap();
                    let full = Tensor::from_host(r, &wide, [n, k]).unwrap();
                    let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
                    let b = Tensor::from_host(r, &rng.normal(n), [1, n]).unwrap();
                    let run = |w: &Tensor| {
                        ops::matmul(&x, w, Some(&b), WeightLayout::OutIn, Activation::Relu)
                            .unwrap()
                            .to_host()
                            .unwrap()
                    };
                    assert_eq!(
                        bits(&run(&w)),
                        bits(&run(&full)),
                        "{kernel:?} {numerics:?} {dtype} [{m}, {k}] x [{k}, {n}]"
                    );
                }
            }
        }
    }
}

/// Quantized `[out, in]` weights read the other way (`WeightLayout::InOut`: the input
/// gradient's product `dy · W`, each value read alone by the simple family) give the bits
/// of their decoded f32 weights read so by the simple family, whatever family the group
/// asks for, under both numerics (K = the weight's rows, a multiple of 8 for the
/// tp-invariant blocks), every format, and weights stacked from parts of two formats.
#[test]
fn quantized_weights_read_transposed_give_the_bits_of_their_decoded_values() {
    let mut rng = Rng::new(37);
    for numerics in [Numerics::Fast, Numerics::TpInvariant] {
        let Some(simple) = group_with(GemmKernel::Simple, numerics) else {
            return;
        };
        for kernel in [GemmKernel::Auto, GemmKernel::Cpu, GemmKernel::Skinny] {
            let Some(group) = group_with(kernel, numerics) else {
                return;
            };
            let (r, s) = (&group.ranks()[0], &simple.ranks()[0]);
            for dtype in QUANTIZED {
                let bv = dtype.block_values();
                // (m, rows: K here, blocks a row: n / block).
                for (m, rows, kb) in [(1, 8, 2), (5, 24, 1), (16, 16, 3)] {
                    let n = kb * bv;
                    let packed = random_blocks(&mut rng, dtype, rows * kb);
                    let w = Tensor::from_packed(r, dtype, &packed, [rows, n]).unwrap();
                    let wide = dtype.dequantize(&packed).unwrap();
                    let full = Tensor::from_host(s, &wide, [rows, n]).unwrap();
                    let xv = rng.normal(m * rows);
                    let run = |x: &[f32], w: &Tensor| {
                        let x = Tensor::from_host(w.rank(), x, [m, rows]).unwrap();
                        ops::matmul(&x, w, None, WeightLayout::InOut, Activation::Identity)
                            .unwrap()
                            .to_host()
                            .unwrap()
                    };
                    assert_eq!(
                        bits(&run(&xv, &w)),
                        bits(&run(&xv, &full)),
                        "{kernel:?} {numerics:?} {dtype} [{m}, {rows}] x [{rows}, {n}]"
                    );
                }
            }
        }
    }
}

#[test]
fn banded_quantized_weights_give_the_same_bits() {
    // 4 KiB buffers: a [n, 256] weight lies in bands of 4 rows (the f32 rows a band
    // holds, whatever the type), so a product's cuts follow the same bands.
    let mut limits = wgpu_tp::wgpu::Limits::downlevel_defaults();
    limits.max_buffer_size = 4096;
    limits.max_storage_buffer_binding_size = 4096;
    for kernel in [GemmKernel::Auto, GemmKernel::Skinny] {
        let Some(group) = common::build(
            Group::builder()
                .ranks_on_one_adapter(1)
                .gemm_kernel(kernel)
                .required_limits(limits.clone()),
            "4 KiB buffers",
        ) else {
            return;
        };
        let r = &group.ranks()[0];
        let mut rng = Rng::new(32);
        for dtype in QUANTIZED {
            let (n, k) = (19, 256);
            let packed = random_blocks(&mut rng, dtype, n * k / dtype.block_values());
            let w = Tensor::from_packed(r, dtype, &packed, [n, k]).unwrap();
            let wide = dtype.dequantize(&packed).unwrap();
            let full = Tensor::from_host(r, &wide, [n, k]).unwrap();
            assert!(w.buffers().len() > 1, "the weight is banded");
            assert_eq!(w.buffers().len(), full.buffers().len());
            assert_eq!(bits(&w.to_host().unwrap()), bits(&wide), "{dtype}");
            for m in [1, 6] {
                let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
                let run = |w: &Tensor| {
                    let y = ops::matmul(&x, w, None, WeightLayout::OutIn, Activation::Identity);
                    y.unwrap().to_host().unwrap()
                };
                assert_eq!(
                    bits(&run(&w)),
                    bits(&run(&full)),
                    "{kernel:?} {dtype} m {m}"
                );
            }
        }
    }
}

#[test]
fn quantized_tensors_are_refused_where_they_cannot_be_read() {
    let Some(group) = common::group(1) else {
        return;
    };
    let r = &group.ranks()[0];
    let invalid = |e: Result<Tensor, Error>| matches!(e, Err(Error::InvalidArgument { .. }));
    let shape_err = |e: Result<Tensor, Error>| matches!(e, Err(Error::Shape { .. }));
    let block = random_blocks(&mut Rng::new(1), DType::Q8_0, 4);
    // Not a quantized type; rows that are not whole blocks; the wrong byte count.
    assert!(invalid(Tensor::from_packed(
        r,
        DType::BF16,
        &block,
        [2, 64]
    )));
    assert!(shape_err(Tensor::from_packed(
        r,
        DType::Q8_0,
        &block,
        [4, 30]
    )));
    assert!(shape_err(Tensor::from_packed(
        r,
        DType::Q8_0,
        &block[1..],
        [2, 64]
    )));
    assert!(shape_err(Tensor::from_packed(
        r,
        DType::Q8_0,
        &block,
        [0, 64]
    )));
    let q = Tensor::from_packed(r, DType::Q8_0, &block, [2, 64]).unwrap();
    let f = Tensor::from_host(r, &[1.0; 128], [2, 64]).unwrap();
    // As X, in elementwise ops.
    let as_x = ops::matmul(&q, &f, None, WeightLayout::OutIn, Activation::Identity);
    assert!(invalid(as_x));
    assert!(invalid(ops::add(&q, &f)));
}

#[test]
fn splits_cut_only_at_whole_blocks_as_even_as_they_allow() {
    // 7 blocks over 3 ranks: 3, 2, 2 blocks; a last block short by 5.
    assert_eq!(split_in_units(7 * 32, 3, 32).unwrap(), vec![96, 64, 64]);
    assert_eq!(split_in_units(7 * 32 - 5, 3, 32).unwrap(), vec![96, 64, 59]);
    assert_eq!(split_in_units(10, 4, 1).unwrap(), vec![3, 3, 2, 2]);
    // More ranks than whole blocks, and a zero unit.
    assert!(matches!(
        split_in_units(256, 2, 256),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        split_in_units(8, 2, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// A gated MLP (hidden and intermediate 1 and 5 blocks of `dtype`) at `group`'s tp, its
/// down projection `dtype` blocks, its gate `dtype` and its up `up_type` blocks (whole
/// rows, of the same values a row: `up_type`'s blocks no longer than `dtype`'s), or the
/// f32 values they decode to, split at whole blocks: its output.
fn gated_mlp_output(group: &Group, types: [DType; 2], quantized: bool, seed: u64) -> Vec<f32> {
    let [dtype, up_type] = types;
    let bv = dtype.block_values();
    let (hidden, inter) = (bv, 5 * bv);
    let mut rng = Rng::new(seed);
    let gate = random_blocks(&mut rng, dtype, inter * hidden / bv);
    let up = random_blocks(&mut rng, up_type, inter * hidden / up_type.block_values());
    let down = random_blocks(&mut rng, dtype, hidden * inter / bv);
    let x = rng.normal(3 * hidden);
    let hw = |t: DType, bytes: Vec<u8>| {
        if quantized {
            HostWeights::Packed(t, bytes)
        } else {
            HostWeights::F32(t.dequantize(&bytes).unwrap())
        }
    };
    // Rows of [out, in] blocks, and columns cut at whole blocks.
    let row_bytes = |cols: usize| cols / bv * dtype.block_bytes();
    let rows = |t: DType, w: &[u8], r: std::ops::Range<usize>| {
        let rb = t.bytes_of(hidden);
        Ok(hw(t, w[r.start * rb..r.end * rb].to_vec()))
    };
    let mlp = GatedMlp::new_in_blocks(
        group,
        hidden,
        inter,
        bv,
        |r| rows(dtype, &gate, r),
        |r| rows(up_type, &up, r),
        |cols| {
            assert_eq!(cols.start % bv, 0, "cut inside a block");
            let rb = row_bytes(inter);
            let (c0, c1) = (row_bytes(cols.start), row_bytes(cols.end));
            let picked: Vec<u8> = (0..hidden)
                .flat_map(|o| down[o * rb + c0..o * rb + c1].to_vec())
                .collect();
            Ok(hw(dtype, picked))
        },
    )
    .unwrap();
    let x = DistTensor::replicate(group, &x, [3, hidden]).unwrap();
    mlp.forward(&x).unwrap().to_host().unwrap()
}

#[test]
fn a_gated_mlp_of_quantized_weights_gives_the_bits_of_its_decoded_weights_at_tp_1_to_4() {
    // The last two: gate and up of different types, as llama.cpp's mixed quantizations
    // store them; joined as row blocks each in its own type (HostWeights::Rows).
    let types = [
        [DType::Q8_0, DType::Q8_0],
        [DType::Q4_1, DType::Q4_1],
        [DType::Q4K, DType::Q4K],
        [DType::Q6K, DType::Q6K],
        [DType::Q4K, DType::Q6K],
        [DType::Q4K, DType::Q8_0],
    ];
    for t in types {
        for tp in 1..=4 {
            for group in common::groups(tp) {
                let q = gated_mlp_output(&group, t, true, 40 + tp as u64);
                let f = gated_mlp_output(&group, t, false, 40 + tp as u64);
                assert!(q.iter().all(|v| v.is_finite()));
                assert_eq!(bits(&q), bits(&f), "{t:?} tp {tp}");
            }
        }
    }
}

#[test]
fn weights_joined_from_parts_of_several_types_keep_each_type() {
    let Some(group) = common::group(1) else {
        return;
    };
    let r = &group.ranks()[0];
    let mut rng = Rng::new(33);
    let cols = 256;
    // Rows of Q4_K, Q6_K, bf16 and Q8_0 under one another.
    let parts: Vec<(DType, usize)> = vec![
        (DType::Q4K, 5),
        (DType::Q6K, 3),
        (DType::BF16, 2),
        (DType::Q8_0, 4),
    ];
    let mut host = Vec::new();
    let mut wide = Vec::new();
    for &(t, rows) in &parts {
        let h = if t == DType::BF16 {
            let v: Vec<u16> = (0..rows * cols)
                .map(|_| 0x3c00 + (rng.next_u64() % 512) as u16)
                .collect();
            wide.extend(v.iter().map(|&b| f32::from_bits(u32::from(b) << 16)));
            HostWeights::Half(t, v)
        } else {
            let b = random_blocks(&mut rng, t, rows * cols / t.block_values());
            wide.extend(t.dequantize(&b).unwrap());
            HostWeights::Packed(t, b)
        };
        host.push(h);
    }
    let refs: Vec<&HostWeights> = host.iter().collect();
    let joined = HostWeights::stacked(&refs).unwrap();
    assert_eq!(joined.len(), 14 * cols);
    assert_eq!(bits(&joined.to_f32()), bits(&wide));
    let t = joined.upload(r, [14, cols]).unwrap();
    assert!(t.is_mixed());
    assert_eq!(t.dtype(), DType::Q4K);
    assert_eq!(bits(&t.to_host().unwrap()), bits(&wide), "read back");
    let full = Tensor::from_host(r, &wide, [14, cols]).unwrap();
    for m in [1, 5] {
        let x = Tensor::from_host(r, &rng.normal(m * cols), [m, cols]).unwrap();
        let run = |w: &Tensor| {
            ops::matmul(&x, w, None, WeightLayout::OutIn, Activation::Identity)
                .unwrap()
                .to_host()
                .unwrap()
        };
        assert_eq!(bits(&run(&t)), bits(&run(&full)), "m {m}");
    }
    let ids = Tensor::from_ids(r, &[13, 0, 6, 9]).unwrap();
    let rows = |t: &Tensor| ops::embed(t, 0, &ids).unwrap().to_host().unwrap();
    assert_eq!(bits(&rows(&t)), bits(&rows(&full)), "embed");
    // Mixed weights are weights only.
    assert!(matches!(
        ops::add(&t, &full),
        Err(Error::InvalidArgument { .. })
    ));
}
