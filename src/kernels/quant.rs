//! GGUF's quantized blocks decoded on the host: the values the weight preludes
//! (`shaders/weights_q*.wgsl`) decode on the device, by the same f32 operations in the same
//! order as llama.cpp's `gguf` Python package (`gguf.quants.dequantize`), so the three
//! agree bit for bit (tests/quant.rs checks the package's values and the kernels').
//!
//! Each format's values are `d * q` (Q8_0, Q4_0, Q5_0), `d * q + m` (Q4_1),
//! `(d * sc) * q - dmin * m` (Q4_K, Q5_K) or `(d * sc) * q` (Q6_K) with `d`, `m`, `dmin`
//! widened exactly from f16 and `sc`, `m`, `q` small integers: every product but Q6_K's
//! last is exact in f32 (at most 22 significant bits), so a fused multiply-add, which a
//! driver may use, rounds as the package's separate operations do.

use super::dtype::{f16_to_f32, DType};
use crate::error::{Error, Result};

/// The f16 at `b[o..o + 2]`, widened.
fn half(b: &[u8], o: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[o], b[o + 1]]))
}

/// Q4_K's and Q5_K's 6-bit scale and minimum of block `s` (0..8) from their 12 bytes.
pub(crate) fn scale_min_k4(scales: &[u8], s: usize) -> (u8, u8) {
    if s < 4 {
        (scales[s] & 63, scales[s + 4] & 63)
    } else {
        (
            (scales[s + 4] & 0xf) | ((scales[s - 4] >> 6) << 4),
            (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4),
        )
    }
}

/// Appends the values of one block `b` of `dtype` (a quantized type) to `out`.
fn block(dtype: DType, b: &[u8], out: &mut Vec<f32>) {
    match dtype {
        DType::Q8_0 => {
            let d = half(b, 0);
            out.extend(b[2..34].iter().map(|&q| f32::from(q as i8) * d));
        }
        DType::Q4_0 => {
            let d = half(b, 0);
            let q = |j: usize| (b[2 + j % 16] >> (4 * (j / 16))) & 0xf;
            out.extend((0..32).map(|j| d * f32::from(q(j) as i8 - 8)));
        }
        DType::Q4_1 => {
            let (d, m) = (half(b, 0), half(b, 2));
            let q = |j: usize| (b[4 + j % 16] >> (4 * (j / 16))) & 0xf;
            out.extend((0..32).map(|j| d * f32::from(q(j)) + m));
        }
        DType::Q5_0 => {
            let d = half(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let q = |j: usize| {
                let low = (b[6 + j % 16] >> (4 * (j / 16))) & 0xf;
                (low | ((((qh >> j) & 1) as u8) << 4)) as i8 - 16
            };
            out.extend((0..32).map(|j| d * f32::from(q(j))));
        }
        DType::Q4K | DType::Q5K => {
            let (d, dmin) = (half(b, 0), half(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = if dtype == DType::Q5K {
                (&b[16..48], &b[48..176])
            } else {
                (&b[0..0], &b[16..144])
            };
            for j in 0..256 {
                let s = j / 32;
                let (sc, m) = scale_min_k4(scales, s);
                let byte = qs[32 * (j / 64) + j % 32];
                let mut q = (byte >> (4 * (s % 2))) & 0xf;
                if dtype == DType::Q5K {
                    q |= ((qh[j % 32] >> s) & 1) << 4;
                }
                let ds = d * f32::from(sc);
                let dm = dmin * f32::from(m);
                out.push(ds * f32::from(q) - dm);
            }
        }
        DType::Q6K => {
            let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = half(b, 208);
            for j in 0..256 {
                let (h, t, p) = (j / 128, (j / 64) % 2, j % 64);
                let low = (ql[64 * h + p] >> (4 * t)) & 0xf;
                let u = (j % 128) / 32;
                let high = (qh[32 * h + j % 32] >> (2 * u)) & 3;
                let q = (low | (high << 4)) as i8 - 32;
                let ds = d * f32::from(scales[j / 16] as i8);
                out.push(ds * f32::from(q));
            }
        }
        DType::F32 | DType::F16 | DType::BF16 => {}
    }
}

impl DType {
    /// The f32 values of `bytes`, whole blocks of this type (f32 values, the half types'
    /// 16-bit values, or quantized blocks; all little-endian, as GGUF and safetensors
    /// files hold them), exactly as the kernels read them.
    ///
    /// # Errors
    /// [`Error::Shape`] when `bytes` is not whole blocks.
    pub fn dequantize(self, bytes: &[u8]) -> Result<Vec<f32>> {
        let bb = self.block_bytes();
        if !bytes.len().is_multiple_of(bb) {
            return Err(Error::shape(
                "dtype.dequantize",
                format!("whole {self} blocks of {bb} bytes"),
                format!("{} bytes", bytes.len()),
            ));
        }
        let mut out = Vec::with_capacity(bytes.len() / bb * self.block_values());
        for b in bytes.chunks_exact(bb) {
            match self {
                DType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                DType::F16 | DType::BF16 => out.push(self.widen(u16::from_le_bytes([b[0], b[1]]))),
                _ => block(self, b, &mut out),
            }
        }
        Ok(out)
    }
}
