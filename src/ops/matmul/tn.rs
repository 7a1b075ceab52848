//! `A^T · B` with A read transposed in place: a linear layer's weight gradient (`X^T · dY`
//! for `[in, out]` weights, `dY^T · X` for `[out, in]`) and its bias's (`1^T · dY`), summed
//! over the tokens without a transpose in memory, in the family the GEMM would choose:
//! on CPU adapters the CPU family's register blocks (`shaders/gemm_cpu_entry.wgsl`,
//! `main_tn`) where the shapes allow vec4 loads and the product is not small; on GPUs the
//! workgroup-memory tiles (`shaders/gemm_tiled.wgsl`, and `shaders/gemm_tiled_large.wgsl`
//! where the output spans a 128 x 128 tile each way; `X_T`) where the output spans at
//! least one 64 x 64 tile; else one output per invocation (`shaders/gemm_simple.wgsl`,
//! `X_T`).
//!
//! Each output element sums its `k` products by fma in increasing `k` from 0, whatever
//! the bands of A and B (one dispatch per K block where their bands meet, each after the
//! first adding onto the stored partial sums): its bits are those of one unsplit sum, so
//! they do not depend on the tp size or the numerics mode either.

use std::ops::Range;

use super::{
    band_holding, CPU_COLS, CPU_MIN_PRODUCT, CPU_ROWS, SIMPLE_TILE, TILED_LARGE_TILE, TILED_TILE,
};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::GemmParams;
use crate::kernels::settings::GemmKernel;
use crate::kernels::{PipelineKey, Shader};
use crate::ops::same_rank;
use crate::tensor::Tensor;

/// `a^T · b` for `a: [k, m]` and `b: [k, n]` (both f32): `[m, n]`, element `(i, j)` the
/// sum over `k` of `a[k, i] · b[k, j]` in increasing `k`.
///
/// # Errors
/// [`Error::Shape`] when the row counts differ; [`Error::InvalidArgument`] for tensors on
/// different ranks or not f32; wgpu errors. Tensors over the buffer limits are banded,
/// products over the workgroup limit split into several dispatches.
pub fn matmul_tn(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ca, cb) = (0..a.shape()[1], 0..b.shape()[1]);
    matmul_tn_window("matmul_tn", a, ca, b, cb)
}

/// [`matmul_tn`] of column windows: `a[:, a_cols]^T · b[:, b_cols]`, `[a_cols.len(),
/// b_cols.len()]` (a rank's slice of a replicated input or gradient, read without a copy).
pub(crate) fn matmul_tn_window(
    op: &'static str,
    a: &Tensor,
    a_cols: Range<usize>,
    b: &Tensor,
    b_cols: Range<usize>,
) -> Result<Tensor> {
    same_rank(op, a.rank(), b.rank())?;
    a.require_f32(op)?;
    b.require_f32(op)?;
    let ([k, lda], [kb, ldb]) = (a.shape(), b.shape());
    let windows_fit = a_cols.start < a_cols.end
        && a_cols.end <= lda
        && b_cols.start < b_cols.end
        && b_cols.end <= ldb;
    if kb != k || !windows_fit {
        return Err(Error::shape(
            op,
            format!(
                "a [k, m] and b [k, n] with the same k, windows inside them ({} columns {a_cols:?})",
                fmt_shape(a.shape())
            ),
            format!("{} columns {b_cols:?}", fmt_shape(b.shape())),
        ));
    }
    let (m, n) = (a_cols.len(), b_cols.len());
    let rank = a.rank();
    let max = rank.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    // K blocks: where a band of A meets a band of B.
    let mut cuts: Vec<usize> = a
        .bands()
        .iter()
        .chain(b.bands())
        .map(|band| band.rows.start)
        .chain([0, k])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let simple = PipelineKey {
        shader: Shader::GemmSimple,
        entry: "main",
        constants: vec![("HAS_BIAS", 0), ("ACT", 0), ("W_OUT_IN", 0), ("X_T", 1)],
        weights: DType::F32,
    };
    let cpu = PipelineKey {
        shader: Shader::GemmCpu,
        entry: "main_tn",
        constants: vec![("HAS_BIAS", 0), ("ACT", 0)],
        weights: DType::F32,
    };
    // The family as the GEMM would choose it: on a CPU adapter (or forced) the CPU family
    // where the product is not small, per block where every size and offset allows vec4
    // loads; on a GPU (or forced) the tiled families where the output spans a tile,
    // 128 x 128 where it spans one such tile each way.
    let cpu_adapter = rank.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let (cpu_family, tiled_family) = match rank.gemm_kernel() {
        GemmKernel::Cpu => (true, false),
        GemmKernel::Tiled => (false, true),
        GemmKernel::Auto if cpu_adapter => {
            let big = m.saturating_mul(n).saturating_mul(k) >= CPU_MIN_PRODUCT;
            (big, false)
        }
        GemmKernel::Auto => (false, m.saturating_mul(n) >= TILED_TILE * TILED_TILE),
        _ => (false, false),
    };
    let tiled = tiled_family.then(|| {
        let (shader, side) = if m >= TILED_LARGE_TILE && n >= TILED_LARGE_TILE {
            (Shader::GemmTiledLarge, TILED_LARGE_TILE)
        } else {
            (Shader::GemmTiled, TILED_TILE)
        };
        let key = PipelineKey {
            shader,
            ..simple.clone()
        };
        (key, side)
    });
    // Rows and columns of Y per dispatch: whole workgroups of every family it may run.
    let step = tiled.as_ref().map_or(SIMPLE_TILE, |(_, side)| *side) * max;
    let y = Tensor::output(rank, [m, n], op)?;
    for yb in y.bands() {
        for r0 in yb.rows.clone().step_by(step) {
            let rows = r0..(r0 + step).min(yb.rows.end);
            for n0 in (0..n).step_by(step) {
                let n1 = (n0 + step).min(n);
                for (i, ks) in cuts.windows(2).enumerate() {
                    let (k0, k1) = (ks[0], ks[1]);
                    let (ab, bb) = (band_holding(a, k0), band_holding(b, k0));
                    let params = GemmParams {
                        m: rows.len() as u32,
                        n: (n1 - n0) as u32,
                        k: (k1 - k0) as u32,
                        ldx: lda as u32,
                        x_offset: ((k0 - ab.rows.start) * lda + a_cols.start + rows.start) as u32,
                        ldy: n as u32,
                        y_offset: ((rows.start - yb.rows.start) * n + n0) as u32,
                        ldw: ldb as u32,
                        w_offset: ((k0 - bb.rows.start) * ldb + b_cols.start + n0) as u32,
                        bias_offset: 0,
                        accumulate: u32::from(i > 0),
                        k_chunk: (k1 - k0) as u32,
                    };
                    let vec4 = [
                        params.m,
                        params.n,
                        params.ldx,
                        params.ldy,
                        params.ldw,
                        params.x_offset,
                        params.y_offset,
                        params.w_offset,
                        params.k,
                    ]
                    .iter()
                    .all(|v| v.is_multiple_of(4));
                    let (key, tile) = if cpu_family && vec4 {
                        (&cpu, [CPU_COLS, CPU_ROWS])
                    } else if let Some((key, side)) = &tiled {
                        (key, [*side; 2])
                    } else {
                        (&simple, [SIMPLE_TILE; 2])
                    };
                    let grid = [(n1 - n0).div_ceil(tile[0]), rows.len().div_ceil(tile[1])];
                    rank.dispatch(
                        op,
                        key,
                        &[ab.buffer(), bb.buffer(), bb.buffer(), yb.buffer()],
                        &params,
                        grid.map(|g| g as u32),
                    )?;
                }
            }
        }
    }
    Ok(y)
}
