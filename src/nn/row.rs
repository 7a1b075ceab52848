//! `RowParallelLinear`: `W` split by rows, rank r computes `Xr · Wr`, one all-reduce sums.

use super::{check_forward_fits, check_input, shard_features, weight_from_shards, HostLinear};
use crate::dist::{DistTensor, Placement};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::shard::offsets;
use crate::tensor::Tensor;

/// Options of a [`RowParallelLinear`] (Megatron-LM's names and defaults, and vLLM's
/// `reduce_results`).
///
/// Made from [`Default`] with chainable setters named as the fields (more options may
/// come, so it cannot be written as a struct literal outside this crate):
///
/// ```
/// use wgpu_tp::RowParallelConfig;
///
/// let config = RowParallelConfig::default().input_is_parallel(true);
/// assert!(config.reduce_results && !config.skip_bias_add);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowParallelConfig {
    /// The input is already `Shard(1)`, split like the weight's rows (the output of a
    /// column-parallel layer without `gather_output`). Otherwise it is `Replicate` and each
    /// rank reads its own column window of it, without a copy. Default: false.
    pub input_is_parallel: bool,
    /// Do not add the bias; the caller takes it from [`RowParallelLinear::bias`] to fuse it
    /// with what follows. Default: false.
    pub skip_bias_add: bool,
    /// All-reduce the ranks' partial products into a `Replicate` output. Otherwise the
    /// forward returns them as they are, `Partial` (no communication), for the caller to
    /// reduce or reduce-scatter later, or to fuse into its own collective. A layer with a
    /// bias then needs `skip_bias_add` (as in vLLM and Megatron-LM, which refuse or
    /// assert the same): the bias is added once, after the reduction, so it is the
    /// caller's. Default: true.
    pub reduce_results: bool,
}

impl Default for RowParallelConfig {
    fn default() -> Self {
        RowParallelConfig {
            input_is_parallel: false,
            skip_bias_add: false,
            reduce_results: true,
        }
    }
}

impl RowParallelConfig {
    /// Sets the field `input_is_parallel`.
    #[must_use]
    pub fn input_is_parallel(self, input_is_parallel: bool) -> Self {
        RowParallelConfig {
            input_is_parallel,
            ..self
        }
    }

    /// Sets the field `skip_bias_add`.
    #[must_use]
    pub fn skip_bias_add(self, skip_bias_add: bool) -> Self {
        RowParallelConfig {
            skip_bias_add,
            ..self
        }
    }

    /// Sets the field `reduce_results`.
    #[must_use]
    pub fn reduce_results(self, reduce_results: bool) -> Self {
        RowParallelConfig {
            reduce_results,
            ..self
        }
    }
}

/// A linear layer whose input features are split over the ranks: each rank's product is
/// an addend (`Partial`), joined by exactly one all-reduce; the bias is added once, after
/// the reduction, identically on every rank.
///
/// Input: `Shard(1) [batch, in]` with `input_is_parallel`, else `Replicate`.
/// Output: `Replicate [batch, out]`, or `Partial` without `reduce_results`.
#[derive(Debug, Clone)]
pub struct RowParallelLinear {
    group: Group,
    weight: DistTensor,
    bias: Option<DistTensor>,
    in_features: usize,
    out_features: usize,
    layout: WeightLayout,
    config: RowParallelConfig,
}

impl RowParallelLinear {
    /// Shards a full layer's weight by input features with [`split_sizes`](crate::split_sizes);
    /// the bias is replicated.
    ///
    /// # Errors
    /// [`Error::Shape`] when the weight or bias length disagrees with the features;
    /// [`Error::InvalidArgument`] when the tp size exceeds `in_features`, or for a bias
    /// with `reduce_results = false` but not `skip_bias_add`; allocation errors.
    pub fn from_full(
        group: &Group,
        full: HostLinear<'_>,
        config: RowParallelConfig,
    ) -> Result<Self> {
        let op = "row_parallel.from_full";
        full.check(op)?;
        let weight = full.shard_weight(op, group, false)?;
        let bias = full
            .bias
            .map(|b| DistTensor::replicate(group, b, [1, full.out_features]))
            .transpose()
            .map_err(|e| e.with_op(op))?;
        Self::new(op, group, weight, bias, full.layout, config)
    }

    /// Wraps shards a caller already has: `weights[r]` (stored per `layout`, any number of
    /// input features) and `biases[r]` (the whole `[1, out]` bias) on rank `r`.
    ///
    /// # Errors
    /// [`Error::Shape`] when shards disagree on `out_features` or a bias is not
    /// `[1, out]`; [`Error::GroupMismatch`] for tensors of another group;
    /// [`Error::InvalidArgument`] for a bias with `reduce_results = false` but not
    /// `skip_bias_add`.
    pub fn from_shards(
        group: &Group,
        weights: Vec<Tensor>,
        biases: Option<Vec<Tensor>>,
        layout: WeightLayout,
        config: RowParallelConfig,
    ) -> Result<Self> {
        let op = "row_parallel.from_shards";
        // Weights may be half precision (the GEMM widens them); biases are f32.
        for b in biases.iter().flatten() {
            b.require_f32(op)?;
        }
        let weight = weight_from_shards(op, group, weights, layout, false)?;
        let bias = biases
            .map(|b| DistTensor::from_locals(group, b, Placement::Replicate))
            .transpose()?;
        Self::new(op, group, weight, bias, layout, config)
    }

    fn new(
        op: &'static str,
        group: &Group,
        weight: DistTensor,
        bias: Option<DistTensor>,
        layout: WeightLayout,
        config: RowParallelConfig,
    ) -> Result<Self> {
        let (in_features, out_features) = layout.in_out(weight.shape());
        if let Some(b) = &bias {
            if b.shape() != [1, out_features] {
                return Err(Error::shape(
                    op,
                    format!("bias [1, {out_features}]"),
                    fmt_shape(b.shape()),
                ));
            }
        }
        if bias.is_some() && !config.reduce_results && !config.skip_bias_add {
            return Err(Error::invalid(
                op,
                "reduce_results = false with a bias needs skip_bias_add = true: the bias is \
                 added once, after the reduction, so the caller adds it (from bias())",
            ));
        }
        let ks = shard_features(&weight, layout, true);
        check_forward_fits(op, group, &ks, INVARIANT_BLOCKS / ks.len(), out_features)?;
        Ok(RowParallelLinear {
            group: group.clone(),
            weight,
            bias,
            in_features,
            out_features,
            layout,
            config,
        })
    }

    /// Input features (all ranks together).
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The input features each rank reads (every rank of every process).
    pub fn in_features_per_rank(&self) -> Vec<usize> {
        shard_features(&self.weight, self.layout, true)
    }

    /// The weight, `Shard` along its input-feature dimension.
    pub fn weight(&self) -> &DistTensor {
        &self.weight
    }

    /// The bias (`Replicate [1, out]`); with `skip_bias_add`, the caller adds it.
    pub fn bias(&self) -> Option<&DistTensor> {
        self.bias.as_ref()
    }

    /// How the weight is stored.
    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    /// The options.
    pub fn config(&self) -> RowParallelConfig {
        self.config
    }

    /// `all_reduce(Xr · Wr) + b`, with exactly one all-reduce; every rank's GEMM is
    /// submitted before it. Without `reduce_results`, the `Partial` tensor of the `Xr · Wr`
    /// and no communication.
    ///
    /// # Errors
    /// [`Error::Placement`] when `x` is not `Shard(1)` (with `input_is_parallel`) or
    /// `Replicate` (without); [`Error::Shape`] when its columns or its shards do not match
    /// the weight's rows; [`Error::GroupMismatch`]; GPU and collective errors.
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        let partial = crate::rank::batched("row_parallel.forward", || self.partial_forward(x))?;
        self.reduce_async(partial).await
    }

    /// Every rank's partial product, `Partial` (no bias).
    pub(crate) fn partial_forward(&self, x: &DistTensor) -> Result<DistTensor> {
        let op = "row_parallel.forward";
        check_input(op, &self.group, x, self.in_features)?;
        let ins = self.in_features_per_rank();
        let local = self.group.local_range();
        let w = self.weight.locals();
        // Tp-invariant numerics: each rank sums whole K blocks, 8 / tp of them (equal
        // shards, checked when the layer was made).
        let blocks = INVARIANT_BLOCKS / ins.len();
        let partials = if self.config.input_is_parallel {
            x.require_placement(op, |p| p == Placement::Shard(1), "Shard(1)")?;
            // The global sizes every process knows alike, so all refuse together.
            if x.shard_sizes() != ins {
                return Err(Error::shape(
                    op,
                    format!("input shards of {ins:?} columns"),
                    format!("{:?}", x.shard_sizes()),
                ));
            }
            let got = &ins[local];
            (0..got.len())
                .map(|r| self.partial(&x.locals()[r], 0..got[r], &w[r], blocks))
                .collect::<Result<Vec<_>>>()?
        } else {
            x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
            let starts = offsets(&ins);
            local
                .enumerate()
                .map(|(i, r)| {
                    let cols = starts[r]..starts[r] + ins[r];
                    self.partial(&x.locals()[i], cols, &w[i], blocks)
                })
                .collect::<Result<Vec<_>>>()?
        };
        let shape = [x.shape()[0], self.out_features];
        Ok(DistTensor::from_parts(
            &self.group,
            partials,
            Placement::Partial,
            shape,
            Vec::new(),
        ))
    }

    /// The all-reduce of [`RowParallelLinear::partial_forward`]'s output and the bias;
    /// the output itself without `reduce_results`.
    pub(crate) async fn reduce_async(&self, partial: DistTensor) -> Result<DistTensor> {
        if !self.config.reduce_results {
            // No bias here: refused when the layer was made unless skip_bias_add.
            return Ok(partial);
        }
        let y = partial.redistribute_async(Placement::Replicate).await?;
        match (&self.bias, self.config.skip_bias_add) {
            (Some(b), false) => {
                let locals = crate::rank::batched("row_parallel.forward", || {
                    y.locals()
                        .iter()
                        .zip(b.locals())
                        .map(|(t, bias)| ops::add_row(t, bias))
                        .collect::<Result<Vec<_>>>()
                })?;
                let shape = y.shape();
                let replicate = Placement::Replicate;
                Ok(DistTensor::from_parts(
                    &self.group,
                    locals,
                    replicate,
                    shape,
                    Vec::new(),
                ))
            }
            _ => Ok(y),
        }
    }

    /// One rank's partial product `x[:, cols] · W` (no bias: it is added once, after the
    /// reduction), in `blocks` K blocks under tp-invariant numerics.
    fn partial(
        &self,
        x: &Tensor,
        cols: std::ops::Range<usize>,
        w: &Tensor,
        blocks: usize,
    ) -> Result<Tensor> {
        ops::Product {
            op: "row_parallel.forward",
            x,
            cols,
            w,
            bias: None,
            layout: self.layout,
            act: Activation::Identity,
            blocks,
        }
        .run()
    }

    /// Blocking [`RowParallelLinear::forward_async`].
    ///
    /// # Errors
    /// As [`RowParallelLinear::forward_async`].
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}
