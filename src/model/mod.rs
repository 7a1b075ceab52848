//! `Transformer`: a decoder-only model loaded from a
//! [`Checkpoint`](crate::load::Checkpoint) or a [`Gguf`](crate::load::Gguf) file onto a
//! group, each rank reading only its shards' rows, with a key/value cache per rank
//! (feature `safetensors`). Each family (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2 and
//! 3, GPT-2) is a module of `families/` that reads its config and names its tensors in a
//! recipe (recipe.rs); `families/gguf.rs` does the same from a GGUF file's metadata, with
//! llama.cpp's names; load.rs builds any recipe, through a scoped reader of either file
//! (weights.rs). sampling.rs
//! chooses sampled tokens from the head's candidates ([`Sampling`]), generate.rs streams
//! them ([`TokenStream`]), text.rs turns them into text as they come (`TextStream`,
//! feature `tokenizer`).

mod block;
mod config;
mod families;
mod generate;
mod load;
mod lora;
mod recipe;
mod sampling;
#[cfg(not(target_arch = "wasm32"))]
mod save;
#[cfg(feature = "tokenizer")]
mod text;
mod train;
mod weights;

pub use config::{Architecture, ModelConfig, SlidingLayers};

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::nn::{KvCache, Norm, ParallelLmHead, VocabParallelEmbedding};
use crate::ops;
use crate::rank::batched;
use block::{Block, Step, Stream};
pub use generate::TokenStream;
pub use lora::{Lora, LoraConfig, LoraGrads, NamedTensor};
pub use sampling::{Sampler, Sampling, SplitMix64};
#[cfg(feature = "tokenizer")]
pub use text::TextStream;
pub use train::ModelGrads;

/// A model on a group.
#[derive(Debug, Clone)]
pub struct Transformer {
    /// Which model this is (clones share it): a cache serves only the model that made it.
    id: u64,
    config: ModelConfig,
    group: Group,
    embedding: VocabParallelEmbedding,
    /// What the embeddings are multiplied by (Gemma's `sqrt(hidden)` in f32).
    embed_scale: Option<f32>,
    /// GPT-2's learned positions, `[positions, hidden]` on every rank.
    positions: Option<DistTensor>,
    blocks: Vec<Block>,
    norm: Norm,
    head: ParallelLmHead,
    /// The head reads the embedding's table (a copy of it: `tie_word_embeddings`).
    tied: bool,
    /// The names of its tensors (what `save_safetensors` writes them as; not on wasm32).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    recipe: recipe::Recipe,
}

/// The key/value caches of every block.
#[derive(Debug)]
pub struct Cache {
    /// The [`Transformer`] that made it.
    model: u64,
    /// One per step of every block, in order: the caches of the steps whose layer keeps one.
    layers: Vec<Option<KvCache>>,
    /// Set while a forward runs and cleared when it succeeds: a forward that failed half
    /// way left the layers' caches at different lengths.
    broken: bool,
}

impl Cache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.first().map_or(0, KvCache::len)
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first layer's cache (all hold the same positions).
    fn first(&self) -> Option<&KvCache> {
        self.layers.iter().flatten().next()
    }
}

impl Transformer {
    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The group it runs on.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Empty key/value caches for up to `capacity` positions (at most the model's).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] past the model's positions; allocation errors.
    pub fn new_cache(&self, capacity: usize) -> Result<Cache> {
        if capacity == 0 || capacity > self.config.max_positions {
            return Err(Error::invalid(
                "transformer.new_cache",
                format!(
                    "{capacity} positions; the model has 1..={}",
                    self.config.max_positions
                ),
            ));
        }
        let layers = self
            .steps()
            .map(|s| s.layer.empty_cache(capacity))
            .collect::<Result<_>>()?;
        Ok(Cache {
            model: self.id,
            layers,
            broken: false,
        })
    }

    /// The most tokens one forward takes: the model kernels bind each tensor whole, so
    /// the widest row any rank holds per token (the fused query/key/value row, the gated
    /// MLP's `[gate | up]`, the hidden state) times the tokens must fit one band.
    fn max_tokens(&self) -> usize {
        let rows = self.steps().map(|s| s.layer.row_width());
        let widest = rows.fold(self.config.hidden_size, usize::max);
        // Every rank's size and limit, in every process: the processes agree on the pieces.
        let most = self.group.band_bytes() / (4 * widest.max(1) as u64);
        let most = usize::try_from(most).unwrap_or(usize::MAX);
        // As tensors are banded (src/tensor: whole multiples of 4 rows from 4 up), so the
        // widest row's tensor, and every narrower one, is one band.
        if most >= 4 {
            most - most % 4
        } else {
            most.max(1)
        }
    }

    /// The final hidden states of `ids`, the positions after those `cache` holds, in
    /// pieces of at most [`Transformer::max_tokens`] rows, one forward each.
    async fn hidden_async(&self, ids: &[u32], cache: &mut Cache) -> Result<Vec<DistTensor>> {
        if cache.model != self.id {
            return Err(Error::invalid(
                "transformer.forward",
                "the cache was made by another model (Transformer::new_cache of this one)",
            ));
        }
        if cache.broken {
            return Err(Error::invalid(
                "transformer.forward",
                "an earlier forward failed part way through this cache: make a new one",
            ));
        }
        // Refusals that change nothing come first; past them, a failure breaks the cache.
        self.embedding.check_ids("transformer.forward", ids)?;
        let capacity = cache.first().map_or(0, KvCache::capacity);
        if cache.len() + ids.len() > capacity {
            return Err(Error::invalid(
                "transformer.forward",
                format!(
                    "{} new positions after {} in a cache of {capacity}",
                    ids.len(),
                    cache.len()
                ),
            ));
        }
        let step = self.max_tokens();
        cache.broken = true;
        let mut out = Vec::with_capacity(ids.len().div_ceil(step));
        for piece in ids.chunks(step) {
            out.push(self.hidden_inner(piece, cache).await?);
        }
        cache.broken = false;
        Ok(out)
    }

    async fn hidden_inner(&self, ids: &[u32], cache: &mut Cache) -> Result<DistTensor> {
        let x = self.embed_async(ids, cache.len()).await?;
        let mut stream = Stream::new(x);
        for (step, cache) in self.steps().zip(&mut cache.layers) {
            stream = step.forward_async(stream, cache.as_mut()).await?;
        }
        batched("transformer.forward", || {
            self.norm.forward(&stream.joined()?)
        })
    }

    /// The residual stream's start for `ids` at positions `pos0..`: their embeddings,
    /// scaled (Gemma), plus the learned positions' rows (GPT-2).
    async fn embed_async(&self, ids: &[u32], pos0: usize) -> Result<DistTensor> {
        let mut x = self.embedding.forward_async(ids).await?;
        if let Some(s) = self.embed_scale {
            let locals = batched("transformer.forward", || {
                x.locals()
                    .iter()
                    .map(|t| ops::scale(t, s))
                    .collect::<Result<Vec<_>>>()
            })?;
            x = DistTensor::from_parts(
                &self.group,
                locals,
                Placement::Replicate,
                x.shape(),
                Vec::new(),
            );
        }
        if let Some(wpe) = &self.positions {
            if pos0 + ids.len() > self.config.max_positions {
                return Err(Error::invalid(
                    "transformer.forward",
                    format!(
                        "{} positions; the model has {}",
                        pos0 + ids.len(),
                        self.config.max_positions
                    ),
                ));
            }
            let locals = x
                .locals()
                .iter()
                .zip(wpe.locals())
                .map(|(t, p)| ops::add(t, &ops::slice(p, pos0, 0, t.shape())?))
                .collect::<Result<Vec<_>>>()?;
            x = DistTensor::from_parts(
                &self.group,
                locals,
                Placement::Replicate,
                x.shape(),
                Vec::new(),
            );
        }
        Ok(x)
    }

    /// Every block's steps, in order.
    fn steps(&self) -> impl Iterator<Item = &Step> {
        self.blocks.iter().flat_map(|b| &b.steps)
    }

    /// The logits of `ids` (`[ids.len(), vocab]` on the host), continuing `cache`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for ids past the vocabulary, positions past the cache,
    /// or a cache another model made; GPU and collective errors.
    pub async fn logits_async(&self, ids: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        // After the forward's checks: the ids fit the cache, so the logits fit memory.
        let pieces = self.hidden_async(ids, cache).await?;
        let mut logits = Vec::with_capacity(ids.len().saturating_mul(self.config.vocab_size));
        for x in pieces {
            logits.extend(self.head.full_logits_async(&x).await?);
        }
        Ok(logits)
    }

    /// Blocking [`Transformer::logits_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Transformer::logits_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits(&self, ids: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        crate::rank::block_on(self.logits_async(ids, cache))
    }

    /// The greedy next token after `ids`, continuing `cache` (distributed argmax: the full
    /// logits are never gathered).
    ///
    /// # Errors
    /// As [`Transformer::logits_async`]; [`Error::NonFinite`] when the logits are not all
    /// finite numbers (no token is an answer then).
    pub async fn next_token_async(&self, ids: &[u32], cache: &mut Cache) -> Result<u32> {
        let pieces = self.hidden_async(ids, cache).await?;
        let last = pieces
            .last()
            .ok_or_else(|| Error::invalid("transformer.forward", "no ids"))?;
        self.head.greedy_async(last).await
    }

    /// Blocking [`Transformer::next_token_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Transformer::logits_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn next_token(&self, ids: &[u32], cache: &mut Cache) -> Result<u32> {
        crate::rank::block_on(self.next_token_async(ids, cache))
    }

    /// The next token after `ids`, continuing `cache`, chosen by `sampler` (see
    /// [`Sampling`] for the chain and its exactness): `ids` join the sequence the
    /// repetition penalty looks at. Only each rank's best candidates cross ranks.
    ///
    /// # Errors
    /// As [`Transformer::next_token_async`]; [`Error::InvalidArgument`] when the chain
    /// would keep more tokens than were proposed (see [`Sampling`]).
    pub async fn next_token_with_async(
        &self,
        ids: &[u32],
        cache: &mut Cache,
        sampler: &mut Sampler,
    ) -> Result<u32> {
        let pieces = self.hidden_async(ids, cache).await?;
        let last = pieces
            .last()
            .ok_or_else(|| Error::invalid("transformer.forward", "no ids"))?;
        sampler.observe(ids);
        let o = *sampler.options();
        if o.is_greedy() && o.repetition_penalty_is_off() {
            return self.head.greedy_async(last).await;
        }
        let s = &*sampler;
        let candidates = self
            .head
            .candidates_async(last, o.proposals(), &|id, x| s.adjust(id, x))
            .await?;
        sampler.choose(&candidates)
    }

    /// Blocking [`Transformer::next_token_with_async`].
    ///
    /// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
    ///
    /// # Errors
    /// As [`Transformer::next_token_with_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn next_token_with(
        &self,
        ids: &[u32],
        cache: &mut Cache,
        sampler: &mut Sampler,
    ) -> Result<u32> {
        crate::rank::block_on(self.next_token_with_async(ids, cache, sampler))
    }

    /// Greedy generation: the prompt in one forward (prefill), then one token at a time
    /// from the cache; returns the `max_new` new tokens.
    ///
    /// Blocking; not on wasm32 (nothing may block a page's thread): await
    /// [`Transformer::next_token_async`] there.
    ///
    /// # Errors
    /// As [`Transformer::logits_async`]; [`Error::InvalidArgument`] for an empty prompt or
    /// more positions than the model has.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(&self, prompt: &[u32], max_new: usize) -> Result<Vec<u32>> {
        let most = self.config.max_positions;
        // The last new token is returned, never fed back: it takes no position.
        let positions = prompt
            .len()
            .checked_add(max_new.saturating_sub(1))
            .filter(|&n| n <= most)
            .ok_or_else(|| {
                Error::invalid(
                    "transformer.generate",
                    format!(
                        "{} prompt tokens and {max_new} new ones: more positions than the \
                         model's {most}",
                        prompt.len()
                    ),
                )
            })?;
        // The cache is checked against the devices first: `out` is no larger than it.
        let mut cache = self.new_cache(positions.max(1))?;
        let mut out = Vec::with_capacity(max_new);
        let mut next = self.next_token(prompt, &mut cache)?;
        for _ in 0..max_new {
            out.push(next);
            if out.len() == max_new {
                break;
            }
            next = self.next_token(&[next], &mut cache)?;
        }
        Ok(out)
    }
}
