//! `GatedMlp`: the SwiGLU MLP of Llama, `down(silu(gate(x)) * up(x))` (or Gemma's GeGLU,
//! gelu in silu's place: [`GatedActivation`]), with gate and up merged in one
//! column-parallel weight (each rank `[gate_r | up_r]`) and down row-parallel on the same
//! split: one all-reduce.

use std::ops::Range;

use super::layer::{self, Layer};
use super::linear::{Backward, LinearGrads, Need};
use super::{
    ColumnParallelConfig, ColumnParallelLinear, HostWeights, KvCache, RowParallelConfig,
    RowParallelLinear,
};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::WeightLayout;
use crate::ops;
use crate::tensor::shard::{offsets, split_in_units};
use crate::tensor::Tensor;
use crate::BoxFuture;

/// The activation of the gate, by its Hugging Face name (`hidden_act`, Gemma's
/// `hidden_activation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GatedActivation {
    /// `silu` (also named `swish`): `g / (1 + e^-g)`, SwiGLU (Llama, Mistral, Qwen).
    #[default]
    Silu,
    /// `gelu_pytorch_tanh`: torch's `gelu(g, approximate='tanh')`, `0.5 g (1 + tanh(sqrt(2
    /// / pi) (g + 0.044715 g^3)))`, GeGLU (Gemma).
    GeluTanh,
}

impl GatedActivation {
    /// The activation Hugging Face names `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name other than `silu`, `swish` and
    /// `gelu_pytorch_tanh`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "silu" | "swish" => Ok(GatedActivation::Silu),
            "gelu_pytorch_tanh" => Ok(GatedActivation::GeluTanh),
            other => Err(Error::invalid(
                "gated_mlp.activation",
                format!(
                    "activation {other:?}: the gated MLP takes silu, swish or gelu_pytorch_tanh"
                ),
            )),
        }
    }
}

impl std::str::FromStr for GatedActivation {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::from_name(name)
    }
}

/// The gradients of [`GatedMlp::backward`], each placed as what it is the gradient of.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatedMlpGrads {
    /// The merged gate and up projections': `input` is dL/dX (`Replicate`), `weight` and
    /// `bias` sharded as [`GatedMlp::gate_up`]'s.
    pub gate_up: LinearGrads,
    /// The down projection's: `input` is dL/d(the activation's output), `Shard(1)`.
    pub down: LinearGrads,
}

/// Input and output: `Replicate [tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    activation: GatedActivation,
    gate_up: ColumnParallelLinear,
    down: RowParallelLinear,
    /// Every rank's intermediate features.
    sizes: Vec<usize>,
}

impl GatedMlp {
    /// Builds it from `[out, in]` weights: `gate(rows)` and `up(rows)` give rows `rows`
    /// of `gate_proj` and `up_proj` (`[intermediate, hidden]`), `down(cols)` the columns
    /// `cols` of `down_proj` (`[hidden, intermediate]`, row-major `[hidden, cols.len()]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the tp size exceeds `intermediate`;
    /// [`Error::Shape`] for weights of the wrong length; their own errors.
    pub fn new<W: Into<HostWeights>>(
        group: &Group,
        hidden: usize,
        intermediate: usize,
        gate: impl FnMut(Range<usize>) -> Result<W>,
        up: impl FnMut(Range<usize>) -> Result<W>,
        down: impl FnMut(Range<usize>) -> Result<W>,
    ) -> Result<Self> {
        Self::new_in_blocks(group, hidden, intermediate, 1, gate, up, down)
    }

    /// [`GatedMlp::new`] with the intermediate features split only at multiples of
    /// `block` (as even as whole blocks allow, [`split_in_units`](crate::split_in_units)):
    /// a quantized `down_proj`'s block values (32 or 256), so each rank's columns of it
    /// are whole blocks.
    ///
    /// # Errors
    /// As [`GatedMlp::new`]; [`Error::InvalidArgument`] when the tp size exceeds the whole
    /// blocks.
    pub fn new_in_blocks<W: Into<HostWeights>>(
        group: &Group,
        hidden: usize,
        intermediate: usize,
        block: usize,
        mut gate: impl FnMut(Range<usize>) -> Result<W>,
        mut up: impl FnMut(Range<usize>) -> Result<W>,
        mut down: impl FnMut(Range<usize>) -> Result<W>,
    ) -> Result<Self> {
        let op = "gated_mlp.new";
        let sizes =
            split_in_units(intermediate, group.world_size(), block).map_err(|e| e.with_op(op))?;
        let starts = offsets(&sizes);
        let mut first = Vec::new();
        let mut second = Vec::new();
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let rows = starts[r]..starts[r] + sizes[r];
            let (g, u) = (gate(rows.clone())?.into(), up(rows.clone())?.into());
            let w = HostWeights::concat(op, &[&g, &u])?;
            drop((g, u));
            let d: HostWeights = down(rows.clone())?.into();
            if w.len() != 2 * sizes[r] * hidden || d.len() != hidden * sizes[r] {
                return Err(Error::shape(
                    op,
                    format!(
                        "gate and up of {} rows x {hidden}, down of {hidden} x {}",
                        sizes[r], sizes[r]
                    ),
                    format!("{} and {} values", w.len(), d.len()),
                ));
            }
            first.push(w.upload(rank, [2 * sizes[r], hidden])?);
            second.push(d.upload(rank, [hidden, sizes[r]])?);
        }
        let gate_up = ColumnParallelLinear::from_shards(
            group,
            first,
            None,
            WeightLayout::OutIn,
            ColumnParallelConfig::default().gather_output(false),
        )
        .map_err(|e| e.with_op(op))?;
        let down = RowParallelLinear::from_shards(
            group,
            second,
            None,
            WeightLayout::OutIn,
            RowParallelConfig::default().input_is_parallel(true),
        )
        .map_err(|e| e.with_op(op))?;
        Ok(GatedMlp {
            activation: GatedActivation::Silu,
            gate_up,
            down,
            sizes,
        })
    }

    /// The same MLP with `activation` on its gate ([`GatedMlp::new`] makes it with
    /// [`GatedActivation::Silu`]).
    #[must_use]
    pub fn with_activation(mut self, activation: GatedActivation) -> Self {
        self.activation = activation;
        self
    }

    /// The activation of the gate.
    pub fn activation(&self) -> GatedActivation {
        self.activation
    }

    /// The merged gate and up projections (column-parallel, each rank's output
    /// `[gate_r | up_r]`): its `weight()` and `bias()` are parameters of the layer.
    pub fn gate_up(&self) -> &ColumnParallelLinear {
        &self.gate_up
    }

    /// The down projection (row-parallel on the same split).
    pub fn down(&self) -> &RowParallelLinear {
        &self.down
    }

    /// The gradients of the MLP at `x` given `dy` = dL/d(output), both `Replicate`
    /// `[tokens, hidden]`: the down projection's row-parallel backward (no
    /// communication), the gated activation's on each rank's `[gate_r | up_r]`
    /// (recomputed from `x`, not kept), then the merged projection's, whose dL/dX is
    /// Megatron's `f`: one all-reduce, as the forward. Under
    /// [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) the gate's and the up
    /// projection's shares of dL/dX are each summed along the fixed tree and all-reduced
    /// apart (two all-reduces), then added: every gradient is the same bits at every tp
    /// where the intermediate features split evenly.
    ///
    /// # Errors
    /// As [`ColumnParallelLinear::backward`] and [`RowParallelLinear::backward`].
    pub async fn backward_async(&self, x: &DistTensor, dy: &DistTensor) -> Result<GatedMlpGrads> {
        let op = "gated_mlp.backward";
        let [gate_up, down] = self.grads(x, dy, Placement::Replicate, Need::All).await?;
        Ok(GatedMlpGrads {
            gate_up: gate_up.linear(op)?,
            down: down.linear(op)?,
        })
    }

    /// [`GatedMlp::backward_async`] with dL/dX joined into `input`: all-reduced
    /// (`Replicate`) or reduce-scattered to each rank's tokens (`Shard(0)`, sequence
    /// parallelism), the weights' and biases' gradients as `need` asks: the merged
    /// projection's, then the down projection's.
    async fn grads(
        &self,
        x: &DistTensor,
        dy: &DistTensor,
        input: Placement,
        need: Need,
    ) -> Result<[Backward; 2]> {
        let op = "gated_mlp.backward";
        let gu = self.gate_up.pre_activation(op, x)?;
        let (act, entry): (fn(&Tensor) -> Result<Tensor>, _) = match self.activation {
            GatedActivation::Silu => (ops::silu_mul, "silu_mul_backward"),
            GatedActivation::GeluTanh => (ops::gelu_tanh_mul, "gelu_tanh_mul_backward"),
        };
        let locals = crate::rank::batched(op, || gu.locals().iter().map(act).collect())?;
        let shape = [x.shape()[0], self.sizes.iter().sum()];
        let sizes = self.sizes.clone();
        let h = DistTensor::from_parts(x.group(), locals, Placement::Shard(1), shape, sizes);
        let down = self.down.grads(op, &h, dy, need).await?;
        let d_gu = crate::rank::batched(op, || {
            gu.locals()
                .iter()
                .zip(down.input.locals())
                .map(|(gu, d)| ops::gated_backward(entry, gu, d))
                .collect::<Result<Vec<_>>>()
        })?;
        let sizes = gu.shard_sizes().to_vec();
        let d_gu = DistTensor::from_parts(x.group(), d_gu, Placement::Shard(1), gu.shape(), sizes);
        let gate_up = self
            .gate_up
            .grads_before_activation(op, x, &d_gu, input, 2, need)
            .await?;
        Ok([gate_up, down])
    }

    /// Blocking [`GatedMlp::backward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`GatedMlp::backward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn backward(&self, x: &DistTensor, dy: &DistTensor) -> Result<GatedMlpGrads> {
        crate::rank::block_on(self.backward_async(x, dy))
    }

    /// The MLP of `x`: one all-reduce.
    ///
    /// # Errors
    /// As the column- and row-parallel layers' forwards.
    pub async fn forward_async(&self, x: &DistTensor) -> Result<DistTensor> {
        layer::forward_async(self, x, None).await
    }

    /// Blocking [`GatedMlp::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`GatedMlp::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x))
    }
}

/// The local product is `down`'s partial products of `act(gate(x)) * up(x)`; the
/// reduction `down`'s.
impl Layer for GatedMlp {
    fn op(&self) -> &'static str {
        "gated_mlp.forward"
    }

    fn local_forward(&self, x: &DistTensor, _: Option<&mut KvCache>) -> Result<DistTensor> {
        let gu = self.gate_up.local_forward(x, None)?;
        let act = match self.activation {
            GatedActivation::Silu => ops::silu_mul,
            GatedActivation::GeluTanh => ops::gelu_tanh_mul,
        };
        let locals = gu.locals().iter().map(act).collect::<Result<Vec<_>>>()?;
        let shape = [x.shape()[0], self.sizes.iter().sum()];
        let h = DistTensor::from_parts(
            x.group(),
            locals,
            Placement::Shard(1),
            shape,
            self.sizes.clone(),
        );
        self.down.local_forward(&h, None)
    }

    fn reduce_async(&self, partial: DistTensor) -> BoxFuture<'_, Result<DistTensor>> {
        self.down.reduce_async(partial)
    }

    fn reduce_to_async(
        &self,
        partial: DistTensor,
        target: Placement,
    ) -> BoxFuture<'_, Result<DistTensor>> {
        self.down.reduce_to_async(partial, target)
    }

    /// The widest row any rank holds per token: its `[gate | up]` row.
    fn row_width(&self) -> usize {
        2 * self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Gate, up (each `[intermediate, hidden]`, with their biases), then down.
    #[cfg(not(target_arch = "wasm32"))]
    fn export(&self) -> Result<Vec<Vec<f32>>> {
        let merged = layer::export_linear(
            self.gate_up.layout(),
            self.gate_up.weight(),
            self.gate_up.bias(),
        )?;
        let hidden = self.gate_up.in_features();
        let mut out = layer::unmerge(&merged[0], hidden, &self.sizes, 2);
        if let Some(bias) = merged.get(1) {
            out.extend(layer::unmerge(bias, 1, &self.sizes, 2));
            // Gate, gate bias, up, up bias.
            out.swap(1, 2);
        }
        out.extend(layer::export_linear(
            self.down.layout(),
            self.down.weight(),
            self.down.bias(),
        )?);
        Ok(out)
    }

    /// The merged gate/up projection (parts gate and up), then the down projection.
    fn adaptable(&self) -> Vec<layer::Adaptable> {
        if self.gate_up.layout() != WeightLayout::OutIn {
            return Vec::new();
        }
        let rows = offsets(&self.sizes)
            .iter()
            .zip(&self.sizes)
            .map(|(&from, &len)| {
                (0..2)
                    .map(|part| layer::RowBlock {
                        part,
                        from,
                        len,
                        owned: true,
                    })
                    .collect()
            })
            .collect();
        vec![
            layer::Adaptable {
                param: 0,
                slot: self.gate_up.lin.adapter.clone(),
                transposed: false,
                by_rows: true,
                blocks: rows,
            },
            layer::Adaptable {
                param: 1 + usize::from(self.gate_up.bias().is_some()),
                slot: self.down.lin.adapter.clone(),
                transposed: false,
                by_rows: false,
                blocks: layer::in_order(&self.sizes),
            },
        ]
    }

    /// The merged gate/up projection's weight and bias, then the down projection's.
    fn parameters(&self) -> Vec<DistTensor> {
        let mut p = layer::linear_params(self.gate_up.weight(), self.gate_up.bias());
        p.extend(layer::linear_params(self.down.weight(), self.down.bias()));
        p
    }

    fn backward_async<'a>(
        &'a self,
        x: &'a DistTensor,
        dy: &'a DistTensor,
        input: Placement,
        need: Need,
    ) -> BoxFuture<'a, Result<layer::LayerGrads>> {
        Box::pin(async move {
            let grads = self.grads(x, dy, input, need).await?;
            Ok(layer::LayerGrads::of_linears(self, grads))
        })
    }
}
