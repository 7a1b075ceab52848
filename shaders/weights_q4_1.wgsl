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

fn load_w4(i: u32) -> vec4<f32> {
    let v = 4u * i;
    let b = (v >> 5u) * 20u;
    let j = v & 31u;
    let q = (bytes4(w_word(b + 4u + (j & 15u))) >> vec4<u32>((j >> 4u) * 4u)) & vec4<u32>(15u);
    return w_half(b) * vec4<f32>(q) + vec4<f32>(w_half(b + 2u));
}
