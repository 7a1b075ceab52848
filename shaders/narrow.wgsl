// Narrowing f32 values into a half-precision tensor (src/ops/narrow.rs): an optimizer's
// f32 master copy written back to the bf16 or f16 weights the model reads, each value
// rounded to nearest, ties to even (torch's `.to(torch.bfloat16)` / `.half()`), in
// integer operations (no SHADER_F16 needed).
//
// Bindings (the elementwise layout):
//   0: a    storage, read       one band of the f32 values, row-major
//   1: b    storage, read       unused (bound to a)
//   2: out  storage, read_write one band of the half tensor: two values a 32-bit word, the
//                               first in the low half (shaders/weights_bf16.wgsl)
//   3: params uniform array<Params, 2>, two equal copies
//
// Dispatch: workgroups (gx, gy, 1) of 256 invocations; invocation i = gid.x + gid.y *
// p.row_stride handles word w = p.base + i of out's band, for i < p.count. Of its two
// values (band indices 2 w and 2 w + 1) it writes those in [p.row0, p.col0), read from
// a at index + p.a_cols (u32, wrapping: a's band may start before or after out's), and
// keeps the other half as it was (a word two bands of a share is written by two
// dispatches, one half each).

struct Params {
    count: u32,
    cols: u32,
    a_cols: u32,
    row0: u32,
    col0: u32,
    row_stride: u32,
    base: u32,
    value: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
// The parameters, twice (src/kernels/uniforms.rs says why): each entry point reads
// them once through load_params, at an index no compiler can fold to a constant.
@group(0) @binding(3) var<uniform> params: array<Params, 2>;

fn load_params() -> Params {
    return params[params[0].count & 1u];
}

// bf16 bits (low 16) of x, rounded to nearest even; NaN stays a (quiet) NaN.
fn bf16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (u >> 16u) | 0x40u;
    }
    return (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
}

// IEEE binary16 bits (low 16) of x, rounded to nearest even: past 65504 to infinity,
// below 2^-14 to a subnormal (the mantissa's bits shifted out rounded likewise); NaN stays
// a quiet NaN.
fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    // 65520 and above round to infinity.
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    // Normal: exponent rebased, 13 bits rounded off.
    if (a >= 0x38800000u) {
        let r = a + 0xfffu + ((a >> 13u) & 1u);
        return sign | ((r - 0x38000000u) >> 13u);
    }
    // Subnormal or zero: the full mantissa (implicit bit set) shifted right by 126 - e,
    // 14 to 24 places (more: zero), rounded to nearest even.
    let e = a >> 23u;
    if (e < 102u) {
        return sign;
    }
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let kept = m >> shift;
    let rest = m - (kept << shift);
    let half = 1u << (shift - 1u);
    var h = kept;
    if (rest > half || (rest == half && (kept & 1u) == 1u)) {
        h = h + 1u;
    }
    return sign | h;
}

fn narrow(p: Params, gid: vec3<u32>, to_bf16: bool) {
    let i = gid.x + gid.y * p.row_stride;
    if (i >= p.count) {
        return;
    }
    let w = p.base + i;
    var word = out[w];
    for (var j = 0u; j < 2u; j = j + 1u) {
        let k = 2u * w + j;
        if (k >= p.row0 && k < p.col0) {
            let x = a[k + p.a_cols];
            var h: u32;
            if (to_bf16) {
                h = bf16_bits(x);
            } else {
                h = f16_bits(x);
            }
            let at = 16u * j;
            word = (word & ~(0xffffu << at)) | (h << at);
        }
    }
    out[w] = word;
}

@compute @workgroup_size(256, 1, 1)
fn to_bf16(@builtin(global_invocation_id) gid: vec3<u32>) {
    narrow(load_params(), gid, true);
}

@compute @workgroup_size(256, 1, 1)
fn to_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    narrow(load_params(), gid, false);
}
