//! `Transformer::from_checkpoint`: any family's recipe (src/model/families) built layer by
//! layer, each rank reading only its shards.

use std::sync::Arc;

use super::recipe::{Mlp, Qkv, Recipe};
use super::weights::{unpermute_heads, Source, Weights};
use super::{families, Block, ModelConfig, Step, Transformer};
use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::kernels::settings::{Activation, WeightLayout};
use crate::load::{Checkpoint, Gguf};
use crate::nn::{
    AttentionOptions, AttentionShape, ColumnParallelConfig, ColumnParallelLinear, GatedActivation,
    GatedMlp, HeadWeights, HostWeights, Layer, Norm, ParallelAttention, ParallelLmHead,
    ParallelMlp, QkNorm, Rotary, RowParallelConfig, RowParallelLinear, VocabParallelEmbedding,
};
use crate::tensor::shard::{offsets, split_in_units};
use crate::tensor::Tensor;

/// Positions the rotary table covers when a model is loaded (at most the model's); a cache
/// made longer grows it.
const ROTARY_START: usize = 256;

/// What building a model needs at every layer.
struct Build<'a> {
    group: &'a Group,
    c: &'a ModelConfig,
    recipe: &'a Recipe,
    rotary: Option<Rotary>,
    /// The sliding layers' table, when their rotary differs (Gemma 3).
    local_rotary: Option<Rotary>,
}

impl Transformer {
    /// Loads `checkpoint` onto `group` by its family's recipe: every rank uploads only its
    /// shards (vocabulary rows, heads, intermediate features) and the replicated norms.
    /// Every GEMM weight and the embeddings keep the checkpoint's type; norms, biases and
    /// learned positions are read as f32.
    ///
    /// # Errors
    /// As [`ModelConfig::read`]; [`Error::InvalidArgument`] when tp exceeds the heads,
    /// the vocabulary or the intermediate size, or for an activation the library lacks;
    /// allocation errors.
    pub fn from_checkpoint(group: &Group, checkpoint: &Checkpoint) -> Result<Self> {
        let (c, recipe) = families::read(checkpoint)?;
        Self::build(group, Source::Safetensors(checkpoint), c, recipe)
    }

    /// Loads the model in the GGUF file `gguf` onto `group`: its config from the file's
    /// metadata (`general.architecture` llama, qwen2, qwen3, phi3, gemma2, gemma3 or
    /// gpt2, and its `{arch}.*` keys), its tensors by llama.cpp's names. Every GEMM weight
    /// and the embeddings keep the file's type, quantized blocks included (Q8_0, Q4_0,
    /// Q4_1, Q5_0, Q4_K, Q5_K, Q6_K), read in the kernels; norms and biases are read as
    /// f32. A projection whose inputs are split (the attention output's, the MLP's down
    /// projection) is cut only at whole blocks of its type: the heads in the fewest
    /// whole heads making whole blocks, the intermediate features in whole blocks.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the key or tensor: an architecture the loader does
    /// not know, a missing or malformed key, a feature it does not run (mixtures of
    /// experts, other rotary scalings), a missing tensor, a shape contradicting the
    /// metadata, a tensor type the kernels do not decode (Q5_1, Q2_K, Q3_K);
    /// [`Error::InvalidArgument`] when tp exceeds the heads, the vocabulary, or the
    /// whole blocks of a split; allocation errors.
    pub fn from_gguf(group: &Group, gguf: &Gguf) -> Result<Self> {
        let (c, recipe) = families::read_gguf(gguf)?;
        Self::build(group, Source::Gguf(gguf), c, recipe)
    }

    /// Builds the model `c` by `recipe` from `source`.
    fn build(group: &Group, source: Source<'_>, c: ModelConfig, recipe: Recipe) -> Result<Self> {
        let root = Weights::new(source, &recipe.prefix);
        let h = c.hidden_size;
        let rotary = match c.rope_theta {
            // Sized by use: the caches grow it (never by the config's maximum, which may be
            // far more than any cache made).
            Some(theta) => Some(Rotary::with_scaling(
                group,
                c.head_dim,
                c.max_positions.min(ROTARY_START),
                theta,
                c.rope_scaling.clone(),
            )?),
            None => None,
        };
        let local_rotary = match &c.local_rope {
            Some((theta, scaling)) => Some(Rotary::with_scaling(
                group,
                c.head_dim,
                c.max_positions.min(ROTARY_START),
                *theta,
                scaling.clone(),
            )?),
            None => None,
        };
        let b = Build {
            group,
            c: &c,
            recipe: &recipe,
            rotary,
            local_rotary,
        };
        let embed = root.pp(&recipe.embed);
        let embedding =
            VocabParallelEmbedding::from_rows(group, c.vocab_size, h, |r| embed.rows("weight", r))?;
        let positions = match &recipe.positions {
            Some(name) => {
                let wpe = root.pp(name).f32("weight")?;
                Some(DistTensor::replicate(group, &wpe, [c.max_positions, h])?)
            }
            None => None,
        };
        let mut blocks = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let w = root.pp(&recipe.blocks).pp(l);
            let a = &recipe.attention;
            let attention: Arc<dyn Layer> = Arc::new(b.attention(&w, l)?);
            let mlp = b.mlp(&w)?;
            // Each layer behind its norm, added to the residual.
            let post = |name: &Option<String>| name.as_ref().map(|n| b.norm(&w.pp(n))).transpose();
            let steps = vec![
                Step {
                    norm: Some(b.norm(&w.pp(&a.norm))?),
                    layer: attention,
                    post_norm: post(&a.post_norm)?,
                },
                Step {
                    norm: Some(b.norm(&w.pp(&recipe.mlp.norm))?),
                    layer: mlp,
                    post_norm: post(&recipe.mlp.post_norm)?,
                },
            ];
            blocks.push(Block { steps });
            // Let each device finish the block's uploads and free their staging copies
            // before the next block's: loading holds one block's host copies at a time.
            // (Not on wasm32, where nothing may block: the browser returns the staging
            // buffers once the page's event loop runs again.)
            #[cfg(not(target_arch = "wasm32"))]
            group.wait_idle()?;
        }
        let norm = b.norm(&root.pp(&recipe.final_norm))?;
        let head = root.pp(recipe.head.as_ref().unwrap_or(&recipe.embed));
        let mut head =
            ParallelLmHead::from_rows(group, c.vocab_size, h, |r| head.rows("weight", r))?;
        if let Some(cap) = c.final_logit_softcapping {
            // A Python float times an f32 tensor: the cap rounds to f32.
            head = head.with_softcap(cap as f32)?;
        }
        // Each model loaded is another: caches check which made them.
        static MODELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(Transformer {
            id: MODELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config: c,
            group: group.clone(),
            embedding,
            // sqrt(hidden) in f64 rounded to f32, as transformers' `hidden_size**0.5`
            // becomes an f32 tensor.
            embed_scale: recipe.embed_scale.then(|| (h as f64).sqrt() as f32),
            positions,
            blocks,
            norm,
            head,
            tied: recipe.head.is_none(),
            recipe: recipe.clone(),
        })
    }
}

impl Build<'_> {
    /// The norm `w` (`weight`, and `bias` when the recipe's norms have one; `1 +
    /// weight`, summed in f32 here as transformers sums it, for Gemma's).
    fn norm(&self, w: &Weights) -> Result<Norm> {
        let n = self.recipe.norm;
        let bias = if n.bias { Some(w.f32("bias")?) } else { None };
        let eps = self.c.norm_eps as f32;
        let weight = self.norm_weight(w)?;
        Norm::new(self.group, n.kind, &weight, bias.as_deref(), eps)
    }

    /// Norm `w`'s weight in f32, plus one for Gemma's.
    fn norm_weight(&self, w: &Weights) -> Result<Vec<f32>> {
        let mut weight = w.f32("weight")?;
        if self.recipe.norm.plus_one {
            weight.iter_mut().for_each(|x| *x += 1.0);
        }
        Ok(weight)
    }

    /// Block `w`'s (layer `layer`'s) attention: each rank reads its query heads' and
    /// key/value heads' rows (columns, for `[in, out]` weights) of the projections,
    /// separate or fused; the layer's window, scale, cap and query/key norms.
    fn attention(&self, w: &Weights, layer: usize) -> Result<ParallelAttention> {
        let (c, a, layout) = (self.c, &self.recipe.attention, self.recipe.layout);
        let hd = c.head_dim;
        let o = w.pp(&a.o);
        // The o projection's inputs split at whole blocks of its type (1 for dense).
        let o_block = match layout {
            WeightLayout::OutIn => o.dtype("weight")?.block_values(),
            WeightLayout::InOut => 1,
        };
        let shape = AttentionShape {
            hidden: c.hidden_size,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
            o_block,
        };
        // The output features of the q, k, v projections: each its module and the offset
        // of its first feature (0, or its block's in a fused module).
        let (q_all, kv_all) = (c.num_heads * hd, c.num_kv_heads * hd);
        let parts: [(String, usize); 3] = match &a.qkv {
            Qkv::Separate(names) => names.clone().map(|n| (n, 0)),
            Qkv::Fused(n) => [
                (n.clone(), 0),
                (n.clone(), q_all),
                (n.clone(), q_all + kv_all),
            ],
        };
        // q, k and v are joined into one weight per rank. `[out, in]` parts the file stores
        // in different types (llama.cpp's mixed quantizations give v more bits) stay in
        // their types, as row blocks of one tensor (HostWeights::Rows). `[in, out]` ones
        // (side by side) cannot: they are decoded to f32 on the host, as the kernels
        // decode them.
        let types = parts
            .iter()
            .map(|(n, _)| w.pp(n).dtype("weight"))
            .collect::<Result<Vec<_>>>()?;
        let widen = layout == WeightLayout::InOut && types.iter().any(|t| *t != types[0]);
        let features = |i: usize, heads: std::ops::Range<usize>| {
            let (name, at) = &parts[i];
            let range = at + heads.start * hd..at + heads.end * hd;
            let m = w.pp(name);
            let mut weights = match layout {
                WeightLayout::OutIn => m.rows("weight", range.clone())?,
                WeightLayout::InOut => m.cols("weight", range.clone())?,
            };
            // The query's and key's rows as the model orders them (GGUF llama files).
            if self.recipe.permuted_qk && i < 2 {
                weights = unpermute_heads(weights, range.len(), hd);
            }
            if widen {
                weights = HostWeights::F32(weights.to_f32());
            }
            let bias = if a.qkv_bias {
                Some(m.f32("bias")?[range].to_vec())
            } else {
                None
            };
            Ok::<_, Error>((weights, bias))
        };
        let o_bias = if a.o_bias { Some(o.f32("bias")?) } else { None };
        let window = c.window(layer);
        let rotary = match (&self.local_rotary, window) {
            (Some(local), Some(_)) => Some(local.clone()),
            _ => self.rotary.clone(),
        };
        let qk_norm = match &a.qk_norm {
            Some([q, k]) => Some(QkNorm {
                q: self.norm_weight(&w.pp(q))?,
                k: self.norm_weight(&w.pp(k))?,
                eps: c.norm_eps as f32,
            }),
            None => None,
        };
        let options = AttentionOptions {
            window,
            // transformers: an f32 tensor times a Python float, which rounds to f32.
            scale: c.query_pre_attn_scalar.map(|s| s.powf(-0.5) as f32),
            softcap: c.attn_logit_softcapping.map(|cap| cap as f32),
            qk_norm,
        };
        ParallelAttention::new(
            self.group,
            shape,
            layout,
            rotary,
            |q, kv| {
                let (q, bq) = features(0, q)?;
                let (k, bk) = features(1, kv.clone())?;
                let (v, bv) = features(2, kv)?;
                let bias = match (bq, bk, bv) {
                    (Some(q), Some(k), Some(v)) => Some([q, k, v]),
                    _ => None,
                };
                Ok(HeadWeights { q, k, v, bias })
            },
            |inputs| match layout {
                WeightLayout::OutIn => o.cols("weight", inputs),
                WeightLayout::InOut => o.rows("weight", inputs),
            },
            o_bias.as_deref(),
        )?
        .with_options(options)
    }

    /// Block `w`'s MLP.
    fn mlp(&self, w: &Weights) -> Result<Arc<dyn Layer>> {
        let (c, m) = (self.c, &self.recipe.mlp);
        let op = "transformer.from_checkpoint";
        match &m.kind {
            Mlp::Gated { gate, up, down } => {
                self.gated_mlp((w.pp(gate), 0), (w.pp(up), 0), &w.pp(down))
            }
            // The up half of a fused module starts at row `inner`.
            Mlp::GatedFused { gate_up, down } => self.gated_mlp(
                (w.pp(gate_up), 0),
                (w.pp(gate_up), c.intermediate_size),
                &w.pp(down),
            ),
            Mlp::Plain { fc, proj } => {
                let act = match c.activation.as_str() {
                    "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
                    "gelu" => Activation::GeluErf,
                    "relu" => Activation::Relu,
                    other => {
                        return Err(Error::invalid(
                            op,
                            format!("activation {other:?} is not one the library runs"),
                        ))
                    }
                };
                Ok(Arc::new(self.plain_mlp(&w.pp(fc), &w.pp(proj), act)?))
            }
        }
    }

    /// A gated MLP whose gate and up projections are the rows of `gate.0` and `up.0`
    /// from `gate.1` and `up.1` on, and whose down projection is `down`.
    fn gated_mlp(
        &self,
        gate: (Weights, usize),
        up: (Weights, usize),
        down: &Weights,
    ) -> Result<Arc<dyn Layer>> {
        let (c, op) = (self.c, "transformer.from_checkpoint");
        if self.recipe.mlp.bias || self.recipe.layout != WeightLayout::OutIn {
            return Err(Error::invalid(
                op,
                "the gated MLP takes nn.Linear weights without biases",
            ));
        }
        let activation = GatedActivation::from_name(&c.activation)?;
        // Gate and up are joined into one weight per rank; stored in different types,
        // they stay so, as row blocks of one tensor (HostWeights::Rows).
        let rows = |(m, at): &(Weights, usize), r: std::ops::Range<usize>| {
            m.rows("weight", at + r.start..at + r.end)
        };
        // The down projection's inputs split at whole blocks of its type.
        let block = down.dtype("weight")?.block_values();
        let mlp = GatedMlp::new_in_blocks(
            self.group,
            c.hidden_size,
            c.intermediate_size,
            block,
            |r| rows(&gate, r),
            |r| rows(&up, r),
            |cols| down.cols("weight", cols),
        )?
        .with_activation(activation);
        Ok(Arc::new(mlp))
    }

    /// A plain MLP: `fc` column-parallel and `proj` row-parallel, each rank reading its
    /// features of both in the file's type; the biases (if any) f32.
    fn plain_mlp(&self, fc: &Weights, proj: &Weights, act: Activation) -> Result<ParallelMlp> {
        let (group, h, layout) = (self.group, self.c.hidden_size, self.recipe.layout);
        let inner = self.c.intermediate_size;
        // `proj`'s inputs split at whole blocks of its type (`[out, in]` weights).
        let block = match layout {
            WeightLayout::OutIn => proj.dtype("weight")?.block_values(),
            WeightLayout::InOut => 1,
        };
        let sizes = split_in_units(inner, group.world_size(), block)
            .map_err(|e| e.with_op("transformer.from_checkpoint"))?;
        let starts = offsets(&sizes);
        let bias = self.recipe.mlp.bias;
        let (fc_b, pr_b) = if bias {
            (Some(fc.f32("bias")?), Some(proj.f32("bias")?))
        } else {
            (None, None)
        };
        let (mut w1, mut b1, mut w2, mut b2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (rank, r) in group.ranks().iter().zip(group.local_range()) {
            let part = starts[r]..starts[r] + sizes[r];
            let (a, b) = match layout {
                WeightLayout::InOut => (
                    fc.cols("weight", part.clone())?,
                    proj.rows("weight", part.clone())?,
                ),
                WeightLayout::OutIn => (
                    fc.rows("weight", part.clone())?,
                    proj.cols("weight", part.clone())?,
                ),
            };
            w1.push(a.upload(rank, layout.stored_shape(h, sizes[r]))?);
            w2.push(b.upload(rank, layout.stored_shape(sizes[r], h))?);
            if let (Some(fb), Some(pb)) = (&fc_b, &pr_b) {
                b1.push(Tensor::from_host(rank, &fb[part], [1, sizes[r]])?);
                b2.push(Tensor::from_host(rank, pb, [1, h])?);
            }
        }
        let cfg1 = ColumnParallelConfig::default()
            .gather_output(false)
            .activation(act);
        let fc1 = ColumnParallelLinear::from_shards(group, w1, bias.then_some(b1), layout, cfg1)?;
        let cfg2 = RowParallelConfig::default().input_is_parallel(true);
        let fc2 = RowParallelLinear::from_shards(group, w2, bias.then_some(b2), layout, cfg2)?;
        ParallelMlp::from_layers(fc1, fc2)
    }
}
