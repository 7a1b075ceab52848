//! `ParallelLmHead`: the language-model head column-parallel over the vocabulary, with
//! greedy sampling that never gathers the full logits (each rank reports its best token,
//! one all-gather of two numbers per rank picks the winner) and the full logits on request.

use std::ops::Range;

use super::{ColumnParallelConfig, ColumnParallelLinear, HostWeights, Layer};
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
        Ok(ParallelLmHead { col, firsts })
    }

    /// The logits, `Shard(1) [tokens, vocab]` (no communication).
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::forward_async`].
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        self.col.forward_async(x).await
    }

    /// Blocking [`ParallelLmHead::forward_async`].
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`].
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }

    /// The full logits on the host, `[tokens, vocab]` row-major (an all-gather).
    ///
    /// # Errors
    /// As [`ParallelLmHead::forward_async`] and the gather.
    pub async fn full_logits_async(&self, x: &DistTensor) -> Result<Vec<f32>> {
        self.forward_async(x).await?.to_host_async().await
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
        let tokens = x.shape()[0];
        let group = x.group().clone();
        let lasts = crate::rank::batched("parallel_lm_head.greedy", || {
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
        let rows = read_back("parallel_lm_head.greedy", &lasts.iter().collect::<Vec<_>>()).await?;
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
