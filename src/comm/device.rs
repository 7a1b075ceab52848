//! The on-device collective for logical ranks that share one device: a WGSL reduction
//! over the ranks' buffers and buffer-to-buffer copies, with no host round trip.

use super::checked::{check_all_gather, check_broadcast, check_reduce_scatter};
use super::transport::{BoxFuture, Collective};
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
        Box::pin(async move { Ok(shared(&ops::sum("all_reduce", inputs)?, inputs)) })
    }

    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let op = "all_gather";
            let shape = check_all_gather(op, inputs, dim)?;
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

    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            check_reduce_scatter("reduce_scatter", inputs, dim, sizes, inputs.len())?;
            let total = ops::sum("reduce_scatter", inputs)?;
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
            check_broadcast("broadcast", inputs, root)?;
            one_device("broadcast", inputs)?;
            Ok(shared(&inputs[root], inputs))
        })
    }
}
