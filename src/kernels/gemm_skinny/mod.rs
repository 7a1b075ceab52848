//! The skinny GEMM family (`shaders/gemm_skinny.wgsl` and its entry templates
//! `gemm_skinny_entry.wgsl`, `gemm_skinny_sweep.wgsl`), filled at pipeline-build time: products with few rows of X (decode steps, `m` up to [`MAX_ROWS`]), which read
//! each weight element once per call.
//!
//! An invocation keeps a block of `rows` rows x `units` column units of Y in named
//! accumulators (llvmpipe keeps an indexed WGSL array in memory, not registers), `a{i}_{j}`
//! holding row `i` and unit `c{j}`; a unit is a `vec4` of 4 output columns, or one column
//! when the shapes are not aligned to 4. The workgroup's y index picks a chunk of K
//! ([`GemmParams::k_chunk`] rows), so a product with few output columns still spreads over
//! the device (split-K): chunk `s` writes its partial sums to slice `s` of a scratch tensor,
//! and the `finish` entry adds the slices in increasing `s` (a fixed order: deterministic
//! bits) before the bias and activation. With one chunk the entry writes Y itself with the
//! fused epilogue.
//!
//! The lanes of a workgroup split the work one of three ways ([`Lanes`], chosen per
//! adapter kind and weight layout by [`Skinny::mapping`]), whichever makes the weight
//! loads cheap: on a GPU lanes next to each other must read addresses next to each other
//! (coalescing); on a CPU adapter each lane's load is a loop of scalar loads, fast when
//! every lane walks its own runs of memory in order, which the hardware prefetches:
//! - [`Lanes::AlongN`]: each lane owns its own units (adjacent lanes, adjacent units) and
//!   sums its whole K chunk by fma in increasing k: adjacent lanes read adjacent W in the
//!   `[in, out]` layout (GPU) and each lane walks its own rows in the `[out, in]` layout
//!   (CPU). With one chunk an element's bits are those of `gemm_simple.wgsl` (vec4 loads
//!   of an `[out, in]` weight are transposed in registers, not reduced as dot products),
//!   which tp-invariant numerics rely on: the `ordered` variants use this mapping for both
//!   layouts.
//! - [`Lanes::AlongK`] (GPU, `[out, in]`): the lanes share the workgroup's units and take
//!   turns over the K steps (lane `l` the steps `l, l + lanes, ...`), so adjacent lanes
//!   read adjacent W, then add their sums in lane order in workgroup memory.
//! - [`Lanes::Sweep`] (CPU, `[in, out]`, at most 4 rows): each lane owns a block of
//!   [`SWEEP_ROWS`] consecutive rows of K, keeps its rows of X in registers, and sweeps
//!   the columns, reading its rows of W side by side in order and writing one partial sum
//!   per column unit and K block; `finish` adds the blocks in order.
//!
//! The last two sum in a fixed order, so deterministically, but not in the order of an
//! unsplit sum: never under tp-invariant numerics.
//!
//! [`GemmParams::k_chunk`]: crate::kernels::params::GemmParams

use super::template::{self, Slots};
use crate::error::Result;
use crate::kernels::settings::WeightLayout;

const GEMM_SKINNY_WGSL: &str = include_str!("../../../shaders/gemm_skinny.wgsl");
const GEMM_SKINNY_ENTRY_WGSL: &str = include_str!("../../../shaders/gemm_skinny_entry.wgsl");

/// The most rows of X the family is chosen for by [`GemmKernel::Auto`]; a product with
/// more rows runs in blocks of this many, each reading the weights again.
///
/// [`GemmKernel::Auto`]: crate::GemmKernel::Auto
pub(crate) const MAX_ROWS: usize = 16;

/// Invocations of the `finish` entry per workgroup (along the columns).
pub(crate) const FINISH_LANES: usize = 64;

/// The row blocks compiled: the smallest that holds `m` rows runs.
pub(crate) const ROW_BLOCKS: [usize; 3] = [1, 4, MAX_ROWS];

/// Rows of K per lane of a [`Lanes::Sweep`] entry.
pub(crate) const SWEEP_ROWS: usize = 16;

/// Lanes per workgroup of a [`Lanes::Sweep`] entry (8 K blocks side by side).
pub(crate) const SWEEP_LANES: usize = 8;

/// The most output columns one workgroup of a sweep covers.
pub(crate) const SWEEP_COLS: usize = 4096;

/// How the lanes of a workgroup split a skinny product (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lanes {
    AlongN,
    AlongK,
    Sweep,
}

/// One compiled variant of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Skinny {
    /// Rows of Y per invocation (rows past `m` repeat row `m - 1` and are not stored).
    pub rows: usize,
    /// Column units are `vec4`s (every offset, leading dimension, `n` and the K chunks
    /// multiples of 4); otherwise single columns, for any shape.
    pub vec4: bool,
    /// Shaped for a GPU (64 lanes) rather than a CPU adapter (8 lanes: one 256-bit SIMD
    /// vector on llvmpipe).
    pub gpu: bool,
    /// Every element summed by fma in increasing k (lanes along N in both layouts), as
    /// tp-invariant numerics need.
    pub ordered: bool,
}

impl Skinny {
    /// The variant for `m` rows (the largest block for more).
    pub(crate) fn new(m: usize, vec4: bool, gpu: bool, ordered: bool) -> Self {
        let rows = ROW_BLOCKS.into_iter().find(|&r| r >= m).unwrap_or(MAX_ROWS);
        Skinny {
            rows,
            vec4,
            gpu,
            ordered,
        }
    }

    /// How the lanes split a product with weights in `layout` (see the module docs).
    pub(crate) fn mapping(self, layout: WeightLayout) -> Lanes {
        match (self.ordered, self.gpu, layout) {
            (true, _, _) => Lanes::AlongN,
            (false, true, WeightLayout::OutIn) => Lanes::AlongK,
            (false, false, WeightLayout::InOut) if self.rows <= 4 => Lanes::Sweep,
            _ => Lanes::AlongN,
        }
    }

    /// Every variant the crate can build.
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Skinny> {
        let mut out = Vec::new();
        for rows in ROW_BLOCKS {
            for vec4 in [false, true] {
                for gpu in [false, true] {
                    for ordered in [false, true] {
                        out.push(Skinny {
                            rows,
                            vec4,
                            gpu,
                            ordered,
                        });
                    }
                }
            }
        }
        out
    }

    /// Invocations per workgroup.
    pub(crate) fn lanes(self) -> usize {
        if self.gpu {
            64
        } else {
            8
        }
    }

    /// Units per lane ([`Lanes::AlongN`]) or per workgroup ([`Lanes::AlongK`]) for weights
    /// in `layout`, at most 128 accumulators. Along N on a CPU adapter a workgroup reads a
    /// run of 1 KiB (scalar units) to 4 KiB (vec4) of each row of an `[in, out]` weight,
    /// and each lane 4 rows of an `[out, in]` one a unit; on a GPU a lane holds 1 unit
    /// along N, and along K the workgroup holds 4 (16 vec4 loads a step), whose sums
    /// across its 64 lanes take at most 16 KiB of workgroup memory (WebGPU's minimum). A
    /// sweep holds one unit at a time.
    pub(crate) fn units(self, layout: WeightLayout) -> usize {
        match (self.mapping(layout), self.gpu, layout) {
            (Lanes::AlongN, true, _) => 1,
            (Lanes::AlongN, false, WeightLayout::InOut) => (32 / self.rows).max(4),
            (Lanes::AlongN, false, WeightLayout::OutIn) => 4,
            (Lanes::AlongK, _, _) => (4 / self.rows).max(1),
            (Lanes::Sweep, _, _) => 1,
        }
    }

    /// Output columns per unit.
    pub(crate) fn width(self) -> usize {
        if self.vec4 {
            4
        } else {
            1
        }
    }

    /// Output columns per workgroup of the main entry for `layout` (a sweep's workgroups
    /// share a dispatch's columns between them: at most this many a workgroup).
    pub(crate) fn cols_per_workgroup(self, layout: WeightLayout) -> usize {
        match self.mapping(layout) {
            Lanes::AlongN => self.lanes() * self.units(layout) * self.width(),
            Lanes::AlongK => self.units(layout) * self.width(),
            Lanes::Sweep => SWEEP_COLS,
        }
    }

    /// Bytes of workgroup memory the entries declare (the sums across lanes along K).
    pub(crate) fn workgroup_bytes(self) -> usize {
        if self.mapping(WeightLayout::OutIn) == Lanes::AlongK {
            self.lanes() * self.rows * self.units(WeightLayout::OutIn) * self.width() * 4
        } else {
            0
        }
    }

    /// The fewest rows of K worth a chunk of their own: enough K steps for every lane
    /// (along K) and for the loop to dwarf the chunk's fixed costs.
    pub(crate) fn min_chunk(self, layout: WeightLayout) -> usize {
        match self.mapping(layout) {
            Lanes::AlongN => 128,
            Lanes::AlongK => (self.lanes() * self.width() * 8).max(128),
            Lanes::Sweep => SWEEP_ROWS,
        }
    }

    /// The family's WGSL for this variant after the shared pieces (activation, parameters
    /// and weight prelude): the main entries `main_in_out` and `main_out_in`
    /// (`shaders/gemm_skinny_entry.wgsl` or `gemm_skinny_sweep.wgsl`), then
    /// `shaders/gemm_skinny.wgsl` (the unit type, helpers and the `finish` entry), each a
    /// template filled for the variant.
    ///
    /// `quant`: the weights are a quantized format, whose prelude splits its vec4 load in
    /// block factors and quant bytes (`shaders/weights_quant.wgsl`); a vec4 `[out, in]`
    /// entry along N keeps each column's factors over their group of units (the same
    /// values, so the same bits).
    ///
    /// # Errors
    /// A template the crate wrote wrong (see [`template::render`]).
    pub(crate) fn source(self, quant: bool) -> Result<String> {
        let mut s = self.entry("main_in_out", WeightLayout::InOut, false)?;
        s += "\n";
        s += &self.entry("main_out_in", WeightLayout::OutIn, quant)?;
        s += "\n";
        let block = self.units(WeightLayout::OutIn) * self.rows;
        let slots = Slots::new()
            .text("T", if self.vec4 { "vec4<f32>" } else { "f32" })
            .text("ZERO", if self.vec4 { "vec4<f32>(0.0)" } else { "0.0" })
            .num("WIDTH", self.width())
            .flag("VEC4", self.vec4)
            .flag("RED", self.workgroup_bytes() > 0)
            .num("RED_LEN", self.lanes() * block)
            .num("FINISH_LANES", FINISH_LANES);
        s += &template::render("gemm_skinny.wgsl", GEMM_SKINNY_WGSL, &slots)?;
        Ok(s)
    }

    /// One main entry point (see `shaders/gemm_skinny_entry.wgsl`).
    fn entry(self, name: &str, layout: WeightLayout, quant: bool) -> Result<String> {
        let mapping = self.mapping(layout);
        if mapping == Lanes::Sweep {
            return self.sweep_entry(name);
        }
        let units = self.units(layout);
        let slots = Slots::new()
            .text("ENTRY", name)
            .flag("ALONG_K", mapping == Lanes::AlongK)
            .flag("IN_OUT", layout == WeightLayout::InOut)
            .flag("VEC4", self.vec4)
            .flag(
                "QUANT",
                quant && self.vec4 && mapping == Lanes::AlongN && layout == WeightLayout::OutIn,
            )
            .num("WIDTH", self.width())
            .num("LANES", self.lanes())
            .num("ROWS", self.rows)
            .num("UNITS", units)
            .num(
                "UNIT_STRIDE",
                if mapping == Lanes::AlongN {
                    self.lanes()
                } else {
                    1
                },
            )
            .num("BLOCK", self.rows * units);
        template::render("gemm_skinny_entry.wgsl", GEMM_SKINNY_ENTRY_WGSL, &slots)
    }
}

mod sweep;
#[cfg(test)]
mod tests;
