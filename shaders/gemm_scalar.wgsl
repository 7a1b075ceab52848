// Bindings and loads shared by the scalar GEMM shaders (gemm_simple, gemm_tiled,
// gemm_tiled_large), prepended to each after gemm_params.wgsl and the weight prelude by
// src/kernels/mod.rs.
// Bindings (f32, row-major, each a band of rows of a tensor; shapes in gemm_params.wgsl):
//   0: x     storage, read
//   1: w     storage, read       [in, out] when W_OUT_IN == false, [out, in] when true;
//                                declared by the weight format's prelude (shaders/weights_*.wgsl,
//                                scalar unit, placed before this file), read only through load_w
//   2: bias  storage, read       read only when HAS_BIAS (otherwise any buffer)
//   3: y     storage, read_write
//   4: params uniform array<Params, 2>, two equal copies

override W_OUT_IN: bool = false;
// X_T: the x binding holds X transposed, [k, m] row-major (a linear layer's weight
// gradients X^T . dY and dY^T . X, read in place, never transposed in memory): X[row, k]
// at x_offset + k * ldx + row, read through load_x_t. Only with W in [in, out]
// (W_OUT_IN false).
override X_T: bool = false;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].m & 1u];
}

// X[row, kk], 0 outside X.
fn load_x(p: Params, row: u32, kk: u32) -> f32 {
    if (row < p.m && kk < p.k) {
        return x[p.x_offset + row * p.ldx + kk];
    }
    return 0.0;
}

// X[row, kk] from X^T (X_T), 0 outside X.
fn load_x_t(p: Params, row: u32, kk: u32) -> f32 {
    if (row < p.m && kk < p.k) {
        return x[p.x_offset + kk * p.ldx + row];
    }
    return 0.0;
}

// W[kk, col] in either layout, 0 outside W.
fn load_w_at(p: Params, kk: u32, col: u32) -> f32 {
    if (kk < p.k && col < p.n) {
        if (W_OUT_IN) {
            return load_w(p.w_offset + col * p.ldw + kk);
        }
        return load_w(p.w_offset + kk * p.ldw + col);
    }
    return 0.0;
}
