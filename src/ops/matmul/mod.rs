//! The GEMM kernel families and the choice between them.
//!
//! [`Product`] is the one front door: [`matmul`] and every layer describe their product
//! with it. Four WGSL families sit behind it, all with the bias and activation fused
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
//!   small or odd shapes;
//! - [`GemmKernel::Skinny`] (`shaders/gemm_skinny.wgsl`, `src/kernels/gemm_skinny/mod.rs`)
//!   for at most 16 rows of X on every adapter: each weight element read once, K split
//!   into chunks whose partial sums a `finish` pass adds in order, lanes mapped per
//!   adapter kind and layout; one chunk, lanes along N, under tp-invariant numerics.

use std::ops::Range;

#[cfg(test)]
mod gpu_shapes;
mod skinny;
mod tn;

use super::{overlap, same_rank};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::GemmParams;
use crate::kernels::settings::{Activation, GemmKernel, Numerics, WeightLayout};
use crate::kernels::{gemm_cpu, gemm_skinny, PipelineKey, Shader};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::rank::Rank;
use crate::tensor::{Band, Tensor};
use skinny::SkinnyBlock;
pub use tn::matmul_tn;
pub(crate) use tn::matmul_tn_window;

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
/// The family `rank` runs for an `[m, k] · [k, n]` product with weights in `layout`
/// (never [`GemmKernel::Auto`]), taken whole. Under
/// [`Numerics::TpInvariant`] a product runs as 8 K blocks of
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
    // Quantized weights read the other way (their blocks run along n: the input gradient's
    // product `dy · W` of `[out, in]` blocks) go through the simple family, which reads
    // each value alone (`load_w`), in increasing k as every family.
    let quantized = w.bands().iter().any(|b| b.dtype.is_quantized());
    let (kernel, vec4) = if quantized && !out_in {
        (GemmKernel::Simple, false)
    } else {
        choose(rank, m, n, [k, ldx, col0], w_aligned, layout)
    };
    let skinny = skinny::variant(rank, [m, n, k], vec4, layout);
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
    let key = |entry: &'static str, epilogue: bool, weights: DType| {
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
            weights,
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
                        let (w_buf, ldw, w_offset, wt) = match w_band {
                            Some(b) => (b.buffer(), n, (kr.start - b.rows.start) * n + n0, b.dtype),
                            None => {
                                let b = band_holding(w, n0);
                                let at = (n0 - b.rows.start) * w_k + kr.start;
                                (b.buffer(), w_k, at, b.dtype)
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
                            let block = SkinnyBlock::plan(rank, skinny, layout, params);
                            let (main, finish) = (key(entry, last, wt), key("finish", last, wt));
                            block.run(op, rank, &bufs, &main, &finish)?;
                            continue;
                        }
                        let grid = [(n1 - n0).div_ceil(tile[0]), rr.len().div_ceil(tile[1])];
                        rank.dispatch(
                            op,
                            &key(entry, last, wt),
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

/// `act(x · W + bias)` on one rank, `x: [m, k]`, `W` stored per `layout` for `k` inputs
/// and `n` outputs, `bias: [1, n]`.
///
/// # Errors
/// [`Error::Shape`] when the shapes disagree; [`Error::InvalidArgument`] under
/// [`Numerics::TpInvariant`] when `k` is not a multiple of 8;
/// wgpu errors. Any size runs: tensors over the buffer limits are banded, products over the
/// workgroup limit split into several dispatches.
///
/// The kernel family is the rank's choice ([`gemm_kernel_for`]).
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
        low_rank: None,
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
    /// A low-rank addend the weight carries (a LoRA adapter): the product is of
    /// `W + s·B·A`, read in the same layout.
    pub low_rank: Option<LowRank>,
}

/// `s·B·A`, `B: [out, r]`, `A: [r, in]` (f32, `[out, in]` like the weight it is added to),
/// added to an `[out, in]` weight by every [`Product`] that reads it: `x · (W + s·B·A)ᵀ =
/// x·Wᵀ + s·(x·Aᵀ)·Bᵀ` forward, `dy · (W + s·B·A) = dy·W + s·(dy·B)·A` for the input's
/// gradient (the weight read transposed), never materialized.
#[derive(Debug, Clone)]
pub(crate) struct LowRank {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f32,
}

impl Product<'_> {
    /// Checks the shapes and ranks, then encodes and submits the product.
    pub(crate) fn run(&self) -> Result<Tensor> {
        let invariant = self.x.rank().numerics() == Numerics::TpInvariant;
        // Under tp-invariant numerics the addend goes with each K block (`blocked`).
        if self.low_rank.is_some() && !invariant {
            let k = self.cols.len();
            let plain = Product {
                act: Activation::Identity,
                low_rank: None,
                ..self.clone()
            };
            let y = super::add(&plain.run()?, &self.low_rank_term(0..k)?)?;
            return match self.act {
                Activation::Identity => Ok(y),
                act => super::activation(&y, act),
            };
        }
        self.check()?;
        let k = self.cols.len();
        if !invariant {
            return matmul_window(self, 0..k, self.bias, self.act);
        }
        let mut y = self.blocked(0..k)?;
        if let Some(b) = self.bias {
            y = super::add_row(&y, b)?;
        }
        if self.act != Activation::Identity {
            y = super::activation(&y, self.act)?;
        }
        Ok(y)
    }

    /// The shapes, ranks and types of the product's operands.
    fn check(&self) -> Result<()> {
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
        // Weights may be half precision or quantized; X and the bias are f32.
        x.require_f32(op)?;
        if let Some(b) = self.bias {
            same_rank(op, x.rank(), b.rank())?;
            b.require_f32(op)?;
            if b.shape() != [1, n] {
                return Err(Error::shape(
                    op,
                    format!("bias [1, {n}]"),
                    fmt_shape(b.shape()),
                ));
            }
        }
        Ok(())
    }

    /// The product over K rows `ks` of the weight only (`x[:, cols.start + ks] ·
    /// W[ks]`), with no bias or activation (those of `self` are not applied): a part of a
    /// sum whose other parts the caller adds. Under tp-invariant numerics in `blocks` K
    /// blocks of `ks`, as [`Product::run`].
    pub(crate) fn run_k(&self, ks: Range<usize>) -> Result<Tensor> {
        let invariant = self.x.rank().numerics() == Numerics::TpInvariant;
        if self.low_rank.is_some() && !invariant {
            let plain = Product {
                low_rank: None,
                ..self.clone()
            };
            return super::add(&plain.run_k(ks.clone())?, &self.low_rank_term(ks)?);
        }
        let whole = Product {
            bias: None,
            act: Activation::Identity,
            ..self.clone()
        };
        let k = self.layout.in_out(self.w.shape()).0;
        if ks.start > ks.end || ks.end > k {
            return Err(Error::invalid(
                self.op,
                format!("K rows {ks:?} of a weight with {k} inputs"),
            ));
        }
        // The whole product's checks, without running it.
        whole.check()?;
        if !invariant {
            return matmul_window(&whole, ks, None, Activation::Identity);
        }
        whole.blocked(ks)
    }

    /// The low-rank addend's share of the product over K rows `ks`: `s·(x·Aᵀ)·Bᵀ`
    /// (`[out, in]` weights read as stored) or `s·(x·B)·A` (read transposed), each
    /// product summed in increasing k.
    fn low_rank_term(&self, ks: Range<usize>) -> Result<Tensor> {
        let Some(lr) = &self.low_rank else {
            return Err(Error::invalid(self.op, "no low-rank addend"));
        };
        if self.w.shape() != [lr.b.shape()[0], lr.a.shape()[1]] {
            return Err(Error::shape(
                self.op,
                format!(
                    "an addend of the weight's shape {}",
                    fmt_shape(self.w.shape())
                ),
                format!(
                    "B {} · A {}",
                    fmt_shape(lr.b.shape()),
                    fmt_shape(lr.a.shape())
                ),
            ));
        }
        let (first, second) = match self.layout {
            WeightLayout::OutIn => (&lr.a, &lr.b),
            WeightLayout::InOut => (&lr.b, &lr.a),
        };
        fn part<'b>(
            p: &Product<'_>,
            x: &'b Tensor,
            cols: Range<usize>,
            w: &'b Tensor,
        ) -> Product<'b> {
            Product {
                op: p.op,
                x,
                cols,
                w,
                bias: None,
                layout: p.layout,
                act: Activation::Identity,
                blocks: 1,
                low_rank: None,
            }
        }
        let u = part(self, self.x, self.cols.clone(), first).run_k(ks)?;
        let r = u.shape()[1];
        super::scale(&part(self, &u, 0..r, second).run()?, lr.scale)
    }

    /// `ks` in `blocks` equal K blocks, each summed in increasing k (with a low-rank
    /// addend, plus its own share of the addend over the block: the same blocks whatever
    /// the split of K over ranks), joined along the fixed tree.
    fn blocked(&self, ks: Range<usize>) -> Result<Tensor> {
        let (op, blocks, k) = (self.op, self.blocks, ks.len());
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
            .map(|j| {
                let start = ks.start + j * len;
                let part = matmul_window(self, start..start + len, None, Activation::Identity)?;
                match self.low_rank {
                    Some(_) => super::add(&part, &self.low_rank_term(start..start + len)?),
                    None => Ok(part),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        super::sum(op, &partials)
    }
}

/// The band of `t` holding row `row`.
fn band_holding(t: &Tensor, row: usize) -> &Band {
    t.bands()
        .iter()
        .find(|b| b.rows.contains(&row))
        .unwrap_or(&t.bands()[0])
}
