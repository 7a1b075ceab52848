// What attention.wgsl (the forward) and attention_backward.wgsl share: the parameters,
// the largest head, and the logit of a query-key dot product. Prepended to each by
// src/kernels/mod.rs after rotary.wgsl; it has no bindings of its own: `load_params` reads
// the `params` binding of the shader it is part of.

// The fields up to `ring` are kv_cache.wgsl's KvWriteParams' (one Rust struct,
// src/kernels/params.rs FusedRows).
struct AttentionParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // Local query heads.
    heads: u32,
    head_dim: u32,
    // The position of row 0.
    pos0: u32,
    // Key (and value) columns of a cache row: local key/value heads * head_dim.
    kv_cols: u32,
    // 1: turn the queries by the rotary table; 0: take them as they are.
    rotate: u32,
    // Nonzero: the cache is a ring of `ring` rows, position j in row j % ring; 0: in row j.
    ring: u32,
    // Query heads per key/value head; the global indices of the first local query head
    // and of the cache's first key/value head: local head h reads cache head
    // (h0 + h) / group - k0.
    group: u32,
    h0: u32,
    k0: u32,
    // The logits' scale (1 / sqrt(head_dim) unless the model says otherwise), as f32 bits.
    scale: u32,
    // Positions a query sees, itself included (the sliding window); 0: all before it.
    window: u32,
    // The soft cap of the logits, as f32 bits (read by the capped entries only).
    softcap: u32,
    // The rows of a backward, at positions 0..positions; unread by the forward.
    positions: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

fn load_params() -> AttentionParams {
    return params[params[0].count & 1u];
}

// The largest head attention takes (its turned query is kept per invocation; the same
// bound as src/ops/model.rs MAX_HEAD_DIM).
const MAX_HEAD_DIM: u32 = 256u;

// |y| past which tanh(y) rounds to +-1 in f32 (1 - tanh(10) < 2^-27): clamping there
// changes no result and keeps every backend's tanh off arguments whose exponentials
// overflow.
const TANH_SATURATED: f32 = 10.0;

// The cache row of position `pos`.
fn slot(pos: u32, ring: u32) -> u32 {
    if (ring == 0u) {
        return pos;
    }
    return pos % ring;
}

// The logit of the dot product s: scaled, then capped when `capped`.
fn logit(s: f32, scale: f32, cap: f32, capped: bool) -> f32 {
    if (capped) {
        return tanh(clamp(s * scale / cap, -TANH_SATURATED, TANH_SATURATED)) * cap;
    }
    return s * scale;
}
