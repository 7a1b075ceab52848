// The gated activations of the MLP (src/ops/model/mod.rs `gated_mul`): SwiGLU (Llama)
// out[t, j] = silu(x[t, j]) * x[t, cols + j] for x = [gate | up] (entry silu_mul), and
// GeGLU (Gemma) with gelu's tanh approximation, torch's gelu(approximate='tanh'), in its
// place (entry gelu_tanh_mul); and their backward (entries silu_mul_backward,
// gelu_tanh_mul_backward): given d_out = dL/d(out), out[t, j] = d_out act'(gate) up and
// out[t, cols + j] = d_out act(gate). Requires gelu.wgsl prepended (src/kernels/mod.rs).
// Row-major f32; each tensor binding is one buffer.
//
// Bindings (the GEMMs' layout; binding 2 is not read):
//   0: x       storage, read        [rows, 2 cols], [gate | up]
//   1: d_out   storage, read        the backward's [rows, cols]; not read by the forward
//   3: out     storage, read_write  the forward's [rows, cols]; the backward's [rows, 2 cols]
//   4: params  uniform array<SiluMulParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles element base + i of the forward's out (of d_out) for i < count.

struct SiluMulParams {
    count: u32,
    row_stride: u32,
    base: u32,
    // Columns of out.
    cols: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> d_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<SiluMulParams, 2>;

fn load_params() -> SiluMulParams {
    return params[params[0].count & 1u];
}

@compute @workgroup_size(256, 1, 1)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let j = g % p.cols;
    let gate = x[t * 2u * p.cols + j];
    let up = x[t * 2u * p.cols + p.cols + j];
    out[g] = gate / (1.0 + exp(-gate)) * up;
}

// |y| past which tanh(y) rounds to +-1 in f32 (1 - tanh(10) < 2^-27): clamping there
// changes no result and keeps every backend's tanh off arguments whose exponentials
// overflow.
const TANH_SATURATED: f32 = 10.0;
// sqrt(2 / pi) and the cubic's coefficient, as torch's GeluKernel writes them
// (kBeta = M_SQRT2 * M_2_SQRTPI * 0.5, kKappa = 0.044715).
const GELU_BETA: f32 = 0.7978845608028654;
const GELU_KAPPA: f32 = 0.044715;

@compute @workgroup_size(256, 1, 1)
fn gelu_tanh_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let j = g % p.cols;
    let gate = x[t * 2u * p.cols + j];
    let up = x[t * 2u * p.cols + p.cols + j];
    out[g] = gelu_tanh(gate) * up;
}

// torch: 0.5 * x * (1 + tanh(kBeta * (x + kKappa * x^3))).
fn gelu_tanh(gate: f32) -> f32 {
    let inner = GELU_BETA * (gate + GELU_KAPPA * (gate * gate * gate));
    return 0.5 * gate * (1.0 + tanh(clamp(inner, -TANH_SATURATED, TANH_SATURATED)));
}

// silu'(g) = sigma(g) (1 + g (1 - sigma(g))), sigma(g) = 1 / (1 + e^-g) (e^-g overflowing
// to +inf gives sigma 0: the limit).
@compute @workgroup_size(256, 1, 1)
fn silu_mul_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let j = g % p.cols;
    let at = t * 2u * p.cols + j;
    let gate = x[at];
    let up = x[at + p.cols];
    let d = d_out[g];
    let sig = 1.0 / (1.0 + exp(-gate));
    out[at] = d * up * (sig * (1.0 + gate * (1.0 - sig)));
    out[at + p.cols] = d * (gate / (1.0 + exp(-gate)));
}

@compute @workgroup_size(256, 1, 1)
fn gelu_tanh_mul_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let j = g % p.cols;
    let at = t * 2u * p.cols + j;
    let gate = x[at];
    let up = x[at + p.cols];
    let d = d_out[g];
    out[at] = gelu_tanh_grad(gate, d * up);
    out[at + p.cols] = d * gelu_tanh(gate);
}
