//! `VocabParallelEmbedding`: the token table sharded by vocabulary rows (Megatron-LM's
//! scheme): each rank looks up the ids it holds, the others give zeros, and one
//! all-reduce joins them.

use super::HostWeights;
use crate::dist::{DistTensor, Placement};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::ops;
use crate::tensor::shard::{offsets, split_sizes};
use crate::tensor::Tensor;

/// The embedding table `[vocab, hidden]`, rank `r` holding rows
/// `split_sizes(vocab, tp)[r]` of it.
///
/// Input: token ids. Output: `Replicate [tokens, hidden]`, after one all-reduce.
#[derive(Debug, Clone)]
pub struct VocabParallelEmbedding {
    group: Group,
    /// This process's ranks' shards.
    shards: Vec<Tensor>,
    /// The first vocabulary row of every rank's shard.
    firsts: Vec<usize>,
    vocab: usize,
    hidden: usize,
}

impl VocabParallelEmbedding {
    /// Uploads each local rank's rows of the table, which `rows(range)` reads (row-major,
    /// `hidden` values a row): only the shard's rows are read.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the tp size exceeds `vocab`; [`Error::Shape`] when
    /// `rows` returns the wrong length; its own errors; allocation errors.
    pub fn from_rows<W: Into<HostWeights>>(
        group: &Group,
        vocab: usize,
        hidden: usize,
        mut rows: impl FnMut(std::ops::Range<usize>) -> Result<W>,
    ) -> Result<Self> {
        let op = "vocab_parallel_embedding";
        let sizes = split_sizes(vocab, group.world_size()).map_err(|e| e.with_op(op))?;
        let firsts = offsets(&sizes);
        let mut shards = Vec::with_capacity(group.ranks().len());
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let data: HostWeights = rows(firsts[r]..firsts[r] + sizes[r])?.into();
            if data.len() != sizes[r] * hidden {
                return Err(Error::shape(
                    op,
                    format!(
                        "{} values (rows {} x {hidden})",
                        sizes[r] * hidden,
                        sizes[r]
                    ),
                    format!("{}", data.len()),
                ));
            }
            shards.push(data.upload(rank, [sizes[r], hidden])?);
        }
        Ok(VocabParallelEmbedding {
            group: group.clone(),
            shards,
            firsts,
            vocab,
            hidden,
        })
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The rows of `ids`: every rank looks up the ids in its shard, then one all-reduce.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no ids or an id past the vocabulary; GPU and
    /// collective errors.
    pub async fn forward_async(&self, ids: &[u32]) -> Result<DistTensor> {
        let op = "vocab_parallel_embedding.forward";
        self.check_ids(op, ids)?;
        let partials = crate::rank::batched(op, || {
            // The ids once per device (logical ranks sharing one share the upload).
            let ranks: Vec<_> = self.shards.iter().map(|s| s.rank().clone()).collect();
            let mut uploaded: Vec<Tensor> = Vec::with_capacity(ranks.len());
            for rank in &ranks {
                let t = match uploaded.iter().find(|t| t.rank().shares_device_with(rank)) {
                    Some(t) => t.shared_with(rank),
                    None => Tensor::from_ids(rank, ids)?,
                };
                uploaded.push(t);
            }
            let mut partials = Vec::with_capacity(self.shards.len());
            for ((shard, r), ids) in self
                .shards
                .iter()
                .zip(self.group.local_range())
                .zip(&uploaded)
            {
                partials.push(ops::embed(shard, self.firsts[r], ids)?);
            }
            Ok(partials)
        })?;
        let shape = [ids.len(), self.hidden];
        let partial =
            DistTensor::from_parts(&self.group, partials, Placement::Partial, shape, Vec::new());
        debug_assert_eq!(fmt_shape(partial.shape()), fmt_shape(shape));
        partial.redistribute_async(Placement::Replicate).await
    }

    /// Refuses no ids or an id past the vocabulary, naming `op`.
    pub(crate) fn check_ids(&self, op: &'static str, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::invalid(op, "no token ids"));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(Error::invalid(
                op,
                format!("token id {bad} is past the vocabulary of {}", self.vocab),
            ));
        }
        Ok(())
    }

    /// Blocking [`VocabParallelEmbedding::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`VocabParallelEmbedding::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, ids: &[u32]) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(ids))
    }

    /// The table, `Shard(0) [vocab, hidden]` (each rank its vocabulary rows, the same
    /// buffers): a parameter to train ([`AdamW`](super::AdamW) updates it in place).
    pub fn weight(&self) -> DistTensor {
        let sizes = split_sizes(self.vocab, self.group.world_size()).unwrap_or_default();
        DistTensor::from_parts(
            &self.group,
            self.shards.clone(),
            Placement::Shard(0),
            [self.vocab, self.hidden],
            sizes,
        )
    }

    /// The table's gradient given `dy`, the gradient of [`VocabParallelEmbedding::forward`]'s
    /// output for `ids` (`Replicate [ids, hidden]`: the forward's all-reduce is the
    /// identity backward, so no communication). Each rank sums, for each of its vocabulary
    /// rows, the rows of `dy` of the tokens with that id, in token order (exactly the f32
    /// sum in that order, at every tp). `Shard(0) [vocab, hidden]`, as
    /// [`VocabParallelEmbedding::weight`]; f32 whatever the table's type.
    ///
    /// # Errors
    /// As the forward for `ids`; [`Error::Placement`] unless `dy` is `Replicate`;
    /// [`Error::Shape`] unless it is `[ids, hidden]`; [`Error::GroupMismatch`]; wgpu
    /// errors.
    pub fn backward(&self, ids: &[u32], dy: &DistTensor) -> Result<DistTensor> {
        let op = "vocab_parallel_embedding.backward";
        self.check_ids(op, ids)?;
        if !dy.group().same_as(&self.group) {
            return Err(Error::GroupMismatch { op });
        }
        dy.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        if dy.shape() != [ids.len(), self.hidden] {
            return Err(Error::shape(
                op,
                format!("[{}, {}]", ids.len(), self.hidden),
                fmt_shape(dy.shape()),
            ));
        }
        let grads = crate::rank::batched(op, || {
            let mut grads = Vec::with_capacity(self.shards.len());
            for ((shard, r), dy) in self
                .shards
                .iter()
                .zip(self.group.local_range())
                .zip(dy.locals())
            {
                let ids = Tensor::from_ids(shard.rank(), ids)?;
                grads.push(ops::embed_backward(
                    dy,
                    self.firsts[r],
                    shard.shape()[0],
                    &ids,
                )?);
            }
            Ok(grads)
        })?;
        let w = self.weight();
        Ok(DistTensor::from_parts(
            &self.group,
            grads,
            Placement::Shard(0),
            w.shape(),
            w.shard_sizes().to_vec(),
        ))
    }
}
