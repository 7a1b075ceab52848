// Weight prelude: GGUF Q5_K, super-blocks of 256 values in 176 bytes: d, dmin and the 12
// bytes of scales and minima as in Q4_K (weights_q4_k.wgsl), 32 bytes qh at 16 (bit s of
// byte l is the fifth bit of value 32 s + l), 128 bytes of nibbles at 48 laid out as
// Q4_K's. Value j of block s = j / 32: (d * sc[s]) * (nibble | bit << 4) - dmin * m[s]
// (both products exact). After f16.wgsl and weights_quant.wgsl (binding, shape and
// contract there; k4_factors).

fn load_w(i: u32) -> f32 {
    let b = (i >> 8u) * 176u;
    let j = i & 255u;
    let s = j >> 5u;
    let f = k4_factors(b, s);
    let low = (w_byte(b + 48u + 32u * (j >> 6u) + (j & 31u)) >> (4u * (s & 1u))) & 15u;
    let high = (w_byte(b + 16u + (j & 31u)) >> s) & 1u;
    return f.x * f32(low | (high << 4u)) - f.y;
}

const W_GROUP: u32 = 8u;

// f = (d * sc, dmin * m) of the block of 32; at: the word of its first unit's nibbles;
// at2: the word of its first unit's qh bytes; shift: the block's index s (its qh bit).
fn w_group(i: u32) -> WGroup {
    let b = (i >> 6u) * 176u;
    let s = (i >> 3u) & 7u;
    return WGroup(k4_factors(b, s), (b + 48u + 32u * (s >> 1u)) >> 2u, (b + 16u) >> 2u, s);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let low = nibbles4(w[g.at + (i & 7u)], 4u * (g.shift & 1u));
    let high = vec4<f32>((bytes4(w[g.at2 + (i & 7u)]) >> vec4<u32>(g.shift)) & vec4<u32>(1u));
    // low + 16 high is exact, and d * sc * q too, so the fused form rounds as the
    // separate one.
    return fma(vec4<f32>(g.f.x), low + 16.0 * high, vec4<f32>(-g.f.y));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
