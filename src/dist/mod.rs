//! `DistTensor` and `Placement`: one matrix spread over the ranks of a group.
//! redistribute.rs holds the verbs that change a placement (each one collective of comm/).

mod redistribute;

use std::fmt;

use crate::comm::{gathered_shape, sum_parts};
use crate::error::{fmt_shape, Error, Result};
use crate::group::Group;
use crate::tensor::shard::{concat_host, offsets, slice_host, split_sizes};
use crate::tensor::{check_shape, read_back, Tensor};

/// How a [`DistTensor`]'s value is laid over the ranks (the PyTorch DTensor names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Every rank holds the whole matrix.
    Replicate,
    /// Rank `r` holds the `r`-th slice along the dimension (0: rows, 1: columns). Built
    /// by this crate, the slices follow [`split_sizes`]; from [`DistTensor::from_locals`]
    /// they may be any non-empty sizes.
    Shard(usize),
    /// Every rank holds a full-size addend; the value is their sum (pending all-reduce).
    Partial,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Replicate => write!(f, "Replicate"),
            Placement::Shard(d) => write!(f, "Shard({d})"),
            Placement::Partial => write!(f, "Partial"),
        }
    }
}

/// A 2-D f32 matrix of global shape `[rows, cols]`, one local [`Tensor`] per rank of this
/// process (every rank, unless the group spans processes).
#[derive(Debug, Clone)]
pub struct DistTensor {
    group: Group,
    shape: [usize; 2],
    placement: Placement,
    locals: Vec<Tensor>,
    /// `Shard(d)`: every rank's size along `d`, in global rank order; else empty.
    sizes: Vec<usize>,
}

impl DistTensor {
    /// Uploads the whole row-major `host` matrix to every rank.
    ///
    /// # Errors
    /// [`Error::Shape`] when `host.len()` is not `rows * cols` or a dimension is 0;
    /// allocation errors.
    pub fn replicate(group: &Group, host: &[f32], shape: [usize; 2]) -> Result<Self> {
        // Logical ranks sharing a device share one upload.
        let locals = Tensor::replicated(group.ranks(), host, shape)?;
        Ok(Self::from_parts(
            group,
            locals,
            Placement::Replicate,
            shape,
            Vec::new(),
        ))
    }

    /// Wraps tensors the crate made, whose global shape and shard sizes it knows.
    pub(crate) fn from_parts(
        group: &Group,
        locals: Vec<Tensor>,
        placement: Placement,
        shape: [usize; 2],
        sizes: Vec<usize>,
    ) -> Self {
        DistTensor {
            group: group.clone(),
            shape,
            placement,
            locals,
            sizes,
        }
    }

    /// Splits the row-major `host` matrix along `dim` by [`split_sizes`] and uploads slice
    /// `r` to rank `r` (each process its own ranks' slices).
    ///
    /// # Errors
    /// As [`DistTensor::replicate`], plus [`Error::InvalidArgument`] when `dim > 1` or the
    /// tp size is larger than `shape[dim]`.
    pub fn shard(group: &Group, host: &[f32], shape: [usize; 2], dim: usize) -> Result<Self> {
        let op = "dist_tensor.shard";
        if dim > 1 {
            return Err(Error::invalid(op, format!("dim must be 0 or 1, got {dim}")));
        }
        let len = check_shape(op, shape)?;
        if host.len() != len {
            return Err(Error::shape(
                op,
                format!("{len} values for {}", fmt_shape(shape)),
                format!("{} values", host.len()),
            ));
        }
        let sizes = split_sizes(shape[dim], group.world_size()).map_err(|e| e.with_op(op))?;
        let starts = offsets(&sizes);
        let locals = group
            .ranks()
            .iter()
            .zip(group.local_range())
            .map(|(rank, r)| {
                let mut s = shape;
                s[dim] = sizes[r];
                let part = if dim == 0 {
                    slice_host(host, shape[1], starts[r], sizes[r], 0, shape[1])
                } else {
                    slice_host(host, shape[1], 0, shape[0], starts[r], sizes[r])
                }?;
                Tensor::from_host(rank, &part, s)
            })
            .collect::<Result<_>>()?;
        let placement = Placement::Shard(dim);
        Ok(Self::from_parts(group, locals, placement, shape, sizes))
    }

    /// Wraps tensors a caller already has, `locals[r]` on rank `r`, as one placed value
    /// (this process's ranks' tensors; for `Shard` in a group spanning processes, every
    /// process calls it, as the shapes are exchanged to learn the global shape).
    ///
    /// # Errors
    /// [`Error::GroupMismatch`] or [`Error::InvalidArgument`] when a tensor is on another
    /// group or out of rank order; [`Error::Shape`] when the shapes cannot form the
    /// placement.
    pub fn from_locals(group: &Group, locals: Vec<Tensor>, placement: Placement) -> Result<Self> {
        let op = "dist_tensor.from_locals";
        group.comm().check_locals(op, &locals)?;
        let first = locals[0].shape();
        let (shape, sizes) = match placement {
            Placement::Replicate | Placement::Partial => {
                if let Some(t) = locals.iter().find(|t| t.shape() != first) {
                    return Err(Error::shape(op, fmt_shape(first), fmt_shape(t.shape())));
                }
                (first, Vec::new())
            }
            // The shape the shards gather to, checked as an all-gather checks its inputs.
            Placement::Shard(d) if d <= 1 => {
                let shapes = group.comm().gather_shapes(op, &locals)?;
                let sizes = shapes.iter().map(|s| s[d]).collect();
                (gathered_shape(op, &shapes, d)?, sizes)
            }
            Placement::Shard(d) => {
                return Err(Error::invalid(op, format!("dim must be 0 or 1, got {d}")));
            }
        };
        Ok(Self::from_parts(group, locals, placement, shape, sizes))
    }

    /// The global shape.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The placement.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The group.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// This process's tensors, in rank order (ranks
    /// [`Group::local_range`]).
    pub fn locals(&self) -> &[Tensor] {
        &self.locals
    }

    /// For `Shard(d)`, every rank's size along `d`, in global rank order (all processes'
    /// ranks); empty for the other placements.
    pub fn shard_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The whole value on the host: rank 0's copy of a replicated tensor (this process's
    /// first rank's), the concatenation of shards, or the rank-order sum of partials. In a
    /// group spanning processes, `Shard` and `Partial` fetch what this process lacks: every
    /// process calls it.
    ///
    /// # Errors
    /// Read-back errors ([`Error::Map`], [`Error::Timeout`], [`Error::DeviceLost`]).
    pub async fn to_host_async(&self) -> Result<Vec<f32>> {
        let op = "dist_tensor.to_host";
        match self.placement {
            Placement::Replicate => Ok(read_back(op, &[&self.locals[0]]).await?.concat()),
            Placement::Shard(d) => {
                let (parts, shapes) = self.group.comm().gather_host(op, &self.locals).await?;
                concat_host(&parts, &shapes, d)
            }
            Placement::Partial => {
                let (parts, shapes) = self.group.comm().gather_host(op, &self.locals).await?;
                // Partials from another process of another shape (from_locals checks this
                // process's only): refused, not summed out of bounds.
                if let Some(s) = shapes.iter().find(|&&s| s != self.shape) {
                    let (want, got) = (fmt_shape(self.shape), fmt_shape(*s));
                    return Err(Error::shape(op, want, format!("a partial of {got}")));
                }
                // The all-reduce's order, so this equals an all-reduce bit for bit.
                Ok(sum_parts(parts, self.group.ranks()[0].numerics()))
            }
        }
    }

    /// Blocking [`DistTensor::to_host_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::to_host_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_host(&self) -> Result<Vec<f32>> {
        crate::rank::block_on(self.to_host_async())
    }

    /// This process's ranks' local tensors on the host, in rank order.
    ///
    /// # Errors
    /// As [`DistTensor::to_host_async`].
    pub async fn to_host_per_rank_async(&self) -> Result<Vec<Vec<f32>>> {
        let locals: Vec<&Tensor> = self.locals.iter().collect();
        read_back("dist_tensor.to_host_per_rank", &locals).await
    }

    /// Blocking [`DistTensor::to_host_per_rank_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::to_host_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_host_per_rank(&self) -> Result<Vec<Vec<f32>>> {
        crate::rank::block_on(self.to_host_per_rank_async())
    }

    /// `f` of each local tensor (with its index), computed once for logical ranks that
    /// hold one buffer (a replicated value on a shared device) and shared among them.
    pub(crate) fn map_locals(
        &self,
        mut f: impl FnMut(usize, &Tensor) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut out: Vec<Tensor> = Vec::with_capacity(self.locals.len());
        for (i, t) in self.locals.iter().enumerate() {
            let earlier = self.locals[..i].iter().position(|u| u.same_storage(t));
            out.push(match earlier {
                Some(j) => out[j].shared_with(t.rank()),
                None => f(i, t)?,
            });
        }
        Ok(out)
    }

    pub(crate) fn require_placement(
        &self,
        op: &'static str,
        ok: impl Fn(Placement) -> bool,
        expected: &str,
    ) -> Result<()> {
        if ok(self.placement) {
            Ok(())
        } else {
            Err(Error::Placement {
                op,
                expected: expected.into(),
                got: self.placement.to_string(),
            })
        }
    }
}
