//! A decoder block as a list of steps, each an optional norm and a tensor-parallel
//! [`Layer`] whose output joins the residual stream, and the stream the steps run on.

use std::sync::Arc;

use crate::dist::{DistTensor, Placement};
use crate::error::Result;
use crate::nn::{KvCache, Layer, Norm};
use crate::ops;
use crate::rank::batched;

/// One step of a block: `post_norm(layer(norm(x)))`, added to the residual stream `x`
/// (every family so far adds each step's output; a step that replaces the stream would
/// be a field here). Gemma's steps have both norms, the others only the first.
///
/// The layer is an `Arc<dyn Layer>` rather than an enum of the layer types: a step only
/// runs the trait's two halves, so a family with another layer (a sliding-window
/// attention, a mixture of experts) adds no match arm here, and the model stays cheap to
/// clone (layers are never mutated after loading).
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) norm: Option<Norm>,
    pub(super) layer: Arc<dyn Layer>,
    pub(super) post_norm: Option<Norm>,
}

/// A decoder block: its steps in order (Llama and GPT-2: attention, then the MLP, each
/// behind a norm and added to the residual, so two all-reduces, as in Megatron-LM).
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) steps: Vec<Step>,
}

/// The hidden state between steps, and a step's output not yet added to it (with the
/// norm it passes first, if any): the norm and the add run in the next step's submission
/// (or the final norm's), so everything each rank runs between two collectives is one
/// batched submission.
pub(super) struct Stream {
    x: DistTensor,
    add: Option<DistTensor>,
    add_norm: Option<Norm>,
}

impl Step {
    /// Runs the step on `stream` (with `cache`, the layer's key/value cache if it keeps
    /// one): the pending add, the norm and the layer's local product in one submission
    /// per rank, then the layer's reduction.
    pub(super) async fn forward_async(
        &self,
        stream: Stream,
        cache: Option<&mut KvCache>,
    ) -> Result<Stream> {
        let (x, local) = batched("transformer.forward", || {
            let x = stream.joined()?;
            let h = match &self.norm {
                Some(norm) => norm.forward(&x)?,
                None => x.clone(),
            };
            let local = self.layer.local_forward(&h, cache)?;
            Ok((x, local))
        })?;
        let y = self.layer.reduce_async(local).await?;
        Ok(Stream {
            x,
            add: Some(y),
            add_norm: self.post_norm.clone(),
        })
    }
}

impl Stream {
    /// The stream at `x`, nothing pending.
    pub(super) fn new(x: DistTensor) -> Self {
        Stream {
            x,
            add: None,
            add_norm: None,
        }
    }

    /// The hidden state with the pending output added: `x + add` (or `x +
    /// add_norm(add)`) on every rank (both `Replicate`), once per buffer that logical
    /// ranks share; `x` itself with nothing pending.
    pub(super) fn joined(&self) -> Result<DistTensor> {
        let (x, Some(y)) = (&self.x, &self.add) else {
            return Ok(self.x.clone());
        };
        let normed;
        let y = match &self.add_norm {
            Some(norm) => {
                normed = norm.forward(y)?;
                &normed
            }
            None => y,
        };
        let mut locals: Vec<crate::Tensor> = Vec::with_capacity(x.locals().len());
        for (i, (a, b)) in x.locals().iter().zip(y.locals()).enumerate() {
            let j =
                (0..i).find(|&j| x.locals()[j].same_storage(a) && y.locals()[j].same_storage(b));
            locals.push(match j {
                Some(j) => locals[j].shared_with(a.rank()),
                None => ops::add(a, b)?,
            });
        }
        Ok(DistTensor::from_parts(
            x.group(),
            locals,
            Placement::Replicate,
            x.shape(),
            Vec::new(),
        ))
    }
}
