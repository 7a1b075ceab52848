//! The transformer kernels of `shaders/model.wgsl` on one rank: RMSNorm, LayerNorm, the
//! embedding lookup of a vocabulary shard, rotary positions, SwiGLU and causal attention
//! over a key/value cache. Their tensors must each be one buffer (one band), except the
//! embedding table (a large vocabulary shard is looked up band by band); a tensor larger
//! than a buffer may be is refused with [`Error::BufferTooLarge`].

use super::same_rank;
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::params::ModelParams;
use crate::tensor::Tensor;

fn key(entry: &'static str) -> PipelineKey {
    PipelineKey {
        shader: Shader::Model,
        entry,
        constants: Vec::new(),
    }
}

/// `t`'s one buffer, or an error naming `op`.
fn single<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a wgpu::Buffer> {
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

/// Runs `entry` over `count` items into `out`, reading `inputs` (up to three; unused
/// slots bind the first).
fn run(
    op: &'static str,
    entry: &'static str,
    inputs: &[&Tensor],
    out: &Tensor,
    count: usize,
    params: ModelParams,
) -> Result<()> {
    let rank = out.rank();
    let mut bufs = Vec::with_capacity(5);
    for t in inputs {
        same_rank(op, rank, t.rank())?;
        bufs.push(single(op, t)?);
    }
    while bufs.len() < 3 {
        bufs.push(bufs[0]);
    }
    bufs.push(single(op, out)?);
    let key = key(entry);
    for piece in pieces(count, rank.limits().max_compute_workgroups_per_dimension) {
        let p = ModelParams {
            count: piece.count,
            row_stride: piece.stride,
            base: piece.base,
            ..params
        };
        rank.dispatch(op, &key, &bufs, &p, piece.grid)?;
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
    let p = ModelParams {
        cols: cols as u32,
        eps: eps.to_bits(),
        ..ModelParams::default()
    };
    let inputs: Vec<&Tensor> = std::iter::once(x).chain(params.iter().copied()).collect();
    run(entry, entry, &inputs, &out, rows, p)?;
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

/// The rows of `table: [n, cols]` (vocabulary rows `first..first + n`) that `ids`
/// selects, `-0.0` (the additive identity) for ids outside them: `[ids.len(), cols]`.
/// `ids` is `[1, tokens]` holding token ids as `u32` bits ([`Tensor::from_ids`]). The
/// table may be banded (a large vocabulary shard): each band fills the rows it holds.
///
/// # Errors
/// [`Error::Shape`] unless `ids` is one row; wgpu errors.
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
    // -0.0 everywhere, then each band of the table writes the rows it holds.
    let out = super::fill(&Tensor::output(table.rank(), [tokens, cols], op)?, -0.0)?;
    let rank = out.rank();
    same_rank(op, rank, ids.rank())?;
    let (ids_buf, out_buf) = (single(op, ids)?, single(op, &out)?);
    let key = key("embed");
    debug_assert_eq!(table.bands().iter().map(|b| b.rows.len()).sum::<usize>(), n);
    for band in table.bands() {
        let bufs = [band.buffer(), ids_buf, ids_buf, out_buf];
        for piece in pieces(
            tokens * cols,
            rank.limits().max_compute_workgroups_per_dimension,
        ) {
            let p = ModelParams {
                count: piece.count,
                row_stride: piece.stride,
                base: piece.base,
                cols: cols as u32,
                pos0: (first + band.rows.start) as u32,
                kv_cols: band.rows.len() as u32,
                ..ModelParams::default()
            };
            rank.dispatch(op, &key, &bufs, &p, piece.grid)?;
        }
    }
    Ok(out)
}

/// Rotary positions (rotate-half) on `x: [rows, heads * head_dim]`, row `t` at position
/// `pos0 + t`, with the cosine and sine tables `cos`, `sin: [positions, head_dim / 2]`.
///
/// # Errors
/// [`Error::Shape`] when the columns are not `heads * head_dim`, `head_dim` is odd, or
/// the tables do not reach `pos0 + rows`; wgpu errors.
pub fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    head_dim: usize,
    pos0: usize,
) -> Result<Tensor> {
    let op = "rope";
    let [rows, cols] = x.shape();
    let half = head_dim / 2;
    let fits = head_dim > 0 && head_dim.is_multiple_of(2) && cols.is_multiple_of(head_dim);
    check(
        op,
        fits,
        format!("[*, heads x {head_dim}] (even)"),
        x.shape(),
    )?;
    for t in [cos, sin] {
        let ok = t.shape()[1] == half && t.shape()[0] >= pos0 + rows;
        check(
            op,
            ok,
            format!("[>= {}, {half}] tables", pos0 + rows),
            t.shape(),
        )?;
    }
    let heads = cols / head_dim;
    let out = Tensor::output(x.rank(), x.shape(), op)?;
    let p = ModelParams {
        cols: cols as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        pos0: pos0 as u32,
        ..ModelParams::default()
    };
    run(op, "rope", &[x, cos, sin], &out, rows * heads * half, p)?;
    Ok(out)
}

/// SwiGLU: `silu(gate) * up` for `x = [gate | up]: [rows, 2 n]`, giving `[rows, n]`.
///
/// # Errors
/// [`Error::Shape`] for an odd column count; wgpu errors.
pub fn silu_mul(x: &Tensor) -> Result<Tensor> {
    let op = "silu_mul";
    let [rows, cols] = x.shape();
    check(op, cols % 2 == 0, "[*, 2 n]".into(), x.shape())?;
    let n = cols / 2;
    let out = Tensor::output(x.rank(), [rows, n], op)?;
    let p = ModelParams {
        cols: n as u32,
        ..ModelParams::default()
    };
    run(op, "silu_mul", &[x], &out, rows * n, p)?;
    Ok(out)
}

/// Where one rank's attention heads sit among the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSpan {
    /// Global index of the rank's first query head.
    pub first_q: usize,
    /// Global index of the first key/value head in the rank's cache.
    pub first_kv: usize,
    /// Query heads per key/value head.
    pub group: usize,
    /// Size of a head.
    pub head_dim: usize,
}

/// Causal attention of `q: [rows, heads * head_dim]` (row `t` at position `pos0 + t`)
/// over the caches `k`, `v: [capacity, kv_heads * head_dim]`, whose rows up to `pos0 +
/// rows` hold the positions so far: `[rows, heads * head_dim]`.
///
/// # Errors
/// [`Error::Shape`] when the shapes disagree or the cache is too short; wgpu errors.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    span: HeadSpan,
    pos0: usize,
) -> Result<Tensor> {
    let op = "attention";
    let [rows, cols] = q.shape();
    let hd = span.head_dim;
    check(
        op,
        hd > 0 && cols % hd == 0,
        format!("[*, heads x {hd}]"),
        q.shape(),
    )?;
    let [capacity, kv_cols] = k.shape();
    let ok = v.shape() == k.shape() && kv_cols % hd == 0 && capacity >= pos0 + rows;
    check(
        op,
        ok,
        format!("caches [>= {}, kv_heads x {hd}]", pos0 + rows),
        v.shape(),
    )?;
    let heads = cols / hd;
    let kv_heads = kv_cols / hd;
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
    let out = Tensor::output(q.rank(), q.shape(), op)?;
    let p = ModelParams {
        cols: cols as u32,
        heads: heads as u32,
        head_dim: hd as u32,
        pos0: pos0 as u32,
        kv_cols: kv_cols as u32,
        group: group as u32,
        h0: span.first_q as u32,
        k0: span.first_kv as u32,
        kv_rows: capacity as u32,
        scale: (1.0 / (hd as f32).sqrt()).to_bits(),
        ..ModelParams::default()
    };
    run(op, "attention", &[q, k, v], &out, rows * heads, p)?;
    Ok(out)
}

/// Writes `rows` (`[n, cols]`) into rows `at..at + n` of `cache` (a key/value cache).
///
/// # Errors
/// [`Error::Shape`] when they do not fit; wgpu errors.
pub fn write_rows(cache: &Tensor, rows: &Tensor, at: usize) -> Result<()> {
    super::place(rows, cache, [at, 0])
}
