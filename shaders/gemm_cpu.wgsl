// GEMM for CPU adapters (lavapipe / llvmpipe), with a fused epilogue: Y = act(X . W + bias).
// Requires activation.wgsl, gemm_params.wgsl and the weight format's prelude
// (shaders/weights_*.wgsl, vec4 unit) prepended and the entry points appended
// (src/kernels/gemm_cpu.rs does both).
//
// llvmpipe runs a workgroup of 8 invocations as one 256-bit SIMD vector, with no workgroup
// memory worth having, and (Mesa 22.3, measured) every storage load costs one load per
// lane whatever its address. So the kernel is bound by the number of loads per FMA: each
// invocation keeps a ROWS-row x (4 COLS4)-column block of Y in registers (16 x 16: 64
// vec4 accumulators), and every load is a vec4 (X along k, W along n or k). Rows come from
// the workgroup id and columns from the lane; no workgroup memory, no barrier. Measured
// on 2 cores: 1 x 4 blocks with scalar X loads 5 GFLOP/s, 16 x 4 with vec4 X 12, 16 x 16
// 28.
//
// This file is a template (src/kernels/template.rs): the slots ROWS and COLS4 and the
// entry points main_in_out and main_out_in (gemm_cpu_entry.wgsl) are filled when the
// pipeline is built (WGSL cannot keep an indexed array in registers on llvmpipe, so every
// accumulator is a named variable): a{i}_{j} holds row row0 + i, vec4 column first + j.
// ROWS, COLS4 and the 8 invocations per workgroup are the Rust constants the dispatch is
// sized by (src/kernels/gemm_cpu.rs).
//
// Bindings (vec4<f32>, row-major; each a band of rows of a tensor, src/tensor.rs; offsets
// and leading dimensions in f32 elements, all multiples of 4, as are N and K, which
// src/ops/matmul/mod.rs checks):
//   0: x     storage, read       row m of X starts at vec4 (p.x_offset + m * p.ldx) / 4
//   1: w     storage, read       declared by the weight prelude, read only as load_w4(unit);
//                                main_in_out (weights stored [in, out]): row k of W starts at
//                                vec4 (p.w_offset + k * p.ldw) / 4; main_out_in ([out, in]):
//                                row n (output column n) starts at (p.w_offset + n * p.ldw) / 4
//   2: bias  storage, read       vec4 j at (p.bias_offset / 4) + j; read only when HAS_BIAS
//   3: y     storage, read_write row m starts at vec4 (p.y_offset + m * p.ldy) / 4
//   4: params uniform array<Params, 2>, two equal copies
// p.accumulate != 0: Y starts from its current value (K split in blocks, epilogue on the
// last one), which keeps the fma order, and the bits, of an unsplit sum.
//
// Dispatch: workgroups (ceil(n4 / (8 COLS4)), ceil(M / ROWS), 1) of 8 invocations; with
// ROWS = 16, COLS4 = 4: (ceil(n4 / 32), ceil(M / 16), 1).
//
// Each output element accumulates its K products by fma in increasing k (main_in_out), or
// four at a time as a dot product of consecutive k (main_out_in); either way its bits
// depend only on its row of X and its column of W, never on its position.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<Params, 2>;

// Rows of Y per workgroup (and per invocation).
const ROWS: u32 = {{ROWS}}u;
// vec4 columns of Y per invocation.
const COLS4: u32 = {{COLS4}}u;

fn load_params() -> Params {
    return params[params[0].m & 1u];
}

fn activate4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// Where row `row` (clamped to the last one), vec4 column `c4` of Y lives.
fn y_at(p: Params, row: u32, c4: u32) -> u32 {
    return (p.y_offset + min(row, p.m - 1u) * p.ldy) / 4u + c4;
}

// The starting value of an accumulator: 0, or Y's partial sum from earlier K blocks.
fn start(p: Params, row: u32, c4: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), y[y_at(p, row, c4)], p.accumulate != 0u);
}

fn store_row(p: Params, row: u32, c4: u32, v: vec4<f32>) {
    if (row < p.m && c4 < p.n / 4u) {
        var b = vec4<f32>(0.0);
        if (HAS_BIAS) {
            b = bias[p.bias_offset / 4u + c4];
        }
        y[y_at(p, row, c4)] = activate4(v + b);
    }
}
