//! Single-rank operations on [`Tensor`]s: the GEMM and the elementwise kernels.
//!
//! Each call checks shapes, encodes one dispatch and submits it; nothing waits for the
//! GPU (a later read-back or collective does).

use crate::error::{fmt_shape, Error, Result};
use std::ops::Range;

use crate::kernels::{pieces, PipelineKey, Shader};
use crate::rank::Rank;
use crate::settings::{Activation, WeightLayout};
use crate::tensor::Tensor;

fn same_rank(op: &'static str, a: &Rank, b: &Rank) -> Result<()> {
    if a.group_id() != b.group_id() || a.index() != b.index() {
        return Err(Error::invalid(op, "tensors live on different ranks"));
    }
    Ok(())
}

/// `act(x · W + bias)` on one rank, `x: [m, k]`, `W` stored per `layout` for `k` inputs
/// and `n` outputs, `bias: [1, n]`.
///
/// # Errors
/// [`Error::Shape`] when the shapes disagree; [`Error::InvalidArgument`] under
/// [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) when `k` is not a multiple of 8;
/// wgpu errors. Any size runs: tensors over the buffer limits are banded, products over the
/// workgroup limit split into several dispatches.
///
/// The kernel family is the rank's choice ([`gemm_kernel_for`](crate::gemm_kernel_for)).
pub fn matmul(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    act: Activation,
) -> Result<Tensor> {
    let op = "matmul";
    let k = x.shape()[1];
    let (wk, n) = layout.in_out(w.shape());
    if wk != k {
        return Err(Error::shape(
            op,
            format!("weight with {k} inputs ({layout:?})"),
            format!(
                "{} ({layout:?}, {wk} inputs) for x {}",
                fmt_shape(w.shape()),
                fmt_shape(x.shape())
            ),
        ));
    }
    same_rank(op, x.rank(), w.rank())?;
    if let Some(b) = bias {
        same_rank(op, x.rank(), b.rank())?;
        if b.shape() != [1, n] {
            return Err(Error::shape(
                op,
                format!("bias [1, {n}]"),
                fmt_shape(b.shape()),
            ));
        }
    }
    let blocks = crate::numerics::INVARIANT_BLOCKS;
    crate::gemm::product(x, 0, k, w, bias, layout, act, blocks)
}

pub(crate) fn submit(
    rank: &Rank,
    op: &'static str,
    key: &PipelineKey,
    buffers: &[&wgpu::Buffer],
    params: &[u32],
    grid: [u32; 2],
) -> Result<()> {
    rank.scoped(op, || {
        let device = rank.device();
        let mut enc =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
        rank.kernels()
            .dispatch(device, &mut enc, key, buffers, params, grid)?;
        rank.queue().submit([enc.finish()]);
        Ok(())
    })
}

/// The rows two ranges share, if any.
pub(crate) fn overlap(a: &Range<usize>, b: &Range<usize>) -> Option<Range<usize>> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    (!r.is_empty()).then_some(r)
}

/// `a + b - c` as the u32 the shaders add a row index to (it may wrap below 0; the sum
/// with the row index never does).
fn row_shift(a: usize, b: usize, c: usize) -> u32 {
    (a + b).wrapping_sub(c) as u32
}

/// One `elementwise.wgsl` entry over elements `[base, base + count)` of the band buffers
/// `bufs` (a, b, out), in as many dispatches as the device's workgroup limit needs.
/// `shape` is (cols, a_cols, row0, col0), the entry's own parameters.
fn run_elementwise(
    rank: &Rank,
    op: &'static str,
    key: &PipelineKey,
    bufs: [&wgpu::Buffer; 3],
    base: usize,
    count: usize,
    shape: [u32; 4],
) -> Result<()> {
    for piece in pieces(count, rank.limits().max_compute_workgroups_per_dimension) {
        let params = [
            piece.count,
            shape[0],
            shape[1],
            shape[2],
            shape[3],
            piece.stride,
            base as u32 + piece.base,
            0,
        ];
        submit(rank, op, key, &bufs, &params, piece.grid)?;
    }
    Ok(())
}

fn elementwise_key(entry: &'static str, act: Activation) -> PipelineKey {
    PipelineKey {
        shader: Shader::Elementwise,
        entry,
        constants: vec![("ACT", act.code())],
    }
}

/// Runs `activation`, `add` or `add_row` of `elementwise.wgsl`, band by band, into a
/// fresh tensor of `a`'s shape. `b` has `a`'s shape (so its bands are `a`'s) or, for
/// `add_row`, is one row.
fn map_bands(
    op: &'static str,
    entry: &'static str,
    act: Activation,
    a: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    let rank = a.rank();
    if let Some(b) = b {
        same_rank(op, rank, b.rank())?;
    }
    let out = Tensor::output(rank, a.shape(), op)?;
    let key = elementwise_key(entry, act);
    let cols = a.shape()[1];
    for (i, (ab, ob)) in a.bands().iter().zip(out.bands()).enumerate() {
        let bb = match b {
            Some(b) if b.shape()[0] == 1 => b.bands()[0].buffer(),
            Some(b) => b.bands()[i].buffer(),
            None => ab.buffer(),
        };
        let bufs = [ab.buffer(), bb, ob.buffer()];
        let len = ab.rows.len() * cols;
        run_elementwise(
            rank,
            op,
            &key,
            bufs,
            0,
            len,
            [cols as u32, cols as u32, 0, 0],
        )?;
    }
    Ok(out)
}

/// `act(x)` elementwise.
///
/// # Errors
/// wgpu errors (validation, out of memory, device lost).
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    map_bands("activation", "activation", act, x, None)
}

/// `a + b` elementwise; the shapes must be equal.
///
/// # Errors
/// [`Error::Shape`] when they differ; wgpu errors.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            "add",
            fmt_shape(a.shape()),
            fmt_shape(b.shape()),
        ));
    }
    map_bands("add", "add", Activation::Identity, a, Some(b))
}

/// `a + row` with `row: [1, cols]` added to every row of `a: [rows, cols]` (a bias).
///
/// # Errors
/// [`Error::Shape`] when `row` is not `[1, cols]`; wgpu errors.
pub fn add_row(a: &Tensor, row: &Tensor) -> Result<Tensor> {
    if row.shape() != [1, a.shape()[1]] {
        return Err(Error::shape(
            "add_row",
            format!("[1, {}]", a.shape()[1]),
            fmt_shape(row.shape()),
        ));
    }
    map_bands("add_row", "add_row", Activation::Identity, a, Some(row))
}

/// The `[rows, cols]` window of `a` whose top-left element is `(row0, col0)`.
///
/// # Errors
/// [`Error::Shape`] when the window leaves `a` or is empty; wgpu errors.
pub fn slice(a: &Tensor, row0: usize, col0: usize, shape: [usize; 2]) -> Result<Tensor> {
    let op = "slice";
    let [r, c] = a.shape();
    if shape[0] == 0 || shape[1] == 0 || row0 + shape[0] > r || col0 + shape[1] > c {
        return Err(Error::shape(
            op,
            format!("a non-empty window inside {}", fmt_shape(a.shape())),
            format!("{} at ({row0}, {col0})", fmt_shape(shape)),
        ));
    }
    let rank = a.rank();
    let out = Tensor::output(rank, shape, op)?;
    let key = elementwise_key("slice", Activation::Identity);
    let cols = shape[1];
    // Each output band reads its rows from whichever of a's bands hold them.
    for ob in out.bands() {
        let wanted = row0 + ob.rows.start..row0 + ob.rows.end;
        for ab in a.bands() {
            let Some(rows) = overlap(&wanted, &ab.rows) else {
                continue;
            };
            let base = (rows.start - row0 - ob.rows.start) * cols;
            let shift = row_shift(row0, ob.rows.start, ab.rows.start);
            let bufs = [ab.buffer(), ab.buffer(), ob.buffer()];
            let dims = [cols as u32, c as u32, shift, col0 as u32];
            run_elementwise(rank, op, &key, bufs, base, rows.len() * cols, dims)?;
        }
    }
    Ok(out)
}

/// Writes `a` into the window of `out` whose top-left element is `at` (assembling a
/// freshly made tensor from blocks; `out` must not yet be visible to anyone else).
pub(crate) fn place(a: &Tensor, out: &Tensor, at: [usize; 2]) -> Result<()> {
    let op = "place";
    let rank = a.rank();
    let [r, c] = a.shape();
    if at[0] + r > out.shape()[0] || at[1] + c > out.shape()[1] {
        return Err(Error::shape(
            op,
            format!("a window inside {}", fmt_shape(out.shape())),
            format!("{} at {at:?}", fmt_shape(a.shape())),
        ));
    }
    let key = elementwise_key("place", Activation::Identity);
    // Each band of a lands in whichever of out's bands hold its rows.
    for ab in a.bands() {
        let lands = at[0] + ab.rows.start..at[0] + ab.rows.end;
        for ob in out.bands() {
            let Some(rows) = overlap(&lands, &ob.rows) else {
                continue;
            };
            let base = (rows.start - at[0] - ab.rows.start) * c;
            let shift = row_shift(at[0], ab.rows.start, ob.rows.start);
            let bufs = [ab.buffer(), ab.buffer(), ob.buffer()];
            let dims = [c as u32, out.shape()[1] as u32, shift, at[1] as u32];
            run_elementwise(rank, op, &key, bufs, base, rows.len() * c, dims)?;
        }
    }
    Ok(())
}
