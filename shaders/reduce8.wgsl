// Sum of two to eight same-shape f32 buffers in ONE dispatch, in a fixed order: the
// on-device all-reduce of up to 8 logical ranks sharing one device, and the join of a
// tp-invariant product's 8 K blocks (src/ops/sum.rs; used where the device allows nine
// storage buffers per stage, else reduce.wgsl and elementwise.wgsl's add, several
// dispatches).
//
// Bindings (vec4<f32>; one band of rows of each tensor, whose f32 length is a multiple of 4,
// which src/ops/sum.rs checks):
//   0..7: a, b, c, d, e, f, g, h  storage, read        the addends; only the first
//                                                       p.count are read (the rest may be
//                                                       any buffer)
//   8:    out                     storage, read_write  their sum
//   9:    params                  uniform array<Params, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride (p.row_stride = gx * 256) handles vec4 p.base + i, for i < p.len.
//
// The association: p.tree == 0, rank order ((((a + b) + c) + d) + ...), as the host
// collective and reduce.wgsl take it; p.tree != 0, the fixed tree of tp-invariant numerics
// (src/numerics.rs: tree(x) = tree(x[..mid]) + tree(x[mid..]), mid the largest power of
// two below the count), e.g. ((a + b) + (c + d)) + ((e + f) + (g + h)) for eight and
// (a + b) + c for three.

struct Params {
    len: u32,
    count: u32,
    row_stride: u32,
    base: u32,
    tree: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> d: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> e: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> f: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> h: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(9) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].len & 1u];
}

// The sum of the first n of (x0, ..., x7) along the tree: pairs, then quads, then the two
// quads, each join present only when its right side has an addend. Named values, no array:
// llvmpipe keeps an indexed array in memory.
fn tree(x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
        x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, n: u32) -> vec4<f32> {
    var p01 = x0;
    if (n > 1u) {
        p01 = p01 + x1;
    }
    var q0 = p01;
    if (n > 2u) {
        var p23 = x2;
        if (n > 3u) {
            p23 = p23 + x3;
        }
        q0 = p01 + p23;
    }
    if (n <= 4u) {
        return q0;
    }
    var p45 = x4;
    if (n > 5u) {
        p45 = p45 + x5;
    }
    var q1 = p45;
    if (n > 6u) {
        var p67 = x6;
        if (n > 7u) {
            p67 = p67 + x7;
        }
        q1 = p45 + p67;
    }
    return q0 + q1;
}

@compute @workgroup_size(256, 1, 1)
fn sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = load_params();
    let l = gid.x + gid.y * p.row_stride;
    if (l >= p.len) {
        return;
    }
    let i = p.base + l;
    let n = p.count;
    let zero = vec4<f32>(0.0);
    let x0 = a[i];
    let x1 = b[i];
    var x2 = zero;
    var x3 = zero;
    var x4 = zero;
    var x5 = zero;
    var x6 = zero;
    var x7 = zero;
    if (n > 2u) { x2 = c[i]; }
    if (n > 3u) { x3 = d[i]; }
    if (n > 4u) { x4 = e[i]; }
    if (n > 5u) { x5 = f[i]; }
    if (n > 6u) { x6 = g[i]; }
    if (n > 7u) { x7 = h[i]; }
    if (p.tree != 0u) {
        out[i] = tree(x0, x1, x2, x3, x4, x5, x6, x7, n);
        return;
    }
    var s = x0 + x1;
    if (n > 2u) { s = s + x2; }
    if (n > 3u) { s = s + x3; }
    if (n > 4u) { s = s + x4; }
    if (n > 5u) { s = s + x5; }
    if (n > 6u) { s = s + x6; }
    if (n > 7u) { s = s + x7; }
    out[i] = s;
}
