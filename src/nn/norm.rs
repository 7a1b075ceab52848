//! `Norm`: RMSNorm (Llama) or LayerNorm (GPT-2) with replicated weights, applied on every
//! rank to a replicated input.

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::ops;

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
/// Input and output: `Replicate [rows, hidden]`.
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
    /// [`Error::Placement`] unless `x` is `Replicate`; [`Error::Shape`] for another
    /// width; [`Error::GroupMismatch`]; GPU errors.
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        let op = "norm.forward";
        if !x.group().same_as(self.weight.group()) {
            return Err(Error::GroupMismatch { op });
        }
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
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
            Placement::Replicate,
            shape,
            Vec::new(),
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

    /// The gradients of [`Norm::forward`] at `x` given `dy` (both `Replicate`, as the
    /// forward's input and output): dL/dx, dL/dweight and (LayerNorm) dL/dbias,
    /// replicated, computed on every rank alike (no communication; the weight's and bias's
    /// terms summed over the rows in order).
    ///
    /// # Errors
    /// [`Error::Placement`] unless both are `Replicate`; [`Error::Shape`] when their shapes
    /// differ from each other or the weight's width; [`Error::GroupMismatch`]; wgpu
    /// errors.
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<NormGrads> {
        let op = "norm.backward";
        for t in [x, dy] {
            if !t.group().same_as(self.weight.group()) {
                return Err(Error::GroupMismatch { op });
            }
            t.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
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
        let replicate = |locals, shape| {
            DistTensor::from_parts(g, locals, Placement::Replicate, shape, Vec::new())
        };
        Ok(NormGrads {
            input: replicate(inputs, x.shape()),
            weight: replicate(weights, self.weight.shape()),
            bias: (self.kind == NormKind::Layer).then(|| replicate(biases, self.weight.shape())),
        })
    }
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
