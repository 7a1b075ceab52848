//! `Tensor`: a row-major f32 matrix in one rank's device memory; upload and read-back.

use std::sync::Arc;

use crate::error::{fmt_shape, Error, Result};
use crate::pool::Pooled;
use crate::rank::Rank;

/// A row-major `[rows, cols]` f32 matrix living on one [`Rank`].
///
/// Tensors are immutable once made: every operation writes a new one. Cloning is cheap
/// (the buffer is reference-counted) and shares the device memory. When the last clone
/// is dropped the buffer goes back to the rank's cache for the next tensor of its size,
/// so a `wgpu::Buffer` taken from [`Tensor::as_buffer`] must not outlive the tensor.
#[derive(Debug, Clone)]
pub struct Tensor {
    rank: Rank,
    buffer: Arc<Pooled>,
    shape: [usize; 2],
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Refuses shapes with a zero dimension or whose element count overflows.
pub(crate) fn check_shape(op: &'static str, shape: [usize; 2]) -> Result<usize> {
    if shape[0] == 0 || shape[1] == 0 {
        return Err(Error::shape(
            op,
            "both dimensions at least 1",
            fmt_shape(shape),
        ));
    }
    shape[0]
        .checked_mul(shape[1])
        .filter(|&n| n <= (u32::MAX / 4) as usize)
        .ok_or_else(|| Error::shape(op, "fewer than 2^30 elements", fmt_shape(shape)))
}

impl Tensor {
    /// Uploads `data`, a row-major `[rows, cols]` matrix, to `rank`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `data.len() != rows * cols` or a dimension is 0;
    /// [`Error::BufferTooLarge`] over the device's limits; [`Error::OutOfMemory`].
    pub fn from_host(rank: &Rank, data: &[f32], shape: [usize; 2]) -> Result<Self> {
        let op = "tensor.from_host";
        let len = check_shape(op, shape)?;
        if data.len() != len {
            return Err(Error::shape(
                op,
                format!("{len} values for {}", fmt_shape(shape)),
                format!("{} values", data.len()),
            ));
        }
        let t = Self::output(rank, shape, op)?;
        rank.scoped(op, || {
            rank.queue()
                .write_buffer(t.as_buffer(), 0, bytemuck::cast_slice(data));
            Ok(())
        })?;
        Ok(t)
    }

    /// A zero-filled tensor on `rank`.
    ///
    /// # Errors
    /// As [`Tensor::from_host`].
    pub fn zeros(rank: &Rank, shape: [usize; 2]) -> Result<Self> {
        let op = "tensor.zeros";
        let t = Self::output(rank, shape, op)?;
        rank.scoped(op, || {
            let mut enc = rank
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            enc.clear_buffer(t.as_buffer(), 0, None);
            rank.queue().submit([enc.finish()]);
            Ok(())
        })?;
        Ok(t)
    }

    /// A tensor whose contents are unspecified (a recycled buffer, or a fresh one): for
    /// outputs that the caller writes in full before anyone reads them.
    pub(crate) fn output(rank: &Rank, shape: [usize; 2], op: &'static str) -> Result<Self> {
        let len = check_shape(op, shape)?;
        let bytes = (len * 4) as u64;
        rank.check_buffer_size(op, bytes)?;
        rank.check_health(op)?;
        let buffer = match rank.buffer_pool().take(bytes) {
            Some(b) => b,
            None => rank.scoped(op, || {
                Ok(rank.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-tp tensor"),
                    size: bytes,
                    usage: USAGE,
                    mapped_at_creation: false,
                }))
            })?,
        };
        Ok(Tensor {
            rank: rank.clone(),
            buffer: Pooled::new(buffer, rank.buffer_pool()),
            shape,
        })
    }

    /// The same buffer seen as a tensor of `rank`, a logical rank sharing this tensor's
    /// device (a replicated value held once for all of them).
    pub(crate) fn shared_with(&self, rank: &Rank) -> Tensor {
        debug_assert!(rank.shares_device_with(&self.rank));
        Tensor {
            rank: rank.clone(),
            buffer: self.buffer.clone(),
            shape: self.shape,
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// `rows * cols`.
    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Always false: tensors have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The rank holding it.
    pub fn rank(&self) -> &Rank {
        &self.rank
    }

    /// The device buffer (`STORAGE | COPY_SRC | COPY_DST`, `4 * len()` bytes).
    pub fn as_buffer(&self) -> &wgpu::Buffer {
        self.buffer.buffer()
    }

    pub(crate) fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }

    /// Reads the tensor back to the host (waits for the GPU).
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::Timeout`], [`Error::DeviceLost`], [`Error::Validation`].
    pub async fn to_host_async(&self) -> Result<Vec<f32>> {
        let mut all = read_back("tensor.to_host", &[self]).await?;
        all.pop()
            .ok_or_else(|| Error::invalid("tensor.to_host", "read-back returned nothing"))
    }

    /// Blocking [`Tensor::to_host_async`].
    ///
    /// # Errors
    /// As [`Tensor::to_host_async`].
    pub fn to_host(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.to_host_async())
    }
}

pub(crate) type MapReceiver = futures_intrusive::channel::shared::OneshotReceiver<
    std::result::Result<(), wgpu::BufferAsyncError>,
>;

/// Requests the mapping of the first `bytes` of `staging` for reading.
pub(crate) fn map_read(staging: &wgpu::Buffer, bytes: u64) -> MapReceiver {
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    staging
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            // The receiver is gone only if the caller gave up; nothing to report then.
            let _ = tx.send(r);
        });
    rx
}

/// Waits for a mapping requested by [`map_read`] (after the device has been polled).
pub(crate) async fn mapped(op: &'static str, rank: usize, rx: MapReceiver) -> Result<()> {
    let map_err = |message: String| Error::Map { op, rank, message };
    match rx.receive().await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(map_err(e.to_string())),
        None => Err(map_err("map callback was dropped".into())),
    }
}

/// Reads several tensors (on any ranks) back to the host. Every copy is submitted and
/// every map requested before the first wait, so all ranks' transfers run at once.
/// Staging buffers come from, and go back to, each rank's pool.
pub(crate) async fn read_back(op: &'static str, tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
    let mut pending: Vec<(&Tensor, wgpu::Buffer, MapReceiver, wgpu::SubmissionIndex)> =
        Vec::with_capacity(tensors.len());
    for t in tensors {
        let rank = &t.rank;
        let bytes = t.bytes();
        pending.push(rank.scoped(op, || {
            let staging = rank.take_staging(bytes);
            let mut enc = rank
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            enc.copy_buffer_to_buffer(t.as_buffer(), 0, &staging, 0, bytes);
            let submission = rank.queue().submit([enc.finish()]);
            let rx = map_read(&staging, bytes);
            Ok((*t, staging, rx, submission))
        })?);
    }
    let mut out = Vec::with_capacity(pending.len());
    for (t, staging, rx, submission) in pending {
        let rank = t.rank.index();
        let bytes = t.bytes();
        t.rank.wait(op, submission)?;
        mapped(op, rank, rx)
            .await
            .map_err(|e| t.rank.loss_or(op, e))?;
        let values = {
            let view = staging.slice(..bytes).get_mapped_range().map_err(|e| {
                let message = e.to_string();
                t.rank.loss_or(op, Error::Map { op, rank, message })
            })?;
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.unmap();
        t.rank.give_staging(staging);
        out.push(values);
    }
    Ok(out)
}
