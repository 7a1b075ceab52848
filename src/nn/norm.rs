//! `Norm`: RMSNorm (Llama) or LayerNorm (GPT-2) with replicated weights, applied on every
//! rank to a replicated input.

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::ops;
use crate::tensor::Tensor;

/// Which normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NormKind {
    /// `x / rms(x) * w`.
    Rms,
    /// `(x - mean) / std * w + b`.
    Layer,
}

/// A norm over the last dimension, its weight (and bias) on every rank.
///
/// Input and output: `Replicate [rows, hidden]`, or `Shard(0)` (sequence parallelism: each
/// rank its tokens).
#[derive(Debug, Clone)]
pub struct Norm {
    kind: NormKind,
    weight: DistTensor,
    bias: Option<DistTensor>,
    eps: f32,
}

impl Norm {
    /// Uploads `weight` (and `bias`, which LayerNorm needs and RMSNorm refuses) to every
    /// rank.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing or unwanted bias; [`Error::Shape`] for
    /// lengths that differ or are 0; allocation errors.
    pub fn new(
        group: &Group,
        kind: NormKind,
        weight: &[f32],
        bias: Option<&[f32]>,
        eps: f32,
    ) -> Result<Self> {
        let op = "norm.new";
        if (kind == NormKind::Layer) != bias.is_some() {
            return Err(Error::invalid(
                op,
                "LayerNorm takes a weight and a bias, RMSNorm a weight alone",
            ));
        }
        let hidden = weight.len();
        let weight =
            DistTensor::replicate(group, weight, [1, hidden]).map_err(|e| e.with_op(op))?;
        let bias = bias
            .map(|b| DistTensor::replicate(group, b, [1, hidden]))
            .transpose()
            .map_err(|e| e.with_op(op))?;
        Ok(Norm {
            kind,
            weight,
            bias,
            eps,
        })
    }

    /// [`Norm::forward`], for apps that run an executor: a norm needs no communication
    /// and never waits (its work is submitted, and read when a later step needs it).
    ///
    /// # Errors
    /// As [`Norm::forward`].
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        self.forward(x)
    }

    /// The normalized rows, on every rank.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` is `Replicate` or `Shard(0)`; [`Error::Shape`] for another
    /// width; [`Error::GroupMismatch`]; GPU errors.
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        let op = "norm.forward";
        if !x.group().same_as(self.weight.group()) {
            return Err(Error::GroupMismatch { op });
        }
        x.require_placement(op, rows_whole, "Replicate or Shard(0)")?;
        // Once per buffer: logical ranks sharing a device and the input share the result.
        let locals = x.map_locals(|i, t| {
            let w = &self.weight.locals()[i];
            match &self.bias {
                Some(b) => ops::layer_norm(t, w, &b.locals()[i], self.eps),
                None => ops::rms_norm(t, w, self.eps),
            }
            .map_err(|e| e.with_op(op))
        })?;
        let (g, shape) = (x.group(), x.shape());
        Ok(DistTensor::from_parts(
            g,
            locals,
            x.placement(),
            shape,
            x.shard_sizes().to_vec(),
        ))
    }

    /// Which normalization.
    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// The weight, `Replicate [1, hidden]`: a parameter to train.
    pub fn weight(&self) -> &DistTensor {
        &self.weight
    }

    /// LayerNorm's bias, `Replicate [1, hidden]` (`None` for RMSNorm).
    pub fn bias(&self) -> Option<&DistTensor> {
        self.bias.as_ref()
    }

    /// The gradients of [`Norm::forward`] at `x` given `dy` (placed alike, as the
    /// forward's input and output): dL/dx placed as `x`, dL/dweight and (LayerNorm)
    /// dL/dbias replicated. On replicated rows every rank computes the same (no
    /// communication); on each rank's tokens (`Shard(0)`, sequence parallelism) each rank's
    /// weight and bias gradients are its tokens' share, joined by one all-reduce, as
    /// Megatron-LM all-reduces a sequence-parallel norm's gradients. The terms are summed
    /// over the rows in order.
    ///
    /// # Errors
    /// [`Error::Placement`] unless both are `Replicate` or both `Shard(0)`;
    /// [`Error::Shape`] when their shapes differ from each other or the weight's width;
    /// [`Error::GroupMismatch`]; wgpu and collective errors.
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<NormGrads> {
        let op = "norm.backward";
        for t in [x, dy] {
            if !t.group().same_as(self.weight.group()) {
                return Err(Error::GroupMismatch { op });
            }
            t.require_placement(
                op,
                |p| p == x.placement() && rows_whole(p),
                "x's: Replicate or Shard(0)",
            )?;
        }
        if dy.shard_sizes() != x.shard_sizes() {
            return Err(Error::shape(
                op,
                format!("dy in x's shards {:?}", x.shard_sizes()),
                format!("{:?}", dy.shard_sizes()),
            ));
        }
        let (inputs, weights, biases) = crate::rank::batched(op, || {
            let (mut inputs, mut weights, mut biases) = (Vec::new(), Vec::new(), Vec::new());
            for (i, (x, dy)) in x.locals().iter().zip(dy.locals()).enumerate() {
                let w = &self.weight.locals()[i];
                let (dx, dw) = match self.kind {
                    NormKind::Rms => ops::rms_norm_backward(x, w, dy, self.eps),
                    NormKind::Layer => {
                        ops::layer_norm_backward(x, w, dy, self.eps).map(|(dx, dw, db)| {
                            biases.push(db);
                            (dx, dw)
                        })
                    }
                }
                .map_err(|e| e.with_op(op))?;
                inputs.push(dx);
                weights.push(dw);
            }
            Ok((inputs, weights, biases))
        })?;
        let g = x.group();
        let sharded = x.placement() == Placement::Shard(0);
        // Each rank's share of a parameter's gradient (its tokens'), or all of it.
        let join = |locals: Vec<Tensor>| async move {
            let shape = self.weight.shape();
            if sharded {
                DistTensor::from_parts(g, locals, Placement::Partial, shape, Vec::new())
                    .redistribute_async(Placement::Replicate)
                    .await
            } else {
                Ok(DistTensor::from_parts(
                    g,
                    locals,
                    Placement::Replicate,
                    shape,
                    Vec::new(),
                ))
            }
        };
        let input = DistTensor::from_parts(
            g,
            inputs,
            x.placement(),
            x.shape(),
            x.shard_sizes().to_vec(),
        );
        let weight = join(weights).await?;
        let bias = match self.kind {
            NormKind::Layer => Some(join(biases).await?),
            NormKind::Rms => None,
        };
        Ok(NormGrads {
            input,
            weight,
            bias,
        })
    }

    /// Blocking [`Norm::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Norm::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<NormGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }
}

/// Rows held whole: what a norm normalizes (replicated, or each rank its tokens).
fn rows_whole(p: Placement) -> bool {
    p == Placement::Replicate || p == Placement::Shard(0)
}

/// The gradients of a [`Norm`]'s backward, each replicated as what it is the gradient of.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NormGrads {
    /// dL/dx.
    pub input: DistTensor,
    /// dL/dweight, `[1, hidden]`.
    pub weight: DistTensor,
    /// dL/dbias (LayerNorm).
    pub bias: Option<DistTensor>,
}
