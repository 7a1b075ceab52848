// GEMM, one output element per invocation, with a fused epilogue: Y = act(X . W + bias).
// The path for small or odd shapes (any M, N, K, either layout; no alignment needed).
// Requires shaders/activation.wgsl prepended (src/kernels.rs does it).
//
// Bindings (all f32, row-major):
//   0: x     storage, read       element (m, k) at x[p.x_offset + m * p.ldx + k], m < M, k < K
//   1: w     storage, read       [K, N] when W_OUT_IN == false (weights stored [in, out]),
//                                [N, K] when W_OUT_IN == true  (PyTorch nn.Linear.weight)
//   2: bias  storage, read       [N]; read only when HAS_BIAS (otherwise any buffer)
//   3: y     storage, read_write [M, N]
//   4: p     uniform Params
//
// Dispatch: workgroups (ceil(N / 16), ceil(M / 16), 1) of 16 x 16 invocations; invocation
// (col, row) computes y[row, col], accumulating k in increasing order.

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

override W_OUT_IN: bool = false;
override HAS_BIAS: bool = false;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let xs = p.x_offset + row * p.ldx;
    var acc = 0.0;
    if (W_OUT_IN) {
        let ws = col * p.k;
        for (var k = 0u; k < p.k; k++) {
            acc = acc + x[xs + k] * w[ws + k];
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            acc = acc + x[xs + k] * w[k * p.n + col];
        }
    }
    if (HAS_BIAS) {
        acc = acc + bias[col];
    }
    y[row * p.n + col] = activate(acc);
}
