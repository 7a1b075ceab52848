//! Megatron-LM's vocabulary-parallel cross-entropy: the loss of logits split over the
//! ranks by vocabulary (a [`ParallelLmHead`](super::ParallelLmHead)'s output, `Shard(1)`)
//! and its gradient, without ever gathering the logits. Each rank reduces its slice of
//! every row to a few numbers per block of its columns (the largest logit, the sum of
//! `exp(logit - largest)`, the target's logit where the block holds it); those cross the
//! ranks (one all-gather of 3 numbers per block per row, the role of Megatron's
//! all-reduces of the max, the sum and the target's logit) and are joined on the host into
//! each row's largest logit `M` and sum `S`; each rank then writes its slice of the
//! gradient, `(softmax - one_hot) / rows`, from `M` and `S`.

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::kernels::settings::Numerics;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::ops::{self, NO_TARGET};
use crate::tensor::shard::offsets;
use crate::tensor::Tensor;

/// The cross-entropy of [`vocab_parallel_cross_entropy_async`] and its gradient.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CrossEntropy {
    /// The mean over the rows that have a target of `-log softmax(row)[target]`, in f64
    /// from the kernels' f32 statistics (0 when no row has a target).
    pub loss: f64,
    /// Each row's `-log softmax(row)[target]`; 0 for a row without a target.
    pub per_row: Vec<f64>,
    /// d loss / d logits, `Shard(1)` as the logits: `(softmax - one_hot) / n` on the `n`
    /// rows that have a target, 0 on the others.
    pub grad: DistTensor,
}

/// The cross-entropy of `logits` (`Shard(1) [rows, vocab]`) against `targets` (one per
/// row; `None` leaves a row out, as PyTorch's `ignore_index`), mean over the rows with a
/// target, and its gradient (see the module docs).
///
/// Each block's statistics run in a fixed order on the rank that holds it, and the host
/// joins the blocks in vocabulary order. With [`Numerics::TpInvariant`] the blocks are the
/// vocabulary's 8 equal blocks whatever the tp (each rank holds `8 / tp` of them: equal
/// shards of a vocabulary that is a multiple of 8), so the loss and the gradient are the
/// same bits at every tp; otherwise each rank's slice is one block.
///
/// # Errors
/// [`Error::Placement`] unless `logits` is `Shard(1)`; [`Error::Shape`] for a target count
/// other than the rows; [`Error::InvalidArgument`] for a target past the vocabulary, a
/// vocabulary of 2^24 or more, or (tp-invariant) shards that are not the 8 blocks' whole
/// multiples; [`Error::NonFinite`] when a row's logits hold a NaN or `+inf`, or are all
/// `-inf`; GPU and collective errors.
pub async fn vocab_parallel_cross_entropy_async(
    logits: &DistTensor,
    targets: &[Option<u32>],
) -> Result<CrossEntropy> {
    let op = "vocab_parallel_cross_entropy";
    logits.require_placement(op, |p| p == Placement::Shard(1), "Shard(1)")?;
    let [rows, vocab] = logits.shape();
    if targets.len() != rows {
        return Err(Error::shape(
            op,
            format!("{rows} targets (one per row)"),
            format!("{}", targets.len()),
        ));
    }
    if vocab >= 1 << 24 {
        return Err(Error::invalid(
            op,
            format!("a vocabulary of {vocab} (below 2^24)"),
        ));
    }
    if let Some(t) = targets.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(
            op,
            format!("target {t} past the vocabulary of {vocab}"),
        ));
    }
    let group = logits.group();
    let sizes = logits.shard_sizes().to_vec();
    let firsts = offsets(&sizes);
    // Columns per block on each rank.
    let blocks: Vec<usize> = if group.ranks()[0].numerics() == Numerics::TpInvariant {
        let block = vocab / INVARIANT_BLOCKS;
        if !vocab.is_multiple_of(INVARIANT_BLOCKS) || sizes.iter().any(|s| s % block.max(1) != 0) {
            return Err(Error::invalid(
                op,
                format!(
                    "tp-invariant numerics join the vocabulary's {INVARIANT_BLOCKS} equal \
                     blocks: a vocabulary of {vocab} in shards of {sizes:?} does not split so"
                ),
            ));
        }
        vec![block; sizes.len()]
    } else {
        sizes.clone()
    };
    let ids: Vec<u32> = targets.iter().map(|t| t.unwrap_or(NO_TARGET)).collect();
    let local = group.local_range();
    let stats = crate::rank::batched(op, || {
        logits
            .locals()
            .iter()
            .zip(local.clone())
            .map(|(l, r)| {
                let ids = Tensor::from_ids(l.rank(), &ids)?;
                ops::cross_entropy_stats(l, &ids, firsts[r], blocks[r])
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // Every rank's statistics, in vocabulary order: the logits' all-gather of a few
    // numbers per row.
    let widths: Vec<usize> = sizes
        .iter()
        .zip(&blocks)
        .map(|(s, b)| 3 * s.div_ceil(*b))
        .collect();
    let total = widths.iter().sum();
    let stats = DistTensor::from_parts(group, stats, Placement::Shard(1), [rows, total], widths)
        .to_host_async()
        .await?;
    // The blocks' first global ids, in vocabulary order.
    let starts: Vec<usize> = sizes
        .iter()
        .zip(&blocks)
        .zip(&firsts)
        .flat_map(|((&s, &b), &f)| (0..s.div_ceil(b)).map(move |j| f + j * b))
        .collect();
    let counted = targets.iter().flatten().count();
    let scale = if counted == 0 {
        0.0
    } else {
        1.0 / counted as f64
    };
    let mut per_row = Vec::with_capacity(rows);
    let mut joined = Vec::with_capacity(rows * 4);
    for (row, target) in stats.chunks(total).zip(targets) {
        let (m, s, l) = join(op, row, &starts, *target)?;
        per_row.push(l);
        let (scale, id) = match target {
            Some(t) => (scale as f32, *t),
            None => (0.0, NO_TARGET),
        };
        joined.extend([m, s as f32, scale, f32::from_bits(id)]);
    }
    let loss = per_row.iter().sum::<f64>() * scale;
    let grads = crate::rank::batched(op, || {
        logits
            .locals()
            .iter()
            .zip(local.clone())
            .map(|(l, r)| {
                let rows = Tensor::from_host(l.rank(), &joined, [rows, 4])?;
                ops::cross_entropy_grad(l, &rows, firsts[r])
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let grad = DistTensor::from_parts(group, grads, Placement::Shard(1), [rows, vocab], sizes);
    Ok(CrossEntropy {
        loss,
        per_row,
        grad,
    })
}

/// One row's blocks (`[largest, sum, target's logit] * blocks`, starting at global ids
/// `starts`) joined: the row's largest logit, `S = sum_b s_b exp(m_b - M)` in f64 in block
/// order, and the row's loss `ln S + M - logit[target]` (0 without a target).
fn join(
    op: &'static str,
    row: &[f32],
    starts: &[usize],
    target: Option<u32>,
) -> Result<(f32, f64, f64)> {
    let blocks: Vec<&[f32]> = row.chunks(3).collect();
    let non_finite = |what: String| Error::NonFinite { op, message: what };
    let mut m = f32::NEG_INFINITY;
    for b in &blocks {
        if b[0].is_nan() || b[0] == f32::INFINITY {
            return Err(non_finite(format!("a logit is {}", b[0])));
        }
        m = m.max(b[0]);
    }
    if m == f32::NEG_INFINITY {
        return Err(non_finite("every logit of a row is -inf".into()));
    }
    let s: f64 = blocks
        .iter()
        .map(|b| f64::from(b[1]) * (f64::from(b[0]) - f64::from(m)).exp())
        .sum();
    let loss = match target {
        None => 0.0,
        Some(t) => {
            let b = starts.partition_point(|&s| s <= t as usize) - 1;
            s.ln() + f64::from(m) - f64::from(blocks[b][2])
        }
    };
    Ok((m, s, loss))
}

/// Blocking [`vocab_parallel_cross_entropy_async`].
///
/// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
///
/// # Errors
/// As [`vocab_parallel_cross_entropy_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn vocab_parallel_cross_entropy(
    logits: &DistTensor,
    targets: &[Option<u32>],
) -> Result<CrossEntropy> {
    crate::rank::block_on(vocab_parallel_cross_entropy_async(logits, targets))
}
