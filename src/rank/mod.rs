//! A rank: one wgpu device and queue, its adapter's info and limits, its kernels.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod batch;
mod device;
mod dispatch;
pub(crate) mod gl;
mod order;
pub(crate) mod pool;
mod staging;
mod stats;
mod wait;

pub(crate) use batch::batched;
pub(crate) use device::{DeviceCallbacks, DeviceCtx};
pub(crate) use dispatch::Dispatch;
pub use stats::RankStats;

use device::describe;

use crate::error::{Error, Result};
use crate::kernels::settings::{GemmKernel, Numerics};
use crate::kernels::Kernels;
use crate::rank::pool::BufferPool;
use gl::GlGuard;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use wait::block_on;
#[cfg(not(target_arch = "wasm32"))]
use wait::resolve;
#[cfg(target_arch = "wasm32")]
pub(crate) use wait::resolve_or_defer;
pub(crate) use wait::{signal, Signal};

/// The threads this machine runs at once (`available_parallelism`, read once: it reads
/// cgroup files on every call). 1 on wasm32: a page runs this crate on its one thread,
/// and the host paths that split work over threads run it on the caller's thread there.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The threads this machine runs at once: 1 on wasm32 (see the native twin).
#[cfg(target_arch = "wasm32")]
pub(crate) fn cores() -> usize {
    1
}

/// One member of a [`Group`](crate::Group): a wgpu `Device` + `Queue` of its own, or a
/// logical rank sharing one device with the other ranks of its group.
///
/// Cheap to clone (a reference count). `Send + Sync`: a rank may be used from several
/// threads; wgpu serializes submissions to its queue (on wasm32 neither, as wgpu's
/// WebGPU objects are not: see [`MaybeSend`](crate::MaybeSend)).
#[derive(Clone)]
pub struct Rank {
    inner: Arc<RankInner>,
}

struct RankInner {
    index: usize,
    world: usize,
    group_id: u64,
    dev: Arc<DeviceCtx>,
}

impl fmt::Debug for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rank")
            .field("index", &self.inner.index)
            .field("world", &self.inner.world)
            .field("adapter", &self.inner.dev.info.name)
            .field("backend", &self.inner.dev.info.backend)
            .finish()
    }
}

impl Rank {
    pub(crate) fn new(dev: Arc<DeviceCtx>, index: usize, world: usize, group_id: u64) -> Self {
        Rank {
            inner: Arc::new(RankInner {
                index,
                world,
                group_id,
                dev,
            }),
        }
    }

    /// This rank's index in its group, `0..world_size()`.
    pub fn index(&self) -> usize {
        self.inner.index
    }

    /// The number of ranks in this rank's group.
    pub fn world_size(&self) -> usize {
        self.inner.world
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.dev.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.dev.queue
    }

    /// The adapter's name, backend, device type, driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.dev.info
    }

    /// The device's limits (what was requested, which is the adapter's unless the group
    /// builder lowered them).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.dev.limits
    }

    /// How long a wait on this device may take before it is an [`Error::Timeout`] (not
    /// applied on wasm32, which has no clock to time it by: the browser ends the waits).
    pub fn timeout(&self) -> Duration {
        self.inner.dev.timeout
    }

    pub(crate) fn group_id(&self) -> u64 {
        self.inner.group_id
    }

    /// True when `self` and `other` are the same device (logical ranks sharing it, or a
    /// rank and itself).
    pub fn shares_device_with(&self, other: &Rank) -> bool {
        Arc::ptr_eq(&self.inner.dev, &other.inner.dev)
    }

    /// The GEMM family this rank was asked for (see `ops::gemm_kernel_for` for what a
    /// given shape runs).
    pub fn gemm_kernel(&self) -> GemmKernel {
        self.inner.dev.gemm
    }

    /// Held around every call on this rank's device outside [`Rank::scoped`]: the
    /// process-wide GL lock for a GL device (see src/rank/gl.rs), nothing otherwise.
    pub(crate) fn gl(&self) -> GlGuard {
        gl::lock(self.inner.dev.info.backend == wgpu::Backend::Gl)
    }

    /// How this rank's group associates its sums.
    pub fn numerics(&self) -> Numerics {
        self.inner.dev.numerics
    }

    /// What this rank's device holds and has done so far, in one snapshot (shared by the
    /// logical ranks of one device).
    pub fn stats(&self) -> RankStats {
        use std::sync::atomic::Ordering;
        let dev = &self.inner.dev;
        RankStats {
            tensor_bytes: dev.pool.live_bytes(),
            peak_tensor_bytes: dev.pool.peak_bytes(),
            cached_bytes: dev.pool.bytes(),
            buffers_made: dev.buffers_made.load(Ordering::Relaxed) + self.kernels().uniforms_made(),
            dispatches: dev.dispatches.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn note_buffer_made(&self) {
        use std::sync::atomic::Ordering;
        self.inner.dev.buffers_made.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts [`RankStats::peak_tensor_bytes`] of this rank's device again from what its
    /// tensors hold now.
    pub fn reset_peak(&self) {
        self.inner.dev.pool.reset_peak();
    }

    /// The most bytes of free tensor buffers this rank's device keeps.
    pub fn buffer_cache_cap(&self) -> u64 {
        self.inner.dev.pool.cap()
    }

    /// Frees every tensor buffer this rank's device keeps for reuse (tensors still alive
    /// are untouched), and its read-back and upload staging buffers.
    pub fn trim_cache(&self) {
        self.inner.dev.pool.trim();
        let _gl = self.gl();
        if let Ok(mut staging) = self.inner.dev.staging.lock() {
            staging.clear();
        }
        if let Ok(mut uploads) = self.inner.dev.uploads.lock() {
            uploads.clear();
        }
    }

    pub(crate) fn buffer_pool(&self) -> &Arc<BufferPool> {
        &self.inner.dev.pool
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.inner.dev.kernels
    }

    /// `Err(DeviceLost)` once the device is gone, or the first uncaptured wgpu error.
    pub(crate) fn check_health(&self, op: &'static str) -> Result<()> {
        if let Some(message) = self.inner.dev.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost {
                rank: self.inner.index,
                message,
            });
        }
        let first = self
            .inner
            .dev
            .uncaptured
            .lock()
            .ok()
            .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)));
        match first {
            Some(message) => Err(Error::Validation {
                op,
                rank: self.inner.index,
                message,
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes on this device and turns
    /// anything wgpu raised into an [`Error`].
    pub(crate) fn scoped<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _gl = self.gl();
        self.check_health(op)?;
        let device = &self.inner.dev.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        #[cfg(not(target_arch = "wasm32"))]
        let (validation_err, oom_err) = (resolve(validation.pop()), resolve(oom.pop()));
        // In a browser the scopes resolve later: their errors come on a later call.
        #[cfg(target_arch = "wasm32")]
        let (validation_err, oom_err) = {
            let sink = &self.inner.dev.uncaptured;
            (
                resolve_or_defer(validation.pop(), sink),
                resolve_or_defer(oom.pop(), sink),
            )
        };
        let rank = self.inner.index;
        // A lost device explains any error it raised: report the loss first.
        if validation_err.is_some() || oom_err.is_some() {
            self.settle();
        }
        self.check_health(op)?;
        if let Some(e) = oom_err {
            return Err(Error::OutOfMemory {
                op,
                rank,
                message: describe(&e),
            });
        }
        if let Some(e) = validation_err {
            return Err(Error::Validation {
                op,
                rank,
                message: describe(&e),
            });
        }
        out
    }

    /// Waits, at most `timeout` (`None`: no limit), for `submission` (or everything
    /// submitted so far) on this rank's device, running the callbacks it completes;
    /// whatever the wait says, the futures that wait on those callbacks report timeouts
    /// and losses themselves.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait_for(
        &self,
        submission: Option<wgpu::SubmissionIndex>,
        timeout: Option<std::time::Duration>,
    ) {
        let _gl = self.gl();
        let _ = self.inner.dev.device.poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout,
        });
    }

    /// Resolves when everything submitted to this rank's device so far has finished, at
    /// most [`Rank::timeout`] later (for timing; reads and collectives wait by themselves).
    /// Never blocks the thread that polls it.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::DeviceLost`], [`Error::Validation`].
    pub async fn wait_idle_async(&self) -> Result<()> {
        let op = "wait_idle";
        self.check_health(op)?;
        self.scoped(op, || {
            self.submit([]);
            Ok(())
        })?;
        let (tx, rx) = signal();
        {
            let _gl = self.gl();
            let queue = &self.inner.dev.queue;
            queue.on_submitted_work_done(move || tx.send(()));
        }
        rx.wait(op, self, None).await?;
        self.check_health(op)
    }

    /// Blocking [`Rank::wait_idle_async`]. Not on wasm32 (nothing may block a page's
    /// thread): await [`Rank::wait_idle_async`] there.
    ///
    /// # Errors
    /// As [`Rank::wait_idle_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_idle(&self) -> Result<()> {
        block_on(self.wait_idle_async())
    }

    /// Lets wgpu run pending callbacks and free what finished work held, without waiting
    /// (an upload's staging copy is only freed then).
    pub(crate) fn poll_now(&self) {
        let _gl = self.gl();
        // Whatever the poll says, a later check reads the flags it sets.
        let _ = self.inner.dev.device.poll(wgpu::PollType::Poll);
    }

    /// Waits (at most the timeout) for the queue to drain, so that a destroyed device's
    /// loss is reported: wgpu runs the device-lost callback only once its queue is empty.
    /// Only on error paths, to tell a loss from another error.
    fn settle(&self) {
        let _gl = self.gl();
        let _ = self.inner.dev.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(self.inner.dev.timeout),
        });
    }

    /// `error`, unless the device is known lost now (polled without waiting): for an
    /// async path that must not block.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn lost_now_or(&self, op: &'static str, error: Error) -> Error {
        self.poll_now();
        match self.check_health(op) {
            Err(lost @ Error::DeviceLost { .. }) => lost,
            _ => error,
        }
    }

    /// `error`, unless the device was lost, which explains it better (waits, at most the
    /// timeout, for the queue to drain: only on error paths).
    pub(crate) fn loss_or(&self, op: &'static str, error: Error) -> Error {
        self.settle();
        match self.check_health(op) {
            Err(lost @ Error::DeviceLost { .. }) => lost,
            _ => error,
        }
    }
}

#[cfg(test)]
mod tests;
