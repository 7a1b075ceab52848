//! The host collective: read every rank's buffer back, combine on the host in rank
//! order, upload the result. Works between any ranks, whatever adapter or backend.

use super::builtin::{Outputs, Scatter, Transport};
use super::checked::check_same_shapes;
use crate::error::Result;
use crate::kernels::settings::Numerics;
use crate::ops::numerics::{tree_into, tree_scratch};
use crate::tensor::shard::{concat_host, split_host};
use crate::tensor::{read_back, Tensor};

use super::chunked::{chunked_all_reduce, Cuts};

/// Joins ranks through host memory (`COPY_DST | MAP_READ` staging out, reused
/// `MAP_WRITE | COPY_SRC` staging back: `Rank::upload`).
///
/// Every rank's copy is submitted before the first wait; sums are taken in rank order
/// (`((x0 + x1) + x2) + ...`) in f32, or along the fixed tree of
/// [`Numerics::TpInvariant`], so a result's bits depend only on the inputs.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCollective;

/// The elementwise f32 sum of `parts` in the order `numerics` asks for (see [`sum_into`]).
pub(crate) fn sum_parts(parts: Vec<Vec<f32>>, numerics: Numerics) -> Vec<f32> {
    let mut out = vec![0.0; parts.first().map_or(0, Vec::len)];
    let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
    if !refs.is_empty() {
        sum_into(&mut out, &refs, numerics);
    }
    out
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

/// Elements from which a chunk's sum is split over threads.
const PARALLEL_ELEMENTS: usize = 1 << 18;

/// `out[i] = ((parts[0][i] + parts[1][i]) + ...)` ([`Numerics::Fast`]) or the fixed tree
/// of [`Numerics::TpInvariant`], in blocks that stay in L1 so each addend streams through
/// once and the adds vectorize.
fn sum_into(out: &mut [f32], parts: &[&[f32]], numerics: Numerics) {
    const BLOCK: usize = 2048;
    let mut scratch = Vec::new();
    if numerics == Numerics::TpInvariant {
        scratch.resize(tree_scratch(parts.len(), BLOCK), 0.0);
    }
    let mut sub: Vec<&[f32]> = Vec::with_capacity(parts.len());
    for (b, block) in out.chunks_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let end = start + block.len();
        sub.clear();
        sub.extend(parts.iter().map(|p| &p[start..end]));
        if numerics == Numerics::TpInvariant {
            tree_into(block, &sub, &mut scratch);
            continue;
        }
        block.copy_from_slice(sub[0]);
        for p in &sub[1..] {
            for (a, x) in block.iter_mut().zip(p.iter()) {
                *a += *x;
            }
        }
    }
}

/// [`sum_into`], split over the machine's threads when `out` is large (on wasm32,
/// where `cores()` is 1, always [`sum_into`] on the caller's thread).
pub(crate) fn sum_parallel(out: &mut [f32], parts: &[&[f32]], numerics: Numerics) {
    let threads = crate::rank::cores();
    if threads < 2 || out.len() < PARALLEL_ELEMENTS {
        return sum_into(out, parts, numerics);
    }
    let per = out.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (i, piece) in out.chunks_mut(per).enumerate() {
            let range = i * per..i * per + piece.len();
            let sub: Vec<&[f32]> = parts.iter().map(|p| &p[range.clone()]).collect();
            s.spawn(move || sum_into(piece, &sub, numerics));
        }
    });
}

/// Host chunk buffers kept between all-reduces (a fresh 4 MiB vector is page-faulted in
/// on every call otherwise); one per all-reduce running at once.
static HOST_CHUNKS: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
/// Chunk buffers kept at most.
const HOST_CHUNKS_KEPT: usize = 8;

pub(crate) fn take_host_chunk(len: usize) -> Vec<f32> {
    let reused = HOST_CHUNKS.lock().ok().and_then(|mut free| free.pop());
    let mut v = reused.unwrap_or_default();
    v.resize(len, 0.0);
    v
}

pub(crate) fn give_host_chunk(v: Vec<f32>) {
    if let Ok(mut free) = HOST_CHUNKS.lock() {
        if free.len() < HOST_CHUNKS_KEPT {
            free.push(v);
        }
    }
}

impl Transport for HostCollective {
    fn sum<'a>(&'a self, inputs: &'a [Tensor]) -> Outputs<'a> {
        Box::pin(async move {
            check_same_shapes("all_reduce", inputs)?;
            let numerics = inputs[0].rank().numerics();
            let mut sum = |parts: &[&[f32]], out: &mut Vec<f32>| {
                let len = parts[0].len();
                out.resize(out.len().max(len), 0.0);
                sum_parallel(&mut out[..len], parts, numerics);
                Ok(())
            };
            chunked_all_reduce("all_reduce", inputs, Cuts::AtBands, &mut sum).await
        })
    }

    fn gather<'a>(&'a self, inputs: &'a [Tensor], dim: usize, shape: [usize; 2]) -> Outputs<'a> {
        Box::pin(async move {
            let parts = read_back("all_gather", &all(inputs)).await?;
            let shapes: Vec<[usize; 2]> = inputs.iter().map(Tensor::shape).collect();
            upload_all(inputs, &concat_host(&parts, &shapes, dim)?, shape)
        })
    }

    fn sum_scatter<'a>(&'a self, inputs: &'a [Tensor], cut: Scatter<'a>) -> Outputs<'a> {
        Box::pin(async move {
            let parts = read_back("reduce_scatter", &all(inputs)).await?;
            let sum = sum_parts(parts, inputs[0].rank().numerics());
            let shards = split_host(&sum, cut.shape, cut.dim, cut.sizes)?;
            inputs
                .iter()
                .zip(shards)
                .zip(cut.windows())
                .map(|((t, data), (_, shape))| Tensor::from_host(t.rank(), &data, shape))
                .collect()
        })
    }

    fn copy<'a>(&'a self, inputs: &'a [Tensor], root: usize) -> Outputs<'a> {
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
