// The transformer's own kernels (src/ops/model.rs): norms, embedding lookup, rotary
// positions, the gated activation, and attention. Row-major f32; each tensor binding is
// one buffer (these ops take single-band tensors, which src/ops/model.rs checks).
//
// Bindings (the GEMMs' layout: four storage buffers, what downlevel devices allow):
//   0: a    storage, read        the input (per entry below)
//   1: b    storage, read        second input (per entry; unused ones get a dummy)
//   2: c    storage, read        third input (per entry)
//   3: out  storage, read_write  the output
//   4: params uniform array<Params, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride handles item p.base + i for i < p.count (an item is per entry: a row, an
// element, a (row, head) pair). Every sum runs in a fixed order in one invocation, so a
// result depends only on its inputs (the same bits on every rank holding them).

// Params fields by entry: pos0 is the position of row 0 (rope, kv_write, attention) or the
// first vocabulary row of the table shard (embed); kv_cols the key (and the value) columns
// of a cache row, heads * head_dim of the local key/value heads (kv_write, attention), or
// the rows of the table shard (embed); group the query heads per key/value head, h0 and k0
// the global indices of the first local query and key/value head, kv_rows the cache rows
// allocated (attention); flag 1 to turn queries and keys by the rotary table, 0 to take
// them as they are (rope, kv_write, attention), or 1 to write -0.0 for ids the band does
// not hold (embed: the first band); eps the norms' epsilon and scale 1 / sqrt(head_dim) (attention), as f32
// bits.
//
// A fused query/key/value row is [q | k | v]: heads * head_dim query columns, then kv_cols
// key and kv_cols value columns. A key/value cache row is [k | v], 2 * kv_cols columns. The
// rotary table is [positions, head_dim]: the cosines of position p's half-head angles, then
// their sines.
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
    flag: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> c: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].count & 1u];
}

fn item(p: Params, gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.row_stride;
}

// RMSNorm (Llama): out[r, :] = a[r, :] / sqrt(mean(a[r, :]^2) + eps) * b[:].
// a: [rows, cols], b: weight [cols]; item = a row.
@compute @workgroup_size(256, 1, 1)
fn rms_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
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
    let p = load_params();
    let i = item(p, gid);
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
// p.pos0 + p.kv_cols; other rows of out are -0.0 with p.flag (the first band), the
// additive identity: the all-reduce then gives the row's bits exactly, -0.0 included, at
// any tp; later bands of a large table leave them as they are and write their own rows.
// a: the table shard [kv_cols, cols], b: ids [rows]; item = an element of out [rows,
// cols].
@compute @workgroup_size(256, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let k = g % p.cols;
    let v = bitcast<u32>(b[t]);
    if (v >= p.pos0 && v - p.pos0 < p.kv_cols) {
        out[g] = a[(v - p.pos0) * p.cols + k];
    } else if (p.flag != 0u) {
        out[g] = bitcast<f32>(0x80000000u);
    }
}

// Rotary positions, rotate-half form (Hugging Face Llama): for row t at position
// p.pos0 + t, each head's pair (x[j], x[j + half]) turns by the angle of [position, j].
// a: [rows, heads * head_dim], b: the rotary table; item = an element of the first
// halves, (t, head, j).
@compute @workgroup_size(256, 1, 1)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
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
    let turned = turn(p, a[at], a[at + half], p.pos0 + t, j);
    out[at] = turned.x;
    out[at + half] = turned.y;
}

// The pair (x1, x2) of a head turned by the angle of [pos, j] in the rotary table, read
// from b (rope, kv_write) or c (attention).
fn turn(p: Params, x1: f32, x2: f32, pos: u32, j: u32) -> vec2<f32> {
    let cs = pos * p.head_dim + j;
    let co = b[cs];
    let si = b[cs + p.head_dim / 2u];
    return vec2<f32>(x1 * co - x2 * si, x2 * co + x1 * si);
}

fn turn_c(p: Params, x1: f32, x2: f32, pos: u32, j: u32) -> vec2<f32> {
    let cs = pos * p.head_dim + j;
    let co = c[cs];
    let si = c[cs + p.head_dim / 2u];
    return vec2<f32>(x1 * co - x2 * si, x2 * co + x1 * si);
}

// The keys (turned, with p.flag) and values of fused rows into cache rows p.pos0.. .
// a: fused q/k/v [rows, cols], b: the rotary table (unused without p.flag), out: the
// cache [kv_rows, 2 * kv_cols]; item = (t, key/value head, j < head_dim / 2), which moves
// the pairs j and j + half of that head's key and value.
@compute @workgroup_size(256, 1, 1)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let half = p.head_dim / 2u;
    let per_row = p.kv_cols / 2u;
    let t = g / per_row;
    let h = (g % per_row) / half;
    let j = g % half;
    let k = t * p.cols + p.heads * p.head_dim + h * p.head_dim + j;
    let to = (p.pos0 + t) * 2u * p.kv_cols + h * p.head_dim + j;
    var key = vec2<f32>(a[k], a[k + half]);
    if (p.flag != 0u) {
        key = turn(p, key.x, key.y, p.pos0 + t, j);
    }
    out[to] = key.x;
    out[to + half] = key.y;
    out[to + p.kv_cols] = a[k + p.kv_cols];
    out[to + p.kv_cols + half] = a[k + p.kv_cols + half];
}

// SwiGLU: out[t, j] = silu(a[t, j]) * a[t, p.cols + j], a = [gate | up]: [rows, 2 cols];
// item = an element of out [rows, cols].
@compute @workgroup_size(256, 1, 1)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
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

// The largest head attention takes (its turned query is kept per invocation).
const MAX_HEAD_DIM: u32 = 256u;

// Causal attention of the local query heads over the key/value cache, one (row, head)
// per item: softmax(q . k_j * scale) over positions j <= p.pos0 + t, then the weighted
// sum of v_j. a: fused q/k/v [rows, cols] (the queries turned here, with p.flag), b: the
// cache [kv_rows, 2 * kv_cols], c: the rotary table (unused without p.flag), out:
// [rows, heads * head_dim]. Local head h reads cache head (p.h0 + h) / p.group - p.k0.
// Two passes over the positions (max, then exp-sum and the weighted sum), each in
// position order.
@compute @workgroup_size(256, 1, 1)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = item(p, gid);
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.heads;
    let h = g % p.heads;
    let kvh = (p.h0 + h) / p.group - p.k0;
    let q = t * p.cols + h * p.head_dim;
    let o = (t * p.heads + h) * p.head_dim;
    let stride = 2u * p.kv_cols;
    let last = p.pos0 + t;
    let scale = bitcast<f32>(p.scale);
    let half = p.head_dim / 2u;
    var qt: array<f32, MAX_HEAD_DIM>;
    for (var e = 0u; e < p.head_dim; e++) {
        qt[e] = a[q + e];
    }
    if (p.flag != 0u) {
        for (var j = 0u; j < half; j++) {
            let turned = turn_c(p, qt[j], qt[j + half], last, j);
            qt[j] = turned.x;
            qt[j + half] = turned.y;
        }
    }
    var m = -3.4028235e38;
    for (var j = 0u; j <= last; j++) {
        let k = j * stride + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * b[k + e];
        }
        m = max(m, s * scale);
    }
    for (var e = 0u; e < p.head_dim; e++) {
        out[o + e] = 0.0;
    }
    var total = 0.0;
    for (var j = 0u; j <= last; j++) {
        let k = j * stride + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * b[k + e];
        }
        let w = exp(s * scale - m);
        total = total + w;
        for (var e = 0u; e < p.head_dim; e++) {
            out[o + e] = out[o + e] + w * b[k + p.kv_cols + e];
        }
    }
    let inv = 1.0 / total;
    for (var e = 0u; e < p.head_dim; e++) {
        out[o + e] = out[o + e] * inv;
    }
}
