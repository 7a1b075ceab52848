// Row norms of the transformer (src/ops/model/mod.rs): RMSNorm (Llama) and LayerNorm
// (GPT-2), and RMSNorm of each query and key head of fused [q | k | v] rows (Qwen3's
// q_norm and k_norm, Gemma 3's).
// Row-major f32; each tensor binding is one buffer (these ops take single-band tensors,
// which src/ops/model.rs checks).
//
// Bindings (the GEMMs' layout: four storage buffers, what downlevel devices allow):
//   0: x       storage, read        [rows, cols], the rows normed
//   1: weight  storage, read        [cols]; head_rms_norm: the query heads' [head_dim];
//                                   head_rms_norm_backward, _terms: the query heads'
//                                   then the key heads' [2 x head_dim]
//   2: bias    storage, read        [cols] (layer_norm; rms_norm binds any buffer here);
//                                   head_rms_norm: the key heads' weight [head_dim];
//                                   the backward entries (rms_norm_backward, _terms,
//                                   layer_norm_backward, _terms, head_rms_norm_backward,
//                                   _terms): dy [rows, cols]
//   3: out     storage, read_write  [rows, cols]
//   4: params  uniform array<NormParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles row base + i for i < count (head_rms_norm: head base + i of the
// rows' cols / head_dim heads). Every sum runs in a fixed order in one
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
    // head_rms_norm: the size of a head and the query heads of a fused row; the key heads
    // follow them (as many as the value heads after those, which it copies unchanged).
    head_dim: u32,
    heads: u32,
    _pad0: u32,
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

// RMSNorm of each query and key head of fused rows x = [q | k | v] (heads of head_dim):
// out[head] = x[head] / sqrt(mean(x[head]^2) + eps) * w, w the query weight for the
// `heads` query heads and the key weight for the key heads; value heads are copied.
@compute @workgroup_size(256, 1, 1)
fn head_rms_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let per_row = p.cols / p.head_dim;
    let kv_heads = (per_row - p.heads) / 2u;
    let h = (p.base + i) % per_row;
    let at = (p.base + i) * p.head_dim;
    if (h >= p.heads + kv_heads) {
        for (var k = 0u; k < p.head_dim; k++) {
            out[at + k] = x[at + k];
        }
        return;
    }
    var ss = 0.0;
    for (var k = 0u; k < p.head_dim; k++) {
        let v = x[at + k];
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.head_dim) + bitcast<f32>(p.eps));
    if (h < p.heads) {
        for (var k = 0u; k < p.head_dim; k++) {
            out[at + k] = weight[k] * (x[at + k] * inv);
        }
    } else {
        for (var k = 0u; k < p.head_dim; k++) {
            out[at + k] = bias[k] * (x[at + k] * inv);
        }
    }
}

// head_rms_norm's backward, one head of one fused row per invocation (as head_rms_norm),
// dy in the bias slot, the query heads' weight then the key heads' in the weight slot:
//   head_rms_norm_backward: out = dL/dx, each query or key head's as rms_norm_backward's
//                           with its weight; the value heads' dy unchanged
//   head_rms_norm_terms:    out = dy x r for the query and key heads (the weights'
//                           gradients' terms), 0 for the value heads
fn head_backward(terms: bool, gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let per_row = p.cols / p.head_dim;
    let kv_heads = (per_row - p.heads) / 2u;
    let h = (p.base + i) % per_row;
    let at = (p.base + i) * p.head_dim;
    if (h >= p.heads + kv_heads) {
        for (var k = 0u; k < p.head_dim; k++) {
            if (terms) {
                out[at + k] = 0.0;
            } else {
                out[at + k] = bias[at + k];
            }
        }
        return;
    }
    let w0 = select(p.head_dim, 0u, h < p.heads);
    var ss = 0.0;
    var a = 0.0;
    for (var k = 0u; k < p.head_dim; k++) {
        let v = x[at + k];
        ss = ss + v * v;
        a = a + weight[w0 + k] * bias[at + k] * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.head_dim) + bitcast<f32>(p.eps));
    if (terms) {
        for (var k = 0u; k < p.head_dim; k++) {
            out[at + k] = bias[at + k] * (x[at + k] * inv);
        }
        return;
    }
    let c = inv * inv * inv * a / f32(p.head_dim);
    for (var k = 0u; k < p.head_dim; k++) {
        out[at + k] = inv * (weight[w0 + k] * bias[at + k]) - x[at + k] * c;
    }
}

@compute @workgroup_size(256, 1, 1)
fn head_rms_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    head_backward(false, gid);
}

@compute @workgroup_size(256, 1, 1)
fn head_rms_norm_terms(@builtin(global_invocation_id) gid: vec3<u32>) {
    head_backward(true, gid);
}

// RMSNorm's backward, one row per invocation, the output's gradient dy bound in the bias
// slot (binding 2): with r = 1 / sqrt(mean(x^2) + eps) and A = sum_k weight[k] dy[k] x[k],
//   rms_norm_backward: out = dL/dx = r weight dy - x r^3 A / cols
//   rms_norm_terms:    out = dy x r (the weight gradient's terms; summed over the rows by
//                      src/ops/model/mod.rs, in row order)
@compute @workgroup_size(256, 1, 1)
fn rms_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = (p.base + i) * p.cols;
    var ss = 0.0;
    var a = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = x[row + k];
        ss = ss + v * v;
        a = a + weight[k] * bias[row + k] * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    let c = inv * inv * inv * a / f32(p.cols);
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = inv * (weight[k] * bias[row + k]) - x[row + k] * c;
    }
}

@compute @workgroup_size(256, 1, 1)
fn rms_norm_terms(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = (p.base + i) * p.cols;
    var ss = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = x[row + k];
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = bias[row + k] * (x[row + k] * inv);
    }
}

// LayerNorm's backward, one row per invocation, dy in the bias slot (binding 2): with
// mean m, r = 1 / sqrt(mean((x - m)^2) + eps), xhat = (x - m) r and g = weight dy,
//   layer_norm_backward: out = dL/dx = r (g - mean(g) - xhat mean(g xhat))
//   layer_norm_terms:    out = dy xhat (the weight gradient's terms; the bias gradient is
//                        dy's column sums; both summed over the rows in row order by
//                        src/ops/model/mod.rs)
fn layer_norm_stats(row: u32, cols: u32, eps: f32) -> vec2<f32> {
    var sum = 0.0;
    for (var k = 0u; k < cols; k++) {
        sum = sum + x[row + k];
    }
    let mean = sum / f32(cols);
    var ss = 0.0;
    for (var k = 0u; k < cols; k++) {
        let v = x[row + k] - mean;
        ss = ss + v * v;
    }
    return vec2<f32>(mean, 1.0 / sqrt(ss / f32(cols) + eps));
}

@compute @workgroup_size(256, 1, 1)
fn layer_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = (p.base + i) * p.cols;
    let stats = layer_norm_stats(row, p.cols, bitcast<f32>(p.eps));
    let mean = stats.x;
    let inv = stats.y;
    var sg = 0.0;
    var sgx = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let g = weight[k] * bias[row + k];
        sg = sg + g;
        sgx = sgx + g * ((x[row + k] - mean) * inv);
    }
    let n = f32(p.cols);
    for (var k = 0u; k < p.cols; k++) {
        let g = weight[k] * bias[row + k];
        let xhat = (x[row + k] - mean) * inv;
        out[row + k] = inv * (g - sg / n - xhat * (sgx / n));
    }
}

@compute @workgroup_size(256, 1, 1)
fn layer_norm_terms(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = (p.base + i) * p.cols;
    let stats = layer_norm_stats(row, p.cols, bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = bias[row + k] * ((x[row + k] - stats.x) * stats.y);
    }
}
