//! `Group`: the ranks that compute together and the collective that joins them;
//! [`GroupBuilder`] (builder.rs) makes one from adapters (adapters.rs) or devices
//! (devices.rs). Its collectives live in comm/.

mod adapters;
mod builder;
mod devices;

pub use builder::GroupBuilder;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::comm::{Collective, CollectiveStats, Comm};
use crate::error::Result;
use crate::rank::Rank;

/// How long a wait on a device may take by default before it is an [`Error::Timeout`](crate::Error::Timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_GROUP_ID: AtomicU64 = AtomicU64::new(1);

/// A set of ranks that compute together, and the collective that joins them.
///
/// A handle on the group's `Comm` (src/comm/), which holds the ranks: everything between
/// ranks lives there, and this type is the public face of it.
///
/// Cheap to clone; `Send + Sync`, so one group may serve several threads (a group
/// spanning processes runs its collectives one thread at a time: see
/// `GroupBuilder::processes`, feature `mpi`). On wasm32 it is neither, as wgpu's WebGPU
/// objects are not (see [`MaybeSend`](crate::MaybeSend)): a page uses it on its thread.
#[derive(Clone)]
pub struct Group {
    inner: Arc<Comm>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.inner.id())
            .field("ranks", &self.inner.ranks())
            .finish()
    }
}

impl Group {
    /// A builder; see [`GroupBuilder`].
    pub fn builder() -> GroupBuilder {
        GroupBuilder::default()
    }

    /// This process's ranks, in rank order: all of them unless the group spans processes
    /// (`GroupBuilder::processes`, feature `mpi`), where they are ranks
    /// [`local_range`](Group::local_range) of the group.
    pub fn ranks(&self) -> &[Rank] {
        self.inner.ranks()
    }

    /// The number of ranks in every process together (the tp size).
    pub fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    /// The global indices of this process's ranks ([`Group::ranks`]).
    pub fn local_range(&self) -> std::ops::Range<usize> {
        self.inner.local_range()
    }

    /// The number of processes the group spans (1 unless built with
    /// `GroupBuilder::processes`, feature `mpi`).
    pub fn process_count(&self) -> usize {
        self.inner.process_count()
    }

    /// This process's number, `0..process_count()`.
    pub fn process_index(&self) -> usize {
        let processes = self.inner.spread().processes.as_ref();
        processes.map_or(0, crate::comm::Processes::index)
    }

    /// The global indices of process `p`'s ranks (empty for a process that is not one
    /// of the group's).
    pub fn ranks_of_process(&self, p: usize) -> std::ops::Range<usize> {
        self.inner.ranks_of_process(p)
    }

    /// The group's communication: its checked collectives and how its ranks lie over
    /// processes.
    pub(crate) fn comm(&self) -> &Comm {
        &self.inner
    }

    /// The largest band (a buffer made and bound whole) every rank of the group, in every
    /// process, can hold: what every process computes alike.
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    pub(crate) fn band_bytes(&self) -> u64 {
        let local = self.ranks().iter().map(|r| {
            let l = r.limits();
            l.max_buffer_size.min(l.max_storage_buffer_binding_size)
        });
        local.fold(self.inner.spread().band_bytes, u64::min)
    }

    /// The collective joining this process's ranks (between processes, the group moves
    /// host buffers over MPI itself).
    pub fn collective(&self) -> &dyn Collective {
        self.inner.collective()
    }

    /// How many collectives of each kind this group has run.
    pub fn stats(&self) -> &CollectiveStats {
        self.inner.stats()
    }

    /// Resolves when every rank's submitted work has finished
    /// ([`Rank::wait_idle_async`]); never blocks the thread that polls it.
    ///
    /// # Errors
    /// As [`Rank::wait_idle_async`].
    pub async fn wait_idle_async(&self) -> Result<()> {
        for r in self.ranks() {
            r.wait_idle_async().await?;
        }
        Ok(())
    }

    /// Blocking [`Group::wait_idle_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Rank::wait_idle_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_idle(&self) -> Result<()> {
        crate::rank::block_on(self.wait_idle_async())
    }

    /// Frees every tensor buffer the ranks' devices keep for reuse ([`Rank::trim_cache`]).
    pub fn trim_caches(&self) {
        self.ranks().iter().for_each(Rank::trim_cache);
    }

    /// True when both handles are the same group.
    pub fn same_as(&self, other: &Group) -> bool {
        self.inner.id() == other.inner.id()
    }
}
