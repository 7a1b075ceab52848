// Weight prelude: IEEE f16 weights kept at two bytes a value, widened exactly to f32 as
// they are read (the arithmetic after the load is the f32 path's, so given the widened
// values a kernel's bits are its f32 bits). Two values a 32-bit word, the first in the low
// half: the little-endian bytes of the 16-bit values, as a checkpoint holds them. Plain
// WGSL (bit operations only): no SHADER_F16 needed. Slots and the contract of a prelude:
// weights_f32.wgsl. Requires f16.wgsl before it.
//
//   scalar: w storage, read, array<u32>: weight i in word i / 2 (low half when i is even);
//           load_w(i) -> f32
//   vec4:   w storage, read, array<vec2<u32>>: unit i (weights 4 i .. 4 i + 4) in the word
//           pair i; load_w4(i) -> vec4<f32>

//# if VEC4

@group(0) @binding({{BINDING}}) var<storage, read> w: array<vec2<u32>>;

// Weights 4 i .. 4 i + 4, widened from f16.
fn load_w4(i: u32) -> vec4<f32> {
    let pair = w[i];
    return vec4<f32>(f16_to_f32(pair.x & 0xffffu), f16_to_f32(pair.x >> 16u), f16_to_f32(pair.y & 0xffffu), f16_to_f32(pair.y >> 16u));
}
//# else

@group(0) @binding({{BINDING}}) var<storage, read> w: array<u32>;

// Weight i, widened from f16.
fn load_w(i: u32) -> f32 {
    let word = w[i >> 1u];
    if ((i & 1u) == 0u) {
        return f16_to_f32(word & 0xffffu);
    }
    return f16_to_f32(word >> 16u);
}
//# end
