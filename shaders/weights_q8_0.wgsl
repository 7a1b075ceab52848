// Weight prelude: GGUF Q8_0, blocks of 32 values in 34 bytes: d (f16) at 0, then 32
// signed bytes q; value j = q[j] * d. After f16.wgsl and weights_quant.wgsl (binding, shape
// and contract there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 5u) * 34u;
    return f32(signed8(w_byte(b + 2u + (i & 31u)))) * w_half(b);
}

const W_GROUP: u32 = 8u;

// (d, unused).
fn w_factors(i: u32) -> vec2<f32> {
    return vec2<f32>(w_half((i >> 3u) * 34u), 0.0);
}

fn load_w4_in(i: u32, f: vec2<f32>) -> vec4<f32> {
    let v = 4u * i;
    let b = (v >> 5u) * 34u;
    let q = bitcast<vec4<i32>>(bytes4(w_word(b + 2u + (v & 31u))) << vec4<u32>(24u)) >> vec4<u32>(24u);
    return vec4<f32>(q) * f.x;
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_factors(i));
}
