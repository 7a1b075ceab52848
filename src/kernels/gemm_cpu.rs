//! The entry points of `shaders/gemm_cpu.wgsl`, written out at pipeline-build time.
//!
//! llvmpipe keeps an indexed WGSL array in memory, not in registers, so the CPU family's
//! register block is spelled out: every accumulator of a [`ROWS`] x (4 [`COLS4`]) block
//! of Y is a named variable, `a{i}_{j}` holding row `row0 + i`, vec4 column `first + j`,
//! and the K loop updates each one by name. The hand-written part of the shader (its
//! bindings, `start` and `store_row`) stays in the `.wgsl` file; this module writes the
//! `ROWS` and `COLS4` constants and the two entry points, `main_in_out` (weights stored
//! `[in, out]`, an fma per k) and `main_out_in` (`[out, in]`, a dot product per 4 k).
//!
//! [`ROWS`], [`COLS4`] and [`LANES`] are the only copy of the block's size: the GEMM's
//! dispatch grid (src/ops/matmul/mod.rs) is derived from them.

use crate::settings::WeightLayout;

/// Rows of Y per workgroup (and per invocation).
pub(crate) const ROWS: usize = 16;
/// vec4 columns of Y per invocation.
pub(crate) const COLS4: usize = 4;
/// Invocations per workgroup, side by side along the columns of Y: one 256-bit SIMD
/// vector of f32 on llvmpipe.
pub(crate) const LANES: usize = 8;

/// The constants and entry points for a `rows` x (4 `cols4`) register block, `rows` and
/// `cols4` at least 1.
pub(crate) fn entry_points(rows: usize, cols4: usize) -> String {
    let mut s = format!(
        "const ROWS: u32 = {rows}u;\n// vec4 columns per invocation\nconst COLS4: u32 = {cols4}u;\n\n"
    );
    s.push_str(&entry("main_in_out", WeightLayout::InOut, rows, cols4));
    s.push('\n');
    s.push_str(&entry("main_out_in", WeightLayout::OutIn, rows, cols4));
    s
}

/// One statement line: the `items` of `0..count`, each written by `item`, side by side.
fn line(indent: &str, count: usize, item: impl Fn(usize) -> String) -> String {
    let items: Vec<String> = (0..count).map(item).collect();
    format!("{indent}{}\n", items.join(" "))
}

/// One entry point, ending with its closing brace and a newline.
fn entry(name: &str, layout: WeightLayout, rows: usize, cols4: usize) -> String {
    const I1: &str = "    ";
    const I2: &str = "        ";
    let mut s = format!(
        "@compute @workgroup_size({LANES}, 1, 1)\nfn {name}(\n\
         {I1}@builtin(local_invocation_id) lid: vec3<u32>,\n\
         {I1}@builtin(workgroup_id) wid: vec3<u32>,\n) {{\n\
             {I1}let p = load_params();\n\
         {I1}let n4 = p.n / 4u;\n\
         {I1}let k4 = p.k / 4u;\n\
         {I1}let first = (wid.x * {LANES}u + lid.x) * COLS4;\n\
         {I1}let row0 = wid.y * ROWS;\n"
    );
    s += &line(I1, cols4, |j| {
        format!("let c{j} = min(first + {j}u, n4 - 1u);")
    });
    s += &format!(
        "{I1}// Rows past M repeat row M - 1 (never stored), so every load stays in bounds.\n"
    );
    for i in (0..rows).step_by(2) {
        s += &line(I1, (rows - i).min(2), |d| {
            let q = i + d;
            format!("let x{q} = (p.x_offset + min(row0 + {q}u, p.m - 1u) * p.ldx) / 4u;")
        });
    }
    s += &format!("{I1}let wo = p.w_offset / 4u;\n{I1}let lw = p.ldw / 4u;\n");
    for i in 0..rows {
        s += &line(I1, cols4, |j| {
            format!("var a{i}_{j} = start(p, row0 + {i}u, c{j});")
        });
    }
    s += &format!("{I1}for (var kq = 0u; kq < k4; kq++) {{\n");
    for j in 0..cols4 {
        s += &line(I2, 4, |u| match layout {
            WeightLayout::InOut => format!("let b{j}_{u} = w[wo + (kq * 4u + {u}u) * lw + c{j}];"),
            WeightLayout::OutIn => format!("let b{j}_{u} = w[wo + (c{j} * 4u + {u}u) * lw + kq];"),
        });
    }
    for i in 0..rows {
        s += &format!("{I2}let v{i} = x[x{i} + kq];\n");
        for j in 0..cols4 {
            let update = match layout {
                // fma in increasing k: x, y, z, w of v are k = 4 kq + 0..4.
                WeightLayout::InOut => "xyzw"
                    .chars()
                    .enumerate()
                    .fold(format!("a{i}_{j}"), |acc, (u, c)| {
                        format!("fma(vec4<f32>(v{i}.{c}), b{j}_{u}, {acc})")
                    }),
                WeightLayout::OutIn => format!(
                    "a{i}_{j} + vec4<f32>({})",
                    (0..4)
                        .map(|u| format!("dot(v{i}, b{j}_{u})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            s += &format!("{I2}a{i}_{j} = {update};\n");
        }
    }
    s += &format!("{I1}}}\n");
    for i in 0..rows {
        s += &line(I1, cols4, |j| {
            format!("store_row(p, row0 + {i}u, first + {j}u, a{i}_{j});")
        });
    }
    s += "}\n";
    s
}
