//! How a skinny product (src/kernels/gemm_skinny/mod.rs) is dispatched: which variant runs,
//! how many K chunks it takes, its workgroups, and the split path through a scratch
//! tensor and `finish`.

use crate::error::Result;
use crate::kernels::gemm_skinny::{self, Lanes, Skinny};
use crate::kernels::params::GemmParams;
use crate::kernels::settings::{Numerics, WeightLayout};
use crate::kernels::{PipelineKey, Shader};
use crate::rank::{Dispatch, Rank};
use crate::tensor::Tensor;

/// The most K chunks of a skinny product.
const SKINNY_MAX_CHUNKS: usize = 64;
/// Workgroups a skinny product aims for per core of a CPU adapter (llvmpipe runs one
/// thread per core). Measured on lavapipe (2 cores, [1, 4096] x [4096, 4096]): 16
/// workgroups of 4096 rows 10.6 ms, 64 of 1024 rows 9.2 ms.
const SKINNY_CPU_WORKGROUPS_PER_CORE: usize = 32;
/// The smallest weights (bytes) a skinny product splits K for on a CPU adapter when its
/// output alone gives every core a workgroup: a split adds the `finish` dispatch, and
/// llvmpipe's every dispatch wakes and joins its threads (tens of microseconds), while
/// the split only evens out the cores' shares. Measured on lavapipe (2 cores, the decode
/// step of a 1024-wide Llama, products of 1-12 MiB): unsplit below 8 MiB, 42 -> 42 ms at
/// tp 1 and 53-57 -> 48-49 ms at tp 4 (4 devices); below 30 MiB, tp 1 lost 7-14 ms
/// (its 23 MiB product on 11 workgroups, unevenly shared).
const SKINNY_CPU_SPLIT_MIN_BYTES: u64 = 8 << 20;
/// Workgroups a sweep aims for per core of a CPU adapter. Measured on lavapipe (2 cores,
/// the batch-1 MLP 1024 -> 4096 -> 1024 at tp 4, its shards [1024, 1024]): 4 or 8 a
/// core 3.3 ms, 32 a core (more, shorter sweeps) 4.1 ms; [1, 4096] x [4096, 4096] the
/// same (its K blocks alone give 32 workgroups).
const SWEEP_WORKGROUPS_PER_CORE: usize = 4;
/// Workgroups (of 64 invocations) a skinny product aims for on a GPU.
const SKINNY_GPU_WORKGROUPS: usize = 1024;

/// Whether the skinny family takes its GPU shapes on `rank` (any adapter but a CPU one;
/// the crate's tests also run them on CPU adapters, see `matmul/gpu_shapes.rs`).
fn shaped_for_gpu(rank: &Rank) -> bool {
    #[cfg(test)]
    if super::gpu_shapes::forced() {
        return true;
    }
    rank.adapter_info().device_type != wgpu::DeviceType::Cpu
}

/// The skinny variant for an `[m, k] · [k, n]` product in `layout` on `rank`: ordered
/// (every element summed by fma in increasing k) under tp-invariant numerics, where the
/// fast variant's workgroup memory exceeds the device's, and where a sweep's partial sums
/// (one per 16 rows of K) would not fit one buffer binding or its K blocks one dispatch;
/// otherwise the fast mapping for the adapter kind.
pub(super) fn variant(
    rank: &Rank,
    [m, n, k]: [usize; 3],
    vec4: bool,
    layout: WeightLayout,
) -> Skinny {
    let gpu = shaped_for_gpu(rank);
    let fast = Skinny::new(m, vec4, gpu, false);
    let l = rank.limits();
    if rank.numerics() == Numerics::TpInvariant
        || fast.workgroup_bytes() as u64 > u64::from(l.max_compute_workgroup_storage_size)
    {
        return Skinny {
            ordered: true,
            ..fast
        };
    }
    if fast.mapping(layout) == Lanes::Sweep {
        let blocks = k.div_ceil(gemm_skinny::SWEEP_ROWS);
        let bytes = (blocks * m.min(fast.rows) * n * 4) as u64;
        let groups = blocks.div_ceil(gemm_skinny::SWEEP_LANES) as u64;
        if bytes > l.max_storage_buffer_binding_size.min(l.max_buffer_size)
            || groups > u64::from(l.max_compute_workgroups_per_dimension)
        {
            return Skinny {
                ordered: true,
                ..fast
            };
        }
    }
    fast
}

/// How many K chunks a skinny product of `m` rows over `n` columns and `k` inputs is
/// split into, and the rows of K per chunk (a multiple of 4). One chunk under
/// tp-invariant numerics (the bits of an unsplit sum), whenever the output alone
/// gives the device enough workgroups, and for small weights on a CPU adapter (see
/// [`SKINNY_CPU_SPLIT_MIN_BYTES`]); otherwise enough chunks to fill it, each of at
/// least [`Skinny::min_chunk`] rows, and with the partial sums within one buffer binding.
fn chunks(rank: &Rank, v: Skinny, layout: WeightLayout, [m, n, k]: [usize; 3]) -> (usize, usize) {
    let whole = (1, k.max(1));
    if rank.numerics() == Numerics::TpInvariant || k == 0 {
        return whole;
    }
    let groups = n.div_ceil(v.cols_per_workgroup(layout)).max(1);
    // Workgroups that keep the device busy and balanced: dozens per core on a CPU
    // adapter, a few thousand invocations' worth per multiprocessor on a GPU.
    let target = if v.gpu {
        SKINNY_GPU_WORKGROUPS
    } else {
        SKINNY_CPU_WORKGROUPS_PER_CORE * crate::rank::cores()
    };
    let l = rank.limits();
    let bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
    if v.mapping(layout) == Lanes::Sweep {
        // One chunk per K block of a lane, whatever the target (variant checked
        // that they fit).
        let len = gemm_skinny::SWEEP_ROWS;
        return (k.div_ceil(len).max(1), len);
    }
    // Counted as f32 whatever the weights' type: half weights split where f32 ones do, so
    // both give the same bits.
    let weight_bytes = (k as u64).saturating_mul(n as u64).saturating_mul(4);
    if !v.gpu && weight_bytes < SKINNY_CPU_SPLIT_MIN_BYTES && groups >= crate::rank::cores() {
        // Every core has a workgroup already, and what more would balance is worth less
        // than the `finish` dispatch.
        return whole;
    }
    let chunks = target
        .div_ceil(groups)
        .min(k / v.min_chunk(layout))
        .min(SKINNY_MAX_CHUNKS)
        .min(l.max_compute_workgroups_per_dimension as usize)
        .min(bytes / (m.max(1) * n.max(1) * 4).max(1));
    if chunks <= 1 {
        return whole;
    }
    let len = k.div_ceil(chunks).next_multiple_of(4);
    (k.div_ceil(len), len)
}
/// One dispatch block of a skinny product: `params` as for the other families, split into
/// `chunks` K chunks of `len` rows.
pub(super) struct SkinnyBlock {
    params: GemmParams,
    chunks: usize,
    len: usize,
    /// The main entry's workgroups.
    grid: [usize; 2],
    /// Partial sums through a scratch tensor and `finish` (more than one chunk, or a
    /// sweep, which always writes partial sums).
    split: bool,
}

/// A sweep's workgroups over `n` columns and `blocks` K blocks: the K blocks 8 to a
/// workgroup, and the columns split only as far as giving each core a few workgroups
/// needs (a sweep is fastest over long runs of columns), each sweeping at least 16 column
/// units.
fn sweep_grid(rank: &Rank, v: Skinny, n: usize, blocks: usize) -> [usize; 2] {
    let groups = blocks.div_ceil(gemm_skinny::SWEEP_LANES);
    let target = SWEEP_WORKGROUPS_PER_CORE * crate::rank::cores();
    let max = rank.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    let units = n / v.width();
    let x = target
        .div_ceil(groups)
        .min(units.div_ceil(16))
        .clamp(1, max);
    [x, groups]
}

impl SkinnyBlock {
    /// The block for `params` (one dispatch block of the product, as for the other
    /// families) run by variant `v` with weights in `layout`.
    pub(super) fn plan(rank: &Rank, v: Skinny, layout: WeightLayout, params: GemmParams) -> Self {
        let [m, n, k] = [params.m, params.n, params.k].map(|d| d as usize);
        let (chunks, len) = chunks(rank, v, layout, [m, n, k]);
        let sweep = v.mapping(layout) == Lanes::Sweep;
        let grid = if sweep {
            sweep_grid(rank, v, n, chunks)
        } else {
            [n.div_ceil(v.cols_per_workgroup(layout)), chunks]
        };
        SkinnyBlock {
            params,
            chunks,
            len,
            grid,
            split: sweep || chunks > 1,
        }
    }

    /// Unsplit, one dispatch of `main` over `bufs` (x, w, bias, y). Otherwise each chunk's
    /// partial sums go to a scratch tensor `[chunks * m, n]` (no epilogue, never
    /// accumulating), then `finish` adds them in chunk order into Y with the epilogue.
    pub(super) fn run(
        &self,
        op: &'static str,
        rank: &Rank,
        bufs: &[&wgpu::Buffer; 4],
        main: &PipelineKey,
        finish: &PipelineKey,
    ) -> Result<()> {
        let p = self.params;
        let grid = self.grid.map(|g| g as u32);
        if !self.split {
            return rank.dispatch(op, main, bufs, &p, grid);
        }
        let (m, n) = (p.m as usize, p.n as usize);
        // One row, so one buffer (chunks() and variant() kept it within a binding), read
        // as `[chunks * m, n]` row-major.
        let scratch = Tensor::output(rank, [1, self.chunks * m * n], op)?;
        let partial = GemmParams {
            ldy: p.n,
            y_offset: 0,
            accumulate: 0,
            k_chunk: self.len as u32,
            ..p
        };
        let plain = PipelineKey {
            constants: vec![("HAS_BIAS", 0), ("ACT", 0)],
            ..main.clone()
        };
        let s = scratch.bands()[0].buffer();
        let sum = GemmParams {
            k: self.chunks as u32,
            x_offset: 0,
            ..p
        };
        let units = n / if main_is_vec4(main) { 4 } else { 1 };
        let max = rank.limits().max_compute_workgroups_per_dimension.max(1);
        // `finish` loops over the rows and columns its grid does not reach.
        let finish_grid = [
            (units.div_ceil(gemm_skinny::FINISH_LANES) as u32).min(max),
            (m as u32).min(max),
        ];
        // One submission for both: the finish reads what the chunks wrote.
        rank.dispatch_all(
            op,
            &[
                Dispatch {
                    key: &plain,
                    buffers: &[bufs[0], bufs[1], bufs[2], s],
                    params: bytemuck::bytes_of(&partial),
                    grid,
                },
                Dispatch {
                    // finish reads no weights: one pipeline whatever their type.
                    key: &PipelineKey {
                        weights: crate::DType::F32,
                        ..finish.clone()
                    },
                    buffers: &[s, bufs[1], bufs[2], bufs[3]],
                    params: bytemuck::bytes_of(&sum),
                    grid: finish_grid,
                },
            ],
        )
    }
}

fn main_is_vec4(key: &PipelineKey) -> bool {
    matches!(key.shader, Shader::GemmSkinny(v) if v.vec4)
}
