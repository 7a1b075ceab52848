//! `DType`: what a tensor's elements are. Weights may be half precision (bf16, IEEE f16),
//! stored two values to a 32-bit word on every adapter (no `SHADER_F16` needed) and
//! widened exactly to f32 where they are read, or GGUF's quantized blocks (Q8_0 ... Q6_K),
//! kept in the file's bytes and decoded where they are read (`kernels/quant.rs`);
//! everything else is f32.

/// The element type of a [`Tensor`](crate::Tensor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// 4-byte IEEE single precision: activations, biases, norms, and weights by default.
    #[default]
    F32,
    /// 2-byte IEEE half precision (binary16), as weights.
    F16,
    /// 2-byte bfloat16 (the upper half of an f32), as weights.
    BF16,
    /// GGUF Q8_0 blocks: 32 values as an f16 scale and 32 signed bytes (34 bytes).
    Q8_0,
    /// GGUF Q4_0 blocks: 32 values as an f16 scale and 32 nibbles less 8 (18 bytes).
    Q4_0,
    /// GGUF Q4_1 blocks: 32 values as f16 scale and minimum and 32 nibbles (20 bytes).
    Q4_1,
    /// GGUF Q5_0 blocks: 32 values as an f16 scale and 32 5-bit values less 16 (22 bytes).
    Q5_0,
    /// GGUF Q4_K super-blocks: 256 values in 8 blocks of 32 with 6-bit scales and minima
    /// under two f16 factors, 4-bit values (144 bytes).
    Q4K,
    /// GGUF Q5_K super-blocks: as Q4_K with 5-bit values (176 bytes).
    Q5K,
    /// GGUF Q6_K super-blocks: 256 values in 16 blocks of 16 with 8-bit scales under an
    /// f16 factor, 6-bit values less 32 (210 bytes).
    Q6K,
}

impl DType {
    /// Every type, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
    ];
}

impl DType {
    /// Values per block: 1 for f32 and the half types, 32 for Q8_0, Q4_0, Q4_1 and Q5_0,
    /// 256 for the K-quants. A row of a quantized tensor is whole blocks.
    pub fn block_values(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 => 32,
            DType::Q4K | DType::Q5K | DType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
        }
    }

    /// True for the GGUF block types (`Q8_0` ... `Q6K`).
    pub fn is_quantized(self) -> bool {
        self.block_values() > 1
    }

    /// The bytes of `values` values (a multiple of [`DType::block_values`]; a partial
    /// block counts whole).
    pub fn bytes_of(self, values: usize) -> usize {
        values.div_ceil(self.block_values()) * self.block_bytes()
    }

    /// Bytes per value of f32 and the half types (their block is one value).
    #[cfg_attr(not(feature = "safetensors"), allow(dead_code))]
    pub(crate) fn size(self) -> usize {
        self.block_bytes()
    }

    /// The f32 equal to the half value `bits` of this type (`F32`: not a half type, NaN).
    pub(crate) fn widen(self, bits: u16) -> f32 {
        match self {
            DType::F16 => f16_to_f32(bits),
            DType::BF16 => bf16_to_f32(bits),
            _ => f32::NAN,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q4K => "q4_k",
            DType::Q5K => "q5_k",
            DType::Q6K => "q6_k",
        })
    }
}

/// The f32 whose upper 16 bits are `bits` (bf16 is the top half of an f32).
pub(crate) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The f32 equal to the IEEE 754 binary16 value `bits` (subnormals, infinities and NaN
/// payloads included).
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let man = u32::from(bits & 0x3ff);
    let magnitude = match (exp, man) {
        (0, 0) => 0,
        // Subnormal: man * 2^-24, exact in f32.
        (0, m) => (m as f32 * 2f32.powi(-24)).to_bits(),
        (0x1f, m) => 0x7f80_0000 | (m << 13),
        (e, m) => ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert!(bf16_to_f32(0x7fc0).is_nan());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }
}
