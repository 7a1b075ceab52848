//! `SubmitOrder`: what keeps a device's submissions in order (batch.rs) without holding a
//! lock wgpu's callbacks could need.
//!
//! `Queue::submit` runs wgpu's callbacks (an app's `on_submitted_work_done`, a buffer
//! map callback) on the submitting thread, with nothing of wgpu's locked; such a callback
//! may call back into this crate on the same rank, and so submit on the same device.
//! The gate is held through a submission so another thread's cannot come between what a
//! device kept and what follows it, and it is reentrant, so the callback's submission
//! runs (after what was already submitted) instead of deadlocking.

use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};

/// A reentrant gate: one thread at a time, any number of times on that thread.
#[derive(Default)]
pub(crate) struct SubmitOrder {
    /// The thread holding the gate and how many times it took it.
    owner: Mutex<(Option<ThreadId>, usize)>,
    freed: Condvar,
}

/// Held while a submission runs. Not `Send`: released by the thread that took it.
pub(crate) struct OrderGuard<'a> {
    gate: &'a SubmitOrder,
    not_send: PhantomData<*const ()>,
}

impl SubmitOrder {
    /// Takes the gate, waiting for another thread's submission to finish.
    pub(crate) fn hold(&self) -> OrderGuard<'_> {
        let me = thread::current().id();
        // A poisoned lock only means a thread panicked while taking or releasing it; the
        // (owner, depth) pair is still consistent: it is restored in `Drop`.
        let mut owner = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        while owner.0.is_some_and(|t| t != me) {
            owner = self
                .freed
                .wait(owner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        owner.0 = Some(me);
        owner.1 += 1;
        OrderGuard {
            gate: self,
            not_send: PhantomData,
        }
    }
}

impl Drop for OrderGuard<'_> {
    fn drop(&mut self) {
        let gate = self.gate;
        let mut owner = gate.owner.lock().unwrap_or_else(PoisonError::into_inner);
        owner.1 = owner.1.saturating_sub(1);
        if owner.1 == 0 {
            owner.0 = None;
            gate.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SubmitOrder;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_gate_is_reentrant_and_excludes_other_threads() {
        let gate = SubmitOrder::default();
        let inside = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _outer = gate.hold();
                        let _inner = gate.hold();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two threads in");
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
    }
}
