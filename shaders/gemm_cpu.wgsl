// GEMM for CPU adapters (lavapipe / llvmpipe), with a fused epilogue: Y = act(X . W + bias).
// Requires shaders/activation.wgsl prepended (src/kernels.rs does it).
//
// llvmpipe runs a workgroup of 8 invocations as one 256-bit SIMD vector. What is cheap there
// is the opposite of a GPU: a load whose address is the same in every lane is one scalar
// load and a broadcast, while a per-lane address costs a load per lane. So the rows of X a
// workgroup reads come from the workgroup id (lane-uniform), each lane owns 4 columns (one
// vec4 of W and Y), and there is no workgroup memory and no barrier. Each invocation keeps
// a 16 x 4 block of Y in registers.
//
// Bindings (f32, row-major; n4 = N / 4, k4 = K / 4):
//   0: x     storage, read       element (m, k) at x[p.x_offset + m * p.ldx + k], m < M, k < K
//   1: w     storage, read       main_in_out: [K, n4] vec4 (weights stored [in, out]);
//                                main_out_in: [N, k4] vec4 (weights stored [out, in])
//   2: bias  storage, read       [n4] vec4; read only when HAS_BIAS (otherwise any buffer)
//   3: y     storage, read_write [M, n4] vec4
//   4: p     uniform Params
// Requirements (checked by src/ops.rs): N % 4 == 0, and K % 4 == 0 for main_out_in.
//
// Dispatch: workgroups (ceil(n4 / 8), ceil(M / 16), 1) of 8 invocations.
//
// Each output element accumulates its K products one at a time in increasing k
// (main_in_out) or four at a time as a dot product of consecutive k (main_out_in); either
// way its bits depend only on its row of X and its column of W, never on its position.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    ldx: u32,
    x_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override HAS_BIAS: bool = false;

const ROWS: u32 = 16u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

fn activate4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// Offsets into x of the block's 16 rows; rows past M repeat row M - 1 (their results are
// never stored), so every load stays in bounds without a branch.
fn row_starts(row0: u32) -> array<u32, 16> {
    var starts: array<u32, 16>;
    for (var i = 0u; i < ROWS; i++) {
        starts[i] = p.x_offset + min(row0 + i, p.m - 1u) * p.ldx;
    }
    return starts;
}

fn store(row0: u32, c4: u32, acc: array<vec4<f32>, 16>) {
    let n4 = p.n / 4u;
    var b = vec4<f32>(0.0);
    if (HAS_BIAS) {
        b = bias[c4];
    }
    for (var i = 0u; i < ROWS; i++) {
        let row = row0 + i;
        if (row < p.m) {
            y[row * n4 + c4] = activate4(acc[i] + b);
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn main_in_out(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let n4 = p.n / 4u;
    let c4 = min(wid.x * 8u + lid.x, n4 - 1u);
    let row0 = wid.y * ROWS;
    let xs = row_starts(row0);
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < ROWS; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var k = 0u; k < p.k; k++) {
        let b = w[k * n4 + c4];
        for (var i = 0u; i < ROWS; i++) {
            acc[i] = acc[i] + x[xs[i] + k] * b;
        }
    }
    if (wid.x * 8u + lid.x < n4) {
        store(row0, c4, acc);
    }
}

@compute @workgroup_size(8, 1, 1)
fn main_out_in(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let c4 = min(wid.x * 8u + lid.x, n4 - 1u);
    let row0 = wid.y * ROWS;
    let xs = row_starts(row0);
    // Rows of W (= columns of Y) this lane reads.
    let w0 = (c4 * 4u) * k4;
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < ROWS; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    for (var kq = 0u; kq < k4; kq++) {
        let b0 = w[w0 + kq];
        let b1 = w[w0 + k4 + kq];
        let b2 = w[w0 + 2u * k4 + kq];
        let b3 = w[w0 + 3u * k4 + kq];
        for (var i = 0u; i < ROWS; i++) {
            let s = xs[i] + kq * 4u;
            let a = vec4<f32>(x[s], x[s + 1u], x[s + 2u], x[s + 3u]);
            acc[i] = acc[i] + vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        }
    }
    if (wid.x * 8u + lid.x < n4) {
        store(row0, c4, acc);
    }
}
