//! The chunked all-reduce behind the host collective and the one between processes: rows
//! of every rank's buffer go to the host a chunk at a time (the read-back of chunk `i + 1`,
//! the combination of chunk `i` and the upload of chunk `i - 1` overlap), a `combine` step
//! turns the ranks' rows into the result's, and the result goes back through reused upload
//! buffers. Only the combination differs: a sum in this process, or an exchange with the
//! other processes (spanning.rs).

use std::collections::VecDeque;
use std::ops::Range;

use super::host::{give_host_chunk, take_host_chunk};
use crate::error::{Error, Result};
use crate::tensor::{MapReceiver, Tensor};

/// Bytes of a tensor an all-reduce moves at once (at most).
pub(crate) const CHUNK_BYTES: u64 = 4 << 20;
/// The same between processes, where a chunk goes through more steps (read-back, packing,
/// exchange, sum, all-gather, upload): small enough to stay in a core's cache from one
/// step to the next. On lavapipe here, 64 MiB over 2 x 2 ranks: 1 MiB chunks 40-47 ms,
/// 4 MiB 48-65 ms, 16 MiB 69-74 ms (BENCHMARKS.md).
const SPAN_CHUNK_BYTES: u64 = 1 << 20;

/// Combines one chunk: `parts[i]` holds input `i`'s rows; the result goes to the first
/// `parts[0].len()` values of `out`, which the step may resize or swap for a buffer of its
/// own (to receive into it without a copy).
pub(crate) type Combine<'a> = dyn FnMut(&[&[f32]], &mut Vec<f32>) -> Result<()> + Send + 'a;

/// Where chunks are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cuts {
    /// Also at every band start, so each chunk is one copy per tensor.
    AtBands,
    /// Only at multiples of a chunk of at most this many bytes (which every device of
    /// every process can stage): the same chunks in every process, whatever its devices'
    /// bands.
    Fixed(u64),
}

/// One chunk (a range of rows) of every rank's input on its way to the host.
struct Chunk {
    rows: Range<usize>,
    bytes: u64,
    staging: Vec<(wgpu::Buffer, MapReceiver, wgpu::SubmissionIndex)>,
}

/// The pieces of `rows` of `t`, one per band they cross: (buffer, byte offset in it, byte
/// offset in the chunk, bytes).
fn pieces<'a>(t: &'a Tensor, rows: &Range<usize>) -> Vec<(&'a wgpu::Buffer, u64, u64, u64)> {
    let row_bytes = (t.shape()[1] * 4) as u64;
    t.bands()
        .iter()
        .filter_map(|b| {
            let start = rows.start.max(b.rows.start);
            let end = rows.end.min(b.rows.end);
            (start < end).then(|| {
                (
                    b.buffer(),
                    (start - b.rows.start) as u64 * row_bytes,
                    (start - rows.start) as u64 * row_bytes,
                    (end - start) as u64 * row_bytes,
                )
            })
        })
        .collect()
}

/// Row ranges of at most `CHUNK_BYTES`, cut as `cuts` says.
fn chunk_rows(tensors: &[Tensor], cuts: Cuts) -> Vec<Range<usize>> {
    let [rows, cols] = tensors[0].shape();
    let most = match cuts {
        Cuts::AtBands => CHUNK_BYTES,
        Cuts::Fixed(bytes) => bytes.min(SPAN_CHUNK_BYTES),
    };
    let per = (most as usize / (cols * 4)).max(1);
    let bands = tensors
        .iter()
        .filter(|_| cuts == Cuts::AtBands)
        .flat_map(|t| t.bands().iter().map(|b| b.rows.start));
    let mut at: Vec<usize> = bands.chain((0..rows).step_by(per)).chain([rows]).collect();
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Submits the copy of `rows` of every input into a staging buffer and requests its
/// mapping; waits for nothing.
fn start_chunk(op: &'static str, inputs: &[Tensor], rows: Range<usize>) -> Result<Chunk> {
    let bytes = (rows.len() * inputs[0].shape()[1] * 4) as u64;
    let staging = inputs
        .iter()
        .map(|t| {
            let rank = t.rank();
            rank.scoped(op, || {
                let staging = rank.take_staging(bytes);
                let mut enc = rank
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
                for (buffer, from, to, len) in pieces(t, &rows) {
                    enc.copy_buffer_to_buffer(buffer, from, &staging, to, len);
                }
                let submission = rank.submit([enc.finish()]);
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

/// Waits for `chunk`, combines it into `host` and queues its upload to every output.
async fn finish_chunk(
    op: &'static str,
    inputs: &[Tensor],
    chunk: Chunk,
    host: &mut Vec<f32>,
    outputs: &[Tensor],
    combine: &mut Combine<'_>,
) -> Result<()> {
    let mut mapped = Vec::with_capacity(chunk.staging.len());
    for (t, (staging, rx, submission)) in inputs.iter().zip(chunk.staging) {
        crate::tensor::mapped(op, t.rank(), rx, submission).await?;
        mapped.push((t.rank(), staging));
    }
    let len = (chunk.bytes / 4) as usize;
    {
        // GL ranks: one thread at a time in GL (src/rank/gl.rs) while the ranges are taken;
        // reading them and the combination need no lock.
        let gl: Vec<_> = inputs.iter().map(|t| t.rank().gl()).collect();
        let views = mapped
            .iter()
            .map(|(r, b)| {
                b.slice(..chunk.bytes).get_mapped_range().map_err(|e| {
                    // A staging buffer is only ever destroyed with its device: say so.
                    r.loss_or(
                        op,
                        Error::Map {
                            op,
                            rank: r.index(),
                            message: e.to_string(),
                        },
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        drop(gl);
        let parts: Vec<&[f32]> = views.iter().map(|v| bytemuck::cast_slice(v)).collect();
        combine(&parts, host)?;
        if host.len() < len {
            return Err(Error::invalid(op, "a combination returned a short chunk"));
        }
    }
    for (rank, staging) in mapped {
        let _gl = rank.gl();
        staging.unmap();
        rank.give_staging(staging);
    }
    for out in outputs {
        for (buffer, offset, at, bytes) in pieces(out, &chunk.rows) {
            let data = &bytemuck::cast_slice(&host[..len])[at as usize..(at + bytes) as usize];
            out.rank()
                .scoped(op, || out.rank().upload(buffer, offset, data))?;
        }
    }
    Ok(())
}

/// The chunked all-reduce: two chunks in flight, each rank's copies submitted before any
/// wait, `combine` on each chunk. The result is held once per device (logical ranks
/// sharing a device share it).
pub(crate) async fn chunked_all_reduce(
    op: &'static str,
    inputs: &[Tensor],
    cuts: Cuts,
    combine: &mut Combine<'_>,
) -> Result<Vec<Tensor>> {
    let shape = inputs[0].shape();
    let mut outputs: Vec<Tensor> = Vec::with_capacity(inputs.len());
    let mut results = Vec::with_capacity(inputs.len());
    for t in inputs {
        let r = t.rank();
        match outputs.iter().find(|o| o.rank().shares_device_with(r)) {
            Some(o) => results.push(o.shared_with(r)),
            None => {
                let o = Tensor::output(r, shape, op)?;
                results.push(o.clone());
                outputs.push(o);
            }
        }
    }
    let chunks = chunk_rows(inputs, cuts);
    let most = chunks.iter().map(|r| r.len()).max().unwrap_or(0) * shape[1];
    let mut host = take_host_chunk(most);
    let mut pending = VecDeque::new();
    for (i, rows) in chunks.into_iter().enumerate() {
        pending.push_back(start_chunk(op, inputs, rows)?);
        if i >= 1 {
            if let Some(c) = pending.pop_front() {
                finish_chunk(op, inputs, c, &mut host, &outputs, combine).await?;
            }
        }
    }
    while let Some(c) = pending.pop_front() {
        finish_chunk(op, inputs, c, &mut host, &outputs, combine).await?;
    }
    give_host_chunk(host);
    Ok(results)
}
