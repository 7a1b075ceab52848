//! `Tensor`: a row-major matrix in one rank's device memory (f32, or half-precision
//! weights two to a word); upload and read-back.
//!
//! A tensor is stored in bands of whole rows, each its own buffer, so that no buffer
//! exceeds the device's `max_buffer_size` or `max_storage_buffer_binding_size`: most
//! tensors are one band; larger ones are split transparently, and every kernel runs per
//! band.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::rank::pool::Pooled;
use crate::rank::Rank;

mod half;
mod packed;
mod read;
pub(crate) mod shard;

#[cfg(not(target_arch = "wasm32"))]
use crate::rank::block_on;
pub(crate) use read::{map_read, mapped, read_back, MapReceiver};

/// A row-major `[rows, cols]` matrix living on one [`Rank`]: f32, or half-precision
/// weights ([`Tensor::from_half`], which only the GEMMs read as weights).
///
/// Tensors are immutable once made: every operation writes a new one. Cloning is cheap
/// (the buffers are reference-counted) and shares the device memory. When the last clone
/// is dropped the buffers go back to the rank's cache for the next tensor of their size
/// (except buffers handed out by [`Tensor::buffers`], which are freed).
#[derive(Debug, Clone)]
pub struct Tensor {
    rank: Rank,
    bands: Arc<[Band]>,
    shape: [usize; 2],
    dtype: DType,
}

/// Consecutive whole rows of a tensor, in one buffer (`rows.len() * cols` values; a half
/// band's bytes padded to 8, whole `vec2<u32>` words for the vec4 GEMMs), of one type:
/// the tensor's, or for weights stacked from parts of several types
/// ([`Tensor::stack_rows`]) its part's.
#[derive(Debug, Clone)]
pub(crate) struct Band {
    buffer: Arc<Pooled>,
    pub(crate) rows: Range<usize>,
    pub(crate) dtype: DType,
}

impl Band {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.buffer()
    }
}

/// The most bytes one band may hold on `rank`, and the limit's name.
fn band_limit(rank: &Rank) -> (u64, &'static str) {
    let l = rank.limits();
    if l.max_buffer_size <= l.max_storage_buffer_binding_size {
        (l.max_buffer_size, "max_buffer_size")
    } else {
        (
            l.max_storage_buffer_binding_size,
            "max_storage_buffer_binding_size",
        )
    }
}

/// Refuses an f32 `shape` that would be made as more than one band on `rank` (for kernels
/// that bind a tensor as one buffer), naming `op`.
pub(crate) fn check_one_band(rank: &Rank, shape: [usize; 2], op: &'static str) -> Result<()> {
    let (limit, limit_name) = band_limit(rank);
    let bytes = (shape[0] as u64)
        .saturating_mul(shape[1] as u64)
        .saturating_mul(4);
    if shape[0] > band_rows(rank, shape[1], op)? {
        return Err(Error::BufferTooLarge {
            op,
            bytes,
            limit,
            limit_name,
        });
    }
    Ok(())
}

/// Rows per band for tensors with `cols` columns on `rank`: as many f32 rows as fit both
/// limits. Half tensors take the same rows (their bands half full), so a product's blocks,
/// which follow the weight's bands, and its bits do not depend on the weight's type.
pub(crate) fn band_rows(rank: &Rank, cols: usize, op: &'static str) -> Result<usize> {
    let (limit, limit_name) = band_limit(rank);
    let row = cols as u64 * 4;
    if row > limit {
        // A band holds whole rows: one row must fit.
        return Err(Error::BufferTooLarge {
            op,
            bytes: row,
            limit,
            limit_name,
        });
    }
    // Whole multiples of 4 rows where possible, so that band starts keep the vec4
    // alignment the CPU GEMM needs.
    let rows = (limit / row) as usize;
    Ok(if rows >= 4 { rows - rows % 4 } else { rows })
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

/// Uploads go through the rank's kept upload buffers (`Rank::upload`) in pieces of at
/// most this many bytes: a decode step's input makes no new buffer, and a large tensor
/// (a model's weights) never has a staging copy of its whole size.
const SMALL_UPLOAD_BYTES: u64 = 1 << 20;

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
        let cols = shape[1];
        t.upload_bands(op, |b| {
            Cow::Borrowed(bytemuck::cast_slice(
                &data[b.rows.start * cols..b.rows.end * cols],
            ))
        })?;
        Ok(t)
    }

    /// Uploads each band's bytes (`bytes(band)`, whole words) into it.
    fn upload_bands<'d>(
        &self,
        op: &'static str,
        bytes: impl Fn(&Band) -> Cow<'d, [u8]>,
    ) -> Result<()> {
        let rank = &self.rank;
        rank.scoped(op, || {
            for b in self.bands() {
                let part = bytes(b);
                // Through the kept upload buffers, a piece at a time: a decode step's
                // input makes no new buffer, and a model's weights never sit in memory
                // twice (a staging copy of a whole large tensor would, and the allocator
                // may keep it after it is freed).
                for (i, piece) in part.chunks(SMALL_UPLOAD_BYTES as usize).enumerate() {
                    let offset = (i as u64) * SMALL_UPLOAD_BYTES;
                    rank.upload(b.buffer(), offset, piece)?;
                    if i % 4 == 3 {
                        // Hand finished upload buffers back for the next pieces, so a
                        // large tensor reuses a few instead of making one per piece.
                        rank.poll_now();
                    }
                }
            }
            Ok(())
        })?;
        rank.poll_now();
        Ok(())
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
            for b in t.bands() {
                enc.clear_buffer(b.buffer(), 0, None);
            }
            rank.submit([enc.finish()]);
            Ok(())
        })?;
        Ok(t)
    }

    /// Token ids as a `[1, n]` tensor holding each id's `u32` bits, as
    /// the embedding kernel (`ops::embed`) reads them.
    ///
    /// # Errors
    /// [`Error::Shape`] for no ids; allocation errors.
    pub fn from_ids(rank: &Rank, ids: &[u32]) -> Result<Self> {
        let bits: Vec<f32> = ids.iter().map(|&i| f32::from_bits(i)).collect();
        Tensor::from_host(rank, &bits, [1, ids.len()])
    }

    /// A tensor whose contents are unspecified (a recycled buffer, or a fresh one): for
    /// outputs that the caller writes in full before anyone reads them.
    pub(crate) fn output(rank: &Rank, shape: [usize; 2], op: &'static str) -> Result<Self> {
        Self::alloc(rank, shape, DType::F32, op)
    }

    /// A `dtype` tensor whose contents are unspecified.
    fn alloc(rank: &Rank, shape: [usize; 2], dtype: DType, op: &'static str) -> Result<Self> {
        check_shape(op, shape)?;
        let per = band_rows(rank, shape[1], op)?;
        rank.check_health(op)?;
        let bands = (0..shape[0])
            .step_by(per)
            .map(|r0| {
                let rows = r0..(r0 + per).min(shape[0]);
                let values = (rows.len() * shape[1]) as u64;
                // A half band's bytes padded to whole vec2<u32> words (within the f32
                // size, but for a band of one value); a quantized band's to whole words
                // and one more, which its prelude's unaligned reads may touch
                // (shaders/weights_quant.wgsl).
                let bytes = match dtype {
                    DType::F32 => values * 4,
                    DType::F16 | DType::BF16 => (values * 2).next_multiple_of(8),
                    q => (rows.len() * q.bytes_of(shape[1])).next_multiple_of(4) as u64 + 4,
                };
                let buffer = match rank.buffer_pool().take(bytes) {
                    Some(b) => b,
                    None => rank.scoped(op, || {
                        rank.note_buffer_made();
                        Ok(rank.device().create_buffer(&wgpu::BufferDescriptor {
                            label: Some("wgpu-tp tensor"),
                            size: bytes,
                            usage: USAGE,
                            mapped_at_creation: false,
                        }))
                    })?,
                };
                Ok(Band {
                    buffer: Pooled::new(buffer, rank.buffer_pool()),
                    rows,
                    dtype,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor {
            rank: rank.clone(),
            bands: bands.into(),
            shape,
            dtype,
        })
    }

    /// `host` uploaded to each of `ranks`, once per device (logical ranks sharing a device
    /// share the upload).
    pub(crate) fn replicated(ranks: &[Rank], host: &[f32], shape: [usize; 2]) -> Result<Vec<Self>> {
        let mut out: Vec<Tensor> = Vec::with_capacity(ranks.len());
        for r in ranks {
            let t = match out.iter().find(|t| t.rank().shares_device_with(r)) {
                Some(t) => t.shared_with(r),
                None => Tensor::from_host(r, host, shape)?,
            };
            out.push(t);
        }
        Ok(out)
    }

    /// True when both are views of the same buffers (a replicated value that logical
    /// ranks sharing a device hold once).
    pub(crate) fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.bands, &other.bands)
    }

    /// The same buffer seen as a tensor of `rank`, a logical rank sharing this tensor's
    /// device (a replicated value held once for all of them).
    pub(crate) fn shared_with(&self, rank: &Rank) -> Tensor {
        debug_assert!(rank.shares_device_with(&self.rank));
        Tensor {
            rank: rank.clone(),
            bands: self.bands.clone(),
            shape: self.shape,
            dtype: self.dtype,
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The element type (for weights stacked from parts of several types, that of the
    /// first part: [`Tensor::is_mixed`]).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// True for weights whose rows are parts of different types (a fused q/k/v whose v
    /// a GGUF file quantized with more bits): each band holds one part's type, and a
    /// product or lookup reads each band through its own type's prelude.
    pub fn is_mixed(&self) -> bool {
        self.bands.iter().any(|b| b.dtype != self.dtype)
    }

    /// `parts`, tensors of one rank with the same columns, one under the other: their
    /// bands, shared (no copy), each keeping its type. The layers' fused weights whose
    /// parts a file stores in different types.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no parts or parts of different ranks;
    /// [`Error::Shape`] for parts of different columns.
    pub(crate) fn stack_rows(parts: &[Tensor]) -> Result<Tensor> {
        let op = "tensor.stack_rows";
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid(op, "no parts to stack"))?;
        let cols = first.shape[1];
        let mut bands = Vec::new();
        let mut rows = 0;
        for p in parts {
            if !p.rank.shares_device_with(&first.rank) || p.rank.index() != first.rank.index() {
                return Err(Error::invalid(op, "parts of different ranks"));
            }
            if p.shape[1] != cols {
                return Err(Error::shape(
                    op,
                    format!("parts of {cols} columns"),
                    fmt_shape(p.shape),
                ));
            }
            for b in p.bands.iter() {
                bands.push(Band {
                    buffer: b.buffer.clone(),
                    rows: rows + b.rows.start..rows + b.rows.end,
                    dtype: b.dtype,
                });
            }
            rows += p.shape[0];
        }
        Ok(Tensor {
            rank: first.rank.clone(),
            bands: bands.into(),
            shape: [rows, cols],
            dtype: first.dtype,
        })
    }

    /// Refuses a tensor that is not f32 where `op` reads or writes f32 values (every op
    /// but a GEMM's weights and an embedding table).
    pub(crate) fn require_f32(&self, op: &'static str) -> Result<()> {
        if self.dtype == DType::F32 && !self.is_mixed() {
            return Ok(());
        }
        Err(Error::invalid(
            op,
            format!(
                "a {} tensor: only GEMM weights and embedding tables may be half precision; \
                 this takes f32",
                self.dtype
            ),
        ))
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

    /// The device buffers (`STORAGE | COPY_SRC | COPY_DST`), each holding the rows of its
    /// range, row-major: one buffer unless the tensor is over the device's buffer limits.
    ///
    /// Buffers handed out here are never reused for another tensor: once this tensor and
    /// its clones are gone they are freed rather than cached, so whatever the caller does
    /// with them (keep, write, destroy) cannot reach another tensor.
    pub fn buffers(&self) -> Vec<(&wgpu::Buffer, Range<usize>)> {
        self.bands
            .iter()
            .map(|b| (b.buffer.export(), b.rows.clone()))
            .collect()
    }

    pub(crate) fn bands(&self) -> &[Band] {
        &self.bands
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
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Tensor::to_host_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_host(&self) -> Result<Vec<f32>> {
        block_on(self.to_host_async())
    }
}
