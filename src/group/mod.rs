//! `Group`: the ranks that compute together and the collective that joins them;
//! [`GroupBuilder`] (builder.rs) makes one, collectives.rs holds its checked collectives.

mod builder;
mod collectives;
mod devices;
mod flight;
mod header;
mod spanning;
mod spread;

pub use builder::GroupBuilder;
pub(crate) use spread::Spread;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::collective::{Collective, CollectiveStats};
use crate::error::{Error, Result};
use crate::processes::Processes;
use crate::rank::Rank;

/// How long a wait on a device may take by default before it is an [`Error::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_GROUP_ID: AtomicU64 = AtomicU64::new(1);

/// A set of ranks that compute together, and the collective that joins them.
///
/// Cheap to clone; `Send + Sync`, so one group may serve several threads (a group
/// spanning processes runs its collectives one thread at a time: see
/// `GroupBuilder::processes`, feature `mpi`).
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    id: u64,
    /// This process's ranks, global indices `first..first + ranks.len()`.
    ranks: Vec<Rank>,
    collective: Box<dyn Collective>,
    stats: CollectiveStats,
    spread: Spread,
    /// A collective between processes is under way (flight.rs).
    in_flight: AtomicBool,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.inner.id)
            .field("ranks", &self.inner.ranks)
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
        &self.inner.ranks
    }

    /// The number of ranks in every process together (the tp size).
    pub fn world_size(&self) -> usize {
        self.inner.spread.world
    }

    /// The global indices of this process's ranks ([`Group::ranks`]).
    pub fn local_range(&self) -> std::ops::Range<usize> {
        let first = self.inner.spread.first;
        first..first + self.inner.ranks.len()
    }

    /// The number of processes the group spans (1 unless built with
    /// `GroupBuilder::processes`, feature `mpi`).
    pub fn process_count(&self) -> usize {
        self.inner.spread.per_process.len()
    }

    /// This process's number, `0..process_count()`.
    pub fn process_index(&self) -> usize {
        self.inner
            .spread
            .processes
            .as_ref()
            .map_or(0, Processes::index)
    }

    /// The global indices of process `p`'s ranks (empty for a process that is not one
    /// of the group's).
    pub fn ranks_of_process(&self, p: usize) -> std::ops::Range<usize> {
        let per = &self.inner.spread.per_process;
        let first: usize = per.iter().take(p).sum();
        first..first + per.get(p).copied().unwrap_or(0)
    }

    pub(crate) fn spread(&self) -> &Spread {
        &self.inner.spread
    }

    /// The largest band (a buffer made and bound whole) every rank of the group, in every
    /// process, can hold: what every process computes alike.
    pub(crate) fn band_bytes(&self) -> u64 {
        let local = self.ranks().iter().map(|r| {
            let l = r.limits();
            l.max_buffer_size.min(l.max_storage_buffer_binding_size)
        });
        local.fold(self.inner.spread.band_bytes, u64::min)
    }

    /// Marks the group's processes out of step (flight.rs): a collective between
    /// processes that failed, was refused or was dropped part way in this process (in MPI
    /// or not) leaves the others in a different place of the sequence, so every later one
    /// must refuse.
    pub(crate) fn poison(&self) {
        if let Some(p) = &self.inner.spread.processes {
            p.poison();
        }
    }

    /// The collective joining this process's ranks (between processes, the group moves
    /// host buffers over MPI itself).
    pub fn collective(&self) -> &dyn Collective {
        self.inner.collective.as_ref()
    }

    /// How many collectives of each kind this group has run.
    pub fn stats(&self) -> &CollectiveStats {
        &self.inner.stats
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// Checks that `tensors` holds one tensor per rank of this process, in rank order.
    pub(crate) fn check_locals(&self, op: &'static str, tensors: &[crate::Tensor]) -> Result<()> {
        let local = self.inner.ranks.len();
        if tensors.len() != local {
            let what = if local == self.world_size() {
                "one per rank"
            } else {
                "one per rank of this process"
            };
            return Err(Error::shape(
                op,
                format!("{local} tensors ({what})"),
                format!("{}", tensors.len()),
            ));
        }
        for (r, t) in self.local_range().zip(tensors) {
            if t.rank().group_id() != self.id() {
                return Err(Error::GroupMismatch { op });
            }
            if t.rank().index() != r {
                return Err(Error::invalid(
                    op,
                    format!("tensor {r} lives on rank {}", t.rank().index()),
                ));
            }
        }
        Ok(())
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
    /// # Errors
    /// As [`Rank::wait_idle_async`].
    pub fn wait_idle(&self) -> Result<()> {
        crate::rank::block_on(self.wait_idle_async())
    }

    /// Frees every tensor buffer the ranks' devices keep for reuse ([`Rank::trim_cache`]).
    pub fn trim_caches(&self) {
        self.ranks().iter().for_each(Rank::trim_cache);
    }

    /// True when both handles are the same group.
    pub fn same_as(&self, other: &Group) -> bool {
        self.inner.id == other.inner.id
    }
}
