//! The vocabulary-parallel cross-entropy's two kernels on one rank
//! (`shaders/cross_entropy.wgsl`): the statistics of each row's blocks of logits, and the
//! gradient `(softmax - one_hot) * scale` once the host has joined every rank's
//! statistics. The logits and the gradient may come in bands of rows; the targets, the
//! statistics and the rows' joined values are one buffer each.

use super::{dispatch, key, single};
use crate::error::{Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::CrossEntropyParams;
use crate::kernels::Shader;
use crate::ops::same_rank;
use crate::tensor::Tensor;

/// The target of a row that has none: 2^24 as f32 bits, a normal f32 (so no driver flushes
/// it) and no id of a vocabulary below 2^24 (what the cross-entropy accepts).
pub(crate) const NO_TARGET: u32 = 0x4B80_0000;

fn u32_of(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("{what} {v} past u32")))
}

/// Per row of `logits` (`[rows, cols]`: this rank's columns, the first of them global id
/// `first`) and per block of `block` columns (the last may be shorter): the block's
/// largest logit, the sum of `exp(logit - largest)` over it in increasing column order,
/// and the target's logit where the block holds the row's target (`targets`: `[1, rows]`
/// ids, [`Tensor::from_ids`]), else 0. `[rows, 3 * blocks]`.
pub(crate) fn cross_entropy_stats(
    logits: &Tensor,
    targets: &Tensor,
    first: usize,
    block: usize,
) -> Result<Tensor> {
    let op = "cross_entropy";
    let rank = logits.rank();
    same_rank(op, rank, targets.rank())?;
    logits.require_f32(op)?;
    let [rows, cols] = logits.shape();
    if block == 0 || targets.shape() != [1, rows] {
        return Err(Error::shape(
            op,
            format!("[1, {rows}] targets and blocks of 1 or more columns"),
            format!("{:?} targets, blocks of {block}", targets.shape()),
        ));
    }
    let blocks = cols.div_ceil(block);
    let out = Tensor::output(rank, [rows, 3 * blocks], op)?;
    let (t, o) = (single(op, targets)?, single(op, &out)?);
    for band in logits.bands() {
        let p = CrossEntropyParams {
            cols: u32_of(op, "columns", cols)?,
            block: u32_of(op, "block", block)?,
            blocks: u32_of(op, "blocks", blocks)?,
            first: u32_of(op, "first id", first)?,
            row0: u32_of(op, "row", band.rows.start)?,
            ..CrossEntropyParams::default()
        };
        let bufs = [band.buffer(), t, t, o];
        let key = key(Shader::CrossEntropy, "row_stats", DType::F32);
        dispatch(rank, op, &key, &bufs, band.rows.len() * blocks, p)?;
    }
    Ok(out)
}

/// `(exp(logit - M) / S - one_hot(target)) * scale` for every logit of this rank's columns
/// (the first global id `first`), each row's `M`, `S`, `scale` and target (as u32 bits;
/// [`NO_TARGET`] for none) in `rows` (`[rows, 4]`).
pub(crate) fn cross_entropy_grad(logits: &Tensor, rows: &Tensor, first: usize) -> Result<Tensor> {
    let op = "cross_entropy.backward";
    let rank = logits.rank();
    same_rank(op, rank, rows.rank())?;
    logits.require_f32(op)?;
    let [n, cols] = logits.shape();
    if rows.shape() != [n, 4] {
        return Err(Error::shape(
            op,
            format!("[{n}, 4] row values"),
            format!("{:?}", rows.shape()),
        ));
    }
    let out = Tensor::output(rank, logits.shape(), op)?;
    let r = single(op, rows)?;
    for (band, ob) in logits.bands().iter().zip(out.bands()) {
        let p = CrossEntropyParams {
            cols: u32_of(op, "columns", cols)?,
            first: u32_of(op, "first id", first)?,
            row0: u32_of(op, "row", band.rows.start)?,
            ..CrossEntropyParams::default()
        };
        let bufs = [band.buffer(), r, r, ob.buffer()];
        let key = key(Shader::CrossEntropy, "grad", DType::F32);
        dispatch(rank, op, &key, &bufs, band.rows.len() * cols, p)?;
    }
    Ok(out)
}
