//! Single-rank operations on [`Tensor`](crate::Tensor)s: the GEMM ([`matmul()`], the one
//! front door every layer goes through, and [`matmul_tn()`], the weight gradients' `A^T ·
//! B`), the elementwise kernels and the transformer's
//! (norms, embedding lookup, rotary positions, SwiGLU, attention).
//!
//! Each call checks shapes, encodes its dispatches and submits them; nothing waits for the
//! GPU (a later read-back or collective does).

mod elementwise;
mod matmul;
mod model;
mod narrow;
pub(crate) mod numerics;
mod optimizer;
mod sum;

use std::ops::Range;

pub use elementwise::{activation, activation_grad, add, add_row, scale, slice};
pub(crate) use elementwise::{fill, place, softcap, softcap_grad};
pub use matmul::{gemm_kernel_for, matmul, matmul_tn};
pub(crate) use matmul::{matmul_tn_window, LowRank, Product};
#[cfg(test)]
pub(crate) use model::attention;
pub(crate) use model::{
    attention_backward, attention_with, cross_entropy_grad, cross_entropy_stats, fold_kv,
    gated_backward, head_rms_norm, head_rms_norm_backward, write_kv, HeadSpan, Scores,
    MAX_HEAD_DIM, NO_TARGET,
};
pub use model::{
    embed, embed_backward, gelu_tanh_mul, layer_norm, layer_norm_backward, rms_norm,
    rms_norm_backward, rope, silu_mul,
};
pub(crate) use narrow::narrow_into;
pub(crate) use optimizer::{adamw_step, column_sum_squares, sum_squares, AdamWStep};
pub(crate) use sum::{one_device, sum};

use crate::error::{Error, Result};
use crate::rank::Rank;

fn same_rank(op: &'static str, a: &Rank, b: &Rank) -> Result<()> {
    if a.group_id() != b.group_id() || a.index() != b.index() {
        return Err(Error::invalid(op, "tensors live on different ranks"));
    }
    Ok(())
}

/// The rows two ranges share, if any.
pub(crate) fn overlap(a: &Range<usize>, b: &Range<usize>) -> Option<Range<usize>> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    (!r.is_empty()).then_some(r)
}
