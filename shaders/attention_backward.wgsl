// The backward of causal attention over a rank's local query heads (attention.wgsl's
// forward at positions 0..rows, no cache: a training step's whole sequence), in
// src/ops/model/attention_backward.rs. With p_ij = softmax_j(logit(q_i . k_j)) over the
// positions row i sees (j <= i, and j > i - window with a window), o_i = sum_j p_ij v_j
// and dO the gradient of the output:
//   D_i   = dO_i . o_i                          (= sum_j p_ij dP_ij)
//   dP_ij = dO_i . v_j
//   dS_ij = p_ij (dP_ij - D_i) * logit'(s_ij)   (scale, or (1 - tanh^2) scale capped)
//   dq_i  = sum_j dS_ij k_j,   dk_j = sum_i dS_ij q_i,   dv_j = sum_i p_ij dO_i
// with q and k turned by the rotary table (when `rotate`) as the forward turns them, and
// dq, dk turned back (`unturn`, the rotation's transpose). Requires rotary.wgsl and
// attention_common.wgsl prepended (src/kernels/mod.rs). Row-major f32; each tensor
// binding is one buffer.
//
// Entries, in the order the host runs them:
//   attention_stats  item (row, head): out[item] = (m, l, D): the largest logit, the sum of
//                    exp(logit - m) over the positions the row sees, and D.
//   attention_dq     item (row, head): the head's dq written into out's query columns.
//   attention_dkv    item (position, head): the head's shares of its key/value head's dk
//                    and dv, out [rows, heads, 2, head_dim] (dk then dv).
//   attention_fold   item (row, column of [k | v]): a key/value head's dk (dv) is the sum
//                    of its query heads' shares in head order, written into out's key and
//                    value columns; `heads` and `h0` are then the shares' (all the heads
//                    of every local key/value head's group, gathered when ranks share a
//                    key/value head).
// Each sum runs in position (or head) order in one invocation: a result depends only on
// its inputs, so on no tp.
//
// Bindings (reduce.wgsl's layout):
//   0: qkv     storage, read        fused rows [rows, cols] = [q | k | v] before rotary (the
//                                   projection's output); not read by attention_fold
//   1: table   storage, read        the rotary table [positions, head_dim] (rotary.wgsl);
//                                   not read without `rotate` (any buffer)
//   2: d_out   storage, read        dO [rows, heads * head_dim]; not read by attention_fold
//   3: aux     storage, read        attention_stats: the forward's output o [rows, heads *
//                                   head_dim]; attention_dq and attention_dkv: the stats
//                                   [rows * heads, 3]; attention_fold: the shares
//                                   [rows, heads, 2, head_dim]
//   4: out     storage, read_write  as each entry says above
//   5: params  uniform array<AttentionParams, 2>, two equal copies (pos0 and ring 0; a
//                                   nonzero softcap caps the logits)
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count.

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> d_out: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why).
@group(0) @binding(5) var<uniform> params: array<AttentionParams, 2>;

// Element e of the head at `at` in qkv, turned to position `pos` when `rotate` (the pair
// `turn` gives, one element of it). No function here takes an array: GLSL passes arrays
// by copy, which makes llvmpipe's GL take minutes to compile such a shader.
fn head_value(p: AttentionParams, at: u32, pos: u32, e: u32) -> f32 {
    if (p.rotate == 0u) {
        return qkv[at + e];
    }
    let half = p.head_dim / 2u;
    let j = e % half;
    let turned = turn(qkv[at + j], qkv[at + j + half], pos, j, p.head_dim);
    if (e < half) {
        return turned.x;
    }
    return turned.y;
}

// A gradient's pair at the turned head carried back to the head before rotary.
fn unturned(p: AttentionParams, y1: f32, y2: f32, pos: u32, j: u32) -> vec2<f32> {
    if (p.rotate == 0u) {
        return vec2<f32>(y1, y2);
    }
    return unturn(y1, y2, pos, j, p.head_dim);
}

// The first column of query head h's row t, and of the key of key/value head kvh at t
// (its value is kv_cols further).
fn query_at(p: AttentionParams, t: u32, h: u32) -> u32 {
    return t * p.cols + h * p.head_dim;
}

fn key_at(p: AttentionParams, t: u32, kvh: u32) -> u32 {
    return t * p.cols + p.heads * p.head_dim + kvh * p.head_dim;
}

// The local key/value head local query head h reads.
fn kv_head(p: AttentionParams, h: u32) -> u32 {
    return (p.h0 + h) / p.group - p.k0;
}

// The first position row t sees.
fn first_seen(p: AttentionParams, t: u32) -> u32 {
    if (p.window != 0u && t >= p.window) {
        return t + 1u - p.window;
    }
    return 0u;
}

// d logit / d s at the dot product s.
fn logit_slope(s: f32, scale: f32, cap: f32, capped: bool) -> f32 {
    if (capped) {
        let t = tanh(clamp(s * scale / cap, -TANH_SATURATED, TANH_SATURATED));
        return (1.0 - t * t) * scale;
    }
    return scale;
}

// The probability p_ij and the score's gradient dS_ij * logit'(s) of the dot product s of
// query head h's row i and position j (key/value head kvh), from row i's statistics
// (m, l, D) at item `at` of aux: (p, dS).
fn prob_and_grad(
    p: AttentionParams,
    s: f32,
    i: u32,
    h: u32,
    j: u32,
    kvh: u32,
    at: u32,
) -> vec2<f32> {
    let scale = bitcast<f32>(p.scale);
    let cap = bitcast<f32>(p.softcap);
    let capped = p.softcap != 0u;
    let prob = exp(logit(s, scale, cap, capped) - aux[at * 3u]) / aux[at * 3u + 1u];
    let dp = d_out_dot_value(p, i, h, j, kvh);
    return vec2<f32>(prob, prob * (dp - aux[at * 3u + 2u]) * logit_slope(s, scale, cap, capped));
}

// dO_i . v_j for query head h's row i and the value at position j of key/value head kvh.
fn d_out_dot_value(p: AttentionParams, i: u32, h: u32, j: u32, kvh: u32) -> f32 {
    let o = (i * p.heads + h) * p.head_dim;
    let v = key_at(p, j, kvh) + p.kv_cols;
    var s = 0.0;
    for (var e = 0u; e < p.head_dim; e++) {
        s = s + d_out[o + e] * qkv[v + e];
    }
    return s;
}

@compute @workgroup_size(256, 1, 1)
fn attention_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let item = gid.x + gid.y * p.row_stride;
    if (item >= p.count) {
        return;
    }
    let g = p.base + item;
    let t = g / p.heads;
    let h = g % p.heads;
    let kvh = kv_head(p, h);
    let scale = bitcast<f32>(p.scale);
    let cap = bitcast<f32>(p.softcap);
    let capped = p.softcap != 0u;
    var qt: array<f32, MAX_HEAD_DIM>;
    let qa = query_at(p, t, h);
    for (var e = 0u; e < p.head_dim; e++) {
        qt[e] = head_value(p, qa, t, e);
    }
    // -f32::MAX, as attention.wgsl spells it.
    var m = bitcast<f32>(0xff7fffffu);
    for (var j = first_seen(p, t); j <= t; j++) {
        let ka = key_at(p, j, kvh);
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * head_value(p, ka, j, e);
        }
        m = max(m, logit(s, scale, cap, capped));
    }
    var l = 0.0;
    for (var j = first_seen(p, t); j <= t; j++) {
        let ka = key_at(p, j, kvh);
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * head_value(p, ka, j, e);
        }
        l = l + exp(logit(s, scale, cap, capped) - m);
    }
    let o = (t * p.heads + h) * p.head_dim;
    var d = 0.0;
    for (var e = 0u; e < p.head_dim; e++) {
        d = d + d_out[o + e] * aux[o + e];
    }
    out[g * 3u] = m;
    out[g * 3u + 1u] = l;
    out[g * 3u + 2u] = d;
}

@compute @workgroup_size(256, 1, 1)
fn attention_dq(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let item = gid.x + gid.y * p.row_stride;
    if (item >= p.count) {
        return;
    }
    let g = p.base + item;
    let i = g / p.heads;
    let h = g % p.heads;
    let kvh = kv_head(p, h);
    var qt: array<f32, MAX_HEAD_DIM>;
    let qa = query_at(p, i, h);
    for (var e = 0u; e < p.head_dim; e++) {
        qt[e] = head_value(p, qa, i, e);
    }
    var dq: array<f32, MAX_HEAD_DIM>;
    for (var j = first_seen(p, i); j <= i; j++) {
        let ka = key_at(p, j, kvh);
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * head_value(p, ka, j, e);
        }
        let ds = prob_and_grad(p, s, i, h, j, kvh, g).y;
        for (var e = 0u; e < p.head_dim; e++) {
            dq[e] = dq[e] + ds * head_value(p, ka, j, e);
        }
    }
    let half = p.head_dim / 2u;
    for (var j = 0u; j < half; j++) {
        let back = unturned(p, dq[j], dq[j + half], i, j);
        out[qa + j] = back.x;
        out[qa + j + half] = back.y;
    }
}

@compute @workgroup_size(256, 1, 1)
fn attention_dkv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let item = gid.x + gid.y * p.row_stride;
    if (item >= p.count) {
        return;
    }
    let g = p.base + item;
    let j = g / p.heads;
    let h = g % p.heads;
    let kvh = kv_head(p, h);
    let rows = p.positions;
    var kt: array<f32, MAX_HEAD_DIM>;
    let ka = key_at(p, j, kvh);
    for (var e = 0u; e < p.head_dim; e++) {
        kt[e] = head_value(p, ka, j, e);
    }
    // The rows that see position j: j .. j + window - 1, within the rows.
    var last = rows - 1u;
    if (p.window != 0u) {
        last = min(last, j + p.window - 1u);
    }
    var dk: array<f32, MAX_HEAD_DIM>;
    var dv: array<f32, MAX_HEAD_DIM>;
    for (var i = j; i <= last; i++) {
        let at = i * p.heads + h;
        let qa = query_at(p, i, h);
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + head_value(p, qa, i, e) * kt[e];
        }
        let pd = prob_and_grad(p, s, i, h, j, kvh, at);
        for (var e = 0u; e < p.head_dim; e++) {
            dk[e] = dk[e] + pd.y * head_value(p, qa, i, e);
            dv[e] = dv[e] + pd.x * d_out[at * p.head_dim + e];
        }
    }
    let base = g * 2u * p.head_dim;
    let half = p.head_dim / 2u;
    for (var e = 0u; e < half; e++) {
        let back = unturned(p, dk[e], dk[e + half], j, e);
        out[base + e] = back.x;
        out[base + e + half] = back.y;
    }
    for (var e = 0u; e < p.head_dim; e++) {
        out[base + p.head_dim + e] = dv[e];
    }
}

@compute @workgroup_size(256, 1, 1)
fn attention_fold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let item = gid.x + gid.y * p.row_stride;
    if (item >= p.count) {
        return;
    }
    let g = p.base + item;
    let width = 2u * p.kv_cols;
    let t = g / width;
    let c = g % width;
    let which = c / p.kv_cols;
    let within = c % p.kv_cols;
    let e = within % p.head_dim;
    // The shares' first head of the key/value head's group.
    let first = (p.k0 + within / p.head_dim) * p.group - p.h0;
    var acc = aux[((t * p.heads + first) * 2u + which) * p.head_dim + e];
    for (var n = 1u; n < p.group; n++) {
        acc = acc + aux[((t * p.heads + first + n) * 2u + which) * p.head_dim + e];
    }
    out[t * p.cols + p.cols - width + c] = acc;
}
