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

// f = (d, unused); at: the byte of the block's first quants.
fn w_group(i: u32) -> WGroup {
    let b = (i >> 3u) * 18u;
    return WGroup(vec2<f32>(w_half(b), 0.0), b + 2u, 0u, 0u);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let j = 4u * (i & 7u);
    // q - 8 is exact in f32.
    return g.f.x * (nibbles4(w_word(g.at + (j & 15u)), (j >> 4u) * 4u) - vec4<f32>(8.0));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
