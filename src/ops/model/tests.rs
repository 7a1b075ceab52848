//! The transformer kernels (`ops::{rms_norm, layer_norm, embed, rope, silu_mul,
//! gelu_tanh_mul, head_rms_norm, write_kv, attention_with}`, the last three crate-private) on one rank against f64 references on the host, each within a bound
//! derived from the f32 operations the kernel performs (u = 2^-24, the unit roundoff;
//! γ(n) = n u / (1 - n u)).

use crate::ops::{self, HeadSpan};
use crate::reference::{gamma, Rng};
use crate::{Error, Group, GroupBuilder, Rank, Tensor};

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// `builder`'s group, or `None` without an adapter (locally; under `CI=true` it panics, as
/// tests/common's `build` does).
fn build(builder: GroupBuilder) -> Option<Group> {
    match builder.build() {
        Ok(g) => Some(g),
        Err(Error::NoAdapter { .. }) if std::env::var("CI").is_err() => None,
        Err(e) => panic!("{e}"),
    }
}

fn rank() -> Option<Rank> {
    build(Group::builder().ranks_on_one_adapter(1)).map(|g| g.ranks()[0].clone())
}

fn up(r: &Rank, v: &[f32], shape: [usize; 2]) -> Tensor {
    Tensor::from_host(r, v, shape).unwrap()
}

/// Asserts `|got - want| <= tol` elementwise.
fn close(got: &[f32], want: &[f64], tol: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (mut worst, mut ratio) = (0.0f64, 0.0f64);
    for ((g, w), t) in got.iter().zip(want).zip(tol) {
        let d = (f64::from(*g) - w).abs();
        worst = worst.max(d);
        if *t > 0.0 {
            ratio = ratio.max(d / t);
        }
    }
    eprintln!("{what}: max |diff| {worst:.3e}, at most {ratio:.3} of the bound");
    for (i, ((g, w), t)) in got.iter().zip(want).zip(tol).enumerate() {
        let d = (f64::from(*g) - w).abs();
        assert!(
            d <= *t,
            "{what}[{i}]: got {g}, want {w}, |diff| {d:.3e} > {t:.3e}"
        );
    }
}

/// A rotary table `[positions, hd]` (cosines, then sines) as Hugging Face's angles.
fn rotary_table(positions: usize, hd: usize) -> Vec<f32> {
    let half = hd / 2;
    let mut table = vec![];
    for p in 0..positions {
        let angles: Vec<f64> = (0..half)
            .map(|j| p as f64 * 10_000f64.powf(-2.0 * j as f64 / hd as f64))
            .collect();
        table.extend(angles.iter().map(|a| a.cos() as f32));
        table.extend(angles.iter().map(|a| a.sin() as f32));
    }
    table
}

/// One head `x` turned at position `pos` in f64, and each element's bound: two products
/// and a sum of exact f32 operands.
fn turned(x: &[f32], table: &[f32], pos: usize) -> (Vec<f64>, Vec<f64>) {
    let hd = x.len();
    let half = hd / 2;
    let (mut want, mut tol) = (vec![0.0; hd], vec![0.0; hd]);
    for j in 0..half {
        let (x1, x2) = (f64::from(x[j]), f64::from(x[j + half]));
        let (c, s) = (
            f64::from(table[pos * hd + j]),
            f64::from(table[pos * hd + half + j]),
        );
        want[j] = x1 * c - x2 * s;
        want[j + half] = x2 * c + x1 * s;
        tol[j] = gamma(2) * (x1.abs() * c.abs() + x2.abs() * s.abs());
        tol[j + half] = gamma(2) * (x2.abs() * c.abs() + x1.abs() * s.abs());
    }
    (want, tol)
}

#[test]
fn rms_norm_and_layer_norm_match_the_f64_rows() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(3);
    let (rows, cols) = (5, 67);
    let x = rng.normal(rows * cols);
    let (w, b) = (rng.normal(cols), rng.normal(cols));
    let eps = 1e-5f32;
    let xd = up(&r, &x, [rows, cols]);
    let (wd, bd) = (up(&r, &w, [1, cols]), up(&r, &b, [1, cols]));
    let rms = ops::rms_norm(&xd, &wd, eps).unwrap().to_host().unwrap();
    let ln = ops::layer_norm(&xd, &wd, &bd, eps)
        .unwrap()
        .to_host()
        .unwrap();
    let (mut want_rms, mut tol_rms, mut want_ln, mut tol_ln) = (vec![], vec![], vec![], vec![]);
    for row in x.chunks(cols) {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let n = cols as f64;
        let inv = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n + f64::from(eps)).sqrt();
        let mean = row.iter().sum::<f64>() / n;
        let mean_abs = row.iter().map(|v| v.abs()).sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv_ln = 1.0 / (var + f64::from(eps)).sqrt();
        for (k, v) in row.iter().enumerate() {
            let (wk, bk) = (f64::from(w[k]), f64::from(b[k]));
            want_rms.push(v * inv * wk);
            // The sum of squares errs by γ(cols) relatively; the mean, the root, the
            // division and the two products add a few roundings.
            tol_rms.push(gamma(cols + 6) * (v * inv * wk).abs());
            want_ln.push((v - mean) * inv_ln * wk + bk);
            // The mean errs by γ(cols) mean|x|, which both the centred value and the
            // variance inherit (relative to |x| + mean|x|); then a few roundings more.
            let scale = (v.abs() + mean_abs) * inv_ln * wk.abs();
            tol_ln.push(gamma(2 * cols + 10) * scale * 2.0 + U * bk.abs());
        }
    }
    close(&rms, &want_rms, &tol_rms, "rms_norm");
    close(&ln, &want_ln, &tol_ln, "layer_norm");
}

#[test]
fn embedding_rows_come_from_the_shard_that_holds_them_and_negative_zero_elsewhere() {
    let Some(r) = rank() else { return };
    let (first, n, cols) = (10, 6, 9);
    let table = Rng::new(4).normal(n * cols);
    let ids = [10u32, 15, 3, 12, 16, 10];
    let got = ops::embed(
        &up(&r, &table, [n, cols]),
        first,
        &Tensor::from_ids(&r, &ids).unwrap(),
    )
    .unwrap()
    .to_host()
    .unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let row = &got[t * cols..(t + 1) * cols];
        let id = id as usize;
        if (first..first + n).contains(&id) {
            assert_eq!(row, &table[(id - first) * cols..(id - first + 1) * cols]);
        } else {
            // -0.0, the additive identity, so the all-reduce keeps the owner's bits.
            assert!(
                row.iter().all(|v| v.to_bits() == 0x8000_0000),
                "id {id}: -0.0"
            );
        }
    }
}

#[test]
fn rope_turns_each_pair_by_its_position_and_silu_mul_gates() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(5);
    let (rows, heads, hd, pos0, positions) = (3, 2, 8, 4, 16);
    let x = rng.normal(rows * heads * hd);
    let table = rotary_table(positions, hd);
    let got = ops::rope(
        &up(&r, &x, [rows, heads * hd]),
        &up(&r, &table, [positions, hd]),
        hd,
        pos0,
    )
    .unwrap()
    .to_host()
    .unwrap();
    let (mut want, mut tol) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    for t in 0..rows {
        for h in 0..heads {
            let at = t * heads * hd + h * hd;
            let (w, e) = turned(&x[at..at + hd], &table, pos0 + t);
            want[at..at + hd].copy_from_slice(&w);
            tol[at..at + hd].copy_from_slice(&e);
        }
    }
    close(&got, &want, &tol, "rope");
    // A table that does not reach the last position is refused.
    let short = up(&r, &table[..(pos0 + rows - 1) * hd], [pos0 + rows - 1, hd]);
    assert!(ops::rope(&up(&r, &x, [rows, heads * hd]), &short, hd, pos0).is_err());

    let (rows, n) = (4, 13);
    let gu = Rng::new(6).normal(rows * 2 * n);
    let got = ops::silu_mul(&up(&r, &gu, [rows, 2 * n]))
        .unwrap()
        .to_host()
        .unwrap();
    let (mut want, mut tol) = (vec![], vec![]);
    for row in gu.chunks(2 * n) {
        for j in 0..n {
            let (g, u) = (f64::from(row[j]), f64::from(row[n + j]));
            let v = g / (1.0 + (-g).exp()) * u;
            want.push(v);
            // WGSL's exp is within 3 + 2|x| ulp (Vulkan's precision for exp); the add,
            // the division and the product round once each.
            tol.push(((3.0 + 2.0 * g.abs()) * 2.0 * U + gamma(4)) * v.abs());
        }
    }
    close(&got, &want, &tol, "silu_mul");
}

#[test]
fn write_kv_moves_keys_turned_and_values_into_the_cache_rows() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(8);
    let (rows, heads, kv_heads, hd, pos0, capacity) = (3, 4, 2, 8, 5, 10);
    let (q, kv) = (heads * hd, kv_heads * hd);
    let qkv = rng.normal(rows * (q + 2 * kv));
    let table = rotary_table(capacity, hd);
    for rotary in [false, true] {
        let before = rng.normal(capacity * 2 * kv);
        let cache = up(&r, &before, [capacity, 2 * kv]);
        let t = up(&r, &table, [capacity, hd]);
        ops::write_kv(
            &up(&r, &qkv, [rows, q + 2 * kv]),
            &cache,
            rotary.then_some(&t),
            (hd, pos0),
            false,
        )
        .unwrap();
        let got = cache.to_host().unwrap();
        let mut want: Vec<f64> = before.iter().map(|v| f64::from(*v)).collect();
        let mut tol = vec![0.0; want.len()];
        for row in 0..rows {
            let src = &qkv[row * (q + 2 * kv)..][..q + 2 * kv];
            let at = (pos0 + row) * 2 * kv;
            for h in 0..kv_heads {
                let k = &src[q + h * hd..][..hd];
                let (w, e) = if rotary {
                    turned(k, &table, pos0 + row)
                } else {
                    (k.iter().map(|v| f64::from(*v)).collect(), vec![0.0; hd])
                };
                want[at + h * hd..][..hd].copy_from_slice(&w);
                tol[at + h * hd..][..hd].copy_from_slice(&e);
            }
            for (e, v) in src[q + kv..].iter().enumerate() {
                want[at + kv + e] = f64::from(*v);
            }
        }
        // Rows outside pos0..pos0 + rows keep their values exactly (tolerance 0).
        close(&got, &want, &tol, &format!("write_kv, rotary {rotary}"));
    }
    // A cache too short for the rows is refused.
    let small = up(&r, &vec![0.0; (pos0 + 2) * 2 * kv], [pos0 + 2, 2 * kv]);
    let fused = up(&r, &qkv, [rows, q + 2 * kv]);
    assert!(ops::write_kv(&fused, &small, None, (hd, pos0), false).is_err());
}

#[test]
fn attention_is_the_causal_softmax_over_the_cache_with_grouped_heads() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(7);
    // 4 local query heads (global 2..6) over key/value heads 1..3 of groups of 2.
    let (rows, heads, hd, pos0, capacity, kv_heads) = (3, 4, 8, 5, 12, 2);
    let span = HeadSpan {
        first_q: 2,
        first_kv: 1,
        group: 2,
        head_dim: hd,
    };
    let (qc, kc) = (heads * hd, kv_heads * hd);
    // Fused rows [q | k | v]: attention reads only the queries (the cache holds k, v).
    let qkv = rng.normal(rows * (qc + 2 * kc));
    let cache = rng.normal(capacity * 2 * kc);
    let table = rotary_table(capacity, hd);
    for rotary in [false, true] {
        let t = up(&r, &table, [capacity, hd]);
        let got = ops::attention(
            &up(&r, &qkv, [rows, qc + 2 * kc]),
            &up(&r, &cache, [capacity, 2 * kc]),
            rotary.then_some(&t),
            span,
            pos0,
        )
        .unwrap()
        .to_host()
        .unwrap();
        let scale = 1.0 / (hd as f64).sqrt();
        let (mut want, mut tol) = (vec![0.0; rows * qc], vec![0.0; rows * qc]);
        for t in 0..rows {
            let last = pos0 + t;
            for h in 0..heads {
                let kv = (span.first_q + h) / span.group - span.first_kv;
                let raw = &qkv[t * (qc + 2 * kc) + h * hd..][..hd];
                // The query as turned in f64, and each element's error in f32.
                let (qv, dq) = if rotary {
                    turned(raw, &table, last)
                } else {
                    (raw.iter().map(|v| f64::from(*v)).collect(), vec![0.0; hd])
                };
                let (mut s, mut err) = (vec![], 0.0f64);
                for j in 0..=last {
                    let kj = &cache[j * 2 * kc + kv * hd..][..hd];
                    let dot: f64 = qv.iter().zip(kj).map(|(a, b)| a * f64::from(*b)).sum();
                    // The dot and the scale round γ(hd + 1) of the magnitude of the
                    // computed query's products; the query's own error adds Σ |dq k|.
                    let mag: f64 = qv
                        .iter()
                        .zip(&dq)
                        .zip(kj)
                        .map(|((a, d), b)| (a.abs() + d) * f64::from(*b).abs())
                        .sum();
                    let carried: f64 = dq
                        .iter()
                        .zip(kj)
                        .map(|(d, b)| d * f64::from(*b).abs())
                        .sum();
                    s.push(dot * scale);
                    err = err.max((gamma(hd + 1) * mag + carried) * scale);
                }
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let spread = s.iter().map(|x| m - x).fold(0.0, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let total: f64 = w.iter().sum();
                for e in 0..hd {
                    let vals: Vec<f64> = (0..=last)
                        .map(|j| f64::from(cache[j * 2 * kc + kc + kv * hd + e]))
                        .collect();
                    let at = t * qc + h * hd + e;
                    want[at] = w.iter().zip(&vals).map(|(a, b)| a * b).sum::<f64>() / total;
                    let vmax = vals.iter().map(|x| x.abs()).fold(0.0, f64::max);
                    // Each weight is off relatively by e^(2 err) - 1 from the logits plus
                    // exp's 3 + 2|x| ulp; numerator and denominator each carry it, and the
                    // position-ordered sums add γ(positions + 2).
                    let rel = (2.0 * err).exp_m1() + (3.0 + 2.0 * spread) * 2.0 * U;
                    tol[at] = (2.0 * rel + gamma(last + 3)) * vmax;
                }
            }
        }
        close(&got, &want, &tol, &format!("attention, rotary {rotary}"));
    }
    let q2 = up(&r, &qkv, [rows, qc + 2 * kc]);
    let c2 = up(&r, &cache, [capacity, 2 * kc]);
    // A cache without the heads the queries need is refused.
    let bad = HeadSpan {
        first_kv: 2,
        ..span
    };
    assert!(ops::attention(&q2, &c2, None, bad, pos0).is_err());
    // Heads past the kernel's limit are refused, not run.
    let wide = HeadSpan {
        head_dim: ops::MAX_HEAD_DIM + 2,
        ..span
    };
    assert!(ops::attention(&q2, &c2, None, wide, pos0).is_err());
}

#[test]
fn a_vocabulary_shard_larger_than_a_buffer_is_looked_up_band_by_band() {
    // 4 KiB buffers: a [40, 30] table (4,800 bytes) lies in two bands of rows.
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_buffer_size = 4096;
    limits.max_storage_buffer_binding_size = 4096;
    let b = Group::builder()
        .ranks_on_one_adapter(1)
        .required_limits(limits);
    let Some(group) = build(b) else {
        return;
    };
    let r = &group.ranks()[0];
    let (first, n, cols) = (100, 40, 30);
    let table = Rng::new(8).normal(n * cols);
    let t = up(r, &table, [n, cols]);
    assert!(t.buffers().len() > 1, "the table is banded");
    let ids = [100u32, 139, 120, 99, 133, 140, 101];
    let got = ops::embed(&t, first, &Tensor::from_ids(r, &ids).unwrap())
        .unwrap()
        .to_host()
        .unwrap();
    for (k, &id) in ids.iter().enumerate() {
        let row = &got[k * cols..(k + 1) * cols];
        let id = id as usize;
        if (first..first + n).contains(&id) {
            assert_eq!(
                row,
                &table[(id - first) * cols..(id - first + 1) * cols],
                "id {id}"
            );
        } else {
            assert!(
                row.iter().all(|v| v.to_bits() == 0x8000_0000),
                "id {id}: -0.0"
            );
        }
    }
}

/// (From tests/model_hardening.rs: the crate-private write_kv and attention are tested here.)
#[test]
fn positions_and_offsets_past_the_cache_are_refused() {
    let Some(r) = rank() else { return };
    let r = &r;
    let (hd, q, kv) = (4, 8, 4);
    let qkv = Tensor::from_host(r, &vec![0.5; 2 * (q + 2 * kv)], [2, q + 2 * kv]).unwrap();
    let cache = Tensor::from_host(r, &vec![0.0; 8 * 2 * kv], [8, 2 * kv]).unwrap();
    let table = Tensor::from_host(r, &vec![1.0; 8 * hd], [8, hd]).unwrap();
    let span = HeadSpan {
        first_q: 0,
        first_kv: 0,
        group: 2,
        head_dim: hd,
    };
    let x = Tensor::from_host(r, &vec![0.5; 2 * q], [2, q]).unwrap();
    for pos0 in [usize::MAX, usize::MAX - 1, 7] {
        let shape = |e: crate::Result<()>| matches!(e, Err(Error::Shape { .. }));
        assert!(shape(ops::rope(&x, &table, hd, pos0).map(drop)), "{pos0}");
        assert!(
            shape(ops::write_kv(&qkv, &cache, Some(&table), (hd, pos0), false)),
            "{pos0}"
        );
        assert!(
            shape(ops::write_kv(&qkv, &cache, None, (hd, pos0), false)),
            "{pos0}"
        );
        assert!(
            shape(ops::attention(&qkv, &cache, Some(&table), span, pos0).map(drop)),
            "{pos0}"
        );
    }
    // Row 0 of the cache was never written by a refused call.
    assert!(cache.to_host().unwrap().iter().all(|&v| v == 0.0));
    // Vocabulary rows numbered past the u32 token ids.
    let emb = Tensor::from_host(r, &[1.0; 4 * 4], [4, 4]).unwrap();
    let ids = Tensor::from_ids(r, &[0, 1]).unwrap();
    for first in [1usize << 32, (1 << 32) - 3, usize::MAX] {
        let e = ops::embed(&emb, first, &ids).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{first}: {e:?}");
    }
    // The last rows that are numbered within them look up as they should.
    let got = ops::embed(&emb, (1 << 32) - 4, &ids)
        .unwrap()
        .to_host()
        .unwrap();
    assert!(got.iter().all(|v| v.to_bits() == (-0.0f32).to_bits()));
}

/// WGSL's tanh is as accurate as sinh / cosh, each as its exponentials (3 + 2|y| ulp
/// each): near 0 the difference of e^y and e^-y loses the relative bound but keeps an
/// absolute one of a few ulp of 1; near +-1 the quotient of two sums each off by (3 +
/// 2|y|) ulp relatively is off by twice that. An absolute bound covering both, in ulps of
/// 1 (2^-23); the kernels clamp |y| to 10, where tanh is +-1 in f32.
fn tanh_err(y: f64) -> f64 {
    (8.0 + 4.0 * y.abs().min(10.0)) * 2.0 * U
}

/// The f64 attention of one rank's fused rows over its cache with `scores`, and each
/// output's bound (the existing test's derivation, plus the window, the scale and the cap).
#[allow(clippy::too_many_arguments)]
fn reference_attention(
    qkv: &[f32],
    cache: &[f32],
    table: Option<&[f32]>,
    span: HeadSpan,
    pos0: usize,
    (rows, heads, kv_heads): (usize, usize, usize),
    scores: ops::Scores,
) -> (Vec<f64>, Vec<f64>) {
    let hd = span.head_dim;
    let (qc, kc) = (heads * hd, kv_heads * hd);
    let scale = f64::from(scores.scale.unwrap_or(1.0 / (hd as f32).sqrt()));
    let (mut want, mut tol) = (vec![0.0; rows * qc], vec![0.0; rows * qc]);
    for t in 0..rows {
        let last = pos0 + t;
        let first = scores.window.map_or(0, |w| (last + 1).saturating_sub(w));
        for h in 0..heads {
            let kv = (span.first_q + h) / span.group - span.first_kv;
            let raw = &qkv[t * (qc + 2 * kc) + h * hd..][..hd];
            let (qv, dq) = match table {
                Some(table) => turned(raw, table, last),
                None => (raw.iter().map(|v| f64::from(*v)).collect(), vec![0.0; hd]),
            };
            let (mut s, mut err) = (vec![], 0.0f64);
            for j in first..=last {
                let kj = &cache[j * 2 * kc + kv * hd..][..hd];
                let dot: f64 = qv.iter().zip(kj).map(|(a, b)| a * f64::from(*b)).sum();
                // The dot and the scale round γ(hd + 1) of the magnitude of the computed
                // query's products; the query's own error adds Σ |dq k|.
                let mag: f64 = qv
                    .iter()
                    .zip(&dq)
                    .zip(kj)
                    .map(|((a, d), b)| (a.abs() + d) * f64::from(*b).abs())
                    .sum();
                let carried: f64 = dq
                    .iter()
                    .zip(kj)
                    .map(|(d, b)| d * f64::from(*b).abs())
                    .sum();
                let x = dot * scale;
                let ex = (gamma(hd + 1) * mag + carried) * scale;
                match scores.softcap {
                    None => {
                        s.push(x);
                        err = err.max(ex);
                    }
                    Some(cap) => {
                        // tanh(x / cap) * cap has slope <= 1 in x, so x's error passes
                        // as it is; the division rounds u |x / cap| (u |x| after the
                        // product by cap), tanh errs tanh_err (times cap), the product
                        // rounds u |logit|.
                        let cap = f64::from(cap);
                        let logit = (x / cap).tanh() * cap;
                        s.push(logit);
                        let e = ex + U * x.abs() + cap * tanh_err(x / cap) + U * logit.abs();
                        err = err.max(e);
                    }
                }
            }
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let spread = s.iter().map(|x| m - x).fold(0.0, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let total: f64 = w.iter().sum();
            for e in 0..hd {
                let vals: Vec<f64> = (first..=last)
                    .map(|j| f64::from(cache[j * 2 * kc + kc + kv * hd + e]))
                    .collect();
                let at = t * qc + h * hd + e;
                want[at] = w.iter().zip(&vals).map(|(a, b)| a * b).sum::<f64>() / total;
                let vmax = vals.iter().map(|x| x.abs()).fold(0.0, f64::max);
                // Each weight is off relatively by e^(2 err) - 1 from the logits plus exp's
                // 3 + 2|x| ulp; numerator and denominator each carry it, and the
                // position-ordered sums add γ(positions + 2).
                let rel = (2.0 * err).exp_m1() + (3.0 + 2.0 * spread) * 2.0 * U;
                tol[at] = (2.0 * rel + gamma(last - first + 3)) * vmax;
            }
        }
    }
    (want, tol)
}

/// The window, another scale and the soft cap, alone and together, with rotary and without,
/// against the f64 attention within the bound `reference_attention` derives; a query never
/// reads a cache row older than its window (those rows NaN, the bits unchanged); refused
/// options are refused.
#[test]
fn attention_options_window_scale_and_softcap_match_the_f64_attention() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(11);
    // 4 local query heads (global 2..6) over key/value heads 1..3 of groups of 2; rows at
    // positions 5..9, so windows of 1..4 cut every row's view and some longer ones not.
    let (rows, heads, hd, pos0, capacity, kv_heads) = (4, 4, 8, 5, 12, 2);
    let span = HeadSpan {
        first_q: 2,
        first_kv: 1,
        group: 2,
        head_dim: hd,
    };
    let (qc, kc) = (heads * hd, kv_heads * hd);
    // Queries 3x larger than N(0, 1), so the logits (|s| up to ~10) reach the cap's bend.
    let qkv: Vec<f32> = rng
        .normal(rows * (qc + 2 * kc))
        .iter()
        .map(|v| 3.0 * v)
        .collect();
    let cache = rng.normal(capacity * 2 * kc);
    let table = rotary_table(capacity, hd);
    let t_dev = up(&r, &table, [capacity, hd]);
    let q_dev = up(&r, &qkv, [rows, qc + 2 * kc]);
    let c_dev = up(&r, &cache, [capacity, 2 * kc]);
    let cases = [
        ops::Scores {
            window: Some(3),
            ..Default::default()
        },
        ops::Scores {
            window: Some(1),
            ..Default::default()
        },
        ops::Scores {
            window: Some(7),
            ..Default::default()
        },
        ops::Scores {
            scale: Some(0.0625),
            ..Default::default()
        },
        ops::Scores {
            softcap: Some(2.5),
            ..Default::default()
        },
        ops::Scores {
            scale: Some(0.5),
            softcap: Some(4.0),
            window: Some(4),
            ring: false,
        },
    ];
    for scores in cases {
        for rotary in [false, true] {
            let table_used = rotary.then_some(&table[..]);
            let got =
                ops::attention_with(&q_dev, &c_dev, rotary.then_some(&t_dev), span, pos0, scores)
                    .unwrap()
                    .to_host()
                    .unwrap();
            let (want, tol) = reference_attention(
                &qkv,
                &cache,
                table_used,
                span,
                pos0,
                (rows, heads, kv_heads),
                scores,
            );
            let what = format!("attention {scores:?}, rotary {rotary}");
            close(&got, &want, &tol, &what);
            // The plain attention differs (the option does something).
            let plain = ops::attention(&q_dev, &c_dev, rotary.then_some(&t_dev), span, pos0)
                .unwrap()
                .to_host()
                .unwrap();
            assert_ne!(plain, got, "{what}: the same as without it");
            if let Some(w) = scores.window {
                // Rows no query's window reaches poisoned: the same bits.
                let first = (pos0 + 1).saturating_sub(w);
                let mut poisoned = cache.clone();
                poisoned[..first * 2 * kc].fill(f32::NAN);
                let again = ops::attention_with(
                    &q_dev,
                    &up(&r, &poisoned, [capacity, 2 * kc]),
                    rotary.then_some(&t_dev),
                    span,
                    pos0,
                    scores,
                )
                .unwrap()
                .to_host()
                .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&again),
                    bits(&got),
                    "{what}: read rows before the window"
                );
            }
        }
    }
    // A window at least the positions is the plain attention, bit for bit.
    let wide = ops::Scores {
        window: Some(pos0 + rows),
        ..Default::default()
    };
    let a = ops::attention_with(&q_dev, &c_dev, None, span, pos0, wide).unwrap();
    let b = ops::attention(&q_dev, &c_dev, None, span, pos0).unwrap();
    assert_eq!(a.to_host().unwrap(), b.to_host().unwrap());
    for bad in [
        ops::Scores {
            window: Some(0),
            ..Default::default()
        },
        ops::Scores {
            scale: Some(f32::NAN),
            ..Default::default()
        },
        ops::Scores {
            scale: Some(-1.0),
            ..Default::default()
        },
        ops::Scores {
            softcap: Some(0.0),
            ..Default::default()
        },
        ops::Scores {
            softcap: Some(f32::INFINITY),
            ..Default::default()
        },
    ] {
        let e = ops::attention_with(&q_dev, &c_dev, None, span, pos0, bad).map(drop);
        assert!(
            matches!(e, Err(Error::InvalidArgument { .. })),
            "{bad:?}: {e:?}"
        );
    }
}

/// Each query and key head normed with its weight (Qwen3's q_norm, k_norm), the value
/// heads copied, against f64 within the bound of rms_norm over a head.
#[test]
fn head_rms_norm_norms_each_query_and_key_head_and_copies_the_values() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(13);
    for (rows, heads, kv_heads, hd) in [(3, 4, 2, 8), (2, 3, 1, 6), (1, 2, 2, 128)] {
        let cols = (heads + 2 * kv_heads) * hd;
        let x = rng.normal(rows * cols);
        let (wq, wk) = (rng.normal(hd), rng.normal(hd));
        let eps = 1e-6f32;
        let got = ops::head_rms_norm(
            &up(&r, &x, [rows, cols]),
            &up(&r, &wq, [1, hd]),
            &up(&r, &wk, [1, hd]),
            heads,
            hd,
            eps,
        )
        .unwrap()
        .to_host()
        .unwrap();
        let (mut want, mut tol) = (vec![], vec![]);
        for (i, head) in x.chunks(hd).enumerate() {
            let h = i % (heads + 2 * kv_heads);
            if h >= heads + kv_heads {
                want.extend(head.iter().map(|v| f64::from(*v)));
                tol.extend(std::iter::repeat_n(0.0, hd));
                continue;
            }
            let w = if h < heads { &wq } else { &wk };
            let row: Vec<f64> = head.iter().map(|&v| f64::from(v)).collect();
            let inv =
                1.0 / (row.iter().map(|v| v * v).sum::<f64>() / hd as f64 + f64::from(eps)).sqrt();
            for (k, v) in row.iter().enumerate() {
                let y = v * inv * f64::from(w[k]);
                want.push(y);
                // The sum of squares errs by γ(hd) relatively; the mean, the epsilon, the
                // root, the division and the two products add 6 roundings.
                tol.push(gamma(hd + 6) * y.abs());
            }
        }
        close(
            &got,
            &want,
            &tol,
            &format!("head_rms_norm {heads}+{kv_heads} heads of {hd}"),
        );
    }
    // Columns that are not heads + 2 kv heads, and weights of another length, are refused.
    let x = up(&r, &rng.normal(2 * 5 * 4), [2, 20]);
    let w = up(&r, &rng.normal(4), [1, 4]);
    let e = ops::head_rms_norm(&x, &w, &w, 2, 4, 1e-6).map(drop);
    assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
    let w3 = up(&r, &rng.normal(3), [1, 3]);
    let e = ops::head_rms_norm(&x, &w, &w3, 3, 4, 1e-6).map(drop);
    assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
}

/// head_rms_norm's backward is RMSNorm's backward on each query and key head, a row of
/// `head_dim` with its weight: dL/dx and the weight's terms `dy x r` each within
/// `reference::rms_norm_backward`'s bound for that one row; the value heads' dy passed
/// through and their terms 0, both exactly.
#[test]
fn head_rms_norm_backward_is_rms_norm_backward_of_each_head() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(17);
    for (rows, heads, kv_heads, hd) in [(3, 4, 2, 8), (2, 3, 1, 6), (1, 2, 2, 128)] {
        let cols = (heads + 2 * kv_heads) * hd;
        let (x, dy) = (rng.normal(rows * cols), rng.normal(rows * cols));
        let w = rng.normal(2 * hd);
        let eps = 1e-6f32;
        let (dx, terms) = ops::head_rms_norm_backward(
            &up(&r, &x, [rows, cols]),
            &up(&r, &w, [1, 2 * hd]),
            &up(&r, &dy, [rows, cols]),
            (heads, hd),
            eps,
        )
        .unwrap();
        let (dx, terms) = (dx.to_host().unwrap(), terms.to_host().unwrap());
        let (mut want, mut tol) = ((vec![], vec![]), (vec![], vec![]));
        for (i, (xh, dyh)) in x.chunks(hd).zip(dy.chunks(hd)).enumerate() {
            let h = i % (heads + 2 * kv_heads);
            if h >= heads + kv_heads {
                want.0.extend(dyh.iter().map(|&v| f64::from(v)));
                want.1.extend(std::iter::repeat_n(0.0, hd));
                tol.0.extend(std::iter::repeat_n(0.0, hd));
                tol.1.extend(std::iter::repeat_n(0.0, hd));
                continue;
            }
            let wh = if h < heads { &w[..hd] } else { &w[hd..] };
            let (d, t) = crate::reference::rms_norm_backward(xh, wh, dyh, [1, hd], eps);
            want.0.extend(d.value);
            tol.0.extend(d.bound);
            want.1.extend(t.value);
            tol.1.extend(t.bound);
        }
        let what = format!("head_rms_norm_backward {heads}+{kv_heads} heads of {hd}");
        close(&dx, &want.0, &tol.0, &format!("{what}: dx"));
        close(&terms, &want.1, &tol.1, &format!("{what}: terms"));
    }
}

/// GeGLU: torch's tanh-approximated gelu of the gate times up, against f64 over gates from
/// -30 to 30 (the tails, where tanh saturates, included).
#[test]
fn gelu_tanh_mul_is_torch_s_tanh_gelu_of_the_gate_times_up() {
    let Some(r) = rank() else { return };
    let mut rng = Rng::new(17);
    let (rows, n) = (4, 61);
    let mut x = rng.normal(rows * 2 * n);
    for (j, g) in x[..n].iter_mut().enumerate() {
        *g = -30.0 + j as f32;
    }
    let got = ops::gelu_tanh_mul(&up(&r, &x, [rows, 2 * n]))
        .unwrap()
        .to_host()
        .unwrap();
    let (beta, kappa) = ((2.0 / std::f64::consts::PI).sqrt(), 0.044715);
    let (mut want, mut tol) = (vec![], vec![]);
    for row in x.chunks(2 * n) {
        for j in 0..n {
            let (g, u) = (f64::from(row[j]), f64::from(row[n + j]));
            let inner = beta * (g + kappa * g * g * g);
            let gelu = 0.5 * g * (1.0 + inner.tanh());
            want.push(gelu * u);
            // The inner sum: g^3 (2 roundings), kappa g^3, the sum, beta times it, and the
            // constants' own roundings: γ(7) of its terms' magnitude; tanh has slope <= 1
            // and errs tanh_err; 1 + tanh rounds u 2; 0.5 g is exact; the two products
            // round γ(2) of the result.
            let d_inner = gamma(7) * beta * (g.abs() + kappa * g.abs().powi(3));
            let d_gelu = 0.5 * g.abs() * (d_inner.min(2.0) + tanh_err(inner) + 2.0 * U)
                + gamma(2) * gelu.abs();
            tol.push(d_gelu * u.abs());
        }
    }
    close(&got, &want, &tol, "gelu_tanh_mul");
    // Not silu's: the two differ past the bound.
    let silu = ops::silu_mul(&up(&r, &x, [rows, 2 * n]))
        .unwrap()
        .to_host()
        .unwrap();
    assert_ne!(silu, got);
    let odd = up(&r, &x[..rows * 3], [rows, 3]);
    assert!(matches!(ops::gelu_tanh_mul(&odd), Err(Error::Shape { .. })));
}
