//! The GEMM kernel families and the choice between them.
//!
//! Three WGSL families sit behind [`matmul_window`], all with the bias and activation fused
//! into the epilogue and both weight layouts:
//! - [`GemmKernel::Cpu`] (`shaders/gemm_cpu.wgsl`) for CPU adapters such as lavapipe:
//!   lane-uniform loads of X, register blocks of 16 x 4, no workgroup memory;
//! - [`GemmKernel::Tiled`] for GPUs: tiles staged in workgroup memory with register
//!   blocking, 128 x 128 with 8 x 8 blocks read as vec4 (`shaders/gemm_tiled_large.wgsl`)
//!   when the output spans at least one such tile each way, else 64 x 64 with 4 x 4
//!   blocks (`shaders/gemm_tiled.wgsl`). Both fit WebGPU's minimum limits (8 KiB of
//!   workgroup memory, 256 invocations), so every adapter can run either;
//! - [`GemmKernel::Simple`] (`shaders/gemm_simple.wgsl`): one output per invocation, for
//!   small or odd shapes.

use crate::error::{Error, Result};
use crate::kernels::{PipelineKey, Shader};
use crate::ops::{Activation, WeightLayout};
use crate::rank::Rank;
use crate::tensor::Tensor;

/// Which GEMM kernel family a rank runs ([`GroupBuilder::gemm_kernel`](crate::GroupBuilder::gemm_kernel)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GemmKernel {
    /// Chosen per adapter and shape: [`Cpu`](GemmKernel::Cpu) on CPU adapters where the
    /// shape allows it, [`Tiled`](GemmKernel::Tiled) on GPUs for outputs of at least one
    /// 64 x 64 tile, [`Simple`](GemmKernel::Simple) otherwise.
    #[default]
    Auto,
    /// The CPU-adapter family. Needs `in` and `out` multiples of 4 (and, inside layers,
    /// the input's row stride and column offset); other shapes run
    /// [`Simple`](GemmKernel::Simple).
    Cpu,
    /// The GPU family (workgroup-memory tiles), for any shape.
    Tiled,
    /// One output element per invocation, for any shape.
    Simple,
}

/// Rows and columns of Y one workgroup of `gemm_tiled.wgsl` computes.
const TILED_TILE: usize = 64;
/// The same for `gemm_tiled_large.wgsl`.
const TILED_LARGE_TILE: usize = 128;
/// Rows of Y per workgroup of `gemm_cpu.wgsl`; columns are 8 lanes x 16.
const CPU_ROWS: usize = 16;
const CPU_COLS: usize = 128;
/// Side of the square block of Y per workgroup of `gemm_simple.wgsl`.
const SIMPLE_TILE: usize = 16;

/// The family `rank` runs for an `[m, k] · [k, n]` product with weights in `layout`
/// (never [`GemmKernel::Auto`]).
pub fn gemm_kernel_for(
    rank: &Rank,
    m: usize,
    n: usize,
    k: usize,
    layout: WeightLayout,
) -> GemmKernel {
    let _ = layout; // every family takes both layouts; kept for kernels that may not
    choose(rank, m, n, [k, k, 0])
}

/// [`gemm_kernel_for`] for X read with row stride `x[1]` from column `x[2]`, `x[0] = k`.
fn choose(rank: &Rank, m: usize, n: usize, x: [usize; 3]) -> GemmKernel {
    let cpu_fits = n.is_multiple_of(4) && x.iter().all(|v| v.is_multiple_of(4));
    match rank.gemm_kernel() {
        GemmKernel::Cpu | GemmKernel::Auto
            if cpu_fits
                && (rank.gemm_kernel() == GemmKernel::Cpu
                    || rank.adapter_info().device_type == wgpu::DeviceType::Cpu) =>
        {
            GemmKernel::Cpu
        }
        GemmKernel::Auto
            if rank.adapter_info().device_type != wgpu::DeviceType::Cpu
                && m * n >= TILED_TILE * TILED_TILE =>
        {
            GemmKernel::Tiled
        }
        GemmKernel::Tiled => GemmKernel::Tiled,
        _ => GemmKernel::Simple,
    }
}

/// `act(x[:, col0..col0 + k] · W + bias)`: the GEMM over a column window of `x` (a
/// replicated input sliced for a row-parallel layer without a copy). Shapes are checked
/// by the caller.
pub(crate) fn matmul_window(
    x: &Tensor,
    col0: usize,
    k: usize,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    act: Activation,
) -> Result<Tensor> {
    let op = "matmul";
    let rank = x.rank();
    let m = x.shape()[0];
    let n = layout.in_out(w.shape()).1;
    let out_in = layout == WeightLayout::OutIn;
    let kernel = choose(rank, m, n, [k, x.shape()[1], col0]);
    let mut constants = vec![("HAS_BIAS", u32::from(bias.is_some())), ("ACT", act.code())];
    let (shader, entry, grid) = match kernel {
        GemmKernel::Cpu => {
            let entry = if out_in { "main_out_in" } else { "main_in_out" };
            (
                Shader::GemmCpu,
                entry,
                [n.div_ceil(CPU_COLS), m.div_ceil(CPU_ROWS)],
            )
        }
        GemmKernel::Tiled => {
            constants.push(("W_OUT_IN", u32::from(out_in)));
            let (shader, tile) = if m >= TILED_LARGE_TILE && n >= TILED_LARGE_TILE {
                (Shader::GemmTiledLarge, TILED_LARGE_TILE)
            } else {
                (Shader::GemmTiled, TILED_TILE)
            };
            (shader, "main", [n.div_ceil(tile), m.div_ceil(tile)])
        }
        _ => {
            constants.push(("W_OUT_IN", u32::from(out_in)));
            let grid = [n.div_ceil(SIMPLE_TILE), m.div_ceil(SIMPLE_TILE)];
            (Shader::GemmSimple, "main", grid)
        }
    };
    let max = rank.limits().max_compute_workgroups_per_dimension;
    if let Some(&t) = grid.iter().find(|&&t| t > max as usize) {
        return Err(Error::DispatchTooLarge {
            op,
            workgroups: t as u64,
            limit: max,
        });
    }
    let y = Tensor::output(rank, [m, n], op)?;
    let key = PipelineKey {
        shader,
        entry,
        constants,
    };
    let params = [
        m as u32,
        n as u32,
        k as u32,
        x.shape()[1] as u32,
        col0 as u32,
        0,
        0,
        0,
    ];
    let bias_buf = bias.map_or(w.as_buffer(), Tensor::as_buffer);
    let buffers = [x.as_buffer(), w.as_buffer(), bias_buf, y.as_buffer()];
    crate::ops::submit(
        rank,
        op,
        &key,
        &buffers,
        &params,
        [grid[0] as u32, grid[1] as u32],
    )?;
    Ok(y)
}
