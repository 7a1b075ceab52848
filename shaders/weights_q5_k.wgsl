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

// (d * sc, dmin * m) of unit i's block of 32.
fn w_factors(i: u32) -> vec2<f32> {
    return k4_factors((i >> 6u) * 176u, (i >> 3u) & 7u);
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_factors(i));
}

fn load_w4_in(i: u32, f: vec2<f32>) -> vec4<f32> {
    let v = 4u * i;
    let b = (v >> 8u) * 176u;
    let j = v & 255u;
    let s = j >> 5u;
    let low = (bytes4(w[(b + 48u + 32u * (j >> 6u) + (j & 31u)) >> 2u]) >> vec4<u32>(4u * (s & 1u))) & vec4<u32>(15u);
    let high = (bytes4(w[(b + 16u + (j & 31u)) >> 2u]) >> vec4<u32>(s)) & vec4<u32>(1u);
    return f.x * vec4<f32>(low | (high << vec4<u32>(4u))) - vec4<f32>(f.y);
}
