//! `ParallelLmHead`: the language-model head column-parallel over the vocabulary, with
//! greedy sampling that never gathers the full logits (each rank reports its best token,
//! one all-gather of two numbers per rank picks the winner), the candidates of sampling
//! (each rank's best `k` and one sum for the rest) and the full logits on request.

use std::ops::Range;

use super::linear::{Backward, Need};
use super::{ColumnParallelConfig, ColumnParallelLinear, HostWeights, Layer, LinearGrads};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::WeightLayout;
use crate::ops;
use crate::tensor::shard::{offsets, split_sizes};
use crate::tensor::{read_back, Tensor};

/// The head `[vocab, hidden]` (`OutIn`), rank `r` holding vocabulary rows
/// `split_sizes(vocab, tp)[r]`. Input: `Replicate [tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct ParallelLmHead {
    col: ColumnParallelLinear,
    firsts: Vec<usize>,
    vocab: usize,
    /// Final logits capped to `tanh(v / cap) * cap` on the host (Gemma 2).
    softcap: Option<f32>,
}

impl ParallelLmHead {
    /// Uploads each local rank's vocabulary rows, which `rows(range)` reads (the
    /// embedding's, for tied embeddings).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the tp size exceeds `vocab`; [`Error::Shape`] for
    /// rows of the wrong length; their own errors.
    pub fn from_rows<W: Into<HostWeights>>(
        group: &Group,
        vocab: usize,
        hidden: usize,
        mut rows: impl FnMut(Range<usize>) -> Result<W>,
    ) -> Result<Self> {
        let op = "parallel_lm_head";
        let sizes = split_sizes(vocab, group.world_size()).map_err(|e| e.with_op(op))?;
        let firsts = offsets(&sizes);
        let mut shards = Vec::new();
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let data: HostWeights = rows(firsts[r]..firsts[r] + sizes[r])?.into();
            if data.len() != sizes[r] * hidden {
                return Err(Error::shape(
                    op,
                    format!("{} values", sizes[r] * hidden),
                    format!("{}", data.len()),
                ));
            }
            shards.push(data.upload(rank, [sizes[r], hidden])?);
        }
        let col = ColumnParallelLinear::from_shards(
            group,
            shards,
            None,
            WeightLayout::OutIn,
            ColumnParallelConfig::default().gather_output(false),
        )
        .map_err(|e| e.with_op(op))?;
        Ok(ParallelLmHead {
            col,
            firsts,
            vocab,
            softcap: None,
        })
    }

    /// The head's weight, `Shard(0) [vocab, hidden]` (each rank its vocabulary rows): a
    /// parameter to train ([`AdamW`](super::AdamW) updates it in place).
    pub fn weight(&self) -> &DistTensor {
        self.col.weight()
    }

    /// The logits, `Shard(1) [tokens, vocab]` (no communication).
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::forward_async`].
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        self.col.forward_async(x).await
    }

    /// The logits a loss reads, `Shard(1) [tokens, vocab]`: the products, soft-capped on
    /// each rank if the head caps (`tanh(v / cap) * cap` in f32; no communication).
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`].
    pub async fn capped_logits_async(&self, x: &DistTensor) -> Result<DistTensor> {
        let raw = self.col.forward_async(x).await?;
        match self.softcap {
            None => Ok(raw),
            Some(cap) => self.each(&raw, None, cap),
        }
    }

    /// `softcap(raw)`, or with `d` its backward, on every rank: `Shard(1)` as `raw`.
    fn each(&self, raw: &DistTensor, d: Option<&DistTensor>, cap: f32) -> Result<DistTensor> {
        let op = "parallel_lm_head.softcap";
        let locals = crate::rank::batched(op, || {
            raw.locals()
                .iter()
                .enumerate()
                .map(|(i, t)| match d {
                    None => crate::ops::softcap(t, cap),
                    Some(d) => crate::ops::softcap_grad(t, &d.locals()[i], cap),
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(DistTensor::from_parts(
            raw.group(),
            locals,
            raw.placement(),
            raw.shape(),
            raw.shard_sizes().to_vec(),
        ))
    }

    /// The gradients of [`ParallelLmHead::capped_logits_async`] at `x` given `dlogits`
    /// (`Shard(1)` as the logits, e.g. [`CrossEntropy::grad`](super::CrossEntropy::grad)):
    /// dL/dX all-reduced into `Replicate` (Megatron's `f`), dL/dW of each rank's vocabulary
    /// rows on that rank, as [`ColumnParallelLinear::backward_async`] gives them. A head
    /// with a soft cap recomputes its products and takes `dlogits` through the cap's
    /// derivative `1 - tanh(v / cap)^2` first, on each rank.
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::backward_async`].
    pub async fn backward_async(
        &self,
        x: &DistTensor,
        dlogits: &DistTensor,
    ) -> Result<LinearGrads> {
        let op = "parallel_lm_head.backward";
        self.grads(x, dlogits, Need::All).await?.linear(op)
    }

    /// [`ParallelLmHead::backward_async`] with the weight's gradient as `need` asks.
    pub(crate) async fn grads(
        &self,
        x: &DistTensor,
        dlogits: &DistTensor,
        need: Need,
    ) -> Result<Backward> {
        let op = "column_parallel.backward";
        let Some(cap) = self.softcap else {
            return self.col.grads(op, x, dlogits, need).await;
        };
        let raw = self.col.forward_async(x).await?;
        dlogits.require_placement(
            "parallel_lm_head.backward",
            |p| p == raw.placement(),
            "Shard(1)",
        )?;
        if dlogits.shape() != raw.shape() || dlogits.shard_sizes() != raw.shard_sizes() {
            return Err(Error::shape(
                "parallel_lm_head.backward",
                format!(
                    "dlogits {:?} in shards {:?}",
                    raw.shape(),
                    raw.shard_sizes()
                ),
                format!("{:?} in {:?}", dlogits.shape(), dlogits.shard_sizes()),
            ));
        }
        let d_raw = self.each(&raw, Some(dlogits), cap)?;
        self.col.grads(op, x, &d_raw, need).await
    }

    /// Blocking [`ParallelLmHead::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelLmHead::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dlogits: &DistTensor) -> Result<LinearGrads> {
        crate::rank::block_on(self.backward_async(x, dlogits))
    }

    /// Blocking [`ParallelLmHead::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }

    /// The head with its logits soft-capped: every logit read on the host (the full
    /// logits, the greedy token's and the sampling candidates') is `tanh(v / cap) * cap`,
    /// each operation in f32 as transformers' `final_logit_softcapping` does (Gemma 2).
    /// [`ParallelLmHead::forward_async`] still gives the products before the cap;
    /// [`ParallelLmHead::capped_logits_async`] caps them on the GPU, for a loss.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a cap that is not a positive finite number.
    pub fn with_softcap(mut self, cap: f32) -> Result<Self> {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(Error::invalid(
                "parallel_lm_head.with_softcap",
                format!("cap {cap}: it must be a positive number"),
            ));
        }
        self.softcap = Some(cap);
        Ok(self)
    }

    /// `values` soft-capped in place, if the head caps.
    fn cap(&self, values: &mut [f32]) {
        if let Some(cap) = self.softcap {
            values.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
        }
    }

    /// The full logits on the host, `[tokens, vocab]` row-major (an all-gather),
    /// soft-capped if the head caps.
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`] and the gather.
    pub async fn full_logits_async(&self, x: &DistTensor) -> Result<Vec<f32>> {
        let mut logits = self.forward_async(x).await?.to_host_async().await?;
        self.cap(&mut logits);
        Ok(logits)
    }

    /// The greedy token after the last row of `x`: each rank computes and reads back its
    /// shard of that row's logits alone and finds its best (the lowest id among equals); the best of the
    /// (value, id) pairs wins, the lowest id on ties, as `argmax` does. The pairs are on
    /// this process's host once read back; ranks in other processes send theirs in one
    /// all-gather.
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`]; read-back and collective errors;
    /// [`Error::NonFinite`] when a logit of the row is NaN or the largest is infinite.
    pub async fn greedy_async(&self, x: &DistTensor) -> Result<u32> {
        let group = x.group().clone();
        let (rows, lasts) = self.last_rows_async(x, "parallel_lm_head.greedy").await?;
        let mut all = Vec::with_capacity(2 * rows.len());
        for (row, r) in rows.iter().zip(group.local_range()) {
            let (best, value) = argmax(row);
            all.extend([value, f32::from_bits((self.firsts[r] + best) as u32)]);
        }
        if group.process_count() > 1 {
            // The other processes' pairs: an all-gather of 2 values per rank.
            let mut pairs = Vec::new();
            for (pair, t) in all.chunks(2).zip(&lasts) {
                pairs.push(Tensor::from_host(t.rank(), pair, [1, 2])?);
            }
            let sizes = vec![2; group.world_size()];
            let shape = [1, 2 * group.world_size()];
            let pairs = DistTensor::from_parts(&group, pairs, Placement::Shard(1), shape, sizes);
            all = pairs.to_host_async().await?;
        }
        let (mut best, mut best_value) = (u32::MAX, f32::NEG_INFINITY);
        for p in all.chunks(2) {
            let (value, id) = (p[0], p[1].to_bits());
            // NaN wins, as in torch.argmax; then the larger value; then the lower id.
            let better = if value.is_nan() {
                !best_value.is_nan() || id < best
            } else {
                !best_value.is_nan() && (value > best_value || (value == best_value && id < best))
            };
            if better || best == u32::MAX {
                (best, best_value) = (id, value);
            }
        }
        // A NaN anywhere wins above, and an infinity is the largest: a token picked from
        // logits that are not all finite is no answer.
        if !best_value.is_finite() {
            return Err(Error::NonFinite {
                op: "parallel_lm_head.greedy",
                message: format!("the largest logit is {best_value} (token {best})"),
            });
        }
        Ok(best)
    }

    /// Every local rank's shard of the logits of the last row of `x`, read back, and the
    /// tensors they were read from (the ranks to send from).
    async fn last_rows_async(
        &self,
        x: &DistTensor,
        op: &'static str,
    ) -> Result<(Vec<Vec<f32>>, Vec<Tensor>)> {
        let tokens = x.shape()[0];
        let group = x.group().clone();
        let lasts = crate::rank::batched(op, || {
            // The logits of the last row alone, sharded (the layer never gathers them).
            let last = if tokens == 1 {
                x.clone()
            } else {
                let hidden = x.shape()[1];
                let rows = x.map_locals(|_, t| ops::slice(t, tokens - 1, 0, [1, hidden]))?;
                DistTensor::from_parts(&group, rows, Placement::Replicate, [1, hidden], Vec::new())
            };
            Ok(self.col.local_forward(&last, None)?.locals().to_vec())
        })?;
        let mut rows = read_back(op, &lasts.iter().collect::<Vec<_>>()).await?;
        rows.iter_mut().for_each(|row| self.cap(row));
        Ok((rows, lasts))
    }

    /// The sampling candidates after the last row of `x`: each rank reads back its shard
    /// of that row's logits alone, maps every logit through `adjust(id, logit)` (the
    /// repetition penalty and the temperature), keeps its best `count` (by value, the
    /// lower id first among equals) and sums the rest as one (largest, sum of
    /// `exp(value - largest)`) pair; ranks in other processes send theirs in one
    /// all-gather of `2 * count + 7` numbers per rank. The full row never crosses ranks.
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`]; read-back and collective errors;
    /// [`Error::InvalidArgument`] for a `count` of 0 or past 2^24 ids;
    /// [`Error::NonFinite`] when a logit is NaN or `+inf` (before or after `adjust`).
    pub async fn candidates_async(
        &self,
        x: &DistTensor,
        count: usize,
        adjust: &(dyn Fn(u32, f32) -> f32 + Sync),
    ) -> Result<Candidates> {
        let op = "parallel_lm_head.candidates";
        let vocab = self.vocab;
        if count == 0 || vocab > 1 << 24 {
            return Err(Error::invalid(
                op,
                format!("{count} candidates of {vocab} ids (1 or more, ids below 2^24)"),
            ));
        }
        // No rank has more to propose than the vocabulary.
        let count = count.min(vocab);
        let group = x.group().clone();
        let (rows, lasts) = self.last_rows_async(x, op).await?;
        let mut proposals = Vec::with_capacity(rows.len());
        for (row, r) in rows.iter().zip(group.local_range()) {
            proposals.push(propose(row, self.firsts[r], count, adjust)?);
        }
        if group.process_count() > 1 {
            // The other processes' proposals: one all-gather of a fixed-size message per
            // rank (ids as exact f32 integers, the f64 sum as four 16-bit pieces).
            let len = 2 * count + 7;
            let mut parts = Vec::with_capacity(lasts.len());
            for (p, t) in proposals.iter().zip(&lasts) {
                parts.push(Tensor::from_host(t.rank(), &encode(p, count), [1, len])?);
            }
            let sizes = vec![len; group.world_size()];
            let shape = [1, len * group.world_size()];
            let parts = DistTensor::from_parts(&group, parts, Placement::Shard(1), shape, sizes);
            let all = parts.to_host_async().await?;
            proposals = all.chunks(len).map(decode).collect();
        }
        let mut best: Vec<(f32, u32)> = proposals.iter().flat_map(|p| p.best.clone()).collect();
        best.sort_by(better_first);
        Ok(Candidates {
            best,
            rest: proposals.into_iter().map(|p| p.rest).collect(),
        })
    }

    /// Blocking [`ParallelLmHead::candidates_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelLmHead::candidates_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn candidates(
        &self,
        x: &DistTensor,
        count: usize,
        adjust: &(dyn Fn(u32, f32) -> f32 + Sync),
    ) -> Result<Candidates> {
        crate::rank::block_on(self.candidates_async(x, count, adjust))
    }
}

/// The index of the largest value (NaN counting as largest, the first among equals).
fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, row[0]);
    for (i, &v) in row.iter().enumerate().skip(1) {
        let (_, b) = best;
        if !b.is_nan() && (v.is_nan() || v > b) {
            best = (i, v);
        }
    }
    best
}

/// What [`ParallelLmHead::candidates_async`] proposes.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// Every rank's best `count` (value, id) pairs after `adjust` (all of its shard when
    /// that is smaller), merged: the larger value first, the lower id first among equal
    /// values (`-0.0 == 0.0`). Its first `count` are the best `count` of the whole
    /// vocabulary; past them, tokens in `rest` may outrank the ones listed.
    pub best: Vec<(f32, u32)>,
    /// Per rank, in rank order: the tokens of its shard not in `best`, as their largest
    /// value and the sum of `exp(value - largest)` in f64 (in the shard's own order);
    /// `None` when there are none or all are `-inf`.
    pub rest: Vec<Option<(f32, f64)>>,
}

/// One rank's proposal.
struct Proposal {
    best: Vec<(f32, u32)>,
    rest: Option<(f32, f64)>,
}

/// The order of candidates: the larger value first, then the lower id.
fn better_first(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// A shard's best `count` after `adjust` and the sum of the rest.
fn propose(
    row: &[f32],
    first: usize,
    count: usize,
    adjust: &(dyn Fn(u32, f32) -> f32 + Sync),
) -> Result<Proposal> {
    let mut all = Vec::with_capacity(row.len());
    for (i, &raw) in row.iter().enumerate() {
        let id = (first + i) as u32;
        let v = adjust(id, raw);
        if raw.is_nan() || raw == f32::INFINITY || v.is_nan() || v == f32::INFINITY {
            return Err(Error::NonFinite {
                op: "parallel_lm_head.candidates",
                message: format!("logit {raw} of token {id} (adjusted {v})"),
            });
        }
        all.push((v, id));
    }
    let rest = if all.len() > count {
        all.select_nth_unstable_by(count, better_first);
        let rest = all.split_off(count);
        let most = rest.iter().fold(f32::NEG_INFINITY, |m, &(v, _)| m.max(v));
        (most > f32::NEG_INFINITY).then(|| {
            let sum = rest
                .iter()
                .map(|&(v, _)| (f64::from(v) - f64::from(most)).exp())
                .sum::<f64>();
            (most, sum)
        })
    } else {
        None
    };
    all.sort_by(better_first);
    Ok(Proposal { best: all, rest })
}

/// A proposal as `2 * count + 7` numbers: how many pairs, the pairs (ids as exact f32
/// integers, zeros past the last), whether there is a rest, its largest value and its
/// f64 sum as four 16-bit pieces (exact f32 integers, the high piece first).
fn encode(p: &Proposal, count: usize) -> Vec<f32> {
    let mut out = vec![0.0; 2 * count + 7];
    out[0] = p.best.len() as f32;
    for (i, &(v, id)) in p.best.iter().enumerate() {
        out[1 + 2 * i] = v;
        out[2 + 2 * i] = id as f32;
    }
    let tail = &mut out[2 * count + 1..];
    if let Some((most, sum)) = p.rest {
        tail[0] = 1.0;
        tail[1] = most;
        let bits = sum.to_bits();
        for (k, t) in tail[2..6].iter_mut().enumerate() {
            *t = ((bits >> (48 - 16 * k)) & 0xffff) as f32;
        }
    }
    out
}

/// The inverse of [`encode`].
fn decode(m: &[f32]) -> Proposal {
    let count = (m.len() - 7) / 2;
    let n = (m[0] as usize).min(count);
    let best = (0..n)
        .map(|i| (m[1 + 2 * i], m[2 + 2 * i] as u32))
        .collect();
    let tail = &m[2 * count + 1..];
    let rest = (tail[0] == 1.0).then(|| {
        let bits = tail[2..6]
            .iter()
            .fold(0u64, |b, &piece| (b << 16) | u64::from(piece as u16));
        (tail[1], f64::from_bits(bits))
    });
    Proposal { best, rest }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode, propose, Proposal};

    /// A proposal survives the message ranks in other processes send: fewer pairs than
    /// the count, `-inf` values, the largest id the encoding allows, and a rest whose f64
    /// sum needs all 64 bits.
    #[test]
    fn a_proposal_round_trips_through_its_message() {
        let p = Proposal {
            best: vec![(2.5, 7), (f32::NEG_INFINITY, (1 << 24) - 1)],
            rest: Some((-1.25, std::f64::consts::PI * 1e10)),
        };
        let back = decode(&encode(&p, 3));
        assert_eq!(back.best, p.best);
        assert_eq!(
            back.rest.map(|(m, s)| (m, s.to_bits())),
            Some((-1.25, (std::f64::consts::PI * 1e10).to_bits()))
        );
        let none = Proposal {
            best: vec![(0.0, 0)],
            rest: None,
        };
        let back = decode(&encode(&none, 1));
        assert_eq!((back.best, back.rest), (none.best, None));
    }

    #[test]
    fn a_shard_proposes_its_best_and_sums_the_rest() {
        let row = [1.0, 3.0, 3.0, -2.0, f32::NEG_INFINITY, 0.5];
        let p = propose(&row, 10, 3, &|_, x| x).unwrap();
        // Equal values: the lower id first.
        assert_eq!(p.best, vec![(3.0, 11), (3.0, 12), (1.0, 10)]);
        let (most, sum) = p.rest.unwrap();
        assert_eq!(most, 0.5);
        let want = 1.0 + (-2.5f64).exp();
        assert!((sum - want).abs() <= 1e-15 * want, "{sum} vs {want}");
        assert!(propose(&[1.0, f32::NAN], 0, 1, &|_, x| x).is_err());
        assert!(propose(&[1.0, f32::INFINITY], 0, 1, &|_, x| x).is_err());
        // All of a small shard, no rest.
        assert!(propose(&row, 0, 8, &|_, x| x).unwrap().rest.is_none());
    }
}
