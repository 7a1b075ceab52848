//! Ranks in several processes (SPMD over MPI, the `mpi` feature).
//!
//! A [`Group`](crate::Group) built with
//! [`GroupBuilder::processes`](crate::GroupBuilder::processes) spans every process of an
//! MPI communicator: each process brings its local ranks, global rank numbers are
//! process-major, and the collectives move host buffers between processes with
//! non-blocking MPI calls polled against the group's timeout (spanning.rs in `comm/`
//! holds the algorithms). Without the feature, `Processes` is an empty type and nothing
//! MPI is compiled.

#[cfg(feature = "mpi")]
mod exchange;
mod held;
#[cfg(feature = "mpi")]
mod link;
#[cfg(not(feature = "mpi"))]
mod stub;

#[cfg_attr(not(feature = "mpi"), allow(unused_imports))]
pub(crate) use held::HeldByMpi;
#[cfg(feature = "mpi")]
pub use link::Processes;
#[cfg(not(feature = "mpi"))]
pub(crate) use stub::Processes;

/// `(counts, displacements)` of blocks of `lens[i]` values of `T`, in bytes, as MPI
/// takes them (`i32`); `None` when a block or the whole buffer is over `i32::MAX` bytes.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn byte_partition<T>(lens: &[usize]) -> Option<(Vec<i32>, Vec<i32>)> {
    let size = std::mem::size_of::<T>();
    let mut counts = Vec::with_capacity(lens.len());
    let mut displs = Vec::with_capacity(lens.len());
    let mut at = 0usize;
    for &len in lens {
        displs.push(i32::try_from(at).ok()?);
        let bytes = len.checked_mul(size)?;
        counts.push(i32::try_from(bytes).ok()?);
        at = at.checked_add(bytes)?;
    }
    i32::try_from(at).ok()?;
    Some((counts, displs))
}

#[cfg(test)]
mod tests {
    use super::byte_partition;

    #[test]
    fn partitions_are_in_bytes_and_refuse_what_mpi_counts_cannot_hold() {
        let (c, d) = byte_partition::<f32>(&[2, 0, 3]).unwrap();
        assert_eq!((c, d), (vec![8, 0, 12], vec![0, 8, 8]));
        assert!(byte_partition::<f32>(&[1 << 29]).is_none());
        assert!(byte_partition::<f32>(&[1 << 28, 1 << 28]).is_none());
        assert!(byte_partition::<u8>(&[i32::MAX as usize]).is_some());
    }
}
