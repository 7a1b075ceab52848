//! The per-layer knobs of the families after Llama (issue 22) on the tensor-parallel
//! layers, against an f64 host reference carrying a rigorous bound on the f32 result
//! (`wgpu_tp::reference`'s, propagated through each step below): `ParallelAttention` with
//! a sliding window, per-head query/key RMSNorm, another logit scale and soft-capping
//! (`AttentionOptions`), and `GatedMlp` with GeGLU (`GatedActivation::GeluTanh`), at tp
//! 1, 2, 3 and 4 (6 query heads over 2 key/value heads: uneven at tp 4, the key/value
//! heads replicated past tp 2) on both kinds of group. The attention runs a prefill longer
//! than the window, then decode steps from the cache, and a fresh prefill of the whole
//! sequence: each within the bound of the same reference rows. And transformers' own
//! layers (Gemma 2's and Gemma 3's sliding attention, Qwen3's, Gemma 2's MLP; made by
//! scripts/make_attention_fixtures.py into tests/fixtures/attention_options.json): their
//! f32 outputs within the same bound of the reference, so the reference's semantics are
//! theirs, and ours within it too.

mod common;

use wgpu_tp::nn::{
    AttentionOptions, AttentionShape, GatedActivation, GatedMlp, HeadWeights, ParallelAttention,
    QkNorm, RopeScaling, Rotary,
};
use wgpu_tp::reference::{self, gamma, Approx, Rng, F32_UNIT_ROUNDOFF as U};
use wgpu_tp::{DistTensor, Error, Group, WeightLayout};

const HIDDEN: usize = 12;
const HEADS: usize = 6;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;
const THETA: f64 = 10_000.0;
/// Positions: a prefill of `PREFILL` (longer than every window below), then one at a time.
const POSITIONS: usize = 10;
const PREFILL: usize = 7;

/// The full weights, `[out, in]` row-major (`WeightLayout::OutIn`).
struct Weights {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
}

/// Rows `r` of an `[out, cols]` matrix.
fn rows(w: &[f32], r: std::ops::Range<usize>, cols: usize) -> Vec<f32> {
    w[r.start * cols..r.end * cols].to_vec()
}

/// Columns `c` of an `[rows, cols]` matrix, row-major `[rows, c.len()]`.
fn columns(w: &[f32], n_rows: usize, cols: usize, c: std::ops::Range<usize>) -> Vec<f32> {
    (0..n_rows)
        .flat_map(|r| w[r * cols + c.start..r * cols + c.end].to_vec())
        .collect()
}

/// The rotary table as `Rotary::new` makes it (angles `p * inv_freq` in f32, cosine and
/// sine rounded from f64): the reference turns by the very values the GPU reads.
fn rotary_table(positions: usize) -> Vec<f32> {
    let inv = Rotary::inverse_frequencies(HEAD_DIM, THETA, &RopeScaling::None);
    let mut table = Vec::new();
    for p in 0..positions {
        let angles: Vec<f64> = inv.iter().map(|f| f64::from(p as f32 * f)).collect();
        table.extend(angles.iter().map(|a| a.cos() as f32));
        table.extend(angles.iter().map(|a| a.sin() as f32));
    }
    table
}

/// Head `h` of row `t` of `a` (`[rows, cols]`): values and bounds.
fn head(a: &Approx, cols: usize, t: usize, h: usize) -> (Vec<f64>, Vec<f64>) {
    let at = t * cols + h * HEAD_DIM;
    (
        a.value[at..at + HEAD_DIM].to_vec(),
        a.bound[at..at + HEAD_DIM].to_vec(),
    )
}

/// RMSNorm of one head with weight `w`, and the bound: to first order the error `dx`
/// moves `x / rms` by `dx / rms - x (x . dx) / (n rms^3)`, at most `(|dx_e| + |x_e|
/// ||dx|| / (sqrt(n) rms)) / rms` since `||x|| / sqrt(n) <= rms`; doubled for the higher
/// orders (`||dx|| / ||x||` is ~1e-6 here); then the kernel's own γ(hd + 6) (as
/// rms_norm's: the sum of squares, mean, epsilon, root, division and two products).
fn rms_head((x, dx): (Vec<f64>, Vec<f64>), w: &[f32], eps: f32) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() as f64;
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / n + f64::from(eps)).sqrt();
    let dnorm = dx.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut y = Vec::new();
    let mut dy = Vec::new();
    for e in 0..x.len() {
        let we = f64::from(w[e]);
        let ye = we * x[e] / rms;
        let carried = we.abs() * (dx[e] + x[e].abs() * dnorm / (n.sqrt() * rms)) / rms;
        y.push(ye);
        dy.push(2.0 * carried + gamma(HEAD_DIM + 6) * ye.abs());
    }
    (y, dy)
}

/// One head turned at `pos` (rotate-half): the error carried by the cosine and sine, and
/// two products and a sum of the widened operands.
fn turn((x, dx): (Vec<f64>, Vec<f64>), table: &[f32], pos: usize) -> (Vec<f64>, Vec<f64>) {
    let half = HEAD_DIM / 2;
    let (mut y, mut dy) = (vec![0.0; HEAD_DIM], vec![0.0; HEAD_DIM]);
    for j in 0..half {
        let c = f64::from(table[pos * HEAD_DIM + j]);
        let s = f64::from(table[pos * HEAD_DIM + half + j]);
        let (x1, x2) = (x[j], x[j + half]);
        let (w1, w2) = (x1.abs() + dx[j], x2.abs() + dx[j + half]);
        y[j] = x1 * c - x2 * s;
        y[j + half] = x2 * c + x1 * s;
        // γ(4): two roundings of ours, and two for a cosine and sine rounded otherwise
        // (transformers computes them in f32, within an ulp; the test holds its outputs
        // to this bound too).
        dy[j] = c.abs() * dx[j] + s.abs() * dx[j + half] + gamma(4) * (w1 * c.abs() + w2 * s.abs());
        dy[j + half] =
            c.abs() * dx[j + half] + s.abs() * dx[j] + gamma(4) * (w2 * c.abs() + w1 * s.abs());
    }
    (y, dy)
}

/// WGSL's tanh, as accurate as sinh / cosh from exponentials of 3 + 2|y| ulp: an absolute
/// bound of (8 + 4|y|) ulps of 1 (src/ops/model/tests.rs derives it); |y| clamped at 10.
fn tanh_err(y: f64) -> f64 {
    (8.0 + 4.0 * y.abs().min(10.0)) * 2.0 * U
}

/// The f64 attention layer of `x: [t, HIDDEN]` (positions 0..t) with `options` and the
/// rotary `table` (if any), with its bound.
fn reference_attention(
    x: &[f32],
    t: usize,
    w: &Weights,
    options: &AttentionOptions,
    table: Option<&[f32]>,
) -> Approx {
    let layout = WeightLayout::OutIn;
    let xa = Approx::exact(x);
    let (qc, kc) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let q = reference::linear(&xa, [t, HIDDEN], &w.q, qc, layout, None).unwrap();
    let k = reference::linear(&xa, [t, HIDDEN], &w.k, kc, layout, None).unwrap();
    let v = reference::linear(&xa, [t, HIDDEN], &w.v, kc, layout, None).unwrap();
    // A query or key head as attention reads it: normed, then turned at its position.
    let prepare = |a: &Approx, cols: usize, row: usize, h: usize, is_q: bool| {
        let mut hv = head(a, cols, row, h);
        if let Some(n) = &options.qk_norm {
            hv = rms_head(hv, if is_q { &n.q } else { &n.k }, n.eps);
        }
        if let Some(table) = table {
            hv = turn(hv, table, row);
        }
        hv
    };
    let scale = f64::from(options.scale.unwrap_or(1.0 / (HEAD_DIM as f32).sqrt()));
    let group = HEADS / KV_HEADS;
    let mut attn = Approx {
        value: vec![0.0; t * qc],
        bound: vec![0.0; t * qc],
    };
    for row in 0..t {
        // Hugging Face's sliding window: key j is seen from row i when i - window < j <= i.
        let first = options.window.map_or(0, |w| (row + 1).saturating_sub(w));
        for h in 0..HEADS {
            let kvh = h / group;
            let (qv, dq) = prepare(&q, qc, row, h, true);
            let (mut logits, mut err) = (Vec::new(), 0.0f64);
            for j in first..=row {
                let (kv, dk) = prepare(&k, kc, j, kvh, false);
                let dot: f64 = qv.iter().zip(&kv).map(|(a, b)| a * b).sum();
                // The dot and the scale round γ(hd + 1) of the widened products; the
                // operands' own errors carry Σ (|dq| |k| + |q| |dk| + |dq| |dk|).
                let mag: f64 = (0..HEAD_DIM)
                    .map(|e| (qv[e].abs() + dq[e]) * (kv[e].abs() + dk[e]))
                    .sum();
                let carried: f64 = (0..HEAD_DIM)
                    .map(|e| dq[e] * kv[e].abs() + qv[e].abs() * dk[e] + dq[e] * dk[e])
                    .sum();
                let s = dot * scale;
                let es = (gamma(HEAD_DIM + 1) * mag + carried) * scale;
                match options.softcap {
                    None => {
                        logits.push(s);
                        err = err.max(es);
                    }
                    Some(cap) => {
                        // Slope <= 1 in s; the division rounds u |s| (after the product by
                        // cap), tanh errs tanh_err times cap, the product u |logit|.
                        let cap = f64::from(cap);
                        let l = (s / cap).tanh() * cap;
                        logits.push(l);
                        err = err.max(es + U * s.abs() + cap * tanh_err(s / cap) + U * l.abs());
                    }
                }
            }
            let m = logits.iter().copied().fold(f64::MIN, f64::max);
            let spread = logits.iter().map(|l| m - l).fold(0.0, f64::max);
            let weights: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let total: f64 = weights.iter().sum();
            let values: Vec<(Vec<f64>, Vec<f64>)> =
                (first..=row).map(|j| head(&v, kc, j, kvh)).collect();
            for e in 0..HEAD_DIM {
                let at = row * qc + h * HEAD_DIM + e;
                attn.value[at] = weights
                    .iter()
                    .zip(&values)
                    .map(|(w, (val, _))| w * val[e])
                    .sum::<f64>()
                    / total;
                let vmax = values
                    .iter()
                    .map(|(val, dv)| val[e].abs() + dv[e])
                    .fold(0.0, f64::max);
                let dv = values.iter().map(|(_, dv)| dv[e]).fold(0.0, f64::max);
                // Each weight is off relatively by e^(2 err) - 1 from the logits plus exp's
                // 3 + 2|x| ulp; numerator and denominator each carry it; the position-
                // ordered sums add γ(positions + 2); a weighted mean of the values' errors
                // is at most their largest.
                let rel = (2.0 * err).exp_m1() + (3.0 + 2.0 * spread) * 2.0 * U;
                let n = row + 1 - first;
                attn.bound[at] = (2.0 * rel + gamma(n + 3)) * vmax + dv;
            }
        }
    }
    reference::linear(&attn, [t, qc], &w.o, HIDDEN, layout, None).unwrap()
}

/// Rows `r` of `a: [*, cols]`.
fn approx_rows(a: &Approx, r: std::ops::Range<usize>, cols: usize) -> Approx {
    Approx {
        value: a.value[r.start * cols..r.end * cols].to_vec(),
        bound: a.bound[r.start * cols..r.end * cols].to_vec(),
    }
}

fn layer(
    group: &Group,
    w: &Weights,
    rotary: bool,
    options: &AttentionOptions,
) -> ParallelAttention {
    let shape = AttentionShape {
        hidden: HIDDEN,
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        o_block: 1,
    };
    let rotary = rotary.then(|| Rotary::new(group, HEAD_DIM, POSITIONS, THETA).unwrap());
    let hd = HEAD_DIM;
    ParallelAttention::new(
        group,
        shape,
        WeightLayout::OutIn,
        rotary,
        |qh, kvh| {
            Ok(HeadWeights {
                q: rows(&w.q, qh.start * hd..qh.end * hd, HIDDEN).into(),
                k: rows(&w.k, kvh.start * hd..kvh.end * hd, HIDDEN).into(),
                v: rows(&w.v, kvh.start * hd..kvh.end * hd, HIDDEN).into(),
                bias: None,
            })
        },
        |c| Ok(columns(&w.o, HIDDEN, HEADS * hd, c)),
        None,
    )
    .unwrap()
    .with_options(options.clone())
    .unwrap()
}

/// The layer with `options` at tp 1-4 on both kinds of group against `want` (the
/// reference of `x`'s `POSITIONS` rows): a prefill of `PREFILL`, decode steps to the end,
/// and a fresh prefill of all; decoding and recomputing agree within the bound too. The
/// largest difference and the groups run.
fn check_layer(
    name: &str,
    x: &[f32],
    w: &Weights,
    rotary: bool,
    options: &AttentionOptions,
    want: &Approx,
) -> (f64, usize) {
    let (mut worst, mut ran) = (0.0f64, 0);
    for tp in [1, 2, 3, 4] {
        for (kind, group) in common::groups(tp).into_iter().enumerate() {
            let ctx = format!("{name}, tp {tp}, group kind {kind}");
            let attention = layer(&group, w, rotary, options);
            assert_eq!(attention.options(), options);
            let check = |got: &[f32], r: std::ops::Range<usize>, what: &str| {
                let c = approx_rows(want, r.clone(), HIDDEN).check(got);
                assert!(c.pass, "{ctx}, {what} rows {r:?}: {c:?}");
                c.max_abs_diff
            };
            let mut cache = attention.new_cache(POSITIONS).unwrap();
            let prefill =
                DistTensor::replicate(&group, &x[..PREFILL * HIDDEN], [PREFILL, HIDDEN]).unwrap();
            let got = attention
                .forward(&prefill, &mut cache)
                .unwrap()
                .to_host()
                .unwrap();
            worst = worst.max(check(&got, 0..PREFILL, "prefill"));
            let mut decoded = Vec::new();
            for p in PREFILL..POSITIONS {
                let one = &x[p * HIDDEN..(p + 1) * HIDDEN];
                let one = DistTensor::replicate(&group, one, [1, HIDDEN]).unwrap();
                let got = attention
                    .forward(&one, &mut cache)
                    .unwrap()
                    .to_host()
                    .unwrap();
                worst = worst.max(check(&got, p..p + 1, "decode"));
                decoded.extend(got);
            }
            assert_eq!(cache.len(), POSITIONS);
            let mut fresh = attention.new_cache(POSITIONS).unwrap();
            let all = DistTensor::replicate(&group, x, [POSITIONS, HIDDEN]).unwrap();
            let got = attention
                .forward(&all, &mut fresh)
                .unwrap()
                .to_host()
                .unwrap();
            worst = worst.max(check(&got, 0..POSITIONS, "recomputed"));
            // Decoding from the cache equals recomputing: the same kernels over the same
            // cache rows; only the projections' grouping of rows may differ, so within the
            // reference's bound of those rows.
            let tail = approx_rows(want, PREFILL..POSITIONS, HIDDEN);
            for ((a, b), bound) in decoded
                .iter()
                .zip(&got[PREFILL * HIDDEN..])
                .zip(&tail.bound)
            {
                let d = f64::from((a - b).abs());
                assert!(d <= *bound, "{ctx}: decoded {a} vs recomputed {b}");
            }
            ran += 1;
        }
    }
    (worst, ran)
}

/// Each option alone and all together (Gemma 2's sliding layer with a query/key norm),
/// with rotary positions (and the cap once without): prefill of 7 past a window of 3 or
/// 4, 3 decode steps, and a fresh prefill of all 10, each row within its reference bound
/// at tp 1-4 on both kinds of group; decoding and recomputing agree within that bound too.
#[test]
fn attention_options_match_the_f64_layer_at_tp_1_to_4_prefill_then_decode() {
    let mut rng = Rng::new(22);
    let w = Weights {
        q: rng.normal(HEADS * HEAD_DIM * HIDDEN),
        k: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        v: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        o: rng.normal(HIDDEN * HEADS * HEAD_DIM),
    };
    // x of N(0, 1/4): the projections are ~N(0, 4), the logits (~N(0, 8) without a norm)
    // reach the caps' bend.
    let x: Vec<f32> = rng
        .normal(POSITIONS * HIDDEN)
        .iter()
        .map(|v| 0.5 * v)
        .collect();
    let norm = QkNorm {
        q: rng.normal(HEAD_DIM).iter().map(|v| 1.0 + 0.5 * v).collect(),
        k: rng.normal(HEAD_DIM).iter().map(|v| 1.0 + 0.5 * v).collect(),
        eps: 1e-6,
    };
    let cases = [
        (
            "window 3",
            true,
            AttentionOptions {
                window: Some(3),
                ..Default::default()
            },
        ),
        (
            "qk norm",
            true,
            AttentionOptions {
                qk_norm: Some(norm.clone()),
                ..Default::default()
            },
        ),
        (
            "scale 0.2, cap 2 (no rotary)",
            false,
            AttentionOptions {
                scale: Some(0.2),
                softcap: Some(2.0),
                ..Default::default()
            },
        ),
        (
            "window 4, scale 1/4, cap 3, qk norm",
            true,
            AttentionOptions {
                window: Some(4),
                scale: Some(0.25),
                softcap: Some(3.0),
                qk_norm: Some(norm),
            },
        ),
    ];
    let table = rotary_table(POSITIONS);
    let mut ran = 0;
    for (name, rotary, options) in &cases {
        let want = reference_attention(&x, POSITIONS, &w, options, rotary.then_some(&table[..]));
        // The option changes the layer: the plain reference is outside the bound.
        let plain = reference_attention(
            &x,
            POSITIONS,
            &w,
            &AttentionOptions::default(),
            rotary.then_some(&table[..]),
        );
        let moved = want
            .value
            .iter()
            .zip(&plain.value)
            .zip(&want.bound)
            .any(|((a, b), bound)| (a - b).abs() > 10.0 * bound);
        assert!(moved, "{name}: no different from the plain attention");
        let (worst, n) = check_layer(name, &x, &w, *rotary, options, &want);
        ran += n;
        let bound = want.bound.iter().copied().fold(0.0, f64::max);
        eprintln!("{name}: max |diff| {worst:.3e} (largest bound {bound:.3e})");
    }
    if common::in_ci() {
        assert_eq!(ran, cases.len() * 8, "every tp on both kinds of group");
    }
}

/// Options that cannot be are refused when given, naming what is wrong.
#[test]
fn attention_options_that_cannot_be_are_refused() {
    let Some(group) = common::group(2) else {
        return;
    };
    let mut rng = Rng::new(3);
    let w = Weights {
        q: rng.normal(HEADS * HEAD_DIM * HIDDEN),
        k: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        v: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        o: rng.normal(HIDDEN * HEADS * HEAD_DIM),
    };
    let plain = layer(&group, &w, true, &AttentionOptions::default());
    let norm = |q: usize, k: usize, eps: f32| QkNorm {
        q: vec![1.0; q],
        k: vec![1.0; k],
        eps,
    };
    let invalid = [
        AttentionOptions {
            window: Some(0),
            ..Default::default()
        },
        AttentionOptions {
            scale: Some(f32::NAN),
            ..Default::default()
        },
        AttentionOptions {
            scale: Some(0.0),
            ..Default::default()
        },
        AttentionOptions {
            softcap: Some(-30.0),
            ..Default::default()
        },
        AttentionOptions {
            softcap: Some(f32::INFINITY),
            ..Default::default()
        },
        AttentionOptions {
            qk_norm: Some(norm(HEAD_DIM, HEAD_DIM, f32::NAN)),
            ..Default::default()
        },
        AttentionOptions {
            qk_norm: Some(norm(HEAD_DIM, HEAD_DIM, -1e-6)),
            ..Default::default()
        },
    ];
    for options in invalid {
        let e = plain.clone().with_options(options.clone()).map(drop);
        assert!(
            matches!(e, Err(Error::InvalidArgument { .. })),
            "{options:?}: {e:?}"
        );
    }
    for (q, k) in [(HEAD_DIM - 1, HEAD_DIM), (HEAD_DIM, 2 * HEAD_DIM)] {
        let options = AttentionOptions {
            qk_norm: Some(norm(q, k, 1e-6)),
            ..Default::default()
        };
        let e = plain.clone().with_options(options).map(drop);
        assert!(matches!(e, Err(Error::Shape { .. })), "{q}, {k}: {e:?}");
    }
    // Default options are the layer `new` makes: the same bits.
    let again = plain
        .clone()
        .with_options(AttentionOptions::default())
        .unwrap();
    let x = DistTensor::replicate(&group, &rng.normal(3 * HIDDEN), [3, HIDDEN]).unwrap();
    let (mut c1, mut c2) = (plain.new_cache(3).unwrap(), again.new_cache(3).unwrap());
    let a = plain.forward(&x, &mut c1).unwrap().to_host().unwrap();
    let b = again.forward(&x, &mut c2).unwrap().to_host().unwrap();
    common::assert_same_bits(&a, &b, "default options");
}

/// The f64 GeGLU MLP `down(gelu(gate(x)) * up(x))` of `x: [tokens, h]` (weights `[out, in]`)
/// with its bound.
fn reference_geglu(
    x: &[f32],
    tokens: usize,
    h: usize,
    i: usize,
    gate: &[f32],
    up: &[f32],
    down: &[f32],
) -> Approx {
    let layout = WeightLayout::OutIn;
    let xa = Approx::exact(x);
    let g = reference::linear(&xa, [tokens, h], gate, i, layout, None).unwrap();
    let u = reference::linear(&xa, [tokens, h], up, i, layout, None).unwrap();
    let (beta, kappa) = ((2.0 / std::f64::consts::PI).sqrt(), 0.044715);
    let gelu = |g: f64| 0.5 * g * (1.0 + (beta * (g + kappa * g * g * g)).tanh());
    let mut mid = Approx {
        value: vec![],
        bound: vec![],
    };
    for e in 0..tokens * i {
        let (gv, dg, uv, du) = (g.value[e], g.bound[e], u.value[e], u.bound[e]);
        let a = gelu(gv);
        mid.value.push(a * uv);
        // gelu's slope is at most 1.129 (at g ~ 1.5): 1.13 dg carried; the kernel's own
        // error as src/ops/model/tests.rs derives it (γ(7) in the cubic, tanh_err, 1 +
        // tanh, two products), on the widened gate.
        let inner = beta * (gv + kappa * gv * gv * gv);
        let wide = gv.abs() + dg;
        let d_inner = gamma(7) * beta * (wide + kappa * wide.powi(3));
        let own = 0.5 * wide * (d_inner.min(2.0) + tanh_err(inner) + 2.0 * U) + gamma(2) * a.abs();
        mid.bound
            .push((1.13 * dg + own) * (uv.abs() + du) + a.abs() * du + U * (a * uv).abs());
    }
    reference::linear(&mid, [tokens, i], down, h, layout, None).unwrap()
}

/// GeGLU (Gemma's gated MLP) at tp 1-4 on both kinds of group against the f64 MLP; the
/// activation names as Hugging Face writes them.
#[test]
fn the_gated_mlp_with_gelu_tanh_matches_the_f64_geglu() {
    let (h, i, tokens) = (HIDDEN, 20, 3);
    let mut rng = Rng::new(9);
    let (gate, up, down) = (rng.normal(i * h), rng.normal(i * h), rng.normal(h * i));
    let x = rng.normal(tokens * h);
    let want = reference_geglu(&x, tokens, h, i, &gate, &up, &down);
    let mut worst = 0.0f64;
    for tp in [1, 2, 3, 4] {
        for (kind, group) in common::groups(tp).into_iter().enumerate() {
            let mlp = GatedMlp::new(
                &group,
                h,
                i,
                |r| Ok(rows(&gate, r, h)),
                |r| Ok(rows(&up, r, h)),
                |c| Ok(columns(&down, h, i, c)),
            )
            .unwrap()
            .with_activation("gelu_pytorch_tanh".parse().unwrap());
            assert_eq!(mlp.activation(), GatedActivation::GeluTanh);
            let xd = DistTensor::replicate(&group, &x, [tokens, h]).unwrap();
            let got = mlp.forward(&xd).unwrap().to_host().unwrap();
            let c = want.check(&got);
            assert!(c.pass, "tp {tp}, group kind {kind}: {c:?}");
            worst = worst.max(c.max_abs_diff);
            // SwiGLU (the default) is another function: outside the bound.
            let silu = mlp.clone().with_activation(GatedActivation::Silu);
            let other = silu.forward(&xd).unwrap().to_host().unwrap();
            assert!(
                !want.check(&other).pass,
                "tp {tp}: silu within geglu's bound"
            );
        }
    }
    eprintln!("geglu: max |diff| {worst:.3e}");
    for (name, act) in [
        ("silu", GatedActivation::Silu),
        ("swish", GatedActivation::Silu),
        ("gelu_pytorch_tanh", GatedActivation::GeluTanh),
    ] {
        assert_eq!(GatedActivation::from_name(name).unwrap(), act);
    }
    for name in ["gelu", "relu", "gelu_new", ""] {
        let e = GatedActivation::from_name(name);
        assert!(
            matches!(e, Err(Error::InvalidArgument { .. })),
            "{name}: {e:?}"
        );
    }
}

/// The fixture's case `name` (tests/fixtures/attention_options.json).
fn fixture(name: &str) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/attention_options.json"
    );
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all[name].clone()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// transformers' Gemma 2 sliding attention (window 3, query_pre_attn_scalar 32, cap 3),
/// Qwen3's (q_norm, k_norm, the default scale) and Gemma 3's sliding attention (window 4,
/// query_pre_attn_scalar 24, norms with 1 + w): their f32 outputs within the bound of our
/// f64 reference (the same semantics: a window off by one, the cap before the scale or
/// the norm after rotary would be far outside it), and ours within it at tp 1-4 on both
/// kinds of group, prefill then decode.
#[test]
fn attention_options_match_transformers_gemma2_qwen3_and_gemma3_layers() {
    for name in ["gemma2_sliding", "qwen3", "gemma3_sliding"] {
        let case = fixture(name);
        let w = Weights {
            q: floats(&case["q"]),
            k: floats(&case["k"]),
            v: floats(&case["v"]),
            o: floats(&case["o"]),
        };
        let x = floats(&case["x"]);
        assert_eq!(x.len(), POSITIONS * HIDDEN, "{name}: x");
        // Qwen3 scales by head_dim ** -0.5: the default; the Gemmas by
        // query_pre_attn_scalar ** -0.5, computed in f64 and rounded to f32 as torch
        // multiplies an f32 tensor by a Python float.
        let scale = (name != "qwen3").then(|| case["scale"].as_f64().unwrap() as f32);
        let options = AttentionOptions {
            window: case["window"].as_u64().map(|w| w as usize),
            scale,
            softcap: case["softcap"].as_f64().map(|c| c as f32),
            qk_norm: case.get("q_norm").map(|q| QkNorm {
                q: floats(q),
                k: floats(&case["k_norm"]),
                eps: case["eps"].as_f64().unwrap() as f32,
            }),
        };
        let table = rotary_table(POSITIONS);
        let want = reference_attention(&x, POSITIONS, &w, &options, Some(&table));
        let theirs = floats(&case["out"]);
        let c = want.check(&theirs);
        assert!(
            c.pass,
            "{name}: transformers' output outside our reference's bound: {c:?}"
        );
        // The bound tells the semantics apart: the window one longer or shorter, or any
        // option left out, puts transformers' output outside it.
        let mut others = Vec::new();
        if let Some(wn) = options.window {
            for other in [Some(wn - 1), Some(wn + 1), None] {
                others.push(AttentionOptions {
                    window: other,
                    ..options.clone()
                });
            }
        }
        if options.scale.is_some() {
            others.push(AttentionOptions {
                scale: None,
                ..options.clone()
            });
        }
        if options.softcap.is_some() {
            others.push(AttentionOptions {
                softcap: None,
                ..options.clone()
            });
        }
        if options.qk_norm.is_some() {
            others.push(AttentionOptions {
                qk_norm: None,
                ..options.clone()
            });
        }
        for other in &others {
            let r = reference_attention(&x, POSITIONS, &w, other, Some(&table));
            assert!(
                !r.check(&theirs).pass,
                "{name}: {other:?} within the bound too"
            );
        }
        let (worst, ran) = check_layer(name, &x, &w, true, &options, &want);
        if common::in_ci() {
            assert_eq!(ran, 8, "{name}: every tp on both kinds of group");
        }
        eprintln!(
            "{name}: transformers vs f64 reference {:.3e}, ours vs reference {worst:.3e} (largest bound {:.3e})",
            c.max_abs_diff, c.tolerance
        );
    }
}

/// transformers' Gemma2MLP (gelu_pytorch_tanh) against ours at tp 1-4: both within the
/// bound of the f64 GeGLU.
#[test]
fn the_gated_mlp_with_gelu_tanh_matches_transformers_gemma2_mlp() {
    let case = fixture("gemma2_mlp");
    let (h, i) = (HIDDEN, 20);
    let (gate, up, down) = (
        floats(&case["gate"]),
        floats(&case["up"]),
        floats(&case["down"]),
    );
    let x = floats(&case["x"]);
    let tokens = x.len() / h;
    let want = reference_geglu(&x, tokens, h, i, &gate, &up, &down);
    let c = want.check(&floats(&case["out"]));
    assert!(
        c.pass,
        "transformers' Gemma2MLP outside the f64 GeGLU's bound: {c:?}"
    );
    let mut worst = 0.0f64;
    for tp in [1, 2, 3, 4] {
        for (kind, group) in common::groups(tp).into_iter().enumerate() {
            let mlp = GatedMlp::new(
                &group,
                h,
                i,
                |r| Ok(rows(&gate, r, h)),
                |r| Ok(rows(&up, r, h)),
                |c| Ok(columns(&down, h, i, c)),
            )
            .unwrap()
            .with_activation(GatedActivation::GeluTanh);
            let xd = DistTensor::replicate(&group, &x, [tokens, h]).unwrap();
            let got = mlp.forward(&xd).unwrap().to_host().unwrap();
            let ours = want.check(&got);
            assert!(ours.pass, "tp {tp}, group kind {kind}: {ours:?}");
            worst = worst.max(ours.max_abs_diff);
        }
    }
    eprintln!(
        "gemma2_mlp: transformers vs f64 reference {:.3e}, ours {worst:.3e} (largest bound {:.3e})",
        c.max_abs_diff, c.tolerance
    );
}

/// A window's ring cache (`window + chunk - 1` rows) gives the bits of the full cache: the
/// same kernels over the same positions' keys and values, only in other rows. A prefill
/// of a chunk, decode steps and chunks of up to 5 tokens again past three times the ring,
/// with the window, the norm, the scale, the cap and rotary, at tp 1-4 on both kinds of
/// group. Refused: a chunk over the ring, a ring without a window, chunks of 0.
#[test]
fn a_window_s_ring_cache_gives_the_full_cache_s_bits() {
    let mut rng = Rng::new(31);
    let w = Weights {
        q: rng.normal(HEADS * HEAD_DIM * HIDDEN),
        k: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        v: rng.normal(KV_HEADS * HEAD_DIM * HIDDEN),
        o: rng.normal(HIDDEN * HEADS * HEAD_DIM),
    };
    let (window, chunk) = (3, 5);
    let options = AttentionOptions {
        window: Some(window),
        scale: Some(0.3),
        softcap: Some(5.0),
        qk_norm: Some(QkNorm {
            q: rng.normal(HEAD_DIM),
            k: rng.normal(HEAD_DIM),
            eps: 1e-6,
        }),
    };
    // Forwards of 5, 1, 1, 4, 1 x 6, 5, 2, 3: 30 positions through a ring of 7 rows.
    let steps = [5, 1, 1, 4, 1, 1, 1, 1, 1, 1, 5, 2, 3];
    let total: usize = steps.iter().sum();
    let x = rng.normal(total * HIDDEN);
    let mut ran = 0;
    for tp in [1, 2, 3, 4] {
        for (kind, group) in common::groups(tp).into_iter().enumerate() {
            let ctx = format!("tp {tp}, group kind {kind}");
            let attention = layer(&group, &w, true, &options);
            let mut full = attention.new_cache(total).unwrap();
            let mut ring = attention.new_window_cache(chunk).unwrap();
            assert!(ring.is_ring() && !full.is_ring());
            assert_eq!(ring.capacity(), window + chunk - 1);
            let mut at = 0;
            for n in steps {
                let xs =
                    DistTensor::replicate(&group, &x[at * HIDDEN..(at + n) * HIDDEN], [n, HIDDEN])
                        .unwrap();
                let a = attention
                    .forward(&xs, &mut full)
                    .unwrap()
                    .to_host()
                    .unwrap();
                let b = attention
                    .forward(&xs, &mut ring)
                    .unwrap()
                    .to_host()
                    .unwrap();
                common::assert_same_bits(&b, &a, &format!("{ctx}, positions {at}..{}", at + n));
                at += n;
            }
            assert_eq!(ring.len(), total);
            // A chunk over the ring is refused, and leaves the cache as it was.
            let six = DistTensor::replicate(&group, &x[..6 * HIDDEN], [6, HIDDEN]).unwrap();
            let e = attention.forward(&six, &mut ring).map(drop);
            assert!(
                matches!(e, Err(Error::InvalidArgument { .. })),
                "{ctx}: {e:?}"
            );
            assert_eq!(ring.len(), total);
            ran += 1;
        }
    }
    if common::in_ci() {
        assert_eq!(ran, 8, "every tp on both kinds of group");
    }
    let Some(group) = common::group(2) else {
        return;
    };
    let plain = layer(&group, &w, true, &AttentionOptions::default());
    let e = plain.new_window_cache(chunk).map(drop);
    assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
    let windowed = layer(&group, &w, true, &options);
    let e = windowed.new_window_cache(0).map(drop);
    assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
    // A ring made for a window, used by the layer without it, is refused.
    let mut ring = windowed.new_window_cache(chunk).unwrap();
    let one = DistTensor::replicate(&group, &x[..HIDDEN], [1, HIDDEN]).unwrap();
    let e = plain.forward(&one, &mut ring).map(drop);
    assert!(matches!(e, Err(Error::InvalidArgument { .. })), "{e:?}");
}
