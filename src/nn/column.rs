//! `ColumnParallelLinear`: `W = [W0 | W1 | ...]`, rank r computes `X · Wr`.

use super::layer::{self, Layer};
use super::linear::{Backward, LinearGrads, Need, ShardedLinear, Split};
use super::{check_forward_fits, check_input, HostLinear, KvCache};
use crate::dist::{DistTensor, Placement};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::tensor::Tensor;
use crate::BoxFuture;

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
    pub(super) lin: ShardedLinear,
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
        Self::new(
            op,
            ShardedLinear::from_full(op, group, full, Split::Outputs)?,
            config,
        )
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
        let lin = ShardedLinear::from_shards(op, group, weights, biases, layout, Split::Outputs)?;
        Self::new(op, lin, config)
    }

    fn new(op: &'static str, lin: ShardedLinear, config: ColumnParallelConfig) -> Result<Self> {
        let outs = lin.features_per_rank(Split::Outputs);
        if let Some(b) = &lin.bias {
            let bias_cols: Vec<[usize; 2]> = b.locals().iter().map(Tensor::shape).collect();
            let local = &outs[lin.group.local_range()];
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
        if config.skip_bias_add && lin.bias.is_some() && config.activation != Activation::Identity {
            return Err(Error::invalid(
                op,
                format!(
                    "skip_bias_add with activation {:?}: the activation would run before the \
                     bias the caller adds; use Activation::Identity and apply it after the bias",
                    config.activation
                ),
            ));
        }
        let ks = vec![lin.in_features; lin.group.world_size()];
        let widest = if config.gather_output {
            lin.out_features
        } else {
            outs.into_iter().max().unwrap_or(0)
        };
        check_forward_fits(op, &lin.group, &ks, INVARIANT_BLOCKS, widest)?;
        Ok(ColumnParallelLinear { lin, config })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.lin.in_features
    }

    /// Output features (all ranks together).
    pub fn out_features(&self) -> usize {
        self.lin.out_features
    }

    /// The output features each rank computes (every rank of every process).
    pub fn out_features_per_rank(&self) -> Vec<usize> {
        self.lin.features_per_rank(Split::Outputs)
    }

    /// The weight, `Shard` along its output-feature dimension.
    pub fn weight(&self) -> &DistTensor {
        &self.lin.weight
    }

    /// How the weight is stored.
    pub fn layout(&self) -> WeightLayout {
        self.lin.layout
    }

    /// The bias (`Shard(1) [1, out]`, split like the output); with `skip_bias_add`, the
    /// caller adds it.
    pub fn bias(&self) -> Option<&DistTensor> {
        self.lin.bias.as_ref()
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
        layer::forward_async(self, x, None).await
    }

    /// The gradients of the forward `Y = X · W + b` at input `x` given `dy`, dL/dY
    /// (placed as the forward's output: `Replicate` with `gather_output`, else
    /// `Shard(1)` split as the outputs). Megatron's `f` before the layer is the identity
    /// forward and an all-reduce backward: each rank's `dy_r · W_r^T` is a `Partial` of
    /// dL/dX, joined by one all-reduce into `Replicate`. With `gather_output` each rank
    /// reads its columns of `dy` in place (the all-gather's backward is that slice, no
    /// communication). dL/dW (`x^T · dy_r`, or `dy_r^T · x` for `[out, in]` weights) and
    /// dL/db (the column sums of `dy_r`) stay on their rank, sharded as the weight and
    /// bias, summed over the tokens in order.
    ///
    /// Under [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) dL/dX is summed as
    /// the row-parallel forward sums (each rank `8 / tp` K blocks, joined along the fixed
    /// tree): with equal output shards, the same bits at every tp; the weight and bias
    /// gradients are the same bits at every tp in either mode.
    ///
    /// # Errors
    /// [`Error::Placement`] when `x` is not `Replicate` or `dy` not placed as the output;
    /// [`Error::Shape`] when their shapes disagree with the layer or each other;
    /// [`Error::InvalidArgument`] for a layer with a fused activation (its backward needs
    /// the values before it: run the activation as its own op), and under tp-invariant
    /// numerics for unequal output shards or ones not a multiple of `8 / tp`;
    /// [`Error::GroupMismatch`]; GPU and collective errors.
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<LinearGrads> {
        let op = "column_parallel.backward";
        self.grads(op, x, dy, Need::All).await?.linear(op)
    }

    /// [`ColumnParallelLinear::backward_async`] with the weight's and bias's gradients as
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
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        lin.check_output_grad(op, dy, x.shape()[0])?;
        if self.config.activation != Activation::Identity {
            return Err(Error::invalid(
                op,
                format!(
                    "the backward of a layer with a fused activation ({:?}) needs the values \
                     before it: make the layer with Activation::Identity and run the \
                     activation as its own op (ParallelMlp's backward does)",
                    self.config.activation
                ),
            ));
        }
        self.grads_before_activation(op, x, dy, Placement::Replicate, 1, need)
            .await
    }

    /// The gradients given `dy`, dL/d(X · W + b) placed as the output: the backward
    /// without the activation (`x` and `dy`'s shape checked by the caller). The input's
    /// gradient is joined into `input` (`Replicate`: an all-reduce; `Shard(0)`, sequence
    /// parallelism: a reduce-scatter of the tokens, the same bytes).
    ///
    /// `parts` > 1: each rank's output features are that many equal consecutive pieces,
    /// each a shard of its own tensor (`GatedMlp`'s `[gate_r | up_r]`); under tp-invariant
    /// numerics each piece's share of dL/dX is then summed along its own fixed tree and
    /// joined apart (one collective each), and the pieces added in order, so that the
    /// bits are those of every tp. The weight's and bias's gradients as `need` asks.
    pub(super) async fn grads_before_activation(
        &self,
        op: &'static str,
        x: &DistTensor,
        dy: &DistTensor,
        input: Placement,
        parts: usize,
        need: Need,
    ) -> Result<Backward> {
        let lin = &self.lin;
        let outs = self.out_features_per_rank();
        let world = outs.len();
        let blocks = INVARIANT_BLOCKS / world;
        let invariant = lin.group.ranks()[0].numerics() == crate::Numerics::TpInvariant;
        let parts = if invariant { parts.max(1) } else { 1 };
        if outs.iter().any(|o| !o.is_multiple_of(parts)) {
            return Err(Error::invalid(
                op,
                format!("output shards {outs:?} are not {parts} equal parts each"),
            ));
        }
        let piece: Vec<usize> = outs.iter().map(|o| o / parts).collect();
        check_forward_fits(op, &lin.group, &piece, blocks.max(1), lin.in_features)?;
        let starts = crate::tensor::shard::offsets(&outs);
        let local = lin.group.local_range();
        if self.config.gather_output {
            dy.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        } else {
            dy.require_placement(op, |p| p == Placement::Shard(1), "Shard(1)")?;
            if dy.shard_sizes() != outs {
                return Err(Error::shape(
                    op,
                    format!("output gradient shards of {outs:?} columns"),
                    format!("{:?}", dy.shard_sizes()),
                ));
            }
        }
        let with_bias = lin.bias.is_some() && !self.config.skip_bias_add && need == Need::All;
        let (partials, weights, biases) = crate::rank::batched(op, || {
            let (mut partials, mut biases) = (Vec::new(), Vec::new());
            let mut weights = lin.weight_grads(need);
            for (i, r) in local.clone().enumerate() {
                let dy = &dy.locals()[i];
                let cols = if self.config.gather_output {
                    starts[r]..starts[r] + outs[r]
                } else {
                    0..outs[r]
                };
                let product = lin.input_grad(op, i, dy, cols.clone(), blocks);
                let n = piece[r];
                let mut each = Vec::new();
                for p in 0..parts {
                    each.push(product.run_k(p * n..(p + 1) * n)?);
                }
                partials.push(each);
                let x = &x.locals()[i];
                let inputs = 0..lin.in_features;
                weights.push(op, lin.layout, (x, inputs), (dy, cols.clone()))?;
                if with_bias {
                    biases.push(ShardedLinear::bias_grad(op, dy, cols)?);
                }
            }
            Ok((partials, weights, biases))
        })?;
        let shape = [x.shape()[0], lin.in_features];
        let mut joined: Vec<DistTensor> = Vec::new();
        for p in 0..parts {
            let locals = partials.iter().map(|each| each[p].clone()).collect();
            let partial =
                DistTensor::from_parts(&lin.group, locals, Placement::Partial, shape, Vec::new());
            joined.push(partial.redistribute_async(input).await?);
        }
        let input = match joined.len() {
            1 => joined.remove(0),
            _ => {
                let first = joined.remove(0);
                let locals = crate::rank::batched(op, || {
                    let mut sums = first.locals().to_vec();
                    for part in &joined {
                        for (s, t) in sums.iter_mut().zip(part.locals()) {
                            *s = crate::ops::add(s, t)?;
                        }
                    }
                    Ok(sums)
                })?;
                DistTensor::from_parts(
                    &lin.group,
                    locals,
                    first.placement(),
                    first.shape(),
                    first.shard_sizes().to_vec(),
                )
            }
        };
        let bias = with_bias.then(|| {
            DistTensor::from_parts(
                &lin.group,
                biases,
                Placement::Shard(1),
                [1, lin.out_features],
                outs,
            )
        });
        Ok(Backward {
            input,
            weight: lin.finish_weight(weights),
            bias,
        })
    }

    /// Every rank's `X · W_r + b_r` before the activation (`Shard(1)`): what a backward
    /// recomputes rather than keep it from the forward.
    pub(super) fn pre_activation(&self, op: &'static str, x: &DistTensor) -> Result<DistTensor> {
        self.products(op, x, Activation::Identity)
    }

    /// Every rank's `act(X · W_r + b_r)` (`Shard(1)`), `x` checked.
    fn products(&self, op: &'static str, x: &DistTensor, act: Activation) -> Result<DistTensor> {
        let lin = &self.lin;
        check_input(op, &lin.group, x, lin.in_features)?;
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        let bias = lin.bias.as_ref().filter(|_| !self.config.skip_bias_add);
        let locals = x
            .locals()
            .iter()
            .enumerate()
            .map(|(r, x)| {
                crate::ops::Product {
                    bias: bias.map(|b| &b.locals()[r]),
                    act,
                    ..lin.product(op, r, x, 0..lin.in_features)
                }
                .run()
            })
            .collect::<Result<Vec<_>>>()?;
        let shape = [x.shape()[0], lin.out_features];
        let outs = self.out_features_per_rank();
        let placement = Placement::Shard(1);
        Ok(DistTensor::from_parts(
            &lin.group, locals, placement, shape, outs,
        ))
    }

    /// Blocking [`ColumnParallelLinear::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<LinearGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }

    /// Blocking [`ColumnParallelLinear::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}

/// The local product is every rank's `act(X · W + b)` shard, `Shard(1)`; the reduction
/// the all-gather of `gather_output`, or nothing.
impl Layer for ColumnParallelLinear {
    fn op(&self) -> &'static str {
        "column_parallel.forward"
    }

    fn local_forward(&self, x: &DistTensor, _: Option<&mut KvCache>) -> Result<DistTensor> {
        self.products(self.op(), x, self.config.activation)
    }

    fn reduce_async(&self, local: DistTensor) -> BoxFuture<'_, Result<DistTensor>> {
        Box::pin(async move {
            if self.config.gather_output {
                local.redistribute_async(Placement::Replicate).await
            } else {
                Ok(local)
            }
        })
    }
}
