// GEMM, one output element per invocation, with a fused epilogue: Y = act(X . W + bias).
// The path for small or odd shapes (any M, N, K, either layout; no alignment needed).
// Requires shaders/activation.wgsl prepended (src/kernels.rs does it).
//
// Bindings (all f32, row-major; each a band of rows of a tensor, src/tensor.rs):
//   0: x     storage, read       element (m, k) at x[p.x_offset + m * p.ldx + k], m < M, k < K
//   1: w     storage, read       W_OUT_IN == false (weights stored [in, out]): element (k, n)
//                                at w[p.w_offset + k * p.ldw + n]; W_OUT_IN == true (PyTorch
//                                nn.Linear.weight, [out, in]): at w[p.w_offset + n * p.ldw + k]
//   2: bias  storage, read       element n at bias[p.bias_offset + n]; read only when HAS_BIAS
//   3: y     storage, read_write element (m, n) at y[p.y_offset + m * p.ldy + n]
//   4: p     uniform Params
// p.accumulate != 0: Y starts from its current value instead of 0 (K split in blocks; the
// epilogue constants are then set for the last block only). Starting each element's sum
// from the stored partial keeps the order, and the bits, of an unsplit sum.
//
// Dispatch: workgroups (ceil(N / 16), ceil(M / 16), 1) of 16 x 16 invocations; invocation
// (col, row) computes y[row, col], accumulating k in increasing order by fma, exactly as
// gemm_cpu.wgsl's main_in_out and gemm_tiled*.wgsl do: for a given element all three give
// the same bits (the tp-invariant mode relies on it).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    ldx: u32,
    x_offset: u32,
    ldy: u32,
    y_offset: u32,
    ldw: u32,
    w_offset: u32,
    bias_offset: u32,
    accumulate: u32,
    _pad: u32,
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
    let at = p.y_offset + row * p.ldy + col;
    var acc = select(0.0, y[at], p.accumulate != 0u);
    if (W_OUT_IN) {
        let ws = p.w_offset + col * p.ldw;
        for (var k = 0u; k < p.k; k++) {
            acc = fma(x[xs + k], w[ws + k], acc);
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            acc = fma(x[xs + k], w[p.w_offset + k * p.ldw + col], acc);
        }
    }
    if (HAS_BIAS) {
        acc = acc + bias[p.bias_offset + col];
    }
    y[at] = activate(acc);
}
