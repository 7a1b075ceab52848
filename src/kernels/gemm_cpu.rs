//! The CPU GEMM family, `shaders/gemm_cpu.wgsl` and its entry points
//! (`shaders/gemm_cpu_entry.wgsl`), templates filled at pipeline-build time.
//!
//! llvmpipe keeps an indexed WGSL array in memory, not in registers, so the CPU family's
//! register block is spelled out: every accumulator of a [`ROWS`] x (4 [`COLS4`]) block
//! of Y is a named variable, `a{i}_{j}` holding row `row0 + i`, vec4 column `first + j`,
//! and the K loop updates each one by name (the templates' `//# for` blocks unroll them).
//! The entry points are `main_in_out` (weights stored `[in, out]`, an fma per k),
//! `main_out_in` (`[out, in]`, a dot product per 4 k) and `main_tn` (`[in, out]` with X
//! read transposed: `matmul_tn`'s weight gradients).
//!
//! [`ROWS`], [`COLS4`] and [`LANES`] are the only copy of the block's size: the GEMM's
//! dispatch grid (src/ops/matmul/mod.rs) is derived from them.

use super::template::{self, Slots};
use crate::error::Result;
use crate::kernels::settings::WeightLayout;

const GEMM_CPU_WGSL: &str = include_str!("../../shaders/gemm_cpu.wgsl");
const GEMM_CPU_ENTRY_WGSL: &str = include_str!("../../shaders/gemm_cpu_entry.wgsl");

/// Rows of Y per workgroup (and per invocation).
pub(crate) const ROWS: usize = 16;
/// vec4 columns of Y per invocation.
pub(crate) const COLS4: usize = 4;
/// Invocations per workgroup, side by side along the columns of Y: one 256-bit SIMD
/// vector of f32 on llvmpipe.
pub(crate) const LANES: usize = 8;

/// `shaders/gemm_cpu.wgsl` (the hand-written part, its constants filled) and the entry
/// points of `shaders/gemm_cpu_entry.wgsl` for a `rows` x (4 `cols4`) register block,
/// `rows` and `cols4` at least 1 ([`entry_points`]).
///
/// # Errors
/// A template the crate wrote wrong (see [`template::render`]).
pub(crate) fn source(rows: usize, cols4: usize) -> Result<String> {
    let slots = Slots::new()
        .num("ROWS", rows)
        .num("COLS4", cols4)
        .num("LANES", LANES);
    let mut s = template::render("gemm_cpu.wgsl", GEMM_CPU_WGSL, &slots)?;
    s += &entry_points(rows, cols4)?;
    Ok(s)
}

/// The entry points for a `rows` x (4 `cols4`) register block: `main_in_out`,
/// `main_out_in`, and where `rows` is a multiple of 4 `main_tn` (X read transposed).
pub(crate) fn entry_points(rows: usize, cols4: usize) -> Result<String> {
    let mut s = String::new();
    let mut entries = vec![
        ("main_in_out", WeightLayout::InOut, false),
        ("main_out_in", WeightLayout::OutIn, false),
    ];
    if rows.is_multiple_of(4) {
        entries.push(("main_tn", WeightLayout::InOut, true));
    }
    for (entry, layout, x_t) in entries {
        let slots = Slots::new()
            .num("ROWS", rows)
            .num("ROWS4", rows / 4)
            .num("COLS4", cols4)
            .num("LANES", LANES)
            .text("ENTRY", entry)
            .flag("IN_OUT", layout == WeightLayout::InOut)
            .flag("X_T", x_t);
        s += "\n";
        s += &template::render("gemm_cpu_entry.wgsl", GEMM_CPU_ENTRY_WGSL, &slots)?;
    }
    Ok(s)
}
