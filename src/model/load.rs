//! `Transformer::from_checkpoint`: every layer of a Llama-family or GPT-2 checkpoint, each
//! rank reading only its shards.

use std::sync::Arc;

use super::{Block, Step, Transformer};
use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::load::{Architecture, Checkpoint};
use crate::nn::{
    AttentionShape, ColumnParallelConfig, ColumnParallelLinear, GatedMlp, HeadWeights, Layer, Norm,
    NormKind, ParallelAttention, ParallelLmHead, ParallelMlp, Rotary, RowParallelConfig,
    RowParallelLinear, VocabParallelEmbedding,
};
use crate::tensor::shard::{offsets, split_sizes};
use crate::tensor::Tensor;

/// Positions the rotary table covers when a model is loaded (at most the model's); a cache
/// made longer grows it.
const ROTARY_START: usize = 256;

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
            // Sized by use: the caches grow it (never by the config's maximum, which may be
            // far more than any cache made).
            Some(theta) => Some(Rotary::with_scaling(
                group,
                hd,
                c.max_positions.min(ROTARY_START),
                theta,
                c.rope_scaling,
            )?),
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
            let layers = if llama {
                llama_layers(group, ck, shape, &rotary, l)?
            } else {
                gpt2_layers(group, ck, shape, l)?
            };
            // Each layer behind its norm, added to the residual.
            let steps = layers.into_iter().map(|(norm_name, layer)| {
                let norm = Some(norm(&norm_name)?);
                Ok(Step { norm, layer })
            });
            blocks.push(Block {
                steps: steps.collect::<Result<_>>()?,
            });
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
        // Every GEMM weight and the embeddings keep the checkpoint's type; norms, biases
        // and GPT-2's learned positions are read as f32.
        let head = ParallelLmHead::from_rows(group, c.vocab_size, h, |r| ck.rows(head_name, r))?;
        // Each model loaded is another: caches check which made them.
        static MODELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Transformer {
            id: MODELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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

/// GPT-2's MLP of block `p`: `c_fc` (Conv1D `[hidden, inner]`) column-parallel and `c_proj`
/// (`[inner, hidden]`) row-parallel, each rank reading its columns and rows in the file's
/// type; the biases f32.
fn gpt2_mlp(
    group: &Group,
    ck: &Checkpoint,
    p: &str,
    inner: usize,
    act: Activation,
) -> Result<ParallelMlp> {
    let h = ck.config().hidden_size;
    let sizes = split_sizes(inner, group.world_size())?;
    let starts = offsets(&sizes);
    let (fc_w, pr_w) = (
        format!("{p}.mlp.c_fc.weight"),
        format!("{p}.mlp.c_proj.weight"),
    );
    let fc_b = ck.f32(&format!("{p}.mlp.c_fc.bias"))?;
    let (mut w1, mut b1, mut w2, mut b2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pr_b = ck.f32(&format!("{p}.mlp.c_proj.bias"))?;
    for (rank, r) in group.ranks().iter().zip(group.local_range()) {
        let part = starts[r]..starts[r] + sizes[r];
        w1.push(ck.cols(&fc_w, part.clone())?.upload(rank, [h, sizes[r]])?);
        b1.push(Tensor::from_host(rank, &fc_b[part.clone()], [1, sizes[r]])?);
        w2.push(ck.rows(&pr_w, part)?.upload(rank, [sizes[r], h])?);
        b2.push(Tensor::from_host(rank, &pr_b, [1, h])?);
    }
    let layout = WeightLayout::InOut;
    let cfg1 = ColumnParallelConfig::default()
        .gather_output(false)
        .activation(act);
    let fc1 = ColumnParallelLinear::from_shards(group, w1, Some(b1), layout, cfg1)?;
    let cfg2 = RowParallelConfig::default().input_is_parallel(true);
    let fc2 = RowParallelLinear::from_shards(group, w2, Some(b2), layout, cfg2)?;
    ParallelMlp::from_layers(fc1, fc2)
}

/// A block's layers, each with the name of the norm before it.
type Layers = [(String, Arc<dyn Layer>); 2];

/// Llama block `l`: attention (rotary, grouped-query, no biases) and the gated MLP.
fn llama_layers(
    group: &Group,
    ck: &Checkpoint,
    shape: AttentionShape,
    rotary: &Option<Rotary>,
    l: usize,
) -> Result<Layers> {
    let c = ck.config();
    let (h, hd) = (c.hidden_size, c.head_dim);
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
    Ok([
        (format!("{p}.input_layernorm"), Arc::new(attention)),
        (format!("{p}.post_attention_layernorm"), Arc::new(mlp)),
    ])
}

/// GPT-2 block `l`: attention (fused query/key/value, biases, no rotary) and the plain MLP.
fn gpt2_layers(group: &Group, ck: &Checkpoint, shape: AttentionShape, l: usize) -> Result<Layers> {
    let c = ck.config();
    let (h, hd) = (c.hidden_size, c.head_dim);
    let p = format!("h.{l}");
    let c_attn = format!("{p}.attn.c_attn.weight");
    let qkv_b = ck.f32(&format!("{p}.attn.c_attn.bias"))?;
    let attention = ParallelAttention::new(
        group,
        shape,
        WeightLayout::InOut,
        None,
        |q, _| {
            // Fused [hidden, 3 hidden] (Conv1D): q, k, v column blocks, each split by
            // head, read from the file in its type.
            let block = |i: usize| q.start * hd + i * h..q.end * hd + i * h;
            Ok(HeadWeights {
                q: ck.cols(&c_attn, block(0))?,
                k: ck.cols(&c_attn, block(1))?,
                v: ck.cols(&c_attn, block(2))?,
                bias: Some([0, 1, 2].map(|i| qkv_b[block(i)].to_vec())),
            })
        },
        |rows| ck.rows(&format!("{p}.attn.c_proj.weight"), rows),
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
    let mlp = gpt2_mlp(group, ck, &p, c.intermediate_size, act)?;
    Ok([
        (format!("{p}.ln_1"), Arc::new(attention)),
        (format!("{p}.ln_2"), Arc::new(mlp)),
    ])
}
