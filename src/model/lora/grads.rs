//! The gradients of a [`Lora`]'s adapters: with the base frozen ([`Lora::backward`]: the
//! model's backward gives each adapted weight's factors `dy` and `x`, and no parameter's
//! gradient), or from a whole backward's weight gradients ([`Lora::grads`]); each adapted
//! weight's share of the factor whose other side is split summed by one small all-reduce,
//! or under tp-invariant numerics all-gathered and summed in the modules' own order.

use std::ops::Range;

use super::{Lora, Rect, Target};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::kernels::settings::Numerics;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::model::{ModelGrads, Transformer};
use crate::nn::{Factors, Need};
use crate::ops;
use crate::rank::batched;
use crate::tensor::Tensor;

/// One step's loss and the adapters' gradients ([`Lora::backward`], [`Lora::grads`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoraGrads {
    /// The mean cross-entropy over the tokens with a target.
    pub loss: f64,
    /// Each adapter's gradient, in [`Lora::parameters`]' order, placed as it.
    pub grads: Vec<DistTensor>,
    /// The same as a global norm counts them (rows of a key/value head two ranks hold
    /// counted once): what [`clip_grad_norm`](crate::nn::clip_grad_norm) takes.
    pub counted: Vec<DistTensor>,
}

impl Lora {
    /// One training step of the adapters, the base frozen: the loss of `ids` predicting
    /// `targets` and the adapters' gradients, as [`Lora::grads`] of
    /// [`Transformer::backward`] gives them up to rounding, without computing the base's
    /// weights' gradients (the norms' one-row ones come with their dL/dX and are
    /// dropped). Each layer's backward gives dL/dX and, for an adapted weight, the factors
    /// of its gradient, `dW = dyᵀ·x`; the adapters' come from them without `dW`:
    /// `dB = s·dyᵀ·(x·Aᵀ)`, `dA = s·(dy·B)ᵀ·x` (a weight stored `[in, out]` likewise in
    /// its frame). No weight-sized gradient is made and the embedding's and LM head's
    /// are skipped, so a step costs about the forward and dL/dX's products and holds
    /// only activation-sized tensors. Under tp-invariant numerics the whole factor's
    /// gradient is still summed from each weight's gradient (made one weight at a time)
    /// in the modules' own order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a model whose layers do not carry these adapters;
    /// as [`Transformer::backward_async`].
    pub async fn backward_async(
        &self,
        model: &Transformer,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<LoraGrads> {
        self.frozen_grads("lora.backward", model, ids, targets, false)
            .await
    }

    /// [`Lora::backward_async`] with sequence parallelism, as
    /// [`Transformer::backward_sequence_parallel_async`].
    ///
    /// # Errors
    /// As [`Lora::backward_async`] and
    /// [`Transformer::backward_sequence_parallel_async`].
    pub async fn backward_sequence_parallel_async(
        &self,
        model: &Transformer,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<LoraGrads> {
        let op = "lora.backward_sequence_parallel";
        self.frozen_grads(op, model, ids, targets, true).await
    }

    /// Blocking [`Lora::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Lora::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(
        &self,
        model: &Transformer,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<LoraGrads> {
        crate::rank::block_on(self.backward_async(model, ids, targets))
    }

    /// Blocking [`Lora::backward_sequence_parallel_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Lora::backward_sequence_parallel_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward_sequence_parallel(
        &self,
        model: &Transformer,
        ids: &[u32],
        targets: &[Option<u32>],
    ) -> Result<LoraGrads> {
        crate::rank::block_on(self.backward_sequence_parallel_async(model, ids, targets))
    }

    /// The frozen backward, with sequence parallelism (`sp`) or without.
    async fn frozen_grads(
        &self,
        op: &'static str,
        model: &Transformer,
        ids: &[u32],
        targets: &[Option<u32>],
        sp: bool,
    ) -> Result<LoraGrads> {
        if !model.group.same_as(&self.group) {
            return Err(Error::GroupMismatch { op });
        }
        let (step, factors) = model.grads(op, ids, targets, sp, Need::Frozen).await?;
        let local = self.group.local_range().len();
        let sources = self
            .targets
            .iter()
            .map(|t| {
                let found = factors
                    .iter()
                    .find(|(p, f)| *p == t.param && f.len() == local);
                found.map(|(_, f)| Source::Factored(f)).ok_or_else(|| {
                    Error::invalid(op, "a model whose layers do not carry these adapters")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.grads_of(step.loss, &sources).await
    }

    /// The adapters' gradients from the model's ([`Transformer::backward`] with the
    /// adapters attached): `dB = s·dW·Aᵀ`, `dA = s·Bᵀ·dW`, one all-reduce per adapted
    /// weight for the factor whose other side is split (under tp-invariant numerics the
    /// weight's gradient and the split factor all-gathered instead, and the sum taken in
    /// the modules' own order on every rank). [`Lora::backward`] gives the same without
    /// the base's gradients.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for gradients of another model; GPU and collective
    /// errors.
    pub async fn grads_async(&self, model: &ModelGrads) -> Result<LoraGrads> {
        let op = "lora.grads";
        let sources =
            self.targets
                .iter()
                .map(|t| {
                    let dw = model.grads.get(t.param).filter(|g| {
                        g.shape() == t.weight.shape() && g.group().same_as(&self.group)
                    });
                    dw.map(Source::Whole).ok_or_else(|| {
                        Error::invalid(op, "gradients of another model than the adapters'")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        self.grads_of(model.loss, &sources).await
    }

    /// The adapters' gradients from each target's weight's (`sources`, in the targets'
    /// order).
    async fn grads_of(&self, loss: f64, sources: &[Source<'_>]) -> Result<LoraGrads> {
        let op = "lora.grads";
        let (mut grads, mut counted) = (Vec::new(), Vec::new());
        let invariant = (self.group.ranks().iter()).any(|k| k.numerics() == Numerics::TpInvariant);
        for (t, source) in self.targets.iter().zip(sources) {
            let s = self.scale;
            let (mut own, mut shared, mut seen) = (Vec::new(), Vec::new(), Vec::new());
            batched(op, || {
                for i in 0..t.a.locals().len() {
                    let (a, b) = (&t.a.locals()[i], &t.b.locals()[i]);
                    if t.site.by_rows {
                        let db = ops::scale(&source.times_at(op, i, a)?, s)?;
                        let db = zeroed(&db, &t.masked[i])?;
                        seen.push(zeroed(&db, &t.doubled[i])?);
                        own.push(db);
                        if !invariant {
                            let b_own = zeroed(b, &t.doubled[i])?;
                            shared.push(ops::scale(&source.bt_times(op, i, &b_own)?, s)?);
                        }
                    } else {
                        own.push(ops::scale(&source.bt_times(op, i, b)?, s)?);
                        if !invariant {
                            shared.push(ops::scale(&source.times_at(op, i, a)?, s)?);
                        }
                    }
                }
                Ok(())
            })?;
            // The split factor's gradient stays on its rank; the whole one's is summed.
            let (split, whole) = if t.site.by_rows {
                (&t.b, &t.a)
            } else {
                (&t.a, &t.b)
            };
            let like = |locals| {
                DistTensor::from_parts(
                    &self.group,
                    locals,
                    split.placement(),
                    split.shape(),
                    split.shard_sizes().to_vec(),
                )
            };
            let summed = if invariant {
                let dw = source.whole(op, &t.weight)?;
                self.invariant_whole_grad(t, &dw).await?
            } else {
                DistTensor::from_parts(
                    &self.group,
                    shared,
                    Placement::Partial,
                    whole.shape(),
                    Vec::new(),
                )
                .all_reduce_async()
                .await?
            };
            let own = like(own);
            let seen = if t.site.by_rows {
                like(seen)
            } else {
                own.clone()
            };
            if t.site.by_rows {
                grads.extend([summed.clone(), own]);
                counted.extend([summed, seen]);
            } else {
                grads.extend([own, summed.clone()]);
                counted.extend([seen, summed]);
            }
        }
        Ok(LoraGrads {
            loss,
            grads,
            counted,
        })
    }

    /// Under tp-invariant numerics, the gradient of `t`'s whole factor (`A` where `B` is
    /// split by rows, `B` where `A` is split by columns), a sum over the split dimension:
    /// the weight's gradient and the split factor all-gathered, put in each module's own
    /// order (each row or column once), and summed in one product on every rank, the same
    /// at every tp.
    async fn invariant_whole_grad(&self, t: &Target, dw: &DistTensor) -> Result<DistTensor> {
        let op = "lora.grads";
        let (s, r) = (self.scale, self.config.rank);
        let by_rows = t.site.by_rows;
        let (split, whole) = if by_rows { (&t.b, &t.a) } else { (&t.a, &t.b) };
        let dw_all = dw.redistribute_async(Placement::Replicate).await?;
        let split_all = split.redistribute_async(Placement::Replicate).await?;
        // Where each owned block of a module's rows (or columns) sits among the gathered
        // ones: (module, position in it, position gathered, length).
        let mut moves = Vec::new();
        let mut at = 0;
        for blocks in &t.site.blocks {
            for block in blocks {
                if let (true, Some((m, first))) = (block.owned, t.parts[block.part]) {
                    moves.push((m, first + block.from, at, block.len));
                }
                at += block.len;
            }
        }
        let transposed = t.site.transposed;
        let locals = batched(op, || {
            let mut locals = Vec::new();
            for (dw, f) in dw_all.locals().iter().zip(split_all.locals()) {
                let rank = dw.rank();
                let [rows, cols] = dw.shape();
                let out = Tensor::zeros(rank, whole.shape())?;
                for (m, module) in t.modules.iter().enumerate() {
                    let [mr, mc] = module.stored(transposed);
                    let mine = moves.iter().filter(|mv| mv.0 == m);
                    let grad = if by_rows {
                        // dA_m = s·B_mᵀ·dW_m over the module's rows, in its order.
                        let (bm, dwm) = (
                            Tensor::zeros(rank, [mr, r])?,
                            Tensor::zeros(rank, [mr, cols])?,
                        );
                        for &(_, pos, from, len) in mine {
                            ops::place(&ops::slice(f, from, m * r, [len, r])?, &bm, [pos, 0])?;
                            ops::place(&ops::slice(dw, from, 0, [len, cols])?, &dwm, [pos, 0])?;
                        }
                        ops::matmul_tn(&bm, &dwm)?
                    } else {
                        // dB = s·dW·Aᵀ over the module's columns, in its order.
                        let (am, dwm) = (
                            Tensor::zeros(rank, [r, mc])?,
                            Tensor::zeros(rank, [rows, mc])?,
                        );
                        for &(_, pos, from, len) in mine {
                            ops::place(&ops::slice(f, 0, from, [r, len])?, &am, [0, pos])?;
                            ops::place(&ops::slice(dw, 0, from, [rows, len])?, &dwm, [0, pos])?;
                        }
                        product(op, (&dwm, None), &am, WeightLayout::OutIn)?
                    };
                    let at = if by_rows { [m * r, 0] } else { [0, 0] };
                    ops::place(&ops::scale(&grad, s)?, &out, at)?;
                }
                locals.push(out);
            }
            Ok(locals)
        })?;
        Ok(DistTensor::from_parts(
            &self.group,
            locals,
            Placement::Replicate,
            whole.shape(),
            Vec::new(),
        ))
    }

    /// Blocking [`Lora::grads_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Lora::grads_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn grads(&self, model: &ModelGrads) -> Result<LoraGrads> {
        crate::rank::block_on(self.grads_async(model))
    }
}

/// A target's weight's gradient as [`Lora`] takes it: whole (sharded as the weight), or
/// (the base frozen) each local rank's factors, `dM = pᵀ·q`.
enum Source<'a> {
    Whole(&'a DistTensor),
    Factored(&'a [Factors]),
}

impl Source<'_> {
    /// Local rank `i`'s `dM·Aᵀ` (`a`: `[width, cols]`): `[rows, width]`, as `pᵀ·(q·Aᵀ)`
    /// from factors.
    fn times_at(&self, op: &'static str, i: usize, a: &Tensor) -> Result<Tensor> {
        match self {
            Source::Whole(dw) => product(op, (&dw.locals()[i], None), a, WeightLayout::OutIn),
            Source::Factored(f) => {
                let f = &f[i];
                let u = product(op, (&f.q, Some(f.q_cols.clone())), a, WeightLayout::OutIn)?;
                ops::matmul_tn_window(op, &f.p, f.p_cols.clone(), &u, 0..u.shape()[1])
            }
        }
    }

    /// Local rank `i`'s `Bᵀ·dM` (`b`: `[rows, width]`): `[width, cols]`, as `(p·B)ᵀ·q`
    /// from factors.
    fn bt_times(&self, op: &'static str, i: usize, b: &Tensor) -> Result<Tensor> {
        match self {
            Source::Whole(dw) => ops::matmul_tn(b, &dw.locals()[i]),
            Source::Factored(f) => {
                let f = &f[i];
                let v = product(op, (&f.p, Some(f.p_cols.clone())), b, WeightLayout::InOut)?;
                ops::matmul_tn_window(op, &v, 0..v.shape()[1], &f.q, f.q_cols.clone())
            }
        }
    }

    /// The weight's gradient itself, placed as `weight` (made from factors).
    fn whole(&self, op: &'static str, weight: &DistTensor) -> Result<DistTensor> {
        match self {
            Source::Whole(dw) => Ok((*dw).clone()),
            Source::Factored(factors) => {
                let locals = batched(op, || factors.iter().map(|f| f.product(op)).collect())?;
                Ok(DistTensor::from_parts(
                    weight.group(),
                    locals,
                    weight.placement(),
                    weight.shape(),
                    weight.shard_sizes().to_vec(),
                ))
            }
        }
    }
}

/// `x[:, cols] · W` (all of `x`'s columns for `None`) for `W` stored per `layout`, in one
/// K block (any K under tp-invariant numerics).
fn product(
    op: &'static str,
    (x, cols): (&Tensor, Option<Range<usize>>),
    w: &Tensor,
    layout: WeightLayout,
) -> Result<Tensor> {
    ops::Product {
        op,
        x,
        cols: cols.unwrap_or(0..x.shape()[1]),
        w,
        bias: None,
        layout,
        act: Activation::Identity,
        blocks: 1,
        low_rank: None,
    }
    .run()
}

/// `t` with the rectangles `rects` zeroed (a copy), or `t` itself for none.
fn zeroed(t: &Tensor, rects: &[Rect]) -> Result<Tensor> {
    if rects.is_empty() {
        return Ok(t.clone());
    }
    let copy = ops::slice(t, 0, 0, t.shape())?;
    for &(at, shape) in rects {
        ops::place(&Tensor::zeros(t.rank(), shape)?, &copy, at)?;
    }
    Ok(copy)
}
