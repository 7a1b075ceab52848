//! `Weights`: a checkpoint seen from one module's name down (candle's `VarBuilder::pp`):
//! `w.pp("model.layers").pp(3).pp("self_attn.q_proj").rows("weight", r)` reads rows `r`
//! of `model.layers.3.self_attn.q_proj.weight`, in the file's type, and nothing else.
//! The file is a safetensors checkpoint or a GGUF file ([`Source`]).

use std::fmt::Display;
use std::ops::Range;

use crate::error::Result;
use crate::kernels::dtype::DType;
use crate::load::{Checkpoint, Gguf};
use crate::nn::HostWeights;

/// The file a model's tensors are read from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// A safetensors checkpoint (f32, f16, bf16).
    Safetensors(&'a Checkpoint),
    /// A GGUF file (f32, f16, bf16 and the block types the kernels decode).
    Gguf(&'a Gguf),
}

impl Source<'_> {
    /// Checks that tensor `name` exists with `shape` (outermost first) and a type the
    /// loader reads, and returns that type.
    pub(super) fn check(&self, name: &str, shape: &[usize]) -> Result<DType> {
        match self {
            Source::Safetensors(c) => c.check(name, shape),
            Source::Gguf(g) => g.check(name, shape),
        }
    }

    /// The number of tensors in the file(s).
    pub(super) fn tensor_count(&self) -> usize {
        match self {
            Source::Safetensors(c) => c.tensor_count(),
            Source::Gguf(g) => g.tensors().len(),
        }
    }

    /// The type of tensor `name`.
    fn dtype(&self, name: &str) -> Result<DType> {
        match self {
            Source::Safetensors(c) => {
                let shape = c.shape(name)?.to_vec();
                c.check(name, &shape)
            }
            Source::Gguf(g) => g.dtype(name),
        }
    }

    fn rows(&self, name: &str, rows: Range<usize>) -> Result<HostWeights> {
        match self {
            Source::Safetensors(c) => c.rows(name, rows),
            Source::Gguf(g) => g.rows(name, rows),
        }
    }

    fn cols(&self, name: &str, cols: Range<usize>) -> Result<HostWeights> {
        match self {
            Source::Safetensors(c) => c.cols(name, cols),
            Source::Gguf(g) => g.cols(name, cols),
        }
    }

    fn f32(&self, name: &str) -> Result<Vec<f32>> {
        match self {
            Source::Safetensors(c) => c.f32(name),
            Source::Gguf(g) => g.f32(name),
        }
    }
}

/// A checkpoint scoped to a name prefix.
#[derive(Clone)]
pub(super) struct Weights<'a> {
    source: Source<'a>,
    path: String,
}

impl<'a> Weights<'a> {
    /// The whole file under `prefix` (`""` for none).
    pub(super) fn new(source: Source<'a>, prefix: &str) -> Self {
        Weights {
            source,
            path: prefix.trim_end_matches('.').to_string(),
        }
    }

    /// The scope one level down: `{path}.{name}`.
    pub(super) fn pp(&self, name: impl Display) -> Self {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Weights {
            source: self.source,
            path,
        }
    }

    /// The full name of `leaf` in this scope.
    pub(super) fn name(&self, leaf: &str) -> String {
        self.pp(leaf).path
    }

    /// Rows `rows` of `leaf`, in the file's type.
    pub(super) fn rows(&self, leaf: &str, rows: Range<usize>) -> Result<HostWeights> {
        self.source.rows(&self.name(leaf), rows)
    }

    /// Columns `cols` of `leaf`, in the file's type (whole blocks of a quantized type).
    pub(super) fn cols(&self, leaf: &str, cols: Range<usize>) -> Result<HostWeights> {
        self.source.cols(&self.name(leaf), cols)
    }

    /// All of `leaf`, as f32 (norms, biases).
    pub(super) fn f32(&self, leaf: &str) -> Result<Vec<f32>> {
        self.source.f32(&self.name(leaf))
    }

    /// The type `leaf` is stored in (its block values set where its inputs may be cut).
    pub(super) fn dtype(&self, leaf: &str) -> Result<DType> {
        self.source.dtype(&self.name(leaf))
    }
}

/// `w`, `n_rows` rows of whole heads of `head_dim` rows each read from a GGUF file of
/// the llama architecture, in the row order of the Hugging Face model: llama.cpp's
/// converter (`LlamaModel.permute`) stored each query and key head's rows interleaved,
/// its row `2a + b` holding the model's row `b * head_dim / 2 + a`; this undoes it. Whole
/// rows move, so quantized blocks (which lie along rows) stay whole.
pub(super) fn unpermute_heads(w: HostWeights, n_rows: usize, head_dim: usize) -> HostWeights {
    fn reorder<T: Copy>(v: &[T], n_rows: usize, head_dim: usize) -> Vec<T> {
        let (width, half) = (v.len() / n_rows, head_dim / 2);
        let mut out = Vec::with_capacity(v.len());
        for head in 0..n_rows / head_dim {
            for i in 0..head_dim {
                let j = 2 * (i % half) + i / half;
                let at = (head * head_dim + j) * width;
                out.extend_from_slice(&v[at..at + width]);
            }
        }
        out
    }
    // Nothing to undo for odd heads (llama.cpp's converter cannot write them), or rows
    // that are not whole heads (the caller reads whole heads).
    if head_dim < 2
        || !head_dim.is_multiple_of(2)
        || n_rows == 0
        || !n_rows.is_multiple_of(head_dim)
    {
        return w;
    }
    match w {
        HostWeights::F32(v) => HostWeights::F32(reorder(&v, n_rows, head_dim)),
        HostWeights::Half(t, v) => HostWeights::Half(t, reorder(&v, n_rows, head_dim)),
        HostWeights::Packed(t, v) => HostWeights::Packed(t, reorder(&v, n_rows, head_dim)),
        // A read gives one type; stacked parts come from joins after this.
        rows @ HostWeights::Rows(_) => rows,
    }
}
