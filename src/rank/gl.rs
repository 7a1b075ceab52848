//! One process-wide lock for the wgpu calls on GL devices.
//!
//! wgpu-hal's GL backend guards each adapter's EGL context with a mutex of that adapter,
//! but adapters enumerated from one instance share one EGL context: two threads driving
//! two GL devices (ranks on one adapter) make that context current at once, and EGL
//! fails with BadAccess, a panic inside wgpu-hal. So every call this crate makes on a GL
//! device holds this lock (reentrant: a call may nest inside another on one thread).
//! Native backends never take it.

use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};

/// The thread holding the lock and how many times it took it.
static OWNER: Mutex<(Option<ThreadId>, usize)> = Mutex::new((None, 0));
static FREED: Condvar = Condvar::new();

/// Held while a GL call runs; a no-op for other backends. Not `Send`: it is released by
/// the thread that took it (so it can never be held across an `.await` of a `Send`
/// future).
#[derive(Debug)]
pub(crate) struct GlGuard {
    held: bool,
    not_send: PhantomData<*const ()>,
}

/// Takes the lock when `gl` (waiting for another thread to finish its call).
pub(crate) fn lock(gl: bool) -> GlGuard {
    if !gl {
        return GlGuard {
            held: false,
            not_send: PhantomData,
        };
    }
    let me = thread::current().id();
    // A poisoned lock only means another thread panicked while holding it; the state
    // (owner, depth) is still consistent because it is restored in `Drop`.
    let mut owner = OWNER.lock().unwrap_or_else(PoisonError::into_inner);
    while owner.0.is_some_and(|t| t != me) {
        owner = FREED.wait(owner).unwrap_or_else(PoisonError::into_inner);
    }
    owner.0 = Some(me);
    owner.1 += 1;
    GlGuard {
        held: true,
        not_send: PhantomData,
    }
}

impl Drop for GlGuard {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut owner = OWNER.lock().unwrap_or_else(PoisonError::into_inner);
        debug_assert_eq!(owner.0, Some(thread::current().id()));
        owner.1 = owner.1.saturating_sub(1);
        if owner.1 == 0 {
            owner.0 = None;
            FREED.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_lock_is_reentrant_and_excludes_other_threads() {
        static INSIDE: AtomicUsize = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _outer = lock(true);
                        let _inner = lock(true); // nested on one thread: no deadlock
                        assert_eq!(INSIDE.fetch_add(1, Ordering::SeqCst), 0);
                        INSIDE.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
    }
}
