//! The optimizer's kernels on one rank (`shaders/optimizer.wgsl`): AdamW's step on a
//! weight, its gradient and its two moments, in place; and each row's or each column's
//! sum of squares (the global gradient norm's pieces).

use super::same_rank;
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::OptimParams;
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::tensor::Tensor;

/// One AdamW step's numbers (torch.optim.AdamW's, for step `t`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// What the gradient is multiplied by first (1, or the clipping factor).
    pub grad_scale: f32,
}

fn key(entry: &'static str) -> PipelineKey {
    PipelineKey {
        shader: Shader::Optimizer,
        entry,
        constants: Vec::new(),
        weights: DType::F32,
    }
}

fn dispatch(
    op: &'static str,
    t: &Tensor,
    entry: &'static str,
    bufs: [&wgpu::Buffer; 4],
    count: usize,
    params: OptimParams,
) -> Result<()> {
    let rank = t.rank();
    let max = rank.limits().max_compute_workgroups_per_dimension;
    for piece in pieces(count, max) {
        let p = OptimParams {
            count: piece.count,
            row_stride: piece.stride,
            base: piece.base,
            ..params
        };
        rank.dispatch(op, &key(entry), &bufs, &p, piece.grid)?;
    }
    Ok(())
}

/// AdamW's step on `w` with gradient `g` and moments `m`, `v` (all f32, one shape, the
/// same bands), each updated in place.
///
/// # Errors
/// [`Error::Shape`] when the shapes or bands differ; [`Error::InvalidArgument`] for
/// tensors on other ranks or not f32; wgpu errors.
pub(crate) fn adamw_step(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: AdamWStep,
) -> Result<()> {
    let op = "adamw";
    for t in [g, m, v] {
        same_rank(op, w.rank(), t.rank())?;
        let same_bands = t.bands().len() == w.bands().len()
            && t.bands()
                .iter()
                .zip(w.bands())
                .all(|(a, b)| a.rows == b.rows);
        if t.shape() != w.shape() || !same_bands {
            return Err(Error::shape(
                op,
                format!("{} in the weight's bands", fmt_shape(w.shape())),
                fmt_shape(t.shape()),
            ));
        }
    }
    for t in [w, g, m, v] {
        t.require_f32(op)?;
    }
    let params = OptimParams {
        lr: s.lr.to_bits(),
        beta1: s.beta1.to_bits(),
        beta2: s.beta2.to_bits(),
        eps: s.eps.to_bits(),
        weight_decay: s.weight_decay.to_bits(),
        step_size: s.step_size.to_bits(),
        bias_correction2_sqrt: s.bias_correction2_sqrt.to_bits(),
        grad_scale: s.grad_scale.to_bits(),
        ..OptimParams::default()
    };
    let cols = w.shape()[1];
    for (((wb, gb), mb), vb) in w
        .bands()
        .iter()
        .zip(g.bands())
        .zip(m.bands())
        .zip(v.bands())
    {
        let bufs = [wb.buffer(), gb.buffer(), mb.buffer(), vb.buffer()];
        dispatch(op, w, "adamw", bufs, wb.rows.len() * cols, params)?;
    }
    Ok(())
}

/// Each row's sum of squares of `g` (f32, its columns in increasing order): `[rows, 1]`.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `g` is f32; allocation and wgpu errors.
pub(crate) fn sum_squares(g: &Tensor) -> Result<Tensor> {
    let op = "sum_squares";
    g.require_f32(op)?;
    let [rows, cols] = g.shape();
    let rank = g.rank();
    let out = Tensor::output(rank, [rows, 1], op)?;
    let [o] = out.bands() else {
        return Err(Error::invalid(
            op,
            format!("{rows} rows: more sums than one buffer holds"),
        ));
    };
    let (m, v) = unused_slots(op, g)?;
    for gb in g.bands() {
        let params = OptimParams {
            cols: cols as u32,
            out0: gb.rows.start as u32,
            ..OptimParams::default()
        };
        let bufs = [
            o.buffer(),
            gb.buffer(),
            m.bands()[0].buffer(),
            v.bands()[0].buffer(),
        ];
        dispatch(op, g, "sum_squares", bufs, gb.rows.len(), params)?;
    }
    Ok(out)
}

/// Each column's sum of squares of `g` (f32, its rows in increasing order, band after
/// band): `[1, cols]`.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `g` is f32; allocation and wgpu errors.
pub(crate) fn column_sum_squares(g: &Tensor) -> Result<Tensor> {
    let op = "sum_squares";
    g.require_f32(op)?;
    let cols = g.shape()[1];
    let rank = g.rank();
    let out = Tensor::output(rank, [1, cols], op)?;
    let o = &out.bands()[0];
    let (m, v) = unused_slots(op, g)?;
    for (i, gb) in g.bands().iter().enumerate() {
        let params = OptimParams {
            cols: cols as u32,
            out0: u32::from(i > 0),
            rows: gb.rows.len() as u32,
            ..OptimParams::default()
        };
        let bufs = [
            o.buffer(),
            gb.buffer(),
            m.bands()[0].buffer(),
            v.bands()[0].buffer(),
        ];
        dispatch(op, g, "column_sum_squares", bufs, cols, params)?;
    }
    Ok(out)
}

/// Buffers for the moments' slots, which the sums of squares do not read: each writable
/// slot bound to a buffer of its own (no aliasing within a dispatch).
fn unused_slots(op: &'static str, g: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::output(g.rank(), [1, 1], op)?,
        Tensor::output(g.rank(), [1, 1], op)?,
    ))
}
