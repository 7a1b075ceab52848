//! Half-precision weights: `Tensor::from_half`, the 16-bit values of a bf16 or f16
//! checkpoint uploaded as they are, two to a 32-bit word.

use std::borrow::Cow;

use super::{check_shape, Tensor};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::rank::Rank;

impl Tensor {
    /// Uploads `bits`, the row-major 16-bit values of a `[rows, cols]` matrix of `dtype`
    /// (bf16 or f16), to `rank` as they are: two values to a 32-bit word, half the bytes
    /// of f32 (each band's last word padded when it holds an odd count). A GEMM reads it
    /// as weights and the embedding lookup as its table, widening each value exactly to
    /// f32 (`ops::matmul`, the layers' `from_shards`, `ops::embed`); [`Tensor::to_host_async`]
    /// widens it the same way. Everything else refuses it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `DType::F32` (use [`Tensor::from_host`]);
    /// [`Error::Shape`] if `bits.len() != rows * cols` or a dimension is 0;
    /// [`Error::BufferTooLarge`] over the device's limits; [`Error::OutOfMemory`].
    pub fn from_half(rank: &Rank, dtype: DType, bits: &[u16], shape: [usize; 2]) -> Result<Self> {
        let op = "tensor.from_half";
        if dtype == DType::F32 {
            return Err(Error::invalid(
                op,
                "f32 is not a half type: upload f32 values with Tensor::from_host",
            ));
        }
        let len = check_shape(op, shape)?;
        if bits.len() != len {
            return Err(Error::shape(
                op,
                format!("{len} values for {}", fmt_shape(shape)),
                format!("{} values", bits.len()),
            ));
        }
        let t = Self::alloc(rank, shape, dtype, op)?;
        let cols = shape[1];
        t.upload_bands(op, |b| {
            let part = &bits[b.rows.start * cols..b.rows.end * cols];
            if cfg!(target_endian = "little") && part.len().is_multiple_of(2) {
                // The values' own bytes, no copy (a band is most of a large weight).
                return Cow::Borrowed(bytemuck::cast_slice(part));
            }
            let mut bytes: Vec<u8> = part.iter().flat_map(|h| h.to_le_bytes()).collect();
            // Whole words: an odd count ends with a zero half.
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            Cow::Owned(bytes)
        })?;
        Ok(t)
    }
}
