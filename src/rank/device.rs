//! `DeviceCtx`: a device and everything kept per device (kernels, caches, the flags its
//! callbacks set), shared by the logical ranks on it.

use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kernels::settings::{GemmKernel, Numerics};
use crate::kernels::Kernels;
use crate::rank::pool::BufferPool;

/// A device and everything kept per device: shared by the logical ranks on it.
pub(crate) struct DeviceCtx {
    /// The wgpu objects (`device`, `queue`, `kernels`) are dropped by hand in `Drop`,
    /// under the GL lock for a GL device (src/rank/gl.rs).
    pub(super) device: ManuallyDrop<wgpu::Device>,
    pub(super) queue: ManuallyDrop<wgpu::Queue>,
    pub(super) info: wgpu::AdapterInfo,
    pub(super) limits: wgpu::Limits,
    pub(super) timeout: Duration,
    pub(super) kernels: ManuallyDrop<Kernels>,
    /// Validation errors raised outside any error scope (e.g. on another thread),
    /// kept here instead of wgpu's default handler, which panics.
    pub(super) uncaptured: Arc<Mutex<Vec<String>>>,
    /// Set by the device-lost callback.
    pub(super) lost: Arc<Mutex<Option<String>>>,
    pub(super) gemm: GemmKernel,
    pub(super) numerics: Numerics,
    /// Tensor buffers kept for reuse.
    pub(super) pool: Arc<BufferPool>,
    /// Read-back buffers (`COPY_DST | MAP_READ`) kept for reuse.
    pub(super) staging: Mutex<Vec<wgpu::Buffer>>,
    /// wgpu buffers made for tensors, staging and uploads so far.
    pub(super) buffers_made: std::sync::atomic::AtomicU64,
    /// Kernel dispatches submitted so far.
    pub(super) dispatches: std::sync::atomic::AtomicU64,
    /// Upload buffers (`MAP_WRITE | COPY_SRC`), mapped and ready, kept for reuse.
    pub(super) uploads: Arc<Mutex<Vec<wgpu::Buffer>>>,
    /// Command buffers encoded in batched sections, not yet submitted (batch.rs).
    pub(super) pending: Mutex<super::batch::Kept>,
    /// Held through each submission, so the device's stay in order (order.rs).
    pub(super) order: super::order::SubmitOrder,
}

/// Whether a rank installs its uncaptured-error handler and device-lost callback on its
/// device (wgpu keeps one of each per device, so installing replaces the owner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceCallbacks {
    /// Devices this crate made, or an app's when it asks: errors raised outside this
    /// crate's calls and the loss of the device become `Error`s on the rank's next call.
    Install,
    /// An app's devices by default: its own handlers stay; this crate still captures every
    /// error of its own calls with error scopes.
    Leave,
}

/// Read-back staging buffers kept per device; more are dropped when returned.
pub(super) const STAGING_KEPT: usize = 16;
/// Upload staging buffers kept per device (at most a host all-reduce chunk, 4 MiB, each;
/// an all-reduce has two chunks in flight).
pub(super) const UPLOADS_KEPT: usize = 4;

impl DeviceCtx {
    /// The largest buffer the device makes and binds whole: one band of a tensor.
    pub(crate) fn band_bytes(&self) -> u64 {
        self.limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size)
    }

    pub(crate) fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        timeout: Duration,
        gemm: GemmKernel,
        numerics: Numerics,
        cache_bytes: u64,
        callbacks: DeviceCallbacks,
    ) -> Arc<Self> {
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let lost = Arc::new(Mutex::new(None));
        if callbacks == DeviceCallbacks::Install {
            let sink = Arc::clone(&uncaptured);
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = sink.lock() {
                    v.push(describe(&e));
                }
            }));
            let lost_sink = Arc::clone(&lost);
            device.set_device_lost_callback(move |reason, message| {
                if let Ok(mut l) = lost_sink.lock() {
                    *l = Some(format!("{reason:?}: {message}"));
                }
            });
        }
        let kernels = Kernels::new();
        let info = device.adapter_info();
        let gl = info.backend == wgpu::Backend::Gl;
        let limits = device.limits();
        Arc::new(DeviceCtx {
            device: ManuallyDrop::new(device),
            queue: ManuallyDrop::new(queue),
            info,
            limits,
            timeout,
            kernels: ManuallyDrop::new(kernels),
            uncaptured,
            lost,
            gemm,
            numerics,
            pool: Arc::new(BufferPool::new(cache_bytes, gl)),
            staging: Mutex::new(Vec::new()),
            uploads: Arc::new(Mutex::new(Vec::new())),
            buffers_made: Default::default(),
            dispatches: Default::default(),
            pending: Mutex::new(Default::default()),
            order: Default::default(),
        })
    }
}

impl Drop for DeviceCtx {
    fn drop(&mut self) {
        let _gl = crate::rank::gl::lock(self.info.backend == wgpu::Backend::Gl);
        self.pool.trim();
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Default::default();
        }
        if let Ok(mut staging) = self.staging.lock() {
            staging.clear();
        }
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.clear();
        }
        // SAFETY: each field is taken once, here in `Drop`, and never used again.
        let (kernels, queue, device) = unsafe {
            (
                ManuallyDrop::take(&mut self.kernels),
                ManuallyDrop::take(&mut self.queue),
                ManuallyDrop::take(&mut self.device),
            )
        };
        drop((kernels, queue, device));
        // Dropping the queue runs the pending mapping callbacks of upload buffers, which
        // put them back in the list: free them here too, still under the GL lock.
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.clear();
        }
    }
}

/// wgpu's full message (its `Display` says only "Validation Error").
pub(super) fn describe(e: &wgpu::Error) -> String {
    match e {
        wgpu::Error::Validation { description, .. } | wgpu::Error::Internal { description, .. } => {
            description
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != "Validation Error" && *l != "Caused by:")
                .collect::<Vec<_>>()
                .join(": ")
        }
        other => other.to_string(),
    }
}
