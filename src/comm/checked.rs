//! The group's collectives: every call's inputs are checked before the transport sees
//! them, counted in [`CollectiveStats`](crate::CollectiveStats), and the transport's outputs
//! are checked before anyone uses them (a custom [`Collective`](crate::Collective) is
//! not trusted to return one tensor per rank, on that rank, of the right shape). A group
//! spanning processes runs spanning.rs instead of the transport. The input checks the
//! transports share are at the end.

use std::sync::atomic::Ordering;

use super::Comm;
use crate::error::{fmt_shape, Error, Result};
use crate::tensor::Tensor;

impl Comm {
    /// Every rank gets the elementwise sum of `inputs` (one per rank, in rank order).
    pub(crate) async fn all_reduce(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let op = "all_reduce";
        self.check_locals(op, inputs)?;
        let shape = check_same_shapes(op, inputs)?;
        self.stats().all_reduce.fetch_add(1, Ordering::Relaxed);
        if self.process_count() > 1 {
            let flight = self.take_off(op)?;
            return flight.land(self.span_all_reduce(inputs).await);
        }
        let out = self.collective().all_reduce(inputs).await?;
        self.check_outputs(op, out, |_| shape)
    }

    /// Every rank gets the concatenation of `inputs` along `dim`.
    pub(crate) async fn all_gather(&self, inputs: &[Tensor], dim: usize) -> Result<Vec<Tensor>> {
        let op = "all_gather";
        self.check_locals(op, inputs)?;
        let shape = check_all_gather(op, inputs, dim)?;
        self.stats().all_gather.fetch_add(1, Ordering::Relaxed);
        if self.process_count() > 1 {
            let flight = self.take_off(op)?;
            return flight.land(self.span_all_gather(inputs, dim).await);
        }
        let out = self.collective().all_gather(inputs, dim).await?;
        self.check_outputs(op, out, |_| shape)
    }

    /// Rank `r` gets its slice (`sizes[r]` along `dim`) of the sum of `inputs`.
    pub(crate) async fn reduce_scatter(
        &self,
        inputs: &[Tensor],
        dim: usize,
        sizes: &[usize],
    ) -> Result<Vec<Tensor>> {
        let op = "reduce_scatter";
        self.check_locals(op, inputs)?;
        let shape = check_reduce_scatter(op, inputs, dim, sizes, self.world_size())?;
        self.stats().reduce_scatter.fetch_add(1, Ordering::Relaxed);
        if self.process_count() > 1 {
            let flight = self.take_off(op)?;
            return flight.land(self.span_reduce_scatter(inputs, dim, sizes).await);
        }
        let out = self.collective().reduce_scatter(inputs, dim, sizes).await?;
        self.check_outputs(op, out, |r| {
            let mut s = shape;
            s[dim] = sizes[r];
            s
        })
    }

    /// Every rank gets a copy of `inputs[root]`.
    pub(crate) async fn broadcast(&self, inputs: &[Tensor], root: usize) -> Result<Vec<Tensor>> {
        let op = "broadcast";
        self.check_locals(op, inputs)?;
        // The collectives move f32 values (check_broadcast says so too, in one process).
        inputs.iter().try_for_each(|t| t.require_f32(op))?;
        if self.process_count() > 1 {
            if root >= self.world_size() {
                let world = self.world_size();
                let msg = format!("root {root} is not a rank of a group of {world}");
                return Err(Error::invalid(op, msg));
            }
            self.stats().broadcast.fetch_add(1, Ordering::Relaxed);
            let flight = self.take_off(op)?;
            return flight.land(self.span_broadcast(inputs, root).await);
        }
        let shape = check_broadcast(op, inputs, root)?;
        self.stats().broadcast.fetch_add(1, Ordering::Relaxed);
        let out = self.collective().broadcast(inputs, root).await?;
        self.check_outputs(op, out, |_| shape)
    }

    /// `out` if it holds one tensor per rank, in rank order, of `shape(r)`.
    fn check_outputs(
        &self,
        op: &'static str,
        out: Vec<Tensor>,
        shape: impl Fn(usize) -> [usize; 2],
    ) -> Result<Vec<Tensor>> {
        let bad =
            |what: String| Error::invalid(op, format!("the group's collective returned {what}"));
        self.check_locals(op, &out)
            .map_err(|e| bad(e.to_string()))?;
        for (r, t) in out.iter().enumerate() {
            if t.shape() != shape(r) {
                return Err(bad(format!(
                    "{} on rank {r}, expected {}",
                    fmt_shape(t.shape()),
                    fmt_shape(shape(r))
                )));
            }
        }
        Ok(out)
    }
}

/// The shape every input has (the inputs are not empty).
pub(crate) fn check_same_shapes(op: &'static str, inputs: &[Tensor]) -> Result<[usize; 2]> {
    let first = check_not_empty(op, inputs)?.shape();
    match inputs.iter().find(|t| t.shape() != first) {
        Some(t) => Err(Error::shape(op, fmt_shape(first), fmt_shape(t.shape()))),
        None => Ok(first),
    }
}

/// The first input; refuses no inputs, and half-precision ones (the collectives move and
/// sum f32 values).
fn check_not_empty<'a>(op: &'static str, inputs: &'a [Tensor]) -> Result<&'a Tensor> {
    inputs.iter().try_for_each(|t| t.require_f32(op))?;
    inputs
        .first()
        .ok_or_else(|| Error::shape(op, "at least one tensor", "none"))
}

fn check_dim(op: &'static str, dim: usize) -> Result<()> {
    if dim > 1 {
        return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
    }
    Ok(())
}

/// Checks an all-gather's inputs; returns the gathered shape.
pub(crate) fn check_all_gather(
    op: &'static str,
    inputs: &[Tensor],
    dim: usize,
) -> Result<[usize; 2]> {
    check_not_empty(op, inputs)?;
    let shapes: Vec<[usize; 2]> = inputs.iter().map(Tensor::shape).collect();
    gathered_shape(op, &shapes, dim)
}

/// The shape `shapes` (not empty) concatenate to along `dim`; an error when they differ
/// along the other dimension.
pub(crate) fn gathered_shape(
    op: &'static str,
    shapes: &[[usize; 2]],
    dim: usize,
) -> Result<[usize; 2]> {
    check_dim(op, dim)?;
    let first = *shapes
        .first()
        .ok_or_else(|| Error::shape(op, "at least one tensor", "none"))?;
    let other = 1 - dim;
    if let Some(s) = shapes.iter().find(|s| s[other] != first[other]) {
        return Err(Error::shape(
            op,
            format!("dimension {other} of {} on every rank", first[other]),
            fmt_shape(*s),
        ));
    }
    let mut shape = first;
    shape[dim] = shapes
        .iter()
        .try_fold(0usize, |a, s| a.checked_add(s[dim]))
        .ok_or_else(|| Error::shape(op, "a gathered size that fits usize", "an overflow"))?;
    Ok(shape)
}

/// Checks a reduce-scatter's inputs; returns the shape of the sum.
/// `world` is the number of ranks in every process together (`inputs.len()` in one).
pub(crate) fn check_reduce_scatter(
    op: &'static str,
    inputs: &[Tensor],
    dim: usize,
    sizes: &[usize],
    world: usize,
) -> Result<[usize; 2]> {
    check_dim(op, dim)?;
    let shape = check_same_shapes(op, inputs)?;
    let n = shape[dim];
    let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
    if sizes.len() != world || total != Some(n) || sizes.contains(&0) {
        return Err(Error::shape(
            op,
            format!("{world} non-zero shard sizes summing to {n}"),
            format!("{sizes:?}"),
        ));
    }
    Ok(shape)
}

/// Checks a broadcast's inputs; returns the root's shape.
pub(crate) fn check_broadcast(
    op: &'static str,
    inputs: &[Tensor],
    root: usize,
) -> Result<[usize; 2]> {
    check_not_empty(op, inputs)?;
    inputs.get(root).map(Tensor::shape).ok_or_else(|| {
        Error::invalid(
            op,
            format!("root {root} is not a rank of a group of {}", inputs.len()),
        )
    })
}
