//! A rank's staging buffers, kept per device for reuse: `MAP_READ` ones for read-backs,
//! `MAP_WRITE` ones for uploads.

use std::sync::Arc;

use super::device::{STAGING_KEPT, UPLOADS_KEPT};
use super::Rank;
use crate::error::{Error, Result};

impl Rank {
    /// A `COPY_DST | MAP_READ` buffer of at least `bytes` (and at most twice that), reused
    /// when one is free. Give it back with [`Rank::give_staging`] once unmapped.
    pub(crate) fn take_staging(&self, bytes: u64) -> wgpu::Buffer {
        let reused = self.inner.dev.staging.lock().ok().and_then(|mut free| {
            let i = free
                .iter()
                .position(|b| b.size() >= bytes && b.size() <= bytes.saturating_mul(2))?;
            Some(free.swap_remove(i))
        });
        reused.unwrap_or_else(|| {
            self.note_buffer_made();
            self.inner
                .dev
                .device
                .create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-tp staging"),
                    size: bytes,
                    usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                    mapped_at_creation: false,
                })
        })
    }

    /// Copies `data` into `target` at byte `offset` through a `MAP_WRITE | COPY_SRC`
    /// buffer kept for reuse, and submits the copy: unlike `Queue::write_buffer`, which
    /// stages every call in fresh memory, nothing is allocated once the device has one of
    /// the size. The buffer is mapped again after the copy and comes back for the next
    /// upload when the device is next polled. Call inside [`Rank::scoped`]; `data` and
    /// `offset` are multiples of 4 bytes.
    pub(crate) fn upload(&self, target: &wgpu::Buffer, offset: u64, data: &[u8]) -> Result<()> {
        let bytes = data.len() as u64;
        if bytes == 0 {
            return Ok(());
        }
        if cfg!(target_arch = "wasm32") {
            // In a browser a mapped upload buffer only comes back once the page's event
            // loop runs (polling does nothing there): each upload would make a fresh one,
            // a model's weights all at once. `writeBuffer` hands the bytes to the browser
            // at once instead, after the kept work (submitted first, in order).
            self.submit([]);
            self.queue().write_buffer(target, offset, data);
            return Ok(());
        }
        let dev = &self.inner.dev;
        let reused = dev.uploads.lock().ok().and_then(|mut free| {
            let i = free
                .iter()
                .position(|b| b.size() >= bytes && b.size() <= bytes.saturating_mul(2))?;
            Some(free.swap_remove(i))
        });
        let staging = reused.unwrap_or_else(|| {
            self.note_buffer_made();
            dev.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-tp upload"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            })
        });
        {
            let mut view = staging.slice(..bytes).get_mapped_range_mut().map_err(|e| {
                // Only a device's destruction destroys its staging buffers.
                self.loss_or(
                    "upload",
                    Error::Map {
                        op: "upload",
                        rank: self.index(),
                        message: e.to_string(),
                    },
                )
            })?;
            view.copy_from_slice(data);
        }
        staging.unmap();
        let mut enc = dev
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-tp upload"),
            });
        enc.copy_buffer_to_buffer(&staging, 0, target, offset, bytes);
        self.submit([enc.finish()]);
        // The callback runs when the device is next polled after the copy (or when its
        // queue is dropped, under the GL lock in `DeviceCtx::drop`).
        let free = Arc::downgrade(&dev.uploads);
        let back = staging.clone();
        staging.map_async(wgpu::MapMode::Write, .., move |mapped| {
            let Some(list) = free.upgrade().filter(|_| mapped.is_ok()) else {
                return;
            };
            if let Ok(mut kept) = list.lock() {
                if kept.len() < UPLOADS_KEPT {
                    kept.push(back);
                }
            };
        });
        Ok(())
    }

    /// Returns an unmapped staging buffer for reuse.
    pub(crate) fn give_staging(&self, buffer: wgpu::Buffer) {
        let _gl = self.gl();
        if let Ok(mut free) = self.inner.dev.staging.lock() {
            if free.len() < STAGING_KEPT {
                free.push(buffer);
            }
        }
    }
}
