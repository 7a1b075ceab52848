//! [`Layer`]: what every tensor-parallel layer does, in two halves: its local product
//! (every rank's work up to the one collective that joins the ranks, encoded, nothing
//! waited on) and that collective, its reduction (an all-reduce of a `Partial`, an
//! all-gather of shards, or nothing). A layer's forward is the one, then the other; a
//! model's block is a list of layers (src/model/block.rs), which puts its residual add
//! and norm into the same submission as the next layer's local product.

use std::fmt;

use super::linear::{Backward, Factors, Need};
use super::{KvCache, LinearGrads};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::rank::batched;
use crate::BoxFuture;

/// A tensor-parallel layer, as its forward and a model's block drive it.
pub(crate) trait Layer: fmt::Debug + crate::MaybeSend + crate::MaybeSync {
    /// The name its forward's errors carry.
    fn op(&self) -> &'static str;

    /// Every rank's work up to the reduction (encoded in the caller's batched section, if
    /// any): a `Partial` before an all-reduce, a `Shard` before an all-gather, or the
    /// output itself. `cache` is the key/value cache of a layer that keeps one
    /// ([`Layer::empty_cache`]); it then holds `x`'s positions too.
    fn local_forward(&self, x: &DistTensor, cache: Option<&mut KvCache>) -> Result<DistTensor>;

    /// The reduction of [`Layer::local_forward`]'s output, which is the forward's.
    fn reduce_async(&self, local: DistTensor) -> BoxFuture<'_, Result<DistTensor>>;

    /// The reduction into `target`: `Replicate` as [`Layer::reduce_async`], or `Shard(0)`
    /// (sequence parallelism: a reduce-scatter to each rank's tokens instead of the
    /// all-reduce) for a layer that ends in one.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn reduce_to_async(
        &self,
        local: DistTensor,
        target: Placement,
    ) -> BoxFuture<'_, Result<DistTensor>> {
        match target {
            Placement::Replicate => self.reduce_async(local),
            _ => Box::pin(async move {
                Err(Error::invalid(
                    self.op(),
                    "this layer has no sequence-parallel reduction",
                ))
            }),
        }
    }

    /// The widest row per token any rank holds in a tensor that a model kernel binds
    /// whole (0 when only the GEMMs, which band their rows, touch its tensors).
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn row_width(&self) -> usize {
        0
    }

    /// An empty key/value cache for up to `capacity` positions, for a layer that keeps one.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn empty_cache(&self, _capacity: usize) -> Result<Option<KvCache>> {
        Ok(None)
    }

    /// Its parameters, in the order [`Layer::backward_async`] gives their gradients.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn parameters(&self) -> Vec<DistTensor> {
        Vec::new()
    }

    /// Its parameters on the host, unfused (`[out, in]` weights whatever the layout,
    /// each then its bias if any): attention's q, k, v, o; a gated MLP's gate,
    /// up, down; an MLP's fc, proj. Native only (it waits on the read-back).
    #[cfg(not(target_arch = "wasm32"))]
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn export(&self) -> Result<Vec<Vec<f32>>> {
        Err(Error::invalid(
            self.op(),
            "this layer does not export its parameters",
        ))
    }

    /// Its projections a low-rank adapter can adapt, in [`Layer::parameters`]' order.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn adaptable(&self) -> Vec<Adaptable> {
        Vec::new()
    }

    /// The backward of its forward at `x` (a whole sequence from position 0, for a layer
    /// with a cache) given `dy` = dL/d(output), both `Replicate`; dL/dX joined into
    /// `input`: all-reduced (`Replicate`), or reduce-scattered to each rank's tokens
    /// (`Shard(0)`, sequence parallelism); its parameters' gradients as `need` asks.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    fn backward_async<'a>(
        &'a self,
        _x: &'a DistTensor,
        _dy: &'a DistTensor,
        _input: Placement,
        _need: Need,
    ) -> BoxFuture<'a, Result<LayerGrads>> {
        Box::pin(async move { Err(Error::invalid(self.op(), "this layer has no backward")) })
    }
}

/// A projection of a layer that a low-rank adapter can adapt, described by its weight as
/// stored (the matrix `M`: `W` `[out, in]`, or `Wᵀ` `[in, out]` for GPT-2's Conv1D), split
/// over the ranks by `M`'s rows or by its columns, each rank's share as blocks of the
/// layer's named parts (such as q, k and v of a fused projection).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) struct Adaptable {
    /// Its weight's index in [`Layer::parameters`].
    pub param: usize,
    /// Where an adapter of it is attached.
    pub slot: super::AdapterSlot,
    /// The weight is stored `[in, out]` (`M = Wᵀ`).
    pub transposed: bool,
    /// Split by `M`'s rows (`Shard(0)`), else by its columns (`Shard(1)`).
    pub by_rows: bool,
    /// Per global rank, the rows (or columns) of `M` its shard holds, in order, as blocks
    /// of the parts.
    pub blocks: Vec<Vec<RowBlock>>,
}

/// Rows (or columns) `from..from + len` of part `part`, which the rank holding them counts
/// as its own (`owned`) or not (a key/value head an earlier rank also holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) struct RowBlock {
    pub part: usize,
    pub from: usize,
    pub len: usize,
    pub owned: bool,
}

/// One block of part 0 per rank, the ranks' `sizes` one after another: a single module
/// split in order.
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) fn in_order(sizes: &[usize]) -> Vec<Vec<RowBlock>> {
    let mut from = 0;
    sizes
        .iter()
        .map(|&len| {
            let block = RowBlock {
                part: 0,
                from,
                len,
                owned: true,
            };
            from += len;
            vec![block]
        })
        .collect()
}

/// What [`Layer::backward_async`] gives.
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) struct LayerGrads {
    /// dL/d(input), placed as the input.
    pub input: DistTensor,
    /// Each parameter's gradient, in [`Layer::parameters`]' order, placed as it (none
    /// under [`Need::Frozen`]).
    pub params: Vec<DistTensor>,
    /// The same as a global norm counts them: a value two ranks hold counted once.
    pub counted: Vec<DistTensor>,
    /// Under [`Need::Frozen`], each adapted weight's gradient's factors per local rank,
    /// with the weight's index in [`Layer::parameters`].
    pub factors: Vec<(usize, Vec<Factors>)>,
}

impl LayerGrads {
    /// The gradients of a layer of two linear layers' (its [`Layer::adaptable`] those
    /// two, in order), the first's input's the layer's.
    pub(crate) fn of_linears(layer: &impl Layer, [first, second]: [Backward; 2]) -> Self {
        let sites = layer.adaptable();
        let params: Vec<DistTensor> = first.params().into_iter().chain(second.params()).collect();
        let factors = [&first, &second].into_iter().zip(&sites);
        LayerGrads {
            factors: factors.filter_map(|(g, s)| g.factors(s.param)).collect(),
            input: first.input,
            counted: params.clone(),
            params,
        }
    }
}

/// A linear layer's weight and bias (if any) on the host, whole, as [`Layer::export`]
/// lists them: the weight `[out, in]` whatever its layout.
#[cfg(not(target_arch = "wasm32"))]
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) fn export_linear(
    layout: crate::WeightLayout,
    weight: &DistTensor,
    bias: Option<&DistTensor>,
) -> Result<Vec<Vec<f32>>> {
    let mut w = weight.to_host()?;
    if layout == crate::WeightLayout::InOut {
        let [input, output] = weight.shape();
        w = transpose(&w, input, output);
    }
    let mut out = vec![w];
    if let Some(b) = bias {
        out.push(b.to_host()?);
    }
    Ok(out)
}

/// `m` (`[rows, cols]`, row-major) transposed: `[cols, rows]`.
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

/// Rank blocks of `[out, in]` rows (`host`, `width` values a row), each `parts` pieces of
/// `sizes[r]` rows one after another, put back into the `parts` whole tensors (each the
/// ranks' pieces in rank order): a merged `[gate_r | up_r]` weight's gate and up.
#[cfg(not(target_arch = "wasm32"))]
#[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
pub(crate) fn unmerge(host: &[f32], width: usize, sizes: &[usize], parts: usize) -> Vec<Vec<f32>> {
    let mut out = vec![Vec::new(); parts];
    let mut at = 0;
    for &n in sizes {
        for part in out.iter_mut() {
            part.extend_from_slice(&host[at..at + n * width]);
            at += n * width;
        }
    }
    out
}

/// A linear layer's weight and bias (if any), as parameters.
pub(crate) fn linear_params(weight: &DistTensor, bias: Option<&DistTensor>) -> Vec<DistTensor> {
    std::iter::once(weight).chain(bias).cloned().collect()
}

/// Their gradients, in [`linear_params`]' order.
pub(crate) fn linear_grads(g: &LinearGrads) -> Vec<DistTensor> {
    std::iter::once(&g.weight).chain(&g.bias).cloned().collect()
}

/// The forward of `layer`: its local product, one batched submission on every rank, then
/// its reduction.
pub(crate) async fn forward_async<L: Layer>(
    layer: &L,
    x: &DistTensor,
    cache: Option<&mut KvCache>,
) -> Result<DistTensor> {
    let local = batched(layer.op(), || layer.local_forward(x, cache))?;
    layer.reduce_async(local).await
}
