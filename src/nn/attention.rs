//! `ParallelAttention`: query/key/value column-parallel split by heads (the first ranks one
//! head more when tp does not divide them), grouped-query attention with each rank
//! holding the key/value heads its query heads read (replicated when there are fewer than
//! tp), rotary positions or none, causal attention over a per-rank key/value cache, and
//! the output projection row-parallel: one all-reduce.

use std::ops::Range;

use super::layer::{self, Layer};
use super::rotary::Rotary;
use super::{HostWeights, RowParallelConfig, RowParallelLinear};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::ops::{self, HeadSpan, Product};
use crate::tensor::shard::{offsets, split_sizes};
use crate::tensor::Tensor;
use crate::BoxFuture;

/// One local rank's query, key and value weights (stored per the layer's layout) and
/// biases, as [`ParallelAttention::new`] asks for them.
#[derive(Debug, Clone, Default)]
pub struct HeadWeights {
    /// `[hidden, heads * head_dim]` (`InOut`) or its transpose (`OutIn`).
    pub q: HostWeights,
    /// The key/value heads' weights, likewise.
    pub k: HostWeights,
    /// As `k`.
    pub v: HostWeights,
    /// Biases of q, k and v, when the model has them.
    pub bias: Option<[Vec<f32>; 3]>,
}

/// The sizes of the attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Hidden size (input and output features).
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: usize,
    /// Size of a head.
    pub head_dim: usize,
}

/// The key/value cache of one attention layer: per local rank `[capacity, 2 x kv heads x
/// head_dim]`, each row its position's keys then values, and how many positions it holds.
#[derive(Debug)]
pub struct KvCache {
    kv: Vec<Tensor>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions it can hold.
    pub fn capacity(&self) -> usize {
        self.kv.first().map_or(0, |t| t.shape()[0])
    }
}

/// Self-attention split by heads. Input and output: `Replicate [tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct ParallelAttention {
    group: Group,
    shape: AttentionShape,
    layout: WeightLayout,
    /// Every rank's query heads `[first, first + n)`, global.
    heads: Vec<Range<usize>>,
    /// Every rank's key/value heads, global.
    kv: Vec<Range<usize>>,
    /// This process's ranks' query, key and value weights fused, each rank's output
    /// columns `[q | k | v]`, and their biases likewise.
    qkv: Vec<Tensor>,
    bias: Option<Vec<Tensor>>,
    rotary: Option<Rotary>,
    o: RowParallelLinear,
}

impl ParallelAttention {
    /// Builds the layer: `load(q_heads, kv_heads)` gives a local rank's weights for those
    /// global head ranges, and `o(cols)` the output projection's weight for input features
    /// `cols` (stored per `layout`); `o_bias` is added once after the all-reduce.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for sizes that do not fit (`kv_heads` not dividing
    /// `heads`, a tp size over `heads`); [`Error::Shape`] for weights of the wrong
    /// length; their own errors; allocation errors.
    pub fn new<W: Into<HostWeights>>(
        group: &Group,
        shape: AttentionShape,
        layout: WeightLayout,
        rotary: Option<Rotary>,
        mut load: impl FnMut(Range<usize>, Range<usize>) -> Result<HeadWeights>,
        mut o: impl FnMut(Range<usize>) -> Result<W>,
        o_bias: Option<&[f32]>,
    ) -> Result<Self> {
        let op = "parallel_attention.new";
        let AttentionShape {
            hidden,
            heads: nh,
            kv_heads,
            head_dim: hd,
        } = shape;
        if kv_heads == 0 || nh % kv_heads != 0 || hd == 0 || hd > ops::MAX_HEAD_DIM {
            return Err(Error::invalid(
                op,
                format!(
                    "{nh} heads over {kv_heads} key/value heads of {hd} (heads of up to {})",
                    ops::MAX_HEAD_DIM
                ),
            ));
        }
        let group_size = nh / kv_heads;
        let sizes = split_sizes(nh, group.world_size()).map_err(|e| e.with_op(op))?;
        let heads: Vec<Range<usize>> = offsets(&sizes)
            .into_iter()
            .zip(&sizes)
            .map(|(s, n)| s..s + n)
            .collect();
        let kv: Vec<Range<usize>> = heads
            .iter()
            .map(|h| h.start / group_size..(h.end - 1) / group_size + 1)
            .collect();
        let mut qkv = Vec::new();
        let mut biases = Vec::new();
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let w = load(heads[r].clone(), kv[r].clone())?;
            let (q_out, kv_out) = (heads[r].len() * hd, kv[r].len() * hd);
            let stored = |out: usize| layout.stored_shape(hidden, out);
            for (what, data, out) in [("q", &w.q, q_out), ("k", &w.k, kv_out), ("v", &w.v, kv_out)]
            {
                let [a, b] = stored(out);
                if data.len() != a * b {
                    return Err(Error::shape(
                        op,
                        format!("{what} of {} values", a * b),
                        format!("{}", data.len()),
                    ));
                }
            }
            let parts = [&w.q, &w.k, &w.v];
            // Output columns [q | k | v]: the [out, in] rows one after another, or each
            // [in, out] row's three parts side by side.
            let fused = match layout {
                WeightLayout::OutIn => HostWeights::concat(op, &parts)?,
                WeightLayout::InOut => HostWeights::side_by_side(op, &parts, hidden)?,
            };
            qkv.push(fused.upload(rank, stored(q_out + 2 * kv_out))?);
            if let Some([bq, bk, bv]) = &w.bias {
                for (b, n) in [(bq, q_out), (bk, kv_out), (bv, kv_out)] {
                    if b.len() != n {
                        return Err(Error::shape(
                            op,
                            format!("bias of {n}"),
                            format!("{}", b.len()),
                        ));
                    }
                }
                let row: Vec<f32> = [bq, bk, bv].into_iter().flatten().copied().collect();
                biases.push(Tensor::from_host(rank, &row, [1, row.len()])?);
            }
        }
        let bias = match biases.len() {
            0 => None,
            n if n == qkv.len() => Some(biases),
            _ => return Err(Error::invalid(op, "biases for some ranks only")),
        };
        // The output projection reads this rank's heads' columns.
        let mut o_shards = Vec::new();
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let cols = heads[r].start * hd..heads[r].end * hd;
            let stored = layout.stored_shape(cols.len(), hidden);
            let data: HostWeights = o(cols)?.into();
            if data.len() != stored[0] * stored[1] {
                return Err(Error::shape(
                    op,
                    format!("o of {} values", stored[0] * stored[1]),
                    format!("{}", data.len()),
                ));
            }
            o_shards.push(data.upload(rank, stored)?);
        }
        let o_bias = o_bias
            .map(|b| {
                let t = DistTensor::replicate(group, b, [1, hidden])?;
                Ok::<_, Error>(t.locals().to_vec())
            })
            .transpose()?;
        let config = RowParallelConfig::default().input_is_parallel(true);
        let o = RowParallelLinear::from_shards(group, o_shards, o_bias, layout, config)
            .map_err(|e| e.with_op(op))?;
        Ok(ParallelAttention {
            group: group.clone(),
            shape,
            layout,
            heads,
            kv,
            qkv,
            bias,
            rotary,
            o,
        })
    }

    /// Every rank's query heads (global ranges).
    pub fn heads_per_rank(&self) -> &[Range<usize>] {
        &self.heads
    }

    /// An empty cache for up to `capacity` positions (the rotary table, if any, grown to
    /// cover them: [`Rotary::cover`]).
    ///
    /// # Errors
    /// [`Error::BufferTooLarge`] when a rank's cache, `[capacity, 2 x its key/value heads
    /// x head_dim]`, is over what one buffer binding holds (the attention kernel binds it
    /// whole) or the rotary table would be; allocation errors.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let op = "parallel_attention.new_cache";
        let hd = self.shape.head_dim;
        let mut kv = Vec::new();
        for (rank, r) in self.group.ranks().iter().zip(self.group.local_range()) {
            crate::tensor::check_one_band(rank, [capacity, 2 * self.kv[r].len() * hd], op)?;
        }
        if let Some(rotary) = &self.rotary {
            rotary.cover(capacity)?;
        }
        for (rank, r) in self.group.ranks().iter().zip(self.group.local_range()) {
            let shape = [capacity, 2 * self.kv[r].len() * hd];
            crate::tensor::check_one_band(rank, shape, op)?;
            kv.push(Tensor::output(rank, shape, op)?);
        }
        Ok(KvCache { kv, len: 0 })
    }

    /// Attention of `x`'s rows, the next positions after those `cache` holds, which it
    /// then holds too.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` is `Replicate`; [`Error::Shape`] for another
    /// width; [`Error::InvalidArgument`] past the cache's capacity; GPU and collective
    /// errors.
    pub async fn forward_async(&self, x: &DistTensor, cache: &mut KvCache) -> Result<DistTensor> {
        layer::forward_async(self, x, Some(cache)).await
    }

    /// Blocking [`ParallelAttention::forward_async`].
    ///
    /// # Errors
    /// As [`ParallelAttention::forward_async`].
    pub fn forward(&self, x: &DistTensor, cache: &mut KvCache) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x, cache))
    }
}

/// The local product is the output projection's partial products of the attention of
/// `x` (the cache, which it needs, holds `x`'s positions after it); the reduction the
/// projection's.
impl Layer for ParallelAttention {
    fn op(&self) -> &'static str {
        "parallel_attention.forward"
    }

    fn local_forward(&self, x: &DistTensor, cache: Option<&mut KvCache>) -> Result<DistTensor> {
        let op = self.op();
        let cache = cache.ok_or_else(|| Error::invalid(op, "attention needs a key/value cache"))?;
        x.require_placement(op, |p| p == Placement::Replicate, "Replicate")?;
        let [tokens, hidden] = x.shape();
        if hidden != self.shape.hidden {
            return Err(Error::shape(
                op,
                format!("[*, {}]", self.shape.hidden),
                crate::error::fmt_shape(x.shape()),
            ));
        }
        let pos0 = cache.len;
        if pos0 + tokens > cache.capacity() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} positions past a cache of {}",
                    pos0 + tokens,
                    cache.capacity()
                ),
            ));
        }
        let hd = self.shape.head_dim;
        let group_size = self.shape.heads / self.shape.kv_heads;
        // (LongRoPE turns a forward by the table its last position picks.)
        let end = pos0 + tokens;
        let rotary = self
            .rotary
            .as_ref()
            .map(|r| r.current_for(end))
            .transpose()?;
        let mut outs = Vec::with_capacity(self.qkv.len());
        for (i, r) in self.group.local_range().enumerate() {
            let qkv = Product {
                op,
                x: &x.locals()[i],
                cols: 0..hidden,
                w: &self.qkv[i],
                bias: self.bias.as_ref().map(|b| &b[i]),
                layout: self.layout,
                act: Activation::Identity,
                blocks: INVARIANT_BLOCKS,
            }
            .run()?;
            let table = rotary.as_ref().map(|t| &t.locals()[i]);
            ops::write_kv(&qkv, &cache.kv[i], table, hd, pos0)?;
            let span = HeadSpan {
                first_q: self.heads[r].start,
                first_kv: self.kv[r].start,
                group: group_size,
                head_dim: hd,
            };
            outs.push(ops::attention(&qkv, &cache.kv[i], table, span, pos0)?);
        }
        cache.len += tokens;
        let sizes: Vec<usize> = self.heads.iter().map(|h| h.len() * hd).collect();
        let attended = DistTensor::from_parts(
            &self.group,
            outs,
            Placement::Shard(1),
            [tokens, self.shape.heads * hd],
            sizes,
        );
        self.o.local_forward(&attended, None)
    }

    fn reduce_async(&self, partial: DistTensor) -> BoxFuture<'_, Result<DistTensor>> {
        self.o.reduce_async(partial)
    }

    /// The widest row any rank holds per token: its fused query/key/value row.
    fn row_width(&self) -> usize {
        let rows = self.heads.iter().zip(&self.kv);
        let widest = rows.map(|(q, kv)| q.len() + 2 * kv.len()).max();
        widest.unwrap_or(0) * self.shape.head_dim
    }

    fn empty_cache(&self, capacity: usize) -> Result<Option<KvCache>> {
        self.new_cache(capacity).map(Some)
    }
}
