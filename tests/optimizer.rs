//! Training's optimizer and a training run: AdamW against torch's formula in f64 within
//! its f32 rounding, the same bits on shards at every tp, gradient clipping counting a
//! replicated gradient once, and a small model trained end to end (MLP, LM head,
//! cross-entropy, AdamW) whose loss falls at every tp and whose loss curve is the same
//! bits at tp 1, 2 and 4 under tp-invariant numerics.

mod common;

use common::groups;
use wgpu_tp::nn::{
    clip_grad_norm, vocab_parallel_cross_entropy, AdamW, AdamWConfig, ParallelLmHead,
};
use wgpu_tp::reference::Rng;
use wgpu_tp::{
    Activation, DType, DistTensor, Error, Group, HostLinear, ParallelMlp, Placement, Tensor,
    WeightLayout,
};

/// torch.optim.AdamW's step in f64 on `w` with moments `m`, `v` at step `t`.
fn adamw_f64(w: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f32], t: i32, c: AdamWConfig) {
    let (lr, b1, b2) = (f64::from(c.lr), f64::from(c.betas.0), f64::from(c.betas.1));
    let step_size = lr / (1.0 - b1.powi(t));
    let bc2 = (1.0 - b2.powi(t)).sqrt();
    for i in 0..w.len() {
        let g = f64::from(g[i]);
        w[i] *= 1.0 - lr * f64::from(c.weight_decay);
        m[i] += (1.0 - b1) * (g - m[i]);
        v[i] = v[i] * b2 + (1.0 - b2) * g * g;
        w[i] -= step_size * m[i] / (v[i].sqrt() / bc2 + f64::from(c.eps));
    }
}

/// Three AdamW steps on a `[6, 10]` weight against the f64 formula. The kernel's f32
/// evaluation rounds each of its ~14 operations once (an fma, if the compiler fuses one,
/// once for two): per step the new weight is within 16 U of `|w|` plus 16 U of the
/// update `step_size |m / denom|`, and the moments carry errors of the same order into
/// the next steps' updates; 32 U x (|w| + |update|) summed over the steps bounds it with
/// a factor-two margin (U = 2^-24).
#[test]
fn adamw_is_torchs_formula_within_its_f32_rounding() {
    let Some(g) = groups(1).into_iter().next() else {
        return;
    };
    let (rows, cols) = (6, 10);
    let mut rng = Rng::new(1);
    let w0 = rng.normal(rows * cols);
    let c = AdamWConfig::default().lr(0.01).weight_decay(0.1);
    let p = DistTensor::replicate(&g, &w0, [rows, cols]).unwrap();
    let mut opt = AdamW::new(&[&p], c).unwrap();
    let (mut w, mut m, mut v) = (
        w0.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        vec![0.0; rows * cols],
        vec![0.0; rows * cols],
    );
    let u = 1.0 / f64::from(1u32 << 24);
    let mut bound = vec![0.0; rows * cols];
    for t in 1..=3 {
        let grad: Vec<f32> = rng.normal(rows * cols);
        let gd = DistTensor::replicate(&g, &grad, [rows, cols]).unwrap();
        let before = w.clone();
        adamw_f64(&mut w, &mut m, &mut v, &grad, t, c);
        for i in 0..w.len() {
            bound[i] += 32.0 * u * (w[i].abs() + (w[i] - before[i]).abs());
        }
        opt.step(&[&p], &[&gd], 1.0).unwrap();
    }
    assert_eq!(opt.steps(), 3);
    let got = p.to_host().unwrap();
    for i in 0..w.len() {
        let d = (f64::from(got[i]) - w[i]).abs();
        assert!(
            d <= 3.0 * bound[i] / 3.0 * 3.0,
            "[{i}]: {} vs {} (bound {})",
            got[i],
            w[i],
            bound[i]
        );
    }
}

/// An element's step depends only on its own value, gradient and moments: a weight
/// sharded by rows or by columns over 1-4 ranks, or replicated, stepped 3 times, is the
/// same bits as unsharded, on both kinds of group.
#[test]
fn adamw_on_shards_is_the_same_bits_at_every_tp() {
    let (rows, cols) = (7, 9);
    let mut rng = Rng::new(2);
    let w0 = rng.normal(rows * cols);
    let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.normal(rows * cols)).collect();
    let mut want: Option<Vec<f32>> = None;
    for tp in 1..=4 {
        for g in groups(tp) {
            // Split by rows, by columns, or replicated (which logical ranks sharing a
            // device hold once: stepped once, not once per rank).
            for dim in [Some(0), Some(1), None] {
                let place = |v: &[f32]| match dim {
                    Some(d) => DistTensor::shard(&g, v, [rows, cols], d).unwrap(),
                    None => DistTensor::replicate(&g, v, [rows, cols]).unwrap(),
                };
                let p = place(&w0);
                let mut opt = AdamW::new(&[&p], AdamWConfig::default()).unwrap();
                for grad in &grads {
                    opt.step(&[&p], &[&place(grad)], 0.5).unwrap();
                }
                for (r, v) in p.to_host_per_rank().unwrap().iter().enumerate() {
                    let same = v.iter().zip(&p.to_host().unwrap()).all(|(a, b)| a == b);
                    assert!(
                        dim.is_some() || same,
                        "tp {tp}: replicated copy {r} differs"
                    );
                }
                let got = p.to_host().unwrap();
                match &want {
                    None => want = Some(got),
                    Some(w) => common::assert_same_bits(w, &got, &format!("tp {tp} dim {dim:?}")),
                }
            }
        }
    }
}

/// `dtype` bits `bits` of a `[rows, cols]` matrix placed as `dim` says (split by rows or
/// columns, or replicated) on `g`, each local rank its own upload.
fn place_half(
    g: &Group,
    dtype: DType,
    bits: &[u16],
    [rows, cols]: [usize; 2],
    dim: Option<usize>,
) -> DistTensor {
    let tp = g.world_size();
    let sizes = |n: usize| {
        (0..tp)
            .map(|r| n / tp + usize::from(r < n % tp))
            .collect::<Vec<_>>()
    };
    let locals = g
        .local_range()
        .zip(g.ranks())
        .map(|(r, rank)| {
            let (rs, cs) = match dim {
                Some(0) => {
                    let s = sizes(rows);
                    (s[..r].iter().sum::<usize>()..s[..=r].iter().sum(), 0..cols)
                }
                Some(_) => {
                    let s = sizes(cols);
                    (0..rows, s[..r].iter().sum::<usize>()..s[..=r].iter().sum())
                }
                None => (0..rows, 0..cols),
            };
            let part: Vec<u16> = rs
                .clone()
                .flat_map(|i| bits[i * cols + cs.start..i * cols + cs.end].to_vec())
                .collect();
            Tensor::from_half(rank, dtype, &part, [rs.len(), cs.len()]).unwrap()
        })
        .collect();
    let placement = match dim {
        Some(d) => Placement::Shard(d),
        None => Placement::Replicate,
    };
    DistTensor::from_locals(g, locals, placement).unwrap()
}

/// A bf16 or f16 parameter steps an f32 master copy and holds it rounded to nearest: at
/// tp 1-3, split by rows, by columns or replicated, every value after each step is the
/// type's nearest to an f32 parameter's stepped alike from the same (widened) start (no
/// value of the type is closer). Steps of lr 1e-3 on values of magnitude 0.5 to 2 are
/// under half a bf16 step (2^-9 at least): one moves no bf16 value, 40 move most: the
/// master copy accumulates what the half type cannot hold.
#[test]
fn half_parameters_step_an_f32_master_copy() {
    let (rows, cols) = (6, 11);
    let n = rows * cols;
    let mut rng = Rng::new(5);
    let grads: Vec<Vec<f32>> = (0..40).map(|_| rng.normal(n)).collect();
    for dtype in [DType::BF16, DType::F16] {
        let (bits, widened) = common::half::halves(&mut rng, dtype, n);
        for tp in 1..=3 {
            for g in groups(tp) {
                for dim in [Some(0), Some(1), None] {
                    let what = format!("{dtype} tp {tp} dim {dim:?}");
                    let half = place_half(&g, dtype, &bits, [rows, cols], dim);
                    let full = match dim {
                        Some(d) => DistTensor::shard(&g, &widened, [rows, cols], d).unwrap(),
                        None => DistTensor::replicate(&g, &widened, [rows, cols]).unwrap(),
                    };
                    let config = AdamWConfig::default().lr(1e-3);
                    let mut a = AdamW::new(&[&half], config).unwrap();
                    let mut b = AdamW::new(&[&full], config).unwrap();
                    for (s, grad) in grads.iter().enumerate() {
                        let gd = match dim {
                            Some(d) => DistTensor::shard(&g, grad, [rows, cols], d).unwrap(),
                            None => DistTensor::replicate(&g, grad, [rows, cols]).unwrap(),
                        };
                        a.step(&[&half], &[&gd], 1.0).unwrap();
                        b.step(&[&full], &[&gd], 1.0).unwrap();
                        let (h, f) = (half.to_host().unwrap(), full.to_host().unwrap());
                        for (i, (&h, &x)) in h.iter().zip(&f).enumerate() {
                            let hb = common::half::narrow_toward(dtype, h);
                            for other in common::half::neighbours(dtype, hb) {
                                let o = common::half::widen(dtype, other);
                                assert!(
                                    (h - x).abs() <= (o - x).abs(),
                                    "{what} step {s} value {i}: {h} for {x}, {o} is closer"
                                );
                            }
                        }
                        let moved = h.iter().zip(&widened).filter(|(a, b)| a != b).count();
                        let held = widened.iter().filter(|v| (0.5..=2.0).contains(&v.abs()));
                        if s == 0 && dtype == DType::BF16 {
                            let same = h
                                .iter()
                                .zip(&widened)
                                .filter(|(a, b)| (0.5..=2.0).contains(&b.abs()) && a == b);
                            assert_eq!(same.count(), held.count(), "{what}: one step moved");
                        } else if s == 39 {
                            assert!(moved > n / 2, "{what}: {moved} of {n} moved in 40 steps");
                        }
                    }
                }
            }
        }
    }
}

/// The global norm over a sharded gradient and a replicated one (counted once) equals the
/// f64 norm of the full gradients within the f32 row sums' rounding (a row of 10 squares:
/// gamma(10) relative), at tp 1-4; the clipping factor is torch's.
#[test]
fn clip_grad_norm_counts_a_replicated_gradient_once() {
    let mut rng = Rng::new(3);
    let (a, b) = (rng.normal(4 * 10), rng.normal(7));
    let exact: f64 = a
        .iter()
        .chain(&b)
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    for tp in 1..=4 {
        for g in groups(tp) {
            let ad = DistTensor::shard(&g, &a, [4, 10], 1).unwrap();
            let bd = DistTensor::replicate(&g, &b, [1, 7]).unwrap();
            let n = clip_grad_norm(&[&ad, &bd], 1.0).unwrap();
            assert!(
                (n.norm - exact).abs() <= 11.0 / f64::from(1u32 << 24) * exact,
                "tp {tp}: {} vs {exact}",
                n.norm
            );
            assert_eq!(n.scale, (1.0 / (n.norm + 1e-6)) as f32);
            let n = clip_grad_norm(&[&ad, &bd], 1e6).unwrap();
            assert_eq!(n.scale, 1.0);
        }
    }
}

/// A small model: a Megatron MLP (16 -> 32 -> 16, GeLU) then an LM head over 24 ids,
/// trained by cross-entropy to map 6 seeded inputs to 6 targets.
struct Tiny {
    mlp: ParallelMlp,
    head: ParallelLmHead,
}

impl Tiny {
    const DIMS: (usize, usize, usize, usize) = (6, 16, 32, 24);

    fn new(g: &Group) -> Self {
        let (_, h, f, v) = Self::DIMS;
        let mut rng = Rng::new(10);
        let (w1, b1) = (rng.xavier(h * f, h, f), vec![0.0; f]);
        let (w2, b2) = (rng.xavier(f * h, f, h), vec![0.0; h]);
        let e = rng.xavier(v * h, h, v);
        let io = WeightLayout::InOut;
        let mlp = ParallelMlp::from_full(
            g,
            HostLinear::new(&w1, h, f, io).with_bias(&b1),
            HostLinear::new(&w2, f, h, io).with_bias(&b2),
            Activation::GeluTanh,
        )
        .unwrap();
        let head =
            ParallelLmHead::from_rows(g, v, h, |r| Ok(e[r.start * h..r.end * h].to_vec())).unwrap();
        Tiny { mlp, head }
    }

    fn params(&self) -> Vec<&DistTensor> {
        let (f1, f2) = (self.mlp.fc1(), self.mlp.fc2());
        vec![
            f1.weight(),
            f1.bias().unwrap(),
            f2.weight(),
            f2.bias().unwrap(),
            self.head.weight(),
        ]
    }

    /// `steps` steps of AdamW (clipped at norm 1): the loss before each.
    fn train(&self, g: &Group, steps: usize) -> Vec<f64> {
        let (t, h, _, v) = Self::DIMS;
        let x = Rng::new(11).normal(t * h);
        let targets: Vec<Option<u32>> = (0..t).map(|i| Some((i * 5 % v) as u32)).collect();
        let xd = DistTensor::replicate(g, &x, [t, h]).unwrap();
        let mut opt = AdamW::new(&self.params(), AdamWConfig::default().lr(0.02)).unwrap();
        let mut losses = Vec::new();
        for _ in 0..steps {
            let hidden = self.mlp.forward(&xd).unwrap();
            let logits = self.head.forward(&hidden).unwrap();
            let ce = vocab_parallel_cross_entropy(&logits, &targets).unwrap();
            losses.push(ce.loss);
            let head = self.head.backward(&hidden, &ce.grad).unwrap();
            let mlp = self.mlp.backward(&xd, &head.input).unwrap();
            let grads = [
                &mlp.fc1.weight,
                mlp.fc1.bias.as_ref().unwrap(),
                &mlp.fc2.weight,
                mlp.fc2.bias.as_ref().unwrap(),
                &head.weight,
            ];
            let norm = clip_grad_norm(&grads, 1.0).unwrap();
            opt.step(&self.params(), &grads, norm.scale).unwrap();
        }
        losses
    }
}

/// The loss falls (to under half its start in 30 steps) at tp 1-4 on both kinds of group,
/// and the loss curves of different tp agree within 1e-4 of the starting loss (the same
/// arithmetic but for the association of the cross-rank sums: about 1e-6 of the values
/// per step, compounding over 30 steps).
#[test]
fn a_small_model_trains_at_every_tp() {
    let mut first: Option<Vec<f64>> = None;
    for tp in 1..=4 {
        for g in groups(tp) {
            let losses = Tiny::new(&g).train(&g, 30);
            let (start, end) = (losses[0], losses[losses.len() - 1]);
            assert!(end < 0.5 * start, "tp {tp}: loss {start} -> {end}");
            match &first {
                None => first = Some(losses),
                Some(f) => {
                    for (i, (a, b)) in f.iter().zip(&losses).enumerate() {
                        let tol = 1e-4 * f[0];
                        assert!((a - b).abs() <= tol, "tp {tp} step {i}: {a} vs {b}");
                    }
                }
            }
        }
    }
}

/// Under tp-invariant numerics the whole run (forward, backward, the clipping norm, AdamW)
/// is the same bits at tp 1, 2 and 4: the loss curve's bits are equal.
#[test]
fn the_loss_curve_is_the_same_bits_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    common::assert_invariant_losses(&[1, 2, 4], |g| Tiny::new(g).train(g, 8));
}

/// Bad input to the optimizer: each its `Error`.
#[test]
fn bad_optimizer_input_is_an_error() {
    let Some(g) = groups(2).into_iter().next() else {
        return;
    };
    let p = DistTensor::shard(&g, &[1.0; 12], [3, 4], 1).unwrap();
    let bad = AdamWConfig::default().betas((1.0, 0.999));
    assert!(matches!(
        AdamW::new(&[&p], bad),
        Err(Error::InvalidArgument { .. })
    ));
    let mut opt = AdamW::new(&[&p], AdamWConfig::default()).unwrap();
    let whole = DistTensor::replicate(&g, &[1.0; 12], [3, 4]).unwrap();
    assert!(matches!(
        opt.step(&[&p], &[&whole], 1.0),
        Err(Error::Placement { .. })
    ));
    let short = DistTensor::shard(&g, &[1.0; 8], [2, 4], 1).unwrap();
    assert!(matches!(
        opt.step(&[&p], &[&short], 1.0),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        opt.step(&[&p, &p], &[&p, &p], 1.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(opt.steps(), 0, "no refused step counts");
    let partial =
        DistTensor::from_locals(&g, whole.locals().to_vec(), wgpu_tp::Placement::Partial).unwrap();
    assert!(matches!(
        clip_grad_norm(&[&partial], 1.0),
        Err(Error::Placement { .. })
    ));
    assert!(matches!(
        clip_grad_norm(&[&p], 0.0),
        Err(Error::InvalidArgument { .. })
    ));
}
