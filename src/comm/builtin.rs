//! The built-in transports' [`Collective`]: every collective's input checks and per-rank
//! output shapes, once, for host.rs and device.rs, which give only how each of them sums,
//! joins and copies ([`Transport`]). Called directly (not through a group), a built-in
//! transport refuses what a group would.

use super::checked::{check_all_gather, check_broadcast, check_reduce_scatter};
use super::transport::Collective;
use crate::tensor::shard::offsets;
use crate::tensor::Tensor;
pub(crate) use sealed::{Outputs, Scatter, Transport};

mod sealed {
    use crate::error::Result;
    use crate::tensor::Tensor;
    use crate::BoxFuture;

    /// One tensor per rank, in rank order, when ready.
    pub type Outputs<'a> = BoxFuture<'a, Result<Vec<Tensor>>>;

    /// What a built-in transport computes once a collective's inputs are checked. Sealed
    /// (public in a private module): only this crate's transports implement it.
    pub trait Transport: crate::MaybeSend + crate::MaybeSync {
        /// The elementwise sum on every rank; the inputs are this method's to check (each
        /// transport's sum refuses in its own order).
        fn sum<'a>(&'a self, inputs: &'a [Tensor]) -> Outputs<'a>;
        /// The concatenation of `inputs` along `dim`, of `shape`, on every rank.
        fn gather<'a>(&'a self, inputs: &'a [Tensor], dim: usize, shape: [usize; 2])
            -> Outputs<'a>;
        /// Rank `r` gets window `r` of `cut` of the sum of `inputs`.
        fn sum_scatter<'a>(&'a self, inputs: &'a [Tensor], cut: Scatter<'a>) -> Outputs<'a>;
        /// Every rank gets `inputs[root]` (a rank of `inputs`).
        fn copy<'a>(&'a self, inputs: &'a [Tensor], root: usize) -> Outputs<'a>;
    }

    /// How a reduce-scatter cuts the sum, of `shape`: rank `r` gets `sizes[r]` along
    /// `dim` (checked: they cover it).
    #[derive(Debug, Clone, Copy)]
    pub struct Scatter<'a> {
        /// The sum's shape.
        pub shape: [usize; 2],
        /// The dimension cut.
        pub dim: usize,
        /// Every rank's length along `dim`.
        pub sizes: &'a [usize],
    }
}

impl Scatter<'_> {
    /// Every rank's window of the sum: where it starts along `dim`, and its shape.
    pub(crate) fn windows(&self) -> impl Iterator<Item = (usize, [usize; 2])> + '_ {
        offsets(self.sizes)
            .into_iter()
            .zip(self.sizes)
            .map(|(start, &len)| {
                let mut shape = self.shape;
                shape[self.dim] = len;
                (start, shape)
            })
    }
}

impl<T: Transport> Collective for T {
    fn all_reduce<'a>(&'a self, inputs: &'a [Tensor]) -> Outputs<'a> {
        self.sum(inputs)
    }

    fn all_gather<'a>(&'a self, inputs: &'a [Tensor], dim: usize) -> Outputs<'a> {
        Box::pin(async move {
            let shape = check_all_gather("all_gather", inputs, dim)?;
            self.gather(inputs, dim, shape).await
        })
    }

    fn reduce_scatter<'a>(
        &'a self,
        inputs: &'a [Tensor],
        dim: usize,
        sizes: &'a [usize],
    ) -> Outputs<'a> {
        Box::pin(async move {
            let shape = check_reduce_scatter("reduce_scatter", inputs, dim, sizes, inputs.len())?;
            self.sum_scatter(inputs, Scatter { shape, dim, sizes })
                .await
        })
    }

    fn broadcast<'a>(&'a self, inputs: &'a [Tensor], root: usize) -> Outputs<'a> {
        Box::pin(async move {
            check_broadcast("broadcast", inputs, root)?;
            self.copy(inputs, root).await
        })
    }
}
