//! [`Collective`]: the transport between the ranks of one process (host or device), and
//! [`CollectiveStats`], the count of a group's collectives.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use crate::tensor::Tensor;

/// A boxed future: `Send` (it may move between threads) everywhere but on wasm32, where
/// wgpu's WebGPU objects are not `Send` and a future holding them cannot be either (see
/// [`MaybeSend`]).
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future: `Send` (it may move between threads) everywhere but on wasm32, where
/// wgpu's WebGPU objects are not `Send` and a future holding them cannot be either (see
/// [`MaybeSend`]).
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

// The bounds that depend on the target. On wasm32 wgpu's WebGPU objects hold JavaScript
// values and are neither `Send` nor `Sync` (wgpu's own `WasmNotSend`/`WasmNotSync` drop the
// bounds there the same way). wgpu's `fragile-send-sync-non-atomic-wasm` feature would
// instead declare them `Send + Sync` on wasm32: that is only sound while the module runs on
// one thread (no `atomics` target feature), and a library turning it on would turn it on for
// every crate of the app using wgpu (features unify). So this crate's traits and futures
// are `Send`/`Sync` natively, exactly as before, and drop those bounds on wasm32, where
// everything runs on the page's one thread anyway.

/// `Send` everywhere but on wasm32, where it holds for every type (wgpu's WebGPU objects
/// are not `Send` there, and a browser page runs this crate on one thread).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` everywhere but on wasm32, where it holds for every type (wgpu's WebGPU objects
/// are not `Send` there, and a browser page runs this crate on one thread).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` everywhere but on wasm32, where it holds for every type (see [`MaybeSend`]).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` everywhere but on wasm32, where it holds for every type (see [`MaybeSend`]).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A transport for the four collectives between the ranks of one process. `inputs[r]`
/// lives on rank `r`; the output has one tensor per rank, in rank order. Inputs are
/// already checked (count, ranks, shapes, f32). A group spanning processes does not use it.
///
/// Implementations must submit every rank's work before waiting on any, and reduce in a
/// fixed rank order, so the same inputs give the same bits on every run.
///
/// `Send + Sync` natively; on wasm32 neither is asked ([`MaybeSend`], [`MaybeSync`]).
pub trait Collective: MaybeSend + MaybeSync {
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
