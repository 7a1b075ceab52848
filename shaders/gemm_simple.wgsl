// GEMM, one output element per invocation, with a fused epilogue: Y = act(X . W + bias).
// The path for small or odd shapes (any M, N, K, either layout; no alignment needed),
// with X read transposed (X_T, gemm_scalar.wgsl) too.
// Requires activation.wgsl, gemm_params.wgsl, the weight prelude (shaders/weights_*.wgsl,
// scalar unit) and gemm_scalar.wgsl prepended (src/kernels/mod.rs).
//
// Bindings: x, w, bias, y (f32, row-major bands) and the uniform p, declared in
// gemm_scalar.wgsl; element addressing and p.accumulate (start from Y's partial sums when
// K is split, epilogue on the last block, same bits as unsplit) in gemm_params.wgsl.
//
// Dispatch: workgroups (ceil(N / 16), ceil(M / 16), 1) of 16 x 16 invocations; invocation
// (col, row) computes y[row, col], accumulating k in increasing order by fma, exactly as
// gemm_cpu.wgsl's main_in_out and gemm_tiled*.wgsl do: for a given element all three give
// the same bits (the tp-invariant mode relies on it).

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let row = gid.y;
    let col = gid.x;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let xs = p.x_offset + row * p.ldx;
    let at = p.y_offset + row * p.ldy + col;
    var acc = select(0.0, y[at], p.accumulate != 0u);
    if (X_T) {
        for (var k = 0u; k < p.k; k++) {
            acc = fma(x[p.x_offset + k * p.ldx + row], load_w(p.w_offset + k * p.ldw + col), acc);
        }
    } else if (W_OUT_IN) {
        let ws = p.w_offset + col * p.ldw;
        for (var k = 0u; k < p.k; k++) {
            acc = fma(x[xs + k], load_w(ws + k), acc);
        }
    } else {
        for (var k = 0u; k < p.k; k++) {
            acc = fma(x[xs + k], load_w(p.w_offset + k * p.ldw + col), acc);
        }
    }
    if (HAS_BIAS) {
        acc = acc + bias[p.bias_offset + col];
    }
    y[at] = activate(acc);
}
