//! Layers with half-precision (bf16, f16) weight shards: the bits of the same layers with
//! the widened f32 weights at every tp (uneven shards, both layouts, both kinds of group),
//! and under tp-invariant numerics the same bits at tp 1, 2, 4 and 8.

mod common;

use common::half::{bits, halves, widen};
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DType, DistTensor, Group, Numerics,
    ParallelMlp, RowParallelConfig, RowParallelLinear, Tensor, WeightLayout,
};

/// A tp-invariant MLP (hidden 64, ffn 128, gelu) whose weights are `dtype` shards (or f32
/// ones of the same values) on `group`: its output on `x`.
fn mlp_output(group: &Group, dtype: Option<DType>, h1: &[u16], h2: &[u16], x: &[f32]) -> Vec<f32> {
    let (hidden, ffn) = (64, 128);
    let tp = group.world_size();
    let (d1, d2) = (ffn / tp, ffn / tp);
    let up = |r: &wgpu_tp::Rank, h: &[u16], shape: [usize; 2]| match dtype {
        Some(t) => Tensor::from_half(r, t, h, shape).unwrap(),
        None => {
            let wide: Vec<f32> = h.iter().map(|&v| widen(DType::BF16, v)).collect();
            Tensor::from_host(r, &wide, shape).unwrap()
        }
    };
    // [out, in] weights: fc1 [ffn, hidden] split by rows, fc2 [hidden, ffn] by columns.
    let mut w1 = Vec::new();
    let mut w2 = Vec::new();
    for (i, rank) in group.ranks().iter().enumerate() {
        w1.push(up(
            rank,
            &h1[i * d1 * hidden..(i + 1) * d1 * hidden],
            [d1, hidden],
        ));
        let cols: Vec<u16> = (0..hidden)
            .flat_map(|o| h2[o * ffn + i * d2..o * ffn + (i + 1) * d2].to_vec())
            .collect();
        w2.push(up(rank, &cols, [hidden, d2]));
    }
    let layout = WeightLayout::OutIn;
    let cfg1 = ColumnParallelConfig::default()
        .gather_output(false)
        .activation(Activation::GeluTanh);
    let fc1 = ColumnParallelLinear::from_shards(group, w1, None, layout, cfg1).unwrap();
    let cfg2 = RowParallelConfig::default().input_is_parallel(true);
    let fc2 = RowParallelLinear::from_shards(group, w2, None, layout, cfg2).unwrap();
    let mlp = ParallelMlp::from_layers(fc1, fc2).unwrap();
    let x = DistTensor::replicate(group, x, [3, hidden]).unwrap();
    let y = mlp.forward(&x).unwrap();
    y.to_host().unwrap()
}

#[test]
fn a_tp_invariant_mlp_with_bf16_weights_keeps_its_bits_at_tp_1_2_4_and_8() {
    let mut rng = Rng::new(23);
    let (h1, _) = halves(&mut rng, DType::BF16, 128 * 64);
    let (h2, _) = halves(&mut rng, DType::BF16, 64 * 128);
    let x = rng.normal(3 * 64);
    let Some(one) = common::cached_group(1, false, Numerics::TpInvariant) else {
        return;
    };
    let want = mlp_output(&one, Some(DType::BF16), &h1, &h2, &x);
    assert_eq!(
        bits(&want),
        bits(&mlp_output(&one, None, &h1, &h2, &x)),
        "bf16 weights and their f32 values"
    );
    for (tp, shared) in [(2, false), (4, false), (4, true), (8, true)] {
        let Some(g) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
            return;
        };
        let got = mlp_output(&g, Some(DType::BF16), &h1, &h2, &x);
        assert_eq!(bits(&got), bits(&want), "tp {tp}, shared device {shared}");
    }
}

#[test]
fn half_layers_give_the_bits_of_their_widened_f32_layers_at_every_tp_and_layout() {
    // Default numerics: shards split unevenly at tp 3 (the first ranks one more row or
    // column), both layouts, both kinds of group; a column-parallel layer with a bias and
    // an activation, then a row-parallel one on the column layer's shards.
    let (k, n, m) = (40, 22, 3);
    let mut rng = Rng::new(27);
    let x = rng.normal(m * k);
    let b = rng.normal(n);
    for dtype in [DType::BF16, DType::F16] {
        let (h1, _) = halves(&mut rng, dtype, k * n);
        let (h2, _) = halves(&mut rng, dtype, n * k);
        for tp in common::TP_SIZES {
            for group in common::groups(tp) {
                for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                    let run = |half: bool| -> Vec<f32> {
                        // fc1: [k -> n], fc2: [n -> k], each stored per `layout`, split on
                        // the host like the f32 layers' from_full.
                        let shards = |h: &[u16], inp: usize, out: usize, by_out: bool| {
                            let sizes =
                                wgpu_tp::split_sizes(if by_out { out } else { inp }, tp).unwrap();
                            let mut start = 0;
                            let mut v = Vec::new();
                            for (r, rank) in group.ranks().iter().enumerate() {
                                let len = sizes[r];
                                let (i_r, o_r) = if by_out { (inp, len) } else { (len, out) };
                                // Element (i, o) of the [in, out] matrix.
                                let at = |i: usize, o: usize| match layout {
                                    WeightLayout::InOut => h[i * out + o],
                                    WeightLayout::OutIn => h[o * inp + i],
                                };
                                let mut part = Vec::with_capacity(i_r * o_r);
                                let shape = layout.stored_shape(i_r, o_r);
                                for a in 0..shape[0] {
                                    for c in 0..shape[1] {
                                        let (i, o) = match layout {
                                            WeightLayout::InOut => (a, c),
                                            WeightLayout::OutIn => (c, a),
                                        };
                                        let (i, o) = if by_out {
                                            (i, start + o)
                                        } else {
                                            (start + i, o)
                                        };
                                        part.push(at(i, o));
                                    }
                                }
                                start += len;
                                v.push(if half {
                                    Tensor::from_half(rank, dtype, &part, shape).unwrap()
                                } else {
                                    let wide: Vec<f32> =
                                        part.iter().map(|&p| widen(dtype, p)).collect();
                                    Tensor::from_host(rank, &wide, shape).unwrap()
                                });
                            }
                            v
                        };
                        let bias: Vec<Tensor> = {
                            let sizes = wgpu_tp::split_sizes(n, tp).unwrap();
                            let mut s0 = 0;
                            group
                                .ranks()
                                .iter()
                                .enumerate()
                                .map(|(r, rank)| {
                                    let t = Tensor::from_host(
                                        rank,
                                        &b[s0..s0 + sizes[r]],
                                        [1, sizes[r]],
                                    )
                                    .unwrap();
                                    s0 += sizes[r];
                                    t
                                })
                                .collect()
                        };
                        let cfg1 = ColumnParallelConfig::default()
                            .gather_output(false)
                            .activation(Activation::Relu);
                        let fc1 = ColumnParallelLinear::from_shards(
                            &group,
                            shards(&h1, k, n, true),
                            Some(bias),
                            layout,
                            cfg1,
                        )
                        .unwrap();
                        let cfg2 = RowParallelConfig::default().input_is_parallel(true);
                        let fc2 = RowParallelLinear::from_shards(
                            &group,
                            shards(&h2, n, k, false),
                            None,
                            layout,
                            cfg2,
                        )
                        .unwrap();
                        let mlp = ParallelMlp::from_layers(fc1, fc2).unwrap();
                        let xs = DistTensor::replicate(&group, &x, [m, k]).unwrap();
                        mlp.forward(&xs).unwrap().to_host().unwrap()
                    };
                    let ctx = format!("{dtype} tp {tp} {layout:?} ({} ranks)", group.ranks().len());
                    assert_eq!(bits(&run(true)), bits(&run(false)), "{ctx}");
                }
            }
        }
    }
}
