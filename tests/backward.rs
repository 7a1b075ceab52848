//! Backward of the linear layers, Megatron's `f` and `g` placed as Megatron places them:
//! every gradient (input, weight, bias) against the f64 reference within its rigorous f32
//! bound at tp 1-4 with uneven shards, on both kinds of group, both weight layouts, with
//! and without bias, `gather_output` and `input_is_parallel` both ways; the collectives
//! each backward runs; the same bits at tp 1, 2 and 4 under tp-invariant numerics; the
//! weight gradients' `A^T · B` (`ops::matmul_tn`) in bands as whole; and bad input.

mod common;

use common::{
    assert_same_bits, assert_within, build, cached_group, fresh_groups, groups, transpose,
    transpose_approx, LinearCase,
};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{
    ops, wgpu, Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, Error,
    GemmKernel, Group, LinearGrads, Numerics, Placement, RowParallelConfig, RowParallelLinear,
    Tensor, WeightLayout,
};

const LAYOUTS: [WeightLayout; 2] = [WeightLayout::InOut, WeightLayout::OutIn];

/// The f64 references of a linear layer's gradients at input `x` `[t, k]` given `dy`
/// `[t, n]`, for the weight `w` `[k, n]`: dX = dY · W^T, dW (stored per `layout`) and
/// db = 1^T · dY. Each is a product of exact f32 inputs, so `reference::linear` bounds
/// the f32 result rigorously whatever order the GPU sums in.
struct Grads {
    input: Approx,
    weight: Approx,
    bias: Approx,
}

fn reference_grads(
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    (t, k, n): (usize, usize, usize),
    layout: WeightLayout,
) -> Grads {
    let lin = |a: &[f32], [m, kk]: [usize; 2], b: &[f32], nn: usize, l: WeightLayout| {
        reference::linear(&Approx::exact(a), [m, kk], b, nn, l, None).unwrap()
    };
    // W [k, n] read as [out, in] is W^T.
    let input = lin(dy, [t, n], w, k, WeightLayout::OutIn);
    let weight = match layout {
        WeightLayout::InOut => lin(&transpose(x, t, k), [k, t], dy, n, WeightLayout::InOut),
        WeightLayout::OutIn => lin(&transpose(dy, t, n), [n, t], x, k, WeightLayout::InOut),
    };
    let bias = lin(&vec![1.0; t], [1, t], dy, n, WeightLayout::InOut);
    Grads {
        input,
        weight,
        bias,
    }
}

/// Checks `got` against `want`: the input gradient on every rank, the weight and bias
/// gradients gathered whole.
fn check(got: &LinearGrads, want: &Grads, with_bias: bool, ctx: &str) {
    for (r, v) in got.input.to_host_per_rank().unwrap().iter().enumerate() {
        if got.input.placement() == Placement::Replicate {
            assert_within(&want.input, v, &format!("{ctx}: dX rank {r}"));
        }
    }
    assert_within(
        &want.input,
        &got.input.to_host().unwrap(),
        &format!("{ctx}: dX"),
    );
    assert_within(
        &want.weight,
        &got.weight.to_host().unwrap(),
        &format!("{ctx}: dW"),
    );
    match (&got.bias, with_bias) {
        (Some(b), true) => assert_within(&want.bias, &b.to_host().unwrap(), &format!("{ctx}: db")),
        (None, false) => {}
        (b, _) => panic!("{ctx}: bias gradient {b:?} for a layer with bias {with_bias}"),
    }
}

/// Column-parallel: dX all-reduced from every rank's `dy_r · W_r^T` (the `f` before the
/// layer), dW and db on their rank; 22 outputs over 1-4 ranks (8+7+7, 6+6+5+5).
#[test]
fn column_parallel_backward_matches_the_reference_at_tp_1_to_4() {
    let (t, k, n) = (5, 24, 22);
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    for gather in [true, false] {
                        let ctx = format!("tp {tp} {layout} bias {with_bias} gather {gather}");
                        let case = LinearCase::new(3, (t, k, n), layout, with_bias);
                        let config = ColumnParallelConfig::default().gather_output(gather);
                        let col =
                            ColumnParallelLinear::from_full(&g, case.host(k, n, layout), config)
                                .unwrap();
                        let x = DistTensor::replicate(&g, &case.x, [t, k]).unwrap();
                        let dy_full = Rng::new(tp as u64).normal(t * n);
                        let dy = if gather {
                            DistTensor::replicate(&g, &dy_full, [t, n]).unwrap()
                        } else {
                            DistTensor::shard(&g, &dy_full, [t, n], 1).unwrap()
                        };
                        let (reduces, gathers) = (g.stats().all_reduces(), g.stats().all_gathers());
                        let grads = col.backward(&x, &dy).unwrap();
                        assert_eq!(
                            g.stats().all_reduces() - reduces,
                            1,
                            "{ctx}: one all-reduce"
                        );
                        assert_eq!(g.stats().all_gathers() - gathers, 0, "{ctx}: no all-gather");
                        assert_eq!(grads.input.placement(), Placement::Replicate, "{ctx}");
                        assert_eq!(grads.weight.placement(), col.weight().placement(), "{ctx}");
                        assert_eq!(grads.weight.shard_sizes(), col.weight().shard_sizes());
                        let want = reference_grads(&case.x, &dy_full, &case.w, (t, k, n), layout);
                        check(&grads, &want, with_bias, &format!("column {ctx}"));
                    }
                }
            }
        }
    }
}

/// Row-parallel: dX is every rank's columns `dy · W_r^T` (the `g` after the layer is the
/// identity backward), all-gathered only when the forward sliced a replicated input; dW
/// on its rank, db whole everywhere; 22 inputs over 1-4 ranks.
#[test]
fn row_parallel_backward_matches_the_reference_at_tp_1_to_4() {
    let (t, k, n) = (5, 22, 24);
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            for layout in LAYOUTS {
                for with_bias in [false, true] {
                    for parallel in [true, false] {
                        let ctx = format!("tp {tp} {layout} bias {with_bias} parallel {parallel}");
                        let case = LinearCase::new(4, (t, k, n), layout, with_bias);
                        let config = RowParallelConfig::default().input_is_parallel(parallel);
                        let row = RowParallelLinear::from_full(&g, case.host(k, n, layout), config)
                            .unwrap();
                        let x = if parallel {
                            DistTensor::shard(&g, &case.x, [t, k], 1).unwrap()
                        } else {
                            DistTensor::replicate(&g, &case.x, [t, k]).unwrap()
                        };
                        let dy_full = Rng::new(10 + tp as u64).normal(t * n);
                        let dy = DistTensor::replicate(&g, &dy_full, [t, n]).unwrap();
                        let (reduces, gathers) = (g.stats().all_reduces(), g.stats().all_gathers());
                        let grads = row.backward(&x, &dy).unwrap();
                        assert_eq!(g.stats().all_reduces() - reduces, 0, "{ctx}: no all-reduce");
                        let gathered = u64::from(!parallel);
                        assert_eq!(g.stats().all_gathers() - gathers, gathered, "{ctx}");
                        assert_eq!(grads.input.placement(), x.placement(), "{ctx}");
                        assert_eq!(grads.input.shard_sizes(), x.shard_sizes(), "{ctx}");
                        assert_eq!(grads.weight.shard_sizes(), row.weight().shard_sizes());
                        let want = reference_grads(&case.x, &dy_full, &case.w, (t, k, n), layout);
                        check(&grads, &want, with_bias, &format!("row {ctx}"));
                    }
                }
            }
        }
    }
}

/// Under tp-invariant numerics every gradient of both layers is the same bits at tp 1, 2
/// and 4 (dX of the column-parallel layer summed over ranks as the row-parallel forward
/// sums; the rest sums over tokens on one rank), on both kinds of group.
#[test]
fn gradients_are_the_same_bits_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    let (t, k, n) = (6, 32, 48);
    let layout = WeightLayout::OutIn;
    let case = LinearCase::new(5, (t, k, n), layout, true);
    let dy_col = Rng::new(20).normal(t * n);
    let dy_row = Rng::new(21).normal(t * n);
    let mut first: Option<[Vec<f32>; 6]> = None;
    for tp in [1, 2, 4] {
        for shared in [false, true] {
            let Some(g) = cached_group(tp, shared, Numerics::TpInvariant) else {
                return;
            };
            let col = ColumnParallelLinear::from_full(
                &g,
                case.host(k, n, layout),
                ColumnParallelConfig::default(),
            )
            .unwrap();
            let x = DistTensor::replicate(&g, &case.x, [t, k]).unwrap();
            let dy = DistTensor::replicate(&g, &dy_col, [t, n]).unwrap();
            let c = col.backward(&x, &dy).unwrap();
            // A row-parallel layer of the transposed shape ([n, k] stored [k, n]).
            let w_row = transpose(&case.stored, n, k);
            let row = RowParallelLinear::from_full(
                &g,
                wgpu_tp::HostLinear::new(&w_row, n, k, layout).with_bias(&dy_row[..k]),
                RowParallelConfig::default(),
            )
            .unwrap();
            let xr = DistTensor::replicate(&g, &dy_col, [t, n]).unwrap();
            let dyr = DistTensor::replicate(&g, &dy_row[..t * k], [t, k]).unwrap();
            let r = row.backward(&xr, &dyr).unwrap();
            let all = [
                c.input.to_host().unwrap(),
                c.weight.to_host().unwrap(),
                c.bias.unwrap().to_host().unwrap(),
                r.input.to_host().unwrap(),
                r.weight.to_host().unwrap(),
                r.bias.unwrap().to_host().unwrap(),
            ];
            match &first {
                None => first = Some(all),
                Some(want) => {
                    for (i, (a, b)) in want.iter().zip(&all).enumerate() {
                        assert_same_bits(a, b, &format!("gradient {i} at tp {tp} shared {shared}"));
                    }
                }
            }
        }
    }
}

/// `matmul_tn` sums each element over `k` in order whatever the bands: on a device bound
/// to 4 KiB buffers (A `[37, 200]` in bands of 5 rows, B `[37, 40]` and Y `[200, 40]` of
/// 25) it gives the bits of the unbanded product; and it is within the reference.
#[test]
fn matmul_tn_in_bands_gives_the_bits_of_the_whole_product() {
    let (k, m, n) = (37, 200, 40);
    let mut rng = Rng::new(9);
    let (a, b) = (rng.normal(k * m), rng.normal(k * n));
    let Some(whole) = groups(1).into_iter().next() else {
        return;
    };
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = 4096;
    limits.max_buffer_size = 4096;
    let Some(small) = build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .required_limits(limits),
        "4 KiB buffers",
    ) else {
        return;
    };
    let got = tn_on(&whole, &a, &b, [k, m, n]);
    assert_within(&tn_reference(&a, &b, [k, m, n]), &got, "matmul_tn");
    let banded = tn_on(&small, &a, &b, [k, m, n]);
    assert_same_bits(&got, &banded, "matmul_tn in 4 KiB bands");
}

/// `matmul_tn` of `a` (`[k, m]`) and `b` (`[k, n]`) on `g`'s first rank, on the host.
fn tn_on(g: &Group, a: &[f32], b: &[f32], [k, m, n]: [usize; 3]) -> Vec<f32> {
    let r = &g.ranks()[0];
    let (ta, tb) = (
        Tensor::from_host(r, a, [k, m]).unwrap(),
        Tensor::from_host(r, b, [k, n]).unwrap(),
    );
    let y = ops::matmul_tn(&ta, &tb).unwrap();
    assert_eq!(y.shape(), [m, n]);
    y.to_host().unwrap()
}

/// The reference's `aᵀ · b` with its error bound.
fn tn_reference(a: &[f32], b: &[f32], [k, m, n]: [usize; 3]) -> Approx {
    let at = Approx::exact(&transpose(a, k, m));
    reference::linear(&at, [m, k], b, n, WeightLayout::InOut, None).unwrap()
}

/// `matmul_tn` gives the same bits whichever family runs it (each element's `k` products
/// summed by fma in increasing order): the CPU family's register blocks with X read
/// transposed (`main_tn`, forced) and the GPUs' workgroup-memory tiles (`X_T`, forced:
/// 128 x 128 where Y spans one each way, else 64 x 64) against one output per invocation
/// (forced), on shapes with partial blocks both ways (`[k, m] = [64, 200]` against
/// `[64, 40]`, `[260, 36]` against `[260, 132]`, `[37, 136]` against `[37, 260]`: the
/// large tiles, K not a multiple of their 8), and on a device bound to 4 KiB buffers (`[64, 256]` against
/// `[64, 32]`: A in bands of 4 rows, so 16 K blocks, each after the first adding onto Y's
/// partial sums); within the reference.
#[test]
fn matmul_tn_gives_the_same_bits_in_every_family() {
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = 4096;
    limits.max_buffer_size = 4096;
    let mut rng = Rng::new(10);
    for (k, m, n, small) in [
        (64, 200, 40, false),
        (260, 36, 132, false),
        (37, 136, 260, false),
        (64, 256, 32, true),
    ] {
        let (a, b) = (rng.normal(k * m), rng.normal(k * n));
        let want = tn_reference(&a, &b, [k, m, n]);
        let mut first: Option<Vec<f32>> = None;
        for kernel in [GemmKernel::Simple, GemmKernel::Cpu, GemmKernel::Tiled] {
            let mut builder = Group::builder().ranks_on_one_adapter(1).gemm_kernel(kernel);
            if small {
                builder = builder.required_limits(limits.clone());
            }
            let what = format!("[{k}, {m}]^T [{k}, {n}], {kernel:?}, 4 KiB buffers {small}");
            let Some(g) = build(builder, &what) else {
                return;
            };
            let got = tn_on(&g, &a, &b, [k, m, n]);
            assert_within(&want, &got, &what);
            match &first {
                None => first = Some(got),
                Some(f) => assert_same_bits(f, &got, &what),
            }
        }
    }
}

/// Bad input to a backward: each its `Error`, nothing run.
#[test]
fn bad_backward_input_is_an_error() {
    let Some(g) = groups(2).into_iter().next() else {
        return;
    };
    let (t, k, n) = (3, 8, 6);
    let case = LinearCase::new(6, (t, k, n), WeightLayout::InOut, true);
    let col = ColumnParallelLinear::from_full(
        &g,
        case.host(k, n, WeightLayout::InOut),
        ColumnParallelConfig::default(),
    )
    .unwrap();
    let x = DistTensor::replicate(&g, &case.x, [t, k]).unwrap();
    let dy = DistTensor::replicate(&g, &vec![1.0; t * n], [t, n]).unwrap();
    // dY of the wrong shape, and of the wrong placement.
    let short = DistTensor::replicate(&g, &vec![1.0; (t - 1) * n], [t - 1, n]).unwrap();
    assert!(matches!(col.backward(&x, &short), Err(Error::Shape { .. })));
    let sharded = DistTensor::shard(&g, &vec![1.0; t * n], [t, n], 1).unwrap();
    assert!(matches!(
        col.backward(&x, &sharded),
        Err(Error::Placement { .. })
    ));
    // X sharded where the forward takes it whole.
    let xs = DistTensor::shard(&g, &case.x, [t, k], 1).unwrap();
    assert!(matches!(
        col.backward(&xs, &dy),
        Err(Error::Placement { .. })
    ));
    // A fused activation: its backward needs the values before it.
    let relu = ColumnParallelLinear::from_full(
        &g,
        case.host(k, n, WeightLayout::InOut),
        ColumnParallelConfig::default().activation(Activation::Relu),
    )
    .unwrap();
    assert!(matches!(
        relu.backward(&x, &dy),
        Err(Error::InvalidArgument { .. })
    ));
    // Row-parallel: dY sharded where g's backward gives it whole; X not sharded.
    let row = RowParallelLinear::from_full(
        &g,
        case.host(k, n, WeightLayout::InOut),
        RowParallelConfig::default().input_is_parallel(true),
    )
    .unwrap();
    assert!(matches!(
        row.backward(&xs, &sharded),
        Err(Error::Placement { .. })
    ));
    assert!(matches!(
        row.backward(&x, &dy),
        Err(Error::Placement { .. })
    ));
    // matmul_tn of different row counts.
    let r = &g.ranks()[0];
    let a = Tensor::from_host(r, &[1.0; 6], [3, 2]).unwrap();
    let b = Tensor::from_host(r, &[1.0; 8], [4, 2]).unwrap();
    assert!(matches!(ops::matmul_tn(&a, &b), Err(Error::Shape { .. })));
}

/// `act'` as the kernel computes it, against the f64 derivative within the kernel's
/// rigorous f32 error (`reference::activation_grad`), from -25 to 25 (both GeLU forms'
/// tails, where `exp` overflows or `sech^2` underflows) and at 0.
#[test]
fn activation_grad_matches_the_derivative_within_its_bound() {
    let Some(g) = groups(1).into_iter().next() else {
        return;
    };
    let r = &g.ranks()[0];
    let mut z: Vec<f32> = (-250..=250).map(|i| i as f32 / 10.0).collect();
    z.extend(Rng::new(30).normal(499));
    z.extend([0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 30.0, -30.0]);
    let dh = Rng::new(31).normal(z.len());
    let shape = [z.len() / 6, 6];
    for act in [
        Activation::Identity,
        Activation::Relu,
        Activation::GeluTanh,
        Activation::GeluErf,
    ] {
        let got = ops::activation_grad(
            &Tensor::from_host(r, &z, shape).unwrap(),
            &Tensor::from_host(r, &dh, shape).unwrap(),
            act,
        )
        .unwrap()
        .to_host()
        .unwrap();
        let want = reference::activation_grad(&Approx::exact(&z), &Approx::exact(&dh), act);
        assert_within(&want, &got, &format!("{act:?}'"));
    }
}

/// The reference derivatives are the activations' derivatives: central differences in
/// f64 with h = 1e-5 (truncation h^2 |f'''| / 6 < 1e-10, rounding 2^-53 |f| / h < 1e-9 for
/// |f| <= 25) agree within 1e-8 away from ReLU's kink.
#[test]
fn the_reference_derivatives_are_the_activations_finite_differences() {
    let h = 1e-5;
    for act in [
        Activation::Identity,
        Activation::Relu,
        Activation::GeluTanh,
        Activation::GeluErf,
    ] {
        for i in -250..=250 {
            let v = f64::from(i) / 10.0 + 0.03;
            let fd =
                (reference::activate(v + h, act) - reference::activate(v - h, act)) / (2.0 * h);
            let d = reference::activate_grad(v, act);
            assert!(
                (fd - d).abs() <= 1e-8,
                "{act:?}'({v}): {d} vs difference {fd}"
            );
        }
    }
}

/// One seeded MLP: `x [t, k]`, `fc1` `[k, n]` with bias, `fc2` `[n, k]` with bias (all
/// `[in, out]` as the reference takes them), and `dy [t, k]`.
struct MlpCase {
    x: Vec<f32>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    dy: Vec<f32>,
}

impl MlpCase {
    fn new(seed: u64, (t, k, n): (usize, usize, usize)) -> Self {
        let mut rng = Rng::new(seed);
        MlpCase {
            x: rng.normal(t * k),
            w1: rng.xavier(k * n, k, n),
            b1: rng.normal(n),
            w2: rng.xavier(n * k, n, k),
            b2: rng.normal(k),
            dy: rng.normal(t * k),
        }
    }

    /// The f64 reference of every gradient, each weight's `[in, out]` and each bias's as a
    /// column (`[n, 1]`): dX, dW1, db1, dW2, db2.
    fn reference(&self, (t, k, n): (usize, usize, usize), act: Activation) -> [Approx; 5] {
        let io = WeightLayout::InOut;
        let lin = |a: &Approx, s: [usize; 2], w: &[f32], nn: usize, l: WeightLayout| {
            reference::linear(a, s, w, nn, l, None).unwrap()
        };
        let x = Approx::exact(&self.x);
        let dy = Approx::exact(&self.dy);
        let z = reference::linear(&x, [t, k], &self.w1, n, io, Some(&self.b1)).unwrap();
        let h = reference::activation(&z, act);
        // dH = dY W2^T (W2 [n, k] read as [out, in]), dZ = dH act'(Z).
        let dh = lin(&dy, [t, k], &self.w2, n, WeightLayout::OutIn);
        let dz = reference::activation_grad(&z, &dh, act);
        let dx = lin(&dz, [t, n], &self.w1, k, WeightLayout::OutIn);
        let ones = vec![1.0; t];
        // dW1 = X^T dZ, taken as (dZ^T X)^T: the reference multiplies an approximate left
        // operand by an exact right one.
        let dzt = transpose_approx(&dz, t, n);
        let dw1 = transpose_approx(&lin(&dzt, [n, t], &self.x, k, io), n, k);
        let db1 = lin(&dzt, [n, t], &ones, 1, io);
        let ht = transpose_approx(&h, t, n);
        let dw2 = lin(&ht, [n, t], &self.dy, k, io);
        let db2 = lin(&Approx::exact(&ones), [1, t], &self.dy, k, io);
        [dx, dw1, db1, dw2, db2]
    }

    /// `sum(R * fc2(act(fc1(x))))` in f64 for `R = dy` (whose gradient is the MLP's
    /// backward given dy), with `x`, `w1`, `b1`, `w2`, `b2` as given.
    fn loss(&self, p: [&[f64]; 5], (t, k, n): (usize, usize, usize), act: Activation) -> f64 {
        let [x, w1, b1, w2, b2] = p;
        let mut l = 0.0;
        for i in 0..t {
            let h: Vec<f64> = (0..n)
                .map(|j| {
                    let z = (0..k).map(|c| x[i * k + c] * w1[c * n + j]).sum::<f64>() + b1[j];
                    reference::activate(z, act)
                })
                .collect();
            for o in 0..k {
                let y = (0..n).map(|j| h[j] * w2[j * k + o]).sum::<f64>() + b2[o];
                l += f64::from(self.dy[i * k + o]) * y;
            }
        }
        l
    }
}

/// The reference MLP backward is the derivative of the MLP: central differences of its
/// f64 loss (h = 1e-5; truncation below 1e-8 for these magnitudes, rounding 2^-53 |L| / h
/// below 1e-9) at 12 entries of each of x, W1, b1, W2, b2 agree within 1e-6.
#[test]
fn the_reference_mlp_backward_is_the_losss_finite_differences() {
    let dims = (3, 5, 7);
    let case = MlpCase::new(40, dims);
    for act in [Activation::GeluTanh, Activation::GeluErf] {
        let grads = case.reference(dims, act);
        let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let params = [
            f64s(&case.x),
            f64s(&case.w1),
            f64s(&case.b1),
            f64s(&case.w2),
            f64s(&case.b2),
        ];
        for (which, grad) in grads.iter().enumerate() {
            for e in (0..params[which].len()).step_by(params[which].len().div_ceil(12)) {
                let h = 1e-5;
                let at = |delta: f64| {
                    let mut p = params.clone();
                    p[which][e] += delta;
                    case.loss([&p[0], &p[1], &p[2], &p[3], &p[4]], dims, act)
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let d = grad.value[e];
                assert!(
                    (fd - d).abs() <= 1e-6,
                    "{act:?} gradient {which}[{e}]: {d} vs {fd}"
                );
            }
        }
    }
}

/// The Megatron MLP's backward: every gradient within the reference's rigorous bound at
/// tp 1-4 (22 intermediate features: 8+7+7, 6+6+5+5), both kinds of group, each GeLU
/// form and ReLU, both layouts; exactly one all-reduce and no all-gather.
#[test]
fn mlp_backward_matches_the_reference_with_one_all_reduce_at_tp_1_to_4() {
    let (t, k, n) = (5, 24, 22);
    let case = MlpCase::new(41, (t, k, n));
    for act in [Activation::GeluTanh, Activation::GeluErf, Activation::Relu] {
        let want = case.reference((t, k, n), act);
        for tp in 1..=4 {
            for g in fresh_groups(tp) {
                for layout in LAYOUTS {
                    let ctx = format!("{act:?} tp {tp} {layout}");
                    let (s1, s2) = (
                        common::in_layout(&case.w1, k, n, layout),
                        common::in_layout(&case.w2, n, k, layout),
                    );
                    let mlp = wgpu_tp::ParallelMlp::from_full(
                        &g,
                        wgpu_tp::HostLinear::new(&s1, k, n, layout).with_bias(&case.b1),
                        wgpu_tp::HostLinear::new(&s2, n, k, layout).with_bias(&case.b2),
                        act,
                    )
                    .unwrap();
                    let x = DistTensor::replicate(&g, &case.x, [t, k]).unwrap();
                    let dy = DistTensor::replicate(&g, &case.dy, [t, k]).unwrap();
                    let (reduces, gathers) = (g.stats().all_reduces(), g.stats().all_gathers());
                    let grads = mlp.backward(&x, &dy).unwrap();
                    assert_eq!(
                        g.stats().all_reduces() - reduces,
                        1,
                        "{ctx}: one all-reduce"
                    );
                    assert_eq!(g.stats().all_gathers() - gathers, 0, "{ctx}: no all-gather");
                    // Weight gradients compared as [in, out].
                    let as_in_out = |d: &DistTensor, i: usize, o: usize| {
                        let v = d.to_host().unwrap();
                        match layout {
                            WeightLayout::InOut => v,
                            WeightLayout::OutIn => transpose(&v, o, i),
                        }
                    };
                    for (r, v) in grads
                        .fc1
                        .input
                        .to_host_per_rank()
                        .unwrap()
                        .iter()
                        .enumerate()
                    {
                        assert_within(&want[0], v, &format!("{ctx}: dX rank {r}"));
                    }
                    let dw1 = as_in_out(&grads.fc1.weight, k, n);
                    assert_within(&want[1], &dw1, &format!("{ctx}: dW1"));
                    let db1 = grads.fc1.bias.as_ref().unwrap().to_host().unwrap();
                    assert_within(&want[2], &db1, &format!("{ctx}: db1"));
                    let dw2 = as_in_out(&grads.fc2.weight, n, k);
                    assert_within(&want[3], &dw2, &format!("{ctx}: dW2"));
                    let db2 = grads.fc2.bias.as_ref().unwrap().to_host().unwrap();
                    assert_within(&want[4], &db2, &format!("{ctx}: db2"));
                }
            }
        }
    }
}

/// RMSNorm's backward on replicated rows: dx and dweight within the reference's bound at
/// tp 1-4 on both kinds of group (every rank computes the same; no communication).
#[test]
fn rms_norm_backward_matches_the_reference_at_tp_1_to_4() {
    let (rows, cols, eps) = (5, 24, 1e-5);
    let mut rng = Rng::new(50);
    let x = rng.normal(rows * cols);
    let w: Vec<f32> = rng.normal(cols).iter().map(|v| 1.0 + 0.1 * v).collect();
    let dy = rng.normal(rows * cols);
    let (want_dx, want_dw) = reference::rms_norm_backward(&x, &w, &dy, [rows, cols], eps);
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            let norm =
                wgpu_tp::nn::Norm::new(&g, wgpu_tp::nn::NormKind::Rms, &w, None, eps).unwrap();
            let xd = DistTensor::replicate(&g, &x, [rows, cols]).unwrap();
            let dyd = DistTensor::replicate(&g, &dy, [rows, cols]).unwrap();
            let (reduces, gathers) = (g.stats().all_reduces(), g.stats().all_gathers());
            let grads = norm.backward(&xd, &dyd).unwrap();
            assert_eq!(
                g.stats().all_reduces() + g.stats().all_gathers(),
                reduces + gathers
            );
            for (r, v) in grads.input.to_host_per_rank().unwrap().iter().enumerate() {
                assert_within(&want_dx, v, &format!("tp {tp}: dx rank {r}"));
            }
            for (r, v) in grads.weight.to_host_per_rank().unwrap().iter().enumerate() {
                assert_within(&want_dw, v, &format!("tp {tp}: dweight rank {r}"));
            }
        }
    }
}

/// The reference RMSNorm backward is the derivative of `sum(dy * rms_norm(x))`: central
/// differences in f64 (h = 1e-5; truncation h^2 |L'''| / 6 below 1e-9 for these unit
/// magnitudes, rounding 2^-53 |L| / h below 1e-9) at every x and weight entry, within 1e-7.
#[test]
fn the_reference_rms_norm_backward_is_the_losss_finite_differences() {
    let (rows, cols, eps) = (3, 6, 1e-5f32);
    let mut rng = Rng::new(51);
    let x = rng.normal(rows * cols);
    let w: Vec<f32> = rng.normal(cols).iter().map(|v| 1.0 + 0.1 * v).collect();
    let dy = rng.normal(rows * cols);
    let (dx, dw) = reference::rms_norm_backward(&x, &w, &dy, [rows, cols], eps);
    let loss = |x: &[f64], w: &[f64]| {
        let mut l = 0.0;
        for (r, row) in x.chunks(cols).enumerate() {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            for k in 0..cols {
                l += f64::from(dy[r * cols + k]) * row[k] * inv * w[k];
            }
        }
        l
    };
    let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let ws: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    let h = 1e-5;
    for i in 0..xs.len() {
        let at = |d: f64| {
            let mut p = xs.clone();
            p[i] += d;
            loss(&p, &ws)
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (fd - dx.value[i]).abs() <= 1e-7,
            "dx[{i}]: {} vs {fd}",
            dx.value[i]
        );
    }
    for k in 0..cols {
        let at = |d: f64| {
            let mut p = ws.clone();
            p[k] += d;
            loss(&xs, &p)
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (fd - dw.value[k]).abs() <= 1e-7,
            "dw[{k}]: {} vs {fd}",
            dw.value[k]
        );
    }
}

/// The vocabulary-parallel embedding's backward: each rank's rows get the sum of the
/// output gradient's rows of the tokens with their id, in token order, exactly (the host's
/// f32 sum in that order, bit for bit), at tp 1-4 over 37 ids (uneven shards) on both
/// kinds of group, with ids repeated within and across shards; no collective.
#[test]
fn embedding_backward_is_the_token_order_sum_bit_for_bit_at_tp_1_to_4() {
    let (vocab, hidden) = (37, 12);
    let ids: Vec<u32> = vec![3, 36, 3, 0, 20, 3, 19, 18, 36, 7, 20, 0, 3];
    let mut rng = Rng::new(60);
    let table = rng.normal(vocab * hidden);
    let dy = rng.normal(ids.len() * hidden);
    let mut want = vec![0.0f32; vocab * hidden];
    for (t, &id) in ids.iter().enumerate() {
        for c in 0..hidden {
            want[id as usize * hidden + c] += dy[t * hidden + c];
        }
    }
    for tp in 1..=4 {
        for g in fresh_groups(tp) {
            let emb = wgpu_tp::nn::VocabParallelEmbedding::from_rows(&g, vocab, hidden, |r| {
                Ok(table[r.start * hidden..r.end * hidden].to_vec())
            })
            .unwrap();
            let dyd = DistTensor::replicate(&g, &dy, [ids.len(), hidden]).unwrap();
            let (reduces, gathers) = (g.stats().all_reduces(), g.stats().all_gathers());
            let grad = emb.backward(&ids, &dyd).unwrap();
            assert_eq!(
                g.stats().all_reduces() + g.stats().all_gathers(),
                reduces + gathers
            );
            assert_eq!(grad.shard_sizes(), emb.weight().shard_sizes());
            assert_same_bits(&want, &grad.to_host().unwrap(), &format!("tp {tp}"));
            // Bad input: dy of another token count, ids past the vocabulary.
            let short = DistTensor::replicate(&g, &dy[..hidden], [1, hidden]).unwrap();
            assert!(matches!(
                emb.backward(&ids, &short),
                Err(Error::Shape { .. })
            ));
            assert!(emb.backward(&[vocab as u32], &short).is_err());
        }
    }
}

/// LayerNorm's backward on replicated rows: dx, dweight and dbias within the reference's
/// bound at tp 1-4 on both kinds of group, inputs off-centre (mean 2) so the mean matters.
#[test]
fn layer_norm_backward_matches_the_reference_at_tp_1_to_4() {
    let (rows, cols, eps) = (5, 24, 1e-5);
    let mut rng = Rng::new(52);
    let x: Vec<f32> = rng.normal(rows * cols).iter().map(|v| 2.0 + v).collect();
    let w: Vec<f32> = rng.normal(cols).iter().map(|v| 1.0 + 0.1 * v).collect();
    let b = rng.normal(cols);
    let dy = rng.normal(rows * cols);
    let (want_dx, want_dw, want_db) =
        reference::layer_norm_backward(&x, &w, &dy, [rows, cols], eps);
    for tp in 1..=4 {
        for g in groups(tp) {
            let norm = wgpu_tp::nn::Norm::new(&g, wgpu_tp::nn::NormKind::Layer, &w, Some(&b), eps)
                .unwrap();
            let xd = DistTensor::replicate(&g, &x, [rows, cols]).unwrap();
            let dyd = DistTensor::replicate(&g, &dy, [rows, cols]).unwrap();
            let grads = norm.backward(&xd, &dyd).unwrap();
            for (r, v) in grads.input.to_host_per_rank().unwrap().iter().enumerate() {
                assert_within(&want_dx, v, &format!("tp {tp}: dx rank {r}"));
            }
            assert_within(
                &want_dw,
                &grads.weight.to_host().unwrap(),
                &format!("tp {tp}: dw"),
            );
            let db = grads.bias.as_ref().unwrap().to_host().unwrap();
            assert_within(&want_db, &db, &format!("tp {tp}: db"));
        }
    }
}

/// The reference LayerNorm backward is the derivative of `sum(dy * layer_norm(x))`:
/// central differences in f64 (h = 1e-5, as for RMSNorm) at every x, weight and bias
/// entry, within 1e-7.
#[test]
fn the_reference_layer_norm_backward_is_the_losss_finite_differences() {
    let (rows, cols, eps) = (3, 6, 1e-5f32);
    let mut rng = Rng::new(53);
    let x: Vec<f32> = rng.normal(rows * cols).iter().map(|v| 2.0 + v).collect();
    let w: Vec<f32> = rng.normal(cols).iter().map(|v| 1.0 + 0.1 * v).collect();
    let dy = rng.normal(rows * cols);
    let (dx, dw, db) = reference::layer_norm_backward(&x, &w, &dy, [rows, cols], eps);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut l = 0.0;
        for (r, row) in x.chunks(cols).enumerate() {
            let m = row.iter().sum::<f64>() / cols as f64;
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / cols as f64;
            let inv = 1.0 / (var + f64::from(eps)).sqrt();
            for k in 0..cols {
                l += f64::from(dy[r * cols + k]) * ((row[k] - m) * inv * w[k] + b[k]);
            }
        }
        l
    };
    let f = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let p = [f(&x), f(&w), vec![0.0; cols]];
    let h = 1e-5;
    for (which, grad) in [&dx, &dw, &db].iter().enumerate() {
        for i in 0..p[which].len() {
            let at = |d: f64| {
                let mut q = p.clone();
                q[which][i] += d;
                loss(&q[0], &q[1], &q[2])
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let v = grad.value[i];
            assert!((fd - v).abs() <= 1e-7, "gradient {which}[{i}]: {v} vs {fd}");
        }
    }
}
