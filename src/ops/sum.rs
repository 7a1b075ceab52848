//! The elementwise sum of same-shape tensors on one device: the on-device all-reduce of
//! logical ranks, and the join of a tp-invariant product's K blocks.

use crate::error::{fmt_shape, Error, Result};
use crate::kernels::params::{ElementwiseParams, ReduceParams};
use crate::kernels::settings::Numerics;
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::ops::numerics::tree_mid;
use crate::rank::Rank;
use crate::tensor::Tensor;

/// Inputs bound by one dispatch of `reduce.wgsl`.
const REDUCE_FAN_IN: usize = 4;
/// Inputs bound by one dispatch of `reduce8.wgsl`.
const REDUCE8_FAN_IN: usize = 8;

/// The one device all of `inputs` live on (they are not empty).
pub(crate) fn one_device<'a>(op: &'static str, inputs: &'a [Tensor]) -> Result<&'a Rank> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::shape(op, "at least one tensor", "none"))?
        .rank();
    if inputs.iter().any(|t| !t.rank().shares_device_with(first)) {
        return Err(Error::invalid(
            op,
            "the device collective needs every rank on one device; use HostCollective",
        ));
    }
    Ok(first)
}

/// The elementwise sum of `inputs` as one new tensor, in rank order or, for
/// [`Numerics::TpInvariant`], along its fixed tree (each join a sum of two, in f32, as the
/// host collective takes it): in one dispatch (`reduce8.wgsl`) for up to eight inputs
/// where the device allows, else in several of at most four inputs each.
pub(crate) fn sum(op: &'static str, inputs: &[Tensor]) -> Result<Tensor> {
    let rank = one_device(op, inputs)?;
    for t in inputs {
        t.require_f32(op)?;
    }
    let shape = inputs[0].shape();
    if let Some(t) = inputs.iter().find(|t| t.shape() != shape) {
        return Err(Error::shape(op, fmt_shape(shape), fmt_shape(t.shape())));
    }
    if at_once(rank, inputs) {
        return sum_at_once(op, rank, inputs);
    }
    if rank.numerics() != Numerics::TpInvariant || inputs.len() < 3 {
        return sum_in_order(op, inputs);
    }
    let mid = tree_mid(inputs.len());
    let halves = [sum(op, &inputs[..mid])?, sum(op, &inputs[mid..])?];
    sum_in_order(op, &halves)
}

/// Whether `reduce8.wgsl` can sum `inputs` in one dispatch: two to eight of them, vec4
/// lengths, and a device that binds its nine storage buffers.
fn at_once(rank: &Rank, inputs: &[Tensor]) -> bool {
    let cols = inputs[0].shape()[1];
    (2..=REDUCE8_FAN_IN).contains(&inputs.len())
        && rank.limits().max_storage_buffers_per_shader_stage > REDUCE8_FAN_IN as u32
        && inputs[0]
            .bands()
            .iter()
            .all(|b| (b.rows.len() * cols).is_multiple_of(4))
}

/// [`sum`] in one dispatch per band and piece of `reduce8.wgsl`, in rank order or along
/// the tree as the group's numerics ask.
fn sum_at_once(op: &'static str, rank: &Rank, inputs: &[Tensor]) -> Result<Tensor> {
    let shape = inputs[0].shape();
    let key = PipelineKey {
        shader: Shader::Reduce8,
        entry: "sum",
        constants: Vec::new(),
        weights: crate::DType::F32,
    };
    let tree = u32::from(rank.numerics() == Numerics::TpInvariant);
    let max_dim = rank.limits().max_compute_workgroups_per_dimension;
    let out = Tensor::output(rank, shape, op)?;
    for (i, ob) in out.bands().iter().enumerate() {
        let mut bufs: Vec<&wgpu::Buffer> = inputs.iter().map(|t| t.bands()[i].buffer()).collect();
        // Unread bindings: any buffer.
        bufs.resize(REDUCE8_FAN_IN, inputs[0].bands()[i].buffer());
        bufs.push(ob.buffer());
        for p in pieces(ob.rows.len() * shape[1] / 4, max_dim) {
            let params = ReduceParams {
                len: p.count,
                count: inputs.len() as u32,
                row_stride: p.stride,
                base: p.base,
                tree,
                ..ReduceParams::default()
            };
            rank.dispatch(op, &key, &bufs, &params, p.grid)?;
        }
    }
    Ok(out)
}

/// `((inputs[0] + inputs[1]) + inputs[2]) + ...`. The inputs have one shape on one device,
/// so their bands cover the same rows; each band is summed alone.
fn sum_in_order(op: &'static str, inputs: &[Tensor]) -> Result<Tensor> {
    let rank = one_device(op, inputs)?;
    if inputs.len() == 1 {
        return Ok(inputs[0].clone());
    }
    let shape = inputs[0].shape();
    let cols = shape[1];
    // Devices limited to 4 storage buffers per stage (WebGPU's downlevel minimum) cannot
    // bind reduce.wgsl's five, and it reads whole vec4s; otherwise add two at a time with
    // elementwise.wgsl's `add`.
    let wide = rank.limits().max_storage_buffers_per_shader_stage > REDUCE_FAN_IN as u32
        && inputs[0]
            .bands()
            .iter()
            .all(|b| (b.rows.len() * cols).is_multiple_of(4));
    let (fan_in, key) = if wide {
        let key = PipelineKey {
            shader: Shader::Reduce,
            entry: "sum",
            constants: Vec::new(),
            weights: crate::DType::F32,
        };
        (REDUCE_FAN_IN, key)
    } else {
        let key = PipelineKey {
            shader: Shader::Elementwise,
            entry: "add",
            constants: vec![("ACT", 0)],
            weights: crate::DType::F32,
        };
        (2, key)
    };
    let max_dim = rank.limits().max_compute_workgroups_per_dimension;
    let mut acc = inputs[0].clone();
    let mut rest = &inputs[1..];
    while !rest.is_empty() {
        let take = rest.len().min(fan_in - 1);
        let out = Tensor::output(rank, shape, op)?;
        for (i, ob) in out.bands().iter().enumerate() {
            let mut bufs = vec![acc.bands()[i].buffer()];
            bufs.extend(rest[..take].iter().map(|t| t.bands()[i].buffer()));
            let count = bufs.len() as u32;
            while bufs.len() < fan_in {
                bufs.push(acc.bands()[i].buffer());
            }
            bufs.push(ob.buffer());
            let len = ob.rows.len() * cols;
            let units = if wide { len / 4 } else { len };
            for p in pieces(units, max_dim) {
                if wide {
                    let params = ReduceParams {
                        len: p.count,
                        count,
                        row_stride: p.stride,
                        base: p.base,
                        ..ReduceParams::default()
                    };
                    rank.dispatch(op, &key, &bufs, &params, p.grid)?;
                } else {
                    let params = ElementwiseParams {
                        count: p.count,
                        cols: 1,
                        a_cols: 1,
                        row_stride: p.stride,
                        base: p.base,
                        ..ElementwiseParams::default()
                    };
                    rank.dispatch(op, &key, &bufs, &params, p.grid)?;
                }
            }
        }
        acc = out;
        rest = &rest[take..];
    }
    Ok(acc)
}
