// Weight prelude: GGUF Q6_K, super-blocks of 256 values in 210 bytes: 128 bytes ql at 0,
// 64 bytes qh at 128, 16 signed 8-bit scales at 192, d (f16) at 208. Value j = 128 h + p
// (p < 128): its low four bits are nibble p / 64 (low, then high) of ql byte 64 h + p % 64,
// its top two bits are bits 2 (p / 32) of qh byte 32 h + p % 32; value j =
// (d * scale[j / 16]) * (q - 32). After f16.wgsl and weights_quant.wgsl (binding, shape
// and contract there).

fn load_w(i: u32) -> f32 {
    let b = (i >> 8u) * 210u;
    let j = i & 255u;
    let h = j >> 7u;
    let low = (w_byte(b + 64u * h + (j & 63u)) >> (4u * ((j >> 6u) & 1u))) & 15u;
    let high = (w_byte(b + 128u + 32u * h + (j & 31u)) >> (2u * ((j >> 5u) & 3u))) & 3u;
    let ds = w_half(b + 208u) * f32(signed8(w_byte(b + 192u + (j >> 4u))));
    return ds * f32(i32(low | (high << 4u)) - 32);
}

// Units of 4 values under one scale of 16.
const W_GROUP: u32 = 4u;

// f = (d * scale, unused) of the 16 values; at, at2: the bytes of their first ql and qh;
// shift: the ql nibble's shift, and the qh pair's 8 bits up.
fn w_group(i: u32) -> WGroup {
    let b = (i >> 6u) * 210u;
    // The group's first value.
    let j = (4u * i) & 240u;
    let h = j >> 7u;
    let ds = w_half(b + 208u) * f32(signed8(w_byte(b + 192u + (j >> 4u))));
    let shift = (4u * ((j >> 6u) & 1u)) | ((2u * ((j >> 5u) & 3u)) << 8u);
    return WGroup(vec2<f32>(ds, 0.0), b + 64u * h + (j & 63u), b + 128u + 32u * h + (j & 31u), shift);
}

fn load_w4_in(i: u32, g: WGroup) -> vec4<f32> {
    let o = 4u * (i & 3u);
    let low = (bytes4(w_word(g.at + o)) >> vec4<u32>(g.shift & 255u)) & vec4<u32>(15u);
    let high = (bytes4(w_word(g.at2 + o)) >> vec4<u32>(g.shift >> 8u)) & vec4<u32>(3u);
    return g.f.x * vec4<f32>(vec4<i32>(low | (high << vec4<u32>(4u))) - vec4<i32>(32));
}

fn load_w4(i: u32) -> vec4<f32> {
    return load_w4_in(i, w_group(i));
}
