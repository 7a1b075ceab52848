//! Single-rank kernels: GEMM in both layouts with bias and every fused activation, the
//! standalone activations (including |x| far past where a naive tanh overflows), add,
//! add_row and slice.

mod common;

use common::{assert_same_bits, assert_within, transpose};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{ops, Activation, Tensor, WeightLayout};

const ACTS: [Activation; 4] = [
    Activation::Identity,
    Activation::Relu,
    Activation::GeluTanh,
    Activation::GeluErf,
];

#[test]
fn matmul_fuses_bias_and_activation_in_both_layouts() {
    let group = group_or_skip!(1);
    let r = &group.ranks()[0];
    let (m, k, n) = (67, 33, 65);
    let mut rng = Rng::new(1);
    let (x, w, b) = (rng.normal(m * k), rng.normal(k * n), rng.normal(n));
    let xt = Tensor::from_host(r, &x, [m, k]).unwrap();
    let bt = Tensor::from_host(r, &b, [1, n]).unwrap();
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        let stored = match layout {
            WeightLayout::InOut => w.clone(),
            WeightLayout::OutIn => transpose(&w, k, n),
        };
        let wt = Tensor::from_host(r, &stored, layout.stored_shape(k, n)).unwrap();
        for act in ACTS {
            for bias in [None, Some(&bt)] {
                let want = reference::activation(
                    &common::reference_linear(&x, [m, k], &w, n, bias.map(|_| &b[..])),
                    act,
                );
                let y = ops::matmul(&xt, &wt, bias, layout, act).unwrap();
                assert_eq!(y.shape(), [m, n]);
                assert_within(
                    &want,
                    &y.to_host().unwrap(),
                    &format!("{layout:?} {act:?} bias {}", bias.is_some()),
                );
            }
        }
    }
}

#[test]
fn activations_match_the_reference_even_at_extreme_inputs() {
    let group = group_or_skip!(1);
    let r = &group.ranks()[0];
    let mut x: Vec<f32> = Rng::new(2).normal(1000).iter().map(|v| v * 4.0).collect();
    x.extend([
        0.0, -0.0, 1e-30, -1e-30, 10.0, -10.0, 50.0, -50.0, 100.0, -100.0, 1e4, -1e4,
    ]);
    let xt = Tensor::from_host(r, &x, [1, x.len()]).unwrap();
    for act in ACTS {
        let got = ops::activation(&xt, act).unwrap().to_host().unwrap();
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{act:?} produced a non-finite value"
        );
        assert_within(
            &reference::activation(&Approx::exact(&x), act),
            &got,
            &format!("{act:?}"),
        );
        // The fused epilogue and the standalone kernel share one WGSL function. (Compared
        // as values: the GEMM accumulates from +0, so its -0.0 * 1 comes out +0.0.)
        let one = Tensor::from_host(r, &[1.0], [1, 1]).unwrap();
        let xc = Tensor::from_host(r, &x, [x.len(), 1]).unwrap();
        let fused = ops::matmul(&xc, &one, None, WeightLayout::InOut, act)
            .unwrap()
            .to_host()
            .unwrap();
        let differ = fused.iter().zip(&got).position(|(a, b)| a != b);
        assert!(
            differ.is_none(),
            "{act:?} fused vs standalone differ at {differ:?}"
        );
    }
}

#[test]
fn add_add_row_scale_and_slice_are_exact() {
    let group = group_or_skip!(1);
    let r = &group.ranks()[0];
    let (rows, cols) = (9, 300);
    let mut rng = Rng::new(3);
    let (a, b, row) = (
        rng.normal(rows * cols),
        rng.normal(rows * cols),
        rng.normal(cols),
    );
    let (at, bt) = (
        Tensor::from_host(r, &a, [rows, cols]).unwrap(),
        Tensor::from_host(r, &b, [rows, cols]).unwrap(),
    );
    let rowt = Tensor::from_host(r, &row, [1, cols]).unwrap();
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_same_bits(&ops::add(&at, &bt).unwrap().to_host().unwrap(), &sum, "add");
    let biased: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, x)| x + row[i % cols])
        .collect();
    assert_same_bits(
        &ops::add_row(&at, &rowt).unwrap().to_host().unwrap(),
        &biased,
        "add_row",
    );
    // Gemma's embedding scale, sqrt(2304) rounded to f32: one product each.
    let s = 2304f32.sqrt();
    let scaled: Vec<f32> = a.iter().map(|x| x * s).collect();
    assert_same_bits(
        &ops::scale(&at, s).unwrap().to_host().unwrap(),
        &scaled,
        "scale",
    );
    let window = common::slice_host(&a, cols, 2, 5, 17, 200);
    assert_same_bits(
        &ops::slice(&at, 2, 17, [5, 200]).unwrap().to_host().unwrap(),
        &window,
        "slice",
    );
}

#[test]
fn recycled_buffers_never_change_results_already_asked_for() {
    // Dropping an input right after its GEMM was submitted puts its buffer back in the
    // rank's cache; the next tensor of that size gets it and overwrites it. Queue order
    // must keep the first GEMM reading the old values, and `zeros` must clear a reused one.
    let group = group_or_skip!(1);
    let r = &group.ranks()[0];
    let (m, k, n) = (40, 48, 36);
    let mut rng = Rng::new(3);
    let (a, b, w) = (rng.normal(m * k), rng.normal(m * k), rng.normal(k * n));
    let wt = Tensor::from_host(r, &w, [k, n]).unwrap();
    let mm = |x: &Tensor| ops::matmul(x, &wt, None, WeightLayout::InOut, Activation::Identity);
    let xa = Tensor::from_host(r, &a, [m, k]).unwrap();
    let ya = mm(&xa).unwrap();
    drop(xa);
    let xb = Tensor::from_host(r, &b, [m, k]).unwrap();
    let yb = mm(&xb).unwrap();
    assert_within(
        &common::reference_linear(&a, [m, k], &w, n, None),
        &ya.to_host().unwrap(),
        "first product",
    );
    assert_within(
        &common::reference_linear(&b, [m, k], &w, n, None),
        &yb.to_host().unwrap(),
        "second product",
    );
    drop(xb);
    let z = Tensor::zeros(r, [m, k]).unwrap();
    assert!(
        z.to_host().unwrap().iter().all(|&v| v == 0.0),
        "zeros after reuse"
    );
}
