//! The cross-entropy in f64 with rigorous bounds on what the kernels compute in f32
//! (`shaders/cross_entropy.wgsl`, `nn::vocab_parallel_cross_entropy`).

use super::Approx;

/// f32's unit roundoff.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Per row of `logits` (`[rows, vocab]`, row-major) and its target (`None`: left out):
/// the loss `-log softmax(row)[target]` as an [`Approx`] (0, bound 0, without a target),
/// and the gradient of the mean over the rows with a target, `(softmax - one_hot) / n`,
/// as an [`Approx`] of every logit.
///
/// The bounds hold whatever blocks the kernels split a row into (every block's largest
/// logit is at most the row's, and no block is longer than the row):
/// - a block's sum of `exp(l - m)` in f32: each term within `(6 + 5 |l - M|) U` relative
///   (the subtraction, and WGSL's `exp` at `3 + 2|x|` ulp of 2 U), the sequential sum
///   within `gamma(vocab)` relative; joined in f64 on the host;
/// - the loss `ln S + M - l_t` within the sum's relative error (times 1.01) and f64
///   rounding;
/// - the gradient `(exp(l - M) / S - h) * scale` in f32: the softmax within its term's
///   error, the sum's, and 2 U (the divide, S rounded to f32); the subtraction, the scale
///   (1/n rounded to f32) and the product one rounding each.
pub fn cross_entropy(
    logits: &[f32],
    [rows, vocab]: [usize; 2],
    targets: &[Option<u32>],
) -> (Approx, Approx) {
    let gamma = |n: f64| n * U / (1.0 - n * U);
    let counted = targets.iter().flatten().count();
    let scale = if counted == 0 {
        0.0
    } else {
        1.0 / counted as f64
    };
    let mut loss = Approx {
        value: Vec::with_capacity(rows),
        bound: Vec::with_capacity(rows),
    };
    let mut grad = Approx {
        value: Vec::with_capacity(rows * vocab),
        bound: Vec::with_capacity(rows * vocab),
    };
    for (row, target) in logits.chunks(vocab).take(rows).zip(targets) {
        let l: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let terms: Vec<f64> = l.iter().map(|&v| (v - m).exp()).collect();
        let s: f64 = terms.iter().sum();
        let term_error: f64 = terms
            .iter()
            .zip(&l)
            .map(|(e, v)| e * (6.0 + 5.0 * (v - m).abs()) * U)
            .sum();
        let delta = term_error / s + gamma(vocab as f64);
        let Some(t) = target else {
            loss.value.push(0.0);
            loss.bound.push(0.0);
            grad.value.extend(std::iter::repeat_n(0.0, vocab));
            grad.bound.extend(std::iter::repeat_n(0.0, vocab));
            continue;
        };
        let value = s.ln() + m - l[*t as usize];
        loss.value.push(value);
        loss.bound
            .push(1.01 * delta + 4.0 * f64::EPSILON * (value.abs() + m.abs() + 1.0));
        for (j, &v) in l.iter().enumerate() {
            let p = (v - m).exp() / s;
            let h = if j == *t as usize { 1.0 } else { 0.0 };
            let g = (p - h) * scale;
            let e_p = (6.0 + 5.0 * (v - m).abs()) * U + delta + 2.0 * U;
            grad.value.push(g);
            grad.bound
                .push(scale * (1.01 * p * e_p + U * (p - h).abs()) * (1.0 + U) + 2.0 * U * g.abs());
        }
    }
    (loss, grad)
}
