//! The skinny family's GPU shapes (64 lanes; lanes along K for `[out, in]` weights) run on
//! whatever adapter the tests have, against the f64 reference: no GPU is at hand in CI,
//! and the shapes use nothing a CPU adapter lacks.

use std::cell::Cell;

use crate::kernels::settings::{Activation, GemmKernel, Numerics, WeightLayout};
use crate::reference::{self, Approx, Rng};
use crate::{ops, Error, Group, Tensor};

thread_local! {
    static FORCED: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs [`with_gpu_shapes`].
pub(super) fn forced() -> bool {
    FORCED.with(Cell::get)
}

fn with_gpu_shapes<T>(f: impl FnOnce() -> T) -> T {
    FORCED.with(|c| c.set(true));
    let out = f();
    FORCED.with(|c| c.set(false));
    out
}

fn group(numerics: Numerics) -> Option<Group> {
    match Group::builder()
        .ranks_on_one_adapter(1)
        .gemm_kernel(GemmKernel::Skinny)
        .numerics(numerics)
        .build()
    {
        Ok(g) => Some(g),
        Err(Error::NoAdapter { .. }) if std::env::var("CI").is_err() => None,
        Err(e) => panic!("{e}"),
    }
}

/// `[m, k] x [k, n]` with bias and GELU in `layout`, on `group`, and its reference.
fn product(
    group: &Group,
    (m, k, n): (usize, usize, usize),
    layout: WeightLayout,
) -> (Vec<f32>, Approx) {
    let r = &group.ranks()[0];
    let mut rng = Rng::new((m * k * 7 + n) as u64);
    let (x, w, b) = (rng.normal(m * k), rng.xavier(k * n, k, n), rng.normal(n));
    // `w` is [in, out]; store it per layout.
    let stored: Vec<f32> = match layout {
        WeightLayout::InOut => w.clone(),
        WeightLayout::OutIn => (0..k * n).map(|i| w[(i % k) * n + i / k]).collect(),
    };
    let xt = Tensor::from_host(r, &x, [m, k]).unwrap();
    let wt = Tensor::from_host(r, &stored, layout.stored_shape(k, n)).unwrap();
    let bt = Tensor::from_host(r, &b, [1, n]).unwrap();
    let y = ops::matmul(&xt, &wt, Some(&bt), layout, Activation::GeluTanh)
        .unwrap()
        .to_host()
        .unwrap();
    let want = reference::linear(
        &Approx::exact(&x),
        [m, k],
        &w,
        n,
        WeightLayout::InOut,
        Some(&b),
    )
    .unwrap();
    (y, reference::activation(&want, Activation::GeluTanh))
}

#[test]
fn the_gpu_shapes_match_the_reference_for_every_row_count() {
    let Some(group) = group(Numerics::Fast) else {
        return;
    };
    // Aligned (vec4 units) and wide; aligned, narrow and long (split into chunks); odd
    // (single-column units) and split.
    for (k, n) in [(256, 320), (4096, 24), (1037, 67)] {
        for m in [1, 2, 4, 5, 16, 17] {
            for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
                let (y, want) = with_gpu_shapes(|| product(&group, (m, k, n), layout));
                let c = want.check(&y);
                assert!(
                    c.pass,
                    "[{m}, {k}] x [{k}, {n}] {layout:?}: max |diff| {:.3e} over the bound",
                    c.max_abs_diff
                );
            }
        }
    }
}

#[test]
fn under_tp_invariant_numerics_the_gpu_shapes_give_the_cpu_shapes_bits() {
    let Some(group) = group(Numerics::TpInvariant) else {
        return;
    };
    for (m, k, n) in [(1, 4096, 24), (5, 1040, 67)] {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let (gpu, _) = with_gpu_shapes(|| product(&group, (m, k, n), layout));
            let (cpu, _) = product(&group, (m, k, n), layout);
            let same = gpu
                .iter()
                .zip(&cpu)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "[{m}, {k}] x [{k}, {n}] {layout:?}");
        }
    }
}
