// Rotary positions on rows of heads (src/ops/model.rs `rope`): for row t at position
// pos0 + t, each head's pair (x[j], x[j + head_dim / 2]) turns by the angle of
// [position, j]. Requires rotary.wgsl prepended (src/kernels/mod.rs). Row-major f32; each
// tensor binding is one buffer.
//
// Bindings (the GEMMs' layout; binding 2 is not read):
//   0: x       storage, read        [rows, cols], cols = heads * head_dim
//   1: table   storage, read        the rotary table [positions, head_dim] (rotary.wgsl)
//   3: out     storage, read_write  [rows, cols]
//   4: params  uniform array<RopeParams, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// row_stride handles item base + i for i < count, an item an element of the first halves
// of the heads, (t, head, j < head_dim / 2).

struct RopeParams {
    count: u32,
    row_stride: u32,
    base: u32,
    cols: u32,
    heads: u32,
    head_dim: u32,
    // The position of row 0.
    pos0: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(4) var<uniform> params: array<RopeParams, 2>;

fn load_params() -> RopeParams {
    return params[params[0].count & 1u];
}

@compute @workgroup_size(256, 1, 1)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let i = gid.x + gid.y * p.row_stride;
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
    let turned = turn(x[at], x[at + half], p.pos0 + t, j, p.head_dim);
    out[at] = turned.x;
    out[at + half] = turned.y;
}
