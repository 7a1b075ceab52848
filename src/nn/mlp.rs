//! `ParallelMlp`: column-parallel -> activation -> row-parallel, one all-reduce.

use super::layer::{self, Layer};
use super::linear::{Backward, Need};
use super::{
    ColumnParallelConfig, ColumnParallelLinear, HostLinear, KvCache, LinearGrads,
    RowParallelConfig, RowParallelLinear,
};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::Activation;
use crate::ops;
use crate::BoxFuture;

/// The gradients of a [`ParallelMlp`]'s backward.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MlpGrads {
    /// `fc1`'s: its `input` is dL/dX (`Replicate`), its weight and bias gradients sharded
    /// as its weight and bias.
    pub fc1: LinearGrads,
    /// `fc2`'s: its `input` is dL/d(act(fc1(x))) (`Shard(1)`), its weight gradient
    /// sharded as its weight, its bias gradient whole on every rank.
    pub fc2: LinearGrads,
}

impl MlpGrads {
    /// The public form of a [`Need::All`] backward's `[fc1, fc2]`.
    fn of(op: &'static str, [fc1, fc2]: [Backward; 2]) -> Result<Self> {
        Ok(MlpGrads {
            fc1: fc1.linear(op)?,
            fc2: fc2.linear(op)?,
        })
    }
}

/// The Megatron-LM MLP block: `fc2(act(fc1(x)))` with `fc1` column-parallel (output kept
/// sharded, activation fused into its GEMM) and `fc2` row-parallel on those shards, so a
/// forward performs exactly one all-reduce.
///
/// Input: `Replicate [batch, hidden]`. Output: `Replicate [batch, hidden_out]`.
#[derive(Debug, Clone)]
pub struct ParallelMlp {
    fc1: ColumnParallelLinear,
    fc2: RowParallelLinear,
}

impl ParallelMlp {
    /// Shards two full layers: `fc1` by its output features, `fc2` by its input features,
    /// with the same split.
    ///
    /// # Errors
    /// [`Error::Shape`] when `fc1.out_features != fc2.in_features` or a weight or bias has
    /// the wrong length; [`Error::InvalidArgument`] when the tp size exceeds the
    /// intermediate size; allocation errors.
    pub fn from_full(
        group: &Group,
        fc1: HostLinear<'_>,
        fc2: HostLinear<'_>,
        activation: Activation,
    ) -> Result<Self> {
        if fc1.out_features != fc2.in_features {
            return Err(Error::shape(
                "parallel_mlp.from_full",
                format!(
                    "fc2 with {} input features (fc1's outputs)",
                    fc1.out_features
                ),
                format!("{}", fc2.in_features),
            ));
        }
        let fc1 = ColumnParallelLinear::from_full(
            group,
            fc1,
            ColumnParallelConfig::default()
                .gather_output(false)
                .activation(activation),
        )
        .map_err(|e| e.with_op("parallel_mlp.from_full (fc1)"))?;
        let fc2 = RowParallelLinear::from_full(
            group,
            fc2,
            RowParallelConfig::default().input_is_parallel(true),
        )
        .map_err(|e| e.with_op("parallel_mlp.from_full (fc2)"))?;
        Self::from_layers(fc1, fc2)
    }

    /// Joins two layers built elsewhere (e.g. from shards). `fc1` must not gather its
    /// output, must not skip its bias (the activation needs it) and must split its outputs
    /// as `fc2` splits its inputs; `fc2` must take parallel input. `fc2`'s other options
    /// carry over: with `skip_bias_add` the forward leaves its bias to the caller, without
    /// `reduce_results` it returns `Partial` and performs no all-reduce.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the configs do not chain; [`Error::Shape`] when
    /// the splits differ.
    pub fn from_layers(fc1: ColumnParallelLinear, fc2: RowParallelLinear) -> Result<Self> {
        let op = "parallel_mlp.from_layers";
        if fc1.config().gather_output || !fc2.config().input_is_parallel {
            return Err(Error::invalid(
                op,
                "fc1 needs gather_output = false and fc2 input_is_parallel = true",
            ));
        }
        if fc1.config().skip_bias_add && fc1.bias().is_some() {
            return Err(Error::invalid(
                op,
                "fc1 with a bias needs skip_bias_add = false (its activation follows the bias)",
            ));
        }
        let (outs, ins) = (fc1.out_features_per_rank(), fc2.in_features_per_rank());
        if outs != ins {
            return Err(Error::shape(
                op,
                format!("fc2 input split {outs:?}"),
                format!("{ins:?}"),
            ));
        }
        Ok(ParallelMlp { fc1, fc2 })
    }

    /// The column-parallel first layer (with the activation).
    pub fn fc1(&self) -> &ColumnParallelLinear {
        &self.fc1
    }

    /// The row-parallel second layer.
    pub fn fc2(&self) -> &RowParallelLinear {
        &self.fc2
    }

    /// `fc2(act(fc1(x)))`, exactly one all-reduce (none when `fc2` does not reduce its
    /// results).
    ///
    /// # Errors
    /// As the two layers' forwards.
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        layer::forward_async(self, x, None).await
    }

    /// The gradients of the forward at `x` given `dy`, dL/dY (`Replicate`), with exactly
    /// one all-reduce, as the forward: `fc2`'s backward needs none (`g` is the identity
    /// backward, its input gradient stays `Shard(1)`), the activation's backward is local
    /// (`ops::activation_grad` at `fc1`'s output before the activation, recomputed here
    /// from `x` by one GEMM per rank rather than kept from the forward, as Megatron's
    /// activation recomputation does), and `fc1`'s all-reduces dL/dX (`f`).
    ///
    /// # Errors
    /// As the two layers' backwards: [`Error::Placement`] unless `x` and `dy` are
    /// `Replicate`; [`Error::Shape`] when their shapes disagree with the layers or each
    /// other; [`Error::GroupMismatch`]; GPU and collective errors.
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<MlpGrads> {
        let op = "parallel_mlp.backward";
        let grads = self
            .grads(op, x, dy, Placement::Replicate, Need::All)
            .await?;
        MlpGrads::of(op, grads)
    }

    /// The backward at `x` and `dy` (`Replicate`), dL/dX joined into `input`.
    async fn grads(
        &self,
        op: &'static str,
        x: &DistTensor,
        dy: &DistTensor,
        input: Placement,
        need: Need,
    ) -> Result<[Backward; 2]> {
        let (fc1, fc2) = (&self.fc1, &self.fc2);
        let act = fc1.config().activation;
        let (z, h) = crate::rank::batched(op, || {
            let z = fc1.pre_activation(op, x)?;
            let h = z
                .locals()
                .iter()
                .map(|z| ops::activation(z, act))
                .collect::<Result<Vec<_>>>()?;
            let h = DistTensor::from_parts(
                x.group(),
                h,
                Placement::Shard(1),
                z.shape(),
                z.shard_sizes().to_vec(),
            );
            Ok((z, h))
        })?;
        let g2 = fc2.grads(op, &h, dy, need).await?;
        let dz = crate::rank::batched(op, || {
            z.locals()
                .iter()
                .zip(g2.input.locals())
                .map(|(z, dh)| ops::activation_grad(z, dh, act))
                .collect::<Result<Vec<_>>>()
        })?;
        let dz = DistTensor::from_parts(
            x.group(),
            dz,
            Placement::Shard(1),
            z.shape(),
            z.shard_sizes().to_vec(),
        );
        let g1 = fc1
            .grads_before_activation(op, x, &dz, input, 1, need)
            .await?;
        Ok([g1, g2])
    }

    /// The forward with sequence parallelism (Korthikanti et al. 2022): `x` is
    /// `Shard(0) [tokens, hidden]`, each rank holding its tokens (as the norms and
    /// residuals around the MLP keep them); one all-gather gives every rank all tokens for
    /// the column-parallel layer, and `fc2`'s partial products are reduce-scattered back
    /// to each rank's tokens (its bias added there): `Shard(0)`. An all-gather and a
    /// reduce-scatter move the bytes of the all-reduce they replace; what the ranks keep
    /// between forward and backward (`x`) is divided by the tp size.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` is `Shard(0)`; [`Error::InvalidArgument`] for an
    /// `fc2` that does not reduce its results; as [`ParallelMlp::forward_async`].
    pub async fn forward_sequence_parallel_async(&self, x: &DistTensor) -> Result<DistTensor> {
        let op = "parallel_mlp.forward_sequence_parallel";
        x.require_placement(op, |p| p == Placement::Shard(0), "Shard(0)")?;
        self.check_sequence_parallel(op)?;
        let full = x.redistribute_async(Placement::Replicate).await?;
        let partial = crate::rank::batched(op, || self.local_forward(&full, None))?;
        let y = partial.redistribute_async(Placement::Shard(0)).await?;
        let Some(b) = self.fc2.bias().filter(|_| !self.fc2.config().skip_bias_add) else {
            return Ok(y);
        };
        let locals = crate::rank::batched(op, || {
            y.locals()
                .iter()
                .zip(b.locals())
                .map(|(t, bias)| ops::add_row(t, bias))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(DistTensor::from_parts(
            x.group(),
            locals,
            Placement::Shard(0),
            y.shape(),
            y.shard_sizes().to_vec(),
        ))
    }

    /// The backward of [`ParallelMlp::forward_sequence_parallel_async`] at `x` given `dy`
    /// (both `Shard(0)`, each rank its tokens): `dy` all-gathered (the reduce-scatter's
    /// backward), the MLP's backward as [`ParallelMlp::backward_async`], and dL/dX
    /// reduce-scattered to each rank's tokens (the all-gather's backward) instead of
    /// all-reduced: `fc1.input` is `Shard(0)`. The weight and bias gradients are those of
    /// the backward without sequence parallelism.
    ///
    /// # Errors
    /// [`Error::Placement`] unless both are `Shard(0)`; as [`ParallelMlp::backward_async`].
    pub async fn backward_sequence_parallel_async(
        &self,
        x: &DistTensor,
        dy: &DistTensor,
    ) -> Result<MlpGrads> {
        let op = "parallel_mlp.backward_sequence_parallel";
        for t in [x, dy] {
            t.require_placement(op, |p| p == Placement::Shard(0), "Shard(0)")?;
        }
        self.check_sequence_parallel(op)?;
        let x = x.redistribute_async(Placement::Replicate).await?;
        let dy = dy.redistribute_async(Placement::Replicate).await?;
        let grads = self
            .grads(op, &x, &dy, Placement::Shard(0), Need::All)
            .await?;
        MlpGrads::of(op, grads)
    }

    /// Sequence parallelism needs `fc2` to reduce its results (into the tokens' shards).
    fn check_sequence_parallel(&self, op: &'static str) -> Result<()> {
        if !self.fc2.config().reduce_results {
            return Err(Error::invalid(
                op,
                "sequence parallelism reduce-scatters fc2's results: fc2 needs reduce_results",
            ));
        }
        Ok(())
    }

    /// Blocking [`ParallelMlp::forward_sequence_parallel_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelMlp::forward_sequence_parallel_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_sequence_parallel(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_sequence_parallel_async(x))
    }

    /// Blocking [`ParallelMlp::backward_sequence_parallel_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelMlp::backward_sequence_parallel_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward_sequence_parallel(&self, x: &DistTensor, dy: &DistTensor) -> Result<MlpGrads> {
        crate::rank::block_on(self.backward_sequence_parallel_async(x, dy))
    }

    /// Blocking [`ParallelMlp::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelMlp::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<MlpGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }

    /// Blocking [`ParallelMlp::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelMlp::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}

/// The local product is `fc2`'s partial products of `act(fc1(x))`; the reduction `fc2`'s.
impl Layer for ParallelMlp {
    fn op(&self) -> &'static str {
        "parallel_mlp.forward"
    }

    fn local_forward(&self, x: &DistTensor, _: Option<&mut KvCache>) -> Result<DistTensor> {
        self.fc2
            .local_forward(&self.fc1.local_forward(x, None)?, None)
    }

    fn reduce_async(&self, partial: DistTensor) -> BoxFuture<'_, Result<DistTensor>> {
        self.fc2.reduce_async(partial)
    }

    fn reduce_to_async(
        &self,
        partial: DistTensor,
        target: Placement,
    ) -> BoxFuture<'_, Result<DistTensor>> {
        self.fc2.reduce_to_async(partial, target)
    }

    /// fc1's weight and bias, then fc2's, whole.
    #[cfg(not(target_arch = "wasm32"))]
    fn export(&self) -> Result<Vec<Vec<f32>>> {
        let (f1, f2) = (&self.fc1, &self.fc2);
        let mut out = super::layer::export_linear(f1.layout(), f1.weight(), f1.bias())?;
        out.extend(super::layer::export_linear(
            f2.layout(),
            f2.weight(),
            f2.bias(),
        )?);
        Ok(out)
    }

    /// fc1 (split by its outputs), then fc2 (by its inputs), each one module.
    fn adaptable(&self) -> Vec<super::layer::Adaptable> {
        let transposed = |layout| layout == crate::WeightLayout::InOut;
        let (t1, t2) = (transposed(self.fc1.layout()), transposed(self.fc2.layout()));
        let blocks = super::layer::in_order(self.fc1.weight().shard_sizes());
        vec![
            super::layer::Adaptable {
                param: 0,
                slot: self.fc1.lin.adapter.clone(),
                transposed: t1,
                by_rows: !t1,
                blocks: blocks.clone(),
            },
            super::layer::Adaptable {
                param: 1 + usize::from(self.fc1.bias().is_some()),
                slot: self.fc2.lin.adapter.clone(),
                transposed: t2,
                by_rows: t2,
                blocks,
            },
        ]
    }

    /// fc1's weight and bias, then fc2's.
    fn parameters(&self) -> Vec<DistTensor> {
        let mut p = super::layer::linear_params(self.fc1.weight(), self.fc1.bias());
        p.extend(super::layer::linear_params(
            self.fc2.weight(),
            self.fc2.bias(),
        ));
        p
    }

    fn backward_async<'a>(
        &'a self,
        x: &'a DistTensor,
        dy: &'a DistTensor,
        input: Placement,
        need: Need,
    ) -> BoxFuture<'a, Result<super::layer::LayerGrads>> {
        Box::pin(async move {
            let grads = self
                .grads("parallel_mlp.backward", x, dy, input, need)
                .await?;
            Ok(super::layer::LayerGrads::of_linears(self, grads))
        })
    }
}
