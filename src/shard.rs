//! How a dimension is split over ranks, and host-side slicing.
//!
//! # The split rule
//! A dimension of length `n` split over `world` ranks gives rank `r`
//! `n / world + 1` elements if `r < n % world`, else `n / world` — the first `n % world`
//! ranks get one more, exactly as `torch.tensor_split(t, world, dim)` does. Every rank
//! gets at least one element: `world > n` is refused with an error. The rule is used
//! everywhere in the crate (weights, activations, `Replicate -> Shard` slicing).

use crate::error::{Error, Result};

/// The lengths of the `world` shards of a dimension of length `n` (see the module docs).
///
/// # Errors
/// [`Error::InvalidArgument`] when `world` is 0, `n` is 0, or `world > n` (a rank would
/// get an empty shard).
pub fn split_sizes(n: usize, world: usize) -> Result<Vec<usize>> {
    if world == 0 {
        return Err(Error::invalid(
            "split_sizes",
            "world size must be at least 1",
        ));
    }
    if n == 0 {
        return Err(Error::invalid(
            "split_sizes",
            "cannot split a dimension of length 0",
        ));
    }
    if world > n {
        return Err(Error::invalid(
            "split_sizes",
            format!("tp size {world} is larger than the dimension it splits ({n})"),
        ));
    }
    let (base, extra) = (n / world, n % world);
    Ok((0..world).map(|r| base + usize::from(r < extra)).collect())
}

/// The start offset of every shard, given the shard lengths (an exclusive prefix sum).
pub fn offsets(sizes: &[usize]) -> Vec<usize> {
    sizes
        .iter()
        .scan(0, |acc, &s| {
            let start = *acc;
            *acc += s;
            Some(start)
        })
        .collect()
}

/// Copies the sub-matrix `rows x cols` of the row-major `[_, src_cols]` matrix `src`
/// starting at `(row0, col0)`.
pub fn slice_host(
    src: &[f32],
    src_cols: usize,
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in row0..row0 + rows {
        let start = r * src_cols + col0;
        out.extend_from_slice(&src[start..start + cols]);
    }
    out
}

/// Splits the row-major `[rows, cols]` matrix `src` along `dim` (0: rows, 1: columns) into
/// the shards given by `sizes`.
pub fn split_host(src: &[f32], shape: [usize; 2], dim: usize, sizes: &[usize]) -> Vec<Vec<f32>> {
    let [rows, cols] = shape;
    offsets(sizes)
        .into_iter()
        .zip(sizes)
        .map(|(start, &len)| {
            if dim == 0 {
                slice_host(src, cols, start, len, 0, cols)
            } else {
                slice_host(src, cols, 0, rows, start, len)
            }
        })
        .collect()
}

/// Concatenates row-major shards along `dim`; `shapes[i]` is the shape of `parts[i]`.
pub fn concat_host(parts: &[Vec<f32>], shapes: &[[usize; 2]], dim: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    if dim == 0 {
        for p in parts {
            out.extend_from_slice(p);
        }
    } else {
        let rows = shapes.first().map_or(0, |s| s[0]);
        for r in 0..rows {
            for (p, s) in parts.iter().zip(shapes) {
                out.extend_from_slice(&p[r * s[1]..(r + 1) * s[1]]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_follows_tensor_split() -> Result<()> {
        assert_eq!(split_sizes(10, 4)?, vec![3, 3, 2, 2]);
        assert_eq!(split_sizes(8, 4)?, vec![2, 2, 2, 2]);
        assert_eq!(split_sizes(3, 3)?, vec![1, 1, 1]);
        assert!(split_sizes(3, 4).is_err());
        assert!(split_sizes(0, 1).is_err());
        assert!(split_sizes(5, 0).is_err());
        assert_eq!(offsets(&[3, 3, 2, 2]), vec![0, 3, 6, 8]);
        Ok(())
    }

    #[test]
    fn split_then_concat_is_identity() -> Result<()> {
        let shape = [3, 7];
        let m: Vec<f32> = (0..21).map(|i| i as f32).collect();
        for dim in 0..2 {
            let sizes = split_sizes(shape[dim], 3)?;
            let parts = split_host(&m, shape, dim, &sizes);
            let shapes: Vec<[usize; 2]> = sizes
                .iter()
                .map(|&s| if dim == 0 { [s, 7] } else { [3, s] })
                .collect();
            assert_eq!(concat_host(&parts, &shapes, dim), m);
        }
        Ok(())
    }
}
