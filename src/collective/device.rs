//! The on-device collective for logical ranks that share one device: a WGSL reduction
//! over the ranks' buffers and buffer-to-buffer copies, with no host round trip.

use super::{BoxFuture, Collective};
use crate::error::{Error, Result};
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::numerics::tree_mid;
use crate::ops;
use crate::rank::Rank;
use crate::settings::Numerics;
use crate::shard::offsets;
use crate::tensor::Tensor;

/// Joins logical ranks sharing one device ([`GroupBuilder::ranks_sharing_one_device`]
/// chooses it). Every result is computed once on the device and shared: a replicated
/// output is one buffer that every rank reads.
///
/// Sums are taken in rank order (`((x0 + x1) + x2) + ...`) in f32, like
/// [`HostCollective`](super::HostCollective), so both give the same bits.
///
/// [`GroupBuilder::ranks_sharing_one_device`]: crate::GroupBuilder::ranks_sharing_one_device
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceCollective;

/// Inputs bound by one dispatch of `reduce.wgsl`.
const REDUCE_FAN_IN: usize = 4;

fn one_device<'a>(op: &'static str, inputs: &'a [Tensor]) -> Result<&'a Rank> {
    let first = inputs[0].rank();
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
/// host collective takes it).
pub(crate) fn sum(op: &'static str, inputs: &[Tensor]) -> Result<Tensor> {
    let rank = one_device(op, inputs)?;
    if rank.numerics() != Numerics::TpInvariant || inputs.len() < 3 {
        return sum_in_order(op, inputs);
    }
    let mid = tree_mid(inputs.len());
    let halves = [sum(op, &inputs[..mid])?, sum(op, &inputs[mid..])?];
    sum_in_order(op, &halves)
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
        };
        (REDUCE_FAN_IN, key)
    } else {
        let key = PipelineKey {
            shader: Shader::Elementwise,
            entry: "add",
            constants: vec![("ACT", 0)],
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
                // reduce.wgsl: (len, count, row_stride, base); elementwise.wgsl: (count,
                // cols, a_cols, row0, col0, row_stride, base).
                let params = if wide {
                    [p.count, count, p.stride, p.base, 0, 0, 0, 0]
                } else {
                    [p.count, 1, 1, 0, 0, p.stride, p.base, 0]
                };
                ops::submit(rank, op, &key, &bufs, &params, p.grid)?;
            }
        }
        acc = out;
        rest = &rest[take..];
    }
    Ok(acc)
}

/// `t` seen by every rank of `inputs`.
fn shared(t: &Tensor, inputs: &[Tensor]) -> Vec<Tensor> {
    inputs.iter().map(|i| t.shared_with(i.rank())).collect()
}

/// The `len` rows or columns of `t` from `start` along `dim`.
fn window(t: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let mut shape = t.shape();
    shape[dim] = len;
    if dim == 0 {
        ops::slice(t, start, 0, shape)
    } else {
        ops::slice(t, 0, start, shape)
    }
}

impl Collective for DeviceCollective {
    fn all_reduce<'a>(&'a self, inputs: &'a [Tensor]) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move { Ok(shared(&sum("all_reduce", inputs)?, inputs)) })
    }

    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let op = "all_gather";
            let rank = one_device(op, inputs)?;
            let sizes: Vec<usize> = inputs.iter().map(|t| t.shape()[dim]).collect();
            let mut shape = inputs[0].shape();
            shape[dim] = sizes.iter().sum();
            let out = Tensor::output(rank, shape, op)?;
            for (t, start) in inputs.iter().zip(offsets(&sizes)) {
                let at = if dim == 0 { [start, 0] } else { [0, start] };
                ops::place(t, &out, at)?;
            }
            Ok(shared(&out, inputs))
        })
    }

    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let total = sum("reduce_scatter", inputs)?;
            inputs
                .iter()
                .zip(offsets(sizes).into_iter().zip(sizes))
                .map(
                    |(t, (start, &len))| Ok(window(&total, dim, start, len)?.shared_with(t.rank())),
                )
                .collect()
        })
    }

    fn broadcast<'a>(
        &'a self,
        inputs: &'a [Tensor],
        root: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            one_device("broadcast", inputs)?;
            Ok(shared(&inputs[root], inputs))
        })
    }
}
