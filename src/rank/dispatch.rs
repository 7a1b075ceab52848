//! Kernel dispatches on a rank: encoded in its error scopes, then submitted, or kept for
//! a batched section's submission (batch.rs).

use super::Rank;
use crate::error::Result;
use crate::kernels::PipelineKey;

/// One kernel dispatch for [`Rank::dispatch_all`]: `key` over `buffers` (in binding
/// order) with the uniform `params` (a `Pod` struct's bytes), on `grid` workgroups.
pub(crate) struct Dispatch<'a> {
    pub key: &'a PipelineKey,
    pub buffers: &'a [&'a wgpu::Buffer],
    pub params: &'a [u8],
    pub grid: [u32; 2],
}

impl Rank {
    /// Encodes one dispatch of `key` over `buffers` with the uniform `params` and submits
    /// it, inside this rank's error scopes; waits for nothing.
    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        op: &'static str,
        key: &PipelineKey,
        buffers: &[&wgpu::Buffer],
        params: &P,
        grid: [u32; 2],
    ) -> Result<()> {
        self.dispatch_all(
            op,
            &[Dispatch {
                key,
                buffers,
                params: bytemuck::bytes_of(params),
                grid,
            }],
        )
    }

    /// Encodes `steps` in order into one command buffer and submits it (one submission:
    /// on llvmpipe each wakes the queue's thread), or keeps it for later in a
    /// [`batched`] section, inside this rank's error scopes; waits for nothing. A step
    /// reads what the steps before it wrote.
    pub(crate) fn dispatch_all(&self, op: &'static str, steps: &[Dispatch<'_>]) -> Result<()> {
        let encoded = self.scoped(op, || {
            let (device, queue) = (self.device(), self.queue());
            let mut enc =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            for d in steps {
                self.kernels()
                    .dispatch(device, queue, &mut enc, d.key, d.buffers, d.params, d.grid)?;
            }
            Ok(enc.finish())
        });
        // Only what encoded without error is submitted or kept.
        let out = encoded.and_then(|cb| self.submit_or_keep(op, cb));
        if out.is_err() {
            let _gl = self.gl();
            self.kernels().forget_uniforms();
        } else {
            let n = steps.len() as u64;
            self.inner
                .dev
                .dispatches
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }
}
