// Key/value cache writes (src/ops/model/mod.rs `write_kv`): the keys (turned by the rotary
// table with `rotate`) and the values of fused query/key/value rows into the cache rows of
// positions pos0.. (row p, or p % ring in a ring).
// Requires rotary.wgsl prepended (src/kernels/mod.rs). Row-major f32; each tensor binding
// is one buffer.
//
// A fused row is [q | k | v]: heads * head_dim query columns, then kv_cols key and kv_cols
// value columns. A cache row is [k | v], 2 * kv_cols columns.
//
// Bindings (the GEMMs' layout; binding 2 is not read):
//   0: qkv     storage, read        fused rows [rows, cols], cols = heads * head_dim + 2 kv_cols
//   1: table   storage, read        the rotary table [positions, head_dim] (rotary.wgsl);
//                                   not read without `rotate` (any buffer)
//   3: cache   storage, read_write  [capacity, 2 kv_cols]
//   4: params  uniform array<KvWriteParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count, an item (t, key/value head, j <
// head_dim / 2), which moves the pairs j and j + head_dim / 2 of that head's key and value.

struct KvWriteParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // Local query heads (the fused row's query columns are heads * head_dim).
    heads: u32,
    head_dim: u32,
    // The position (cache row) of row 0.
    pos0: u32,
    // Key (and value) columns of a cache row: local key/value heads * head_dim.
    kv_cols: u32,
    // 1: turn the keys by the rotary table; 0: write them as they are.
    rotate: u32,
    // Nonzero: the cache is a ring of `ring` rows, position p in row p % ring; 0: in row p.
    ring: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> cache: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<KvWriteParams, 2>;

fn load_params() -> KvWriteParams {
    return params[params[0].count & 1u];
}

// The cache row of position `pos`.
fn slot(pos: u32, ring: u32) -> u32 {
    if (ring == 0u) {
        return pos;
    }
    return pos % ring;
}

@compute @workgroup_size(256, 1, 1)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
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
    let to = slot(p.pos0 + t, p.ring) * 2u * p.kv_cols + h * p.head_dim + j;
    var key = vec2<f32>(qkv[k], qkv[k + half]);
    if (p.rotate != 0u) {
        key = turn(key.x, key.y, p.pos0 + t, j, p.head_dim);
    }
    cache[to] = key.x;
    cache[to + half] = key.y;
    cache[to + p.kv_cols] = qkv[k + p.kv_cols];
    cache[to + p.kv_cols + half] = qkv[k + p.kv_cols + half];
}
