//! The backward of [`ParallelAttention`] over a training step's whole sequence: Megatron's
//! `f` before the fused query/key/value projection (one all-reduce of dL/dX), the output
//! projection's row-parallel backward (no communication), and causal attention's backward
//! per query head on its rank (`ops::attention_backward`). A key/value head whose query
//! heads two ranks split (heads split unevenly, or fewer key/value heads than ranks) has
//! its gradient summed from every query head's share in head order, the shares
//! all-gathered first: every rank holding it gets the whole gradient.

use std::ops::Range;

use super::attention::ParallelAttention;
use super::linear::{Backward, LinearGrads, Need, ShardedLinear, WeightGrad, WeightGrads};
use super::KvCache;
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::kernels::settings::Activation;
use crate::kernels::settings::Numerics;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::ops::{self, Product};
use crate::tensor::Tensor;

/// The gradients of [`ParallelAttention::backward`], each placed as what it is the
/// gradient of.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AttentionGrads {
    /// dL/dX, `Replicate` as the input.
    pub input: DistTensor,
    /// dL/d(the fused query/key/value weight), each rank's stored as its fused weight
    /// ([`ParallelAttention::qkv_weight`]): `Shard(0)` for `[out, in]` weights, `Shard(1)`
    /// for `[in, out]`, the ranks' blocks one after another. A key/value head two ranks
    /// hold has its whole gradient on each (so an optimizer keeps the copies equal); a
    /// global norm wants [`AttentionGrads::counted_once`].
    pub qkv: DistTensor,
    /// dL/d(the fused biases), `Shard(1)` likewise; `None` without biases.
    pub qkv_bias: Option<DistTensor>,
    /// The output projection's: `weight` sharded as its weight, `bias` (if any)
    /// `Replicate`; `input` is dL/d(the attention's output before it), `Shard(1)`.
    pub o: LinearGrads,
    /// dL/d(the per-head query and key norms' weights), `Replicate [1, head_dim]` each:
    /// summed over the tokens and every rank's heads (a key/value head two ranks hold
    /// counted once); `None` without them.
    pub qk_norm: Option<[DistTensor; 2]>,
    /// The dimension of `qkv` along which its output features run.
    qkv_dim: usize,
    /// Per local rank, the fused output features of key/value heads an earlier rank also
    /// holds (zeroed by [`AttentionGrads::counted_once`]).
    doubled: Vec<Vec<Range<usize>>>,
}

/// [`AttentionGrads`] as the attention's layer takes them: the weights' and biases'
/// gradients as [`Need`] asks.
pub(super) struct Grads {
    pub input: DistTensor,
    pub qkv: WeightGrad,
    pub qkv_bias: Option<DistTensor>,
    pub o: Backward,
    pub qk_norm: Option<[DistTensor; 2]>,
    qkv_dim: usize,
    doubled: Vec<Vec<Range<usize>>>,
}

impl Grads {
    /// The public form, of a [`Need::All`] backward.
    pub(super) fn public(self, op: &'static str) -> Result<AttentionGrads> {
        let WeightGrad::Whole(qkv) = self.qkv else {
            return Err(Error::invalid(
                op,
                "a frozen backward has no weights' gradients",
            ));
        };
        Ok(AttentionGrads {
            input: self.input,
            qkv,
            qkv_bias: self.qkv_bias,
            o: self.o.linear(op)?,
            qk_norm: self.qk_norm,
            qkv_dim: self.qkv_dim,
            doubled: self.doubled,
        })
    }
}

impl AttentionGrads {
    /// The fused weight's and bias's gradients (`qkv`, then `qkv_bias` if any) as a global
    /// norm counts them: a key/value head two ranks hold counted on the first only (the
    /// others' copies zeroed), so that [`clip_grad_norm`](super::clip_grad_norm) counts
    /// each value once. Pass these to the norm and `qkv` itself to the optimizer, which
    /// steps every copy alike. Each is `qkv`'s own tensors where no rank shares a head.
    ///
    /// # Errors
    /// GPU errors.
    pub fn counted_once(&self) -> Result<Vec<DistTensor>> {
        let op = "attention_grads.counted_once";
        let mut out = Vec::new();
        for (t, features) in [(Some(&self.qkv), self.qkv_dim), (self.qkv_bias.as_ref(), 1)] {
            let Some(t) = t else { continue };
            let locals = crate::rank::batched(op, || {
                t.locals()
                    .iter()
                    .zip(&self.doubled)
                    .map(|(local, doubled)| zero_features(local, doubled, features))
                    .collect::<Result<Vec<_>>>()
            })?;
            out.push(DistTensor::from_parts(
                t.group(),
                locals,
                t.placement(),
                t.shape(),
                t.shard_sizes().to_vec(),
            ));
        }
        Ok(out)
    }
}

/// `t` with the features `ranges` along `dim` zeroed (a copy), or `t` itself for none.
fn zero_features(t: &Tensor, ranges: &[Range<usize>], dim: usize) -> Result<Tensor> {
    if ranges.is_empty() {
        return Ok(t.clone());
    }
    let copy = ops::slice(t, 0, 0, t.shape())?;
    for r in ranges {
        let [rows, cols] = t.shape();
        let (shape, at) = if dim == 0 {
            ([r.len(), cols], [r.start, 0])
        } else {
            ([rows, r.len()], [0, r.start])
        };
        let zeros = Tensor::zeros(t.rank(), shape)?;
        ops::place(&zeros, &copy, at)?;
    }
    Ok(copy)
}

/// The key/value heads of `kv[r]` that rank `r` owns for dL/dX: those no earlier rank holds
/// (ranks hold heads in order, so only the first can be an earlier rank's).
pub(super) fn owned(kv: &[Range<usize>], r: usize) -> Range<usize> {
    let shared = r > 0 && kv[r].start < kv[r - 1].end;
    let start = kv[r].start + usize::from(shared);
    start.min(kv[r].end)..kv[r].end
}

/// The heads in `cols` of `sums` (`[1, columns]`, heads of `hd` columns) summed into one
/// `[1, hd]`, in head order: a product with stacked identities (zeros for no heads).
fn fold_heads(op: &'static str, sums: &Tensor, cols: Range<usize>, hd: usize) -> Result<Tensor> {
    let rank = sums.rank();
    let n = cols.len() / hd;
    if n == 0 {
        return Tensor::zeros(rank, [1, hd]);
    }
    let eye: Vec<f32> = (0..n * hd * hd)
        .map(|e| f32::from(u8::from((e / hd) % hd == e % hd)))
        .collect();
    let stack = Tensor::from_host(rank, &eye, [n * hd, hd])?;
    Product {
        op,
        x: sums,
        cols,
        w: &stack,
        bias: None,
        layout: crate::WeightLayout::InOut,
        act: Activation::Identity,
        blocks: 1,
        low_rank: None,
    }
    .run()
}

impl ParallelAttention {
    /// The fused query/key/value weight, every local rank's stored as its layout says
    /// (`[q | k | v]` output features): `Shard(0)` for `[out, in]` weights, `Shard(1)` for
    /// `[in, out]`, the ranks' blocks one after another (a key/value head two ranks hold
    /// is in each block), as [`AttentionGrads::qkv`] is placed.
    pub fn qkv_weight(&self) -> DistTensor {
        let hidden = self.shape.hidden;
        let widths = self.fused_widths();
        let total = widths.iter().sum();
        let (placement, shape) = match self.layout {
            crate::WeightLayout::OutIn => (Placement::Shard(0), [total, hidden]),
            crate::WeightLayout::InOut => (Placement::Shard(1), [hidden, total]),
        };
        DistTensor::from_parts(&self.group, self.qkv.clone(), placement, shape, widths)
    }

    /// The fused query/key/value bias (`Shard(1)`, the ranks' blocks one after another, as
    /// [`ParallelAttention::qkv_weight`]), if the layer has biases.
    pub fn qkv_bias(&self) -> Option<DistTensor> {
        let widths = self.fused_widths();
        let total = widths.iter().sum();
        let bias = self.bias.as_ref()?;
        Some(DistTensor::from_parts(
            &self.group,
            bias.clone(),
            Placement::Shard(1),
            [1, total],
            widths,
        ))
    }

    /// The output projection (row-parallel over the heads' features): its `weight()` and
    /// `bias()` are the layer's other parameters.
    pub fn output_projection(&self) -> &super::RowParallelLinear {
        &self.o
    }

    /// Every rank's fused output features: `(its query heads + 2 x its key/value heads) x
    /// head_dim`.
    fn fused_widths(&self) -> Vec<usize> {
        let hd = self.shape.head_dim;
        self.heads
            .iter()
            .zip(&self.kv)
            .map(|(q, kv)| (q.len() + 2 * kv.len()) * hd)
            .collect()
    }

    /// The gradients of the attention of `x`'s rows as a whole sequence (positions `0..`,
    /// causal; a new cache's forward) given `dy` = dL/d(output), both `Replicate`
    /// `[tokens, hidden]`. The forward is recomputed, not kept. Every query head's
    /// gradients are its own rank's work in position order, a key/value head's summed
    /// over its query heads in head order: the same bits at every tp. dL/dX joins each
    /// rank's `dqkv_r · W_r^T` in one all-reduce (a key/value head two ranks hold counted
    /// by the first); under [`Numerics::TpInvariant`] the query, key and value parts are
    /// each summed along the fixed tree and all-reduced apart (three all-reduces), the
    /// same bits at every tp where the heads split evenly and the key/value heads either
    /// split evenly or are each held whole by one rank's share of the tree.
    ///
    /// With per-head query/key norms (Qwen3, Gemma 3) the fused rows' gradient goes back
    /// through each head's RMSNorm, and the norms' weights' gradients are each rank's
    /// heads' share, both norms' in one more all-reduce; under tp-invariant numerics each
    /// head's sums are all-gathered and every rank adds all heads in head order.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` and `dy` are `Replicate`; [`Error::Shape`] for
    /// other shapes; [`Error::InvalidArgument`] for a ring cache's options, and under
    /// tp-invariant numerics for splits the fixed tree cannot follow; GPU and collective
    /// errors.
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<AttentionGrads> {
        let grads = self.grads(x, dy, Placement::Replicate, Need::All).await?;
        grads.public("parallel_attention.backward")
    }

    /// [`ParallelAttention::backward_async`] with dL/dX joined into `input`: all-reduced
    /// (`Replicate`) or reduce-scattered to each rank's tokens (`Shard(0)`, sequence
    /// parallelism), the weights' and biases' gradients as `need` asks.
    pub(super) async fn grads(
        &self,
        x: &DistTensor,
        dy: &DistTensor,
        input: Placement,
        need: Need,
    ) -> Result<Grads> {
        let op = "parallel_attention.backward";
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        dy.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        if !dy.group().same_as(&self.group) || !x.group().same_as(&self.group) {
            return Err(Error::GroupMismatch { op });
        }
        let [tokens, hidden] = x.shape();
        if hidden != self.shape.hidden || dy.shape() != x.shape() {
            return Err(Error::shape(
                op,
                format!("x and dy [tokens, {}]", self.shape.hidden),
                format!(
                    "{} and {}",
                    crate::error::fmt_shape(x.shape()),
                    crate::error::fmt_shape(dy.shape())
                ),
            ));
        }
        let invariant = x.locals()[0].rank().numerics() == Numerics::TpInvariant;
        let blocks = if invariant {
            self.invariant_blocks(op)?
        } else {
            Vec::new()
        };
        let hd = self.shape.head_dim;
        let span = |r: usize| self.span(r);
        // The forward again: the fused rows and the attention's output.
        let table = match &self.rotary {
            Some(rotary) => {
                rotary.cover(tokens)?;
                Some(rotary.current_for(tokens)?)
            }
            None => None,
        };
        let mut cache = self.new_cache(tokens)?;
        let (pre, qkvs, attended) = self.recompute(op, x, table.as_ref(), &mut cache)?;
        let o = self.o.grads(op, &attended, dy, need).await?;
        // Each rank's heads.
        let scores = self.options.scores;
        let parts = crate::rank::batched(op, || {
            let mut parts = Vec::new();
            for (i, r) in self.group.local_range().enumerate() {
                let t = table.as_ref().map(|t| &t.locals()[i]);
                parts.push(ops::attention_backward(
                    &qkvs[i],
                    &attended.locals()[i],
                    &o.input.locals()[i],
                    t,
                    (span(r), self.kv[r].len()),
                    scores,
                )?);
            }
            Ok(parts)
        })?;
        let (dqkvs, shares): (Vec<Tensor>, Vec<Tensor>) =
            parts.into_iter().map(|p| (p.dqkv, p.shares)).unzip();
        // The key/value heads' gradients from their query heads' shares, gathered first
        // when two ranks hold one.
        let shared = (1..self.kv.len()).any(|r| self.kv[r].start < self.kv[r - 1].end);
        let shares = if shared {
            let sizes = self.heads.iter().map(|h| h.len() * 2 * hd).collect();
            let shape = [tokens, self.shape.heads * 2 * hd];
            DistTensor::from_parts(&self.group, shares, Placement::Shard(1), shape, sizes)
                .redistribute_async(Placement::Replicate)
                .await?
                .locals()
                .to_vec()
        } else {
            shares
        };
        let widths = self.fused_widths();
        let with_bias = self.bias.is_some() && need == Need::All;
        let (weights, biases, partials, norms) = crate::rank::batched(op, || {
            let (mut biases, mut partials) = (Vec::new(), Vec::new());
            let mut weights = WeightGrads::new(need, &self.qkv_adapter);
            let mut norms = Vec::new();
            for (i, r) in self.group.local_range().enumerate() {
                let first_share = if shared { 0 } else { self.heads[r].start };
                let d = &dqkvs[i];
                ops::fold_kv(&shares[i], first_share, d, (span(r), self.kv[r].len()))?;
                // Back through the per-head norms, if any.
                let normed;
                let d = match &self.options.qk_norm {
                    None => d,
                    Some((w, eps)) => {
                        let (dx, sums) = self.head_norm_backward(i, r, (&pre[i], d), w, *eps)?;
                        norms.push(sums);
                        normed = dx;
                        &normed
                    }
                };
                let (x, all) = (&x.locals()[i], 0..widths[r]);
                weights.push(op, self.layout, (x, 0..hidden), (d, all.clone()))?;
                if with_bias {
                    biases.push(ShardedLinear::bias_grad(op, d, all)?);
                }
                partials.push(self.input_parts(op, i, r, d, &blocks)?);
            }
            Ok((weights, biases, partials, norms))
        })?;
        let qk_norm = match (&self.options.qk_norm, need) {
            (Some(_), Need::All) => Some(self.join_norm_grads(norms, invariant).await?),
            _ => None,
        };
        let input = self
            .join_input(partials, [tokens, hidden], invariant, input)
            .await?;
        let weight = self.qkv_weight();
        let qkv = weights.finish(&self.group, &weight, widths.clone());
        let qkv_bias = with_bias.then(|| {
            let total = widths.iter().sum();
            DistTensor::from_parts(&self.group, biases, Placement::Shard(1), [1, total], widths)
        });
        let doubled = self
            .group
            .local_range()
            .map(|r| {
                let (q, kv) = (self.heads[r].len() * hd, self.kv[r].len() * hd);
                let n = (owned(&self.kv, r).start - self.kv[r].start) * hd;
                if n == 0 {
                    Vec::new()
                } else {
                    vec![q..q + n, q + kv..q + kv + n]
                }
            })
            .collect();
        Ok(Grads {
            input,
            qkv,
            qkv_bias,
            o,
            qk_norm,
            qkv_dim: usize::from(self.layout == crate::WeightLayout::InOut),
            doubled,
        })
    }

    /// Local rank `i` (global `r`)'s backward through its per-head norms, at the fused
    /// rows `pre` before them given `d`, their output's gradient: dL/d`pre`, and the terms
    /// of the norms' weights' gradients summed over the tokens in order (`[1, columns]`,
    /// the columns of `pre`, the value heads' 0).
    fn head_norm_backward(
        &self,
        i: usize,
        r: usize,
        (pre, d): (&Tensor, &Tensor),
        weights: &[[Tensor; 2]],
        eps: f32,
    ) -> Result<(Tensor, Tensor)> {
        let hd = self.shape.head_dim;
        let rank = pre.rank();
        let [wq, wk] = &weights[i];
        let both = Tensor::zeros(rank, [1, 2 * hd])?;
        ops::place(wq, &both, [0, 0])?;
        ops::place(wk, &both, [0, hd])?;
        let heads = self.heads[r].len();
        let (dx, terms) = ops::head_rms_norm_backward(pre, &both, d, (heads, hd), eps)?;
        let rows = pre.shape()[0];
        let ones = Tensor::from_host(rank, &vec![1.0; rows], [rows, 1])?;
        Ok((dx, ops::matmul_tn(&ones, &terms)?))
    }

    /// The query and key norms' weights' gradients from each local rank's column sums
    /// (`head_norm_backward`'s): each rank's query heads' and owned key heads' sums folded
    /// into one `head_dim` in head order, the ranks' then summed by one all-reduce of both
    /// norms' together. Under tp-invariant numerics the ranks' per-head sums are gathered
    /// instead (a key/value head two ranks hold is the same bits on each) and every rank
    /// folds all heads in one product, the same at every tp.
    async fn join_norm_grads(&self, sums: Vec<Tensor>, invariant: bool) -> Result<[DistTensor; 2]> {
        let op = "parallel_attention.backward";
        let hd = self.shape.head_dim;
        let width = |r: usize| [self.heads[r].len() * hd, self.kv[r].len() * hd];
        let replicate = |locals: Vec<Tensor>| self.head_vector(locals);
        let world = self.heads.len();
        if invariant {
            let mut gathered = Vec::new();
            // The query heads' sums (part 0), then the key heads' (part 1).
            for part in 0..2 {
                let locals = crate::rank::batched(op, || {
                    let mut locals = Vec::new();
                    for (i, r) in self.group.local_range().enumerate() {
                        let [q, kv] = width(r);
                        let (at, n) = if part == 0 { (0, q) } else { (q, kv) };
                        locals.push(ops::slice(&sums[i], 0, at, [1, n])?);
                    }
                    Ok(locals)
                })?;
                let sizes: Vec<usize> = (0..world).map(|r| width(r)[part]).collect();
                let shape = [1, sizes.iter().sum()];
                gathered.push(
                    DistTensor::from_parts(&self.group, locals, Placement::Shard(1), shape, sizes)
                        .redistribute_async(Placement::Replicate)
                        .await?,
                );
            }
            let (q, k) = crate::rank::batched(op, || {
                let (mut qs, mut ks) = (Vec::new(), Vec::new());
                for (i, _) in self.group.local_range().enumerate() {
                    let rank = sums[i].rank();
                    let all_q = &gathered[0].locals()[i];
                    qs.push(fold_heads(op, all_q, 0..self.shape.heads * hd, hd)?);
                    // The key heads in head order, each from a rank holding it.
                    let all_k = Tensor::zeros(rank, [1, self.shape.kv_heads * hd])?;
                    let mut at = 0;
                    for r in 0..world {
                        let n = width(r)[1];
                        if n > 0 {
                            let block = ops::slice(&gathered[1].locals()[i], 0, at, [1, n])?;
                            ops::place(&block, &all_k, [0, self.kv[r].start * hd])?;
                        }
                        at += n;
                    }
                    ks.push(fold_heads(op, &all_k, 0..self.shape.kv_heads * hd, hd)?);
                }
                Ok((qs, ks))
            })?;
            return Ok([replicate(q), replicate(k)]);
        }
        let locals = crate::rank::batched(op, || {
            let mut locals = Vec::new();
            for (i, r) in self.group.local_range().enumerate() {
                let [q, kv] = width(r);
                let own = owned(&self.kv, r);
                let off = (own.start - self.kv[r].start) * hd;
                let both = Tensor::zeros(sums[i].rank(), [1, 2 * hd])?;
                ops::place(&fold_heads(op, &sums[i], 0..q, hd)?, &both, [0, 0])?;
                ops::place(
                    &fold_heads(op, &sums[i], q + off..q + kv, hd)?,
                    &both,
                    [0, hd],
                )?;
                locals.push(both);
            }
            Ok(locals)
        })?;
        let both = DistTensor::from_parts(
            &self.group,
            locals,
            Placement::Partial,
            [1, 2 * hd],
            Vec::new(),
        )
        .all_reduce_async()
        .await?;
        let (q, k) = crate::rank::batched(op, || {
            let (mut q, mut k) = (Vec::new(), Vec::new());
            for local in both.locals() {
                q.push(ops::slice(local, 0, 0, [1, hd])?);
                k.push(ops::slice(local, 0, hd, [1, hd])?);
            }
            Ok((q, k))
        })?;
        Ok([replicate(q), replicate(k)])
    }

    /// Blocking [`ParallelAttention::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelAttention::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<AttentionGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }

    /// Each local rank's fused rows (after the bias), the same after the per-head norms
    /// (themselves without norms), and the attention's output before the output
    /// projection (`Shard(1)`), as the forward computes them into `cache`.
    fn recompute(
        &self,
        op: &'static str,
        x: &DistTensor,
        table: Option<&DistTensor>,
        cache: &mut KvCache,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>, DistTensor)> {
        let tokens = x.shape()[0];
        let hd = self.shape.head_dim;
        let (pre, qkvs, outs) = crate::rank::batched(op, || {
            let (mut pre, mut qkvs, mut outs) = (Vec::new(), Vec::new(), Vec::new());
            for (i, r) in self.group.local_range().enumerate() {
                let projected = self.project_qkv(op, i, &x.locals()[i])?;
                let qkv = match &self.options.qk_norm {
                    None => projected.clone(),
                    Some((weights, eps)) => {
                        let [wq, wk] = &weights[i];
                        let heads = self.heads[r].len();
                        ops::head_rms_norm(&projected, wq, wk, heads, hd, *eps)?
                    }
                };
                pre.push(projected);
                let t = table.map(|t| &t.locals()[i]);
                let kv = &cache.kv[i];
                ops::write_kv(&qkv, kv, t, (hd, 0), false)?;
                let span = self.span(r);
                let scores = ops::Scores {
                    ring: false,
                    ..self.options.scores
                };
                outs.push(ops::attention_with(&qkv, kv, t, span, 0, scores)?);
                qkvs.push(qkv);
            }
            Ok((pre, qkvs, outs))
        })?;
        let sizes: Vec<usize> = self.heads.iter().map(|h| h.len() * hd).collect();
        let attended = DistTensor::from_parts(
            &self.group,
            outs,
            Placement::Shard(1),
            [tokens, self.shape.heads * hd],
            sizes,
        );
        Ok((pre, qkvs, attended))
    }

    /// Under tp-invariant numerics, the K blocks of each rank's query and owned
    /// key/value columns: `8 / tp` of the query heads' (split evenly), and `8 x owned /
    /// kv_heads` of the key/value heads' (each a whole share of the fixed tree).
    fn invariant_blocks(&self, op: &'static str) -> Result<Vec<[usize; 2]>> {
        let world = self.heads.len();
        let (nh, kvh) = (self.shape.heads, self.shape.kv_heads);
        let even = self.heads.iter().all(|h| h.len() * world == nh);
        let mut blocks = Vec::new();
        for r in 0..world {
            let own = owned(&self.kv, r).len();
            let kv_blocks = INVARIANT_BLOCKS * own / kvh;
            if !even
                || world > INVARIANT_BLOCKS
                || !(INVARIANT_BLOCKS * own).is_multiple_of(kvh)
                || (own > 0 && kv_blocks == 0)
            {
                return Err(Error::invalid(
                    op,
                    format!(
                        "tp-invariant numerics sum dL/dX along a fixed tree of \
                         {INVARIANT_BLOCKS} blocks: {nh} query heads over {kvh} key/value \
                         heads at tp {world} do not split along it (query heads evenly, \
                         key/value heads evenly or each whole on one rank's share)"
                    ),
                ));
            }
            blocks.push([INVARIANT_BLOCKS / world, kv_blocks]);
        }
        Ok(blocks)
    }

    /// Local rank `i` (global `r`)'s parts of dL/dX from `d` (its fused rows' gradient):
    /// the query columns', the owned key columns', the owned value columns' (`None` for
    /// none). Outside tp-invariant numerics (no `blocks`) one product of all of `d` when
    /// the rank owns all its key/value heads.
    fn input_parts(
        &self,
        op: &'static str,
        i: usize,
        r: usize,
        d: &Tensor,
        blocks: &[[usize; 2]],
    ) -> Result<[Option<Tensor>; 3]> {
        let hd = self.shape.head_dim;
        let q = self.heads[r].len() * hd;
        let kv = self.kv[r].len() * hd;
        let own = owned(&self.kv, r);
        let off = (own.start - self.kv[r].start) * hd;
        let [q_blocks, kv_blocks] = blocks.get(r).copied().unwrap_or([1, 1]);
        let product = |blocks| Product {
            op,
            x: d,
            cols: 0..q + 2 * kv,
            w: &self.qkv[i],
            bias: None,
            layout: self.layout.transposed(),
            act: Activation::Identity,
            blocks,
            low_rank: self.qkv_adapter.low_rank(i),
        };
        if blocks.is_empty() && off == 0 {
            return Ok([Some(product(1).run_k(0..q + 2 * kv)?), None, None]);
        }
        let q_part = product(q_blocks).run_k(0..q)?;
        let kv_part = |start: usize| -> Result<Option<Tensor>> {
            if own.is_empty() {
                return Ok(None);
            }
            product(kv_blocks).run_k(start + off..start + kv).map(Some)
        };
        Ok([Some(q_part), kv_part(q)?, kv_part(q + kv)?])
    }

    /// dL/dX from every local rank's parts: outside tp-invariant numerics each rank's
    /// summed, then one all-reduce; under them each part all-reduced apart along the
    /// fixed tree (a rank without one adding zeros), then `(q + k) + v`.
    async fn join_input(
        &self,
        partials: Vec<[Option<Tensor>; 3]>,
        shape: [usize; 2],
        invariant: bool,
        target: Placement,
    ) -> Result<DistTensor> {
        let op = "parallel_attention.backward";
        let ranks = self.group.ranks();
        let zeros = |i: usize| Tensor::zeros(&ranks[i], shape);
        if !invariant {
            let locals = crate::rank::batched(op, || {
                partials
                    .into_iter()
                    .map(|parts| {
                        let mut present: Vec<Tensor> = parts.into_iter().flatten().collect();
                        match present.pop() {
                            Some(only) if present.is_empty() => Ok(only),
                            Some(last) => {
                                present.push(last);
                                ops::sum(op, &present)
                            }
                            None => Err(Error::invalid(op, "a rank with no part of dL/dX")),
                        }
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            let partial =
                DistTensor::from_parts(&self.group, locals, Placement::Partial, shape, Vec::new());
            return partial.redistribute_async(target).await;
        }
        let mut joined: Vec<DistTensor> = Vec::new();
        for part in 0..3 {
            let locals = partials
                .iter()
                .enumerate()
                .map(|(i, parts)| match &parts[part] {
                    Some(t) => Ok(t.clone()),
                    None => zeros(i),
                })
                .collect::<Result<Vec<_>>>()?;
            let partial =
                DistTensor::from_parts(&self.group, locals, Placement::Partial, shape, Vec::new());
            joined.push(partial.redistribute_async(Placement::Replicate).await?);
        }
        let locals = crate::rank::batched(op, || {
            (0..joined[0].locals().len())
                .map(|i| {
                    let qk = ops::sum(
                        op,
                        &[joined[0].locals()[i].clone(), joined[1].locals()[i].clone()],
                    )?;
                    ops::sum(op, &[qk, joined[2].locals()[i].clone()])
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let whole =
            DistTensor::from_parts(&self.group, locals, Placement::Replicate, shape, Vec::new());
        // Each rank's tokens of the whole (the same bits as without sequence parallelism).
        whole.redistribute_async(target).await
    }
}
