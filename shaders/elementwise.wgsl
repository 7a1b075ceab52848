// Elementwise kernels over row-major f32 matrices.
// Requires shaders/activation.wgsl prepended (src/kernels/mod.rs does it).
//
// Every binding is one band of rows of a tensor (src/tensor.rs), row-major f32:
//   0: a    storage, read       input; [rows, cols] (slice: [*, p.a_cols])
//   1: b    storage, read       add, activation_grad, softcap_grad: same shape as out;
//                               add_row: [cols];
//                               otherwise unused
//   2: out  storage, read_write [rows, cols] (place: [*, p.a_cols])
//   3: params uniform array<Params, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride (p.row_stride = gx * 256) handles element g = p.base + i of the band, for
// i < p.count. A band larger than one dispatch allows is covered by several, each with
// its own base. Row offsets (p.row0) may wrap below 0 in u32: they are only ever added
// to a row index that brings them back in range.

struct Params {
    count: u32,
    cols: u32,
    a_cols: u32,
    row0: u32,
    col0: u32,
    row_stride: u32,
    base: u32,
    value: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(3) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].count & 1u];
}

fn index(p: Params, gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.row_stride;
}

// out = act(a)
@compute @workgroup_size(256, 1, 1)
fn activation(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        out[g] = activate(a[g]);
    }
}

// out = b * act'(a): the activation's backward (a its input, b its output's gradient,
// same shape)
@compute @workgroup_size(256, 1, 1)
fn activation_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        out[g] = activate_grad(a[g], b[g]);
    }
}

// out = a + b
@compute @workgroup_size(256, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        out[g] = a[g] + b[g];
    }
}

// out[r, c] = a[r, c] + b[c]   (a bias broadcast over rows)
@compute @workgroup_size(256, 1, 1)
fn add_row(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        out[g] = a[g] + b[g % p.cols];
    }
}

// out[r, c] = a[(p.row0 + r) * p.a_cols + p.col0 + c]   (a window of a)
@compute @workgroup_size(256, 1, 1)
fn slice(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        let r = g / p.cols;
        let c = g % p.cols;
        out[g] = a[(p.row0 + r) * p.a_cols + p.col0 + c];
    }
}

// out[(p.row0 + r) * p.a_cols + p.col0 + c] = a[r * p.cols + c]   (a into a window of out;
// p.cols = a's columns, p.a_cols = out's columns; the rest of out is left as it is, so
// several dispatches can assemble one matrix from blocks)
@compute @workgroup_size(256, 1, 1)
fn place(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let g = p.base + i;
        let r = g / p.cols;
        let c = g % p.cols;
        out[(p.row0 + r) * p.a_cols + p.col0 + c] = a[g];
    }
}

// out = a * bitcast<f32>(p.value)   (one f32 product per element: Gemma's embeddings
// times sqrt(hidden))
@compute @workgroup_size(256, 1, 1)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        out[p.base + i] = a[p.base + i] * bitcast<f32>(p.value);
    }
}

// out = tanh(a / cap) * cap, cap = bitcast<f32>(p.value): soft-capped logits (Gemma 2's
// final_logit_softcapping, each operation in f32), |a / cap| clamped at 10, where tanh
// rounds to +-1 in f32, so that no backend's tanh sees arguments whose exponentials
// overflow
@compute @workgroup_size(256, 1, 1)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let cap = bitcast<f32>(p.value);
        out[p.base + i] = tanh(clamp(a[p.base + i] / cap, -10.0, 10.0)) * cap;
    }
}

// out = b * (1 - tanh(a / cap)^2): softcap's backward at its input a, b the gradient of
// its output
@compute @workgroup_size(256, 1, 1)
fn softcap_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        let t = tanh(clamp(a[p.base + i] / bitcast<f32>(p.value), -10.0, 10.0));
        out[p.base + i] = b[p.base + i] * (1.0 - t * t);
    }
}

// out = bitcast<f32>(p.value)   (a constant fill: -0.0, the additive identity that keeps
// the sign of every addend, for the zero addends of Replicate -> Partial)
@compute @workgroup_size(256, 1, 1)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = index(p, gid);
    if (i < p.count) {
        out[p.base + i] = bitcast<f32>(p.value);
    }
}
