// The vocabulary-parallel embedding's backward (src/ops/model/mod.rs, embed_backward):
// each vocabulary row of a band of this rank's table gets the sum, in token order, of the
// output gradient's rows of the tokens with its id. One invocation per vocabulary row
// scans the ids (no atomics), so every sum is the same bits whatever runs it: exactly the
// f32 sum, from 0, in token order.
//
// Bindings (the GEMMs' layout; binding 2 is not read):
//   0: dy      storage, read        [tokens, cols], the embedding's output gradient
//   1: ids     storage, read        [tokens] token ids as u32 bits
//   3: out     storage, read_write  [rows, cols], the gradient of the table band's rows
//                                   (vocabulary rows first .. first + rows)
//   4: params  uniform array<EmbedGradParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles the band's row base + i for i < count.

struct EmbedGradParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // The vocabulary id of the band's first row, and the tokens.
    first: u32,
    tokens: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<EmbedGradParams, 2>;

fn load_params() -> EmbedGradParams {
    return params[params[0].count & 1u];
}

@compute @workgroup_size(256, 1, 1)
fn embed_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let row = p.base + i;
    let id = p.first + row;
    let o = row * p.cols;
    for (var c = 0u; c < p.cols; c++) {
        out[o + c] = 0.0;
    }
    for (var t = 0u; t < p.tokens; t++) {
        if (ids[t] == id) {
            for (var c = 0u; c < p.cols; c++) {
                out[o + c] = out[o + c] + dy[t * p.cols + c];
            }
        }
    }
}
