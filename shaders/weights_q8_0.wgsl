// Weight prelude: GGUF Q8_0, blocks of 32 values in 34 bytes: d (f16) at 0, then 32
// signed bytes q; value j = q[j] * d. After f16.wgsl and weights_quant.wgsl (binding, shape
// and contract there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 5u) * 34u;
    return f32(signed8(w_byte(b + 2u + (i & 31u)))) * w_half(b);
}

const W_GROUP: u32 = 8u;

// f = (d, unused); at: the byte of the block's first quant.
fn w_group(i: u32) -> WGroup {
    let b = (i >> 3u) * 34u;
    return WGroup(vec2<f32>(w_half(b), 0.0), b + 2u, 0u, 0u);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let q = bitcast<vec4<i32>>(bytes4(w_word(g.at + 4u * (i & 7u))) << vec4<u32>(24u)) >> vec4<u32>(24u);
    return vec4<f32>(q) * g.f.x;
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
