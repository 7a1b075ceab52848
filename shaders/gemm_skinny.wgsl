// GEMM for few rows of X (decode steps), with split-K and a fused epilogue:
// Y = act(X . W + bias). Requires activation.wgsl, gemm_params.wgsl and the weight
// format's prelude (shaders/weights_*.wgsl, scalar or vec4 unit as T) prepended, and the
// main entries appended (gemm_skinny_entry.wgsl or gemm_skinny_sweep.wgsl). This file is a
// template (src/kernels/template.rs has the syntax) filled per variant by
// src/kernels/gemm_skinny/mod.rs: the unit type T (f32, or vec4<f32> with VEC4), its WIDTH
// in columns, ZERO, and RED (the entries sum across lanes along K in workgroup memory,
// RED_LEN units).
//
// Bindings (array<T>, row-major, each a band of rows of a tensor; offsets and leading
// dimensions in f32 elements as gemm_params.wgsl describes them, all multiples of WIDTH,
// as are N and every K chunk, which src/ops/matmul/mod.rs checks):
//   0: x     storage, read       main entries: X, row m from unit (x_offset + m ldx) / WIDTH;
//                                finish: the partial sums, [chunks * M, N] row-major
//   1: w     storage, read       [in, out] (main_in_out) or [out, in] (main_out_in) at
//                                w_offset, leading dimension ldw; unused by finish;
//                                declared by the weight prelude, read only through load_w
//                                (scalar) or load_w4 (vec4): load_wt below
//   2: bias  storage, read       unit c at bias_offset / WIDTH + c; read only when HAS_BIAS
//   3: y     storage, read_write main entries: Y, or the partial sums when K is split
//                                (chunk s, row m from unit (y_offset + (s M + m) ldy) / WIDTH);
//                                finish: Y
//   4: params uniform array<Params, 2>, two equal copies, read as p: main entries: K
//                                chunk of workgroup row s is [s k_chunk, min((s + 1) k_chunk,
//                                K)); finish: p.k is the number of chunks to add
//
// Dispatch (src/kernels/gemm_skinny/mod.rs gives the sizes and the lane mappings):
//   lanes along N or K: workgroups (ceil(N / columns per workgroup), chunks, 1), each
//     invocation a ROWS x (units) block of Y over its K chunk;
//   sweep: workgroups (column groups, ceil(chunks / 8), 1) of 8, lane l of workgroup
//     (x, y) the K block (chunk) 8 y + l of p.k_chunk rows, sweeping the units
//     [x span, (x + 1) span), span = ceil(N / WIDTH / column groups);
//   finish: workgroups (at most ceil(N / WIDTH / 64), at most M, 1) of 64, each invocation
//     looping over the units and rows its grid does not reach.
//
// Accumulation: fma in increasing k from 0, or from Y's stored value when p.accumulate != 0
// (one chunk only; src/ops/matmul/skinny.rs never asks it of a split product), so one
// chunk along N gives the bits of gemm_simple.wgsl. finish adds the chunks' sums in
// increasing chunk order, starting from Y's stored value when p.accumulate != 0, then the
// bias and activation.

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].m & 1u];
}

alias T = {{T}};
const WIDTH: u32 = {{WIDTH}}u;
const ZERO: T = {{ZERO}};

fn activate_t(v: T) -> T {
//# if VEC4
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
//# else
    return activate(v);
//# end
}

// Unit i of W (the weight prelude's load, in the variant's unit).
fn load_wt(i: u32) -> T {
//# if VEC4
    return load_w4(i);
//# else
    return load_w(i);
//# end
}
//# if RED

// Each lane's block of sums, lane-major, for the sum across lanes.
var<workgroup> red: array<T, {{RED_LEN}}>;
//# end

// The starting value of the accumulator of row `row` (clamped to the last one), unit `c`.
fn start(p: Params, row: u32, c: u32) -> T {
    if (p.accumulate != 0u) {
        return y[(p.y_offset + min(row, p.m - 1u) * p.ldy) / WIDTH + c];
    }
    return ZERO;
}

// Stores row `row`, unit `c` of chunk `chunk`'s result, with the epilogue, when both are
// inside Y.
fn store(p: Params, row: u32, c: u32, chunk: u32, v: T) {
    if (row < p.m && c < p.n / WIDTH) {
        var out = v;
        if (HAS_BIAS) {
            out = out + bias[p.bias_offset / WIDTH + c];
        }
        y[(p.y_offset + (chunk * p.m + row) * p.ldy) / WIDTH + c] = activate_t(out);
    }
}

// Y's row `row`, unit `c` from the p.k chunks' partial sums in x.
fn finish_unit(p: Params, row: u32, c: u32) {
    let nt = p.n / WIDTH;
    if (row >= p.m || c >= nt) {
        return;
    }
    let at = (p.y_offset + row * p.ldy) / WIDTH + c;
    var acc = x[row * nt + c];
    if (p.accumulate != 0u) {
        acc = y[at] + acc;
    }
    for (var s = 1u; s < p.k; s++) {
        acc = acc + x[(s * p.m + row) * nt + c];
    }
    if (HAS_BIAS) {
        acc = acc + bias[p.bias_offset / WIDTH + c];
    }
    y[at] = activate_t(acc);
}

// Y from the chunks' partial sums: workgroups of FINISH_LANES invocations, each looping
// over the units and rows its grid does not reach.
@compute @workgroup_size({{FINISH_LANES}}, 1, 1)
fn finish(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = load_params();
    for (var row = gid.y; row < p.m; row += groups.y) {
        for (var c = gid.x; c < p.n / WIDTH; c += groups.x * {{FINISH_LANES}}u) {
            finish_unit(p, row, c);
        }
    }
}
