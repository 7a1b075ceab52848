//! Quantized weights: `Tensor::from_packed`, a GGUF tensor's blocks uploaded as the file
//! holds them (the weight preludes decode them where they are read).

use std::borrow::Cow;

use super::{check_shape, Tensor};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::rank::Rank;

/// Refuses `shape` for `dtype` blocks unless each row is whole blocks, naming `op`; the
/// bytes of one row.
pub(crate) fn packed_row_bytes(op: &'static str, dtype: DType, shape: [usize; 2]) -> Result<usize> {
    if !dtype.is_quantized() {
        return Err(Error::invalid(
            op,
            format!("{dtype} is not a quantized type: upload it with Tensor::from_host or Tensor::from_half"),
        ));
    }
    check_shape(op, shape)?;
    let bv = dtype.block_values();
    if !shape[1].is_multiple_of(bv) {
        return Err(Error::shape(
            op,
            format!("rows of whole {dtype} blocks ({bv} values)"),
            fmt_shape(shape),
        ));
    }
    Ok(dtype.bytes_of(shape[1]))
}

impl Tensor {
    /// Uploads `bytes`, the row-major blocks of a `[rows, cols]` matrix of the quantized
    /// type `dtype` (GGUF's `Q8_0` ... `Q6K`, as a GGUF file holds them: `cols` is the
    /// row's values, a multiple of the type's block), to `rank` as they are. A GEMM reads it
    /// as `[out, in]` weights ([`WeightLayout::OutIn`](crate::WeightLayout), or read the
    /// other way as `InOut` by the simple family: the input gradient's product) and the
    /// embedding lookup as its table, decoding each value to the f32 that
    /// [`DType::dequantize`] gives; [`Tensor::to_host_async`] decodes it the same way. Everything
    /// else refuses it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a type that is not quantized; [`Error::Shape`] when
    /// `cols` is not whole blocks, a dimension is 0, or `bytes` is not `rows` rows of them;
    /// [`Error::BufferTooLarge`] over the device's limits; [`Error::OutOfMemory`].
    pub fn from_packed(rank: &Rank, dtype: DType, bytes: &[u8], shape: [usize; 2]) -> Result<Self> {
        let op = "tensor.from_packed";
        let row = packed_row_bytes(op, dtype, shape)?;
        if bytes.len() != shape[0] * row {
            return Err(Error::shape(
                op,
                format!(
                    "{} bytes ({row} a row) for {}",
                    shape[0] * row,
                    fmt_shape(shape)
                ),
                format!("{} bytes", bytes.len()),
            ));
        }
        let t = Self::alloc(rank, shape, dtype, op)?;
        t.upload_bands(op, |b| {
            let part = &bytes[b.rows.start * row..b.rows.end * row];
            // Whole words (the buffer's padding past them stays as it is).
            let mut owned = part.to_vec();
            owned.resize(part.len().next_multiple_of(4), 0);
            Cow::Owned(owned)
        })?;
        Ok(t)
    }
}
