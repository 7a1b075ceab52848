//! `HostWeights`: a layer's weights on the host as a checkpoint holds them, f32 values,
//! the 16-bit values of a half type or a GGUF file's quantized blocks, uploaded as they
//! are.

use crate::error::{Error, Result};
use crate::kernels::dtype::DType;
use crate::rank::Rank;
use crate::tensor::Tensor;

/// Weights on the host, row-major: f32 values, or bf16/f16 values as their 16-bit
/// patterns (kept at two bytes a value on the device: see [`Tensor::from_half`]). The
/// layers' constructors take anything that converts into it, a `Vec<f32>` included.
#[derive(Debug, Clone, PartialEq)]
pub enum HostWeights {
    /// f32 values.
    F32(Vec<f32>),
    /// The bit patterns of values of a half type, `DType::F16` or `DType::BF16` (with
    /// `DType::F32` it is refused wherever it is used).
    Half(DType, Vec<u16>),
    /// Whole rows of quantized blocks of a type such as `DType::Q4K`, as a GGUF file holds
    /// them (kept so on the device: see [`Tensor::from_packed`]). A layer takes them only
    /// as `[out, in]` weights (`WeightLayout::OutIn`) whose inputs a rank holds in whole
    /// blocks.
    Packed(DType, Vec<u8>),
    /// `[out, in]` weights stacked from parts of different types, row blocks one under
    /// the other (a fused q/k/v or gate/up whose parts a GGUF file stores in different
    /// types, as llama.cpp's Q4_K_M gives v more bits): uploaded as one tensor whose
    /// bands keep each part's type ([`Tensor::is_mixed`]), no part widened. Made by
    /// joining such parts; each part holds whole rows.
    Rows(Vec<HostWeights>),
}

impl Default for HostWeights {
    /// No f32 values.
    fn default() -> Self {
        HostWeights::F32(Vec::new())
    }
}

impl From<Vec<f32>> for HostWeights {
    fn from(v: Vec<f32>) -> Self {
        HostWeights::F32(v)
    }
}

impl HostWeights {
    /// No values yet, of `dtype`, room for `capacity`.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    pub(crate) fn empty(dtype: DType, capacity: usize) -> Self {
        match dtype {
            DType::F32 => HostWeights::F32(Vec::with_capacity(capacity)),
            t if t.is_quantized() => {
                HostWeights::Packed(t, Vec::with_capacity(t.bytes_of(capacity)))
            }
            t => HostWeights::Half(t, Vec::with_capacity(capacity)),
        }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            HostWeights::F32(v) => v.len(),
            HostWeights::Half(_, v) => v.len(),
            HostWeights::Packed(t, v) => v.len() / t.block_bytes() * t.block_values(),
            HostWeights::Rows(parts) => parts.iter().map(HostWeights::len).sum(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            HostWeights::F32(_) => DType::F32,
            HostWeights::Half(t, _) | HostWeights::Packed(t, _) => *t,
            HostWeights::Rows(parts) => parts.first().map_or(DType::F32, HostWeights::dtype),
        }
    }

    /// The values as f32 (half ones widened exactly, quantized ones decoded as the
    /// kernels decode them; NaN for `Half(DType::F32, _)`, which holds no values of a half
    /// type, and for `Packed` bytes that are not whole blocks of a quantized type).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            HostWeights::F32(v) => v.clone(),
            HostWeights::Half(t, v) => v.iter().map(|&h| t.widen(h)).collect(),
            HostWeights::Packed(t, v) => match t.dequantize(v) {
                Ok(values) if t.is_quantized() => values,
                _ => vec![f32::NAN; self.len()],
            },
            HostWeights::Rows(parts) => parts.iter().flat_map(HostWeights::to_f32).collect(),
        }
    }

    /// Uploads them to `rank` as a `shape` tensor of their own type.
    ///
    /// # Errors
    /// As [`Tensor::from_host`], [`Tensor::from_half`] and [`Tensor::from_packed`];
    /// [`Error::Shape`] for stacked parts that are not whole rows of `shape`.
    pub fn upload(&self, rank: &Rank, shape: [usize; 2]) -> Result<Tensor> {
        // Tensor::from_half refuses Half(DType::F32, _).
        match self {
            HostWeights::F32(v) => Tensor::from_host(rank, v, shape),
            HostWeights::Half(t, v) => Tensor::from_half(rank, *t, v, shape),
            HostWeights::Packed(t, v) => Tensor::from_packed(rank, *t, v, shape),
            HostWeights::Rows(parts) => {
                let op = "host_weights.upload";
                let cols = shape[1].max(1);
                let mut tensors = Vec::with_capacity(parts.len());
                let mut rows = 0;
                for p in parts {
                    if !p.len().is_multiple_of(cols) {
                        return Err(Error::shape(
                            op,
                            format!("parts of whole rows of {cols} values"),
                            format!("a part of {} values", p.len()),
                        ));
                    }
                    rows += p.len() / cols;
                    tensors.push(p.upload(rank, [p.len() / cols, cols])?);
                }
                if rows != shape[0] {
                    return Err(Error::shape(
                        op,
                        format!("{} rows", shape[0]),
                        format!("parts of {rows} rows"),
                    ));
                }
                Tensor::stack_rows(&tensors)
            }
        }
    }

    /// `parts` one after another (all of one type), or an error naming `op`.
    /// `parts` one under the other: `[out, in]` weights of several outputs as one (as the
    /// layers fuse q/k/v and gate/up). Parts of one type join into one of that type;
    /// parts of several types into [`HostWeights::Rows`], each keeping its type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `Half(DType::F32, _)`.
    pub fn stacked(parts: &[&HostWeights]) -> Result<HostWeights> {
        Self::concat("host_weights.stacked", parts)
    }

    pub(crate) fn concat(op: &'static str, parts: &[&HostWeights]) -> Result<HostWeights> {
        Self::join(op, parts, Join::Concat)
    }

    /// Each of `rows` rows of `parts` (all of one type, each `len / rows` values a row)
    /// side by side: the `[in, out]` weights of several outputs as one.
    pub(crate) fn side_by_side(
        op: &'static str,
        parts: &[&HostWeights],
        rows: usize,
    ) -> Result<HostWeights> {
        Self::join(op, parts, Join::SideBySide(rows))
    }

    fn join(op: &'static str, parts: &[&HostWeights], how: Join) -> Result<HostWeights> {
        if parts
            .iter()
            .any(|p| matches!(p, HostWeights::Half(DType::F32, _)))
        {
            return Err(Error::invalid(op, "half weights of DType::F32"));
        }
        let first = parts.first().map_or(DType::F32, |p| p.dtype());
        let mixed = parts
            .iter()
            .any(|p| p.dtype() != first || matches!(p, HostWeights::Rows(_)));
        if mixed && matches!(how, Join::Concat) {
            // Row blocks of several types: kept apart, each in its own type.
            let mut rows = Vec::new();
            for p in parts {
                match p {
                    HostWeights::Rows(inner) => rows.extend(inner.iter().cloned()),
                    p => rows.push((*p).clone()),
                }
            }
            return Ok(HostWeights::Rows(rows));
        }
        if parts.iter().any(|p| matches!(p, HostWeights::Packed(..))) {
            return Self::join_packed(op, parts, how);
        }
        let dtype = parts.first().map_or(DType::F32, |p| p.dtype());
        if let Some(p) = parts.iter().find(|p| p.dtype() != dtype) {
            return Err(Error::invalid(
                op,
                format!("weights of {dtype} and of {} to be joined", p.dtype()),
            ));
        }
        let f32s: Vec<&[f32]> = parts
            .iter()
            .filter_map(|p| match p {
                HostWeights::F32(v) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        let halves: Vec<&[u16]> = parts
            .iter()
            .filter_map(|p| match p {
                HostWeights::Half(_, v) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        Ok(match dtype {
            DType::F32 => HostWeights::F32(how.apply(&f32s)),
            t => HostWeights::Half(t, how.apply(&halves)),
        })
    }
}

impl HostWeights {
    /// `join` of parts one of which is quantized: rows of blocks one after another (the
    /// `[out, in]` weights of several outputs); side by side would cut blocks.
    fn join_packed(op: &'static str, parts: &[&HostWeights], how: Join) -> Result<HostWeights> {
        let dtype = parts.first().map_or(DType::F32, |p| p.dtype());
        let mut bytes = Vec::new();
        for p in parts {
            match p {
                HostWeights::Packed(t, v) if *t == dtype => bytes.extend_from_slice(v),
                _ => {
                    return Err(Error::invalid(
                        op,
                        format!("weights of {dtype} and of {} to be joined", p.dtype()),
                    ))
                }
            }
        }
        if matches!(how, Join::SideBySide(_)) {
            return Err(Error::invalid(
                op,
                format!("{dtype} weights join as [out, in] rows (WeightLayout::OutIn) only"),
            ));
        }
        Ok(HostWeights::Packed(dtype, bytes))
    }
}

/// How parts are joined.
#[derive(Clone, Copy)]
enum Join {
    /// One after another.
    Concat,
    /// Row `r` of every part, for each of the rows, side by side.
    SideBySide(usize),
}

impl Join {
    fn apply<T: Copy>(self, parts: &[&[T]]) -> Vec<T> {
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        match self {
            Join::Concat => parts.iter().for_each(|p| out.extend_from_slice(p)),
            Join::SideBySide(rows) => {
                let widths: Vec<usize> = parts.iter().map(|p| p.len() / rows.max(1)).collect();
                for r in 0..rows {
                    for (p, &w) in parts.iter().zip(&widths) {
                        out.extend_from_slice(&p[r * w..(r + 1) * w]);
                    }
                }
            }
        }
        out
    }
}
