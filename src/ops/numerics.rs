//! The fixed summation tree of [`Numerics::TpInvariant`](crate::Numerics::TpInvariant).

/// K blocks of every tp-invariant product, and so the largest tp the mode supports.
pub(crate) const INVARIANT_BLOCKS: usize = 8;

/// `mid` of the fixed tree over `n > 1` leaves: the largest power of two below `n`, so that
/// for a power of two the tree is complete and each half is a subtree.
pub(crate) fn tree_mid(n: usize) -> usize {
    n.next_power_of_two() / 2
}

/// `out = tree(parts)` elementwise, in f32: `tree(p) = tree(p[..mid]) + tree(p[mid..])`.
/// `scratch` holds at least `out.len() * ceil(log2(parts.len()))` values.
pub(crate) fn tree_into(out: &mut [f32], parts: &[&[f32]], scratch: &mut [f32]) {
    if parts.len() == 1 {
        out.copy_from_slice(parts[0]);
        return;
    }
    let mid = tree_mid(parts.len());
    let (right, rest) = scratch.split_at_mut(out.len());
    tree_into(out, &parts[..mid], rest);
    tree_into(right, &parts[mid..], rest);
    for (a, b) in out.iter_mut().zip(right.iter()) {
        *a += *b;
    }
}

/// Scratch values [`tree_into`] needs for `parts` addends of `len` values.
pub(crate) fn tree_scratch(parts: usize, len: usize) -> usize {
    len * parts.next_power_of_two().trailing_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_complete_for_powers_of_two_and_halves_are_subtrees() {
        // Values whose sum depends on association in f32: 1 + 2^-24 rounds away alone.
        let parts: Vec<Vec<f32>> = [1.0, 2f32.powi(-24), 2f32.powi(-24), -1.0]
            .iter()
            .map(|&v| vec![v])
            .collect();
        let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        let mut out = [0.0];
        let mut scratch = vec![0.0; tree_scratch(4, 1)];
        tree_into(&mut out, &refs, &mut scratch);
        // ((1 + e) + (e - 1)) = 1 + (e - 1) = e (1 + e rounds to 1, e - 1 is exact: -1 + e).
        let want = (1.0f32 + 2f32.powi(-24)) + (2f32.powi(-24) - 1.0);
        assert_eq!(out[0].to_bits(), want.to_bits());
        // The halves give the same value when summed as subtrees first.
        let (mut l, mut r) = ([0.0], [0.0]);
        tree_into(&mut l, &refs[..2], &mut scratch);
        tree_into(&mut r, &refs[2..], &mut scratch);
        assert_eq!((l[0] + r[0]).to_bits(), out[0].to_bits());
        assert_eq!(tree_mid(8), 4);
        assert_eq!(tree_mid(3), 2);
        assert_eq!(tree_mid(6), 4);
    }
}
