// Sum of up to four same-shape f32 buffers, in a fixed order: the on-device all-reduce of
// ranks that share one device (src/collective/device.rs).
//
// Bindings (vec4<f32>; one band of rows of each tensor, whose f32 length is a multiple of 4,
// which src/collective/device.rs checks; other lengths use elementwise.wgsl's `add`):
//   0..3: a, b, c, d  storage, read        the addends; only the first p.count are read
//   4:    out         storage, read_write  ((a + b) + c) + d, cut to p.count terms
//   5:    params      uniform array<Params, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride (p.row_stride = gx * 256) handles vec4 p.base + i, for i < p.len. (vec4
// loads: on llvmpipe every storage load costs one load per lane, so wider loads are
// fewer loads.)
//
// The association is left to right, as in the host collective, so both give the same bits.

// `tree` is read by reduce8.wgsl only (src/kernels/params.rs has one struct for both).
struct Params {
    len: u32,
    count: u32,
    row_stride: u32,
    base: u32,
    tree: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> d: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(5) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].len & 1u];
}

@compute @workgroup_size(256, 1, 1)
fn sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let l = gid.x + gid.y * p.row_stride;
    if (l >= p.len) {
        return;
    }
    let i = p.base + l;
    var s = a[i] + b[i];
    if (p.count > 2u) {
        s = s + c[i];
    }
    if (p.count > 3u) {
        s = s + d[i];
    }
    out[i] = s;
}
