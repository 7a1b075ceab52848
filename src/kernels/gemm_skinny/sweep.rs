//! The sweep entry of the skinny family ([`Lanes::Sweep`](super::Lanes::Sweep)):
//! `[in, out]` weights on CPU adapters, each lane a block of rows of K sweeping the
//! columns.

use super::{Skinny, SWEEP_LANES, SWEEP_ROWS};
use crate::error::Result;
use crate::kernels::template::{self, Slots};

const GEMM_SKINNY_SWEEP_WGSL: &str = include_str!("../../../shaders/gemm_skinny_sweep.wgsl");

impl Skinny {
    /// The sweep entry for `[in, out]` weights (see
    /// [`Lanes::Sweep`](super::Lanes::Sweep) and `shaders/gemm_skinny_sweep.wgsl`).
    pub(super) fn sweep_entry(self, name: &str) -> Result<String> {
        let slots = Slots::new()
            .text("ENTRY", name)
            .num("LANES", SWEEP_LANES)
            .num("ROWS", self.rows)
            .num("KB", SWEEP_ROWS)
            .num("QUADS", SWEEP_ROWS / 4)
            .flag("VEC4", self.vec4);
        template::render("gemm_skinny_sweep.wgsl", GEMM_SKINNY_SWEEP_WGSL, &slots)
    }
}
