// Row norms of the transformer (src/ops/model.rs): RMSNorm (Llama) and LayerNorm (GPT-2).
// Row-major f32; each tensor binding is one buffer (these ops take single-band tensors,
// which src/ops/model.rs checks).
//
// Bindings (the GEMMs' layout: four storage buffers, what downlevel devices allow):
//   0: x       storage, read        [rows, cols], the rows normed
//   1: weight  storage, read        [cols]
//   2: bias    storage, read        [cols] (layer_norm; rms_norm binds any buffer here)
//   3: out     storage, read_write  [rows, cols]
//   4: params  uniform array<NormParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles row base + i for i < count. Every sum runs in a fixed order in one
// invocation, so a result depends only on its inputs (the same bits on every rank).

// The two norms' parameters mean the same: one struct (src/kernels/params.rs mirrors it).
struct NormParams {
    // Rows this dispatch handles, from row `base`; `row_stride` invocations per grid row.
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // The norm's epsilon, as f32 bits.
    eps: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<NormParams, 2>;

fn load_params() -> NormParams {
    return params[params[0].count & 1u];
}

// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:].
@compute @workgroup_size(256, 1, 1)
fn rms_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let r = p.base + i;
    let row = r * p.cols;
    var ss = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = x[row + k];
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = weight[k] * (x[row + k] * inv);
    }
}

// LayerNorm: out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * weight[:] + bias[:].
@compute @workgroup_size(256, 1, 1)
fn layer_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let r = p.base + i;
    let row = r * p.cols;
    var sum = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        sum = sum + x[row + k];
    }
    let mean = sum / f32(p.cols);
    var ss = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = x[row + k] - mean;
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = (x[row + k] - mean) * inv * weight[k] + bias[k];
    }
}
