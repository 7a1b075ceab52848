//! Training a [`Transformer`]: its parameters, and one step's loss and gradients
//! (`Transformer::backward`) through every block's steps in reverse, each step's norm,
//! layer and post-norm backward ([`Layer::backward_async`](crate::nn::Layer)), the
//! residual stream's gradient carried past each, then the embedding's. The forward is run
//! once, keeping each step's input, its normed input and its layer's output; each layer
//! recomputes what else its backward needs.

use super::Transformer;
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::nn::{vocab_parallel_cross_entropy_async, Factors, Need, Norm, NormGrads, WeightGrad};
use crate::ops;
use crate::rank::batched;
use crate::tensor::Tensor;

/// One training step's loss and gradients ([`Transformer::backward`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelGrads {
    /// The mean cross-entropy over the tokens with a target.
    pub loss: f64,
    /// Every parameter's gradient, in [`Transformer::parameters`]' order, placed and
    /// shaped as it (f32).
    pub grads: Vec<DistTensor>,
    /// The gradients as a global norm counts them, each value once (a key/value head two
    /// ranks hold, the tied head's copy of the embedding): what
    /// [`clip_grad_norm`](crate::nn::clip_grad_norm) takes.
    pub counted: Vec<DistTensor>,
}

/// `a + b` on every rank, both placed alike (`Replicate`, or the same tokens' shards).
fn add(op: &'static str, a: &DistTensor, b: &DistTensor) -> Result<DistTensor> {
    if a.placement() != b.placement() || a.shard_sizes() != b.shard_sizes() {
        return Err(Error::invalid(
            op,
            "a residual add of values placed otherwise",
        ));
    }
    let locals = batched(op, || {
        a.locals()
            .iter()
            .zip(b.locals())
            .map(|(a, b)| ops::add(a, b))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(DistTensor::from_parts(
        a.group(),
        locals,
        a.placement(),
        a.shape(),
        a.shard_sizes().to_vec(),
    ))
}

/// A norm's parameters: its weight, and LayerNorm's bias.
fn norm_params(n: &Norm) -> Vec<DistTensor> {
    std::iter::once(n.weight())
        .chain(n.bias())
        .cloned()
        .collect()
}

/// Their gradients, in [`norm_params`]' order.
fn norm_grads(g: &NormGrads) -> Vec<DistTensor> {
    std::iter::once(&g.weight).chain(&g.bias).cloned().collect()
}

/// One step's activations kept by the forward: its input, the normed input its layer
/// read, and the layer's output (before any post-norm).
struct Kept {
    x: DistTensor,
    h: DistTensor,
    y: DistTensor,
}

impl Transformer {
    /// Every parameter, each placed as the model holds it (the same buffers: an optimizer
    /// such as [`AdamW`](crate::nn::AdamW) updates the model in place): the embedding
    /// table, GPT-2's learned positions, every block's steps in order (each its norm's
    /// weight and bias, its layer's, its post-norm's), the final norm's, then the LM
    /// head's (with tied embeddings its own copy of the table, given the same gradient so
    /// that both stay equal).
    pub fn parameters(&self) -> Vec<DistTensor> {
        let mut p = vec![self.embedding.weight()];
        p.extend(self.positions.iter().cloned());
        for s in self.steps() {
            p.extend(s.norm.iter().flat_map(norm_params));
            p.extend(s.layer.parameters());
            p.extend(s.post_norm.iter().flat_map(norm_params));
        }
        p.extend(norm_params(&self.norm));
        p.push(self.head.weight().clone());
        p
    }

    /// Each step's layer's first parameter's index in [`Transformer::parameters`].
    pub(super) fn layer_offsets(&self) -> Vec<usize> {
        let mut index = 1 + usize::from(self.positions.is_some());
        let count = |n: &Option<Norm>| n.iter().map(|n| norm_params(n).len()).sum::<usize>();
        self.steps()
            .map(|s| {
                index += count(&s.norm);
                let at = index;
                index += s.layer.parameters().len() + count(&s.post_norm);
                at
            })
            .collect()
    }

    /// The loss of `ids` predicting `targets` (one per token, `None` for none; the mean
    /// cross-entropy over those with one) and every parameter's gradient: the forward as
    /// a whole sequence from position 0 (no cache), then the backward. One all-reduce per
    /// step for the input's gradient (Megatron's `f`), as the forward has one per step.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for ids past the vocabulary, targets of another count,
    /// more tokens than one forward takes or the model's positions;
    /// [`Error::NonFinite`] for a non-finite logit; GPU and collective errors.
    pub async fn backward_async(&self, ids: &[u32], targets: &[Option<u32>]) -> Result<ModelGrads> {
        let op = "transformer.backward";
        let (grads, _) = self.grads(op, ids, targets, false, Need::All).await?;
        Ok(grads)
    }

    /// [`Transformer::backward_async`] with sequence parallelism (Korthikanti et al.
    /// 2022): the residual stream, the norms and what each step keeps for the backward
    /// are each rank's share of the tokens (`Shard(0)`, a tp-th of them), so the
    /// activations a rank keeps are divided by the tp size. Each step's layer all-gathers
    /// its normed input and reduce-scatters its output (the forward's all-reduce, at the
    /// same bytes); its backward all-gathers the output's gradient and the input again
    /// (kept sharded, gathered when needed), and reduce-scatters dL/dX. The embedding, the
    /// LM head and the loss see the whole sequence. The loss and gradients are those of
    /// [`Transformer::backward_async`] up to the order of the norms' weights' sums.
    ///
    /// # Errors
    /// As [`Transformer::backward_async`], and [`Error::InvalidArgument`] for a layer that
    /// does not end in a reduction (none of the families).
    pub async fn backward_sequence_parallel_async(
        &self,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<ModelGrads> {
        let op = "transformer.backward_sequence_parallel";
        let (grads, _) = self.grads(op, ids, targets, true, Need::All).await?;
        Ok(grads)
    }

    /// Blocking [`Transformer::backward_sequence_parallel_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Transformer::backward_sequence_parallel_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward_sequence_parallel(
        &self,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<ModelGrads> {
        crate::rank::block_on(self.backward_sequence_parallel_async(ids, targets))
    }

    /// The loss and gradients, with sequence parallelism (`sp`) or without, as `need`
    /// asks: every parameter's, or (the base frozen) no weight's (the norms' one-row
    /// gradients come with their dL/dX and are dropped), only each adapted weight's
    /// factors, with its index in [`Transformer::parameters`].
    pub(super) async fn grads(
        &self,
        op: &'static str,
        ids: &[u32],
        targets: &[Option<u32>],
        sp: bool,
        need: Need,
    ) -> Result<(ModelGrads, Vec<(usize, Vec<Factors>)>)> {
        self.embedding.check_ids(op, ids)?;
        if ids.is_empty() || targets.len() != ids.len() {
            return Err(Error::invalid(
                op,
                format!("{} ids and {} targets", ids.len(), targets.len()),
            ));
        }
        let most = self.max_tokens().min(self.config.max_positions);
        if ids.len() > most {
            return Err(Error::invalid(
                op,
                format!("{} tokens; one training step takes up to {most}", ids.len()),
            ));
        }
        let steps: Vec<_> = self.steps().collect();
        // Where the residual stream lives: whole on every rank, or each rank's tokens.
        let stream = if sp {
            Placement::Shard(0)
        } else {
            Placement::Replicate
        };
        // The forward, keeping each step's activations (as the stream is placed).
        let mut x = self
            .embed_async(ids, 0)
            .await?
            .redistribute_async(stream)
            .await?;
        let mut kept = Vec::with_capacity(steps.len());
        for s in &steps {
            let h = match &s.norm {
                Some(n) => n.forward(&x)?,
                None => x.clone(),
            };
            let mut cache = s.layer.empty_cache(ids.len())?;
            let full = h.redistribute_async(Placement::Replicate).await?;
            let local = batched(op, || s.layer.local_forward(&full, cache.as_mut()))?;
            let y = s.layer.reduce_to_async(local, stream).await?;
            let z = match &s.post_norm {
                Some(n) => n.forward(&y)?,
                None => y.clone(),
            };
            let next = add(op, &x, &z)?;
            kept.push(Kept { x, h, y });
            x = next;
        }
        let last = self.norm.forward(&x)?;
        let last_whole = last.redistribute_async(Placement::Replicate).await?;
        let logits = self.head.capped_logits_async(&last_whole).await?;
        let ce = vocab_parallel_cross_entropy_async(&logits, targets).await?;
        // The backward.
        let head = self.head.grads(&last_whole, &ce.grad, need).await?;
        let head_input = head.input.redistribute_async(stream).await?;
        let fin = self.norm.backward_async(&x, &head_input).await?;
        let mut dx = fin.input.clone();
        let mut per_step = Vec::with_capacity(steps.len());
        let mut factors = Vec::new();
        let offsets = self.layer_offsets();
        for ((s, k), at) in steps.iter().zip(&kept).zip(offsets).rev() {
            let (mut grads, mut post) = (Vec::new(), Vec::new());
            let dy = match &s.post_norm {
                Some(n) => {
                    let g = n.backward_async(&k.y, &dx).await?;
                    post = norm_grads(&g);
                    g.input
                }
                None => dx.clone(),
            };
            let h = k.h.redistribute_async(Placement::Replicate).await?;
            let dy = dy.redistribute_async(Placement::Replicate).await?;
            let layer = s.layer.backward_async(&h, &dy, stream, need).await?;
            factors.extend(layer.factors.into_iter().map(|(p, f)| (at + p, f)));
            let (dh, mut counted) = (layer.input, Vec::new());
            let dxn = match &s.norm {
                Some(n) => {
                    let g = n.backward_async(&k.x, &dh).await?;
                    grads.extend(norm_grads(&g));
                    counted.extend(norm_grads(&g));
                    g.input
                }
                None => dh,
            };
            grads.extend(layer.params);
            counted.extend(layer.counted);
            grads.extend(post.iter().cloned());
            counted.extend(post);
            dx = add(op, &dx, &dxn)?;
            per_step.push((grads, counted));
        }
        if need == Need::Frozen {
            let none = ModelGrads {
                loss: ce.loss,
                grads: Vec::new(),
                counted: Vec::new(),
            };
            return Ok((none, factors));
        }
        let mut dx = dx.redistribute_async(Placement::Replicate).await?;
        // The positions' gradient: the tokens' rows, the rest zero.
        let positions = match &self.positions {
            Some(wpe) => Some(self.rows_of(op, wpe, &dx)?),
            None => None,
        };
        if let Some(s) = self.embed_scale {
            let locals = batched(op, || {
                dx.locals()
                    .iter()
                    .map(|t| ops::scale(t, s))
                    .collect::<Result<Vec<_>>>()
            })?;
            dx = DistTensor::from_parts(
                &self.group,
                locals,
                Placement::Replicate,
                dx.shape(),
                Vec::new(),
            );
        }
        let mut table = self.embedding.backward(ids, &dx)?;
        let WeightGrad::Whole(mut head_grad) = head.weight else {
            return Err(Error::invalid(op, "the head's gradient was not computed"));
        };
        if self.tied {
            let sum = self.tied_sum(op, &table, &head_grad)?;
            table = sum.clone();
            head_grad = sum;
        }
        let (mut grads, mut counted) = (vec![table.clone()], vec![table]);
        grads.extend(positions.iter().cloned());
        counted.extend(positions);
        for (g, c) in per_step.into_iter().rev() {
            grads.extend(g);
            counted.extend(c);
        }
        grads.extend(norm_grads(&fin));
        counted.extend(norm_grads(&fin));
        if !self.tied {
            counted.push(head_grad.clone());
        }
        grads.push(head_grad);
        let grads = ModelGrads {
            loss: ce.loss,
            grads,
            counted,
        };
        Ok((grads, factors))
    }

    /// Blocking [`Transformer::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Transformer::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, ids: &[u32], targets: &[Option<u32>]) -> Result<ModelGrads> {
        crate::rank::block_on(self.backward_async(ids, targets))
    }

    /// A zero tensor shaped and placed as `like` (`Replicate`) with `rows` in its first
    /// rows: the learned positions' gradient.
    fn rows_of(
        &self,
        op: &'static str,
        like: &DistTensor,
        rows: &DistTensor,
    ) -> Result<DistTensor> {
        let locals = batched(op, || {
            like.locals()
                .iter()
                .zip(rows.locals())
                .map(|(w, r)| {
                    let out = Tensor::zeros(w.rank(), w.shape())?;
                    ops::place(r, &out, [0, 0])?;
                    Ok(out)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(DistTensor::from_parts(
            &self.group,
            locals,
            Placement::Replicate,
            like.shape(),
            Vec::new(),
        ))
    }

    /// The tied table's gradient: the embedding's and the head's, both `Shard(0)` over the
    /// same vocabulary rows, added.
    fn tied_sum(&self, op: &'static str, a: &DistTensor, b: &DistTensor) -> Result<DistTensor> {
        if a.placement() != b.placement()
            || a.shard_sizes() != b.shard_sizes()
            || a.shape() != b.shape()
        {
            return Err(Error::invalid(
                op,
                format!(
                    "the tied embedding's and head's gradients split otherwise ({:?} and {:?})",
                    a.shard_sizes(),
                    b.shard_sizes()
                ),
            ));
        }
        let locals = batched(op, || {
            a.locals()
                .iter()
                .zip(b.locals())
                .map(|(a, b)| ops::add(a, b))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(DistTensor::from_parts(
            &self.group,
            locals,
            a.placement(),
            a.shape(),
            a.shard_sizes().to_vec(),
        ))
    }
}
