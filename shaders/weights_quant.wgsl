// The binding and byte readers shared by the preludes of GGUF's quantized formats
// (weights_q8_0.wgsl ... weights_q6_k.wgsl, each appended after this file and f16.wgsl by
// src/kernels/mod.rs). The weights are the file's bytes as they are: whole blocks, one
// after another, row after row (a row of K values is K / block values blocks), so value
// i lies in block i / (block values) at byte (i / block values) * (block bytes). Blocks of
// 18, 22, 34 or 210 bytes do not keep 4-byte alignment, so bytes are read out of the
// little-endian words holding them. Offsets and leading dimensions stay in values, as for
// every prelude (weights_f32.wgsl), and a band starts at a block's start.
//
//   w storage, read, array<u32>: the band's bytes, padded by src/tensor/mod.rs to whole
//     words plus one, so a 4-byte read at the band's last byte stays inside the buffer;
//   load_w(i) -> f32 (scalar) and load_w4(i) -> vec4<f32> (vec4: values 4 i .. 4 i + 4,
//     which never cross a block of 32) in each format's file, decoded as
//     src/kernels/quant.rs does on the host;
//   for a loop over consecutive vec4 units (gemm_skinny_entry.wgsl with QUANT), the same
//   load in two halves: W_GROUP, the units sharing a block's factors (aligned groups of
//   W_GROUP units in the value index), w_group(i) -> WGroup those factors and where the
//   group's quant bytes lie, for any unit i of the group, and load_w4_in(i, g) = load_w4(i)
//   for g = w_group(i) (the same f32 operations on the same values, so the same bits),
//   which reads only the unit's quant bytes.

// A group's factors (each format says which) and where its bytes lie: `at`, `at2` and
// `shift` as the format's w_group sets them.
struct WGroup {
    f: vec2<f32>,
    at: u32,
    at2: u32,
    shift: u32,
}

@group(0) @binding({{BINDING}}) var<storage, read> w: array<u32>;

// Byte o.
fn w_byte(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// The f16 at byte o (o even, so within one word), widened.
fn w_half(o: u32) -> f32 {
    return f16_to_f32((w[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu);
}

// Bytes o .. o + 4 as a little-endian word, at any alignment.
fn w_word(o: u32) -> u32 {
    let lo = w[o >> 2u];
    let shift = (o & 3u) * 8u;
    if (shift == 0u) {
        return lo;
    }
    return (lo >> shift) | (w[(o >> 2u) + 1u] << (32u - shift));
}

// The four bytes of a word, low first.
fn bytes4(word: u32) -> vec4<u32> {
    return vec4<u32>(word & 0xffu, (word >> 8u) & 0xffu, (word >> 16u) & 0xffu, word >> 24u);
}

// The low nibbles of the four bytes of `word >> shift`, low byte first, as f32.
fn nibbles4(word: u32, shift: u32) -> vec4<f32> {
    let n = (word >> shift) & 0x0f0f0f0fu;
    return vec4<f32>(vec4<u32>(n & 0xffu, (n >> 8u) & 0xffu, (n >> 16u) & 0xffu, n >> 24u));
}

// A byte's value as a signed 8-bit integer.
fn signed8(b: u32) -> i32 {
    return bitcast<i32>(b << 24u) >> 24u;
}

// Q4_K's and Q5_K's scales (weights_q4_k.wgsl, weights_q5_k.wgsl).

// The 6-bit scale (x) and minimum (y) of block s from the 12 bytes at byte o.
fn k4_scale_min(o: u32, s: u32) -> vec2<u32> {
    if (s < 4u) {
        return vec2<u32>(w_byte(o + s) & 63u, w_byte(o + 4u + s) & 63u);
    }
    let e = w_byte(o + 4u + s);
    return vec2<u32>((e & 15u) | ((w_byte(o + s - 4u) >> 6u) << 4u), (e >> 4u) | ((w_byte(o + s) >> 6u) << 4u));
}

// d * sc (x) and dmin * m (y) of block s of the super-block at byte b.
fn k4_factors(b: u32, s: u32) -> vec2<f32> {
    let sm = k4_scale_min(b + 4u, s);
    return vec2<f32>(w_half(b) * f32(sm.x), w_half(b + 2u) * f32(sm.y));
}
