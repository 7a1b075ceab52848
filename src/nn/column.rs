//! `ColumnParallelLinear`: `W = [W0 | W1 | ...]`, rank r computes `X · Wr`.

use super::{check_forward_fits, check_input, shard_features, weight_from_shards, HostLinear};
use crate::dist::{DistTensor, Placement};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops;
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::Tensor;

/// Options of a [`ColumnParallelLinear`] (Megatron-LM's names and defaults).
///
/// Made from [`Default`] with chainable setters named as the fields (more options may
/// come, so it cannot be written as a struct literal outside this crate):
///
/// ```
/// use wgpu_tp::{Activation, ColumnParallelConfig};
///
/// let config = ColumnParallelConfig::default()
///     .gather_output(false)
///     .activation(Activation::Relu);
/// assert!(!config.gather_output && !config.skip_bias_add);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnParallelConfig {
    /// All-gather the output so every rank holds all of `Y` (`Replicate`); otherwise the
    /// output stays `Shard(1)` (what a following row-parallel layer wants). Default: true.
    pub gather_output: bool,
    /// Applied to each output element in the GEMM's epilogue, before any gather.
    /// Default: identity.
    pub activation: Activation,
    /// Run the GEMM without the bias; the caller takes it from
    /// [`ColumnParallelLinear::bias`] (`Shard(1)`, split like the output) to fuse it with
    /// what follows. A layer with a bias refuses it together with an activation (which
    /// would then run before the bias). Default: false.
    pub skip_bias_add: bool,
}

impl Default for ColumnParallelConfig {
    fn default() -> Self {
        ColumnParallelConfig {
            gather_output: true,
            activation: Activation::Identity,
            skip_bias_add: false,
        }
    }
}

impl ColumnParallelConfig {
    /// Sets the field `gather_output`.
    #[must_use]
    pub fn gather_output(self, gather_output: bool) -> Self {
        ColumnParallelConfig {
            gather_output,
            ..self
        }
    }

    /// Sets the field `activation`.
    #[must_use]
    pub fn activation(self, activation: Activation) -> Self {
        ColumnParallelConfig { activation, ..self }
    }

    /// Sets the field `skip_bias_add`.
    #[must_use]
    pub fn skip_bias_add(self, skip_bias_add: bool) -> Self {
        ColumnParallelConfig {
            skip_bias_add,
            ..self
        }
    }
}

/// A linear layer whose output features are split over the ranks. Forward needs no
/// communication unless `gather_output` is set (then one all-gather).
///
/// Input: `Replicate [batch, in]`. Output: `Shard(1) [batch, out]`, or `Replicate` with
/// `gather_output`. The bias is sharded with its output columns (and left to the caller
/// with `skip_bias_add`).
#[derive(Debug, Clone)]
pub struct ColumnParallelLinear {
    group: Group,
    weight: DistTensor,
    bias: Option<DistTensor>,
    in_features: usize,
    out_features: usize,
    layout: WeightLayout,
    config: ColumnParallelConfig,
}

impl ColumnParallelLinear {
    /// Shards a full layer's weight (and bias) by output features with [`split_sizes`](crate::split_sizes).
    ///
    /// # Errors
    /// [`Error::Shape`] when the weight or bias length disagrees with the features;
    /// [`Error::InvalidArgument`] when the tp size exceeds `out_features`, or for
    /// `skip_bias_add` with a bias and an activation; allocation errors.
    pub fn from_full(
        group: &Group,
        full: HostLinear<'_>,
        config: ColumnParallelConfig,
    ) -> Result<Self> {
        let op = "column_parallel.from_full";
        full.check(op)?;
        let weight = full.shard_weight(op, group, true)?;
        let bias = full
            .bias
            .map(|b| DistTensor::shard(group, b, [1, full.out_features], 1))
            .transpose()
            .map_err(|e| e.with_op(op))?;
        Self::new(op, group, weight, bias, full.layout, config)
    }

    /// Wraps shards a caller already has: `weights[r]` (stored per `layout`, any number of
    /// output features) and `biases[r]` (`[1, out_r]`) on rank `r`.
    ///
    /// # Errors
    /// [`Error::Shape`] when shards disagree on `in_features` or a bias does not match its
    /// weight; [`Error::GroupMismatch`] for tensors of another group;
    /// [`Error::InvalidArgument`] for `skip_bias_add` with a bias and an activation.
    pub fn from_shards(
        group: &Group,
        weights: Vec<Tensor>,
        biases: Option<Vec<Tensor>>,
        layout: WeightLayout,
        config: ColumnParallelConfig,
    ) -> Result<Self> {
        let op = "column_parallel.from_shards";
        // Weights may be half precision (the GEMM widens them); biases are f32.
        for b in biases.iter().flatten() {
            b.require_f32(op)?;
        }
        let weight = weight_from_shards(op, group, weights, layout, true)?;
        let bias = biases
            .map(|b| DistTensor::from_locals(group, b, Placement::Shard(1)))
            .transpose()?;
        Self::new(op, group, weight, bias, layout, config)
    }

    fn new(
        op: &'static str,
        group: &Group,
        weight: DistTensor,
        bias: Option<DistTensor>,
        layout: WeightLayout,
        config: ColumnParallelConfig,
    ) -> Result<Self> {
        let (in_features, out_features) = layout.in_out(weight.shape());
        if let Some(b) = &bias {
            let outs = shard_features(&weight, layout, false);
            let bias_cols: Vec<[usize; 2]> = b.locals().iter().map(Tensor::shape).collect();
            let local = &outs[group.local_range()];
            if bias_cols.iter().zip(local).any(|(s, &o)| *s != [1, o]) {
                return Err(Error::shape(
                    op,
                    format!("bias shards [1, n] with n = {local:?}"),
                    bias_cols
                        .iter()
                        .map(|&s| fmt_shape(s))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
        if config.skip_bias_add && bias.is_some() && config.activation != Activation::Identity {
            return Err(Error::invalid(
                op,
                format!(
                    "skip_bias_add with activation {:?}: the activation would run before the \
                     bias the caller adds; use Activation::Identity and apply it after the bias",
                    config.activation
                ),
            ));
        }
        let ks = vec![in_features; group.world_size()];
        let widest = if config.gather_output {
            out_features
        } else {
            shard_features(&weight, layout, false)
                .into_iter()
                .max()
                .unwrap_or(0)
        };
        check_forward_fits(op, group, &ks, INVARIANT_BLOCKS, widest)?;
        Ok(ColumnParallelLinear {
            group: group.clone(),
            weight,
            bias,
            in_features,
            out_features,
            layout,
            config,
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features (all ranks together).
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The output features each rank computes (every rank of every process).
    pub fn out_features_per_rank(&self) -> Vec<usize> {
        shard_features(&self.weight, self.layout, false)
    }

    /// The weight, `Shard` along its output-feature dimension.
    pub fn weight(&self) -> &DistTensor {
        &self.weight
    }

    /// How the weight is stored.
    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    /// The bias (`Shard(1) [1, out]`, split like the output); with `skip_bias_add`, the
    /// caller adds it.
    pub fn bias(&self) -> Option<&DistTensor> {
        self.bias.as_ref()
    }

    /// The options.
    pub fn config(&self) -> ColumnParallelConfig {
        self.config
    }

    /// `act(X · W + b)` (`X · W` with `skip_bias_add`): every rank's GEMM is submitted
    /// before anything waits.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` is `Replicate`; [`Error::Shape`] unless it has
    /// `in_features` columns; [`Error::GroupMismatch`]; GPU and collective errors.
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        let y = crate::rank::batched("column_parallel.forward", || self.local_forward(x))?;
        if self.config.gather_output {
            y.redistribute_async(Placement::Replicate).await
        } else {
            Ok(y)
        }
    }

    /// Every rank's `act(X · W + b)` shard, `Shard(1)` (no gather).
    pub(crate) fn local_forward(&self, x: &DistTensor) -> Result<DistTensor> {
        let op = "column_parallel.forward";
        check_input(op, &self.group, x, self.in_features)?;
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        let locals = (0..x.locals().len())
            .map(|r| {
                let x = &x.locals()[r];
                ops::Product {
                    op,
                    x,
                    cols: 0..self.in_features,
                    w: &self.weight.locals()[r],
                    bias: self
                        .bias
                        .as_ref()
                        .filter(|_| !self.config.skip_bias_add)
                        .map(|b| &b.locals()[r]),
                    layout: self.layout,
                    act: self.config.activation,
                    blocks: INVARIANT_BLOCKS,
                }
                .run()
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = self.out_features_per_rank();
        let shape = [x.shape()[0], self.out_features];
        Ok(DistTensor::from_parts(
            &self.group,
            locals,
            Placement::Shard(1),
            shape,
            outs,
        ))
    }

    /// Blocking [`ColumnParallelLinear::forward_async`].
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::forward_async`].
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}
