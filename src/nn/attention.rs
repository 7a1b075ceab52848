//! `ParallelAttention`: query/key/value column-parallel split by heads (the first ranks one
//! head more when tp does not divide them), grouped-query attention with each rank
//! holding the key/value heads its query heads read (replicated when there are fewer than
//! tp), rotary positions or none, causal attention over a per-rank key/value cache, and
//! the output projection row-parallel: one all-reduce. [`AttentionOptions`] carry the
//! knobs of the families after Llama: a sliding window (Mistral, Gemma 2/3, Qwen3's
//! sliding layers), per-head query/key RMSNorm (Qwen3, Gemma 3), another logit scale and
//! soft-capping (Gemma 2).

use std::ops::Range;

use super::layer::{self, Layer};
use super::linear::Need;
use super::rotary::Rotary;
use super::{HostWeights, RowParallelConfig, RowParallelLinear};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::ops::numerics::INVARIANT_BLOCKS;
use crate::ops::{self, HeadSpan, Product};
use crate::tensor::shard::{offsets, split_in_units};
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
    /// The input features of the output projection split only at multiples of this many:
    /// 1 for dense weights, a quantized type's block values (32 or 256) so that each rank's
    /// columns of quantized `[out, in]` weights are whole blocks. Heads then split in the
    /// fewest whole heads making whole blocks, as even as that allows
    /// ([`split_in_units`](crate::split_in_units)).
    pub o_block: usize,
}

/// RMSNorm of each query and key head before rotary positions (Qwen3's `q_norm` and
/// `k_norm`): `x / sqrt(mean(x^2) + eps) * w` over each head's `head_dim` values in f32,
/// as transformers' `Qwen3RMSNorm`. Gemma 3 multiplies by `1 + w`: pass `1 + w` here.
#[derive(Debug, Clone, PartialEq)]
pub struct QkNorm {
    /// The query heads' weight, `head_dim` values shared by every head.
    pub q: Vec<f32>,
    /// The key heads' weight, likewise.
    pub k: Vec<f32>,
    /// The epsilon (the model's `rms_norm_eps`).
    pub eps: f32,
}

/// The attention's per-layer knobs, as Hugging Face transformers 5 applies them; the
/// default is Llama's attention.
///
/// ```
/// use wgpu_tp::nn::AttentionOptions;
///
/// // Gemma 2's sliding layer: a window of 4096, query_pre_attn_scalar 256, cap 50.
/// let gemma2 = AttentionOptions {
///     window: Some(4096),
///     scale: Some(256f32.powf(-0.5)),
///     softcap: Some(50.0),
///     ..AttentionOptions::default()
/// };
/// assert!(gemma2.qk_norm.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionOptions {
    /// Sliding-window attention: a query at position `i` sees the keys at positions `j`
    /// with `i - window < j <= i` (`window` positions, its own included), transformers'
    /// `sliding_window_causal_mask_function(sliding_window)` (`kv_idx > q_idx -
    /// sliding_window` and causal). The kernel reads no cache row older than that; a
    /// [`ParallelAttention::new_cache`] still holds every position, a
    /// [`ParallelAttention::new_window_cache`] only the window's (and a chunk's). `None`:
    /// every position up to the query's.
    pub window: Option<usize>,
    /// The scale of the query-key dot products, else `head_dim ** -0.5` rounded in f32
    /// (Gemma: `query_pre_attn_scalar ** -0.5`; compute it in f64 and round it to f32, as
    /// torch does multiplying an f32 tensor by a Python float).
    pub scale: Option<f32>,
    /// Attention-logit soft-capping (Gemma 2's `attn_logit_softcapping`): the logits are
    /// `tanh(s * scale / cap) * cap`, scaled first, then capped, then masked, as
    /// transformers' `eager_attention_forward`.
    pub softcap: Option<f32>,
    /// Per-head RMSNorm of the queries and keys before rotary positions.
    pub qk_norm: Option<QkNorm>,
}

/// The options as the forward uses them: the logits and positions, and each local rank's
/// query and key norm weights `[1, head_dim]` with the epsilon.
#[derive(Debug, Clone, Default)]
pub(super) struct Applied {
    pub(super) options: AttentionOptions,
    pub(super) scores: ops::Scores,
    pub(super) qk_norm: Option<(Vec<[Tensor; 2]>, f32)>,
}

/// The key/value cache of one attention layer: per local rank `[capacity, 2 x kv heads x
/// head_dim]`, each row its position's keys then values, and how many positions it holds.
/// A window's cache ([`ParallelAttention::new_window_cache`]) is a ring: position `p` in
/// row `p % capacity`, the positions older than the window overwritten.
#[derive(Debug)]
pub struct KvCache {
    pub(super) kv: Vec<Tensor>,
    len: usize,
    ring: bool,
}

impl KvCache {
    /// Positions seen (a ring holds the last `capacity` of them).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows: the positions it can hold, or a ring's size.
    pub fn capacity(&self) -> usize {
        self.kv.first().map_or(0, |t| t.shape()[0])
    }

    /// True for a window's ring ([`ParallelAttention::new_window_cache`]).
    pub fn is_ring(&self) -> bool {
        self.ring
    }
}

/// Self-attention split by heads. Input and output: `Replicate [tokens, hidden]`.
#[derive(Debug, Clone)]
pub struct ParallelAttention {
    pub(super) group: Group,
    pub(super) shape: AttentionShape,
    pub(super) layout: WeightLayout,
    /// Every rank's query heads `[first, first + n)`, global.
    pub(super) heads: Vec<Range<usize>>,
    /// Every rank's key/value heads, global.
    pub(super) kv: Vec<Range<usize>>,
    /// This process's ranks' query, key and value weights fused, each rank's output
    /// columns `[q | k | v]`, and their biases likewise.
    pub(super) qkv: Vec<Tensor>,
    pub(super) bias: Option<Vec<Tensor>>,
    pub(super) rotary: Option<Rotary>,
    pub(super) o: RowParallelLinear,
    pub(super) options: Applied,
    /// A low-rank adapter of the fused weight, if attached.
    pub(super) qkv_adapter: super::AdapterSlot,
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
            o_block,
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
        // The fewest heads whose features are whole blocks of the o projection's inputs.
        let unit = o_block.max(1) / gcd(o_block.max(1), hd);
        let sizes = split_in_units(nh, group.world_size(), unit).map_err(|e| e.with_op(op))?;
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
            options: Applied::default(),
            qkv_adapter: super::AdapterSlot::default(),
        })
    }

    /// The same layer with `options` (replacing any it had): [`ParallelAttention::new`]
    /// then this is the layer of a family after Llama. Default options leave it Llama's,
    /// with the same bits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a window of 0, a scale or soft cap that is not a
    /// positive finite number, or a norm epsilon that is negative or not finite;
    /// [`Error::Shape`] for norm weights other than `head_dim` values; allocation errors.
    pub fn with_options(mut self, options: AttentionOptions) -> Result<Self> {
        let op = "parallel_attention.with_options";
        let scores = ops::Scores {
            scale: options.scale,
            softcap: options.softcap,
            window: options.window,
            ring: false,
        };
        scores.check(op)?;
        let hd = self.shape.head_dim;
        let qk_norm = match &options.qk_norm {
            None => None,
            Some(norm) => {
                if !(norm.eps.is_finite() && norm.eps >= 0.0) {
                    return Err(Error::invalid(
                        op,
                        format!("a norm epsilon of {}", norm.eps),
                    ));
                }
                for (what, w) in [("q_norm", &norm.q), ("k_norm", &norm.k)] {
                    if w.len() != hd {
                        return Err(Error::shape(
                            op,
                            format!("{what} weight of head_dim = {hd} values"),
                            format!("{}", w.len()),
                        ));
                    }
                }
                let mut weights = Vec::new();
                for rank in self.group.ranks() {
                    weights.push([
                        Tensor::from_host(rank, &norm.q, [1, hd])?,
                        Tensor::from_host(rank, &norm.k, [1, hd])?,
                    ]);
                }
                Some((weights, norm.eps))
            }
        };
        self.options = Applied {
            options,
            scores,
            qk_norm,
        };
        Ok(self)
    }

    /// The options the layer runs with (the per-head norms' weights as given; they
    /// train in [`ParallelAttention::qk_norm_weights`]).
    pub fn options(&self) -> &AttentionOptions {
        &self.options.options
    }

    /// The per-head query and key norms' weights as the layer reads them, `Replicate [1,
    /// head_dim]` each (an optimizer updates them in place); `None` without them.
    pub fn qk_norm_weights(&self) -> Option<[DistTensor; 2]> {
        let (weights, _) = self.options.qk_norm.as_ref()?;
        let whole = |j: usize| self.head_vector(weights.iter().map(|w| w[j].clone()).collect());
        Some([whole(0), whole(1)])
    }

    /// Every local rank's `[1, head_dim]` (one per local rank, the same on all) as one
    /// `Replicate` tensor.
    pub(super) fn head_vector(&self, locals: Vec<Tensor>) -> DistTensor {
        let shape = [1, self.shape.head_dim];
        DistTensor::from_parts(&self.group, locals, Placement::Replicate, shape, Vec::new())
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
        Ok(KvCache {
            kv,
            len: 0,
            ring: false,
        })
    }

    /// An empty ring cache for a layer with a window: `window + chunk - 1` rows, position
    /// `p` in row `p % rows`, so any number of positions in forwards of up to `chunk`
    /// tokens each (a prefill longer than that goes in pieces). Each forward then covers
    /// its positions with the rotary table ([`Rotary::cover`]), which grows with them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a window ([`AttentionOptions::window`]) or for a
    /// `chunk` of 0; as [`ParallelAttention::new_cache`].
    pub fn new_window_cache(&self, chunk: usize) -> Result<KvCache> {
        let op = "parallel_attention.new_window_cache";
        let window = self
            .options
            .options
            .window
            .ok_or_else(|| Error::invalid(op, "a ring cache is for a layer with a window"))?;
        let rows = window
            .checked_add(chunk)
            .filter(|_| chunk > 0)
            .map(|n| n - 1)
            .ok_or_else(|| Error::invalid(op, format!("chunks of {chunk} tokens")))?;
        let hd = self.shape.head_dim;
        for (rank, r) in self.group.ranks().iter().zip(self.group.local_range()) {
            crate::tensor::check_one_band(rank, [rows, 2 * self.kv[r].len() * hd], op)?;
        }
        let mut kv = Vec::new();
        for (rank, r) in self.group.ranks().iter().zip(self.group.local_range()) {
            kv.push(Tensor::output(rank, [rows, 2 * self.kv[r].len() * hd], op)?);
        }
        Ok(KvCache {
            kv,
            len: 0,
            ring: true,
        })
    }

    /// Attention of `x`'s rows, the next positions after those `cache` holds, which it
    /// then holds too.
    ///
    /// # Errors
    /// [`Error::Placement`] unless `x` is `Replicate`; [`Error::Shape`] for another
    /// width; [`Error::InvalidArgument`] past the cache's capacity (a ring: more rows than
    /// its chunk, or a layer without the window it was made for); GPU and collective
    /// errors.
    pub async fn forward_async(&self, x: &DistTensor, cache: &mut KvCache) -> Result<DistTensor> {
        layer::forward_async(self, x, Some(cache)).await
    }

    /// Blocking [`ParallelAttention::forward_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`ParallelAttention::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&self, x: &DistTensor, cache: &mut KvCache) -> Result<DistTensor> {
        crate::rank::block_on(self.forward_async(x, cache))
    }
}

impl ParallelAttention {
    /// Local rank `i`'s fused query/key/value rows of `x` (its product and bias, before
    /// any norm or rotary).
    pub(super) fn project_qkv(&self, op: &'static str, i: usize, x: &Tensor) -> Result<Tensor> {
        Product {
            op,
            x,
            cols: 0..self.shape.hidden,
            w: &self.qkv[i],
            bias: self.bias.as_ref().map(|b| &b[i]),
            layout: self.layout,
            act: Activation::Identity,
            blocks: INVARIANT_BLOCKS,
            low_rank: self.qkv_adapter.low_rank(i),
        }
        .run()
    }

    /// Where rank `r`'s heads sit among the model's.
    pub(super) fn span(&self, r: usize) -> HeadSpan {
        HeadSpan {
            first_q: self.heads[r].start,
            first_kv: self.kv[r].start,
            group: self.shape.heads / self.shape.kv_heads,
            head_dim: self.shape.head_dim,
        }
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
        if cache.ring {
            // Every position a query sees must be in the ring, none overwritten by this
            // forward's own: window + tokens - 1 rows.
            let window = self.options.options.window;
            if window.is_none_or(|w| w.saturating_add(tokens.saturating_sub(1)) > cache.capacity())
            {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{tokens} tokens into a ring of {} rows with a window of {window:?}: \
                         at most rows - window + 1 at a time",
                        cache.capacity()
                    ),
                ));
            }
            if let Some(rotary) = &self.rotary {
                rotary.cover(pos0 + tokens)?;
            }
        } else if pos0 + tokens > cache.capacity() {
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
        // (LongRoPE turns a forward by the table its last position picks.)
        let end = pos0 + tokens;
        let rotary = self
            .rotary
            .as_ref()
            .map(|r| r.current_for(end))
            .transpose()?;
        let mut outs = Vec::with_capacity(self.qkv.len());
        for (i, r) in self.group.local_range().enumerate() {
            let qkv = self.project_qkv(op, i, &x.locals()[i])?;
            // The norm is a pass of its own over the fused rows: write_kv moves the keys a
            // pair at a time and the norm needs a whole head, and the kernels without it
            // stay as they were (their bits too).
            let qkv = match &self.options.qk_norm {
                None => qkv,
                Some((weights, eps)) => {
                    let [wq, wk] = &weights[i];
                    ops::head_rms_norm(&qkv, wq, wk, self.heads[r].len(), hd, *eps)?
                }
            };
            let table = rotary.as_ref().map(|t| &t.locals()[i]);
            ops::write_kv(&qkv, &cache.kv[i], table, (hd, pos0), cache.ring)?;
            let span = self.span(r);
            let scores = ops::Scores {
                ring: cache.ring,
                ..self.options.scores
            };
            outs.push(ops::attention_with(
                &qkv,
                &cache.kv[i],
                table,
                span,
                pos0,
                scores,
            )?);
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

    fn reduce_to_async(
        &self,
        partial: DistTensor,
        target: Placement,
    ) -> BoxFuture<'_, Result<DistTensor>> {
        self.o.reduce_to_async(partial, target)
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

    /// q, k, v (`[out, hidden]` each, with their biases), then o and its bias: the fused
    /// rank blocks split back, a key/value head two ranks hold taken once.
    #[cfg(not(target_arch = "wasm32"))]
    fn export(&self) -> Result<Vec<Vec<f32>>> {
        let hd = self.shape.head_dim;
        let fused =
            layer::export_linear(self.layout, &self.qkv_weight(), self.qkv_bias().as_ref())?;
        let split = |host: &[f32], width: usize| {
            let mut q = Vec::new();
            let mut kv: [Vec<Option<Vec<f32>>>; 2] = [
                vec![None; self.shape.kv_heads],
                vec![None; self.shape.kv_heads],
            ];
            let mut at = 0;
            for (h, g) in self.heads.iter().zip(&self.kv) {
                let n = h.len() * hd * width;
                q.extend_from_slice(&host[at..at + n]);
                at += n;
                for part in kv.iter_mut() {
                    for head in g.clone() {
                        let block = host[at..at + hd * width].to_vec();
                        part[head].get_or_insert(block);
                        at += hd * width;
                    }
                }
            }
            let [k, v] =
                kv.map(|heads| heads.into_iter().flatten().flatten().collect::<Vec<f32>>());
            [q, k, v]
        };
        let [q, k, v] = split(&fused[0], self.shape.hidden);
        let mut out = match fused.get(1) {
            Some(bias) => {
                let [bq, bk, bv] = split(bias, 1);
                vec![q, bq, k, bk, v, bv]
            }
            None => vec![q, k, v],
        };
        out.extend(layer::export_linear(
            self.layout,
            self.o.weight(),
            self.o.bias(),
        )?);
        Ok(out)
    }

    /// The fused weight and bias, then the output projection's, then the per-head query
    /// and key norms' weights.
    fn parameters(&self) -> Vec<DistTensor> {
        let mut p = vec![self.qkv_weight()];
        p.extend(self.qkv_bias());
        p.extend(layer::linear_params(self.o.weight(), self.o.bias()));
        p.extend(self.qk_norm_weights().into_iter().flatten());
        p
    }

    /// The fused q, k, v projection (parts q, k and v; a key/value head an earlier rank
    /// holds not owned), then the output projection. `[in, out]` weights (GPT-2) split no
    /// key/value head over two ranks.
    fn adaptable(&self) -> Vec<layer::Adaptable> {
        let transposed = self.layout == WeightLayout::InOut;
        let shared = (1..self.kv.len()).any(|r| self.kv[r].start < self.kv[r - 1].end);
        if transposed && shared {
            return Vec::new();
        }
        let hd = self.shape.head_dim;
        let block = |part: usize, heads: Range<usize>, owned: bool| layer::RowBlock {
            part,
            from: heads.start * hd,
            len: heads.len() * hd,
            owned,
        };
        let rows = (0..self.heads.len())
            .map(|r| {
                let (kv, own) = (&self.kv[r], super::attention_backward::owned(&self.kv, r));
                let mut blocks = vec![block(0, self.heads[r].clone(), true)];
                for part in [1, 2] {
                    blocks.push(block(part, kv.start..own.start, false));
                    blocks.push(block(part, own.clone(), true));
                }
                blocks.retain(|b| b.len > 0);
                blocks
            })
            .collect();
        let sizes: Vec<usize> = self.heads.iter().map(|h| h.len() * hd).collect();
        vec![
            layer::Adaptable {
                param: 0,
                slot: self.qkv_adapter.clone(),
                transposed,
                by_rows: !transposed,
                blocks: rows,
            },
            layer::Adaptable {
                param: 1 + usize::from(self.bias.is_some()),
                slot: self.o.lin.adapter.clone(),
                transposed,
                by_rows: transposed,
                blocks: layer::in_order(&sizes),
            },
        ]
    }

    fn backward_async<'a>(
        &'a self,
        x: &'a DistTensor,
        dy: &'a DistTensor,
        input: Placement,
        need: Need,
    ) -> BoxFuture<'a, Result<layer::LayerGrads>> {
        Box::pin(async move {
            let g = self.grads(x, dy, input, need).await?;
            if need == Need::Frozen {
                let sites = self.adaptable();
                let factors = [g.qkv.factors(sites[0].param), g.o.factors(sites[1].param)];
                return Ok(layer::LayerGrads {
                    input: g.input,
                    params: Vec::new(),
                    counted: Vec::new(),
                    factors: factors.into_iter().flatten().collect(),
                });
            }
            let g = g.public("parallel_attention.backward")?;
            let mut params = vec![g.qkv.clone()];
            params.extend(g.qkv_bias.clone());
            let mut counted = g.counted_once()?;
            params.extend(layer::linear_grads(&g.o));
            counted.extend(layer::linear_grads(&g.o));
            params.extend(g.qk_norm.iter().flatten().cloned());
            counted.extend(g.qk_norm.iter().flatten().cloned());
            Ok(layer::LayerGrads {
                input: g.input,
                params,
                counted,
                factors: Vec::new(),
            })
        })
    }
}

/// The greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
