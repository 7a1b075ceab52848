//! Kernel parameters as uniform buffers kept per content: a decode step dispatches the
//! parameters of the step before, and finds their buffer instead of making one.
//!
//! Each buffer holds its parameters twice, and every shader reads them as
//! `params[params[0].<first field> & 1u]` (its `load_params`): either copy is the same
//! value, but the index is not a constant the driver can see. lavapipe in Mesa 22.3 (the
//! one Debian 12 ships; later versions keep a cache of variants) "inlines" uniforms read
//! at constant offsets that decide a branch or a loop: each dispatch compiles a variant of
//! the shader for the values bound, and never frees it. A product whose variant came out less
//! than half the size (a skinny GEMM of 8 rows in its 16-row block, whose rows past M are
//! dead) recompiled on every dispatch: about 25 ms and 5 MB of process memory a call,
//! without end (tests/memory.rs). A uniform read at a dynamic index is never inlined;
//! on every other driver it costs one more uniform load per invocation.

use std::collections::HashMap;

/// Uniform buffers by content (each holding the parameters twice: see the module docs),
/// each written once and never changed (so no submission
/// can see another's parameters): a decode step dispatches the same parameters as the
/// step before, and finds them here instead of allocating and writing a buffer.
#[derive(Debug, Default)]
pub(super) struct Uniforms {
    by_bytes: HashMap<Vec<u8>, (wgpu::Buffer, u64)>,
    tick: u64,
    /// Buffers made so far.
    made: u64,
}

/// Uniform buffers kept per device (twice 32-64 bytes of parameters each); when more are needed
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
            size: 2 * params.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, &[params, params].concat());
        self.by_bytes.insert(params.to_vec(), (b.clone(), tick));
        b
    }
}
