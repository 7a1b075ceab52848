//! The vocabulary-parallel cross-entropy (Megatron-LM's): loss and gradient against the
//! f64 reference within its rigorous f32 bound at tp 1-4 with uneven vocabulary shards on
//! both kinds of group, rows without a target left out; the same bits at tp 1, 2 and 4
//! under tp-invariant numerics; the reference's gradient against central differences of
//! its loss; the LM head's backward fed by it; bad input.

mod common;

use common::{assert_same_bits, assert_within, cached_group, groups, transpose_approx};
use wgpu_tp::nn::{vocab_parallel_cross_entropy, ParallelLmHead};
use wgpu_tp::reference::{self, Approx, Rng};
use wgpu_tp::{DistTensor, Error, Numerics, WeightLayout};

/// Seeded logits `[rows, vocab]` (spread as a trained model's: standard deviation 3) and
/// targets, every fourth row without one.
fn case(rows: usize, vocab: usize, seed: u64) -> (Vec<f32>, Vec<Option<u32>>) {
    let mut rng = Rng::new(seed);
    let logits = rng.normal(rows * vocab).iter().map(|v| 3.0 * v).collect();
    let targets = (0..rows)
        .map(|r| (r % 4 != 3).then(|| (rng.next_u64() % vocab as u64) as u32))
        .collect();
    (logits, targets)
}

/// 53 ids over 1-4 ranks (27+26, 18+18+17, 14+13+13+13).
#[test]
fn cross_entropy_matches_the_reference_at_tp_1_to_4() {
    let (rows, vocab) = (7, 53);
    let (logits, targets) = case(rows, vocab, 1);
    let (want_loss, want_grad) = reference::cross_entropy(&logits, [rows, vocab], &targets);
    let counted = targets.iter().flatten().count() as f64;
    for tp in 1..=4 {
        for g in groups(tp) {
            let ctx = format!("tp {tp}");
            let l = DistTensor::shard(&g, &logits, [rows, vocab], 1).unwrap();
            let ce = vocab_parallel_cross_entropy(&l, &targets).unwrap();
            for (r, (&got, (&v, &b))) in ce
                .per_row
                .iter()
                .zip(want_loss.value.iter().zip(&want_loss.bound))
                .enumerate()
            {
                assert!(
                    (got - v).abs() <= b,
                    "{ctx} row {r}: loss {got} vs {v} (bound {b})"
                );
            }
            let mean: f64 = want_loss.value.iter().sum::<f64>() / counted;
            let bound: f64 = want_loss.bound.iter().sum::<f64>() / counted;
            assert!(
                (ce.loss - mean).abs() <= bound,
                "{ctx}: {} vs {mean}",
                ce.loss
            );
            assert_eq!(ce.grad.shard_sizes(), l.shard_sizes(), "{ctx}");
            assert_within(
                &want_grad,
                &ce.grad.to_host().unwrap(),
                &format!("{ctx}: grad"),
            );
        }
    }
}

/// Under tp-invariant numerics the vocabulary's 8 blocks are the same at every tp: the
/// loss and the gradient are the same bits at tp 1, 2 and 4, on both kinds of group.
#[test]
fn cross_entropy_is_the_same_bits_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    let (rows, vocab) = (5, 64);
    let (logits, targets) = case(rows, vocab, 2);
    let mut first: Option<(Vec<f64>, Vec<f32>)> = None;
    for tp in [1, 2, 4] {
        for shared in [false, true] {
            let Some(g) = cached_group(tp, shared, Numerics::TpInvariant) else {
                return;
            };
            let l = DistTensor::shard(&g, &logits, [rows, vocab], 1).unwrap();
            let ce = vocab_parallel_cross_entropy(&l, &targets).unwrap();
            let got = (ce.per_row, ce.grad.to_host().unwrap());
            match &first {
                None => first = Some(got),
                Some((loss, grad)) => {
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(loss), bits(&got.0), "loss at tp {tp} shared {shared}");
                    assert_same_bits(grad, &got.1, &format!("grad at tp {tp} shared {shared}"));
                }
            }
        }
    }
}

/// The reference gradient is the derivative of the mean loss: central differences in f64
/// (h = 1e-5: truncation h^2 / 6 |d^3 L| below 1e-10 for softmax's derivatives of at most
/// 1 / n, rounding 2^-53 |L| / h below 1e-9) agree within 1e-8 at every logit.
#[test]
fn the_reference_gradient_is_the_mean_losss_finite_differences() {
    let (rows, vocab) = (4, 9);
    let (logits, targets) = case(rows, vocab, 3);
    let (_, grad) = reference::cross_entropy(&logits, [rows, vocab], &targets);
    let mean_loss = |l: &[f64]| {
        let mut sum = 0.0;
        for (row, t) in l.chunks(vocab).zip(&targets) {
            if let Some(t) = t {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                sum += s.ln() + m - row[*t as usize];
            }
        }
        sum / targets.iter().flatten().count() as f64
    };
    let base: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    for (i, &d) in grad.value.iter().enumerate() {
        let h = 1e-5;
        let at = |delta: f64| {
            let mut l = base.clone();
            l[i] += delta;
            mean_loss(&l)
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!((fd - d).abs() <= 1e-8, "logit {i}: {d} vs {fd}");
    }
}

/// The LM head's backward from the cross-entropy's gradient: dL/dX (all-reduced) and
/// dL/dE (each rank's vocabulary rows) within the reference chain's bound at tp 1-4.
#[test]
fn lm_head_backward_from_the_cross_entropy_matches_the_reference() {
    let (rows, hidden, vocab) = (6, 16, 53);
    let mut rng = Rng::new(4);
    let x = rng.normal(rows * hidden);
    let table = rng.xavier(vocab * hidden, hidden, vocab);
    let targets: Vec<Option<u32>> = (0..rows).map(|r| Some((r * 7 % vocab) as u32)).collect();
    // Logits = X E^T (E [vocab, hidden] read as [out, in]); their gradient G; dX = G E,
    // dE = G^T X.
    let logits = reference::linear(
        &Approx::exact(&x),
        [rows, hidden],
        &table,
        vocab,
        WeightLayout::OutIn,
        None,
    )
    .unwrap();
    for tp in 1..=4 {
        for g in groups(tp) {
            let head = ParallelLmHead::from_rows(&g, vocab, hidden, |r| {
                Ok(table[r.start * hidden..r.end * hidden].to_vec())
            })
            .unwrap();
            let xd = DistTensor::replicate(&g, &x, [rows, hidden]).unwrap();
            let l = head.forward(&xd).unwrap();
            let got_logits = l.to_host().unwrap();
            assert_within(&logits, &got_logits, &format!("tp {tp}: logits"));
            let ce = vocab_parallel_cross_entropy(&l, &targets).unwrap();
            // The reference gradient at the logits the GPU computed (exact inputs there),
            // then carried through the products exactly as the GPU's are.
            let (_, dl) = reference::cross_entropy(&got_logits, [rows, vocab], &targets);
            let want_dx = reference::linear(
                &dl,
                [rows, vocab],
                &table,
                hidden,
                WeightLayout::InOut,
                None,
            )
            .unwrap();
            let dlt = transpose_approx(&dl, rows, vocab);
            let want_de =
                reference::linear(&dlt, [vocab, rows], &x, hidden, WeightLayout::InOut, None)
                    .unwrap();
            let grads = head.backward(&xd, &ce.grad).unwrap();
            for (r, v) in grads.input.to_host_per_rank().unwrap().iter().enumerate() {
                assert_within(&want_dx, v, &format!("tp {tp}: dX rank {r}"));
            }
            let de = grads.weight.to_host().unwrap();
            assert_within(&want_de, &de, &format!("tp {tp}: dE"));
        }
    }
}

/// Bad input: each its `Error`.
#[test]
fn bad_cross_entropy_input_is_an_error() {
    let Some(g) = groups(2).into_iter().next() else {
        return;
    };
    let (rows, vocab) = (3, 10);
    let (logits, targets) = case(rows, vocab, 5);
    let l = DistTensor::shard(&g, &logits, [rows, vocab], 1).unwrap();
    let e = vocab_parallel_cross_entropy(&l, &targets[..2]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let past = vec![Some(vocab as u32); rows];
    let e = vocab_parallel_cross_entropy(&l, &past).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    let whole = DistTensor::replicate(&g, &logits, [rows, vocab]).unwrap();
    let e = vocab_parallel_cross_entropy(&whole, &targets).unwrap_err();
    assert!(matches!(e, Error::Placement { .. }), "{e:?}");
    for bad in [f32::NAN, f32::INFINITY] {
        let mut v = logits.clone();
        v[vocab + 7] = bad;
        let l = DistTensor::shard(&g, &v, [rows, vocab], 1).unwrap();
        let e = vocab_parallel_cross_entropy(&l, &targets).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{bad}: {e:?}");
    }
    // -inf logits are fine where a row has finite ones: their probability is 0.
    let mut v = logits.clone();
    v[1] = f32::NEG_INFINITY;
    let l = DistTensor::shard(&g, &v, [rows, vocab], 1).unwrap();
    let ce = vocab_parallel_cross_entropy(&l, &[Some(0), None, Some(2)]).unwrap();
    assert!(ce.loss.is_finite());
    assert_eq!(ce.grad.to_host().unwrap()[1], 0.0);
}
