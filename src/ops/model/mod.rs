//! The transformer kernels on one rank: RMSNorm and LayerNorm (`shaders/norms.wgsl`), the
//! embedding lookup of a vocabulary shard (`embedding.wgsl`), rotary positions
//! (`rope.wgsl`), SwiGLU and GeGLU (`swiglu.wgsl`), the per-head query/key RMSNorm
//! (`norms.wgsl`), and causal attention over a key/value cache (`kv_cache.wgsl`,
//! `attention.wgsl`), optionally windowed, rescaled and soft-capped. Their tensors must each be one buffer (one band), except the
//! embedding table (a large vocabulary shard is looked up band by band); a tensor larger
//! than a buffer may be is refused with [`Error::BufferTooLarge`].

mod attention_backward;
mod cross_entropy;

pub(crate) use attention_backward::{attention_backward, fold_kv};
pub(crate) use cross_entropy::{cross_entropy_grad, cross_entropy_stats, NO_TARGET};

use super::same_rank;
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::{
    AttentionParams, EmbedGradParams, EmbedParams, FusedRows, KvWriteParams, NormParams,
    PieceParams, RopeParams, SiluMulParams,
};
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::rank::Rank;
use crate::tensor::Tensor;

fn key(shader: Shader, entry: &'static str, weights: DType) -> PipelineKey {
    PipelineKey {
        shader,
        entry,
        constants: Vec::new(),
        weights,
    }
}

/// `t`'s one buffer, or an error naming `op`.
fn single<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a wgpu::Buffer> {
    t.require_f32(op)?;
    match t.bands() {
        [band] => Ok(band.buffer()),
        bands => Err(Error::BufferTooLarge {
            op,
            bytes: (t.len() * 4) as u64,
            limit: (bands[0].rows.len() * t.shape()[1] * 4) as u64,
            limit_name: "max_storage_buffer_binding_size (the model kernels take one buffer)",
        }),
    }
}

/// Runs `entry` of `shader` over `count` items into `out`, reading `inputs` (as many as
/// the shader binds, [`Shader::inputs`]; unused slots bind the first).
fn run(
    op: &'static str,
    (shader, entry): (Shader, &'static str),
    inputs: &[&Tensor],
    out: &Tensor,
    count: usize,
    params: impl PieceParams,
) -> Result<()> {
    let rank = out.rank();
    let mut bufs = Vec::with_capacity(5);
    for t in inputs {
        same_rank(op, rank, t.rank())?;
        bufs.push(single(op, t)?);
    }
    while bufs.len() < shader.inputs() {
        bufs.push(bufs[0]);
    }
    bufs.push(single(op, out)?);
    dispatch(
        rank,
        op,
        &key(shader, entry, DType::F32),
        &bufs,
        count,
        params,
    )
}

/// Dispatches `key` over `count` items of `bufs` with `params`, in as many pieces as the
/// rank's grid limit needs.
fn dispatch(
    rank: &Rank,
    op: &'static str,
    key: &PipelineKey,
    bufs: &[&wgpu::Buffer],
    count: usize,
    params: impl PieceParams,
) -> Result<()> {
    for piece in pieces(count, rank.limits().max_compute_workgroups_per_dimension) {
        rank.dispatch(op, key, bufs, &params.at(&piece), piece.grid)?;
    }
    Ok(())
}

fn check(op: &'static str, ok: bool, expected: String, got: [usize; 2]) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::shape(op, expected, fmt_shape(got)))
    }
}

/// `entry` (a norm) of every row of `x: [rows, cols]` with `params` (weight, and bias
/// for LayerNorm), each `[1, cols]`.
fn norm(entry: &'static str, x: &Tensor, params: &[&Tensor], eps: f32) -> Result<Tensor> {
    let [rows, cols] = x.shape();
    for t in params {
        check(
            entry,
            t.shape() == [1, cols],
            format!("[1, {cols}]"),
            t.shape(),
        )?;
    }
    let out = Tensor::output(x.rank(), x.shape(), entry)?;
    let p = NormParams {
        cols: cols as u32,
        eps: eps.to_bits(),
        ..NormParams::default()
    };
    let inputs: Vec<&Tensor> = std::iter::once(x).chain(params.iter().copied()).collect();
    run(entry, (Shader::Norms, entry), &inputs, &out, rows, p)?;
    Ok(out)
}

/// RMSNorm of every row of `x: [rows, cols]` with `weight: [1, cols]`.
///
/// # Errors
/// [`Error::Shape`] for a weight of another width; wgpu errors.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    norm("rms_norm", x, &[weight], eps)
}

/// LayerNorm of every row of `x: [rows, cols]` with `weight` and `bias: [1, cols]`.
///
/// # Errors
/// [`Error::Shape`] for a weight or bias of another width; wgpu errors.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    norm("layer_norm", x, &[weight, bias], eps)
}

/// RMSNorm's backward at `x: [rows, cols]` with `weight: [1, cols]` given `dy`, the
/// output's gradient: `(dL/dx, dL/dweight)`, the latter `[1, cols]`, its terms summed over
/// the rows in order ([`matmul_tn`](crate::ops::matmul_tn) of a column of ones).
///
/// # Errors
/// [`Error::Shape`] for a weight of another width or a `dy` of another shape; wgpu
/// errors.
pub fn rms_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let (dx, dw, _) = norm_backward(("rms_norm_backward", "rms_norm_terms"), x, weight, dy, eps)?;
    Ok((dx, dw))
}

/// LayerNorm's backward at `x: [rows, cols]` with `weight: [1, cols]` given `dy`, the
/// output's gradient: `(dL/dx, dL/dweight, dL/dbias)`, the last two `[1, cols]`, summed
/// over the rows in order ([`matmul_tn`](crate::ops::matmul_tn) of a column of ones).
///
/// # Errors
/// [`Error::Shape`] for a weight of another width or a `dy` of another shape; wgpu
/// errors.
pub fn layer_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (dx, dw, ones) = norm_backward(
        ("layer_norm_backward", "layer_norm_terms"),
        x,
        weight,
        dy,
        eps,
    )?;
    let db = super::matmul_tn(&ones, dy)?;
    Ok((dx, dw, db))
}

/// A norm's backward by its two entries (`dx`, and the weight gradient's terms): dL/dx,
/// dL/dweight (the terms summed over the rows in order), and the column of ones summed by.
fn norm_backward(
    (op, terms_entry): (&'static str, &'static str),
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let [rows, cols] = x.shape();
    check(
        op,
        weight.shape() == [1, cols],
        format!("weight [1, {cols}]"),
        weight.shape(),
    )?;
    check(
        op,
        dy.shape() == x.shape(),
        format!("dy {}", fmt_shape(x.shape())),
        dy.shape(),
    )?;
    let p = NormParams {
        cols: cols as u32,
        eps: eps.to_bits(),
        ..NormParams::default()
    };
    let dx = Tensor::output(x.rank(), x.shape(), op)?;
    run(op, (Shader::Norms, op), &[x, weight, dy], &dx, rows, p)?;
    let terms = Tensor::output(x.rank(), x.shape(), op)?;
    run(
        op,
        (Shader::Norms, terms_entry),
        &[x, weight, dy],
        &terms,
        rows,
        p,
    )?;
    let ones = Tensor::from_host(x.rank(), &vec![1.0; rows], [rows, 1])?;
    let dw = super::matmul_tn(&ones, &terms)?;
    Ok((dx, dw, ones))
}

/// The embedding lookup's backward: for `rows` vocabulary rows from id `first` (a rank's
/// table shard), each row's sum of the rows of `dy: [tokens, cols]` whose token has its
/// id, in token order from 0 (`ids`: `[1, tokens]`, [`Tensor::from_ids`]): `[rows, cols]`,
/// exactly the f32 sum in that order (no atomics: one invocation per vocabulary row).
///
/// # Errors
/// [`Error::Shape`] unless `ids` is one row of `dy`'s tokens; [`Error::InvalidArgument`]
/// for rows past the 2^32 token ids; allocation and wgpu errors.
pub fn embed_backward(dy: &Tensor, first: usize, rows: usize, ids: &Tensor) -> Result<Tensor> {
    let op = "embed_backward";
    let [tokens, cols] = dy.shape();
    check(
        op,
        ids.shape() == [1, tokens],
        format!("ids [1, {tokens}]"),
        ids.shape(),
    )?;
    if (first as u64).saturating_add(rows as u64) > 1 << 32 {
        return Err(Error::invalid(
            op,
            format!("rows {first}.. + {rows} past the 2^32 ids"),
        ));
    }
    same_rank(op, dy.rank(), ids.rank())?;
    let (d, i) = (single(op, dy)?, single(op, ids)?);
    let out = Tensor::output(dy.rank(), [rows, cols], op)?;
    for band in out.bands() {
        let p = EmbedGradParams {
            cols: cols as u32,
            first: (first + band.rows.start) as u32,
            tokens: tokens as u32,
            ..EmbedGradParams::default()
        };
        let key = key(Shader::EmbeddingBackward, op, DType::F32);
        dispatch(
            dy.rank(),
            op,
            &key,
            &[d, i, d, band.buffer()],
            band.rows.len(),
            p,
        )?;
    }
    Ok(out)
}

/// The rows of `table: [n, cols]` (vocabulary rows `first..first + n`) that `ids`
/// selects, `-0.0` (the additive identity) for ids outside them: `[ids.len(), cols]`.
/// `ids` is `[1, tokens]` holding token ids as `u32` bits ([`Tensor::from_ids`]). The
/// table may be banded (a large vocabulary shard): each band fills the rows it holds.
///
/// # Errors
/// [`Error::Shape`] unless `ids` is one row; [`Error::InvalidArgument`] for rows past the
/// 2^32 token ids (`first + n > 2^32`); wgpu errors.
pub fn embed(table: &Tensor, first: usize, ids: &Tensor) -> Result<Tensor> {
    let op = "embed";
    let [n, cols] = table.shape();
    check(
        op,
        ids.shape()[0] == 1,
        "ids [1, tokens]".into(),
        ids.shape(),
    )?;
    let tokens = ids.shape()[1];
    // Token ids are u32: the table's rows must be numbered within them (counted in u64:
    // 2^32 is past a 32-bit `usize`, as on wasm32).
    let last = (first as u64).checked_add(n as u64);
    if last.is_none_or(|last| last > 1 << 32) {
        return Err(Error::invalid(
            op,
            format!("vocabulary rows {first}..{first}+{n} are past the 2^32 token ids"),
        ));
    }
    // The first band writes -0.0 to the rows it does not hold, the others their own rows.
    let out = Tensor::output(table.rank(), [tokens, cols], op)?;
    let rank = out.rank();
    same_rank(op, rank, ids.rank())?;
    let (ids_buf, out_buf) = (single(op, ids)?, single(op, &out)?);
    // The table may be half precision (read through its format's prelude,
    // shaders/weights_*.wgsl).
    debug_assert_eq!(table.bands().iter().map(|b| b.rows.len()).sum::<usize>(), n);
    for (i, band) in table.bands().iter().enumerate() {
        // Each band through its type's prelude (a table's bands share one type but for
        // stacked parts, Tensor::stack_rows).
        let key = key(Shader::Embedding, "embed", band.dtype);
        let bufs = [band.buffer(), ids_buf, ids_buf, out_buf];
        let p = EmbedParams {
            cols: cols as u32,
            first: (first + band.rows.start) as u32,
            rows: band.rows.len() as u32,
            fill: u32::from(i == 0),
            ..EmbedParams::default()
        };
        dispatch(rank, op, &key, &bufs, tokens * cols, p)?;
    }
    Ok(out)
}

/// Rotary positions (rotate-half) on `x: [rows, heads * head_dim]`, row `t` at position
/// `pos0 + t`, with the rotary `table: [positions, head_dim]` (each row the cosines of
/// the position's `head_dim / 2` angles, then their sines).
///
/// # Errors
/// [`Error::Shape`] when the columns are not `heads * head_dim`, `head_dim` is odd, or
/// the table does not reach `pos0 + rows`; wgpu errors.
pub fn rope(x: &Tensor, table: &Tensor, head_dim: usize, pos0: usize) -> Result<Tensor> {
    let op = "rope";
    let [rows, cols] = x.shape();
    let fits = head_dim > 0 && head_dim.is_multiple_of(2) && cols.is_multiple_of(head_dim);
    check(
        op,
        fits,
        format!("[*, heads x {head_dim}] (even)"),
        x.shape(),
    )?;
    check_table(op, table, head_dim, end(op, pos0, rows)?)?;
    let heads = cols / head_dim;
    let out = Tensor::output(x.rank(), x.shape(), op)?;
    let p = RopeParams {
        cols: cols as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        pos0: pos0 as u32,
        ..RopeParams::default()
    };
    run(
        op,
        (Shader::Rope, "rope"),
        &[x, table],
        &out,
        rows * heads * (head_dim / 2),
        p,
    )?;
    Ok(out)
}

/// The position after `rows` rows from `pos0`, or an error when it overflows.
fn end(op: &'static str, pos0: usize, rows: usize) -> Result<usize> {
    pos0.checked_add(rows).ok_or_else(|| {
        Error::shape(
            op,
            "positions within the cache and the table",
            format!("{rows} rows from position {pos0}"),
        )
    })
}

fn check_table(op: &'static str, table: &Tensor, head_dim: usize, positions: usize) -> Result<()> {
    let ok = table.shape()[1] == head_dim && table.shape()[0] >= positions;
    check(
        op,
        ok,
        format!("a rotary table [>= {positions}, {head_dim}]"),
        table.shape(),
    )
}

/// SwiGLU: `silu(gate) * up` for `x = [gate | up]: [rows, 2 n]`, giving `[rows, n]`.
///
/// # Errors
/// [`Error::Shape`] for an odd column count; wgpu errors.
pub fn silu_mul(x: &Tensor) -> Result<Tensor> {
    gated("silu_mul", x)
}

/// GeGLU: `gelu(gate) * up` for `x = [gate | up]: [rows, 2 n]`, giving `[rows, n]`, gelu
/// by its tanh approximation as torch's `gelu(approximate='tanh')` (Hugging Face's
/// `gelu_pytorch_tanh`): `0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3)))`.
///
/// # Errors
/// [`Error::Shape`] for an odd column count; wgpu errors.
pub fn gelu_tanh_mul(x: &Tensor) -> Result<Tensor> {
    gated("gelu_tanh_mul", x)
}

/// The gated activation `op` (an entry of `swiglu.wgsl`) of `x = [gate | up]`.
fn gated(op: &'static str, x: &Tensor) -> Result<Tensor> {
    let [rows, cols] = x.shape();
    check(op, cols % 2 == 0, "[*, 2 n]".into(), x.shape())?;
    let n = cols / 2;
    let out = Tensor::output(x.rank(), [rows, n], op)?;
    let p = SiluMulParams {
        cols: n as u32,
        ..SiluMulParams::default()
    };
    run(op, (Shader::SiluMul, op), &[x], &out, rows * n, p)?;
    Ok(out)
}

/// The backward of [`silu_mul`] (`entry` `silu_mul_backward`) or [`gelu_tanh_mul`]
/// (`gelu_tanh_mul_backward`) at `x = [gate | up]: [rows, 2 n]` given `d_out: [rows, n]`:
/// `[d gate | d up]`, `[rows, 2 n]`.
pub(crate) fn gated_backward(entry: &'static str, x: &Tensor, d_out: &Tensor) -> Result<Tensor> {
    let [rows, cols] = x.shape();
    let n = cols / 2;
    check(
        entry,
        cols % 2 == 0 && d_out.shape() == [rows, n],
        format!(
            "[gate | up] of [{rows}, 2 x {}] beside dL/d(out)",
            d_out.shape()[1]
        ),
        x.shape(),
    )?;
    let out = Tensor::output(x.rank(), [rows, cols], entry)?;
    let p = SiluMulParams {
        cols: n as u32,
        ..SiluMulParams::default()
    };
    run(
        entry,
        (Shader::SiluMul, entry),
        &[x, d_out],
        &out,
        rows * n,
        p,
    )?;
    Ok(out)
}

/// Where one rank's attention heads sit among the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// Global index of the rank's first query head.
    pub first_q: usize,
    /// Global index of the first key/value head in the rank's cache.
    pub first_kv: usize,
    /// Query heads per key/value head.
    pub group: usize,
    /// Size of a head.
    pub head_dim: usize,
}

/// Fused query/key/value rows `qkv: [rows, q + 2 kv]` (`[q | k | v]`, heads of
/// `head_dim`) from position `pos0` beside a `cache: [capacity, 2 kv]` (rows `[k | v]`;
/// with `ring`, a ring of `capacity` rows, position `p` in row `p % capacity`) and an
/// optional rotary `table`, checked: the kernels' shared parameters.
fn fused_rows(
    op: &'static str,
    qkv: &Tensor,
    cache: &Tensor,
    table: Option<&Tensor>,
    (hd, pos0): (usize, usize),
    ring: bool,
) -> Result<FusedRows> {
    let (cols, cache_cols) = (qkv.shape()[1], cache.shape()[1]);
    let kv = cache_cols / 2;
    let ok = hd > 0
        && hd.is_multiple_of(2)
        && kv > 0
        && cache_cols.is_multiple_of(2)
        && kv.is_multiple_of(hd)
        && cols > cache_cols
        && (cols - cache_cols).is_multiple_of(hd);
    check(
        op,
        ok,
        format!("fused rows [*, (heads + 2 kv_heads) x {hd}] beside a cache [*, 2 kv_heads x {hd}] of {cache_cols} columns"),
        qkv.shape(),
    )?;
    // The cache (a ring: the rows) and the table must reach the last row's position, which
    // the kernels take as a u32.
    let end = end(op, pos0, qkv.shape()[0])?;
    let need = if ring { qkv.shape()[0] } else { end };
    check(
        op,
        cache.shape()[0] >= need && u32::try_from(end).is_ok(),
        format!("a cache of >= {need} rows, positions within u32"),
        cache.shape(),
    )?;
    if let Some(t) = table {
        check_table(op, t, hd, end)?;
    }
    Ok(FusedRows {
        cols: cols as u32,
        heads: ((cols - cache_cols) / hd) as u32,
        head_dim: hd as u32,
        pos0: pos0 as u32,
        kv_cols: kv as u32,
        rotate: u32::from(table.is_some()),
        ring: if ring { cache.shape()[0] as u32 } else { 0 },
        ..FusedRows::default()
    })
}

/// Writes the keys and values of fused query/key/value rows `qkv: [rows, q + 2 kv]`
/// (`[q | k | v]`, heads of `head_dim`) into rows `pos0..` of `cache: [capacity, 2 kv]`
/// (rows `[k | v]`; with `ring`, position `p` into row `p % capacity`), the keys turned by
/// the rotary `table` when there is one (see [`rope`]).
///
/// # Errors
/// [`Error::Shape`] when the widths disagree or the cache or table is too short; wgpu
/// errors.
pub(crate) fn write_kv(
    qkv: &Tensor,
    cache: &Tensor,
    table: Option<&Tensor>,
    (head_dim, pos0): (usize, usize),
    ring: bool,
) -> Result<()> {
    let op = "write_kv";
    let rows = fused_rows(op, qkv, cache, table, (head_dim, pos0), ring)?;
    let items = qkv.shape()[0] * rows.kv_cols as usize / 2;
    let p = KvWriteParams {
        rows,
        ..KvWriteParams::default()
    };
    let inputs: Vec<&Tensor> = std::iter::once(qkv).chain(table).collect();
    run(op, (Shader::KvCache, "kv_write"), &inputs, cache, items, p)
}

/// RMSNorm of each query and each key head of fused rows `qkv: [rows, q + 2 kv]`
/// (`[q | k | v]`, `heads` query heads of `head_dim`, then as many key heads as value
/// heads), as Hugging Face's RMSNorm over the head (Qwen3's `q_norm`, `k_norm`):
/// `x / sqrt(mean(x^2) + eps) * w` in f32, `w` = `q_weight` for the query heads and
/// `k_weight` for the key heads (each `[1, head_dim]`, shared by the heads); the value
/// heads are copied as they are. Gives new fused rows.
///
/// # Errors
/// [`Error::Shape`] when the columns are not `(heads + 2 kv) x head_dim` for some kv
/// heads or a weight is not `[1, head_dim]`; wgpu errors.
pub(crate) fn head_rms_norm(
    qkv: &Tensor,
    q_weight: &Tensor,
    k_weight: &Tensor,
    heads: usize,
    head_dim: usize,
    eps: f32,
) -> Result<Tensor> {
    let op = "head_rms_norm";
    let [rows, cols] = qkv.shape();
    let per_row = fused_heads(op, qkv, heads, head_dim)?;
    for w in [q_weight, k_weight] {
        check(
            op,
            w.shape() == [1, head_dim],
            format!("a weight [1, {head_dim}]"),
            w.shape(),
        )?;
    }
    let out = Tensor::output(qkv.rank(), qkv.shape(), op)?;
    let p = NormParams {
        cols: cols as u32,
        eps: eps.to_bits(),
        head_dim: head_dim as u32,
        heads: heads as u32,
        ..NormParams::default()
    };
    let inputs = [qkv, q_weight, k_weight];
    run(op, (Shader::Norms, op), &inputs, &out, rows * per_row, p)?;
    Ok(out)
}

/// The heads of each of `qkv`'s fused rows (`heads` query heads, then as many key heads as
/// value heads, each of `head_dim`), checked.
fn fused_heads(op: &'static str, qkv: &Tensor, heads: usize, head_dim: usize) -> Result<usize> {
    let cols = qkv.shape()[1];
    let per_row = cols.checked_div(head_dim).unwrap_or(0);
    let ok = head_dim > 0
        && cols.is_multiple_of(head_dim)
        && per_row > heads
        && (per_row - heads).is_multiple_of(2);
    check(
        op,
        ok,
        format!("fused rows [*, ({heads} + 2 kv_heads) x {head_dim}]"),
        qkv.shape(),
    )?;
    Ok(per_row)
}

/// [`head_rms_norm`]'s backward at the fused rows `qkv` given `dy` (the normed rows'
/// gradient, same shape), `qk_weight` the query heads' weight then the key heads' (`[1, 2
/// x head_dim]`): `(dL/dqkv, terms)`, the value heads' gradient passed through, and the
/// weights' gradients' terms (`dy x / rms` at the query and key heads, 0 at the value
/// heads), which the caller sums over the rows and heads it counts.
///
/// # Errors
/// [`Error::Shape`] as [`head_rms_norm`], or for a `dy` of another shape; wgpu errors.
pub(crate) fn head_rms_norm_backward(
    qkv: &Tensor,
    qk_weight: &Tensor,
    dy: &Tensor,
    (heads, head_dim): (usize, usize),
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    let op = "head_rms_norm_backward";
    let [rows, cols] = qkv.shape();
    let per_row = fused_heads(op, qkv, heads, head_dim)?;
    check(
        op,
        qk_weight.shape() == [1, 2 * head_dim],
        format!("a weight [1, 2 x {head_dim}]"),
        qk_weight.shape(),
    )?;
    check(
        op,
        dy.shape() == qkv.shape(),
        fmt_shape(qkv.shape()),
        dy.shape(),
    )?;
    let p = NormParams {
        cols: cols as u32,
        eps: eps.to_bits(),
        head_dim: head_dim as u32,
        heads: heads as u32,
        ..NormParams::default()
    };
    let inputs = [qkv, qk_weight, dy];
    let dx = Tensor::output(qkv.rank(), qkv.shape(), op)?;
    run(op, (Shader::Norms, op), &inputs, &dx, rows * per_row, p)?;
    let terms = Tensor::output(qkv.rank(), qkv.shape(), op)?;
    let entry = "head_rms_norm_terms";
    run(
        op,
        (Shader::Norms, entry),
        &inputs,
        &terms,
        rows * per_row,
        p,
    )?;
    Ok((dx, terms))
}

/// How attention turns a query's dot products into the logits of its softmax, and which
/// positions it sees: the defaults are Llama's (`1 / sqrt(head_dim)`, no cap, every
/// position up to the query's own).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Scores {
    /// The scale of the dot products, else `1 / sqrt(head_dim)` (rounded in f32).
    pub scale: Option<f32>,
    /// Soft-capping: logits `tanh(s * scale / cap) * cap` (Gemma 2).
    pub softcap: Option<f32>,
    /// A query at position `i` sees the positions `j` with `i - window < j <= i`.
    pub window: Option<usize>,
    /// The cache is a ring, position `j` in row `j % capacity` (with a window, and at
    /// least `window + rows - 1` rows: every position a query of the call sees is there,
    /// none overwritten by the call's own).
    pub ring: bool,
}

impl Scores {
    /// The attention kernels' parameters that say how scores are taken: the scale (else
    /// `1 / sqrt(head_dim)` rounded in f32) and the soft cap (0: none) as f32 bits, the
    /// window (0: none; one past the u32 positions sees every one of them).
    pub(crate) fn params(&self, head_dim: usize) -> AttentionParams {
        AttentionParams {
            scale: self
                .scale
                .unwrap_or_else(|| 1.0 / (head_dim as f32).sqrt())
                .to_bits(),
            window: self
                .window
                .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX)),
            softcap: self.softcap.unwrap_or(0.0).to_bits(),
            ..AttentionParams::default()
        }
    }

    /// Refuses a scale or cap that is not a positive finite number and a window of 0.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        for (what, v) in [("scale", self.scale), ("soft cap", self.softcap)] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(Error::invalid(
                    op,
                    format!("a {what} of {v}: it must be a positive finite number"),
                ));
            }
        }
        if self.window == Some(0) {
            return Err(Error::invalid(
                op,
                "a window of 0 positions: a query sees at least itself",
            ));
        }
        Ok(())
    }
}

/// The largest head [`attention_with`] takes.
pub(crate) const MAX_HEAD_DIM: usize = 256;

/// [`attention_with`] as Llama attends: default [`Scores`].
#[cfg(test)]
pub(crate) fn attention(
    qkv: &Tensor,
    cache: &Tensor,
    table: Option<&Tensor>,
    span: HeadSpan,
    pos0: usize,
) -> Result<Tensor> {
    attention_with(qkv, cache, table, span, pos0, Scores::default())
}

/// Causal attention of the queries of fused rows `qkv: [rows, q + 2 kv]` (row `t` at
/// position `pos0 + t`, turned by the rotary `table` when there is one) over `cache:
/// [capacity, 2 kv]` (rows `[k | v]`), whose rows up to `pos0 + rows` hold the positions
/// so far ([`write_kv`]): `[rows, q]`, with the logits and the positions `scores` says. A
/// query at position `i` reads only the cache rows of the positions it sees (with a
/// window, none before `i + 1 - window`).
///
/// # Errors
/// [`Error::Shape`] when the shapes disagree or the cache or table is too short;
/// [`Error::InvalidArgument`] for heads over [`MAX_HEAD_DIM`], a cache without the
/// key/value heads the queries need, or `scores` that [`Scores::check`] refuses; wgpu
/// errors.
pub(crate) fn attention_with(
    qkv: &Tensor,
    cache: &Tensor,
    table: Option<&Tensor>,
    span: HeadSpan,
    pos0: usize,
    scores: Scores,
) -> Result<Tensor> {
    let op = "attention";
    scores.check(op)?;
    let hd = span.head_dim;
    if hd > MAX_HEAD_DIM {
        return Err(Error::invalid(
            op,
            format!("heads of {hd}; the kernel takes up to {MAX_HEAD_DIM}"),
        ));
    }
    let fused = fused_rows(op, qkv, cache, table, (hd, pos0), scores.ring)?;
    let rows = qkv.shape()[0];
    if scores.ring {
        let fits = scores
            .window
            .is_some_and(|w| w.saturating_add(rows.saturating_sub(1)) <= cache.shape()[0]);
        if !fits {
            return Err(Error::invalid(
                op,
                format!(
                    "{rows} rows over a ring of {} with a window of {:?}: a ring needs a \
                     window and at least window + rows - 1 rows",
                    cache.shape()[0],
                    scores.window
                ),
            ));
        }
    }
    let heads = fused.heads as usize;
    let kv_heads = fused.kv_cols as usize / hd;
    let group = span.group.max(1);
    // Every local query head must find its key/value head in the cache.
    let (lo, hi) = (span.first_q / group, (span.first_q + heads - 1) / group);
    if lo < span.first_kv || hi >= span.first_kv + kv_heads {
        return Err(Error::invalid(
            op,
            format!(
                "query heads {}..{} need key/value heads {lo}..={hi}, the cache holds {}..{}",
                span.first_q,
                span.first_q + heads,
                span.first_kv,
                span.first_kv + kv_heads
            ),
        ));
    }
    let out = Tensor::output(qkv.rank(), [rows, heads * hd], op)?;
    let p = AttentionParams {
        rows: fused,
        group: group as u32,
        h0: span.first_q as u32,
        k0: span.first_kv as u32,
        ..scores.params(hd)
    };
    let entry = if scores.softcap.is_some() {
        "attention_softcap"
    } else {
        "attention"
    };
    let inputs: Vec<&Tensor> = [qkv, cache].into_iter().chain(table).collect();
    run(
        op,
        (Shader::Attention, entry),
        &inputs,
        &out,
        rows * heads,
        p,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests;
