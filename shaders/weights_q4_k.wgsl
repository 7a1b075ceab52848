// Weight prelude: GGUF Q4_K, super-blocks of 256 values in 144 bytes: d (f16) at 0, dmin
// (f16) at 2, 12 bytes of eight 6-bit scales and minima at 4 (k4_scale_min), 128 bytes of
// nibbles at 16: values 64 c .. 64 c + 32 are the low nibbles of bytes 32 c .. 32 c + 32,
// values 64 c + 32 .. 64 c + 64 their high nibbles. Value j of block s = j / 32:
// (d * sc[s]) * nibble - dmin * m[s] (both products exact). After f16.wgsl and
// weights_quant.wgsl (binding, shape and contract there; k4_factors).

fn load_w(i: u32) -> f32 {
    let b = (i >> 8u) * 144u;
    let j = i & 255u;
    let s = j >> 5u;
    let f = k4_factors(b, s);
    let q = (w_byte(b + 16u + 32u * (j >> 6u) + (j & 31u)) >> (4u * (s & 1u))) & 15u;
    return f.x * f32(q) - f.y;
}

const W_GROUP: u32 = 8u;

// f = (d * sc, dmin * m) of the block of 32; at: the word of its first unit's nibbles;
// shift: 0 (low nibbles) or 4 (high).
fn w_group(i: u32) -> WGroup {
    let b = (i >> 6u) * 144u;
    let s = (i >> 3u) & 7u;
    return WGroup(k4_factors(b, s), (b + 16u + 32u * (s >> 1u)) >> 2u, 0u, 4u * (s & 1u));
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let q = nibbles4(w[g.at + (i & 7u)], g.shift);
    // d * sc * q is exact, so the fused form rounds as the separate one.
    return fma(vec4<f32>(g.f.x), q, vec4<f32>(-g.f.y));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
