//! The f64 reference of `ParallelAttention`'s backward with a bound on the f32 result
//! propagated operation by operation (`E`), its cases and layer, shared by
//! tests/attention_backward.rs and the workers of tests/processes.rs.

use wgpu_tp::nn::{
    AttentionGrads, AttentionOptions, AttentionShape, HeadWeights, ParallelAttention, QkNorm,
    RopeScaling, Rotary,
};
use wgpu_tp::reference::Rng;
use wgpu_tp::{Group, WeightLayout};

use super::assert_same_bits;
pub use super::bounds::{dot, sum, E};

pub const HIDDEN: usize = 16;
pub const HEADS: usize = 8;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 8;
pub const GROUP: usize = HEADS / KV_HEADS;
pub const TOKENS: usize = 7;
pub const THETA: f64 = 10_000.0;
pub const QC: usize = HEADS * HEAD_DIM;
pub const KC: usize = KV_HEADS * HEAD_DIM;

/// The layer's inputs in f64 (f32 values, or perturbed for central differences): `[out,
/// in]` weights, the rotary table (cosines then sines per position) and `dy`.
#[derive(Debug, Clone)]
pub struct Case {
    pub x: Vec<f64>,
    pub wq: Vec<f64>,
    pub wk: Vec<f64>,
    pub wv: Vec<f64>,
    pub wo: Vec<f64>,
    pub bias: Option<[Vec<f64>; 3]>,
    pub dy: Vec<f64>,
    pub table: Option<Vec<f64>>,
    /// Per-head query and key norms (their weights, `head_dim` each, and epsilon): the
    /// layer's `options.qk_norm` (left `None` in `options`).
    pub qk_norm: Option<([Vec<f64>; 2], f32)>,
    pub options: AttentionOptions,
}

/// The gradients the reference gives (each `[out, in]` as the weights), and the output.
pub struct Want {
    pub y: Vec<E>,
    pub dx: Vec<E>,
    pub dwq: Vec<E>,
    pub dwk: Vec<E>,
    pub dwv: Vec<E>,
    pub db: Option<[Vec<E>; 3]>,
    pub dwo: Vec<E>,
    pub d_att: Vec<E>,
    /// The query and key norms' weights' gradients.
    pub dnorm: Option<[Vec<E>; 2]>,
}

/// What [`host`] gives, in its order.
pub const GRADIENTS: [&str; 11] = [
    "dX", "dWq", "dWk", "dWv", "dbq", "dbk", "dbv", "dWo", "d_att", "dq_norm", "dk_norm",
];

impl Want {
    /// The gradients in [`host`]'s order (the biases' and norms' empty without them).
    pub fn in_host_order(&self) -> Vec<&[E]> {
        let bias = |i: usize| self.db.as_ref().map_or(&[][..], |b| &b[i][..]);
        let norm = |i: usize| self.dnorm.as_ref().map_or(&[][..], |n| &n[i][..]);
        vec![
            &self.dx,
            &self.dwq,
            &self.dwk,
            &self.dwv,
            bias(0),
            bias(1),
            bias(2),
            &self.dwo,
            &self.d_att,
            norm(0),
            norm(1),
        ]
    }
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn exact(v: &[f64]) -> Vec<E> {
    v.iter().map(|&x| E::exact(x)).collect()
}

/// `a: [rows, k]` times `w: [n, k]` transposed: `[rows, n]`, plus `bias`.
pub fn project(a: &[E], rows: usize, k: usize, w: &[E], n: usize, bias: Option<&[f64]>) -> Vec<E> {
    let mut out = Vec::with_capacity(rows * n);
    for t in 0..rows {
        for c in 0..n {
            let d = dot(&a[t * k..(t + 1) * k], &w[c * k..(c + 1) * k]);
            out.push(match bias {
                Some(b) => d.add(E::exact(b[c])),
                None => d,
            });
        }
    }
    out
}

/// `Σ_t a[t, i] b[t, j]` for `a: [rows, n]`, `b: [rows, m]`: `[n, m]`.
pub fn tn(a: &[E], b: &[E], rows: usize, n: usize, m: usize) -> Vec<E> {
    let mut out = Vec::with_capacity(n * m);
    for i in 0..n {
        for j in 0..m {
            let terms: Vec<E> = (0..rows).map(|t| a[t * n + i].mul(b[t * m + j])).collect();
            out.push(sum(&terms));
        }
    }
    out
}

/// The pair rotation of one head at `pos` (`back`: its transpose).
pub fn turn(x: &[E], table: &[f64], pos: usize, back: bool) -> Vec<E> {
    let half = HEAD_DIM / 2;
    let mut y = x.to_vec();
    for j in 0..half {
        let c = E::exact(table[pos * HEAD_DIM + j]);
        let s = E::exact(table[pos * HEAD_DIM + half + j]);
        let (x1, x2) = (x[j], x[j + half]);
        if back {
            y[j] = x1.mul(c).add(x2.mul(s));
            y[j + half] = x2.mul(c).sub(x1.mul(s));
        } else {
            y[j] = x1.mul(c).sub(x2.mul(s));
            y[j + half] = x2.mul(c).add(x1.mul(s));
        }
    }
    y
}

/// `1 / sqrt(mean(x^2) + eps)` of one head's values, as the kernels compute it.
fn inv_rms(x: &[E], eps: f32) -> E {
    let squares: Vec<E> = x.iter().map(|v| v.mul(*v)).collect();
    let mean = sum(&squares).div(E::exact(x.len() as f64));
    E::exact(1.0).div(mean.add(E::exact(f64::from(eps))).sqrt())
}

/// The per-head RMSNorm of `a` (`[TOKENS, cols]`, heads of `HEAD_DIM`) with weight `w`:
/// `w * (x * r)` (shaders/norms.wgsl's `head_rms_norm`).
fn head_norm(a: &[E], w: &[f64], eps: f32) -> Vec<E> {
    a.chunks(HEAD_DIM)
        .flat_map(|x| {
            let r = inv_rms(x, eps);
            x.iter()
                .zip(w)
                .map(move |(x, &w)| E::exact(w).mul(x.mul(r)))
        })
        .collect()
}

/// The per-head RMSNorm's backward at `a` given `d`, its output's gradient: dL/d`a`
/// (`r w d - x c` with `c = r^3 A / HEAD_DIM`, `A = sum w d x`) and the weight's gradient,
/// the terms `d x r` summed over every row and head (`head_rms_norm_backward`, `_terms`).
fn head_norm_backward(a: &[E], d: &[E], w: &[f64], eps: f32) -> (Vec<E>, Vec<E>) {
    let mut dx = Vec::with_capacity(a.len());
    let mut terms = vec![Vec::new(); HEAD_DIM];
    for (x, d) in a.chunks(HEAD_DIM).zip(d.chunks(HEAD_DIM)) {
        let r = inv_rms(x, eps);
        let wd: Vec<E> = d.iter().zip(w).map(|(d, &w)| E::exact(w).mul(*d)).collect();
        let big_a = dot(&wd, x);
        let c = r.mul(r).mul(r).mul(big_a).div(E::exact(HEAD_DIM as f64));
        for k in 0..HEAD_DIM {
            dx.push(r.mul(wd[k]).sub(x[k].mul(c)));
            terms[k].push(d[k].mul(x[k].mul(r)));
        }
    }
    (dx, terms.iter().map(|t| sum(t)).collect())
}

/// The f64 forward and backward of the layer, the kernels' operations in their order of
/// dependence.
pub fn reference(c: &Case) -> Want {
    let (t_n, hd) = (TOKENS, HEAD_DIM);
    let x = exact(&c.x);
    let b = |i: usize| c.bias.as_ref().map(|b| &b[i][..]);
    let q_pre = project(&x, t_n, HIDDEN, &exact(&c.wq), QC, b(0));
    let k_pre = project(&x, t_n, HIDDEN, &exact(&c.wk), KC, b(1));
    let (q, k) = match &c.qk_norm {
        None => (q_pre.clone(), k_pre.clone()),
        Some(([wq, wk], eps)) => (head_norm(&q_pre, wq, *eps), head_norm(&k_pre, wk, *eps)),
    };
    let v = project(&x, t_n, HIDDEN, &exact(&c.wv), KC, b(2));
    let head = |a: &[E], cols: usize, t: usize, h: usize| a[t * cols + h * hd..][..hd].to_vec();
    let turned = |a: &[E], cols: usize, t: usize, h: usize| match &c.table {
        Some(table) => turn(&head(a, cols, t, h), table, t, false),
        None => head(a, cols, t, h),
    };
    let o = &c.options;
    let scale = E::exact(f64::from(
        o.scale.unwrap_or_else(|| 1.0 / (hd as f32).sqrt()),
    ));
    // The logit of a dot product and its slope.
    let logit = |s: E| match o.softcap {
        None => (s.mul(scale), scale),
        Some(cap) => {
            let cap = E::exact(f64::from(cap));
            let th = s.mul(scale).div(cap).tanh();
            (th.mul(cap), E::exact(1.0).sub(th.mul(th)).mul(scale))
        }
    };
    let first = |t: usize| o.window.map_or(0, |w| (t + 1).saturating_sub(w));
    // Per (row, head): the probabilities over the positions seen (from `first(t)`), the
    // slopes, and the output.
    let mut probs = vec![Vec::new(); t_n * HEADS];
    let mut slopes = vec![Vec::new(); t_n * HEADS];
    let mut att = vec![E::exact(0.0); t_n * QC];
    for t in 0..t_n {
        for h in 0..HEADS {
            let qt = turned(&q, QC, t, h);
            let (z, sl): (Vec<E>, Vec<E>) = (first(t)..=t)
                .map(|j| logit(dot(&qt, &turned(&k, KC, j, h / GROUP))))
                .unzip();
            let m = E {
                v: z.iter().map(|z| z.v).fold(f64::MIN, f64::max),
                e: z.iter().map(|z| z.e).fold(0.0, f64::max),
            };
            let w: Vec<E> = z.iter().map(|z| z.sub(m).exp()).collect();
            let l = sum(&w);

            let inv = E::exact(1.0).div(l);
            for e in 0..hd {
                let terms: Vec<E> = (first(t)..=t)
                    .zip(&w)
                    .map(|(j, w)| w.mul(v[j * KC + (h / GROUP) * hd + e]))
                    .collect();
                att[t * QC + h * hd + e] = sum(&terms).mul(inv);
            }
            probs[t * HEADS + h] = w.iter().map(|w| w.div(l)).collect();
            slopes[t * HEADS + h] = sl;
        }
    }
    let wo = exact(&c.wo);
    let y = project(&att, t_n, QC, &wo, HIDDEN, None);
    let dy = exact(&c.dy);
    // dL/d(att) = dy · Wo; dWo = dy^T · att.
    let wo_t: Vec<E> = (0..QC)
        .flat_map(|col| (0..HIDDEN).map(move |r| (r, col)))
        .map(|(r, col)| wo[r * QC + col])
        .collect();
    let d_att = project(&dy, t_n, HIDDEN, &wo_t, QC, None);
    let dwo = tn(&dy, &att, t_n, HIDDEN, QC);
    // The scores' gradients: ds[t, h][j - first(t)].
    let mut ds = vec![Vec::new(); t_n * HEADS];
    for t in 0..t_n {
        for h in 0..HEADS {
            let d_o = head(&d_att, QC, t, h);
            let big_d = dot(&d_o, &head(&att, QC, t, h));
            ds[t * HEADS + h] = (first(t)..=t)
                .enumerate()
                .map(|(n, j)| {
                    let dp = dot(&d_o, &head(&v, KC, j, h / GROUP));
                    let p = probs[t * HEADS + h][n];
                    p.mul(dp.sub(big_d)).mul(slopes[t * HEADS + h][n])
                })
                .collect();
        }
    }
    let back = |g: Vec<E>, pos: usize| match &c.table {
        Some(table) => turn(&g, table, pos, true),
        None => g,
    };
    let mut dq = vec![E::exact(0.0); t_n * QC];
    let (mut dk, mut dv) = (vec![E::exact(0.0); t_n * KC], vec![E::exact(0.0); t_n * KC]);
    for h in 0..HEADS {
        for t in 0..t_n {
            let g: Vec<E> = (0..hd)
                .map(|e| {
                    let terms: Vec<E> = (first(t)..=t)
                        .enumerate()
                        .map(|(n, j)| ds[t * HEADS + h][n].mul(turned(&k, KC, j, h / GROUP)[e]))
                        .collect();
                    sum(&terms)
                })
                .collect();
            for (e, g) in back(g, t).into_iter().enumerate() {
                dq[t * QC + h * hd + e] = g;
            }
        }
    }
    for kvh in 0..KV_HEADS {
        for j in 0..t_n {
            // Each query head's share, then the shares summed.
            let mut shares_k = vec![Vec::new(); hd];
            let mut shares_v = vec![Vec::new(); hd];
            for h in kvh * GROUP..(kvh + 1) * GROUP {
                let rows: Vec<usize> = (j..t_n).filter(|&i| first(i) <= j).collect();
                let gk: Vec<E> = (0..hd)
                    .map(|e| {
                        let terms: Vec<E> = rows
                            .iter()
                            .map(|&i| ds[i * HEADS + h][j - first(i)].mul(turned(&q, QC, i, h)[e]))
                            .collect();
                        sum(&terms)
                    })
                    .collect();
                for (e, g) in back(gk, j).into_iter().enumerate() {
                    shares_k[e].push(g);
                    let terms: Vec<E> = rows
                        .iter()
                        .map(|&i| {
                            probs[i * HEADS + h][j - first(i)].mul(d_att[i * QC + h * hd + e])
                        })
                        .collect();
                    shares_v[e].push(sum(&terms));
                }
            }
            for e in 0..hd {
                dk[j * KC + kvh * hd + e] = sum(&shares_k[e]);
                dv[j * KC + kvh * hd + e] = sum(&shares_v[e]);
            }
        }
    }
    // Back through the norms, if any.
    let (dq, dk, dnorm) = match &c.qk_norm {
        None => (dq, dk, None),
        Some(([wq, wk], eps)) => {
            let (dq, gq) = head_norm_backward(&q_pre, &dq, wq, *eps);
            let (dk, gk) = head_norm_backward(&k_pre, &dk, wk, *eps);
            (dq, dk, Some([gq, gk]))
        }
    };
    // dX = dq · Wq + dk · Wk + dv · Wv, one sum over every column.
    let (wq, wk, wv) = (exact(&c.wq), exact(&c.wk), exact(&c.wv));
    let mut dx = Vec::with_capacity(t_n * HIDDEN);
    for t in 0..t_n {
        for i in 0..HIDDEN {
            let mut terms = Vec::new();
            for (g, w, n) in [(&dq, &wq, QC), (&dk, &wk, KC), (&dv, &wv, KC)] {
                terms.extend((0..n).map(|col| g[t * n + col].mul(w[col * HIDDEN + i])));
            }
            dx.push(sum(&terms));
        }
    }
    let ones = vec![E::exact(1.0); t_n];
    let db = c
        .bias
        .as_ref()
        .map(|_| [(&dq, QC), (&dk, KC), (&dv, KC)].map(|(g, n)| tn(&ones, g, t_n, 1, n)));
    Want {
        y,
        dx,
        dwq: tn(&dq, &x, t_n, QC, HIDDEN),
        dwk: tn(&dk, &x, t_n, KC, HIDDEN),
        dwv: tn(&dv, &x, t_n, KC, HIDDEN),
        db,
        dwo,
        d_att,
        dnorm,
    }
}

/// The rotary table as `Rotary::new` makes it (angles in f32, cosine and sine rounded from
/// f64), so the reference turns by the values the GPU reads.
pub fn rotary_table() -> Vec<f64> {
    let inv = Rotary::inverse_frequencies(HEAD_DIM, THETA, &RopeScaling::None);
    let mut table = Vec::new();
    for p in 0..TOKENS {
        let angles: Vec<f64> = inv.iter().map(|f| f64::from(p as f32 * f)).collect();
        table.extend(angles.iter().map(|a| f64::from(a.cos() as f32)));
        table.extend(angles.iter().map(|a| f64::from(a.sin() as f32)));
    }
    table
}

/// Inputs from `seed`: Llama's attention (rotary, no bias), or with `options` and biases.
pub fn case(seed: u64, options: AttentionOptions, bias: bool) -> Case {
    let mut rng = Rng::new(seed);
    let mut w = |n: usize, fan_in: usize, fan_out: usize| -> Vec<f64> {
        rng.xavier(n, fan_in, fan_out)
            .iter()
            .map(|&v| f64::from(v))
            .collect()
    };
    let wq = w(QC * HIDDEN, HIDDEN, QC);
    // Keys larger than Xavier's, so that the softmax is far from uniform.
    let wk = w(KC * HIDDEN, HIDDEN, KC).iter().map(|v| v * 3.0).collect();
    let wv = w(KC * HIDDEN, HIDDEN, KC);
    let wo = w(HIDDEN * QC, QC, HIDDEN);
    let mut rng = Rng::new(seed + 1);
    let mut n =
        |len: usize| -> Vec<f64> { rng.normal(len).iter().map(|&v| f64::from(v)).collect() };
    let bias = bias.then(|| [n(QC), n(KC), n(KC)]);
    Case {
        x: n(TOKENS * HIDDEN),
        wq,
        wk,
        wv,
        wo,
        bias,
        dy: n(TOKENS * HIDDEN),
        table: Some(rotary_table()),
        qk_norm: None,
        options,
    }
}

/// `c` with every input rounded to a multiple of 1/8 (x, dy, the biases: of 1/4), no
/// rotary table and the scale 1/4: the projections, the logits and dL/d(att) are then
/// exact in f32 (at most 2^-10 apart and far below 2^14), so the bound is the softmax's and
/// the sums' own few ulps, tight enough that an error of 1e-4 in any kernel's output
/// passes it (the other cases' bounds carry the projections' worst case through exp).
pub fn dyadic(mut c: Case) -> Case {
    let round =
        |v: &mut Vec<f64>, step: f64| v.iter_mut().for_each(|x| *x = (*x / step).round() * step);
    for w in [&mut c.wq, &mut c.wk, &mut c.wv, &mut c.wo] {
        round(w, 0.125);
    }
    for v in [&mut c.x, &mut c.dy] {
        round(v, 0.25);
    }
    if let Some(b) = &mut c.bias {
        b.iter_mut().for_each(|b| round(b, 0.25));
    }
    c.table = None;
    c.options.scale = Some(0.25);
    c
}

/// The cases: Llama's attention; a window of 3 with another scale, a soft cap of 2 (low,
/// so that the cap bends the logits) and biases (Qwen2's); exact projections with a
/// window of 4 and biases.
pub fn cases() -> Vec<(&'static str, Case)> {
    let gemma = AttentionOptions {
        window: Some(3),
        scale: Some(0.3),
        softcap: Some(2.0),
        ..AttentionOptions::default()
    };
    let window = AttentionOptions {
        window: Some(4),
        ..AttentionOptions::default()
    };
    vec![
        ("llama", case(250, AttentionOptions::default(), false)),
        ("window, scale, cap and biases", case(251, gemma, true)),
        ("exact projections", dyadic(case(252, window, true))),
        (
            "query and key norms",
            normed(case(253, AttentionOptions::default(), false)),
        ),
    ]
}

/// `c` with Qwen3's per-head query and key norms, their weights near 1 (as trained ones
/// are) and apart, so that each one's gradient is its own.
pub fn normed(mut c: Case) -> Case {
    let mut rng = Rng::new(254);
    let mut w = || -> Vec<f64> {
        rng.normal(HEAD_DIM)
            .iter()
            .map(|&v| f64::from(1.0 + 0.25 * v))
            .collect()
    };
    c.qk_norm = Some(([w(), w()], 1e-6));
    c
}

pub fn layer(group: &Group, c: &Case) -> ParallelAttention {
    let shape = AttentionShape {
        hidden: HIDDEN,
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        o_block: 1,
    };
    let rotary = c
        .table
        .as_ref()
        .map(|_| Rotary::new(group, HEAD_DIM, TOKENS, THETA).unwrap());
    let hd = HEAD_DIM;
    let rows =
        |w: &[f64], r: std::ops::Range<usize>| f32s(&w[r.start * hd * HIDDEN..r.end * hd * HIDDEN]);
    ParallelAttention::new(
        group,
        shape,
        WeightLayout::OutIn,
        rotary,
        |qh, kvh| {
            Ok(HeadWeights {
                q: rows(&c.wq, qh.clone()).into(),
                k: rows(&c.wk, kvh.clone()).into(),
                v: rows(&c.wv, kvh.clone()).into(),
                bias: c.bias.as_ref().map(|[bq, bk, bv]| {
                    [
                        f32s(&bq[qh.start * hd..qh.end * hd]),
                        f32s(&bk[kvh.start * hd..kvh.end * hd]),
                        f32s(&bv[kvh.start * hd..kvh.end * hd]),
                    ]
                }),
            })
        },
        |cols| {
            Ok((0..HIDDEN)
                .flat_map(|r| f32s(&c.wo[r * QC + cols.start..r * QC + cols.end]))
                .collect::<Vec<f32>>())
        },
        None,
    )
    .unwrap()
    .with_options(AttentionOptions {
        qk_norm: c.qk_norm.as_ref().map(|([q, k], eps)| QkNorm {
            q: f32s(q),
            k: f32s(k),
            eps: *eps,
        }),
        ..c.options.clone()
    })
    .unwrap()
}

/// The key/value heads each rank holds, as the layer splits them.
pub fn kv_ranges(attention: &ParallelAttention) -> Vec<std::ops::Range<usize>> {
    attention
        .heads_per_rank()
        .iter()
        .map(|h| h.start / GROUP..(h.end - 1) / GROUP + 1)
        .collect()
}

/// The fused gradient rows (`[out, in]`: rank blocks `[q | k | v]` one after another, as
/// `AttentionGrads::qkv` holds them; `width` values a row) put back into the full q, k and
/// v gradients; a key/value head two ranks hold must be the same bits on each.
pub fn unfuse(attention: &ParallelAttention, fused: &[f32], width: usize) -> [Vec<f32>; 3] {
    let hd = HEAD_DIM;
    let mut q = vec![f32::NAN; QC * width];
    let mut k: Vec<Option<Vec<f32>>> = vec![None; KV_HEADS];
    let mut v: Vec<Option<Vec<f32>>> = vec![None; KV_HEADS];
    let mut at = 0;
    for (h, kv) in attention.heads_per_rank().iter().zip(kv_ranges(attention)) {
        let n = h.len() * hd * width;
        q[h.start * hd * width..h.end * hd * width].copy_from_slice(&fused[at..at + n]);
        at += n;
        for dst in [&mut k, &mut v] {
            for g in kv.clone() {
                let block = fused[at..at + hd * width].to_vec();
                at += hd * width;
                if let Some(seen) = &dst[g] {
                    assert_same_bits(seen, &block, &format!("key/value head {g} on two ranks"));
                }
                dst[g] = Some(block);
            }
        }
    }
    assert_eq!(at, fused.len());
    let join = |x: Vec<Option<Vec<f32>>>| x.into_iter().flat_map(Option::unwrap).collect();
    [q, join(k), join(v)]
}

pub fn within(want: &[E], got: &[f32], ctx: &str) -> f64 {
    assert_eq!(want.len(), got.len(), "{ctx}: lengths");
    let mut worst = 0.0f64;
    for (i, (w, &g)) in want.iter().zip(got).enumerate() {
        let d = (f64::from(g) - w.v).abs();
        assert!(
            d <= w.e,
            "{ctx}: element {i}: {g} against {} (bound {:.3e})",
            w.v,
            w.e
        );
        worst = worst.max(d / w.e.max(f64::MIN_POSITIVE));
    }
    worst
}

/// Every gradient on the host, per what it is the gradient of: dX, dWq, dWk, dWv, the
/// biases' (q, k, v; empty without), dWo, dL/d(att), the query and key norms' weights'
/// (empty without).
pub fn host(attention: &ParallelAttention, g: &AttentionGrads) -> Vec<Vec<f32>> {
    let [dq, dk, dv] = unfuse(attention, &g.qkv.to_host().unwrap(), HIDDEN);
    let [bq, bk, bv] = match &g.qkv_bias {
        Some(b) => unfuse(attention, &b.to_host().unwrap(), 1),
        None => [Vec::new(), Vec::new(), Vec::new()],
    };
    let norm = |i: usize| {
        g.qk_norm
            .as_ref()
            .map_or(Vec::new(), |n| n[i].to_host().unwrap())
    };
    vec![
        g.input.to_host().unwrap(),
        dq,
        dk,
        dv,
        bq,
        bk,
        bv,
        g.o.weight.to_host().unwrap(),
        g.o.input.to_host().unwrap(),
        norm(0),
        norm(1),
    ]
}
