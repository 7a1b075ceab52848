//! `Group`: the ranks that compute together and the collective that joins them;
//! [`GroupBuilder`] (builder.rs) makes one, collectives.rs holds its checked collectives.

mod builder;
mod collectives;

pub use builder::GroupBuilder;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::collective::{Collective, CollectiveStats};
use crate::error::{Error, Result};
use crate::rank::Rank;

/// How long a wait on a device may take by default before it is an [`Error::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_GROUP_ID: AtomicU64 = AtomicU64::new(1);

/// A set of ranks that compute together, and the collective that joins them.
///
/// Cheap to clone; `Send + Sync`, so one group may serve several threads.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    id: u64,
    ranks: Vec<Rank>,
    collective: Box<dyn Collective>,
    stats: CollectiveStats,
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

    /// The ranks, in rank order.
    pub fn ranks(&self) -> &[Rank] {
        &self.inner.ranks
    }

    /// The number of ranks (the tp size).
    pub fn world_size(&self) -> usize {
        self.inner.ranks.len()
    }

    /// The collective joining the ranks.
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

    /// Checks that `tensors` holds one tensor per rank of this group, in rank order.
    pub(crate) fn check_locals(&self, op: &'static str, tensors: &[crate::Tensor]) -> Result<()> {
        if tensors.len() != self.world_size() {
            return Err(Error::shape(
                op,
                format!("{} tensors (one per rank)", self.world_size()),
                format!("{}", tensors.len()),
            ));
        }
        for (r, t) in tensors.iter().enumerate() {
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
