//! Models in GGUF files (llama.cpp's format): the config from the file's metadata
//! (`general.architecture` and its `{arch}.*` keys, as llama.cpp's
//! `convert_hf_to_gguf.py` writes them and `llama-model.cpp` reads them) and a recipe of
//! llama.cpp's tensor names (`token_embd`, `blk.N.attn_q`, ..., `output_norm`,
//! `output`), for the architectures of the families here: `llama` (Llama and Mistral
//! files), `qwen2`, `qwen3`, `phi3`, `gemma2`, `gemma3` and `gpt2`.
//!
//! What the converter did to the weights is undone or followed so the model equals the
//! Hugging Face one: the llama architecture's query and key rows were permuted per head
//! (read back in order: `Recipe::permuted_qk`); Gemma's norm weights were stored as
//! `w + 1` (used as they are); GPT-2's Conv1D weights were transposed to `[out, in]`
//! and its tied head written out as `output`. What llama.cpp fixes rather than reads is
//! fixed alike: Gemma's attention scale is `key_length ** -0.5` (the 27B models':
//! `(hidden / heads) ** -0.5`), Gemma 2's layers alternate sliding and full attention
//! (window 4096, caps 50 and 30 unless the file says), Gemma 3's slide but every sixth
//! and its sliding layers turn at base 10000 unscaled; the llama architecture (Mistral
//! files included) and Qwen have no window.
//!
//! Where llama.cpp and transformers differ the model follows transformers, as for
//! safetensors checkpoints: Phi-3's LongRoPE takes its long factors for a forward that
//! runs past the original length (llama.cpp picks by the context size). Rotary scalings
//! other than linear, Llama 3's (`rope_freqs`) and LongRoPE (yarn, ...) are refused.

use super::check_files;
use crate::error::Result;
use crate::kernels::settings::WeightLayout;
use crate::load::{checkpoint_error, Gguf, MetaValue};
use crate::model::recipe::{AttentionRecipe, Mlp, MlpRecipe, NormRecipe, Qkv, Recipe};
use crate::model::weights::Source;
use crate::model::{Architecture, ModelConfig, SlidingLayers};
use crate::nn::{NormKind, RopeScaling};

/// The architectures read, as `general.architecture` names them.
const KNOWN: &str = "llama, qwen2, qwen3, phi3, gemma2, gemma3, gpt2";

/// Reads `{arch}.*` keys of one file, each error naming its key.
struct Meta<'a> {
    gguf: &'a Gguf,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, leaf: &str) -> String {
        format!("{}.{leaf}", self.arch)
    }

    fn value(&self, leaf: &str) -> Option<&MetaValue> {
        self.gguf.get(&self.key(leaf))
    }

    /// `{arch}.{leaf}` as a count, none when absent.
    fn count(&self, leaf: &str) -> Result<Option<usize>> {
        match self.value(leaf) {
            None => Ok(None),
            Some(v) => v.as_count().map(Some).ok_or_else(|| {
                checkpoint_error(
                    self.key(leaf),
                    format!("is {v:?}, not a count (one for every layer is not supported)"),
                )
            }),
        }
    }

    /// `{arch}.{leaf}` as a count, which must be there and positive.
    fn need(&self, leaf: &str) -> Result<usize> {
        match self.count(leaf)? {
            Some(0) => Err(checkpoint_error(self.key(leaf), "is 0")),
            Some(n) => Ok(n),
            None => Err(checkpoint_error(
                self.key(leaf),
                "is missing from the file's metadata",
            )),
        }
    }

    /// `{arch}.{leaf}` as a number, none when absent.
    fn number(&self, leaf: &str) -> Result<Option<f64>> {
        match self.value(leaf) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(checkpoint_error(
                    self.key(leaf),
                    format!("is {v:?}, not a finite number"),
                )),
            },
        }
    }

    /// `{arch}.{leaf}` as a string, none when absent.
    fn string(&self, leaf: &str) -> Result<Option<&str>> {
        match self.value(leaf) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| checkpoint_error(self.key(leaf), format!("is {v:?}, not a string"))),
        }
    }
}

/// The config and recipe of the model in `gguf`, after checking that the file holds
/// every tensor the recipe needs, with the shape the metadata implies and a type the
/// loader reads.
pub(crate) fn read(gguf: &Gguf) -> Result<(ModelConfig, Recipe)> {
    let arch_key = "general.architecture";
    let arch = match gguf.get(arch_key) {
        Some(v) => v.as_str().ok_or_else(|| {
            checkpoint_error(arch_key, format!("is {v:?}, not an architecture name"))
        })?,
        None => {
            return Err(checkpoint_error(
                arch_key,
                "is missing from the file's metadata",
            ))
        }
    };
    let architecture = match arch {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        "phi3" => Architecture::Phi3,
        "gemma2" => Architecture::Gemma2,
        "gemma3" => Architecture::Gemma3,
        "gpt2" => Architecture::Gpt2,
        other => {
            return Err(checkpoint_error(
                arch_key,
                format!("{other:?} is not an architecture the loader knows ({KNOWN})"),
            ))
        }
    };
    let m = Meta { gguf, arch };
    // Mixtures of experts (llama files of Mixtral) are not run here.
    if let Some(n) = m.count("expert_count")? {
        if n > 0 {
            return Err(checkpoint_error(
                m.key("expert_count"),
                format!("{n}: mixtures of experts are not supported"),
            ));
        }
    }
    let hidden = m.need("embedding_length")?;
    let heads = m.need("attention.head_count")?;
    let kv_heads = match m.count("attention.head_count_kv")? {
        Some(0) => return Err(checkpoint_error(m.key("attention.head_count_kv"), "is 0")),
        Some(n) => n,
        None => heads,
    };
    let head_dim = match m.count("attention.key_length")? {
        Some(0) => return Err(checkpoint_error(m.key("attention.key_length"), "is 0")),
        Some(n) => n,
        None => hidden / heads,
    };
    if let Some(v) = m.count("attention.value_length")? {
        if v != head_dim {
            return Err(checkpoint_error(
                m.key("attention.value_length"),
                format!("{v}: value heads of another size than the keys' {head_dim}"),
            ));
        }
    }
    if let Some(d) = m.count("rope.dimension_count")? {
        if architecture != Architecture::Gpt2 && d != head_dim {
            return Err(checkpoint_error(
                m.key("rope.dimension_count"),
                format!("{d}: rotary over part of the {head_dim} head dimensions is not supported"),
            ));
        }
    }
    // The vocabulary is the embedding table's rows (the token list may be longer, or
    // absent).
    let vocab = match gguf.shape("token_embd.weight")?[..] {
        [rows, _] => rows,
        ref other => {
            return Err(checkpoint_error(
                "token_embd.weight",
                format!("has shape {other:?}, not [vocab, hidden]"),
            ))
        }
    };
    let gpt2 = architecture == Architecture::Gpt2;
    let eps_key = if gpt2 {
        "attention.layer_norm_epsilon"
    } else {
        "attention.layer_norm_rms_epsilon"
    };
    let norm_eps = m
        .number(eps_key)?
        .ok_or_else(|| checkpoint_error(m.key(eps_key), "is missing from the file's metadata"))?;
    let gemma = matches!(architecture, Architecture::Gemma2 | Architecture::Gemma3);
    let rope_theta = (!gpt2).then(|| m.number("rope.freq_base")).transpose()?;
    let rope_theta = rope_theta.map(|t| t.unwrap_or(10_000.0));
    let rope_scaling = if gpt2 {
        RopeScaling::None
    } else {
        rope_scaling(&m, gguf, head_dim)?
    };
    // llama.cpp's windows: Gemma 2's (4096 when the key is absent), Gemma 3's and
    // Phi-3's `attention.sliding_window` (0 is none); its llama, Qwen and GPT-2 layers
    // have none.
    let window = match architecture {
        Architecture::Gemma2 => Some(m.count("attention.sliding_window")?.unwrap_or(4096)),
        Architecture::Gemma3 | Architecture::Phi3 => m.count("attention.sliding_window")?,
        _ => None,
    }
    .filter(|&w| w > 0);
    let layers = m.need("block_count")?;
    let sliding_layers = match architecture {
        Architecture::Gemma2 => SlidingLayers::AllButEvery(2),
        Architecture::Gemma3 => SlidingLayers::AllButEvery(6),
        _ => SlidingLayers::All,
    };
    let head = gguf.contains("output.weight");
    let config = ModelConfig {
        architecture,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: m.need("feed_forward_length")?,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        max_positions: m.need("context_length")?,
        norm_eps,
        rope_theta,
        rope_scaling,
        tie_word_embeddings: !head,
        activation: match architecture {
            Architecture::Gemma2 | Architecture::Gemma3 => "gelu_pytorch_tanh",
            // ggml_gelu is the tanh approximation.
            Architecture::Gpt2 => "gelu_new",
            _ => "silu",
        }
        .into(),
        dtype: None,
        sliding_window: window,
        sliding_layers,
        // Gemma 3's sliding layers: llama.cpp's base 10000, unscaled.
        local_rope: (architecture == Architecture::Gemma3).then_some((10_000.0, RopeScaling::None)),
        // llama.cpp scales Gemma's attention by key_length ** -0.5, but the 27B models'
        // (46 layers of Gemma 2, 62 of Gemma 3) by (hidden / heads) ** -0.5.
        query_pre_attn_scalar: gemma.then(|| {
            let big = match architecture {
                Architecture::Gemma2 => layers == 46,
                _ => layers == 62,
            };
            if big {
                (hidden / heads) as f64
            } else {
                head_dim as f64
            }
        }),
        // Gemma 2's caps (llama.cpp's defaults 50 and 30 when the keys are absent), Gemma
        // 3's optional final cap; 0 is none.
        attn_logit_softcapping: match architecture {
            Architecture::Gemma2 => Some(m.number("attn_logit_softcapping")?.unwrap_or(50.0)),
            _ => None,
        }
        .filter(|&c| c != 0.0),
        final_logit_softcapping: match architecture {
            Architecture::Gemma2 => Some(m.number("final_logit_softcapping")?.unwrap_or(30.0)),
            Architecture::Gemma3 => m.number("final_logit_softcapping")?,
            _ => None,
        }
        .filter(|&c| c != 0.0),
    };
    let recipe = recipe(architecture, head);
    check_files(
        Source::Gguf(gguf),
        "the GGUF metadata",
        &m.key("block_count"),
        &config,
        &recipe,
    )?;
    Ok((config, recipe))
}

/// The rotary scaling the file asks for: `{arch}.rope.scaling.type` none or linear (with
/// `.factor`; yarn is refused), or Phi-3's LongRoPE (the
/// `rope_factors_short` and `rope_factors_long` tensors); a `rope_freqs` tensor (Llama
/// 3's scaling baked into per-frequency divisors) divides each frequency by its factor.
fn rope_scaling(m: &Meta, gguf: &Gguf, head_dim: usize) -> Result<RopeScaling> {
    let half = head_dim / 2;
    let factors = |name: &str| -> Result<Vec<f64>> {
        let v = gguf.f32(name)?;
        if v.len() != half {
            return Err(checkpoint_error(
                name,
                format!(
                    "has {} factors, the heads' {half} frequencies need one each",
                    v.len()
                ),
            ));
        }
        Ok(v.into_iter().map(f64::from).collect())
    };
    if gguf.contains("rope_factors_long.weight") || gguf.contains("rope_factors_short.weight") {
        let original = m
            .count("rope.scaling.original_context_length")?
            .ok_or_else(|| {
                checkpoint_error(
                    m.key("rope.scaling.original_context_length"),
                    "is missing (LongRoPE factors need it)",
                )
            })?;
        let max = m.need("context_length")?;
        let attention_factor = match m.number("rope.scaling.attn_factor")? {
            Some(f) => f,
            // As transformers infers it: sqrt(1 + ln(scale) / ln(original)) for a scale
            // over 1.
            None => {
                let scale = max as f64 / original as f64;
                if scale <= 1.0 {
                    1.0
                } else {
                    (1.0 + scale.ln() / (original as f64).ln()).sqrt()
                }
            }
        };
        return Ok(RopeScaling::LongRope {
            short: factors("rope_factors_short.weight")?,
            long: factors("rope_factors_long.weight")?,
            original_max_positions: original,
            attention_factor,
        });
    }
    if gguf.contains("rope_freqs.weight") {
        let f = factors("rope_freqs.weight")?;
        return Ok(RopeScaling::LongRope {
            short: f.clone(),
            long: f,
            original_max_positions: m.need("context_length")?,
            attention_factor: 1.0,
        });
    }
    let kind = m.string("rope.scaling.type")?.unwrap_or("none");
    let factor = || {
        m.number("rope.scaling.factor")?.ok_or_else(|| {
            checkpoint_error(
                m.key("rope.scaling.factor"),
                format!("is missing (rotary scaling {kind:?} needs it)"),
            )
        })
    };
    let scaling = match kind {
        "none" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        other => {
            return Err(checkpoint_error(
                m.key("rope.scaling.type"),
                format!("{other:?} is not a rotary scaling the loader runs (none, linear)"),
            ))
        }
    };
    if let Some(problem) = scaling.problem() {
        return Err(checkpoint_error(
            m.key("rope.scaling.type"),
            format!("{kind}: {problem}"),
        ));
    }
    Ok(scaling)
}

/// llama.cpp's tensor names for `architecture`; `head` when the file has its own
/// `output` (else the head is `token_embd`).
fn recipe(architecture: Architecture, head: bool) -> Recipe {
    let s = |x: &str| x.to_string();
    let gpt2 = architecture == Architecture::Gpt2;
    let phi3 = architecture == Architecture::Phi3;
    let gemma = matches!(architecture, Architecture::Gemma2 | Architecture::Gemma3);
    let qk_norm = matches!(architecture, Architecture::Qwen3 | Architecture::Gemma3);
    Recipe {
        prefix: String::new(),
        embed: s("token_embd"),
        embed_scale: gemma,
        positions: gpt2.then(|| s("position_embd")),
        blocks: s("blk"),
        final_norm: s("output_norm"),
        head: head.then(|| s("output")),
        norm: NormRecipe {
            kind: if gpt2 { NormKind::Layer } else { NormKind::Rms },
            bias: gpt2,
            // The converter stored Gemma's `1 + w`.
            plus_one: false,
        },
        layout: WeightLayout::OutIn,
        attention: AttentionRecipe {
            norm: s("attn_norm"),
            post_norm: gemma.then(|| s("post_attention_norm")),
            qkv: if gpt2 || phi3 {
                Qkv::Fused(s("attn_qkv"))
            } else {
                Qkv::Separate([s("attn_q"), s("attn_k"), s("attn_v")])
            },
            qkv_bias: gpt2 || architecture == Architecture::Qwen2,
            o: s("attn_output"),
            o_bias: gpt2,
            qk_norm: qk_norm.then(|| [s("attn_q_norm"), s("attn_k_norm")]),
        },
        mlp: MlpRecipe {
            norm: s("ffn_norm"),
            post_norm: gemma.then(|| s("post_ffw_norm")),
            kind: if gpt2 {
                Mlp::Plain {
                    fc: s("ffn_up"),
                    proj: s("ffn_down"),
                }
            } else if phi3 {
                Mlp::GatedFused {
                    gate_up: s("ffn_up"),
                    down: s("ffn_down"),
                }
            } else {
                Mlp::Gated {
                    gate: s("ffn_gate"),
                    up: s("ffn_up"),
                    down: s("ffn_down"),
                }
            },
            bias: gpt2,
        },
        permuted_qk: architecture == Architecture::Llama,
    }
}
