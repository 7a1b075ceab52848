//! The skinny GEMM family (`shaders/gemm_skinny.wgsl`), written out at pipeline-build
//! time: products with few rows of X (decode steps, `m` up to [`MAX_ROWS`]), which read
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

use crate::settings::WeightLayout;

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

    /// The generated part of the shader: the unit type, the block constants and the entry
    /// points `main_in_out`, `main_out_in` and `finish`.
    pub(crate) fn source(self) -> String {
        let (t, zero) = if self.vec4 {
            ("vec4<f32>", "vec4<f32>(0.0)")
        } else {
            ("f32", "0.0")
        };
        let act = if self.vec4 {
            "vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w))"
        } else {
            "activate(v)"
        };
        let mut s = format!(
            "alias T = {t};\nconst WIDTH: u32 = {w}u;\nconst ZERO: T = {zero};\n\n\
             fn activate_t(v: T) -> T {{\n    return {act};\n}}\n\n",
            w = self.width(),
        );
        if self.workgroup_bytes() > 0 {
            let block = self.units(WeightLayout::OutIn) * self.rows;
            s += &format!(
                "// Each lane's block of sums, lane-major, for the sum across lanes.\n\
                 var<workgroup> red: array<T, {}>;\n\n",
                self.lanes() * block
            );
        }
        s += &self.entry("main_in_out", WeightLayout::InOut);
        s.push('\n');
        s += &self.entry("main_out_in", WeightLayout::OutIn);
        s.push('\n');
        s += &format!(
            "@compute @workgroup_size({FINISH_LANES}, 1, 1)\n\
             fn finish(\n\
             \x20   @builtin(global_invocation_id) gid: vec3<u32>,\n\
             \x20   @builtin(num_workgroups) groups: vec3<u32>,\n) {{\n\
             \x20   let p = load_params();\n\
             \x20   for (var row = gid.y; row < p.m; row += groups.y) {{\n\
             \x20       for (var c = gid.x; c < p.n / WIDTH; c += groups.x * {FINISH_LANES}u) {{\n\
             \x20           finish_unit(p, row, c);\n\
             \x20       }}\n\
             \x20   }}\n}}\n"
        );
        s
    }

    /// Unit `j`'s offset from the lane's first (along N: adjacent lanes own adjacent
    /// units) or from the workgroup's first (along K).
    fn unit_offset(self, j: usize, mapping: Lanes) -> usize {
        match mapping {
            Lanes::AlongN => j * self.lanes(),
            Lanes::AlongK | Lanes::Sweep => j,
        }
    }

    /// One main entry point, ending with its closing brace and a newline.
    fn entry(self, name: &str, layout: WeightLayout) -> String {
        const I1: &str = "    ";
        const I2: &str = "        ";
        let mapping = self.mapping(layout);
        if mapping == Lanes::Sweep {
            return self.sweep_entry(name);
        }
        let (rows, units, lanes) = (self.rows, self.units(layout), self.lanes());
        let along_k = mapping == Lanes::AlongK;
        let (first, step0, step) = if along_k {
            (format!("wid.x * {units}u"), "lid.x", format!("{lanes}u"))
        } else {
            (
                format!("wid.x * {}u + lid.x", lanes * units),
                "0u",
                "1u".into(),
            )
        };
        let mut s = format!(
            "@compute @workgroup_size({lanes}, 1, 1)\nfn {name}(\n\
             {I1}@builtin(local_invocation_id) lid: vec3<u32>,\n\
             {I1}@builtin(workgroup_id) wid: vec3<u32>,\n) {{\n\
             {I1}let p = load_params();\n\
             {I1}let nt = p.n / WIDTH;\n\
             {I1}let first = {first};\n\
             {I1}let chunk = wid.y;\n\
             {I1}let k0 = chunk * p.k_chunk;\n\
             {I1}let k1 = min(k0 + p.k_chunk, p.k);\n"
        );
        for j in 0..units {
            s += &format!(
                "{I1}let c{j} = min(first + {}u, nt - 1u);\n",
                self.unit_offset(j, mapping)
            );
        }
        for i in 0..rows {
            s += &format!("{I1}let x{i} = (p.x_offset + min({i}u, p.m - 1u) * p.ldx) / WIDTH;\n");
        }
        for i in 0..rows {
            let line: Vec<String> = (0..units)
                .map(|j| {
                    // Along K the start value joins once, in the sum across lanes.
                    let start = if along_k {
                        "ZERO".to_string()
                    } else {
                        format!("start(p, {i}u, c{j})")
                    };
                    format!("var a{i}_{j} = {start};")
                })
                .collect();
            s += &format!("{I1}{}\n", line.join(" "));
        }
        s += &self.quad_steps(layout, units, step0, &step);
        if along_k {
            let block = rows * units;
            for i in 0..rows {
                for j in 0..units {
                    s += &format!(
                        "{I1}red[lid.x * {block}u + {}u] = a{i}_{j};\n",
                        i * units + j
                    );
                }
            }
            s += &format!(
                "{I1}workgroupBarrier();\n\
                 {I1}// Lane l's sums are red[l * {block} + t]: add them in lane order.\n\
                 {I1}for (var t = lid.x; t < {block}u; t += {lanes}u) {{\n\
                 {I2}let i = t / {units}u;\n\
                 {I2}let c = first + t % {units}u;\n\
                 {I2}var sum = start(p, i, min(c, nt - 1u));\n\
                 {I2}for (var l = 0u; l < {lanes}u; l++) {{\n\
                 {I2}    sum = sum + red[l * {block}u + t];\n\
                 {I2}}}\n\
                 {I2}store(p, i, c, chunk, sum);\n\
                 {I1}}}\n"
            );
        } else {
            for i in 0..rows {
                for j in 0..units {
                    s += &format!(
                        "{I1}store(p, {i}u, first + {}u, chunk, a{i}_{j});\n",
                        self.unit_offset(j, mapping)
                    );
                }
            }
        }
        s += "}\n";
        s
    }

    /// The K loop of a main entry in steps of WIDTH k (one `vec4` of X a row, a "quad"),
    /// from `k0 / WIDTH + step0` by `step`: along N every step of the chunk in order;
    /// along K (`[out, in]` weights) lane `l` the quads `l, l + lanes, ...`, so adjacent
    /// lanes read adjacent 16 bytes of each row of W.
    fn quad_steps(self, layout: WeightLayout, units: usize, step0: &str, step: &str) -> String {
        const I1: &str = "    ";
        const I2: &str = "        ";
        let w = self.width();
        let mut s =
            format!("{I1}for (var kq = k0 / WIDTH + {step0}; kq < k1 / WIDTH; kq += {step}) {{\n");
        // The weights of this K step: b{j}_{u} is W at k = WIDTH kq + u for unit j (InOut),
        // or unit j's column 4 c + u at the 4 k of this step (OutIn, vec4).
        for j in 0..units {
            for u in 0..w {
                let load = match (layout, self.vec4) {
                    (WeightLayout::InOut, true) => {
                        format!("w[(p.w_offset + (kq * 4u + {u}u) * p.ldw) / 4u + c{j}]")
                    }
                    (WeightLayout::OutIn, true) => {
                        format!("w[(p.w_offset + (c{j} * 4u + {u}u) * p.ldw) / 4u + kq]")
                    }
                    (WeightLayout::InOut, false) => format!("w[p.w_offset + kq * p.ldw + c{j}]"),
                    (WeightLayout::OutIn, false) => format!("w[p.w_offset + c{j} * p.ldw + kq]"),
                };
                s += &format!("{I2}let b{j}_{u} = {load};\n");
            }
        }
        for i in 0..self.rows {
            s += &format!("{I2}let v{i} = x[x{i} + kq];\n");
            for j in 0..units {
                let update = if !self.vec4 {
                    format!("fma(v{i}, b{j}_0, a{i}_{j})")
                } else {
                    // fma in increasing k: x, y, z, w of v are k = 4 kq + 0..4.
                    "xyzw"
                        .chars()
                        .enumerate()
                        .fold(format!("a{i}_{j}"), |acc, (u, c)| {
                            let b = match layout {
                                WeightLayout::InOut => format!("b{j}_{u}"),
                                WeightLayout::OutIn => format!(
                                    "vec4<f32>(b{j}_0.{c}, b{j}_1.{c}, b{j}_2.{c}, b{j}_3.{c})"
                                ),
                            };
                            format!("fma(vec4<f32>(v{i}.{c}), {b}, {acc})")
                        })
                };
                s += &format!("{I2}a{i}_{j} = {update};\n");
            }
        }
        s += &format!("{I1}}}\n");
        s
    }
}

mod sweep;
#[cfg(test)]
mod tests;
