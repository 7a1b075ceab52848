//! A per-device cache of tensor buffers: a dropped tensor's buffer is kept and handed to
//! the next tensor of the same size.
//!
//! A fresh wgpu buffer costs more than its allocation: wgpu zero-fills it before its first
//! use in a shader (a full extra write), and a CPU adapter page-faults it in. Outputs of
//! GEMMs and collectives are made on every call, so reusing their buffers pays off, as
//! PyTorch's caching allocator does. Reuse is safe because a device has one queue: work
//! submitted before the tensor was dropped runs before anything written into it later.
//!
//! The cache holds at most its cap in bytes ([`DEFAULT_BUFFER_CACHE_BYTES`] unless the
//! group builder sets another). A buffer returned when the cache is full pushes out the
//! buffers returned longest ago until it fits (least recently freed first); a buffer larger
//! than the cap is freed at once. [`BufferPool::trim`] frees everything kept.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The default cap of each device's buffer cache: 256 MiB.
pub const DEFAULT_BUFFER_CACHE_BYTES: u64 = 256 << 20;

/// The free buffers of one device, by size in bytes.
#[derive(Debug)]
pub(crate) struct BufferPool {
    cap: u64,
    /// A GL device's buffers are freed under the GL lock (src/rank/gl.rs).
    gl: bool,
    free: Mutex<Free>,
    /// Bytes of the buffers tensors hold now (in use, not in the cache).
    live: std::sync::atomic::AtomicU64,
    /// The most `live` has been since the pool was made or [`BufferPool::reset_peak`].
    peak: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Free {
    /// Buffers by size, each with the tick it was returned at (oldest first).
    by_size: HashMap<u64, Vec<(u64, wgpu::Buffer)>>,
    bytes: u64,
    tick: u64,
}

impl Free {
    /// Frees the least recently returned buffer; false when none is kept.
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .by_size
            .iter()
            .filter_map(|(&size, v)| v.first().map(|(t, _)| (*t, size)))
            .min();
        let Some((_, size)) = oldest else {
            return false;
        };
        if let Some(v) = self.by_size.get_mut(&size) {
            v.remove(0);
            self.bytes -= size;
            if v.is_empty() {
                self.by_size.remove(&size);
            }
        }
        true
    }
}

impl BufferPool {
    /// An empty cache holding at most `cap` bytes, of a GL device when `gl`.
    pub(crate) fn new(cap: u64, gl: bool) -> Self {
        BufferPool {
            cap,
            gl,
            free: Mutex::new(Free::default()),
            live: std::sync::atomic::AtomicU64::new(0),
            peak: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A kept buffer of exactly `bytes`, if one is free (the most recently returned).
    pub(crate) fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let mut free = self.free.lock().ok()?;
        let list = free.by_size.get_mut(&bytes)?;
        let (_, b) = list.pop()?;
        if list.is_empty() {
            free.by_size.remove(&bytes);
        }
        free.bytes -= bytes;
        Some(b)
    }

    fn give(&self, buffer: wgpu::Buffer) {
        let _gl = crate::rank::gl::lock(self.gl);
        let bytes = buffer.size();
        if let Ok(mut free) = self.free.lock() {
            if bytes > self.cap {
                drop(buffer); // the last handle: freed here, under the GL lock
                return;
            }
            while free.bytes + bytes > self.cap && free.evict_oldest() {}
            free.tick += 1;
            let tick = free.tick;
            free.bytes += bytes;
            free.by_size.entry(bytes).or_default().push((tick, buffer));
        }
    }

    /// Bytes of the buffers tensors hold now.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The most bytes tensors have held at once since the pool was made or the last
    /// [`BufferPool::reset_peak`].
    pub(crate) fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts the peak again from what tensors hold now.
    pub(crate) fn reset_peak(&self) {
        self.peak.store(self.live_bytes(), Ordering::Relaxed);
    }

    /// Bytes kept now.
    pub(crate) fn bytes(&self) -> u64 {
        self.free.lock().map_or(0, |f| f.bytes)
    }

    /// The most bytes kept.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// Frees every kept buffer.
    pub(crate) fn trim(&self) {
        let _gl = crate::rank::gl::lock(self.gl);
        if let Ok(mut free) = self.free.lock() {
            *free = Free::default();
        }
    }
}

/// A tensor's buffer; goes back to its pool when the last tensor holding it is dropped,
/// unless it was handed out ([`Pooled::export`]) or the pool is gone, and then is freed.
/// Either way the one handle is dropped under the GL lock for a GL device (src/rank/gl.rs).
#[derive(Debug)]
pub(crate) struct Pooled {
    /// Taken out only in `Drop`.
    buffer: ManuallyDrop<wgpu::Buffer>,
    pool: Weak<BufferPool>,
    gl: bool,
    exported: AtomicBool,
}

impl Pooled {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: &Arc<BufferPool>) -> Arc<Self> {
        let live = pool.live.fetch_add(buffer.size(), Ordering::Relaxed) + buffer.size();
        pool.peak.fetch_max(live, Ordering::Relaxed);
        Arc::new(Pooled {
            buffer: ManuallyDrop::new(buffer),
            pool: Arc::downgrade(pool),
            gl: pool.gl,
            exported: AtomicBool::new(false),
        })
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The buffer, for someone outside the crate: it will never be reused for another
    /// tensor (whatever its new holder does to it, a destroy included).
    pub(crate) fn export(&self) -> &wgpu::Buffer {
        self.exported.store(true, Ordering::Relaxed);
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let _gl = crate::rank::gl::lock(self.gl);
        // SAFETY: `buffer` is never used again: this is `Drop`, and it is taken once.
        let buffer = unsafe { ManuallyDrop::take(&mut self.buffer) };
        if let Some(pool) = self.pool.upgrade() {
            pool.live.fetch_sub(buffer.size(), Ordering::Relaxed);
        }
        match self.pool.upgrade() {
            Some(pool) if !self.exported.load(Ordering::Relaxed) => pool.give(buffer),
            _ => drop(buffer),
        }
    }
}
