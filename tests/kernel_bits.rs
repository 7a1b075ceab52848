//! The CPU and simple GEMM families sum each output element by fma in increasing k, so
//! they give the same bits: `GemmKernel::Auto` may pick either by size (small products
//! run the simple family on CPU adapters) without changing a tp-invariant result.

mod common;

use common::assert_same_bits;
use wgpu_tp::reference::Rng;
use wgpu_tp::{ops, Activation, GemmKernel, Group, Numerics, Tensor, WeightLayout};

/// `act(x · W + bias)` with the family forced, in weight layout `[in, out]` (the one the
/// CPU family runs under tp-invariant numerics).
fn product(kernel: GemmKernel, m: usize, k: usize, n: usize, act: Activation) -> Option<Vec<f32>> {
    let group = common::build(
        Group::builder()
            .ranks_sharing_one_device(1)
            .numerics(Numerics::TpInvariant)
            .gemm_kernel(kernel),
        &format!("{kernel:?}"),
    )?;
    let r = &group.ranks()[0];
    let mut rng = Rng::new((m * 1000 + k * 10 + n) as u64);
    let x = Tensor::from_host(r, &rng.normal(m * k), [m, k]).unwrap();
    let w = Tensor::from_host(r, &rng.normal(k * n), [k, n]).unwrap();
    let b = Tensor::from_host(r, &rng.normal(n), [1, n]).unwrap();
    let y = ops::matmul(&x, &w, Some(&b), WeightLayout::InOut, act).unwrap();
    Some(y.to_host().unwrap())
}

#[test]
fn cpu_and_simple_families_give_the_same_bits() {
    // Below, at and above the size where Auto switches (32^3), and over several of the
    // CPU family's 16-row, 128-column blocks.
    for (m, k, n) in [(4, 8, 8), (32, 32, 32), (37, 64, 136), (130, 96, 260)] {
        for act in [Activation::Identity, Activation::GeluErf] {
            let Some(cpu) = product(GemmKernel::Cpu, m, k, n, act) else {
                return;
            };
            let simple = product(GemmKernel::Simple, m, k, n, act).unwrap();
            assert_same_bits(&cpu, &simple, &format!("[{m}, {k}] x [{k}, {n}] {act:?}"));
        }
    }
}
