//! Half-precision test data: random bf16/f16 values and their widening, written out here
//! apart from the crate's own.

use wgpu_tp::reference::Rng;
use wgpu_tp::DType;

/// bf16 or f16 bits to the equal f32.
pub fn widen(dtype: DType, h: u16) -> f32 {
    match dtype {
        DType::BF16 => f32::from_bits(u32::from(h) << 16),
        _ => {
            let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
            let (e, m) = (i32::from((h >> 10) & 0x1f), f64::from(h & 0x3ff));
            let v = match e {
                0 => m * 2f64.powi(-24),
                31 if m == 0.0 => f64::INFINITY,
                31 => f64::NAN,
                _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
            };
            (sign * v) as f32
        }
    }
}

/// `n` random `dtype` values near magnitude 1 (the f32 normal's top bits), with zeros,
/// negative zeros and, for f16, subnormals mixed in: their bits and widened values.
pub fn halves(rng: &mut Rng, dtype: DType, n: usize) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = rng
        .normal(n)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match (i % 13, dtype) {
            (0, _) => 0,
            (1, _) => 0x8000,
            (2, DType::F16) => 1 + (v.to_bits() % 1023) as u16,
            (_, DType::BF16) => (v.to_bits() >> 16) as u16,
            _ => {
                // |v| as f16 by truncation: exponent rebased, top 10 mantissa bits.
                let b = v.to_bits();
                let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
                let sign = ((b >> 16) & 0x8000) as u16;
                sign | (e.clamp(1, 30) as u16) << 10 | ((b >> 13) & 0x3ff) as u16
            }
        })
        .collect();
    let wide = bits.iter().map(|&h| widen(dtype, h)).collect();
    (bits, wide)
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The bits of `dtype` whose widening is `v` (a value of the type: exactly one).
pub fn narrow_toward(dtype: DType, v: f32) -> u16 {
    let found = (0..=u16::MAX).find(|&b| widen(dtype, b).to_bits() == v.to_bits());
    found.unwrap_or_else(|| panic!("{v} is no {dtype} value"))
}

/// The finite values of `dtype` next to `bits` in magnitude (same sign; across zero the
/// other sign's smallest).
pub fn neighbours(dtype: DType, bits: u16) -> Vec<u16> {
    let inf: u16 = if dtype == DType::BF16 { 0x7f80 } else { 0x7c00 };
    let (sign, mag) = (bits & 0x8000, bits & 0x7fff);
    let mut out = Vec::new();
    if mag + 1 < inf {
        out.push(sign | (mag + 1));
    }
    match mag {
        0 => out.push((sign ^ 0x8000) | 1),
        _ => out.push(sign | (mag - 1)),
    }
    out
}
