//! The elementwise kernels of `shaders/elementwise.wgsl`, band by band: activation and
//! its backward, add, add_row, scale, slice, place, fill.

use super::{overlap, same_rank};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::params::ElementwiseParams;
use crate::kernels::settings::Activation;
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::rank::Rank;
use crate::tensor::Tensor;

/// True when `[start, start + len)` lies inside `[0, limit)`, without overflow.
fn inside(start: usize, len: usize, limit: usize) -> bool {
    start.checked_add(len).is_some_and(|end| end <= limit)
}

/// `a + b - c` as the u32 the shaders add a row index to (it may wrap below 0; the sum
/// with the row index never does).
fn row_shift(a: usize, b: usize, c: usize) -> u32 {
    (a + b).wrapping_sub(c) as u32
}

/// One `elementwise.wgsl` entry over elements `[base, base + count)` of the band buffers
/// `bufs` (a, b, out), in as many dispatches as the device's workgroup limit needs.
/// `entry` holds the entry's own parameters (cols, a_cols, row0, col0, value).
fn run_elementwise(
    rank: &Rank,
    op: &'static str,
    key: &PipelineKey,
    bufs: [&wgpu::Buffer; 3],
    base: usize,
    count: usize,
    entry: ElementwiseParams,
) -> Result<()> {
    for piece in pieces(count, rank.limits().max_compute_workgroups_per_dimension) {
        let params = ElementwiseParams {
            count: piece.count,
            row_stride: piece.stride,
            base: base as u32 + piece.base,
            ..entry
        };
        rank.dispatch(op, key, &bufs, &params, piece.grid)?;
    }
    Ok(())
}

/// The entry parameters of a kernel over `cols` columns.
fn dims(cols: usize, a_cols: usize, row0: u32, col0: usize) -> ElementwiseParams {
    ElementwiseParams {
        cols: cols as u32,
        a_cols: a_cols as u32,
        row0,
        col0: col0 as u32,
        ..ElementwiseParams::default()
    }
}

fn elementwise_key(entry: &'static str, act: Activation) -> PipelineKey {
    PipelineKey {
        shader: Shader::Elementwise,
        entry,
        constants: vec![("ACT", act.code())],
        weights: crate::DType::F32,
    }
}

/// Runs `activation`, `activation_grad`, `add` or `add_row` of `elementwise.wgsl`, band by band, into a
/// fresh tensor of `a`'s shape. `b` has `a`'s shape (so its bands are `a`'s) or, for
/// `add_row`, is one row.
fn map_bands(
    op: &'static str,
    entry: &'static str,
    act: Activation,
    a: &Tensor,
    b: Option<&Tensor>,
) -> Result<Tensor> {
    map_bands_with(op, entry, act, (a, b), 0)
}

/// [`map_bands`] with the parameters' `value` (the bits of an f32 the entry reads).
fn map_bands_with(
    op: &'static str,
    entry: &'static str,
    act: Activation,
    (a, b): (&Tensor, Option<&Tensor>),
    value: u32,
) -> Result<Tensor> {
    let rank = a.rank();
    a.require_f32(op)?;
    if let Some(b) = b {
        same_rank(op, rank, b.rank())?;
        b.require_f32(op)?;
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
        let entry = ElementwiseParams {
            value,
            ..dims(cols, cols, 0, 0)
        };
        run_elementwise(rank, op, &key, bufs, 0, len, entry)?;
    }
    Ok(out)
}

/// `tanh(x / cap) * cap` elementwise (soft-capped logits), each operation in f32.
///
/// # Errors
/// wgpu errors.
pub(crate) fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    let op = "softcap";
    map_bands_with(op, op, Activation::Identity, (x, None), cap.to_bits())
}

/// `d * (1 - tanh(x / cap)^2)` elementwise: [`softcap`]'s backward at its input `x`,
/// given `d`, the gradient of its output.
///
/// # Errors
/// [`Error::Shape`] when the shapes differ; wgpu errors.
pub(crate) fn softcap_grad(x: &Tensor, d: &Tensor, cap: f32) -> Result<Tensor> {
    let op = "softcap_grad";
    if x.shape() != d.shape() {
        return Err(Error::shape(op, fmt_shape(x.shape()), fmt_shape(d.shape())));
    }
    map_bands_with(op, op, Activation::Identity, (x, Some(d)), cap.to_bits())
}

/// `act(x)` elementwise.
///
/// # Errors
/// wgpu errors (validation, out of memory, device lost).
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    map_bands("activation", "activation", act, x, None)
}

/// `dh * act'(z)` elementwise: the activation's backward at its input `z`, given `dh`,
/// the gradient of its output (ReLU's derivative is 0 at 0, as torch's; NaN is kept).
///
/// # Errors
/// [`Error::Shape`] when the shapes differ; wgpu errors.
pub fn activation_grad(z: &Tensor, dh: &Tensor, act: Activation) -> Result<Tensor> {
    let op = "activation_grad";
    if z.shape() != dh.shape() {
        return Err(Error::shape(
            op,
            fmt_shape(z.shape()),
            fmt_shape(dh.shape()),
        ));
    }
    map_bands(op, op, act, z, Some(dh))
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

/// `a * s` elementwise, each product one f32 rounding (as torch multiplies an f32 tensor
/// by an f32 scalar).
///
/// # Errors
/// wgpu errors.
pub fn scale(a: &Tensor, s: f32) -> Result<Tensor> {
    let op = "scale";
    a.require_f32(op)?;
    let rank = a.rank();
    let out = Tensor::output(rank, a.shape(), op)?;
    let key = elementwise_key("scale", Activation::Identity);
    let cols = a.shape()[1];
    for (ab, ob) in a.bands().iter().zip(out.bands()) {
        let bufs = [ab.buffer(), ab.buffer(), ob.buffer()];
        let entry = ElementwiseParams {
            value: s.to_bits(),
            ..dims(cols, cols, 0, 0)
        };
        run_elementwise(rank, op, &key, bufs, 0, ab.rows.len() * cols, entry)?;
    }
    Ok(out)
}

/// The `[rows, cols]` window of `a` whose top-left element is `(row0, col0)`.
///
/// # Errors
/// [`Error::Shape`] when the window leaves `a` or is empty; wgpu errors.
pub fn slice(a: &Tensor, row0: usize, col0: usize, shape: [usize; 2]) -> Result<Tensor> {
    let op = "slice";
    a.require_f32(op)?;
    let [r, c] = a.shape();
    if shape[0] == 0 || shape[1] == 0 || !inside(row0, shape[0], r) || !inside(col0, shape[1], c) {
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
            let entry = dims(cols, c, shift, col0);
            run_elementwise(rank, op, &key, bufs, base, rows.len() * cols, entry)?;
        }
    }
    Ok(out)
}

/// Writes `a` into the window of `out` whose top-left element is `at` (assembling a
/// freshly made tensor from blocks; `out` must not yet be visible to anyone else).
pub(crate) fn place(a: &Tensor, out: &Tensor, at: [usize; 2]) -> Result<()> {
    let op = "place";
    a.require_f32(op)?;
    out.require_f32(op)?;
    let rank = a.rank();
    let [r, c] = a.shape();
    if !inside(at[0], r, out.shape()[0]) || !inside(at[1], c, out.shape()[1]) {
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
            let entry = dims(c, out.shape()[1], shift, at[1]);
            run_elementwise(rank, op, &key, bufs, base, rows.len() * c, entry)?;
        }
    }
    Ok(())
}

/// A fresh tensor of `like`'s shape with every element `value`, bit for bit (`-0.0` too).
pub(crate) fn fill(like: &Tensor, value: f32) -> Result<Tensor> {
    let op = "fill";
    like.require_f32(op)?;
    let rank = like.rank();
    let out = Tensor::output(rank, like.shape(), op)?;
    let key = elementwise_key("fill", Activation::Identity);
    let cols = like.shape()[1];
    for (lb, ob) in like.bands().iter().zip(out.bands()) {
        // `like`'s band is bound only to fill the read slots (never read).
        let bufs = [lb.buffer(), lb.buffer(), ob.buffer()];
        let len = ob.rows.len() * cols;
        let entry = ElementwiseParams {
            value: value.to_bits(),
            ..dims(cols, cols, 0, 0)
        };
        run_elementwise(rank, op, &key, bufs, 0, len, entry)?;
    }
    Ok(out)
}
