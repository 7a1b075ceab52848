// Weight prelude: GGUF Q5_0, blocks of 32 values in 22 bytes: d (f16) at 0, qh (32 bits,
// little-endian, bit j the fifth bit of value j) at 2, then 16 bytes of low nibbles as in
// Q4_0; value j = d * ((nibble | bit << 4) - 16). After f16.wgsl and weights_quant.wgsl
// (binding, shape and contract there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 5u) * 22u;
    let j = i & 31u;
    let low = (w_byte(b + 6u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    let high = (w_word(b + 2u) >> j) & 1u;
    return w_half(b) * f32(i32(low | (high << 4u)) - 16);
}

const W_GROUP: u32 = 8u;

// f = (d, unused); at: the byte of the block's low nibbles; at2: qh itself.
fn w_group(i: u32) -> WGroup {
    let b = (i >> 3u) * 22u;
    return WGroup(vec2<f32>(w_half(b), 0.0), b + 6u, w_word(b + 2u), 0u);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let j = 4u * (i & 7u);
    let low = (bytes4(w_word(g.at + (j & 15u))) >> vec4<u32>((j >> 4u) * 4u)) & vec4<u32>(15u);
    let high = (vec4<u32>(g.at2 >> j) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return g.f.x * vec4<f32>(vec4<i32>(low | (high << vec4<u32>(4u))) - vec4<i32>(16));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
