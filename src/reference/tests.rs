//! Unit tests of the reference: the blocked, threaded product against the plain loop, and
//! its refusals.

use super::*;

/// The plain triple loop `linear` replaced, in the same summation order.
fn naive(
    x: &Approx,
    [m, k]: [usize; 2],
    w: &[f32],
    n: usize,
    layout: WeightLayout,
    bias: Option<&[f32]>,
) -> Approx {
    let g = gamma(k + 2);
    let (mut value, mut bound) = (vec![0.0; m * n], vec![0.0; m * n]);
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut abs, mut carried) = (0.0f64, 0.0f64, 0.0f64);
            for kk in 0..k {
                let wv = f64::from(match layout {
                    WeightLayout::InOut => w[kk * n + j],
                    WeightLayout::OutIn => w[j * k + kk],
                });
                let (xv, xe) = (x.value[i * k + kk], x.bound[i * k + kk]);
                acc += xv * wv;
                abs += (xv.abs() + xe) * wv.abs();
                carried += xe * wv.abs();
            }
            if let Some(b) = bias {
                acc += f64::from(b[j]);
                abs += f64::from(b[j]).abs();
            }
            value[i * n + j] = acc;
            bound[i * n + j] = g * abs + carried;
        }
    }
    Approx { value, bound }
}

#[test]
fn blocked_threaded_linear_gives_the_plain_loops_bits() {
    let mut rng = Rng::new(7);
    // Partial tiles in every dimension; the largest runs on several threads.
    for [m, k, n] in [
        [1, 1, 1],
        [3, 5, 2],
        [40, 150, 300],
        [33, 129, 257],
        [2, 0, 3],
    ] {
        let w = rng.normal(k * n);
        let b = rng.normal(n);
        let mut x = Approx::exact(&rng.normal(m * k));
        x.bound = rng
            .normal(m * k)
            .iter()
            .map(|e| f64::from(e.abs()) * 1e-6)
            .collect();
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            for bias in [None, Some(&b[..])] {
                let got = linear(&x, [m, k], &w, n, layout, bias).unwrap();
                let want = naive(&x, [m, k], &w, n, layout, bias);
                let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let ctx = format!("[{m}, {k}] x {n} {layout} bias {}", bias.is_some());
                assert_eq!(bits(&got.value), bits(&want.value), "{ctx}");
                assert_eq!(bits(&got.bound), bits(&want.bound), "{ctx}");
            }
        }
    }
}

#[test]
fn short_operands_and_overflowing_shapes_are_shape_errors() {
    let x = Approx::exact(&[1.0; 6]);
    let w = [1.0f32; 12];
    let shape_error = |r: Result<Approx>| matches!(r, Err(Error::Shape { .. }));
    assert!(linear(&x, [2, 3], &w, 4, WeightLayout::InOut, None).is_ok());
    // A weight one value short, in either layout.
    for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
        assert!(shape_error(linear(&x, [2, 3], &w[..11], 4, layout, None)));
    }
    // An input one row short, and bounds shorter than values.
    assert!(shape_error(linear(
        &x,
        [3, 3],
        &w,
        4,
        WeightLayout::InOut,
        None
    )));
    let mut short_bound = x.clone();
    short_bound.bound.pop();
    assert!(shape_error(linear(
        &short_bound,
        [2, 3],
        &w,
        4,
        WeightLayout::InOut,
        None
    )));
    // A short bias.
    assert!(shape_error(linear(
        &x,
        [2, 3],
        &w,
        4,
        WeightLayout::InOut,
        Some(&[0.0; 3])
    )));
    // m × k, k × n and m × n past usize.
    let big = usize::MAX / 2 + 1;
    assert!(shape_error(linear(
        &x,
        [big, 2],
        &w,
        4,
        WeightLayout::InOut,
        None
    )));
    assert!(shape_error(linear(
        &x,
        [0, 2],
        &w,
        big,
        WeightLayout::InOut,
        None
    )));
    assert!(shape_error(linear(
        &x,
        [2, 0],
        &w,
        big,
        WeightLayout::InOut,
        None
    )));
}
