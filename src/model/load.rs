//! `Transformer::from_checkpoint`: every layer of a Llama-family or GPT-2 checkpoint, each
//! rank reading only its shards.

use std::ops::Range;

use super::{Block, Mlp, Transformer};
use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::load::{Architecture, Checkpoint};
use crate::nn::{
    AttentionShape, GatedMlp, HeadWeights, HostLinear, Norm, NormKind, ParallelAttention,
    ParallelLmHead, ParallelMlp, Rotary, VocabParallelEmbedding,
};
use crate::settings::{Activation, WeightLayout};
use crate::shard::slice_host;

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
        let embedding =
            VocabParallelEmbedding::from_rows(group, c.vocab_size, h, |r| ck.rows(embed_name, r))?;
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
                            q: ck.rows(&name("q"), q.start * hd..q.end * hd)?,
                            k: ck.rows(&name("k"), kv.start * hd..kv.end * hd)?,
                            v: ck.rows(&name("v"), kv.start * hd..kv.end * hd)?,
                            bias: None,
                        })
                    },
                    |cols| ck.cols(&format!("{p}.self_attn.o_proj.weight"), cols),
                    None,
                )?;
                let mlp = GatedMlp::new(
                    group,
                    h,
                    c.intermediate_size,
                    |r| ck.rows(&format!("{p}.mlp.gate_proj.weight"), r),
                    |r| ck.rows(&format!("{p}.mlp.up_proj.weight"), r),
                    |cols| ck.cols(&format!("{p}.mlp.down_proj.weight"), cols),
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
                            q: columns(w, 3 * h, block(0))?.into(),
                            k: columns(w, 3 * h, block(1))?.into(),
                            v: columns(w, 3 * h, block(2))?.into(),
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
        // The GEMM weights and the embeddings keep the checkpoint's type (Llama's
        // projections, the head, the table); norms and GPT-2's blocks are read as f32.
        let head = ParallelLmHead::from_rows(group, c.vocab_size, h, |r| ck.rows(head_name, r))?;
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
}
