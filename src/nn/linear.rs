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

/// What a backward computes of its parameters' gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Every parameter's.
    All,
    /// None, the base frozen: an adapted weight's gradient is kept as its [`Factors`], from
    /// which its adapter's come (`model::Lora`); nothing else is computed but dL/dX.
    Frozen,
}

/// One local rank's weight gradient as stored, `dM = p[:, p_cols]ᵀ · q[:, q_cols]`, kept
/// unmultiplied: `dyᵀ · x` for `[out, in]` weights, `xᵀ · dy` for `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Factors {
    pub p: Tensor,
    pub p_cols: Range<usize>,
    pub q: Tensor,
    pub q_cols: Range<usize>,
}

impl Factors {
    /// The factors of a weight stored per `layout` at the input window `x` given the
    /// output's gradient window `dy`.
    pub(super) fn of(
        layout: WeightLayout,
        x: (&Tensor, Range<usize>),
        dy: (&Tensor, Range<usize>),
    ) -> Self {
        let ((p, p_cols), (q, q_cols)) = match layout {
            WeightLayout::InOut => (x, dy),
            WeightLayout::OutIn => (dy, x),
        };
        Factors {
            p: p.clone(),
            p_cols,
            q: q.clone(),
            q_cols,
        }
    }

    /// `pᵀ · q`, summed over the tokens in order (the same bits at every tp).
    pub(crate) fn product(&self, op: &'static str) -> Result<Tensor> {
        let (p, q) = (&self.p, &self.q);
        ops::matmul_tn_window(op, p, self.p_cols.clone(), q, self.q_cols.clone())
    }
}

/// A weight's gradient as a backward gives it.
#[derive(Debug, Clone)]
pub(crate) enum WeightGrad {
    /// Computed, stored and sharded as the weight ([`Need::All`]).
    Whole(DistTensor),
    /// [`Need::Frozen`]: each local rank's factors where an adapter is attached, else none.
    Frozen(Option<Vec<Factors>>),
}

/// A weight's gradient on each local rank, as it is pushed: computed, kept as its factors,
/// or skipped, as [`Need`] and whether an adapter is attached say.
pub(super) struct WeightGrads {
    need: Need,
    adapted: bool,
    whole: Vec<Tensor>,
    factors: Vec<Factors>,
}

impl WeightGrads {
    pub(super) fn new(need: Need, slot: &super::AdapterSlot) -> Self {
        WeightGrads {
            need,
            adapted: slot.get().is_some(),
            whole: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// The next local rank's, of a weight stored per `layout` at the input window `x`
    /// given the output's gradient window `dy`.
    pub(super) fn push(
        &mut self,
        op: &'static str,
        layout: WeightLayout,
        x: (&Tensor, Range<usize>),
        dy: (&Tensor, Range<usize>),
    ) -> Result<()> {
        let factors = Factors::of(layout, x, dy);
        match self.need {
            Need::All => self.whole.push(factors.product(op)?),
            Need::Frozen if self.adapted => self.factors.push(factors),
            Need::Frozen => {}
        }
        Ok(())
    }

    /// The gradient, computed ones placed as `like` (the weight, or `sizes` of its split).
    pub(super) fn finish(self, group: &Group, like: &DistTensor, sizes: Vec<usize>) -> WeightGrad {
        match self.need {
            Need::All => WeightGrad::Whole(DistTensor::from_parts(
                group,
                self.whole,
                like.placement(),
                like.shape(),
                sizes,
            )),
            Need::Frozen => WeightGrad::Frozen(self.adapted.then_some(self.factors)),
        }
    }
}

/// A linear layer's backward as its layers use it: [`LinearGrads`] with the weight's
/// gradient as [`Need`] asks (the bias's `None` when frozen).
#[derive(Debug, Clone)]
pub(crate) struct Backward {
    pub input: DistTensor,
    pub weight: WeightGrad,
    pub bias: Option<DistTensor>,
}

impl Backward {
    /// The public form, of a [`Need::All`] backward.
    pub(super) fn linear(self, op: &'static str) -> Result<LinearGrads> {
        match self.weight {
            WeightGrad::Whole(weight) => Ok(LinearGrads {
                input: self.input,
                weight,
                bias: self.bias,
            }),
            WeightGrad::Frozen(_) => Err(Error::invalid(
                op,
                "a frozen backward has no weights' gradients",
            )),
        }
    }

    /// The weight's and bias's gradients, computed ones (none when frozen).
    pub(super) fn params(&self) -> Vec<DistTensor> {
        match &self.weight {
            WeightGrad::Whole(w) => std::iter::once(w).chain(&self.bias).cloned().collect(),
            WeightGrad::Frozen(_) => Vec::new(),
        }
    }

    /// The weight's factors, for a frozen, adapted weight: `(param, factors)`.
    pub(super) fn factors(&self, param: usize) -> Option<(usize, Vec<Factors>)> {
        self.weight.factors(param)
    }
}

impl WeightGrad {
    /// Its factors, for a frozen, adapted weight: `(param, factors)`.
    pub(super) fn factors(&self, param: usize) -> Option<(usize, Vec<Factors>)> {
        match self {
            WeightGrad::Frozen(Some(f)) => Some((param, f.clone())),
            _ => None,
        }
    }
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

    /// One rank's bias gradient: the column sums of `dy[:, cols]`, `[1, cols.len()]`,
    /// summed over the tokens in order.
    pub(super) fn bias_grad(op: &'static str, dy: &Tensor, cols: Range<usize>) -> Result<Tensor> {
        let ones = Tensor::from_host(dy.rank(), &vec![1.0; dy.shape()[0]], [dy.shape()[0], 1])?;
        ops::matmul_tn_window(op, &ones, 0..1, dy, cols)
    }

    /// A new collector of its weight's gradient ([`WeightGrads::push`] each local rank's).
    pub(super) fn weight_grads(&self, need: Need) -> WeightGrads {
        WeightGrads::new(need, &self.adapter)
    }

    /// The collected weight gradient: sharded as the weight.
    pub(super) fn finish_weight(&self, grads: WeightGrads) -> WeightGrad {
        let sizes = self.weight.shard_sizes().to_vec();
        grads.finish(&self.group, &self.weight, sizes)
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
