//! Tensor-parallel layers with the Megatron-LM names: the linear layers and MLP, and the
//! transformer's (vocab-parallel embedding, norms, attention split by heads, gated MLP,
//! vocab-parallel LM head).

mod adapter;
mod attention;
mod attention_backward;
mod column;
mod cross_entropy;
mod embedding;
mod gated_mlp;
mod layer;
mod linear;
mod lm_head;
mod mlp;
mod norm;
mod optimizer;
mod rotary;
mod row;
mod weights;

pub use attention::{
    AttentionOptions, AttentionShape, HeadWeights, KvCache, ParallelAttention, QkNorm,
};
pub use attention_backward::AttentionGrads;
pub use column::{ColumnParallelConfig, ColumnParallelLinear};
#[cfg(not(target_arch = "wasm32"))]
pub use cross_entropy::vocab_parallel_cross_entropy;
pub use cross_entropy::{vocab_parallel_cross_entropy_async, CrossEntropy};
pub use embedding::VocabParallelEmbedding;
pub use gated_mlp::{GatedActivation, GatedMlp, GatedMlpGrads};
#[cfg_attr(not(feature = "safetensors"), allow(unused_imports))]
pub(crate) use layer::transpose;
pub use linear::LinearGrads;
#[cfg_attr(not(feature = "safetensors"), allow(unused_imports))]
pub(crate) use linear::{Factors, Need, WeightGrad};
pub use lm_head::{Candidates, ParallelLmHead};
pub use mlp::{MlpGrads, ParallelMlp};
pub use norm::{Norm, NormGrads, NormKind};
#[cfg(not(target_arch = "wasm32"))]
pub use optimizer::clip_grad_norm;
pub use optimizer::{clip_grad_norm_async, AdamW, AdamWConfig, GradNorm};
pub use rotary::{RopeScaling, Rotary};
pub use row::{RowParallelConfig, RowParallelLinear};
pub use weights::HostWeights;

#[cfg_attr(not(feature = "safetensors"), allow(unused_imports))]
pub(crate) use adapter::{Adapter, AdapterSlot};
#[cfg_attr(not(feature = "safetensors"), allow(unused_imports))]
pub(crate) use layer::{Adaptable, Layer, RowBlock};

use crate::dist::DistTensor;
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Numerics, WeightLayout};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::band_rows;

/// A full (unsharded) linear layer on the host: `Y = X · W + bias`.
///
/// Made with [`HostLinear::new`] and, for a bias, [`HostLinear::with_bias`]; the fields
/// stay readable. Its lengths are checked by the layer that shards it.
///
/// ```
/// use wgpu_tp::{HostLinear, WeightLayout};
///
/// let (w, b) = (vec![0.5f32; 8 * 32], vec![0.0f32; 32]);
/// let fc1 = HostLinear::new(&w, 8, 32, WeightLayout::InOut).with_bias(&b);
/// assert_eq!((fc1.in_features, fc1.out_features), (8, 32));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HostLinear<'a> {
    /// Row-major weight, `layout.stored_shape(in_features, out_features)`.
    pub weight: &'a [f32],
    /// `[out_features]`, or none.
    pub bias: Option<&'a [f32]>,
    /// Inputs.
    pub in_features: usize,
    /// Outputs.
    pub out_features: usize,
    /// How `weight` is stored.
    pub layout: WeightLayout,
}

impl<'a> HostLinear<'a> {
    /// A layer without bias: `weight` is row-major,
    /// `layout.stored_shape(in_features, out_features)`.
    pub fn new(
        weight: &'a [f32],
        in_features: usize,
        out_features: usize,
        layout: WeightLayout,
    ) -> Self {
        HostLinear {
            weight,
            bias: None,
            in_features,
            out_features,
            layout,
        }
    }

    /// The same layer with a bias of `out_features` values.
    #[must_use]
    pub fn with_bias(self, bias: &'a [f32]) -> Self {
        HostLinear {
            bias: Some(bias),
            ..self
        }
    }

    fn check(&self, op: &'static str) -> Result<()> {
        let shape = self
            .layout
            .stored_shape(self.in_features, self.out_features);
        if self.in_features == 0
            || self.out_features == 0
            || shape[0].checked_mul(shape[1]) != Some(self.weight.len())
        {
            return Err(Error::shape(
                op,
                format!("weight {} ({:?}, non-empty)", fmt_shape(shape), self.layout),
                format!("{} values", self.weight.len()),
            ));
        }
        if let Some(b) = self.bias {
            if b.len() != self.out_features {
                return Err(Error::shape(
                    op,
                    format!("bias of {} values", self.out_features),
                    format!("{} values", b.len()),
                ));
            }
        }
        Ok(())
    }
}

/// Checks that `x` belongs to `group` and has `features` columns.
fn check_input(op: &'static str, group: &Group, x: &DistTensor, features: usize) -> Result<()> {
    if !x.group().same_as(group) {
        return Err(Error::GroupMismatch { op });
    }
    if x.shape()[1] != features {
        return Err(Error::shape(
            op,
            format!("[*, {features}]"),
            fmt_shape(x.shape()),
        ));
    }
    Ok(())
}

/// Refuses, when the layer is made, what its forward would refuse later: under
/// tp-invariant numerics, inner sizes `ks` (one per rank) that are unequal or not a
/// multiple of `blocks`; and on any rank, output rows of `out_cols` values wider than a
/// buffer may be (a row is never split), so no forward computes for long and then fails.
fn check_forward_fits(
    op: &'static str,
    group: &Group,
    ks: &[usize],
    blocks: usize,
    out_cols: usize,
) -> Result<()> {
    if group.ranks()[0].numerics() == Numerics::TpInvariant {
        if ks.iter().any(|&k| k != ks[0]) {
            return Err(Error::invalid(
                op,
                format!("tp-invariant numerics need equal input shards, got {ks:?}"),
            ));
        }
        if !ks[0].is_multiple_of(blocks) {
            return Err(Error::invalid(
                op,
                format!(
                    "tp-invariant numerics split each product's inner dimension into {blocks} \
                     equal blocks: {} is not a multiple of {blocks} (make every layer's input \
                     size a multiple of {INVARIANT_BLOCKS})",
                    ks[0]
                ),
            ));
        }
    }
    for r in group.ranks() {
        band_rows(r, out_cols, op)?;
    }
    Ok(())
}
