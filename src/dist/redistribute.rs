//! The verbs that change a [`DistTensor`]'s placement: `redistribute` and the four
//! collectives by name, each with its `_async` twin.

use super::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::shard::{offsets, split_sizes};
use crate::tensor::Tensor;

impl DistTensor {
    /// The same value's `locals` in `placement`; `sizes` for `Shard` (else empty).
    fn with(&self, locals: Vec<Tensor>, placement: Placement, sizes: Vec<usize>) -> Self {
        DistTensor::from_parts(&self.group, locals, placement, self.shape, sizes)
    }

    /// The same value with another placement, by the one collective that does it:
    ///
    /// | from -> to | how |
    /// | --- | --- |
    /// | `Partial -> Replicate` | all-reduce |
    /// | `Shard(d) -> Replicate` | all-gather |
    /// | `Partial -> Shard(d)` | reduce-scatter |
    /// | `Replicate -> Shard(d)` | local slice, no communication |
    /// | `Replicate -> Partial` | rank 0 keeps the value, the others hold `-0.0` (the additive identity that keeps `-0.0` a `-0.0`) |
    /// | `Shard(a) -> Shard(b)`, `Shard(d) -> Partial` | all-gather, then as from `Replicate` |
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `Shard(d)` with `d > 1` or a tp size larger than
    /// `shape[d]`; collective and allocation errors.
    pub async fn redistribute_async(&self, target: Placement) -> Result<DistTensor> {
        let op = "dist_tensor.redistribute";
        if let Placement::Shard(d) = target {
            if d > 1 {
                return Err(Error::invalid(op, format!("dim must be 0 or 1, got {d}")));
            }
        }
        let g = &self.group;
        match (self.placement, target) {
            (Placement::Replicate, Placement::Replicate)
            | (Placement::Partial, Placement::Partial) => Ok(self.clone()),
            (Placement::Shard(a), Placement::Shard(b)) if a == b => Ok(self.clone()),
            (Placement::Partial, Placement::Replicate) => {
                let out = g.comm().all_reduce(&self.locals).await?;
                Ok(self.with(out, target, Vec::new()))
            }
            (Placement::Shard(d), Placement::Replicate) => {
                let out = g.comm().all_gather(&self.locals, d).await?;
                Ok(self.with(out, target, Vec::new()))
            }
            (Placement::Partial, Placement::Shard(d)) => {
                let sizes = split_sizes(self.shape[d], g.world_size())?;
                let out = g.comm().reduce_scatter(&self.locals, d, &sizes).await?;
                Ok(self.with(out, target, sizes))
            }
            (Placement::Replicate, Placement::Shard(d)) => {
                let sizes = split_sizes(self.shape[d], g.world_size())?;
                let starts = offsets(&sizes);
                let out = self
                    .locals
                    .iter()
                    .zip(g.local_range())
                    .map(|(t, r)| {
                        let mut s = self.shape;
                        s[d] = sizes[r];
                        let (r0, c0) = if d == 0 {
                            (starts[r], 0)
                        } else {
                            (0, starts[r])
                        };
                        ops::slice(t, r0, c0, s)
                    })
                    .collect::<Result<_>>()?;
                Ok(self.with(out, target, sizes))
            }
            (Placement::Replicate, Placement::Partial) => {
                let out = self
                    .locals
                    .iter()
                    .map(|t| match t.rank().index() {
                        0 => Ok(t.clone()),
                        _ => ops::fill(t, -0.0),
                    })
                    .collect::<Result<_>>()?;
                Ok(self.with(out, target, Vec::new()))
            }
            (Placement::Shard(_), _) => {
                let full = Box::pin(self.redistribute_async(Placement::Replicate)).await?;
                Box::pin(full.redistribute_async(target)).await
            }
        }
    }

    /// Blocking [`DistTensor::redistribute_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::redistribute_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn redistribute(&self, target: Placement) -> Result<DistTensor> {
        crate::rank::block_on(self.redistribute_async(target))
    }

    /// `Partial -> Replicate`: the sum on every rank (one all-reduce).
    ///
    /// # Errors
    /// [`Error::Placement`] unless `Partial`; collective errors.
    pub async fn all_reduce_async(&self) -> Result<DistTensor> {
        self.require_placement("all_reduce", |p| p == Placement::Partial, "Partial")?;
        self.redistribute_async(Placement::Replicate).await
    }

    /// Blocking [`DistTensor::all_reduce_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::all_reduce_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn all_reduce(&self) -> Result<DistTensor> {
        crate::rank::block_on(self.all_reduce_async())
    }

    /// `Shard(d) -> Replicate`: the concatenation on every rank (one all-gather).
    ///
    /// # Errors
    /// [`Error::Placement`] unless `Shard`; collective errors.
    pub async fn all_gather_async(&self) -> Result<DistTensor> {
        let shard = |p| matches!(p, Placement::Shard(_));
        self.require_placement("all_gather", shard, "Shard(_)")?;
        self.redistribute_async(Placement::Replicate).await
    }

    /// Blocking [`DistTensor::all_gather_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::all_gather_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn all_gather(&self) -> Result<DistTensor> {
        crate::rank::block_on(self.all_gather_async())
    }

    /// `Partial -> Shard(dim)`: each rank its slice of the sum (one reduce-scatter).
    ///
    /// # Errors
    /// [`Error::Placement`] unless `Partial`; as [`DistTensor::redistribute_async`].
    pub async fn reduce_scatter_async(&self, dim: usize) -> Result<DistTensor> {
        self.require_placement("reduce_scatter", |p| p == Placement::Partial, "Partial")?;
        self.redistribute_async(Placement::Shard(dim)).await
    }

    /// Blocking [`DistTensor::reduce_scatter_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::reduce_scatter_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn reduce_scatter(&self, dim: usize) -> Result<DistTensor> {
        crate::rank::block_on(self.reduce_scatter_async(dim))
    }

    /// Every rank gets rank `root`'s local tensor; the result is `Replicate`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `root` is not a rank; collective errors.
    pub async fn broadcast_async(&self, root: usize) -> Result<DistTensor> {
        let out = self.group.comm().broadcast(&self.locals, root).await?;
        let shape = out[0].shape();
        Ok(DistTensor::from_parts(
            &self.group,
            out,
            Placement::Replicate,
            shape,
            Vec::new(),
        ))
    }

    /// Blocking [`DistTensor::broadcast_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`DistTensor::broadcast_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn broadcast(&self, root: usize) -> Result<DistTensor> {
        crate::rank::block_on(self.broadcast_async(root))
    }
}
