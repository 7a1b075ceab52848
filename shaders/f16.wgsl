// f16_to_f32, prepended by src/kernels/mod.rs to the preludes of weights stored with f16
// values (weights_f16.wgsl and the quantized formats' scales, weights_q*.wgsl).

// IEEE binary16 bits (the low 16 of `h`) to the equal f32, in integer operations:
// `unpack2x16float` would need a capability some backends lack (naga's
// `SHADER_FLOAT16_IN_FLOAT32`). Subnormals are `m * 2^-24`, a normal f32.
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        return bitcast<f32>(sign | bitcast<u32>(ldexp(f32(m), -24)));
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
