//! `Processes`: the MPI communicator a group spans (one duplicate per group), and what it
//! takes to use it from any thread and to leave MPI cleanly; exchange.rs holds the
//! exchanges, polled against a deadline so a dead or stuck peer is an [`Error`], never a
//! hang.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::HeldByMpi;
use crate::error::{Error, Result};

/// The processes of an MPI communicator that a [`Group`](crate::Group) spans (one
/// process per MPI rank; each brings its own local ranks).
///
/// Cheap to clone. Each group built with it talks on a duplicate communicator of its own,
/// so groups may run on different threads at once. MPI stays initialized while a clone or
/// a group lives; when the last is dropped, on the thread that called
/// [`Processes::init`], MPI is finalized. After a collective between processes failed (a
/// peer died, hung past the timeout, or ran something else), MPI cannot be finalized
/// safely: the process should exit with an error, and the drop does not finalize.
#[derive(Clone)]
pub struct Processes {
    comm: Arc<Comm>,
}

/// A communicator of our own (so the group's traffic never mixes with the app's or
/// another group's) and the MPI environment it lives in.
struct Comm {
    /// Freed (`MPI_Comm_free`) on drop unless broken; the lock keeps one exchange at a
    /// time on it.
    handle: ManuallyDrop<Mutex<SimpleCommunicator>>,
    index: usize,
    count: usize,
    /// This process's index among those on its machine, and their number.
    node: (usize, usize),
    /// Set when an exchange failed: requests may have been abandoned (MPI may still touch
    /// leaked buffers), and the processes disagree on which collective comes next.
    broken: AtomicBool,
    env: Arc<Env>,
}

/// MPI itself: finalized when the last communicator is gone, if `init` initialized it.
struct Env {
    universe: ManuallyDrop<Option<Universe>>,
    init_thread: std::thread::ThreadId,
    /// Some communicator broke: finalizing could block on its abandoned requests.
    broken: AtomicBool,
}

// SAFETY: MPI handles are process-wide values, and MPI runs with `MPI_THREAD_MULTIPLE`
// (checked in `make`): any thread may call it. Each communicator is used under its lock.
unsafe impl Send for Comm {}
// SAFETY: as for `Send`.
unsafe impl Sync for Comm {}
// SAFETY: as for `Comm`; the universe is only dropped on the thread that initialized MPI.
unsafe impl Send for Env {}
// SAFETY: as for `Send`.
unsafe impl Sync for Env {}

impl Drop for Comm {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) {
            // Freeing it with abandoned requests may block: leave it to the process's exit.
            self.env.broken.store(true, Ordering::Relaxed);
            return;
        }
        // SAFETY: dropped once, here, while MPI is still initialized (`env` outlives it).
        unsafe { ManuallyDrop::drop(&mut self.handle) };
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.broken.load(Ordering::Relaxed) || std::thread::current().id() != self.init_thread {
            // MPI_Finalize must run on the thread that initialized MPI, and not over
            // abandoned requests: then the process ends without it.
            return;
        }
        // SAFETY: dropped once, here, after every communicator (each holds an `Arc<Env>`).
        unsafe { ManuallyDrop::drop(&mut self.universe) };
    }
}

impl fmt::Debug for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processes")
            .field("index", &self.comm.index)
            .field("count", &self.comm.count)
            .field("broken", &self.comm.broken.load(Ordering::Relaxed))
            .finish()
    }
}

pub(super) fn mpi_error(op: &'static str, message: impl Into<String>) -> Error {
    Error::Processes {
        op,
        message: message.into(),
    }
}

impl Processes {
    /// Initializes MPI (`MPI_Init_thread` with `MPI_THREAD_MULTIPLE`) and spans
    /// `MPI_COMM_WORLD`: every process `mpirun` started.
    ///
    /// # Errors
    /// [`Error::Processes`] when MPI was already initialized (use
    /// [`Processes::from_communicator`]) or does not offer `MPI_THREAD_MULTIPLE`.
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
    /// itself (with `MPI_THREAD_MULTIPLE`) and finalizes it after the groups are dropped.
    ///
    /// # Errors
    /// [`Error::Processes`] when MPI is not initialized with `MPI_THREAD_MULTIPLE`.
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
        if threading != Threading::Multiple {
            return Err(mpi_error(
                op,
                format!(
                    "MPI offers {threading:?} threading; groups call MPI from whichever \
                     thread runs a collective, several at once, which needs Multiple"
                ),
            ));
        }
        let dup = comm.duplicate();
        let on_node = dup.split_shared(dup.rank());
        let node = (on_node.rank() as usize, on_node.size() as usize);
        drop(on_node);
        let env = Arc::new(Env {
            universe: ManuallyDrop::new(universe),
            init_thread: std::thread::current().id(),
            broken: AtomicBool::new(false),
        });
        Ok(Processes {
            comm: Arc::new(Comm {
                index: dup.rank() as usize,
                count: dup.size() as usize,
                node,
                handle: ManuallyDrop::new(Mutex::new(dup)),
                broken: AtomicBool::new(false),
                env,
            }),
        })
    }

    /// The same processes on a fresh duplicate communicator (`MPI_Comm_idup`, polled
    /// against `timeout`): one per group, so groups never pair each other's exchanges.
    pub(crate) fn for_group(&self, timeout: Duration) -> Result<Self> {
        use mpi::raw::{AsRaw, FromRaw};
        let op = "group.build";
        let deadline = Instant::now() + timeout;
        let made = self.with_comm(op, |comm| {
            // Heap slots MPI writes into: given back only once the duplication completed,
            // leaked on every other way out (a deadline, an MPI_Test error).
            // SAFETY: reading MPI's null-communicator constant.
            let mut slot = HeldByMpi::new(Box::new(unsafe { mpi::ffi::RSMPI_COMM_NULL }));
            let mut req = HeldByMpi::new(Box::new(
                std::mem::MaybeUninit::<mpi::ffi::MPI_Request>::uninit(),
            ));
            // SAFETY: a live communicator; `slot` and `req` outlive the request.
            let rc = unsafe {
                mpi::ffi::MPI_Comm_idup(
                    comm.as_raw(),
                    &mut **slot.get_mut(),
                    req.get_mut().as_mut_ptr(),
                )
            };
            if rc != 0 {
                // Nothing started: nothing of MPI's to leak.
                drop((slot.release(), req.release()));
                return Err(mpi_error(op, format!("MPI_Comm_idup failed ({rc})")));
            }
            let req_ptr = req.get_mut().as_mut_ptr();
            loop {
                let mut flag = 0;
                // SAFETY: the request MPI_Comm_idup made (initialized by it); status
                // ignored.
                let rc = unsafe {
                    mpi::ffi::MPI_Test(req_ptr, &mut flag, mpi::ffi::RSMPI_STATUS_IGNORE)
                };
                if rc != 0 {
                    return Err(mpi_error(op, format!("MPI_Test failed ({rc})")));
                }
                if flag != 0 {
                    let slot = slot.release();
                    drop(req.release());
                    // SAFETY: a fresh intra-communicator, owned from here on.
                    return Ok(unsafe { SimpleCommunicator::from_raw(*slot) });
                }
                if Instant::now() >= deadline {
                    return Err(mpi_error(
                        op,
                        format!("a peer process did not build the group within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })?;
        let c = &self.comm;
        Ok(Processes {
            comm: Arc::new(Comm {
                handle: ManuallyDrop::new(Mutex::new(made)),
                index: c.index,
                count: c.count,
                node: c.node,
                broken: AtomicBool::new(false),
                env: c.env.clone(),
            }),
        })
    }

    /// Marks the communicator broken: a collective failed in this process (an error
    /// outside MPI too), so the processes are out of step for good.
    pub(crate) fn poison(&self) {
        self.comm.broken.store(true, Ordering::Relaxed);
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
        self.comm.index
    }

    /// The number of processes.
    pub fn count(&self) -> usize {
        self.comm.count
    }

    /// This process's index among the processes on its machine (`MPI_COMM_TYPE_SHARED`).
    pub fn node_index(&self) -> usize {
        self.comm.node.0
    }

    /// The number of processes on this process's machine.
    pub fn node_count(&self) -> usize {
        self.comm.node.1
    }

    /// Runs `f` on the communicator unless an earlier exchange broke it; a timeout inside
    /// `f` marks it broken.
    pub(super) fn with_comm<R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&SimpleCommunicator) -> Result<R>,
    ) -> Result<R> {
        let broken = || {
            mpi_error(
                op,
                "an earlier collective between processes failed, was refused or did not \
                 finish; MPI cannot recover from that: end the process",
            )
        };
        if self.comm.broken.load(Ordering::Relaxed) {
            return Err(broken());
        }
        let comm = self.comm.handle.lock().map_err(|_| broken())?;
        // Another thread's exchange may have failed while this one waited for the lock.
        if self.comm.broken.load(Ordering::Relaxed) {
            return Err(broken());
        }
        let out = f(&comm);
        if out.is_err() {
            self.poison();
        }
        out
    }
}
