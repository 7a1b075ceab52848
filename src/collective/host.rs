//! The host collective: read every rank's buffer back, combine on the host in rank
//! order, upload the result. Works between any ranks, whatever adapter or backend.

use super::{
    check_all_gather, check_broadcast, check_reduce_scatter, check_same_shapes, BoxFuture,
    Collective,
};
use crate::error::{Error, Result};
use crate::numerics::{tree_into, tree_scratch};
use crate::settings::Numerics;
use crate::shard::{concat_host, split_host};
use crate::tensor::{read_back, MapReceiver, Tensor};

use std::ops::Range;

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

/// Bytes of a tensor an all-reduce moves at once: read-back of chunk `i + 1`, the host sum
/// of chunk `i` and the upload of chunk `i - 1` overlap.
const CHUNK_BYTES: u64 = 4 << 20;
/// Elements from which a chunk's sum is split over threads.
const PARALLEL_ELEMENTS: usize = 1 << 18;

/// One chunk (a range of rows) of every rank's input on its way to the host.
struct Chunk {
    rows: Range<usize>,
    bytes: u64,
    staging: Vec<(wgpu::Buffer, MapReceiver, wgpu::SubmissionIndex)>,
}

/// The buffer holding `rows` of `t` (inside one of its bands, by construction of the
/// chunks) and the byte offset of the first of them.
fn locate<'a>(t: &'a Tensor, rows: &Range<usize>) -> (&'a wgpu::Buffer, u64) {
    let band = t
        .bands()
        .iter()
        .find(|b| b.rows.contains(&rows.start))
        .unwrap_or(&t.bands()[0]);
    let offset = ((rows.start - band.rows.start) * t.shape()[1] * 4) as u64;
    (band.buffer(), offset)
}

/// Row ranges that each lie inside one band of every tensor (ranks on different devices
/// may band differently) and hold at most `CHUNK_BYTES`.
fn chunk_rows(tensors: &[Tensor]) -> Vec<Range<usize>> {
    let [rows, cols] = tensors[0].shape();
    let per = (CHUNK_BYTES as usize / (cols * 4)).max(1);
    let mut cuts: Vec<usize> = tensors
        .iter()
        .flat_map(|t| t.bands().iter().map(|b| b.rows.start))
        .chain((0..rows).step_by(per))
        .chain([rows])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Submits the copy of `rows` of every input into a staging buffer and requests its
/// mapping; waits for nothing.
fn start_chunk(op: &'static str, inputs: &[Tensor], rows: Range<usize>) -> Result<Chunk> {
    let bytes = (rows.len() * inputs[0].shape()[1] * 4) as u64;
    let staging = inputs
        .iter()
        .map(|t| {
            let rank = t.rank();
            let (buffer, offset) = locate(t, &rows);
            rank.scoped(op, || {
                let staging = rank.take_staging(bytes);
                let mut enc = rank
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
                enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
                let submission = rank.queue().submit([enc.finish()]);
                let rx = crate::tensor::map_read(&staging, bytes);
                Ok((staging, rx, submission))
            })
        })
        .collect::<Result<_>>()?;
    Ok(Chunk {
        rows,
        bytes,
        staging,
    })
}

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

/// [`sum_into`], split over the machine's threads when `out` is large.
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

/// Waits for `chunk`, sums it into `host` and queues its upload to every output.
async fn finish_chunk(
    op: &'static str,
    inputs: &[Tensor],
    chunk: Chunk,
    host: &mut [f32],
    outputs: &[Tensor],
) -> Result<()> {
    let mut mapped = Vec::with_capacity(chunk.staging.len());
    for (t, (staging, rx, submission)) in inputs.iter().zip(chunk.staging) {
        crate::tensor::mapped(op, t.rank(), rx, submission).await?;
        mapped.push((t.rank(), staging));
    }
    let len = (chunk.bytes / 4) as usize;
    {
        // GL ranks: one thread at a time in GL (src/gl.rs) while the ranges are taken;
        // reading them and the sum need no lock.
        let gl: Vec<_> = inputs.iter().map(|t| t.rank().gl()).collect();
        let views = mapped
            .iter()
            .map(|(r, b)| {
                b.slice(..chunk.bytes)
                    .get_mapped_range()
                    .map_err(|e| Error::Map {
                        op,
                        rank: r.index(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        drop(gl);
        let parts: Vec<&[f32]> = views.iter().map(|v| bytemuck::cast_slice(v)).collect();
        sum_parallel(&mut host[..len], &parts, inputs[0].rank().numerics());
    }
    for (rank, staging) in mapped {
        let _gl = rank.gl();
        staging.unmap();
        rank.give_staging(staging);
    }
    for out in outputs {
        let (buffer, offset) = locate(out, &chunk.rows);
        out.rank().scoped(op, || {
            out.rank()
                .upload(buffer, offset, bytemuck::cast_slice(&host[..len]))
        })?;
    }
    Ok(())
}

/// The chunked all-reduce: two chunks in flight, each rank's copies submitted before any
/// wait, sums in rank order.
async fn chunked_all_reduce(inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let op = "all_reduce";
    let shape = inputs[0].shape();
    let outputs = inputs
        .iter()
        .map(|t| Tensor::output(t.rank(), shape, op))
        .collect::<Result<Vec<_>>>()?;
    let chunks = chunk_rows(inputs);
    let most = chunks.iter().map(|r| r.len()).max().unwrap_or(0) * shape[1];
    let mut host = take_host_chunk(most);
    let mut pending = std::collections::VecDeque::new();
    for (i, rows) in chunks.into_iter().enumerate() {
        pending.push_back(start_chunk(op, inputs, rows)?);
        if i >= 1 {
            if let Some(c) = pending.pop_front() {
                finish_chunk(op, inputs, c, &mut host, &outputs).await?;
            }
        }
    }
    while let Some(c) = pending.pop_front() {
        finish_chunk(op, inputs, c, &mut host, &outputs).await?;
    }
    give_host_chunk(host);
    Ok(outputs)
}

/// Host chunk buffers kept between all-reduces (a fresh 4 MiB vector is page-faulted in
/// on every call otherwise); one per all-reduce running at once.
static HOST_CHUNKS: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
/// Chunk buffers kept at most.
const HOST_CHUNKS_KEPT: usize = 4;

fn take_host_chunk(len: usize) -> Vec<f32> {
    let reused = HOST_CHUNKS.lock().ok().and_then(|mut free| free.pop());
    let mut v = reused.unwrap_or_default();
    v.resize(len, 0.0);
    v
}

fn give_host_chunk(v: Vec<f32>) {
    if let Ok(mut free) = HOST_CHUNKS.lock() {
        if free.len() < HOST_CHUNKS_KEPT {
            free.push(v);
        }
    }
}

impl Collective for HostCollective {
    fn all_reduce<'a>(&'a self, inputs: &'a [Tensor]) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            check_same_shapes("all_reduce", inputs)?;
            chunked_all_reduce(inputs).await
        })
    }

    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let shape = check_all_gather("all_gather", inputs, dim)?;
            let parts = read_back("all_gather", &all(inputs)).await?;
            let shapes: Vec<[usize; 2]> = inputs.iter().map(Tensor::shape).collect();
            upload_all(inputs, &concat_host(&parts, &shapes, dim)?, shape)
        })
    }

    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<Tensor>>> {
        Box::pin(async move {
            let shape = check_reduce_scatter("reduce_scatter", inputs, dim, sizes, inputs.len())?;
            let parts = read_back("reduce_scatter", &all(inputs)).await?;
            let sum = sum_parts(parts, inputs[0].rank().numerics());
            let shards = split_host(&sum, shape, dim, sizes)?;
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
            check_broadcast("broadcast", inputs, root)?;
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
