//! Reading tensors back to the host: copies into staging buffers, mapped and read.

use super::Tensor;
use crate::error::{Error, Result};
use crate::rank::{signal, Rank, Signal};

/// Where a mapping's outcome arrives.
pub(crate) type MapReceiver = Signal<std::result::Result<(), wgpu::BufferAsyncError>>;

/// Requests the mapping of the first `bytes` of `staging` for reading.
pub(crate) fn map_read(staging: &wgpu::Buffer, bytes: u64) -> MapReceiver {
    let (tx, rx) = signal();
    staging
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
    rx
}

/// Waits for a mapping requested by [`map_read`] after `submission` on `rank` (see
/// [`Signal::wait`]).
pub(crate) async fn mapped(
    op: &'static str,
    rank: &Rank,
    rx: MapReceiver,
    submission: wgpu::SubmissionIndex,
) -> Result<()> {
    match rx.wait(op, rank, Some(submission)).await? {
        Ok(()) => Ok(()),
        Err(e) => Err(rank.loss_or(
            op,
            Error::Map {
                op,
                rank: rank.index(),
                message: e.to_string(),
            },
        )),
    }
}

/// Reads several tensors (on any ranks) back to the host. Every copy is submitted (one
/// submission per device) and every map requested before the first wait, so all ranks'
/// transfers run at once. Staging buffers come from, and go back to, each rank's pool.
pub(crate) async fn read_back(op: &'static str, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
    type Pending<'a> = (
        &'a Tensor,
        wgpu::Buffer,
        (u64, usize, crate::DType),
        MapReceiver,
        wgpu::SubmissionIndex,
    );
    // Every band's copy, encoded: (tensor, staging, bytes, commands).
    let mut copies = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let rank = &t.rank;
        for band in t.bands.iter() {
            // Whole words: a half tensor's odd last value comes with its padding.
            let elems = band.rows.len() * t.shape[1];
            let bytes = band.dtype.bytes_of(elems).next_multiple_of(4) as u64;
            copies.push(rank.scoped(op, || {
                let staging = rank.take_staging(bytes);
                let mut enc = rank
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
                enc.copy_buffer_to_buffer(band.buffer(), 0, &staging, 0, bytes);
                Ok((i, staging, (bytes, elems, band.dtype), Some(enc.finish())))
            })?);
        }
    }
    // One submission per device, then the maps of its copies.
    let mut pending: Vec<Vec<Pending>> = tensors.iter().map(|_| Vec::new()).collect();
    let mut mapped_at = vec![None; copies.len()];
    for first in 0..copies.len() {
        if mapped_at[first].is_some() {
            continue;
        }
        let rank = &tensors[copies[first].0].rank;
        let mine: Vec<usize> = (first..copies.len())
            .filter(|&c| tensors[copies[c].0].rank.shares_device_with(rank))
            .collect();
        let submission = rank.scoped(op, || {
            let cbs = mine.iter().filter_map(|&c| copies[c].3.take());
            let submission = rank.submit(cbs.collect::<Vec<_>>());
            Ok(submission)
        })?;
        for &c in &mine {
            mapped_at[c] = Some(submission.clone());
        }
    }
    for ((i, staging, size, _), submission) in copies.into_iter().zip(mapped_at) {
        let submission =
            submission.ok_or_else(|| Error::invalid(op, "a copy was not submitted"))?;
        let rx = map_read(&staging, size.0);
        pending[i].push((tensors[i], staging, size, rx, submission));
    }
    let mut out = Vec::with_capacity(pending.len());
    for parts in pending {
        let mut values = Vec::new();
        for (t, staging, (bytes, elems, dtype), rx, submission) in parts {
            let rank = t.rank.index();
            mapped(op, &t.rank, rx, submission).await?;
            let _gl = t.rank.gl();
            {
                let view = staging.slice(..bytes).get_mapped_range().map_err(|e| {
                    let message = e.to_string();
                    t.rank.loss_or(op, Error::Map { op, rank, message })
                })?;
                if dtype == crate::DType::F32 {
                    match bytemuck::try_cast_slice::<u8, f32>(&view) {
                        Ok(v) => values.extend_from_slice(v),
                        Err(_) => values.extend(bytemuck::pod_collect_to_vec::<u8, f32>(&view)),
                    }
                } else if dtype.is_quantized() {
                    // Blocks decoded as the kernels decode them; the padding left out.
                    let used = dtype.bytes_of(elems);
                    values.extend(dtype.dequantize(&view[..used])?);
                } else {
                    // Half values widened exactly; the padding after the last is left out.
                    values.extend(
                        view.chunks_exact(2)
                            .take(elems)
                            .map(|h| dtype.widen(u16::from_le_bytes([h[0], h[1]]))),
                    );
                }
            }
            staging.unmap();
            t.rank.give_staging(staging);
        }
        out.push(values);
    }
    Ok(out)
}
