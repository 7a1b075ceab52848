// Weight prelude: GGUF Q4_0, blocks of 32 values in 18 bytes: d (f16) at 0, then 16
// bytes whose low nibbles are values 0..16 and high nibbles values 16..32; value j =
// d * (nibble - 8). After f16.wgsl and weights_quant.wgsl (binding, shape and contract
// there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 5u) * 18u;
    let j = i & 31u;
    let q = (w_byte(b + 2u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    return w_half(b) * f32(i32(q) - 8);
}

const W_GROUP: u32 = 8u;

// (d, unused).
fn w_factors(i: u32) -> vec2<f32> {
    return vec2<f32>(w_half((i >> 3u) * 18u), 0.0);
}

fn load_w4_in(i: u32, f: vec2<f32>) -> vec4<f32> {
    let v = 4u * i;
    let b = (v >> 5u) * 18u;
    let j = v & 31u;
    // q - 8 is exact in f32.
    return f.x * (nibbles4(w_word(b + 2u + (j & 15u)), (j >> 4u) * 4u) - vec4<f32>(8.0));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_factors(i));
}
