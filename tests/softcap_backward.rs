//! The backward of soft-capped logits (Gemma 2's `final_logit_softcapping`, issue 25):
//! `ParallelLmHead::capped_logits_async` and `backward` of a head with a cap, against an
//! f64 reference carrying a bound propagated through the kernels' operations
//! (tests/common/bounds.rs): the capped logits, dL/dX and dL/dW at tp 1-4 with uneven
//! vocabulary shards, on both kinds of group; the reference against central differences;
//! a Gemma-2-like training step (cross-entropy of capped logits) whose loss falls.

mod common;

use common::attention::{exact, f32s, project, tn};
use common::bounds::{sum, E};
use common::groups;
use wgpu_tp::nn::{vocab_parallel_cross_entropy, ParallelLmHead};
use wgpu_tp::reference::Rng;
use wgpu_tp::DistTensor;

const TOKENS: usize = 5;
const HIDDEN: usize = 16;
const VOCAB: usize = 23;
/// Low enough that the cap bends most logits (they reach about 3 times it).
const CAP: f32 = 1.5;

struct Case {
    x: Vec<f64>,
    w: Vec<f64>,
    d: Vec<f64>,
}

struct Want {
    capped: Vec<E>,
    dx: Vec<E>,
    dw: Vec<E>,
}

fn reference(c: &Case) -> Want {
    let x = exact(&c.x);
    let w = exact(&c.w);
    let raw = project(&x, TOKENS, HIDDEN, &w, VOCAB, None);
    let cap = E::exact(f64::from(CAP));
    let one = E::exact(1.0);
    let (mut capped, mut d_raw) = (Vec::new(), Vec::new());
    for (r, &d) in raw.iter().zip(&c.d) {
        let t = r.div(cap).tanh();
        capped.push(t.mul(cap));
        d_raw.push(E::exact(d).mul(one.sub(t.mul(t))));
    }
    let mut dx = Vec::new();
    for t in 0..TOKENS {
        for k in 0..HIDDEN {
            let terms: Vec<E> = (0..VOCAB)
                .map(|v| d_raw[t * VOCAB + v].mul(w[v * HIDDEN + k]))
                .collect();
            dx.push(sum(&terms));
        }
    }
    Want {
        capped,
        dx,
        dw: tn(&d_raw, &x, TOKENS, VOCAB, HIDDEN),
    }
}

fn case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    Case {
        x: to64(rng.normal(TOKENS * HIDDEN)),
        w: to64(rng.xavier(VOCAB * HIDDEN, HIDDEN, VOCAB))
            .iter()
            .map(|v| v * 4.0)
            .collect(),
        d: to64(rng.normal(TOKENS * VOCAB)),
    }
}

fn head(g: &wgpu_tp::Group, c: &Case) -> ParallelLmHead {
    let w = f32s(&c.w);
    ParallelLmHead::from_rows(g, VOCAB, HIDDEN, |r| {
        Ok(w[r.start * HIDDEN..r.end * HIDDEN].to_vec())
    })
    .unwrap()
    .with_softcap(CAP)
    .unwrap()
}

fn within(want: &[E], got: &[f32], ctx: &str) {
    assert_eq!(want.len(), got.len(), "{ctx}");
    for (i, (w, &g)) in want.iter().zip(got).enumerate() {
        let d = (f64::from(g) - w.v).abs();
        assert!(
            d <= w.e,
            "{ctx}[{i}]: {g} against {} (bound {:.3e})",
            w.v,
            w.e
        );
    }
}

/// The capped logits and both gradients within the bound at tp 1-4 (23 ids: uneven).
#[test]
fn a_soft_capped_heads_backward_is_within_the_f64_bound_at_tp_1_to_4() {
    let c = case(280);
    let want = reference(&c);
    for tp in 1..=4 {
        for (kind, g) in groups(tp).into_iter().enumerate() {
            let ctx = format!("tp {tp}, group kind {kind}");
            let h = head(&g, &c);
            let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
            let capped = pollster::block_on(h.capped_logits_async(&x)).unwrap();
            within(
                &want.capped,
                &capped.to_host().unwrap(),
                &format!("{ctx}: capped"),
            );
            let d = DistTensor::shard(&g, &f32s(&c.d), [TOKENS, VOCAB], 1).unwrap();
            let grads = h.backward(&x, &d).unwrap();
            within(
                &want.dx,
                &grads.input.to_host().unwrap(),
                &format!("{ctx}: dX"),
            );
            within(
                &want.dw,
                &grads.weight.to_host().unwrap(),
                &format!("{ctx}: dW"),
            );
        }
    }
}

/// The reference's gradients are central differences of `Σ d ⊙ capped` (relative step
/// 1e-6; f64 gives ~1e-9 of agreement).
#[test]
fn the_capped_reference_is_central_differences_of_its_forward() {
    let c = case(281);
    let want = reference(&c);
    let loss = |c: &Case| -> f64 {
        reference(c)
            .capped
            .iter()
            .zip(&c.d)
            .map(|(y, d)| y.v * d)
            .sum()
    };
    for (what, grad, field) in [("x", &want.dx, 0), ("w", &want.dw, 1)] {
        let n = grad.len();
        for i in [0, n / 3, n - 1] {
            let h = 1e-6;
            let nudge = |s: f64| {
                let mut c2 = Case {
                    x: c.x.clone(),
                    w: c.w.clone(),
                    d: c.d.clone(),
                };
                if field == 0 {
                    c2.x[i] += s;
                } else {
                    c2.w[i] += s;
                }
                c2
            };
            let fd = (loss(&nudge(h)) - loss(&nudge(-h))) / (2.0 * h);
            let g = grad[i].v;
            assert!(
                (fd - g).abs() <= 1e-6 * (1.0 + g.abs()),
                "d{what}[{i}]: {fd} vs {g}"
            );
        }
    }
}

/// Trained by the cross-entropy of its capped logits (the head's weight alone, plain
/// gradient descent), the head's loss falls at tp 1-3.
#[test]
fn a_soft_capped_head_trains() {
    let c = case(282);
    let targets: Vec<Option<u32>> = (0..TOKENS).map(|i| Some((i * 7 % VOCAB) as u32)).collect();
    for tp in 1..=3 {
        for g in groups(tp) {
            let h = head(&g, &c);
            let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
            let mut opt = wgpu_tp::nn::AdamW::new(
                &[h.weight()],
                wgpu_tp::nn::AdamWConfig::default().lr(0.05),
            )
            .unwrap();
            let mut losses = Vec::new();
            for _ in 0..20 {
                let logits = pollster::block_on(h.capped_logits_async(&x)).unwrap();
                let ce = vocab_parallel_cross_entropy(&logits, &targets).unwrap();
                losses.push(ce.loss);
                let grads = h.backward(&x, &ce.grad).unwrap();
                opt.step(&[h.weight()], &[&grads.weight], 1.0).unwrap();
            }
            assert!(losses[19] < 0.5 * losses[0], "tp {tp}: {losses:?}");
        }
    }
}
