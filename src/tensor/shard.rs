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

/// The lengths of the `world` shards of a dimension of length `n` cut only at multiples of
/// `unit` (and at `n`): the split rule applied to the `n.div_ceil(unit)` units, the last
/// unit short when `unit` does not divide `n` — as even as whole units allow. This is how
/// quantized weights split along their inputs: `unit` is the blocks' values (32 or 256), or
/// the heads whose features make whole blocks. `unit` 1 is [`split_sizes`].
///
/// # Errors
/// [`Error::InvalidArgument`] when `unit` is 0, or as [`split_sizes`] over the units (a tp
/// size over the number of whole units).
pub fn split_in_units(n: usize, world: usize, unit: usize) -> Result<Vec<usize>> {
    if unit == 0 {
        return Err(Error::invalid("split_in_units", "a unit of 0 elements"));
    }
    let units = n.div_ceil(unit);
    let mut sizes: Vec<usize> = split_sizes(units, world)
        .map_err(|e| match unit {
            1 => e,
            _ => Error::invalid(
                "split_in_units",
                format!(
                    "tp size {world} is larger than the {units} whole units of {unit} that \
                     {n} elements split in (quantized blocks are never cut)"
                ),
            ),
        })?
        .into_iter()
        .map(|u| u * unit)
        .collect();
    // The ranks' units cover units * unit >= n: the last (it holds the fewest) gives the
    // rest back, keeping at least one element since the rest is under a unit.
    if let Some(last) = sizes.last_mut() {
        *last -= units * unit - n;
    }
    Ok(sizes)
}

/// The start offset of every shard, given the shard lengths (an exclusive prefix sum).
pub fn offsets(sizes: &[usize]) -> Vec<usize> {
    sizes
        .iter()
        .scan(0, |acc, &s| {
            let start: usize = *acc;
            *acc = start.saturating_add(s);
            Some(start)
        })
        .collect()
}

/// Copies the sub-matrix `rows x cols` of the row-major `[_, src_cols]` matrix `src`
/// starting at `(row0, col0)`.
///
/// # Errors
/// [`Error::Shape`] when the window leaves `src` (or its bounds overflow).
pub fn slice_host(
    src: &[f32],
    src_cols: usize,
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
) -> Result<Vec<f32>> {
    let op = "slice_host";
    let src_rows = src.len().checked_div(src_cols).unwrap_or(0);
    let fits = row0.checked_add(rows).is_some_and(|e| e <= src_rows)
        && col0.checked_add(cols).is_some_and(|e| e <= src_cols);
    if !fits {
        return Err(Error::shape(
            op,
            format!("a window inside [{src_rows}, {src_cols}]"),
            format!("[{rows}, {cols}] at ({row0}, {col0})"),
        ));
    }
    let mut out = Vec::with_capacity(rows * cols);
    for r in row0..row0 + rows {
        let start = r * src_cols + col0;
        out.extend_from_slice(&src[start..start + cols]);
    }
    Ok(out)
}

/// Splits the row-major `[rows, cols]` matrix `src` along `dim` (0: rows, 1: columns) into
/// the shards given by `sizes`.
///
/// # Errors
/// [`Error::Shape`] when `src` is not `rows * cols` values or the shards leave it;
/// [`Error::InvalidArgument`] for `dim > 1`.
pub fn split_host(
    src: &[f32],
    shape: [usize; 2],
    dim: usize,
    sizes: &[usize],
) -> Result<Vec<Vec<f32>>> {
    let op = "split_host";
    let [rows, cols] = shape;
    if dim > 1 {
        return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
    }
    if rows.checked_mul(cols) != Some(src.len()) {
        return Err(Error::shape(
            op,
            format!("[{rows}, {cols}] values"),
            format!("{} values", src.len()),
        ));
    }
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
///
/// # Errors
/// [`Error::Shape`] when a part's length is not its shape's, or the shapes do not line up
/// along the other dimension; [`Error::InvalidArgument`] for `dim > 1`.
pub fn concat_host(parts: &[Vec<f32>], shapes: &[[usize; 2]], dim: usize) -> Result<Vec<f32>> {
    let op = "concat_host";
    if dim > 1 {
        return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
    }
    let other = 1 - dim;
    let lined_up = parts.len() == shapes.len()
        && parts
            .iter()
            .zip(shapes)
            .all(|(p, s)| s[0].checked_mul(s[1]) == Some(p.len()))
        && shapes.windows(2).all(|w| w[0][other] == w[1][other]);
    if !lined_up {
        return Err(Error::shape(
            op,
            format!("parts matching their shapes, equal along dimension {other}"),
            format!(
                "shapes {shapes:?} for parts of {:?} values",
                parts.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        ));
    }
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
    Ok(out)
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
            let parts = split_host(&m, shape, dim, &sizes)?;
            let shapes: Vec<[usize; 2]> = sizes
                .iter()
                .map(|&s| if dim == 0 { [s, 7] } else { [3, s] })
                .collect();
            assert_eq!(concat_host(&parts, &shapes, dim)?, m);
        }
        Ok(())
    }

    #[test]
    fn windows_and_shards_outside_the_matrix_are_errors_not_panics() {
        let m = vec![1.0f32; 6]; // [2, 3]
        assert!(slice_host(&m, 3, 1, 2, 0, 3).is_err());
        assert!(slice_host(&m, 3, 0, 1, 2, 2).is_err());
        assert!(slice_host(&m, 3, usize::MAX, 2, 0, 1).is_err());
        assert!(slice_host(&m, 0, 0, 1, 0, 1).is_err());
        assert_eq!(slice_host(&m, 3, 1, 1, 1, 2).unwrap(), vec![1.0; 2]);
        assert!(split_host(&m, [2, 4], 0, &[1, 1]).is_err());
        assert!(split_host(&m, [usize::MAX, 2], 0, &[1]).is_err());
        assert!(split_host(&m, [2, 3], 1, &[2, 2]).is_err());
        assert!(concat_host(&[vec![1.0; 2]], &[[1, 3]], 0).is_err());
        assert!(concat_host(&[vec![1.0; 2], vec![1.0; 3]], &[[1, 2], [3, 1]], 1).is_err());
        assert!(concat_host(&[vec![1.0; 2]], &[[1, 2]], 2).is_err());
    }
}
