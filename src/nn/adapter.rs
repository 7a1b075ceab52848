//! [`AdapterSlot`]: where a layer's `[out, in]` weight may carry a low-rank adapter
//! (`model::Lora` attaches one), read by every product of the weight as `W + s·B·A`
//! ([`LowRank`](crate::ops::LowRank)): the forward's and the input gradient's. The weight
//! itself is never written (the base stays frozen, in whatever type it has). A layer's
//! clones share its slots.

use std::sync::{Arc, RwLock};

use crate::ops::LowRank;
use crate::tensor::Tensor;

/// One weight's adapter, per local rank: `A` and `B` as that rank's product reads them.
#[derive(Debug)]
pub(crate) struct Adapter {
    pub a: Vec<Tensor>,
    pub b: Vec<Tensor>,
    pub scale: f32,
}

/// A weight's adapter, if one is attached.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdapterSlot(Arc<RwLock<Option<Arc<Adapter>>>>);

impl AdapterSlot {
    /// Local rank `i`'s addend, if an adapter is attached.
    pub(crate) fn low_rank(&self, i: usize) -> Option<LowRank> {
        let adapter = self.get()?;
        Some(LowRank {
            a: adapter.a.get(i)?.clone(),
            b: adapter.b.get(i)?.clone(),
            scale: adapter.scale,
        })
    }

    /// The adapter attached, if any.
    pub(crate) fn get(&self) -> Option<Arc<Adapter>> {
        // A poisoned lock still holds a whole value (it is only ever replaced).
        let slot = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone()
    }

    /// Attaches `adapter` (or detaches with `None`).
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    pub(crate) fn set(&self, adapter: Option<Adapter>) {
        let mut slot = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = adapter.map(Arc::new);
    }
}
