// GeLU's tanh approximation's derivative, shared by activation.wgsl (the GeLU backward)
// and swiglu.wgsl (GeGLU's), prepended to each by src/kernels/mod.rs; no bindings.

// d * gelu_tanh'(v): 0.5 (1 + tanh(u)) + 0.5 x sech(u)^2 u', u = c (x + 0.044715 x^3), with
// 1 - tanh(u) = s = 2 / (exp(2u) + 1) and sech(u)^2 = s (2 - s): no cancellation of
// 1 - tanh^2 near +-1. Past |x| = 20 the second term is 0 in f32; x is clamped there so
// that x^2 never overflows into 0 * inf.
fn gelu_tanh_grad(v: f32, d: f32) -> f32 {
    let inner = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    let s = 2.0 / (exp(2.0 * inner) + 1.0);
    let w = clamp(v, -20.0, 20.0);
    let t1 = 0.5 * (2.0 - s);
    let t2 = 0.5 * w * s * (2.0 - s) * 0.7978845608028654 * (1.0 + 0.134145 * w * w);
    return d * (t1 + t2);
}
