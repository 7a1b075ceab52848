// Embedding lookup of the vocabulary rows one band of a rank's table holds
// (src/ops/model.rs). Requires the weight format's prelude (shaders/weights_*.wgsl, scalar
// unit, BINDING 0) prepended by src/kernels/mod.rs: the table may be f32, f16 or bf16.
//
// Bindings (the GEMMs' layout; binding 2 is not read):
//   0: w       storage, read        the table band [rows, cols] (vocabulary rows first ..
//                                   first + rows), declared by the weight prelude, read
//                                   only through load_w(element)
//   1: ids     storage, read        [tokens] token ids as u32 bits
//   3: out     storage, read_write  [tokens, cols]
//   4: params  uniform array<EmbedParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles element base + i of out for i < count.
//
// For token t with id v, out[t, :] = w[v - first, :] when first <= v < first + rows;
// other rows of out are -0.0 with `fill` (the first band), the additive identity: the
// all-reduce then gives the row's bits exactly, -0.0 included, at any tp; later bands of a
// large table leave them as they are and write their own rows.

struct EmbedParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    // The vocabulary row of the band's first row, and the band's rows.
    first: u32,
    rows: u32,
    // 1: write -0.0 to the rows of ids the band does not hold (the first band).
    fill: u32,
    _pad0: u32,
}

@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<EmbedParams, 2>;

fn load_params() -> EmbedParams {
    return params[params[0].count & 1u];
}

@compute @workgroup_size(256, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let g = p.base + i;
    let t = g / p.cols;
    let k = g % p.cols;
    let v = ids[t];
    if (v >= p.first && v - p.first < p.rows) {
        out[g] = load_w((v - p.first) * p.cols + k);
    } else if (p.fill != 0u) {
        out[g] = bitcast<f32>(0x80000000u);
    }
}
