//! What the column- and row-parallel linear layers share: a linear layer's weight sharded
//! over a group along its output or its input features, its bias (split with the outputs,
//! or whole on every rank), one rank's product, and one rank's gradients.

use std::ops::Range;

use super::HostLinear;
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::Tensor;

/// The features a linear layer's weight is split along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Split {
    /// Output features (column-parallel); the bias is split with them.
    Outputs,
    /// Input features (row-parallel); the bias is whole on every rank.
    Inputs,
}

impl Split {
    /// The dimension of a weight stored per `layout` that is split.
    fn dim(self, layout: WeightLayout) -> usize {
        match self {
            Split::Outputs => layout.out_dim(),
            Split::Inputs => 1 - layout.out_dim(),
        }
    }
}

/// A linear layer sharded over a group, without its options.
#[derive(Debug, Clone)]
pub(super) struct ShardedLinear {
    pub(super) group: Group,
    /// `Shard` along the split features' dimension.
    pub(super) weight: DistTensor,
    /// `Shard(1) [1, out]` split like the outputs, or `Replicate [1, out]`.
    pub(super) bias: Option<DistTensor>,
    /// All ranks together.
    pub(super) in_features: usize,
    /// All ranks together.
    pub(super) out_features: usize,
    pub(super) layout: WeightLayout,
    /// A low-rank adapter its products add, if attached.
    pub(super) adapter: super::AdapterSlot,
}

impl ShardedLinear {
    /// Shards `full` along `split` with [`split_sizes`](crate::split_sizes); argument
    /// errors name `op`.
    pub(super) fn from_full(
        op: &'static str,
        group: &Group,
        full: HostLinear<'_>,
        split: Split,
    ) -> Result<Self> {
        full.check(op)?;
        let shape = full
            .layout
            .stored_shape(full.in_features, full.out_features);
        let weight = DistTensor::shard(group, full.weight, shape, split.dim(full.layout))
            .map_err(|e| e.with_op(op))?;
        let bias_shape = [1, full.out_features];
        let bias = full
            .bias
            .map(|b| match split {
                Split::Outputs => DistTensor::shard(group, b, bias_shape, 1),
                Split::Inputs => DistTensor::replicate(group, b, bias_shape),
            })
            .transpose()
            .map_err(|e| e.with_op(op))?;
        Ok(Self::new(group, weight, bias, full.layout))
    }

    /// Wraps per-rank shards split along `split`: checks the group, that every weight
    /// shard has the same size along the dimension that is not split, and that the
    /// biases are f32 (weights may be half precision: the GEMM widens them). What each
    /// bias must be is its layer's check.
    pub(super) fn from_shards(
        op: &'static str,
        group: &Group,
        weights: Vec<Tensor>,
        biases: Option<Vec<Tensor>>,
        layout: WeightLayout,
        split: Split,
    ) -> Result<Self> {
        for b in biases.iter().flatten() {
            b.require_f32(op)?;
        }
        let placement = Placement::Shard(split.dim(layout));
        let weight = DistTensor::from_locals(group, weights, placement).map_err(|e| match e {
            Error::Shape { expected, got, .. } => Error::Shape { op, expected, got },
            other => other,
        })?;
        let bias_placement = match split {
            Split::Outputs => Placement::Shard(1),
            Split::Inputs => Placement::Replicate,
        };
        let bias = biases
            .map(|b| DistTensor::from_locals(group, b, bias_placement))
            .transpose()?;
        Ok(Self::new(group, weight, bias, layout))
    }

    fn new(
        group: &Group,
        weight: DistTensor,
        bias: Option<DistTensor>,
        layout: WeightLayout,
    ) -> Self {
        let (in_features, out_features) = layout.in_out(weight.shape());
        ShardedLinear {
            group: group.clone(),
            weight,
            bias,
            in_features,
            out_features,
            layout,
            adapter: super::AdapterSlot::default(),
        }
    }

    /// The input (`Split::Inputs`) or output feature counts of every rank's weight shard
    /// (all processes' ranks, in global order).
    pub(super) fn features_per_rank(&self, features: Split) -> Vec<usize> {
        let (i, o) = self.layout.in_out(self.weight.shape());
        match self.weight.placement() {
            Placement::Shard(d) if d == features.dim(self.layout) => {
                self.weight.shard_sizes().to_vec()
            }
            _ => {
                let all = if features == Split::Inputs { i } else { o };
                vec![all; self.group.world_size()]
            }
        }
    }

    /// Local rank `i`'s product `x[:, cols] · W_i`, unrun: no bias, no activation, in
    /// [`INVARIANT_BLOCKS`] K blocks under tp-invariant numerics (a caller sets what differs).
    pub(super) fn product<'a>(
        &'a self,
        op: &'static str,
        i: usize,
        x: &'a Tensor,
        cols: Range<usize>,
    ) -> ops::Product<'a> {
        ops::Product {
            op,
            x,
            cols,
            w: &self.weight.locals()[i],
            bias: None,
            layout: self.layout,
            act: Activation::Identity,
            blocks: INVARIANT_BLOCKS,
            low_rank: self.adapter.low_rank(i),
        }
    }
}

/// The gradients of a linear layer's backward, each placed as what it is the gradient of.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinearGrads {
    /// dL/dX, placed as the forward's input (`Replicate` for a column-parallel layer;
    /// `Shard(1)` or `Replicate` for a row-parallel one, as its `input_is_parallel`).
    pub input: DistTensor,
    /// dL/dW, stored and sharded as the weight (same layout, same shards), in f32 whatever
    /// the weight's type.
    pub weight: DistTensor,
    /// dL/db, placed as the bias; `None` without a bias or with `skip_bias_add` (then the
    /// caller, who adds the bias, has its gradient).
    pub bias: Option<DistTensor>,
}

impl ShardedLinear {
    /// Local rank `i`'s product `dy[:, cols] · W_i^T` (the input gradient's), unrun: the
    /// weight read in the other layout, in `blocks` K blocks under tp-invariant numerics.
    pub(super) fn input_grad<'a>(
        &'a self,
        op: &'static str,
        i: usize,
        dy: &'a Tensor,
        cols: Range<usize>,
        blocks: usize,
    ) -> ops::Product<'a> {
        ops::Product {
            op,
            x: dy,
            cols,
            w: &self.weight.locals()[i],
            bias: None,
            layout: self.layout.transposed(),
            act: Activation::Identity,
            blocks,
            low_rank: self.adapter.low_rank(i),
        }
    }

    /// One rank's weight gradient, stored as its weight: `x[:, x_cols]^T · dy[:, dy_cols]`
    /// (`[in, out]`) or `dy[:, dy_cols]^T · x[:, x_cols]` (`[out, in]`), summed over the
    /// tokens in order (the same bits at every tp).
    pub(super) fn weight_grad(
        op: &'static str,
        layout: WeightLayout,
        x: (&Tensor, Range<usize>),
        dy: (&Tensor, Range<usize>),
    ) -> Result<Tensor> {
        match layout {
            WeightLayout::InOut => ops::matmul_tn_window(op, x.0, x.1, dy.0, dy.1),
            WeightLayout::OutIn => ops::matmul_tn_window(op, dy.0, dy.1, x.0, x.1),
        }
    }

    /// One rank's bias gradient: the column sums of `dy[:, cols]`, `[1, cols.len()]`,
    /// summed over the tokens in order.
    pub(super) fn bias_grad(op: &'static str, dy: &Tensor, cols: Range<usize>) -> Result<Tensor> {
        let ones = Tensor::from_host(dy.rank(), &vec![1.0; dy.shape()[0]], [dy.shape()[0], 1])?;
        ops::matmul_tn_window(op, &ones, 0..1, dy, cols)
    }

    /// The weight gradient's `DistTensor`: sharded as the weight.
    pub(super) fn weight_grads(&self, locals: Vec<Tensor>) -> DistTensor {
        DistTensor::from_parts(
            &self.group,
            locals,
            self.weight.placement(),
            self.weight.shape(),
            self.weight.shard_sizes().to_vec(),
        )
    }

    /// Checks `dy`, the gradient of the forward's output: this layer's group, `rows` rows
    /// of `out_features` columns, f32.
    pub(super) fn check_output_grad(
        &self,
        op: &'static str,
        dy: &DistTensor,
        rows: usize,
    ) -> Result<()> {
        if !dy.group().same_as(&self.group) {
            return Err(Error::GroupMismatch { op });
        }
        if dy.shape() != [rows, self.out_features] {
            return Err(Error::shape(
                op,
                format!("the output's gradient [{rows}, {}]", self.out_features),
                crate::error::fmt_shape(dy.shape()),
            ));
        }
        Ok(())
    }
}
