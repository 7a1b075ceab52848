//! The GEMM kernel families and the choice between them.
//!
//! [`Product`] is the one front door: [`matmul`] and every layer describe their product
//! with it. Three WGSL families sit behind it, all with the bias and activation fused
//! into the epilogue and both weight layouts:
//! - [`GemmKernel::Cpu`] (`shaders/gemm_cpu.wgsl`) for CPU adapters such as lavapipe
//!   (products of at least 32^3 multiply-adds; smaller ones run the simple family):
//!   lane-uniform loads of X, register blocks of 16 x 4 vec4 (`src/kernels/gemm_cpu.rs`),
//!   no workgroup memory;
//! - [`GemmKernel::Tiled`] for GPUs: tiles staged in workgroup memory with register
//!   blocking, 128 x 128 with 8 x 8 blocks read as vec4 (`shaders/gemm_tiled_large.wgsl`)
//!   when the output spans at least one such tile each way, else 64 x 64 with 4 x 4
//!   blocks (`shaders/gemm_tiled.wgsl`). Both fit WebGPU's minimum limits (8 KiB of
//!   workgroup memory, 256 invocations), so every adapter can run either;
//! - [`GemmKernel::Simple`] (`shaders/gemm_simple.wgsl`): one output per invocation, for
//!   small or odd shapes.

use std::ops::Range;

#[cfg(test)]
mod gpu_shapes;

use super::{overlap, same_rank};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::gemm_skinny::{self, Lanes, Skinny};
use crate::kernels::{gemm_cpu, PipelineKey, Shader};
use crate::numerics::INVARIANT_BLOCKS;
use crate::params::GemmParams;
use crate::rank::{Dispatch, Rank};
use crate::settings::{Activation, GemmKernel, Numerics, WeightLayout};
use crate::tensor::{Band, Tensor};

/// Rows and columns of Y one workgroup of `gemm_tiled.wgsl` computes.
const TILED_TILE: usize = 64;
/// The same for `gemm_tiled_large.wgsl`.
const TILED_LARGE_TILE: usize = 128;
/// Rows of Y per workgroup of `gemm_cpu.wgsl`; columns are lanes x vec4 columns x 4.
const CPU_ROWS: usize = gemm_cpu::ROWS;
const CPU_COLS: usize = gemm_cpu::LANES * gemm_cpu::COLS4 * 4;
/// The smallest `m * n * k` for which [`GemmKernel::Auto`] runs the CPU family. Below it
/// the product takes tens of microseconds either way (lavapipe, 2 cores: the simple
/// kernel as fast at 16^3, half as fast at 32^3), while llvmpipe spends about a second
/// compiling the unrolled CPU shader per pipeline and device (at its first dispatch, with
/// no shader cache): most of a cold start (verify, tp 4: 5-17 s before, 0.3 s after).
/// Forcing [`GemmKernel::Cpu`] ignores it.
const CPU_MIN_PRODUCT: usize = 32 * 32 * 32;
/// Side of the square block of Y per workgroup of `gemm_simple.wgsl`.
const SIMPLE_TILE: usize = 16;
/// The most K chunks of a skinny product.
const SKINNY_MAX_CHUNKS: usize = 64;
/// Workgroups a skinny product aims for per core of a CPU adapter (llvmpipe runs one
/// thread per core). Measured on lavapipe (2 cores, [1, 4096] x [4096, 4096]): 16
/// workgroups of 4096 rows 10.6 ms, 64 of 1024 rows 9.2 ms.
const SKINNY_CPU_WORKGROUPS_PER_CORE: usize = 32;
/// Workgroups a sweep aims for per core of a CPU adapter. Measured on lavapipe (2 cores,
/// the batch-1 MLP 1024 -> 4096 -> 1024 at tp 4, its shards [1024, 1024]): 4 or 8 a
/// core 3.3 ms, 32 a core (more, shorter sweeps) 4.1 ms; [1, 4096] x [4096, 4096] the
/// same (its K blocks alone give 32 workgroups).
const SWEEP_WORKGROUPS_PER_CORE: usize = 4;
/// Workgroups (of 64 invocations) a skinny product aims for on a GPU.
const SKINNY_GPU_WORKGROUPS: usize = 1024;

/// The family `rank` runs for an `[m, k] · [k, n]` product with weights in `layout`
/// (never [`GemmKernel::Auto`]), taken whole. Under
/// [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) a product runs as 8 K blocks of
/// `k / 8`, each of which picks its family for its own `[m, k / 8] · [k / 8, n]` shape:
/// ask for that shape to know what those blocks run (every family gives the same bits
/// there).
pub fn gemm_kernel_for(
    rank: &Rank,
    m: usize,
    n: usize,
    k: usize,
    layout: WeightLayout,
) -> GemmKernel {
    choose(rank, m, n, [k, k, 0], true, layout).0
}

/// The family for an `[m, x[0]] · [x[0], n]` product with X read with row stride `x[1]`
/// from column `x[2]`, with `w_aligned` false when the weight's bands start at rows that
/// are not multiples of 4; and whether the shapes allow vec4 loads (every size, stride and
/// offset a multiple of 4).
fn choose(
    rank: &Rank,
    m: usize,
    n: usize,
    x: [usize; 3],
    w_aligned: bool,
    layout: WeightLayout,
) -> (GemmKernel, bool) {
    let vec4 = w_aligned && n.is_multiple_of(4) && x.iter().all(|v| v.is_multiple_of(4));
    // Under tp-invariant numerics only kernels that sum by fma in increasing k may run:
    // not the CPU family's out-in entry (dot products).
    let cpu_fits =
        vec4 && !(layout == WeightLayout::OutIn && rank.numerics() == Numerics::TpInvariant);
    let small = m.saturating_mul(n).saturating_mul(x[0]) < CPU_MIN_PRODUCT;
    let cpu_adapter = rank.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let kernel = match rank.gemm_kernel() {
        GemmKernel::Cpu if cpu_fits => GemmKernel::Cpu,
        GemmKernel::Auto if cpu_adapter && small => GemmKernel::Simple,
        GemmKernel::Auto if m <= gemm_skinny::MAX_ROWS => GemmKernel::Skinny,
        GemmKernel::Auto if cpu_adapter && cpu_fits => GemmKernel::Cpu,
        GemmKernel::Auto if !cpu_adapter && m * n >= TILED_TILE * TILED_TILE => GemmKernel::Tiled,
        GemmKernel::Tiled => GemmKernel::Tiled,
        GemmKernel::Skinny => GemmKernel::Skinny,
        _ => GemmKernel::Simple,
    };
    (kernel, vec4)
}

/// Whether the skinny family takes its GPU shapes on `rank` (any adapter but a CPU one;
/// the crate's tests also run them on CPU adapters, see `matmul/gpu_shapes.rs`).
fn shaped_for_gpu(rank: &Rank) -> bool {
    #[cfg(test)]
    if gpu_shapes::forced() {
        return true;
    }
    rank.adapter_info().device_type != wgpu::DeviceType::Cpu
}

/// The skinny variant for an `[m, k] · [k, n]` product in `layout` on `rank`: ordered
/// (every element summed by fma in increasing k) under tp-invariant numerics, and where
/// a sweep's partial sums (one per 16 rows of K) would not fit one buffer binding or its
/// K blocks one dispatch; otherwise the fast mapping for the adapter kind.
fn skinny_variant(rank: &Rank, [m, n, k]: [usize; 3], vec4: bool, layout: WeightLayout) -> Skinny {
    let gpu = shaped_for_gpu(rank);
    let fast = Skinny::new(m, vec4, gpu, false);
    if rank.numerics() == Numerics::TpInvariant {
        return Skinny {
            ordered: true,
            ..fast
        };
    }
    if fast.mapping(layout) == Lanes::Sweep {
        let l = rank.limits();
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
/// tp-invariant numerics (the bits of an unsplit sum) and whenever the output alone
/// gives the device enough workgroups; otherwise enough chunks to fill it, each of at
/// least [`Skinny::min_chunk`] rows, and with the partial sums within one buffer binding.
pub(crate) fn skinny_chunks(
    rank: &Rank,
    v: Skinny,
    layout: WeightLayout,
    [m, n, k]: [usize; 3],
) -> (usize, usize) {
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
        // One chunk per K block of a lane, whatever the target (skinny_variant checked
        // that they fit).
        let len = gemm_skinny::SWEEP_ROWS;
        return (k.div_ceil(len).max(1), len);
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
/// `act(x[:, col0 + ks] · W[ks] + bias)` for `p`, with `col0 = p.cols.start`: the GEMM
/// over K rows `ks` of the weight and the matching columns of `x`. Shapes are checked by
/// [`Product::run`].
///
/// Tensors over the device's buffer limits come in bands of rows (src/tensor.rs), and
/// one dispatch covers at most `max_compute_workgroups_per_dimension` workgroups a side,
/// so the product runs in blocks: rows of Y where a band of X meets a band of Y, cut to
/// one dispatch (to one row block for the skinny family); output columns cut to one
/// dispatch and, for `OutIn` weights (whose rows are output columns), to one band of W;
/// and for `InOut` weights (whose rows are k), one K block per band of W, each after the
/// first adding onto Y's partial sums, with the bias and activation applied by the last.
/// Each output element still sums its K products in increasing order from 0, so its bits
/// are those of an unsplit product (the skinny family's split-K aside, which tp-invariant
/// numerics turn off).
fn matmul_window(
    p: &Product<'_>,
    ks: Range<usize>,
    bias: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    let (x, w, layout, op, col0) = (p.x, p.w, p.layout, p.op, p.cols.start);
    let rank = x.rank();
    let (m, ldx) = (x.shape()[0], x.shape()[1]);
    let (w_k, n) = layout.in_out(w.shape());
    let k = ks.len();
    let out_in = layout == WeightLayout::OutIn;
    let max = rank.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    // K blocks: where the bands of an InOut W meet `ks`; all of `ks` for OutIn.
    let k_blocks: Vec<(Option<&Band>, Range<usize>)> = if out_in {
        vec![(None, ks.clone())]
    } else {
        w.bands()
            .iter()
            .filter_map(|b| overlap(&b.rows, &ks).map(|r| (Some(b), r)))
            .collect()
    };
    let w_cuts: Vec<usize> = if out_in {
        w.bands().iter().map(|b| b.rows.start).collect()
    } else {
        k_blocks.iter().map(|(_, r)| r.start).collect()
    };
    // Every K block's column offset into X must keep vec4 alignment.
    let w_aligned = w_cuts.iter().all(|c| c.is_multiple_of(4)) && ks.start.is_multiple_of(4);
    let (kernel, vec4) = choose(rank, m, n, [k, ldx, col0], w_aligned, layout);
    let skinny = skinny_variant(rank, [m, n, k], vec4, layout);
    // (shader, entry, columns and rows of Y per workgroup, rows per dispatch)
    let (shader, entry, tile, row_step) = match kernel {
        GemmKernel::Cpu => {
            let entry = if out_in { "main_out_in" } else { "main_in_out" };
            (Shader::GemmCpu, entry, [CPU_COLS, CPU_ROWS], CPU_ROWS * max)
        }
        GemmKernel::Skinny => {
            let entry = if out_in { "main_out_in" } else { "main_in_out" };
            let tile = [skinny.cols_per_workgroup(layout), skinny.rows];
            (Shader::GemmSkinny(skinny), entry, tile, skinny.rows)
        }
        GemmKernel::Tiled if m >= TILED_LARGE_TILE && n >= TILED_LARGE_TILE => (
            Shader::GemmTiledLarge,
            "main",
            [TILED_LARGE_TILE; 2],
            TILED_LARGE_TILE * max,
        ),
        GemmKernel::Tiled => (Shader::GemmTiled, "main", [TILED_TILE; 2], TILED_TILE * max),
        _ => (
            Shader::GemmSimple,
            "main",
            [SIMPLE_TILE; 2],
            SIMPLE_TILE * max,
        ),
    };
    let key = |entry: &'static str, epilogue: bool| {
        let mut constants = vec![
            ("HAS_BIAS", u32::from(bias.is_some() && epilogue)),
            ("ACT", if epilogue { act.code() } else { 0 }),
        ];
        if !matches!(shader, Shader::GemmCpu | Shader::GemmSkinny(_)) {
            constants.push(("W_OUT_IN", u32::from(out_in)));
        }
        PipelineKey {
            shader,
            entry,
            constants,
        }
    };
    // Output column blocks: within one dispatch, and inside one band of an OutIn W.
    let mut cuts: Vec<usize> = (0..n).step_by(tile[0] * max).chain([n]).collect();
    if out_in {
        cuts.extend(&w_cuts);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let y = Tensor::output(rank, [m, n], op)?;
    for yb in y.bands() {
        for xb in x.bands() {
            let Some(rows) = overlap(&yb.rows, &xb.rows) else {
                continue;
            };
            for r0 in rows.clone().step_by(row_step) {
                let rr = r0..(r0 + row_step).min(rows.end);
                for cut in cuts.windows(2) {
                    let (n0, n1) = (cut[0], cut[1]);
                    for (i, (w_band, kr)) in k_blocks.iter().enumerate() {
                        let last = i + 1 == k_blocks.len();
                        let (w_buf, ldw, w_offset) = match w_band {
                            Some(b) => (b.buffer(), n, (kr.start - b.rows.start) * n + n0),
                            None => {
                                let b = band_holding(w, n0);
                                (b.buffer(), w_k, (n0 - b.rows.start) * w_k + kr.start)
                            }
                        };
                        let bias_buf = bias.map_or(w_buf, |b| b.bands()[0].buffer());
                        let params = GemmParams {
                            m: rr.len() as u32,
                            n: (n1 - n0) as u32,
                            k: kr.len() as u32,
                            ldx: ldx as u32,
                            x_offset: ((rr.start - xb.rows.start) * ldx + col0 + kr.start) as u32,
                            ldy: n as u32,
                            y_offset: ((rr.start - yb.rows.start) * n + n0) as u32,
                            ldw: ldw as u32,
                            w_offset: w_offset as u32,
                            bias_offset: n0 as u32,
                            accumulate: u32::from(i > 0),
                            k_chunk: kr.len() as u32,
                        };
                        let bufs = [xb.buffer(), w_buf, bias_buf, yb.buffer()];
                        if kernel == GemmKernel::Skinny {
                            let shape = [rr.len(), n1 - n0, kr.len()];
                            let (chunks, len) = skinny_chunks(rank, skinny, layout, shape);
                            let sweep = skinny.mapping(layout) == Lanes::Sweep;
                            let block = SkinnyBlock {
                                params,
                                chunks,
                                len,
                                grid: if sweep {
                                    sweep_grid(rank, skinny, n1 - n0, chunks)
                                } else {
                                    [(n1 - n0).div_ceil(tile[0]), chunks]
                                },
                                split: sweep || chunks > 1,
                            };
                            block.run(op, rank, &bufs, &key(entry, last), &key("finish", last))?;
                            continue;
                        }
                        let grid = [(n1 - n0).div_ceil(tile[0]), rr.len().div_ceil(tile[1])];
                        rank.dispatch(
                            op,
                            &key(entry, last),
                            &bufs,
                            &params,
                            grid.map(|g| g as u32),
                        )?;
                    }
                }
            }
        }
    }
    Ok(y)
}

/// One dispatch block of a skinny product: `params` as for the other families, split into
/// `chunks` K chunks of `len` rows.
struct SkinnyBlock {
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
    /// Unsplit, one dispatch of `main` over `bufs` (x, w, bias, y). Otherwise each chunk's
    /// partial sums go to a scratch tensor `[chunks * m, n]` (no epilogue, never
    /// accumulating), then `finish` adds them in chunk order into Y with the epilogue.
    fn run(
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
        let scratch = Tensor::output(rank, [self.chunks * m, n], op)?;
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
        let finish_grid = [
            units.div_ceil(gemm_skinny::FINISH_LANES) as u32,
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
                    key: finish,
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

/// `act(x · W + bias)` on one rank, `x: [m, k]`, `W` stored per `layout` for `k` inputs
/// and `n` outputs, `bias: [1, n]`.
///
/// # Errors
/// [`Error::Shape`] when the shapes disagree; [`Error::InvalidArgument`] under
/// [`Numerics::TpInvariant`](crate::Numerics::TpInvariant) when `k` is not a multiple of 8;
/// wgpu errors. Any size runs: tensors over the buffer limits are banded, products over the
/// workgroup limit split into several dispatches.
///
/// The kernel family is the rank's choice ([`gemm_kernel_for`](crate::gemm_kernel_for)).
pub fn matmul(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    act: Activation,
) -> Result<Tensor> {
    let op = "matmul";
    let k = x.shape()[1];
    Product {
        op,
        x,
        cols: 0..k,
        w,
        bias,
        layout,
        act,
        blocks: INVARIANT_BLOCKS,
    }
    .run()
}

/// One GEMM, `act(x[:, cols] · W + bias)`: what [`matmul`] and every layer run. `cols`
/// is a window of X's columns (a row-parallel rank reads its slice of a replicated input
/// without a copy; all of them for a plain product); `W` is stored per `layout` with
/// `cols.len()` inputs.
///
/// With [`Numerics::TpInvariant`] the product is taken in `blocks` K blocks of `k /
/// blocks` (8 for a whole K, `8 / tp` for a row-parallel shard of it), each summed by fma
/// in increasing k with no epilogue, joined along the fixed tree, then the bias added and
/// the activation applied as elementwise ops (the same arithmetic as the fused epilogue,
/// at every tp). Refuses a `k` that is not a multiple of `blocks`.
#[derive(Debug, Clone)]
pub(crate) struct Product<'a> {
    /// The operation named in errors (the layer's, or `matmul`).
    pub op: &'static str,
    pub x: &'a Tensor,
    pub cols: Range<usize>,
    pub w: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub layout: WeightLayout,
    pub act: Activation,
    pub blocks: usize,
}

impl Product<'_> {
    /// Checks the shapes and ranks, then encodes and submits the product.
    pub(crate) fn run(&self) -> Result<Tensor> {
        let op = self.op;
        let (x, w, layout) = (self.x, self.w, self.layout);
        let k = self.cols.len();
        let (wk, n) = layout.in_out(w.shape());
        if wk != k || self.cols.end > x.shape()[1] {
            return Err(Error::shape(
                op,
                format!("weight with {k} inputs ({layout})"),
                format!(
                    "{} ({layout}, {wk} inputs) for x {} columns {:?}",
                    fmt_shape(w.shape()),
                    fmt_shape(x.shape()),
                    self.cols
                ),
            ));
        }
        same_rank(op, x.rank(), w.rank())?;
        if let Some(b) = self.bias {
            same_rank(op, x.rank(), b.rank())?;
            if b.shape() != [1, n] {
                return Err(Error::shape(
                    op,
                    format!("bias [1, {n}]"),
                    fmt_shape(b.shape()),
                ));
            }
        }
        if x.rank().numerics() != Numerics::TpInvariant {
            return matmul_window(self, 0..k, self.bias, self.act);
        }
        let blocks = self.blocks;
        if blocks == 0 || !k.is_multiple_of(blocks) {
            return Err(Error::invalid(
                op,
                format!(
                    "tp-invariant numerics split this product's inner dimension into {blocks} \
                     equal blocks: {k} is not a multiple of {blocks} (make every layer's \
                     input size a multiple of {INVARIANT_BLOCKS})"
                ),
            ));
        }
        let len = k / blocks;
        let partials = (0..blocks)
            .map(|j| matmul_window(self, j * len..(j + 1) * len, None, Activation::Identity))
            .collect::<Result<Vec<_>>>()?;
        let mut y = super::sum(op, &partials)?;
        if let Some(b) = self.bias {
            y = super::add_row(&y, b)?;
        }
        if self.act != Activation::Identity {
            y = super::activation(&y, self.act)?;
        }
        Ok(y)
    }
}

/// The band of `t` holding row `row`.
fn band_holding(t: &Tensor, row: usize) -> &Band {
    t.bands()
        .iter()
        .find(|b| b.rows.contains(&row))
        .unwrap_or(&t.bands()[0])
}
