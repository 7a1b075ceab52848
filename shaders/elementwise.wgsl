// Elementwise kernels over row-major f32 matrices.
// Requires shaders/activation.wgsl prepended (src/kernels.rs does it).
//
// Bindings:
//   0: a    storage, read       input; [rows, cols] (slice: [*, p.a_cols])
//   1: b    storage, read       add: same shape as out; add_row: [cols]; otherwise unused
//   2: out  storage, read_write [rows, cols], p.len = rows * cols elements
//   3: p    uniform Params
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; element i = gid.x + gid.y * p.row_stride
// where p.row_stride = gx * 256. Invocations with i >= p.len do nothing.

struct Params {
    len: u32,
    cols: u32,
    a_cols: u32,
    row0: u32,
    col0: u32,
    row_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.row_stride;
}

// out = act(a)
@compute @workgroup_size(256, 1, 1)
fn activation(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        out[i] = activate(a[i]);
    }
}

// out = a + b
@compute @workgroup_size(256, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        out[i] = a[i] + b[i];
    }
}

// out[r, c] = a[r, c] + b[c]   (a bias broadcast over rows)
@compute @workgroup_size(256, 1, 1)
fn add_row(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        out[i] = a[i] + b[i % p.cols];
    }
}

// out[r, c] = a[(p.row0 + r) * p.a_cols + p.col0 + c]   (a window of a)
@compute @workgroup_size(256, 1, 1)
fn slice(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        let r = i / p.cols;
        let c = i % p.cols;
        out[i] = a[(p.row0 + r) * p.a_cols + p.col0 + c];
    }
}

// out[(p.row0 + r) * p.a_cols + p.col0 + c] = a[r * p.cols + c]   (a into a window of out;
// p.len = a's elements, p.cols = a's columns, p.a_cols = out's columns; the rest of out is
// left as it is, so several dispatches can assemble one matrix from blocks)
@compute @workgroup_size(256, 1, 1)
fn place(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        let r = i / p.cols;
        let c = i % p.cols;
        out[(p.row0 + r) * p.a_cols + p.col0 + c] = a[i];
    }
}
