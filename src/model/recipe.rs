//! A family's recipe: the names of its tensors as its checkpoints nest them and the parts
//! its blocks are made of. Families (src/model/families) write one from their config; the
//! loader (load.rs) builds any recipe, and lists the tensors it needs with their shapes.

use super::ModelConfig;
use crate::kernels::settings::WeightLayout;
use crate::nn::NormKind;

/// Where a model's tensors are and what its layers are made of. Names are relative to
/// `prefix` (and a block's to `blocks.{layer}`); each names a module, whose tensors are
/// its `weight` and `bias`.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    /// Before every name (`transformer.` for GPT-2 files saved from its LM head model).
    pub(crate) prefix: String,
    /// The token embedding table `[vocab, hidden]`.
    pub(crate) embed: String,
    /// The embeddings are multiplied by `sqrt(hidden)` rounded to f32 (Gemma).
    pub(crate) embed_scale: bool,
    /// Learned positions `[positions, hidden]` (GPT-2); none for rotary models.
    pub(crate) positions: Option<String>,
    /// The blocks' common prefix: block `l` is `{blocks}.{l}`.
    pub(crate) blocks: String,
    /// The norm after the last block.
    pub(crate) final_norm: String,
    /// The LM head `[vocab, hidden]`; none when it is the embedding table (tied).
    pub(crate) head: Option<String>,
    /// Every norm of the model.
    pub(crate) norm: NormRecipe,
    /// How the projections are stored: `OutIn` (`nn.Linear`) or `InOut` (GPT-2's Conv1D).
    pub(crate) layout: WeightLayout,
    pub(crate) attention: AttentionRecipe,
    pub(crate) mlp: MlpRecipe,
    /// The query and key rows are stored as llama.cpp's converter permuted them for the
    /// llama architecture (each head's two halves interleaved): read back in the model's
    /// order (`weights::unpermute_heads`).
    pub(crate) permuted_qk: bool,
}

/// The kind of every norm, whether it has a bias, and whether it multiplies by
/// `1 + weight` (Gemma's RMSNorm, the sum rounded to f32 first as transformers does).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormRecipe {
    pub(crate) kind: NormKind,
    pub(crate) bias: bool,
    pub(crate) plus_one: bool,
}

/// A block's attention step.
#[derive(Debug, Clone)]
pub(crate) struct AttentionRecipe {
    /// The norm before it, and the one after it (Gemma), before the residual add.
    pub(crate) norm: String,
    pub(crate) post_norm: Option<String>,
    pub(crate) qkv: Qkv,
    /// Biases on the query, key and value projections.
    pub(crate) qkv_bias: bool,
    /// The output projection, and whether it has a bias.
    pub(crate) o: String,
    pub(crate) o_bias: bool,
    /// RMSNorms over each query and key head before rotary (weights `[head_dim]`).
    pub(crate) qk_norm: Option<[String; 2]>,
}

/// The query, key and value projections.
#[derive(Debug, Clone)]
pub(crate) enum Qkv {
    /// Three modules: q, k, v.
    Separate([String; 3]),
    /// One module whose outputs are `[q | k | v]` (GPT-2's `c_attn`).
    Fused(String),
}

/// A block's MLP step.
#[derive(Debug, Clone)]
pub(crate) struct MlpRecipe {
    /// The norm before it, and the one after it (Gemma).
    pub(crate) norm: String,
    pub(crate) post_norm: Option<String>,
    pub(crate) kind: Mlp,
    /// Biases on its projections.
    pub(crate) bias: bool,
}

/// The MLP's projections.
#[derive(Debug, Clone)]
pub(crate) enum Mlp {
    /// `down(act(gate(x)) * up(x))`.
    Gated {
        gate: String,
        up: String,
        down: String,
    },
    /// `down(act(gate(x)) * up(x))` with gate and up one module whose outputs are
    /// `[gate | up]` (Phi-3's `gate_up_proj`).
    GatedFused { gate_up: String, down: String },
    /// `proj(act(fc(x)))`.
    Plain { fc: String, proj: String },
}

impl Recipe {
    /// Every tensor the checkpoint must hold, by full name, with its shape as stored.
    pub(crate) fn tensors(&self, c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let stored = |input: usize, output: usize| self.layout.stored_shape(input, output).to_vec();
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let p = &self.prefix;
        let mut module = |name: String, shape: Vec<usize>, bias: Option<usize>| {
            out.push((format!("{name}.weight"), shape));
            if let Some(n) = bias {
                out.push((format!("{name}.bias"), vec![n]));
            }
        };
        let norm_bias = self.norm.bias.then_some(h);
        module(format!("{p}{}", self.embed), vec![v, h], None);
        if let Some(wpe) = &self.positions {
            module(format!("{p}{wpe}"), vec![c.max_positions, h], None);
        }
        let (a, m) = (&self.attention, &self.mlp);
        for l in 0..c.num_layers {
            let b = format!("{p}{}.{l}", self.blocks);
            module(format!("{b}.{}", a.norm), vec![h], norm_bias);
            let qkv_bias = |n: usize| a.qkv_bias.then_some(n);
            match &a.qkv {
                Qkv::Separate([qn, kn, vn]) => {
                    module(format!("{b}.{qn}"), stored(h, q), qkv_bias(q));
                    module(format!("{b}.{kn}"), stored(h, kv), qkv_bias(kv));
                    module(format!("{b}.{vn}"), stored(h, kv), qkv_bias(kv));
                }
                Qkv::Fused(name) => {
                    let n = q + 2 * kv;
                    module(format!("{b}.{name}"), stored(h, n), qkv_bias(n));
                }
            }
            if let Some(n) = &a.post_norm {
                module(format!("{b}.{n}"), vec![h], norm_bias);
            }
            if let Some(names) = &a.qk_norm {
                for n in names {
                    module(format!("{b}.{n}"), vec![c.head_dim], None);
                }
            }
            module(format!("{b}.{}", a.o), stored(q, h), a.o_bias.then_some(h));
            module(format!("{b}.{}", m.norm), vec![h], norm_bias);
            if let Some(n) = &m.post_norm {
                module(format!("{b}.{n}"), vec![h], norm_bias);
            }
            let bias = |n: usize| m.bias.then_some(n);
            match &m.kind {
                Mlp::Gated { gate, up, down } => {
                    module(format!("{b}.{gate}"), stored(h, i), bias(i));
                    module(format!("{b}.{up}"), stored(h, i), bias(i));
                    module(format!("{b}.{down}"), stored(i, h), bias(h));
                }
                Mlp::GatedFused { gate_up, down } => {
                    module(format!("{b}.{gate_up}"), stored(h, 2 * i), bias(2 * i));
                    module(format!("{b}.{down}"), stored(i, h), bias(h));
                }
                Mlp::Plain { fc, proj } => {
                    module(format!("{b}.{fc}"), stored(h, i), bias(i));
                    module(format!("{b}.{proj}"), stored(i, h), bias(h));
                }
            }
        }
        module(format!("{p}{}", self.final_norm), vec![h], norm_bias);
        if let Some(head) = &self.head {
            module(format!("{p}{head}"), vec![v, h], None);
        }
        out
    }

    /// Tensors per block (the check that a config's layer count fits the files).
    pub(crate) fn per_block(&self, c: &ModelConfig) -> usize {
        let one = ModelConfig {
            num_layers: 1,
            ..c.clone()
        };
        let zero = ModelConfig {
            num_layers: 0,
            ..c.clone()
        };
        self.tensors(&one).len() - self.tensors(&zero).len()
    }
}
