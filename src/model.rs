//! `Transformer`: a decoder-only model (Llama family or GPT-2) loaded from a
//! [`Checkpoint`] onto a group, each rank reading only its shards' rows; greedy
//! generation with a key/value cache per rank (feature `safetensors`).

use std::ops::Range;

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::load::{Architecture, Checkpoint, ModelConfig};
use crate::nn::{
    AttentionShape, GatedMlp, HeadWeights, HostLinear, KvCache, Norm, NormKind, ParallelAttention,
    ParallelLmHead, ParallelMlp, Rotary, VocabParallelEmbedding,
};
use crate::ops;
use crate::settings::{Activation, WeightLayout};
use crate::shard::slice_host;

/// The MLP of a block.
#[derive(Debug, Clone)]
enum Mlp {
    Gated(GatedMlp),
    Plain(ParallelMlp),
}

/// A decoder block: attention and MLP, each behind a norm and added to the residual (two
/// all-reduces, as in Megatron-LM).
#[derive(Debug, Clone)]
struct Block {
    norm1: Norm,
    attention: ParallelAttention,
    norm2: Norm,
    mlp: Mlp,
}

/// A model on a group.
#[derive(Debug, Clone)]
pub struct Transformer {
    config: ModelConfig,
    group: Group,
    embedding: VocabParallelEmbedding,
    /// GPT-2's learned positions, `[positions, hidden]` on every rank.
    positions: Option<DistTensor>,
    blocks: Vec<Block>,
    norm: Norm,
    head: ParallelLmHead,
}

/// The key/value caches of every block.
#[derive(Debug)]
pub struct Cache {
    layers: Vec<KvCache>,
    /// Set while a forward runs and cleared when it succeeds: a forward that failed half
    /// way left the layers' caches at different lengths.
    broken: bool,
}

impl Cache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Columns `cols` of the row-major `[rows, n]` matrix `m`.
fn columns(m: &[f32], n: usize, cols: Range<usize>) -> Result<Vec<f32>> {
    slice_host(m, n, 0, m.len() / n.max(1), cols.start, cols.len())
}

impl Transformer {
    /// Loads `checkpoint` onto `group`: every rank uploads only its shards (vocabulary
    /// rows, heads, intermediate features) and the replicated norms.
    ///
    /// # Errors
    /// Checkpoint errors; [`Error::InvalidArgument`] when tp exceeds the heads, the
    /// vocabulary or the intermediate size, or for an activation the library lacks;
    /// allocation errors.
    pub fn from_checkpoint(group: &Group, checkpoint: &Checkpoint) -> Result<Self> {
        let c = checkpoint.config().clone();
        let ck = checkpoint;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let shape = AttentionShape {
            hidden: h,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
        };
        let eps = c.norm_eps as f32;
        let llama = c.architecture == Architecture::Llama;
        let (kind, embed_name) = if llama {
            (NormKind::Rms, "model.embed_tokens.weight")
        } else {
            (NormKind::Layer, "wte.weight")
        };
        let norm = |prefix: &str| -> Result<Norm> {
            let w = ck.f32(&format!("{prefix}.weight"))?;
            let b = if llama {
                None
            } else {
                Some(ck.f32(&format!("{prefix}.bias"))?)
            };
            Norm::new(group, kind, &w, b.as_deref(), eps)
        };
        let embedding = VocabParallelEmbedding::from_rows(group, c.vocab_size, h, |r| {
            ck.rows_f32(embed_name, r)
        })?;
        let rotary = match c.rope_theta {
            Some(theta) => Some(Rotary::new(group, hd, c.max_positions, theta)?),
            None => None,
        };
        let positions = if llama {
            None
        } else {
            let wpe = ck.f32("wpe.weight")?;
            Some(DistTensor::replicate(group, &wpe, [c.max_positions, h])?)
        };
        let mut blocks = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let block = if llama {
                let p = format!("model.layers.{l}");
                let attention = ParallelAttention::new(
                    group,
                    shape,
                    WeightLayout::OutIn,
                    rotary.clone(),
                    |q, kv| {
                        let name = |w: &str| format!("{p}.self_attn.{w}_proj.weight");
                        Ok(HeadWeights {
                            q: ck.rows_f32(&name("q"), q.start * hd..q.end * hd)?,
                            k: ck.rows_f32(&name("k"), kv.start * hd..kv.end * hd)?,
                            v: ck.rows_f32(&name("v"), kv.start * hd..kv.end * hd)?,
                            bias: None,
                        })
                    },
                    |cols| ck.cols_f32(&format!("{p}.self_attn.o_proj.weight"), cols),
                    None,
                )?;
                let mlp = GatedMlp::new(
                    group,
                    h,
                    c.intermediate_size,
                    |r| ck.rows_f32(&format!("{p}.mlp.gate_proj.weight"), r),
                    |r| ck.rows_f32(&format!("{p}.mlp.up_proj.weight"), r),
                    |cols| ck.cols_f32(&format!("{p}.mlp.down_proj.weight"), cols),
                )?;
                if c.activation != "silu" {
                    return Err(Error::invalid(
                        "transformer.from_checkpoint",
                        format!("activation {:?}: the gated MLP runs silu", c.activation),
                    ));
                }
                Block {
                    norm1: norm(&format!("{p}.input_layernorm"))?,
                    attention,
                    norm2: norm(&format!("{p}.post_attention_layernorm"))?,
                    mlp: Mlp::Gated(mlp),
                }
            } else {
                let p = format!("h.{l}");
                let qkv_w = ck.f32(&format!("{p}.attn.c_attn.weight"))?;
                let qkv_b = ck.f32(&format!("{p}.attn.c_attn.bias"))?;
                let attention = ParallelAttention::new(
                    group,
                    shape,
                    WeightLayout::InOut,
                    None,
                    |q, _| {
                        // Fused [hidden, 3 hidden] (Conv1D): q, k, v column blocks, each
                        // split by head.
                        let block = |i: usize| q.start * hd + i * h..q.end * hd + i * h;
                        let (w, b) = (&qkv_w, &qkv_b);
                        Ok(HeadWeights {
                            q: columns(w, 3 * h, block(0))?,
                            k: columns(w, 3 * h, block(1))?,
                            v: columns(w, 3 * h, block(2))?,
                            bias: Some([0, 1, 2].map(|i| b[block(i)].to_vec())),
                        })
                    },
                    |rows| ck.rows_f32(&format!("{p}.attn.c_proj.weight"), rows),
                    Some(&ck.f32(&format!("{p}.attn.c_proj.bias"))?),
                )?;
                let act = match c.activation.as_str() {
                    "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
                    "gelu" => Activation::GeluErf,
                    "relu" => Activation::Relu,
                    other => {
                        return Err(Error::invalid(
                            "transformer.from_checkpoint",
                            format!("activation {other:?} is not one the library runs"),
                        ))
                    }
                };
                let (fc_w, fc_b) = (
                    ck.f32(&format!("{p}.mlp.c_fc.weight"))?,
                    ck.f32(&format!("{p}.mlp.c_fc.bias"))?,
                );
                let (pr_w, pr_b) = (
                    ck.f32(&format!("{p}.mlp.c_proj.weight"))?,
                    ck.f32(&format!("{p}.mlp.c_proj.bias"))?,
                );
                let i = c.intermediate_size;
                let mlp = ParallelMlp::from_full(
                    group,
                    HostLinear::new(&fc_w, h, i, WeightLayout::InOut).with_bias(&fc_b),
                    HostLinear::new(&pr_w, i, h, WeightLayout::InOut).with_bias(&pr_b),
                    act,
                )?;
                Block {
                    norm1: norm(&format!("{p}.ln_1"))?,
                    attention,
                    norm2: norm(&format!("{p}.ln_2"))?,
                    mlp: Mlp::Plain(mlp),
                }
            };
            blocks.push(block);
            // Let each device finish the block's uploads and free their staging copies
            // before the next block's: loading holds one block's host copies at a time.
            group.wait_idle()?;
        }
        let (final_norm, head_name) = if llama {
            let head = if c.tie_word_embeddings {
                embed_name
            } else {
                "lm_head.weight"
            };
            (norm("model.norm")?, head)
        } else {
            (norm("ln_f")?, embed_name)
        };
        let head =
            ParallelLmHead::from_rows(group, c.vocab_size, h, |r| ck.rows_f32(head_name, r))?;
        Ok(Transformer {
            config: c,
            group: group.clone(),
            embedding,
            positions,
            blocks,
            norm: final_norm,
            head,
        })
    }

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
            .blocks
            .iter()
            .map(|b| b.attention.new_cache(capacity))
            .collect::<Result<_>>()?;
        Ok(Cache {
            layers,
            broken: false,
        })
    }

    /// The final hidden states of `ids`, the positions after those `cache` holds.
    async fn hidden_async(&self, ids: &[u32], cache: &mut Cache) -> Result<DistTensor> {
        if cache.broken {
            return Err(Error::invalid(
                "transformer.forward",
                "an earlier forward failed part way through this cache: make a new one",
            ));
        }
        // Refusals that change nothing come first; past them, a failure breaks the cache.
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(Error::invalid(
                "transformer.forward",
                format!(
                    "token id {bad} is past the vocabulary of {}",
                    self.config.vocab_size
                ),
            ));
        }
        let capacity = cache.layers.first().map_or(0, KvCache::capacity);
        if ids.is_empty() || cache.len() + ids.len() > capacity {
            return Err(Error::invalid(
                "transformer.forward",
                format!(
                    "{} new positions after {} in a cache of {capacity}",
                    ids.len(),
                    cache.len()
                ),
            ));
        }
        cache.broken = true;
        let out = self.hidden_inner(ids, cache).await;
        cache.broken = out.is_err();
        out
    }

    async fn hidden_inner(&self, ids: &[u32], cache: &mut Cache) -> Result<DistTensor> {
        let pos0 = cache.len();
        let mut x = self.embedding.forward_async(ids).await?;
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
        for (block, kv) in self.blocks.iter().zip(&mut cache.layers) {
            let a = block
                .attention
                .forward_async(&block.norm1.forward(&x)?, kv)
                .await?;
            x = residual(&x, &a)?;
            let h = block.norm2.forward(&x)?;
            let m = match &block.mlp {
                Mlp::Gated(g) => g.forward_async(&h).await?,
                Mlp::Plain(p) => p.forward_async(&h).await?,
            };
            x = residual(&x, &m)?;
        }
        self.norm.forward(&x)
    }

    /// The logits of `ids` (`[ids.len(), vocab]` on the host), continuing `cache`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for ids past the vocabulary or positions past the
    /// cache; GPU and collective errors.
    pub async fn logits_async(&self, ids: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        let x = self.hidden_async(ids, cache).await?;
        self.head.full_logits_async(&x).await
    }

    /// Blocking [`Transformer::logits_async`].
    ///
    /// # Errors
    /// As [`Transformer::logits_async`].
    pub fn logits(&self, ids: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        crate::rank::block_on(self.logits_async(ids, cache))
    }

    /// The greedy next token after `ids`, continuing `cache` (distributed argmax: the full
    /// logits are never gathered).
    ///
    /// # Errors
    /// As [`Transformer::logits_async`].
    pub async fn next_token_async(&self, ids: &[u32], cache: &mut Cache) -> Result<u32> {
        let x = self.hidden_async(ids, cache).await?;
        self.head.greedy_async(&x).await
    }

    /// Blocking [`Transformer::next_token_async`].
    ///
    /// # Errors
    /// As [`Transformer::logits_async`].
    pub fn next_token(&self, ids: &[u32], cache: &mut Cache) -> Result<u32> {
        crate::rank::block_on(self.next_token_async(ids, cache))
    }

    /// Greedy generation: the prompt in one forward (prefill), then one token at a time
    /// from the cache; returns the `max_new` new tokens.
    ///
    /// # Errors
    /// As [`Transformer::logits_async`]; [`Error::InvalidArgument`] for an empty prompt or
    /// more positions than the model has.
    pub fn generate(&self, prompt: &[u32], max_new: usize) -> Result<Vec<u32>> {
        let mut cache = self.new_cache((prompt.len() + max_new).min(self.config.max_positions))?;
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

/// `x + y` on every rank (both `Replicate`), once per buffer that logical ranks share.
fn residual(x: &DistTensor, y: &DistTensor) -> Result<DistTensor> {
    let mut locals: Vec<crate::Tensor> = Vec::with_capacity(x.locals().len());
    for (i, (a, b)) in x.locals().iter().zip(y.locals()).enumerate() {
        let j = (0..i).find(|&j| x.locals()[j].same_storage(a) && y.locals()[j].same_storage(b));
        locals.push(match j {
            Some(j) => locals[j].shared_with(a.rank()),
            None => ops::add(a, b)?,
        });
    }
    Ok(DistTensor::from_parts(
        x.group(),
        locals,
        Placement::Replicate,
        x.shape(),
        Vec::new(),
    ))
}
