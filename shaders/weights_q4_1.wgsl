// Weight prelude: GGUF Q4_1, blocks of 32 values in 20 bytes: d (f16) at 0, m (f16) at 2,
// then 16 bytes of nibbles as in Q4_0; value j = d * nibble + m (the product is exact, so
// a fused multiply-add rounds the same). After f16.wgsl and weights_quant.wgsl (binding,
// shape and contract there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 5u) * 20u;
    let j = i & 31u;
    let q = (w_byte(b + 4u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    return w_half(b) * f32(q) + w_half(b + 2u);
}

const W_GROUP: u32 = 8u;

// f = (d, m); at: the byte of the block's first quants.
fn w_group(i: u32) -> WGroup {
    let b = (i >> 3u) * 20u;
    return WGroup(vec2<f32>(w_half(b), w_half(b + 2u)), b + 4u, 0u, 0u);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let j = 4u * (i & 7u);
    // d * q is exact, so the fused form rounds as the separate one.
    return fma(vec4<f32>(g.f.x), nibbles4(w_word(g.at + (j & 15u)), (j >> 4u) * 4u), vec4<f32>(g.f.y));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
