//! Collectives: the only way a placement changes across ranks.
//!
//! [`Collective`] is the transport between the ranks of one process (host or device);
//! between processes a group moves host buffers over MPI itself (`group/spanning.rs`). The
//! crate checks every call's inputs before handing them to it, and counts the calls in
//! [`CollectiveStats`].

mod chunked;
mod device;
mod host;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use chunked::{chunked_all_reduce, Cuts, CHUNK_BYTES};
pub use device::DeviceCollective;
pub use host::HostCollective;
pub(crate) use host::{give_host_chunk, sum_parallel, sum_parts, take_host_chunk};

use crate::error::{fmt_shape, Error, Result};
use crate::tensor::Tensor;

/// A boxed future that may move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport for the four collectives between the ranks of one process. `inputs[r]`
/// lives on rank `r`; the output has one tensor per rank, in rank order. Inputs are
/// already checked (count, ranks, shapes, f32). A group spanning processes does not use it.
///
/// Implementations must submit every rank's work before waiting on any, and reduce in a
/// fixed rank order, so the same inputs give the same bits on every run.
pub trait Collective: Send + Sync {
    /// Every rank gets the elementwise sum of all inputs (same shapes).
    fn all_reduce<'a>(&'a self, inputs: &'a [Tensor]) -> BoxFuture<'a, Result<Vec<Tensor>>>;
    /// Every rank gets the concatenation of all inputs along `dim`.
    fn all_gather<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>>;
    /// Rank `r` gets the `r`-th slice (of length `sizes[r]` along `dim`) of the sum.
    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<Tensor>>>;
    /// Every rank gets a copy of `inputs[root]` (other inputs are ignored).
    fn broadcast<'a>(
        &'a self,
        inputs: &'a [Tensor],
        root: usize,
    ) -> BoxFuture<'a, Result<Vec<Tensor>>>;
}

/// How many collectives of each kind a group has run (for tests and profiling).
#[derive(Debug, Default)]
pub struct CollectiveStats {
    pub(crate) all_reduce: AtomicU64,
    pub(crate) all_gather: AtomicU64,
    pub(crate) reduce_scatter: AtomicU64,
    pub(crate) broadcast: AtomicU64,
}

impl CollectiveStats {
    /// All-reduces so far.
    pub fn all_reduces(&self) -> u64 {
        self.all_reduce.load(Ordering::Relaxed)
    }
    /// All-gathers so far.
    pub fn all_gathers(&self) -> u64 {
        self.all_gather.load(Ordering::Relaxed)
    }
    /// Reduce-scatters so far.
    pub fn reduce_scatters(&self) -> u64 {
        self.reduce_scatter.load(Ordering::Relaxed)
    }
    /// Broadcasts so far.
    pub fn broadcasts(&self) -> u64 {
        self.broadcast.load(Ordering::Relaxed)
    }
}

/// The shape every input has (the inputs are not empty).
pub(crate) fn check_same_shapes(op: &'static str, inputs: &[Tensor]) -> Result<[usize; 2]> {
    let first = check_not_empty(op, inputs)?.shape();
    match inputs.iter().find(|t| t.shape() != first) {
        Some(t) => Err(Error::shape(op, fmt_shape(first), fmt_shape(t.shape()))),
        None => Ok(first),
    }
}

/// The first input; refuses no inputs, and half-precision ones (the collectives move and
/// sum f32 values).
fn check_not_empty<'a>(op: &'static str, inputs: &'a [Tensor]) -> Result<&'a Tensor> {
    inputs.iter().try_for_each(|t| t.require_f32(op))?;
    inputs
        .first()
        .ok_or_else(|| Error::shape(op, "at least one tensor", "none"))
}

fn check_dim(op: &'static str, dim: usize) -> Result<()> {
    if dim > 1 {
        return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
    }
    Ok(())
}

/// Checks an all-gather's inputs; returns the gathered shape.
pub(crate) fn check_all_gather(
    op: &'static str,
    inputs: &[Tensor],
    dim: usize,
) -> Result<[usize; 2]> {
    check_not_empty(op, inputs)?;
    let shapes: Vec<[usize; 2]> = inputs.iter().map(Tensor::shape).collect();
    gathered_shape(op, &shapes, dim)
}

/// The shape `shapes` (not empty) concatenate to along `dim`; an error when they differ
/// along the other dimension.
pub(crate) fn gathered_shape(
    op: &'static str,
    shapes: &[[usize; 2]],
    dim: usize,
) -> Result<[usize; 2]> {
    check_dim(op, dim)?;
    let first = *shapes
        .first()
        .ok_or_else(|| Error::shape(op, "at least one tensor", "none"))?;
    let other = 1 - dim;
    if let Some(s) = shapes.iter().find(|s| s[other] != first[other]) {
        return Err(Error::shape(
            op,
            format!("dimension {other} of {} on every rank", first[other]),
            fmt_shape(*s),
        ));
    }
    let mut shape = first;
    shape[dim] = shapes
        .iter()
        .try_fold(0usize, |a, s| a.checked_add(s[dim]))
        .ok_or_else(|| Error::shape(op, "a gathered size that fits usize", "an overflow"))?;
    Ok(shape)
}

/// Checks a reduce-scatter's inputs; returns the shape of the sum.
/// `world` is the number of ranks in every process together (`inputs.len()` in one).
pub(crate) fn check_reduce_scatter(
    op: &'static str,
    inputs: &[Tensor],
    dim: usize,
    sizes: &[usize],
    world: usize,
) -> Result<[usize; 2]> {
    check_dim(op, dim)?;
    let shape = check_same_shapes(op, inputs)?;
    let n = shape[dim];
    let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
    if sizes.len() != world || total != Some(n) || sizes.contains(&0) {
        return Err(Error::shape(
            op,
            format!("{world} non-zero shard sizes summing to {n}"),
            format!("{sizes:?}"),
        ));
    }
    Ok(shape)
}

/// Checks a broadcast's inputs; returns the root's shape.
pub(crate) fn check_broadcast(
    op: &'static str,
    inputs: &[Tensor],
    root: usize,
) -> Result<[usize; 2]> {
    check_not_empty(op, inputs)?;
    inputs.get(root).map(Tensor::shape).ok_or_else(|| {
        Error::invalid(
            op,
            format!("root {root} is not a rank of a group of {}", inputs.len()),
        )
    })
}
