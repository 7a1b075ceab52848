//! `Weights`: a checkpoint seen from one module's name down (candle's `VarBuilder::pp`):
//! `w.pp("model.layers").pp(3).pp("self_attn.q_proj").rows("weight", r)` reads rows `r`
//! of `model.layers.3.self_attn.q_proj.weight`, in the file's type, and nothing else.

use std::fmt::Display;
use std::ops::Range;

use crate::error::Result;
use crate::load::Checkpoint;
use crate::nn::HostWeights;

/// A checkpoint scoped to a name prefix.
#[derive(Clone)]
pub(super) struct Weights<'a> {
    checkpoint: &'a Checkpoint,
    path: String,
}

impl<'a> Weights<'a> {
    /// The whole checkpoint under `prefix` (`""` for none).
    pub(super) fn new(checkpoint: &'a Checkpoint, prefix: &str) -> Self {
        Weights {
            checkpoint,
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
            checkpoint: self.checkpoint,
            path,
        }
    }

    /// The full name of `leaf` in this scope.
    pub(super) fn name(&self, leaf: &str) -> String {
        self.pp(leaf).path
    }

    /// Rows `rows` of `leaf`, in the file's type.
    pub(super) fn rows(&self, leaf: &str, rows: Range<usize>) -> Result<HostWeights> {
        self.checkpoint.rows(&self.name(leaf), rows)
    }

    /// Columns `cols` of `leaf`, in the file's type.
    pub(super) fn cols(&self, leaf: &str, cols: Range<usize>) -> Result<HostWeights> {
        self.checkpoint.cols(&self.name(leaf), cols)
    }

    /// All of `leaf`, as f32 (norms, biases).
    pub(super) fn f32(&self, leaf: &str) -> Result<Vec<f32>> {
        self.checkpoint.f32(&self.name(leaf))
    }
}
