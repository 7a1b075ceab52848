//! The host collective: read every rank's buffer back, combine on the host in rank
//! order, upload the result. Works between any ranks, whatever adapter or backend.

use super::{BoxFuture, Collective};
use crate::error::Result;
use crate::shard::{concat_host, split_host};
use crate::tensor::{read_back, Tensor};

/// Joins ranks through host memory (`COPY_DST | MAP_READ` staging, `write_buffer` back).
///
/// Every rank's copy is submitted before the first wait; sums are taken in rank order
/// (`((x0 + x1) + x2) + ...`) in f32, so a result's bits depend only on the inputs.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCollective;

/// `((inputs[0] + inputs[1]) + inputs[2]) + ...`, elementwise, in f32.
pub(crate) fn sum_in_rank_order(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let mut acc = parts.next().unwrap_or_default();
    for p in parts {
        for (a, b) in acc.iter_mut().zip(&p) {
            *a += *b;
        }
    }
    acc
}

fn upload_all(inputs: &[Tensor], data: &[f32], shape: [usize; 2]) -> Result<Vec<Tensor>> {
    inputs
        .iter()
        .map(|t| Tensor::from_host(t.rank(), data, shape))
        .collect()
}

fn all(inputs: &[Tensor]) -> Vec<&Tensor> {
    inputs.iter().collect()
}

impl Collective for HostCollective {
    fn all_reduce<'a>(&'a self, inputs: &'a [Tensor]) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let sum = sum_in_rank_order(read_back("all_reduce", &all(inputs)).await?);
            upload_all(inputs, &sum, inputs[0].shape())
        })
    }

    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let parts = read_back("all_gather", &all(inputs)).await?;
            let shapes: Vec<[usize; 2]> = inputs.iter().map(Tensor::shape).collect();
            let mut shape = shapes[0];
            shape[dim] = shapes.iter().map(|s| s[dim]).sum();
            upload_all(inputs, &concat_host(&parts, &shapes, dim), shape)
        })
    }

    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let shape = inputs[0].shape();
            let sum = sum_in_rank_order(read_back("reduce_scatter", &all(inputs)).await?);
            let shards = split_host(&sum, shape, dim, sizes);
            inputs
                .iter()
                .zip(shards)
                .zip(sizes)
                .map(|((t, data), &len)| {
                    let mut s = shape;
                    s[dim] = len;
                    Tensor::from_host(t.rank(), &data, s)
                })
                .collect()
        })
    }

    fn broadcast<'a>(
        &'a self,
        inputs: &'a [Tensor],
        root: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let src = &inputs[root];
            let data = read_back("broadcast", &[src]).await?.concat();
            inputs
                .iter()
                .map(|t| {
                    if t.rank().index() == root {
                        Ok(src.clone())
                    } else {
                        Tensor::from_host(t.rank(), &data, src.shape())
                    }
                })
                .collect()
        })
    }
}
