//! The backward of causal attention on one rank (`shaders/attention_backward.wgsl`): the
//! gradients of [`attention_with`](super::attention_with)'s fused query/key/value rows for
//! a whole sequence at positions `0..rows`, given its output and the output's gradient.
//! Each query head's work is its own: the queries' gradients, and each head's shares of
//! its key/value head's; [`fold_kv`] sums the shares of a key/value head's query heads in
//! head order (after an all-gather when ranks share a key/value head), so that nothing
//! depends on how the heads are split.

use super::{check, check_table, run, HeadSpan, Scores, MAX_HEAD_DIM};
use crate::error::{Error, Result};
use crate::kernels::params::{AttentionParams, FusedRows};
use crate::kernels::Shader;
use crate::tensor::Tensor;

/// One rank's backward: `dqkv`, the gradient of the fused rows with the query columns
/// written (the key and value columns are [`fold_kv`]'s), and `shares`, `[rows, heads x 2
/// x head_dim]`: each local query head's share of its key/value head's key and value
/// gradients (dk then dv, the key's turned back before rotary).
#[derive(Debug)]
pub(crate) struct AttentionBackward {
    pub dqkv: Tensor,
    pub shares: Tensor,
}

/// The parameters of `qkv: [rows, (heads + 2 kv_heads) x head_dim]` at positions
/// `0..rows`, checked against `attended` and `d_out` (`[rows, heads x head_dim]`) and the
/// table.
fn params(
    op: &'static str,
    qkv: &Tensor,
    [attended, d_out]: [&Tensor; 2],
    table: Option<&Tensor>,
    (span, kv_heads): (HeadSpan, usize),
    scores: Scores,
) -> Result<AttentionParams> {
    scores.check(op)?;
    let hd = span.head_dim;
    if hd == 0 || !hd.is_multiple_of(2) || hd > MAX_HEAD_DIM || kv_heads == 0 {
        return Err(Error::invalid(
            op,
            format!("{kv_heads} key/value heads of {hd} (even, up to {MAX_HEAD_DIM})"),
        ));
    }
    let [rows, cols] = qkv.shape();
    let heads = (cols / hd).saturating_sub(2 * kv_heads);
    check(
        op,
        heads > 0 && cols == (heads + 2 * kv_heads) * hd && u32::try_from(rows).is_ok(),
        format!("fused rows [*, (heads + 2 x {kv_heads}) x {hd}]"),
        qkv.shape(),
    )?;
    for t in [attended, d_out] {
        check(
            op,
            t.shape() == [rows, heads * hd],
            format!("[{rows}, {}]", heads * hd),
            t.shape(),
        )?;
    }
    if let Some(t) = table {
        check_table(op, t, hd, rows)?;
    }
    let group = span.group.max(1);
    let (lo, hi) = (span.first_q / group, (span.first_q + heads - 1) / group);
    if lo < span.first_kv || hi >= span.first_kv + kv_heads {
        return Err(Error::invalid(
            op,
            format!(
                "query heads {}..{} need key/value heads {lo}..={hi}, the rows hold {}..{}",
                span.first_q,
                span.first_q + heads,
                span.first_kv,
                span.first_kv + kv_heads
            ),
        ));
    }
    Ok(AttentionParams {
        rows: FusedRows {
            cols: cols as u32,
            heads: heads as u32,
            head_dim: hd as u32,
            kv_cols: (kv_heads * hd) as u32,
            rotate: u32::from(table.is_some()),
            ..FusedRows::default()
        },
        group: group as u32,
        h0: span.first_q as u32,
        k0: span.first_kv as u32,
        positions: rows as u32,
        ..scores.params(hd)
    })
}

/// The backward of the causal attention of `qkv`'s rows at positions `0..rows` (no ring,
/// no cache: the keys and values are `qkv`'s own), whose output was `attended`, given
/// `d_out` = dL/d(output); `kv_heads` of `qkv`'s heads are key/value heads.
///
/// # Errors
/// [`Error::Shape`] for tensors that disagree; [`Error::InvalidArgument`] for heads the
/// kernel does not take or query heads whose key/value heads the rows lack; wgpu errors.
pub(crate) fn attention_backward(
    qkv: &Tensor,
    attended: &Tensor,
    d_out: &Tensor,
    table: Option<&Tensor>,
    (span, kv_heads): (HeadSpan, usize),
    scores: Scores,
) -> Result<AttentionBackward> {
    let op = "attention_backward";
    let p = params(op, qkv, [attended, d_out], table, (span, kv_heads), scores)?;
    let rank = qkv.rank();
    let [rows, cols] = qkv.shape();
    let heads = p.rows.heads as usize;
    let hd = span.head_dim;
    let items = rows * heads;
    let stats = Tensor::output(rank, [items, 3], op)?;
    // The table binding is any buffer without rotary positions.
    let table = table.unwrap_or(qkv);
    let shader = |entry| (Shader::AttentionBackward, entry);
    run(
        op,
        shader("attention_stats"),
        &[qkv, table, d_out, attended],
        &stats,
        items,
        p,
    )?;
    let dqkv = Tensor::output(rank, [rows, cols], op)?;
    let inputs = [qkv, table, d_out, &stats];
    run(op, shader("attention_dq"), &inputs, &dqkv, items, p)?;
    let shares = Tensor::output(rank, [rows, heads * 2 * hd], op)?;
    run(op, shader("attention_dkv"), &inputs, &shares, items, p)?;
    Ok(AttentionBackward { dqkv, shares })
}

/// Writes the key and value columns of `dqkv` (`[rows, (heads + 2 kv_heads) x
/// head_dim]`, key/value heads from `span.first_kv`): each key/value head's dk and dv,
/// the sum of its query heads' `shares` in head order. `shares` is `[rows, n x 2 x
/// head_dim]` for the query heads `first_share..first_share + n`, every head of each
/// group included.
///
/// # Errors
/// [`Error::Shape`] for tensors that disagree; [`Error::InvalidArgument`] when the shares
/// lack a head of a group; wgpu errors.
pub(crate) fn fold_kv(
    shares: &Tensor,
    first_share: usize,
    dqkv: &Tensor,
    (span, kv_heads): (HeadSpan, usize),
) -> Result<()> {
    let op = "attention_backward.fold";
    let hd = span.head_dim;
    let group = span.group.max(1);
    let [rows, cols] = dqkv.shape();
    let n = shares.shape()[1] / (2 * hd).max(1);
    check(
        op,
        hd > 0 && shares.shape() == [rows, n * 2 * hd] && cols > 2 * kv_heads * hd,
        format!("shares [{rows}, heads x 2 x {hd}] for rows of {cols} columns"),
        shares.shape(),
    )?;
    let (need_lo, need_hi) = (span.first_kv * group, (span.first_kv + kv_heads) * group);
    if need_lo < first_share || need_hi > first_share + n {
        return Err(Error::invalid(
            op,
            format!(
                "key/value heads {}..{} need the shares of query heads {need_lo}..{need_hi}; \
                 given {first_share}..{}",
                span.first_kv,
                span.first_kv + kv_heads,
                first_share + n
            ),
        ));
    }
    let p = AttentionParams {
        rows: FusedRows {
            cols: cols as u32,
            heads: n as u32,
            head_dim: hd as u32,
            kv_cols: (kv_heads * hd) as u32,
            ..FusedRows::default()
        },
        group: group as u32,
        h0: first_share as u32,
        k0: span.first_kv as u32,
        ..AttentionParams::default()
    };
    let count = rows * 2 * kv_heads * hd;
    run(
        op,
        (Shader::AttentionBackward, "attention_fold"),
        &[shares, shares, shares, shares],
        dqkv,
        count,
        p,
    )
}
