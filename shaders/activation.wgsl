// Activation functions shared by matmul.wgsl (fused epilogue) and elementwise.wgsl, and
// their derivatives (elementwise.wgsl's activation_grad, the backward).
// This file is prepended to both sources by src/kernels/mod.rs, after gelu.wgsl; it has
// no bindings.
//
// ACT selects the function (pipeline-overridable constant):
//   0 = identity, 1 = ReLU, 2 = GeLU (tanh approximation), 3 = GeLU (exact, via erf).
override ACT: u32 = 0u;

// tanh(x) = 1 - 2 / (exp(2x) + 1): exp overflowing to +inf gives exactly 1, never NaN
// (a builtin tanh computed as sinh/cosh can give inf/inf for |x| > 44 on some drivers).
fn tanh_safe(x: f32) -> f32 {
    return 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
}

// erf by Abramowitz & Stegun 7.1.26: absolute error <= 1.5e-7 for every x.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

// max(v, 0) that keeps NaN: WGSL's max may return 0 for a NaN input, and GL drivers may
// fold float comparisons as if NaN did not exist (Mesa's llvmpipe GL does), so NaN is
// recognised from its bits.
fn relu(v: f32) -> f32 {
    let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
    return select(v, 0.0, v < 0.0 && !nan);
}

fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: { return relu(v); }
        case 2u: {
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            let inner = 0.7978845608028654 * (v + 0.044715 * v * v * v);
            return 0.5 * v * (1.0 + tanh_safe(inner));
        }
        case 3u: {
            // 0.5 x (1 + erf(x / sqrt(2)))
            return 0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476));
        }
        default: { return v; }
    }
}

// d * act'(v): the activation's backward at its input v, d the gradient of its output.
fn activate_grad(v: f32, d: f32) -> f32 {
    switch ACT {
        case 1u: {
            // 1 above 0, 0 at and below it (as torch's ReLU backward); NaN kept.
            let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
            return select(select(0.0, d, v > 0.0), v, nan);
        }
        case 2u: {
            return gelu_tanh_grad(v, d);
        }
        case 3u: {
            // 0.5 (1 + erf(x / sqrt 2)) + x phi(x), phi the standard normal density.
            let t1 = 0.5 * (1.0 + erf_approx(v * 0.7071067811865476));
            let w = clamp(v, -20.0, 20.0);
            let t2 = w * exp(-0.5 * w * w) * 0.3989422804014327;
            return d * (t1 + t2);
        }
        default: { return d; }
    }
}
