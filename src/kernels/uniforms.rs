//! Kernel parameters as uniform buffers kept per content: a decode step dispatches the
//! parameters of the step before, and finds their buffer instead of making one.

use std::collections::HashMap;

/// Uniform buffers by content, each written once and never changed (so no submission
/// can see another's parameters): a decode step dispatches the same parameters as the
/// step before, and finds them here instead of allocating and writing a buffer.
#[derive(Debug, Default)]
pub(super) struct Uniforms {
    by_bytes: HashMap<Vec<u8>, (wgpu::Buffer, u64)>,
    tick: u64,
    /// Buffers made so far.
    made: u64,
}

/// Uniform buffers kept per device (48 bytes of parameters each); when more are needed
/// the half used longest ago is freed.
const UNIFORMS_KEPT: usize = 4096;

impl Uniforms {
    /// Buffers made so far.
    pub(super) fn made(&self) -> u64 {
        self.made
    }

    /// Forgets every kept buffer.
    pub(super) fn clear(&mut self) {
        self.by_bytes.clear();
    }

    /// The buffer holding `params`, made and written through `queue` on first use.
    pub(super) fn get(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        params: &[u8],
    ) -> wgpu::Buffer {
        self.tick += 1;
        let tick = self.tick;
        if let Some((b, used)) = self.by_bytes.get_mut(params) {
            *used = tick;
            return b.clone();
        }
        if self.by_bytes.len() >= UNIFORMS_KEPT {
            let mut ticks: Vec<u64> = self.by_bytes.values().map(|(_, t)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            self.by_bytes.retain(|_, (_, t)| *t > cut);
        }
        // Written by the queue rather than mapped at creation: mapping panics inside wgpu
        // on a lost device, and a write is an error.
        self.made += 1;
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-tp params"),
            size: params.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, params);
        self.by_bytes.insert(params.to_vec(), (b.clone(), tick));
        b
    }
}
