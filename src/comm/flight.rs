//! `Flight`: one collective between processes under way on a group.
//!
//! The processes of a group pair their exchanges by order alone, so a group spanning
//! processes must run whole collectives, one at a time, to the end:
//! - a second collective while one is in flight (another thread) is refused: the two
//!   threads' exchanges would interleave on the communicator, and the processes pair
//!   different calls;
//! - a collective that does not finish (an error, or an async one whose future is dropped
//!   part way: a timeout wrapper, a `select!`) leaves its exchanges unmatched, and the next
//!   collective of the same shape would pair with the stale one: the group is poisoned,
//!   and every later collective refuses (`Processes::with_comm`).
//!
//! Either way the processes are out of step for good: a refused collective poisons the
//! group too, as the other processes run the collective this one skipped.

use std::sync::atomic::Ordering;

use super::Comm;
use crate::error::{Error, Result};

/// Held while a collective between processes runs; poisons the group when dropped before
/// [`Flight::land`] saw it succeed.
pub(crate) struct Flight<'a> {
    comm: &'a Comm,
    landed: bool,
}

impl Comm {
    /// Starts a collective between processes on this group.
    ///
    /// # Errors
    /// [`Error::Processes`] when another is in flight (the group is poisoned).
    pub(crate) fn take_off(&self, op: &'static str) -> Result<Flight<'_>> {
        let free =
            self.in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire);
        if free.is_err() {
            self.poison();
            return Err(Error::Processes {
                op,
                message: "another collective is in flight on this group (another thread): \
                          a group spanning processes runs one collective at a time, from \
                          one thread at a time; the processes are now out of step"
                    .into(),
            });
        }
        Ok(Flight {
            comm: self,
            landed: false,
        })
    }
}

impl Flight<'_> {
    /// The collective's result; an error poisons the group.
    pub(crate) fn land<T>(mut self, out: Result<T>) -> Result<T> {
        self.landed = out.is_ok();
        out
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if !self.landed {
            self.comm.poison();
        }
        self.comm.in_flight.store(false, Ordering::Release);
    }
}
