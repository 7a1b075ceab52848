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

fn load_w4(i: u32) -> vec4<f32> {
    let v = 4u * i;
    let b = (v >> 5u) * 18u;
    let j = v & 31u;
    let q = (bytes4(w_word(b + 2u + (j & 15u))) >> vec4<u32>((j >> 4u) * 4u)) & vec4<u32>(15u);
    return w_half(b) * vec4<f32>(vec4<i32>(q) - vec4<i32>(8));
}
