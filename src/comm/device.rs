//! The on-device collective for logical ranks that share one device: a WGSL reduction
//! over the ranks' buffers and buffer-to-buffer copies, with no host round trip.

use super::builtin::{Outputs, Scatter, Transport};
use crate::error::Result;
use crate::ops::{self, one_device};
use crate::tensor::shard::offsets;
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

/// `t` seen by every rank of `inputs`.
fn shared(t: &Tensor, inputs: &[Tensor]) -> Vec<Tensor> {
    inputs.iter().map(|i| t.shared_with(i.rank())).collect()
}

/// The window of `t` of `shape` from `start` along `dim`.
fn window(t: &Tensor, dim: usize, start: usize, shape: [usize; 2]) -> Result<Tensor> {
    if dim == 0 {
        ops::slice(t, start, 0, shape)
    } else {
        ops::slice(t, 0, start, shape)
    }
}

impl Transport for DeviceCollective {
    fn sum<'a>(&'a self, inputs: &'a [Tensor]) -> Outputs<'a> {
        Box::pin(async move { Ok(shared(&ops::sum("all_reduce", inputs)?, inputs)) })
    }

    fn gather<'a>(&'a self, inputs: &'a [Tensor], dim: usize, shape: [usize; 2]) -> Outputs<'a> {
        Box::pin(async move {
            let op = "all_gather";
            let rank = one_device(op, inputs)?;
            let sizes: Vec<usize> = inputs.iter().map(|t| t.shape()[dim]).collect();
            let out = Tensor::output(rank, shape, op)?;
            for (t, start) in inputs.iter().zip(offsets(&sizes)) {
                let at = if dim == 0 { [start, 0] } else { [0, start] };
                ops::place(t, &out, at)?;
            }
            Ok(shared(&out, inputs))
        })
    }

    fn sum_scatter<'a>(&'a self, inputs: &'a [Tensor], cut: Scatter<'a>) -> Outputs<'a> {
        Box::pin(async move {
            let total = ops::sum("reduce_scatter", inputs)?;
            inputs
                .iter()
                .zip(cut.windows())
                .map(|(t, (start, shape))| {
                    Ok(window(&total, cut.dim, start, shape)?.shared_with(t.rank()))
                })
                .collect()
        })
    }

    fn copy<'a>(&'a self, inputs: &'a [Tensor], root: usize) -> Outputs<'a> {
        Box::pin(async move {
            one_device("broadcast", inputs)?;
            Ok(shared(&inputs[root], inputs))
        })
    }
}
