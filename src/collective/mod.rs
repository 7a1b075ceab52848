//! Collectives: the only way a placement changes across ranks.
//!
//! [`Collective`] is the transport (the host one here; a multi-process one later). The
//! crate checks every call's inputs before handing them to it, and counts the calls in
//! [`CollectiveStats`].

mod device;
mod host;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use device::sum as sum_on_device;
pub use device::DeviceCollective;
pub(crate) use host::sum_parts;
pub use host::HostCollective;

use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::tensor::Tensor;

/// A boxed future that may move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport for the four collectives. `inputs[r]` lives on rank `r`; the output has
/// one tensor per rank, in rank order. Inputs are already checked (count, ranks, shapes).
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
    all_reduce: AtomicU64,
    all_gather: AtomicU64,
    reduce_scatter: AtomicU64,
    broadcast: AtomicU64,
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

fn check_same_shapes(op: &'static str, inputs: &[Tensor]) -> Result<()> {
    let first = inputs[0].shape();
    match inputs.iter().find(|t| t.shape() != first) {
        Some(t) => Err(Error::shape(op, fmt_shape(first), fmt_shape(t.shape()))),
        None => Ok(()),
    }
}

fn check_dim(op: &'static str, dim: usize) -> Result<()> {
    if dim > 1 {
        return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
    }
    Ok(())
}

pub(crate) async fn all_reduce(group: &Group, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let op = "all_reduce";
    group.check_locals(op, inputs)?;
    check_same_shapes(op, inputs)?;
    group.stats().all_reduce.fetch_add(1, Ordering::Relaxed);
    group.collective().all_reduce(inputs).await
}

pub(crate) async fn all_gather(
    group: &Group,
    inputs: &[Tensor],
    dim: usize,
) -> Result<Vec<Tensor>> {
    let op = "all_gather";
    group.check_locals(op, inputs)?;
    check_dim(op, dim)?;
    let other = 1 - dim;
    let want = inputs[0].shape()[other];
    if let Some(t) = inputs.iter().find(|t| t.shape()[other] != want) {
        return Err(Error::shape(
            op,
            format!("dimension {other} of {want} on every rank"),
            fmt_shape(t.shape()),
        ));
    }
    group.stats().all_gather.fetch_add(1, Ordering::Relaxed);
    group.collective().all_gather(inputs, dim).await
}

pub(crate) async fn reduce_scatter(
    group: &Group,
    inputs: &[Tensor],
    dim: usize,
    sizes: &[usize],
) -> Result<Vec<Tensor>> {
    let op = "reduce_scatter";
    group.check_locals(op, inputs)?;
    check_dim(op, dim)?;
    check_same_shapes(op, inputs)?;
    let n = inputs[0].shape()[dim];
    if sizes.len() != inputs.len() || sizes.iter().sum::<usize>() != n || sizes.contains(&0) {
        return Err(Error::shape(
            op,
            format!("{} non-zero shard sizes summing to {n}", inputs.len()),
            format!("{sizes:?}"),
        ));
    }
    group.stats().reduce_scatter.fetch_add(1, Ordering::Relaxed);
    group.collective().reduce_scatter(inputs, dim, sizes).await
}

pub(crate) async fn broadcast(
    group: &Group,
    inputs: &[Tensor],
    root: usize,
) -> Result<Vec<Tensor>> {
    let op = "broadcast";
    group.check_locals(op, inputs)?;
    if root >= inputs.len() {
        return Err(Error::invalid(
            op,
            format!("root {root} is not a rank of a group of {}", inputs.len()),
        ));
    }
    group.stats().broadcast.fetch_add(1, Ordering::Relaxed);
    group.collective().broadcast(inputs, root).await
}
