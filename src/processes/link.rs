//! `Processes`: the MPI communicator a group spans, and the three exchanges its
//! collectives are made of (all-to-all, all-gather, broadcast), each a non-blocking MPI
//! call polled against a deadline so a dead or stuck peer is an [`Error`], never a hang.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::{Threading, Universe};
use mpi::request::{Request, Scope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::byte_partition;
use crate::error::{Error, Result};

/// The processes of an MPI communicator that a [`Group`](crate::Group) spans (one
/// process per MPI rank; each brings its own local ranks).
///
/// Cheap to clone. MPI stays initialized while a clone or a group using it lives; when
/// the last is dropped, MPI is finalized (if [`Processes::init`] initialized it). After
/// a collective between processes failed (a peer died or hung past the timeout), MPI
/// cannot be finalized safely: the process should exit with an error, and the drop does
/// not finalize.
#[derive(Clone)]
pub struct Processes {
    rt: Arc<Runtime>,
}

struct Runtime {
    /// Our own duplicate of the communicator, so the group's traffic never mixes with
    /// the app's; the lock keeps one exchange at a time per process.
    comm: ManuallyDrop<Mutex<SimpleCommunicator>>,
    /// Present when `init` initialized MPI: dropping it finalizes.
    universe: ManuallyDrop<Option<Universe>>,
    index: usize,
    count: usize,
    /// This process's index among those on its machine, and their number.
    node: (usize, usize),
    /// Set when an exchange timed out: requests were abandoned, MPI may still write into
    /// leaked buffers, and the processes disagree on which collective comes next.
    broken: AtomicBool,
}

// SAFETY: MPI handles are process-wide values; MPI is initialized with at least
// `MPI_THREAD_SERIALIZED` (checked in `init`/`from_communicator`) and every call made
// through a `Runtime` holds the `comm` lock, so no two threads call MPI at once through it.
unsafe impl Send for Runtime {}
// SAFETY: as for `Send`.
unsafe impl Sync for Runtime {}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) {
            // Freeing the communicator or finalizing with abandoned requests may block:
            // leave both to the process's exit.
            return;
        }
        // SAFETY: dropped once, here, communicator before the universe finalizes MPI.
        unsafe {
            ManuallyDrop::drop(&mut self.comm);
            ManuallyDrop::drop(&mut self.universe);
        }
    }
}

impl fmt::Debug for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processes")
            .field("index", &self.rt.index)
            .field("count", &self.rt.count)
            .field("broken", &self.rt.broken.load(Ordering::Relaxed))
            .finish()
    }
}

fn mpi_error(op: &'static str, message: impl Into<String>) -> Error {
    Error::Processes {
        op,
        message: message.into(),
    }
}

impl Processes {
    /// Initializes MPI (`MPI_Init_thread`, asking for `MPI_THREAD_MULTIPLE`) and spans
    /// `MPI_COMM_WORLD`: every process `mpirun` started.
    ///
    /// # Errors
    /// [`Error::Processes`] when MPI was already initialized (use
    /// [`Processes::from_communicator`]) or offers less than `MPI_THREAD_SERIALIZED`.
    pub fn init() -> Result<Self> {
        let op = "processes.init";
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| {
                mpi_error(
                    op,
                    "MPI is already initialized: pass its communicator to \
                     Processes::from_communicator",
                )
            })?;
        let world = universe.world();
        Self::make(op, &world, Some(universe), threading)
    }

    /// Spans the processes of `comm`, a communicator of an app that initialized MPI
    /// itself (with at least `MPI_THREAD_SERIALIZED`) and finalizes it after the groups
    /// are dropped. The group talks on its own duplicate of `comm`.
    ///
    /// # Errors
    /// [`Error::Processes`] when MPI is not initialized with `MPI_THREAD_SERIALIZED` or more.
    pub fn from_communicator(comm: &SimpleCommunicator) -> Result<Self> {
        let op = "processes.from_communicator";
        if !mpi::environment::is_initialized() {
            return Err(mpi_error(op, "MPI is not initialized"));
        }
        Self::make(op, comm, None, mpi::environment::threading_support())
    }

    fn make(
        op: &'static str,
        comm: &SimpleCommunicator,
        universe: Option<Universe>,
        threading: Threading,
    ) -> Result<Self> {
        if matches!(threading, Threading::Single | Threading::Funneled) {
            return Err(mpi_error(
                op,
                format!(
                    "MPI offers {threading:?} threading; the group calls MPI from whichever \
                     thread runs a collective, which needs at least Serialized"
                ),
            ));
        }
        let dup = comm.duplicate();
        let on_node = dup.split_shared(dup.rank());
        let node = (on_node.rank() as usize, on_node.size() as usize);
        drop(on_node);
        Ok(Processes {
            rt: Arc::new(Runtime {
                index: dup.rank() as usize,
                count: dup.size() as usize,
                node,
                comm: ManuallyDrop::new(Mutex::new(dup)),
                universe: ManuallyDrop::new(universe),
                broken: AtomicBool::new(false),
            }),
        })
    }

    /// True when this process was started by `mpirun`/`mpiexec` (Open MPI, MPICH or a
    /// PMI launcher such as Slurm's): what an SPMD program checks before [`Processes::init`].
    pub fn launched_by_mpirun() -> bool {
        [
            "OMPI_COMM_WORLD_SIZE",
            "PMI_SIZE",
            "PMIX_RANK",
            "MPI_LOCALNRANKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }

    /// This process's number, `0..count()`.
    pub fn index(&self) -> usize {
        self.rt.index
    }

    /// The number of processes.
    pub fn count(&self) -> usize {
        self.rt.count
    }

    /// This process's index among the processes on its machine (`MPI_COMM_TYPE_SHARED`).
    pub fn node_index(&self) -> usize {
        self.rt.node.0
    }

    /// The number of processes on this process's machine.
    pub fn node_count(&self) -> usize {
        self.rt.node.1
    }

    /// Runs `f` on the communicator unless an earlier exchange broke it; a timeout inside
    /// `f` marks it broken.
    fn with_comm<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&SimpleCommunicator) -> Result<R>,
    ) -> Result<R> {
        let broken = || {
            mpi_error(
                op,
                "an earlier collective between processes failed; MPI cannot recover from \
                 that: end the process",
            )
        };
        if self.rt.broken.load(Ordering::Relaxed) {
            return Err(broken());
        }
        let comm = self.rt.comm.lock().map_err(|_| broken())?;
        let out = f(&comm);
        if out.is_err() {
            self.rt.broken.store(true, Ordering::Relaxed);
        }
        out
    }

    /// Sends `send` (blocks of `send_lens[q]` values, to process `q` in order) and receives
    /// into `recv`, resized to hold what every process sent here (blocks of
    /// `recv_lens[p]`, in process order); hands both buffers back for reuse.
    pub(crate) fn all_to_all<T: bytemuck::Pod>(
        &self,
        op: &'static str,
        (send, send_lens): (Vec<T>, &[usize]),
        (mut recv, recv_lens): (Vec<T>, &[usize]),
        timeout: Duration,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let (sc, sd) = partition::<T>(op, send_lens)?;
        let (rc, rd) = partition::<T>(op, recv_lens)?;
        recv.resize(recv_lens.iter().sum(), T::zeroed());
        let deadline = Instant::now() + timeout;
        let out = self.with_comm(op, |comm| {
            let sendp = Partition::new(bytemuck::cast_slice::<T, u8>(&send), &sc[..], &sd[..]);
            let mut recvp = PartitionMut::new(
                bytemuck::cast_slice_mut::<T, u8>(&mut recv),
                &rc[..],
                &rd[..],
            );
            mpi::request::scope(|scope| {
                let req = comm.immediate_all_to_all_varcount_into(scope, &sendp, &mut recvp);
                wait(op, req, deadline, timeout)
            })
        });
        settle(out, send, recv)
    }

    /// Every process's `mine` (of `lens[p]` values for process `p`), concatenated in
    /// process order into `recv` (resized); hands both buffers back for reuse.
    pub(crate) fn all_gather<T: bytemuck::Pod>(
        &self,
        op: &'static str,
        mine: Vec<T>,
        (mut recv, lens): (Vec<T>, &[usize]),
        timeout: Duration,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let (c, d) = partition::<T>(op, lens)?;
        recv.resize(lens.iter().sum(), T::zeroed());
        let deadline = Instant::now() + timeout;
        let out = self.with_comm(op, |comm| {
            let mut recvp =
                PartitionMut::new(bytemuck::cast_slice_mut::<T, u8>(&mut recv), &c[..], &d[..]);
            mpi::request::scope(|scope| {
                let bytes = bytemuck::cast_slice::<T, u8>(&mine);
                let req = comm.immediate_all_gather_varcount_into(scope, bytes, &mut recvp);
                wait(op, req, deadline, timeout)
            })
        });
        settle(out, mine, recv)
    }

    /// Process `root`'s `buf` on every process (every process passes a buffer of the
    /// same length).
    pub(crate) fn broadcast<T: bytemuck::Pod>(
        &self,
        op: &'static str,
        mut buf: Vec<T>,
        root: usize,
        timeout: Duration,
    ) -> Result<Vec<T>> {
        partition::<T>(op, &[buf.len()])?;
        let deadline = Instant::now() + timeout;
        let out = self.with_comm(op, |comm| {
            let bytes = bytemuck::cast_slice_mut::<T, u8>(&mut buf);
            mpi::request::scope(|scope| {
                let req = comm
                    .process_at_rank(root as i32)
                    .immediate_broadcast_into(scope, bytes);
                wait(op, req, deadline, timeout)
            })
        });
        settle(out, Vec::<T>::new(), buf).map(|(_, buf)| buf)
    }
}

fn partition<T>(op: &'static str, lens: &[usize]) -> Result<(Vec<i32>, Vec<i32>)> {
    byte_partition::<T>(lens).ok_or_else(|| {
        mpi_error(
            op,
            format!(
                "blocks of {lens:?} values of {} bytes: MPI counts bytes in i32, at most {} \
                 bytes per exchange",
                std::mem::size_of::<T>(),
                i32::MAX
            ),
        )
    })
}

/// Both buffers on success. On a timeout MPI may still read `sent` and write `received`
/// later: both are leaked, never freed under it.
fn settle<T>(out: Result<()>, sent: Vec<T>, received: Vec<T>) -> Result<(Vec<T>, Vec<T>)> {
    match out {
        Ok(()) => Ok((sent, received)),
        Err(e) => {
            std::mem::forget(sent);
            std::mem::forget(received);
            Err(e)
        }
    }
}

/// Polls `req` (`MPI_Test`) until it completes or `deadline` passes. A request still
/// active at the deadline is abandoned (released from its scope without `MPI_Wait`, which
/// could block forever): its buffers must then be leaked, which `settle` does.
fn wait<'a, D: ?Sized, S: Scope<'a>>(
    op: &'static str,
    mut req: Request<'a, D, S>,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        match req.test() {
            Ok(_) => return Ok(()),
            Err(r) => req = r,
        }
        let now = Instant::now();
        if now >= deadline {
            // SAFETY: the request is forgotten, not freed; the caller leaks its buffers.
            let _ = unsafe { req.into_raw() };
            return Err(mpi_error(
                op,
                format!(
                    "a peer process did not take part within {timeout:?} (dead, stuck, or \
                     running another collective)"
                ),
            ));
        }
        // Spin briefly (a shared-memory exchange completes in microseconds), then yield the
        // core to the devices and the peers (processes may outnumber cores) while polling,
        // and after 20 ms (a peer busy elsewhere) poll every 50 µs.
        tries += 1;
        if tries < 64 {
            std::hint::spin_loop();
        } else if now - start < Duration::from_millis(20) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
