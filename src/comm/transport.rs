//! [`Collective`]: the transport between the ranks of one process (host or device), and
//! [`CollectiveStats`], the count of a group's collectives.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
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
