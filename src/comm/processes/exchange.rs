//! The three exchanges a group's collectives between processes are made of (all-to-all,
//! all-gather, broadcast), each a non-blocking MPI call polled against a deadline that
//! starts once the exchange holds its communicator.

use std::time::{Duration, Instant};

use mpi::datatype::{Partition, PartitionMut};
use mpi::request::{Request, Scope};
use mpi::traits::*;

use super::byte_partition;
use super::link::{mpi_error, Processes};
use crate::error::Result;

impl Processes {
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
        let out = self.with_comm(op, |comm| {
            let deadline = Instant::now() + timeout;
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
        settle(out, (send, recv), [sc, sd, rc, rd])
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
        let out = self.with_comm(op, |comm| {
            let deadline = Instant::now() + timeout;
            let mut recvp =
                PartitionMut::new(bytemuck::cast_slice_mut::<T, u8>(&mut recv), &c[..], &d[..]);
            mpi::request::scope(|scope| {
                let bytes = bytemuck::cast_slice::<T, u8>(&mine);
                let req = comm.immediate_all_gather_varcount_into(scope, bytes, &mut recvp);
                wait(op, req, deadline, timeout)
            })
        });
        settle(out, (mine, recv), [c, d, Vec::new(), Vec::new()])
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
        let out = self.with_comm(op, |comm| {
            let deadline = Instant::now() + timeout;
            let bytes = bytemuck::cast_slice_mut::<T, u8>(&mut buf);
            mpi::request::scope(|scope| {
                let req = comm
                    .process_at_rank(root as i32)
                    .immediate_broadcast_into(scope, bytes);
                wait(op, req, deadline, timeout)
            })
        });
        let none = || Vec::new();
        settle(
            out,
            (Vec::<T>::new(), buf),
            [none(), none(), none(), none()],
        )
        .map(|(_, b)| b)
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

/// Both buffers on success. On a failure MPI may still read `sent` and the count and
/// displacement arrays, and write `received`, later: all are leaked, never freed under it.
fn settle<T>(
    out: Result<()>,
    (sent, received): (Vec<T>, Vec<T>),
    counts: [Vec<i32>; 4],
) -> Result<(Vec<T>, Vec<T>)> {
    match out {
        Ok(()) => Ok((sent, received)),
        Err(e) => {
            std::mem::forget(sent);
            std::mem::forget(received);
            std::mem::forget(counts);
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
