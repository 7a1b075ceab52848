//! `HeldByMpi`: memory a non-blocking MPI call was given, freed only once the call is known
//! to be over.

use std::mem::ManuallyDrop;

/// A value MPI may still read or write (the buffer or handle slot of a pending request).
/// Dropping it leaks it: only [`HeldByMpi::release`], called once the request completed,
/// hands it back. So every way out of a wait that is not completion (a deadline, an
/// `MPI_Test` error, an early `?`) leaves the memory to MPI instead of freeing it under
/// MPI's feet.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) struct HeldByMpi<T>(ManuallyDrop<T>);

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
impl<T> HeldByMpi<T> {
    pub(crate) fn new(value: T) -> Self {
        HeldByMpi(ManuallyDrop::new(value))
    }

    /// The value, for MPI to be given its address.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }

    /// The value back: call only when MPI is done with it (its request completed, or
    /// never started).
    pub(crate) fn release(self) -> T {
        ManuallyDrop::into_inner(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::HeldByMpi;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn memory_held_by_mpi_is_leaked_on_every_way_out_but_completion() {
        let drops = Arc::new(AtomicUsize::new(0));
        // An error path: the holder goes out of scope, the value is never freed.
        let failing = || -> Result<(), i32> {
            let mut held = HeldByMpi::new(Box::new(Counted(drops.clone())));
            let _slot: *mut Counted = &mut **held.get_mut();
            Err(1)?;
            drop(held.release());
            Ok(())
        };
        assert_eq!(failing(), Err(1));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "freed while MPI may write it"
        );
        // Completion hands it back, and it is freed as usual.
        let held = HeldByMpi::new(Counted(drops.clone()));
        drop(held.release());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
