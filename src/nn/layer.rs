//! [`Layer`]: what every tensor-parallel layer does, in two halves: its local product
//! (every rank's work up to the one collective that joins the ranks, encoded, nothing
//! waited on) and that collective, its reduction (an all-reduce of a `Partial`, an
//! all-gather of shards, or nothing). A layer's forward is the one, then the other; a
//! model's block is a list of layers (src/model/block.rs), which puts its residual add
//! and norm into the same submission as the next layer's local product.

use std::fmt;

use super::KvCache;
use crate::dist::DistTensor;
use crate::error::Result;
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
