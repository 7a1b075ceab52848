// Causal attention of a rank's local query heads over its key/value cache
// (src/ops/model/mod.rs `attention_with`), one (row, head) per invocation:
// softmax(logit(q . k_j)) over positions j <= i = pos0 + t (and, with a window w,
// j > i - w: Hugging Face's sliding_window_overlay), then the weighted sum of v_j.
// logit(s) = s * scale, or with soft-capping (entry `attention_softcap`, Gemma 2)
// tanh(s * scale / cap) * cap, the order of transformers' eager_attention_forward.
// Requires rotary.wgsl and attention_common.wgsl prepended (src/kernels/mod.rs).
// Row-major f32; each tensor binding is one buffer.
//
// A fused row is [q | k | v] (kv_cache.wgsl); a cache row is [k | v], 2 * kv_cols columns,
// its rows up to pos0 + rows written (kv_cache.wgsl), or in a ring (`ring`) position j's
// in row j % ring, the window's positions written and not yet overwritten.
//
// Bindings (the GEMMs' layout):
//   0: qkv     storage, read        fused rows [rows, cols], row t at position pos0 + t
//                                   (the queries turned here, with `rotate`)
//   1: cache   storage, read        [capacity, 2 kv_cols]
//   2: table   storage, read        the rotary table [positions, head_dim] (rotary.wgsl);
//                                   not read without `rotate` (any buffer)
//   3: out     storage, read_write  [rows, heads * head_dim]
//   4: params  uniform array<AttentionParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count, an item a (row, local head) pair. Two
// passes over the positions (max, then exp-sum and the weighted sum), each in position
// order, in one invocation: a result depends only on its inputs. The loops start at the
// window's first position: rows older than the window are never read.
//
// Both entries run `attend`; `capped` is a constant at each call, so once inlined the
// plain entry is the uncapped arithmetic alone (the same bits as before the cap existed).

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> cache: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<AttentionParams, 2>;

@compute @workgroup_size(256, 1, 1)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>) {
    attend(gid, false);
}

@compute @workgroup_size(256, 1, 1)
fn attention_softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    attend(gid, true);
}

fn attend(gid: vec3<u32>, capped: bool) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
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
    let cap = bitcast<f32>(p.softcap);
    // The first position the query sees: i - window + 1, or 0.
    var first = 0u;
    if (p.window != 0u && last >= p.window) {
        first = last + 1u - p.window;
    }
    let half = p.head_dim / 2u;
    var qt: array<f32, MAX_HEAD_DIM>;
    for (var e = 0u; e < p.head_dim; e++) {
        qt[e] = qkv[q + e];
    }
    if (p.rotate != 0u) {
        for (var j = 0u; j < half; j++) {
            let turned = turn(qt[j], qt[j + half], last, j, p.head_dim);
            qt[j] = turned.x;
            qt[j + half] = turned.y;
        }
    }
    // -f32::MAX, spelled as its bits: the shortest decimal that rounds to it,
    // 3.4028235e38, is above it, which Tint (Chrome's WGSL compiler) refuses.
    var m = bitcast<f32>(0xff7fffffu);
    for (var j = first; j <= last; j++) {
        let k = slot(j, p.ring) * stride + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * cache[k + e];
        }
        m = max(m, logit(s, scale, cap, capped));
    }
    for (var e = 0u; e < p.head_dim; e++) {
        out[o + e] = 0.0;
    }
    var total = 0.0;
    for (var j = first; j <= last; j++) {
        let k = slot(j, p.ring) * stride + kvh * p.head_dim;
        var s = 0.0;
        for (var e = 0u; e < p.head_dim; e++) {
            s = s + qt[e] * cache[k + e];
        }
        let w = exp(logit(s, scale, cap, capped) - m);
        total = total + w;
        for (var e = 0u; e < p.head_dim; e++) {
            out[o + e] = out[o + e] + w * cache[k + p.kv_cols + e];
        }
    }
    let inv = 1.0 / total;
    for (var e = 0u; e < p.head_dim; e++) {
        out[o + e] = out[o + e] * inv;
    }
}
