//! Communication: everything that moves data between ranks, in one place.
//!
//! A group's [`Comm`] holds this process's ranks, the transport between them, how the
//! ranks lie over processes (spread.rs) and the count of its collectives:
//! - transport.rs: the [`Collective`] trait, the transport between the ranks of one
//!   process, and its two implementations: host.rs (read back, sum on the host, upload)
//!   and device.rs (the same sums in a WGSL reduction on a shared device), with their
//!   input checks and output shapes once in builtin.rs; chunked.rs is the host
//!   transport's pipelined all-reduce, reused between processes;
//! - checked.rs: the collectives a group runs, with every input and output checked;
//! - between processes (feature `mpi`): processes/ is the MPI link, spanning.rs the
//!   collectives over it, header.rs the per-collective check that every process runs the
//!   same one, flight.rs the guard that marks processes out of step.
//!
//! `dist/` turns placements into these collectives; `group/` makes the ranks.

mod builtin;
mod checked;
mod chunked;
mod device;
mod flight;
mod header;
mod host;
pub(crate) mod processes;
mod spanning;
mod spread;
mod transport;

use std::sync::atomic::AtomicBool;

pub(crate) use checked::gathered_shape;
pub(crate) use chunked::CHUNK_BYTES;
pub use device::DeviceCollective;
pub(crate) use host::sum_parts;
pub use host::HostCollective;
pub(crate) use processes::Processes;
pub(crate) use spread::{spread_over, Spread};
pub use transport::{BoxFuture, Collective, CollectiveStats, MaybeSend, MaybeSync};

use crate::error::{Error, Result};
use crate::rank::Rank;
use crate::tensor::Tensor;

/// A group's communication: this process's ranks, the transport joining them, how the
/// ranks lie over processes, and the count of collectives run.
pub(crate) struct Comm {
    /// The group's id, which every tensor on its ranks carries.
    id: u64,
    /// This process's ranks, global indices `spread.first..spread.first + ranks.len()`.
    ranks: Vec<Rank>,
    transport: Box<dyn Collective>,
    stats: CollectiveStats,
    spread: Spread,
    /// A collective between processes is under way (flight.rs).
    in_flight: AtomicBool,
}

impl Comm {
    pub(crate) fn new(
        id: u64,
        ranks: Vec<Rank>,
        transport: Box<dyn Collective>,
        spread: Spread,
    ) -> Self {
        Comm {
            id,
            ranks,
            transport,
            stats: CollectiveStats::default(),
            spread,
            in_flight: AtomicBool::new(false),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn ranks(&self) -> &[Rank] {
        &self.ranks
    }

    pub(crate) fn spread(&self) -> &Spread {
        &self.spread
    }

    /// The transport joining this process's ranks.
    pub(crate) fn collective(&self) -> &dyn Collective {
        self.transport.as_ref()
    }

    pub(crate) fn stats(&self) -> &CollectiveStats {
        &self.stats
    }

    /// The number of ranks in every process together.
    pub(crate) fn world_size(&self) -> usize {
        self.spread.world
    }

    /// The global indices of this process's ranks.
    pub(crate) fn local_range(&self) -> std::ops::Range<usize> {
        self.spread.first..self.spread.first + self.ranks.len()
    }

    pub(crate) fn process_count(&self) -> usize {
        self.spread.per_process.len()
    }

    /// The global indices of process `p`'s ranks (empty for a process that is not one
    /// of the group's).
    pub(crate) fn ranks_of_process(&self, p: usize) -> std::ops::Range<usize> {
        let per = &self.spread.per_process;
        let first: usize = per.iter().take(p).sum();
        first..first + per.get(p).copied().unwrap_or(0)
    }

    /// Marks the group's processes out of step (flight.rs): a collective between
    /// processes that failed, was refused or was dropped part way in this process (in MPI
    /// or not) leaves the others in a different place of the sequence, so every later one
    /// must refuse.
    pub(crate) fn poison(&self) {
        if let Some(p) = &self.spread.processes {
            p.poison();
        }
    }

    /// Checks that `tensors` holds one tensor per rank of this process, in rank order.
    pub(crate) fn check_locals(&self, op: &'static str, tensors: &[Tensor]) -> Result<()> {
        let local = self.ranks.len();
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
            if t.rank().group_id() != self.id {
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
}
