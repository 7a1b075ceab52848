// The transformer's own kernels (src/ops/model.rs): norms, embedding lookup, rotary
// positions, the gated activation, and attention. Row-major f32; each tensor binding is
// one buffer (these ops take single-band tensors, which src/ops/model.rs checks).
//
// Bindings (the GEMMs' layout: four storage buffers, what downlevel devices allow):
//   0: a    storage, read        the input (per entry below)
//   1: b    storage, read        second input (per entry; unused ones get a dummy)
//   2: c    storage, read        third input (per entry)
//   3: out  storage, read_write  the output
//   4: p    uniform Params
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride handles item p.base + i for i < p.count (an item is per entry: a row, an
// element, a (row, head) pair). Every sum runs in a fixed order in one invocation, so a
// result depends only on its inputs (the same bits on every rank holding them).

// Params fields by entry: pos0 is the position of row 0 (rope, attention) or the first
// vocabulary row of the table shard (embed); kv_cols the columns of a K/V cache row
// (attention) or the rows of the table shard (embed); group the query heads per key/value
// head, h0 and k0 the global indices of the first local query and key/value head, kv_rows
// the cache rows allocated (attention); eps the norms' epsilon and scale 1 / sqrt(head_dim)
// (attention), as f32 bits.
struct Params {
    count: u32,
    row_stride: u32,
    base: u32,
    rows: u32,
    cols: u32,
    heads: u32,
    head_dim: u32,
    pos0: u32,
    kv_cols: u32,
    group: u32,
    h0: u32,
    k0: u32,
    kv_rows: u32,
    eps: u32,
    scale: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn item(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.row_stride;
}

// RMSNorm (Llama): out[r, :] = a[r, :] / sqrt(mean(a[r, :]^2) + eps) * b[:].
// a: [rows, cols], b: weight [cols]; item = a row.
@compute @workgroup_size(256, 1, 1)
fn rms_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let r = p.base + i;
    let row = r * p.cols;
    var ss = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = a[row + k];
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = b[k] * (a[row + k] * inv);
    }
}

// LayerNorm (GPT-2): out[r, :] = (a[r, :] - mean) / sqrt(var + eps) * b[:] + c[:].
// a: [rows, cols], b: weight [cols], c: bias [cols]; item = a row.
@compute @workgroup_size(256, 1, 1)
fn layer_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let r = p.base + i;
    let row = r * p.cols;
    var sum = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        sum = sum + a[row + k];
    }
    let mean = sum / f32(p.cols);
    var ss = 0.0;
    for (var k = 0u; k < p.cols; k++) {
        let v = a[row + k] - mean;
        ss = ss + v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(p.cols) + bitcast<f32>(p.eps));
    for (var k = 0u; k < p.cols; k++) {
        out[row + k] = (a[row + k] - mean) * inv * b[k] + c[k];
    }
}

// Embedding lookup of the vocabulary rows one band of this rank's table holds: for token
// t with id v = bitcast<u32>(b[t]), out[t, :] = a[v - p.pos0, :] when p.pos0 <= v <
// p.pos0 + p.kv_cols; other rows of out are left as they are (src/ops/model.rs fills
// out with -0.0 first, the additive identity: the all-reduce then gives the row's bits
// exactly, -0.0 included, at any tp; each band of a large table fills its own rows). a: the table shard [kv_cols, cols], b: ids [rows]; item = an element
// of out [rows, cols].
@compute @workgroup_size(256, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let k = g % p.cols;
    let v = bitcast<u32>(b[t]);
    if (v >= p.pos0 && v - p.pos0 < p.kv_cols) {
        out[g] = a[(v - p.pos0) * p.cols + k];
    }
}

// Rotary positions, rotate-half form (Hugging Face Llama): for row t at position
// p.pos0 + t, each head's pair (x[j], x[j + half]) turns by the angle whose cosine and
// sine are b and c at [position, j]. a: [rows, heads * head_dim], b, c: [positions,
// head_dim / 2]; item = an element of the first halves, (t, head, j).
@compute @workgroup_size(256, 1, 1)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let half = p.head_dim / 2u;
    let per_row = p.heads * half;
    let t = g / per_row;
    let h = (g % per_row) / half;
    let j = g % half;
    let at = t * p.cols + h * p.head_dim + j;
    let cs = (p.pos0 + t) * half + j;
    let x1 = a[at];
    let x2 = a[at + half];
    let co = b[cs];
    let si = c[cs];
    out[at] = x1 * co - x2 * si;
    out[at + half] = x2 * co + x1 * si;
}

// SwiGLU: out[t, j] = silu(a[t, j]) * a[t, p.cols + j], a = [gate | up]: [rows, 2 cols];
// item = an element of out [rows, cols].
@compute @workgroup_size(256, 1, 1)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let j = g % p.cols;
    let x = a[t * 2u * p.cols + j];
    let up = a[t * 2u * p.cols + p.cols + j];
    out[g] = x / (1.0 + exp(-x)) * up;
}

// Causal attention of the local query heads over the key/value cache, one (row, head)
// per item: softmax(q . k_j * scale) over positions j <= p.pos0 + t, then the weighted
// sum of v_j. a: q [rows, heads * head_dim], b: K cache [kv_rows, kv_cols], c: V cache
// [kv_rows, kv_cols], out: [rows, heads * head_dim]. Local head h reads cache head
// (p.h0 + h) / p.group - p.k0. Two passes over the positions (max, then exp-sum and the
// weighted sum), each in position order.
@compute @workgroup_size(256, 1, 1)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = item(gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.heads;
    let h = g % p.heads;
    let kvh = (p.h0 + h) / p.group - p.k0;
    let q = t * p.cols + h * p.head_dim;
    let last = p.pos0 + t;
    let scale = bitcast<f32>(p.scale);
    var m = -3.4028235e38;
    for (var j = 0u; j <= last; j++) {
        let k = j * p.kv_cols + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + a[q + e] * b[k + e];
        }
        m = max(m, s * scale);
    }
    for (var e = 0u; e < p.head_dim; e++) {
        out[q + e] = 0.0;
    }
    var total = 0.0;
    for (var j = 0u; j <= last; j++) {
        let k = j * p.kv_cols + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + a[q + e] * b[k + e];
        }
        let w = exp(s * scale - m);
        total = total + w;
        for (var e = 0u; e < p.head_dim; e++) {
            out[q + e] = out[q + e] + w * c[k + e];
        }
    }
    let inv = 1.0 / total;
    for (var e = 0u; e < p.head_dim; e++) {
        out[q + e] = out[q + e] * inv;
    }
}
