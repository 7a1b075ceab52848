//! The backward against PyTorch autograd on the same weights and inputs
//! (`tests/fixtures/backward/torch.safetensors`, written by
//! `scripts/make_backward_fixtures.py`, not run by CI): a linear layer as column- and as
//! row-parallel, the Megatron MLP with either GeLU, and the cross-entropy with ignored
//! rows, at tp 1-4 with uneven shards on both kinds of group.
//!
//! The tolerance: PyTorch's f32 result and the library's are each within the f64
//! reference's rigorous bound `B` of the exact gradient (the bound holds for any order of
//! f32 summation, and torch's GeLU and log-softmax are at least as accurate as the
//! kernels the bound was derived for), so they differ by at most `2 B`. The test checks
//! torch's within `B` (the fixture means what the test thinks it means) and the library's
//! within `2 B` of torch's.

mod common;

use common::{cached_group, torch_fixture as fixture, transpose_approx};
use wgpu_tp::nn::vocab_parallel_cross_entropy;
use wgpu_tp::reference::{self, Approx};
use wgpu_tp::{
    Activation, ColumnParallelConfig, ColumnParallelLinear, DistTensor, HostLinear, Numerics,
    ParallelMlp, RowParallelConfig, RowParallelLinear, WeightLayout,
};

/// Asserts torch's `want` within the reference's bound and `got` within twice it of
/// torch's (see the module docs).
fn check(reference: &Approx, torch: &[f32], got: &[f32], ctx: &str) {
    assert_eq!(torch.len(), reference.value.len(), "{ctx}: torch's length");
    assert_eq!(got.len(), torch.len(), "{ctx}: length");
    for (i, ((&t, &g), (&v, &b))) in torch
        .iter()
        .zip(got)
        .zip(reference.value.iter().zip(&reference.bound))
        .enumerate()
    {
        let (t, g) = (f64::from(t), f64::from(g));
        assert!(
            (t - v).abs() <= b,
            "{ctx}[{i}]: torch {t} vs reference {v} (bound {b})"
        );
        assert!(
            (g - t).abs() <= 2.0 * b,
            "{ctx}[{i}]: {g} vs torch {t} (2 x bound {b})"
        );
    }
}

/// Both kinds of group at `tp`.
fn groups(tp: usize) -> Vec<wgpu_tp::Group> {
    [false, true]
        .into_iter()
        .filter_map(|shared| cached_group(tp, shared, Numerics::Fast))
        .collect()
}

/// The exact input `v` `[rows, cols]` as an `Approx`.
fn exact(v: &[f32]) -> Approx {
    Approx::exact(v)
}

#[test]
fn linear_layers_give_torchs_gradients_at_tp_1_to_4() {
    let f = fixture();
    let (t, k, n) = (5, 24, 22);
    let (x, w, b, dy) = (
        &f["linear.x"],
        &f["linear.w"],
        &f["linear.b"],
        &f["linear.dy"],
    );
    let lin = |a: &Approx, s: [usize; 2], m: &[f32], nn: usize, l: WeightLayout| {
        reference::linear(a, s, m, nn, l, None).unwrap()
    };
    // w is nn.Linear's [out, in]: dX = dY W, dW = dY^T X, db = 1^T dY.
    let ref_dx = lin(&exact(dy), [t, n], w, k, WeightLayout::InOut);
    let ref_dw = lin(
        &transpose_approx(&exact(dy), t, n),
        [n, t],
        x,
        k,
        WeightLayout::InOut,
    );
    let ref_db = lin(&exact(&vec![1.0; t]), [1, t], dy, n, WeightLayout::InOut);
    let layer = || HostLinear::new(w, k, n, WeightLayout::OutIn).with_bias(b);
    for tp in 1..=4 {
        for g in groups(tp) {
            let xd = DistTensor::replicate(&g, x, [t, k]).unwrap();
            let dyd = DistTensor::replicate(&g, dy, [t, n]).unwrap();
            let col = ColumnParallelLinear::from_full(&g, layer(), ColumnParallelConfig::default())
                .unwrap();
            let row =
                RowParallelLinear::from_full(&g, layer(), RowParallelConfig::default()).unwrap();
            for (name, grads) in [
                ("column", col.backward(&xd, &dyd).unwrap()),
                ("row", row.backward(&xd, &dyd).unwrap()),
            ] {
                let ctx = format!("{name} tp {tp}");
                let get = |d: &DistTensor| d.to_host().unwrap();
                check(
                    &ref_dx,
                    &f["linear.dx"],
                    &get(&grads.input),
                    &format!("{ctx}: dx"),
                );
                check(
                    &ref_dw,
                    &f["linear.dw"],
                    &get(&grads.weight),
                    &format!("{ctx}: dw"),
                );
                let db = get(grads.bias.as_ref().unwrap());
                check(&ref_db, &f["linear.db"], &db, &format!("{ctx}: db"));
            }
        }
    }
}

#[test]
fn the_mlp_gives_torchs_gradients_at_tp_1_to_4() {
    let f = fixture();
    let (t, k, n) = (5, 24, 22);
    let io = WeightLayout::InOut;
    for (name, act) in [("tanh", Activation::GeluTanh), ("erf", Activation::GeluErf)] {
        let p = |s: &str| &f[&format!("mlp_{name}.{s}")];
        let (x, w1, b1, w2, b2, dy) = (p("x"), p("w1"), p("b1"), p("w2"), p("b2"), p("dy"));
        // The reference chain (weights [out, in] as torch stores them).
        let lin = |a: &Approx, s: [usize; 2], m: &[f32], nn: usize, l: WeightLayout| {
            reference::linear(a, s, m, nn, l, None).unwrap()
        };
        let z = reference::linear(&exact(x), [t, k], w1, n, WeightLayout::OutIn, Some(b1)).unwrap();
        let h = reference::activation(&z, act);
        let dh = lin(&exact(dy), [t, k], w2, n, io);
        let dz = reference::activation_grad(&z, &dh, act);
        let dx = lin(&dz, [t, n], w1, k, io);
        let dzt = transpose_approx(&dz, t, n);
        let dw1 = lin(&dzt, [n, t], x, k, io);
        let db1 = lin(&dzt, [n, t], &vec![1.0; t], 1, io);
        let dw2 = transpose_approx(&lin(&transpose_approx(&h, t, n), [n, t], dy, k, io), n, k);
        let db2 = lin(&exact(&vec![1.0; t]), [1, t], dy, k, io);
        for tp in 1..=4 {
            for g in groups(tp) {
                let ctx = format!("gelu {name} tp {tp}");
                let mlp = ParallelMlp::from_full(
                    &g,
                    HostLinear::new(w1, k, n, WeightLayout::OutIn).with_bias(b1),
                    HostLinear::new(w2, n, k, WeightLayout::OutIn).with_bias(b2),
                    act,
                )
                .unwrap();
                let xd = DistTensor::replicate(&g, x, [t, k]).unwrap();
                let dyd = DistTensor::replicate(&g, dy, [t, k]).unwrap();
                let grads = mlp.backward(&xd, &dyd).unwrap();
                let get = |d: &DistTensor| d.to_host().unwrap();
                let q = |s: &str| &f[&format!("mlp_{name}.{s}")];
                check(&dx, q("dx"), &get(&grads.fc1.input), &format!("{ctx}: dx"));
                check(
                    &dw1,
                    q("dw1"),
                    &get(&grads.fc1.weight),
                    &format!("{ctx}: dw1"),
                );
                let got_db1 = get(grads.fc1.bias.as_ref().unwrap());
                check(&db1, q("db1"), &got_db1, &format!("{ctx}: db1"));
                check(
                    &dw2,
                    q("dw2"),
                    &get(&grads.fc2.weight),
                    &format!("{ctx}: dw2"),
                );
                let got_db2 = get(grads.fc2.bias.as_ref().unwrap());
                check(&db2, q("db2"), &got_db2, &format!("{ctx}: db2"));
            }
        }
    }
}

#[test]
fn the_cross_entropy_gives_torchs_loss_and_gradient_at_tp_1_to_4() {
    let f = fixture();
    let (rows, vocab) = (7, 53);
    let logits = &f["ce.logits"];
    let targets: Vec<Option<u32>> = f["ce.targets"]
        .iter()
        .map(|&t| (t >= 0.0).then_some(t as u32))
        .collect();
    assert!(targets.contains(&None), "the fixture ignores some rows");
    let (loss, grad) = reference::cross_entropy(logits, [rows, vocab], &targets);
    let counted = targets.iter().flatten().count() as f64;
    let (mean, bound) = (
        loss.value.iter().sum::<f64>() / counted,
        loss.bound.iter().sum::<f64>() / counted,
    );
    let torch_loss = f64::from(f["ce.loss"][0]);
    // torch's loss is f32: within the bound and its own rounding.
    assert!((torch_loss - mean).abs() <= bound + 6e-8 * mean.abs());
    for tp in 1..=4 {
        for g in groups(tp) {
            let l = DistTensor::shard(&g, logits, [rows, vocab], 1).unwrap();
            let ce = vocab_parallel_cross_entropy(&l, &targets).unwrap();
            assert!(
                (ce.loss - torch_loss).abs() <= 2.0 * bound + 6e-8 * mean.abs(),
                "tp {tp}: loss {} vs torch {torch_loss}",
                ce.loss
            );
            let got = ce.grad.to_host().unwrap();
            check(&grad, &f["ce.dlogits"], &got, &format!("tp {tp}: dlogits"));
        }
    }
}
