//! A per-device cache of tensor buffers: a dropped tensor's buffer is kept and handed to
//! the next tensor of the same size.
//!
//! A fresh wgpu buffer costs more than its allocation: wgpu zero-fills it before its first
//! use in a shader (a full extra write), and a CPU adapter page-faults it in. Outputs of
//! GEMMs and collectives are made on every call, so reusing their buffers pays off, as
//! PyTorch's caching allocator does. Reuse is safe because a device has one queue: work
//! submitted before the tensor was dropped runs before anything written into it later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Buffers kept per device, at most this many bytes (beyond, dropped buffers are freed).
const KEPT_BYTES: u64 = 1 << 30;

/// The free buffers of one device, by size in bytes.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Mutex<(HashMap<u64, Vec<wgpu::Buffer>>, u64)>,
}

impl BufferPool {
    /// A kept buffer of exactly `bytes`, if one is free.
    pub(crate) fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let mut free = self.free.lock().ok()?;
        let b = free.0.get_mut(&bytes)?.pop()?;
        free.1 -= bytes;
        Some(b)
    }

    fn give(&self, buffer: wgpu::Buffer) {
        if let Ok(mut free) = self.free.lock() {
            let bytes = buffer.size();
            if free.1 + bytes <= KEPT_BYTES {
                free.1 += bytes;
                free.0.entry(bytes).or_default().push(buffer);
            }
        }
    }
}

/// A tensor's buffer; goes back to its pool when the last tensor holding it is dropped.
#[derive(Debug)]
pub(crate) struct Pooled {
    buffer: wgpu::Buffer,
    pool: Weak<BufferPool>,
}

impl Pooled {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: &Arc<BufferPool>) -> Arc<Self> {
        Arc::new(Pooled {
            buffer,
            pool: Arc::downgrade(pool),
        })
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            // A handle to the same buffer: it outlives this one in the pool.
            pool.give(self.buffer.clone());
        }
    }
}
