// The vocabulary-parallel cross-entropy (src/ops/cross_entropy.rs, src/nn/cross_entropy.rs):
// each rank holds the logits of its slice of the vocabulary and never sees the others'.
// row_stats gives, per row and per block of its columns, the block's largest logit, the
// sum of exp(logit - largest) over the block and the target's logit when the block holds
// it; the host joins the blocks of every rank (a few numbers per row) into each row's
// largest logit M and sum S; grad then writes (softmax - one_hot) * scale from M and S.
//
// Row-major f32; the logits and the gradient are one band of rows (row0 its first row);
// the targets, the statistics and the rows' M and S are single buffers of every row.
//
// Bindings (the GEMMs' layout: four storage buffers):
//   0: logits   storage, read        [band rows, cols]: this rank's columns of the band
//   1: targets  storage, read        [rows]: each row's target id as u32 bits, global
//                                    (0 .. vocabulary), u32::MAX for none
//   2: rows     storage, read        grad: [rows, 4] per row M, S, scale and the target
//                                    (u32 bits); row_stats binds any buffer here
//   3: out      storage, read_write  row_stats: [rows, blocks, 3] (largest, sum, target's
//                                    logit or 0); grad: [band rows, cols]
//   4: params   uniform array<CrossEntropyParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count: row_stats a (band row, block) pair,
// grad one element of the band. Every sum runs in a fixed order in one invocation (the
// columns of its block in increasing order), so a block's statistics depend only on its
// logits: the same bits whichever rank holds the block.

struct CrossEntropyParams {
    count: u32,
    row_stride: u32,
    base: u32,
    // Columns of this rank's logits, columns per block, blocks per row.
    cols: u32,
    block: u32,
    blocks: u32,
    // The global id of this rank's first column, and the band's first row.
    first: u32,
    row0: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<CrossEntropyParams, 2>;

fn load_params() -> CrossEntropyParams {
    return params[params[0].count & 1u];
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(256, 1, 1)
fn row_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let item = p.base + i;
    let local = item / p.blocks;
    let blk = item % p.blocks;
    let c0 = blk * p.block;
    let c1 = min(c0 + p.block, p.cols);
    let at = local * p.cols;
    // The largest logit (from the block's first: no infinity or NaN may be written as a
    // constant, which Tint refuses); a NaN anywhere makes it that NaN (WGSL's max may
    // drop one).
    var m = logits[at + c0];
    var nan = false;
    var nan_value = 0.0;
    for (var c = c0; c < c1; c++) {
        let v = logits[at + c];
        if (is_nan(v)) {
            nan = true;
            nan_value = v;
        }
        m = max(m, v);
    }
    if (nan) {
        m = nan_value;
    }
    var s = 0.0;
    for (var c = c0; c < c1; c++) {
        s = s + exp(logits[at + c] - m);
    }
    let row = p.row0 + local;
    let t = bitcast<u32>(targets[row]);
    var tl = 0.0;
    if (t >= p.first + c0 && t < p.first + c1) {
        tl = logits[at + t - p.first];
    }
    let o = (row * p.blocks + blk) * 3u;
    out[o] = m;
    out[o + 1u] = s;
    out[o + 2u] = tl;
}

@compute @workgroup_size(256, 1, 1)
fn grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let local = g / p.cols;
    let c = g % p.cols;
    let r = (p.row0 + local) * 4u;
    let softmax = exp(logits[g] - rows[r]) / rows[r + 1u];
    let hit = bitcast<u32>(rows[r + 3u]) == p.first + c;
    out[g] = (softmax - select(0.0, 1.0, hit)) * rows[r + 2u];
}
