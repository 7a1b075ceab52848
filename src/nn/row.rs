//! `RowParallelLinear`: `W` split by rows, rank r computes `Xr · Wr`, one all-reduce sums.

use super::layer::{self, Layer};
use super::linear::{Backward, LinearGrads, Need, ShardedLinear, Split};
use super::{check_forward_fits, check_input, HostLinear, KvCache};
use crate::dist::{DistTensor, Placement};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::kernels::settings::WeightLayout;
use crate::ops;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::shard::offsets;
use crate::tensor::Tensor;
use crate::BoxFuture;

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
    pub(super) lin: ShardedLinear,
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
        Self::new(
            op,
            ShardedLinear::from_full(op, group, full, Split::Inputs)?,
            config,
        )
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
        let lin = ShardedLinear::from_shards(op, group, weights, biases, layout, Split::Inputs)?;
        Self::new(op, lin, config)
    }

    fn new(op: &'static str, lin: ShardedLinear, config: RowParallelConfig) -> Result<Self> {
        let out_features = lin.out_features;
        if let Some(b) = &lin.bias {
            if b.shape() != [1, out_features] {
                return Err(Error::shape(
                    op,
                    format!("bias [1, {out_features}]"),
                    fmt_shape(b.shape()),
                ));
            }
        }
        if lin.bias.is_some() && !config.reduce_results && !config.skip_bias_add {
            return Err(Error::invalid(
                op,
                "reduce_results = false with a bias needs skip_bias_add = true: the bias is \
                 added once, after the reduction, so the caller adds it (from bias())",
            ));
        }
        let ks = lin.features_per_rank(Split::Inputs);
        let blocks = INVARIANT_BLOCKS / ks.len();
        check_forward_fits(op, &lin.group, &ks, blocks, out_features)?;
        Ok(RowParallelLinear { lin, config })
    }

    /// Input features (all ranks together).
    pub fn in_features(&self) -> usize {
        self.lin.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.lin.out_features
    }

    /// The input features each rank reads (every rank of every process).
    pub fn in_features_per_rank(&self) -> Vec<usize> {
        self.lin.features_per_rank(Split::Inputs)
    }

    /// The weight, `Shard` along its input-feature dimension.
    pub fn weight(&self) -> &DistTensor {
        &self.lin.weight
    }

    /// The bias (`Replicate [1, out]`); with `skip_bias_add`, the caller adds it.
    pub fn bias(&self) -> Option<&DistTensor> {
        self.lin.bias.as_ref()
    }

    /// How the weight is stored.
    pub fn layout(&self) -> WeightLayout {
        self.lin.layout
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
        layer::forward_async(self, x, None).await
    }

    /// The gradients of the forward `Y = X · W + b` at input `x` (as the forward took it)
    /// given `dy`, dL/dY (`Replicate`: Megatron's `g` after the layer is an all-reduce
    /// forward and the identity backward; with `reduce_results` off the forward's output
    /// was `Partial`, and its gradient is still the one `dy` every rank holds). Each rank's
    /// dL/dX is its columns, `dy · W_r^T`, `Shard(1)` split as the inputs; without
    /// `input_is_parallel` (the forward took its columns of a replicated `x`) they are
    /// all-gathered into `Replicate`, the slice's backward. dL/dW (`x_r^T · dy`, or
    /// `dy^T · x_r` for `[out, in]` weights) is sharded as the weight; dL/db, the column
    /// sums of `dy`, is whole on every rank as the bias, the same bits everywhere. Every
    /// gradient is the same bits at every tp under
    /// [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) (no sum crosses ranks).
    ///
    /// # Errors
    /// [`Error::Placement`] when `x` is not placed as the forward takes it or `dy` is not
    /// `Replicate`; [`Error::Shape`] when their shapes disagree with the layer or each
    /// other; [`Error::GroupMismatch`]; GPU and collective errors.
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<LinearGrads> {
        let op = "row_parallel.backward";
        self.grads(op, x, dy, Need::All).await?.linear(op)
    }

    /// [`RowParallelLinear::backward_async`] with the weight's and bias's gradients as
    /// `need` asks.
    pub(super) async fn grads(
        &self,
        op: &'static str,
        x: &DistTensor,
        dy: &DistTensor,
        need: Need,
    ) -> Result<Backward> {
        let lin = &self.lin;
        check_input(op, &lin.group, x, lin.in_features)?;
        let ins = self.in_features_per_rank();
        let starts = offsets(&ins);
        if self.config.input_is_parallel {
            x.require_placement(op, |p| p == Placement::Shard(1), "Shard(1)")?;
            if x.shard_sizes() != ins {
                return Err(Error::shape(
                    op,
                    format!("input shards of {ins:?} columns"),
                    format!("{:?}", x.shard_sizes()),
                ));
            }
        } else {
            x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        }
        lin.check_output_grad(op, dy, x.shape()[0])?;
        dy.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        let with_bias = lin.bias.is_some() && !self.config.skip_bias_add && need == Need::All;
        let outputs = 0..lin.out_features;
        let (inputs, weights, biases) = crate::rank::batched(op, || {
            let (mut inputs, mut biases) = (Vec::new(), Vec::new());
            let mut weights = lin.weight_grads(need);
            for (i, r) in lin.group.local_range().enumerate() {
                let dy = &dy.locals()[i];
                inputs.push(
                    lin.input_grad(op, i, dy, outputs.clone(), INVARIANT_BLOCKS)
                        .run()?,
                );
                let cols = if self.config.input_is_parallel {
                    0..ins[r]
                } else {
                    starts[r]..starts[r] + ins[r]
                };
                weights.push(
                    op,
                    lin.layout,
                    (&x.locals()[i], cols),
                    (dy, outputs.clone()),
                )?;
                if with_bias {
                    biases.push(ShardedLinear::bias_grad(op, dy, outputs.clone())?);
                }
            }
            Ok((inputs, weights, biases))
        })?;
        let shape = [x.shape()[0], lin.in_features];
        let mut input = DistTensor::from_parts(&lin.group, inputs, Placement::Shard(1), shape, ins);
        if !self.config.input_is_parallel {
            input = input.redistribute_async(Placement::Replicate).await?;
        }
        let bias = with_bias.then(|| {
            let shape = [1, lin.out_features];
            DistTensor::from_parts(&lin.group, biases, Placement::Replicate, shape, Vec::new())
        });
        Ok(Backward {
            input,
            weight: lin.finish_weight(weights),
            bias,
        })
    }

    /// Blocking [`RowParallelLinear::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`RowParallelLinear::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<LinearGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }

    /// Blocking [`RowParallelLinear::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`RowParallelLinear::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}

/// The local product is every rank's partial product `x[:, cols_r] · W_r`, `Partial`, with
/// no bias (it is added once, after the reduction); the reduction its all-reduce and the
/// bias, or nothing without `reduce_results`.
impl Layer for RowParallelLinear {
    fn op(&self) -> &'static str {
        "row_parallel.forward"
    }

    fn local_forward(&self, x: &DistTensor, _: Option<&mut KvCache>) -> Result<DistTensor> {
        let (op, lin) = (self.op(), &self.lin);
        check_input(op, &lin.group, x, lin.in_features)?;
        let ins = self.in_features_per_rank();
        let local = lin.group.local_range();
        // Tp-invariant numerics: each rank sums whole K blocks, 8 / tp of them (equal
        // shards, checked when the layer was made).
        let blocks = INVARIANT_BLOCKS / ins.len();
        let partial = |i: usize, cols| {
            let x = &x.locals()[i];
            ops::Product {
                blocks,
                ..lin.product(op, i, x, cols)
            }
            .run()
        };
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
                .map(|r| partial(r, 0..got[r]))
                .collect::<Result<Vec<_>>>()?
        } else {
            x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
            let starts = offsets(&ins);
            local
                .enumerate()
                .map(|(i, r)| partial(i, starts[r]..starts[r] + ins[r]))
                .collect::<Result<Vec<_>>>()?
        };
        let shape = [x.shape()[0], lin.out_features];
        let placement = Placement::Partial;
        Ok(DistTensor::from_parts(
            &lin.group,
            partials,
            placement,
            shape,
            Vec::new(),
        ))
    }

    fn reduce_async(&self, partial: DistTensor) -> BoxFuture<'_, Result<DistTensor>> {
        self.reduce_to_async(partial, Placement::Replicate)
    }

    /// All-reduced (`Replicate`), or reduce-scattered to each rank's tokens (`Shard(0)`,
    /// sequence parallelism), then the bias added.
    fn reduce_to_async(
        &self,
        partial: DistTensor,
        target: Placement,
    ) -> BoxFuture<'_, Result<DistTensor>> {
        Box::pin(async move {
            if !self.config.reduce_results {
                if target != Placement::Replicate {
                    return Err(Error::invalid(
                        self.op(),
                        "sequence parallelism reduce-scatters the results: the layer needs \
                         reduce_results",
                    ));
                }
                // No bias here: refused when the layer was made unless skip_bias_add.
                return Ok(partial);
            }
            let y = partial.redistribute_async(target).await?;
            let Some(b) = self
                .lin
                .bias
                .as_ref()
                .filter(|_| !self.config.skip_bias_add)
            else {
                return Ok(y);
            };
            let locals = crate::rank::batched(self.op(), || {
                y.locals()
                    .iter()
                    .zip(b.locals())
                    .map(|(t, bias)| ops::add_row(t, bias))
                    .collect::<Result<Vec<_>>>()
            })?;
            Ok(DistTensor::from_parts(
                &self.lin.group,
                locals,
                y.placement(),
                y.shape(),
                y.shard_sizes().to_vec(),
            ))
        })
    }
}
