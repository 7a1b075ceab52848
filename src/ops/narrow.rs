//! `narrow_into`: f32 values written into a bf16 or f16 tensor, each rounded to nearest
//! even (`shaders/narrow.wgsl`), band by band: an optimizer's f32 master copy written back
//! to the half-precision weights a model reads.

use super::{overlap, same_rank};
use crate::error::{fmt_shape, Error, Result};
use crate::kernels::dtype::DType;
use crate::kernels::params::ElementwiseParams;
use crate::kernels::{pieces, PipelineKey, Shader};
use crate::tensor::Tensor;

/// Writes `src` (f32) into `dst` (bf16 or f16, the same shape), in place, each value
/// rounded to nearest, ties to even (NaN stays NaN, past the type's range infinity).
/// `dst` must be visible to no kernel in flight that reads it otherwise (the caller's
/// order of submission).
///
/// # Errors
/// [`Error::Shape`] for another shape; [`Error::InvalidArgument`] for tensors on other
/// ranks, `src` not f32 or `dst` not bf16 or f16 throughout; wgpu errors.
pub(crate) fn narrow_into(src: &Tensor, dst: &Tensor) -> Result<()> {
    let op = "narrow";
    same_rank(op, src.rank(), dst.rank())?;
    src.require_f32(op)?;
    if src.shape() != dst.shape() {
        return Err(Error::shape(
            op,
            fmt_shape(dst.shape()),
            fmt_shape(src.shape()),
        ));
    }
    let entry = match dst.dtype() {
        DType::BF16 if !dst.is_mixed() => "to_bf16",
        DType::F16 if !dst.is_mixed() => "to_f16",
        other => {
            return Err(Error::invalid(
                op,
                format!("{other} is not a half type to narrow into"),
            ))
        }
    };
    let key = PipelineKey {
        shader: Shader::Narrow,
        entry,
        constants: Vec::new(),
        weights: DType::F32,
    };
    let rank = src.rank();
    let cols = src.shape()[1];
    let max = rank.limits().max_compute_workgroups_per_dimension;
    for ob in dst.bands() {
        for ab in src.bands() {
            let Some(rows) = overlap(&ob.rows, &ab.rows) else {
                continue;
            };
            // The values of out's band it writes, and where a's band holds them.
            let lo = (rows.start - ob.rows.start) * cols;
            let hi = (rows.end - ob.rows.start) * cols;
            let shift = (ob.rows.start * cols).wrapping_sub(ab.rows.start * cols) as u32;
            let first = lo / 2;
            let words = hi.div_ceil(2) - first;
            let bufs = [ab.buffer(), ab.buffer(), ob.buffer()];
            for piece in pieces(words, max) {
                let params = ElementwiseParams {
                    count: piece.count,
                    row_stride: piece.stride,
                    base: first as u32 + piece.base,
                    a_cols: shift,
                    row0: lo as u32,
                    col0: hi as u32,
                    ..ElementwiseParams::default()
                };
                rank.dispatch(op, &key, &bufs, &params, piece.grid)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Every value narrowed as round-to-nearest-even says, against a reference that
    //! searches the type's whole table of values (no bit tricks): random magnitudes, exact
    //! ties, subnormals, zeros, infinities, NaN and the edge of each type's range, in an
    //! odd shape and banded.

    use super::*;
    use crate::reference::Rng;
    use crate::{Group, GroupBuilder};

    /// `builder`'s one rank, or `None` without an adapter (locally; under `CI=true` it
    /// panics).
    fn rank(builder: GroupBuilder) -> Option<crate::Rank> {
        match builder.build() {
            Ok(g) => Some(g.ranks()[0].clone()),
            Err(Error::NoAdapter { .. }) if std::env::var("CI").is_err() => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// The nearest value of `dtype` to `x` (ties to the even bit pattern; at or past the
    /// midpoint between the largest finite value and the next power of the exponent,
    /// infinity), as its bits, by binary search in the sorted table of its non-negative
    /// finite values.
    fn nearest(dtype: DType, x: f32) -> u16 {
        let inf: u16 = if dtype == DType::BF16 { 0x7f80 } else { 0x7c00 };
        if x.is_nan() {
            return inf | 0x40;
        }
        let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = f64::from(x.abs());
        let table: Vec<f64> = (0..inf).map(|b| f64::from(dtype.widen(b))).collect();
        let max = table[table.len() - 1];
        // One more step of the last binade.
        let next = 2.0 * max - table[table.len() - 2];
        if a >= (max + next) / 2.0 {
            return sign | inf;
        }
        let i = table.partition_point(|&v| v < a).min(table.len() - 1);
        let best = if i == 0 {
            0
        } else {
            let (lo, hi) = (table[i - 1], table[i]);
            match (a - lo).partial_cmp(&(hi - a)) {
                Some(std::cmp::Ordering::Less) => i - 1,
                Some(std::cmp::Ordering::Greater) => i,
                _ if (i - 1) % 2 == 0 => i - 1,
                _ => i,
            }
        };
        sign | best as u16
    }

    fn values(dtype: DType, n: usize) -> Vec<f32> {
        let mut rng = Rng::new(9);
        let mut out = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE / 4.0,
            f32::MAX,
            -f32::MAX,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            65536.0,
            1.0 + 1.0 / 512.0,
            1.0 + 3.0 / 512.0,
            2f32.powi(-24),
            2f32.powi(-25),
            3.0 * 2f32.powi(-26),
            2f32.powi(-14) - 2f32.powi(-25),
        ];
        // Exact midpoints between neighbours of the type, and points just off them.
        let limit: u16 = if dtype == DType::BF16 { 0x7f7f } else { 0x7bff };
        for _ in 0..200 {
            let b = (rng.uniform() * f64::from(limit)) as u16;
            let (lo, hi) = (f64::from(dtype.widen(b)), f64::from(dtype.widen(b + 1)));
            let mid = ((lo + hi) / 2.0) as f32;
            out.extend([
                mid,
                -mid,
                f32::from_bits(mid.to_bits() + 1),
                f32::from_bits(mid.to_bits() - 1),
            ]);
        }
        while out.len() < n {
            let e = rng.uniform() * 60.0 - 30.0;
            let v = ((rng.uniform() * 2.0 - 1.0) * 2f64.powf(e)) as f32;
            out.push(v);
        }
        out.truncate(n);
        out
    }

    fn check(rank: &crate::Rank, dtype: DType, shape: [usize; 2], what: &str) {
        let n = shape[0] * shape[1];
        let v = values(dtype, n);
        let src = Tensor::from_host(rank, &v, shape).unwrap();
        // Start from other values (every half of every word is written, none kept stale).
        let stale = vec![0x1234u16; n];
        let dst = Tensor::from_half(rank, dtype, &stale, shape).unwrap();
        narrow_into(&src, &dst).unwrap();
        let got = dst.to_host().unwrap();
        for (i, (&x, g)) in v.iter().zip(got).enumerate() {
            let want = dtype.widen(nearest(dtype, x));
            let same = (want.is_nan() && g.is_nan()) || want.to_bits() == g.to_bits();
            assert!(
                same,
                "{what} {dtype}: value {i}: {x:e} ({:#010x}) -> {g:e}, want {want:e}",
                x.to_bits()
            );
        }
    }

    #[test]
    fn narrowing_rounds_to_nearest_even() {
        let Some(r) = rank(Group::builder().ranks_on_one_adapter(1)) else {
            return;
        };
        for dtype in [DType::BF16, DType::F16] {
            check(&r, dtype, [41, 23], "odd shape");
        }
        // 4 KiB buffers: bands of 16 rows of 53 (each half band's odd count of values
        // ends in a padded word).
        let mut limits = wgpu::Limits::downlevel_defaults();
        limits.max_buffer_size = 4096;
        limits.max_storage_buffer_binding_size = 4096;
        let Some(small) = rank(
            Group::builder()
                .ranks_on_one_adapter(1)
                .required_limits(limits),
        ) else {
            return;
        };
        for dtype in [DType::BF16, DType::F16] {
            let src = Tensor::from_host(&small, &vec![0.0; 37 * 53], [37, 53]).unwrap();
            assert!(src.bands().len() > 1);
            check(&small, dtype, [37, 53], "banded");
        }
    }
}
