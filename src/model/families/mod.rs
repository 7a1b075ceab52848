//! The model families: one module each, reading its `config.json` keys into a
//! [`ModelConfig`] and naming its tensors and parts in a [`Recipe`]. Adding a family is
//! a module here, a line in [`read`], and its fixtures.
//!
//! Llama-like families share the keys of [`Decoder`] (transformers gives them the same
//! names); each reads what is its own, and refuses what the layers do not implement,
//! naming the key.

mod gemma;
mod gguf;
mod gpt2;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::config::{float_field, positive, rotary};
use super::recipe::{AttentionRecipe, Mlp, MlpRecipe, NormRecipe, Qkv, Recipe};
use super::weights::Source;
use super::{Architecture, ModelConfig, SlidingLayers};
use crate::error::Result;
use crate::kernels::settings::WeightLayout;
use crate::load::{checkpoint_error, Checkpoint};
use crate::nn::NormKind;

pub(super) use gguf::read as read_gguf;

/// `checkpoint`'s config and recipe, by its `model_type`, after checking that it holds
/// every tensor the recipe needs.
pub(super) fn read(checkpoint: &Checkpoint) -> Result<(ModelConfig, Recipe)> {
    let v = checkpoint.config_json();
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    let (config, recipe) = match model_type {
        "llama" => llama::read(v, Architecture::Llama)?,
        "mistral" => llama::read(v, Architecture::Mistral)?,
        "qwen2" => qwen2::read(v)?,
        "qwen3" => qwen3::read(v)?,
        "phi3" => phi3::read(v)?,
        "gemma2" => gemma::read(v, Architecture::Gemma2)?,
        "gemma3_text" => gemma::read(v, Architecture::Gemma3)?,
        "gpt2" => gpt2::read(v, checkpoint)?,
        other => {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "model_type {other:?} is not one the loader knows (llama, mistral, qwen2, \
                     qwen3, phi3, gemma2, gemma3_text, gpt2)"
                ),
            ))
        }
    };
    check_files(
        Source::Safetensors(checkpoint),
        "config.json",
        if config.architecture == Architecture::Gpt2 {
            "n_layer"
        } else {
            "num_hidden_layers"
        },
        &config,
        &recipe,
    )?;
    Ok((config, recipe))
}

/// Checks `config` (read from `what`, whose layer count is `layers_key`) and that
/// `source` holds every tensor `recipe` needs with its shape, in a type the loader reads.
pub(super) fn check_files(
    source: Source<'_>,
    what: &str,
    layers_key: &str,
    config: &ModelConfig,
    recipe: &Recipe,
) -> Result<()> {
    // The checks name config.json's keys; a GGUF file's config is its metadata.
    config.check().map_err(|e| match e {
        crate::Error::Checkpoint {
            what: file,
            message,
        } if file == "config.json" => checkpoint_error(what, message),
        other => other,
    })?;
    // Each block has its tensors: a layer count the files cannot hold is refused before
    // the list of what they must hold is made (it would be as long as the count).
    let per_block = recipe.per_block(config);
    if config.num_layers > source.tensor_count() / per_block.max(1) {
        return Err(checkpoint_error(
            what,
            format!(
                "{layers_key} {} is more layers than the files hold ({} tensors, {per_block} \
                 a layer)",
                config.num_layers,
                source.tensor_count()
            ),
        ));
    }
    for (name, shape) in recipe.tensors(config) {
        source.check(&name, &shape)?;
    }
    Ok(())
}

/// `v` as a `T`, an error naming the key when a value has the wrong type.
fn decode<T: DeserializeOwned>(v: &Value) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        checkpoint_error("config.json", format!("`{path}`: {}", e.into_inner()))
    })
}

/// `key` of a config, which must be there.
fn need<T>(value: Option<T>, key: &str) -> Result<T> {
    value.ok_or_else(|| checkpoint_error("config.json", format!("`{key}` is missing")))
}

/// The dtype the checkpoint was saved in: `dtype` (5.x) or `torch_dtype` (4.x).
fn dtype(v: &Value) -> Option<String> {
    ["dtype", "torch_dtype"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// The keys a Llama-like `config.json` shares (transformers' names for Llama, Mistral,
/// Qwen2 and Qwen3); every one optional here, so that what a family refuses is named
/// before what is missing.
#[derive(Debug, Deserialize)]
struct Decoder {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<usize>,
    /// 5.x: each layer's attention, `full_attention` or `sliding_attention`.
    layer_types: Option<Vec<String>>,
}

impl Decoder {
    /// The common config of family `architecture` (`v` the whole `config.json`).
    fn config(&self, v: &Value, architecture: Architecture) -> Result<ModelConfig> {
        let (rope_theta, rope_scaling) = rotary(v)?;
        let hidden_size = need(self.hidden_size, "hidden_size")?;
        let num_heads = positive(
            "num_attention_heads",
            need(self.num_attention_heads, "num_attention_heads")?,
        )?;
        Ok(ModelConfig {
            architecture,
            vocab_size: need(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(self.intermediate_size, "intermediate_size")?,
            num_layers: need(self.num_hidden_layers, "num_hidden_layers")?,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim: self.head_dim.unwrap_or(hidden_size / num_heads),
            max_positions: need(self.max_position_embeddings, "max_position_embeddings")?,
            norm_eps: float_field(v, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: Some(rope_theta),
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            activation: self.hidden_act.clone().unwrap_or_else(|| "silu".into()),
            dtype: dtype(v),
            sliding_window: None,
            sliding_layers: SlidingLayers::All,
            local_rope: None,
            query_pre_attn_scalar: None,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
        })
    }

    /// The layers 5.x's `layer_types` lists as `sliding_attention`, or `None` without a
    /// list; any other kind is refused, naming it.
    fn listed(&self) -> Result<Option<SlidingLayers>> {
        let Some(kinds) = &self.layer_types else {
            return Ok(None);
        };
        let mut slides = Vec::with_capacity(kinds.len());
        for (l, kind) in kinds.iter().enumerate() {
            slides.push(match kind.as_str() {
                "full_attention" => false,
                "sliding_attention" => true,
                other => {
                    return Err(checkpoint_error(
                        "config.json",
                        format!(
                            "layer_types[{l}] {other:?}: only full_attention and \
                             sliding_attention are supported"
                        ),
                    ))
                }
            });
        }
        Ok(Some(SlidingLayers::Listed(slides)))
    }

    /// `config` with the window in the layers `layers` names (or `layer_types` lists,
    /// when the config has it); without a window, [`SlidingLayers::All`] (no layer
    /// slides).
    fn with_window(
        &self,
        mut config: ModelConfig,
        window: Option<usize>,
        layers: SlidingLayers,
    ) -> Result<ModelConfig> {
        let listed = self.listed()?;
        // Without a window no layer slides, whatever the list says (as transformers).
        config.sliding_layers = match window {
            Some(_) => listed.unwrap_or(layers),
            None => SlidingLayers::All,
        };
        config.sliding_window = window;
        Ok(config)
    }

    /// The config's `sliding_window`: `default` (the family's config class default) when
    /// the key is absent, none when it is null.
    fn window_or(&self, v: &Value, default: Option<usize>) -> Option<usize> {
        match v.get("sliding_window") {
            None => default,
            Some(_) => self.sliding_window,
        }
    }

    /// Refuses `key` set to true: `what` the layers do not implement.
    fn refuse(flag: Option<bool>, key: &str, what: &str) -> Result<()> {
        if flag == Some(true) {
            return Err(checkpoint_error(
                "config.json",
                format!("{key}: {what} are not supported"),
            ));
        }
        Ok(())
    }

    /// The recipe of a Llama-like model: `model.embed_tokens`, `model.layers.N` with
    /// `self_attn.{q,k,v,o}_proj` and `mlp.{gate,up,down}_proj` behind
    /// `input_layernorm` and `post_attention_layernorm`, `model.norm`, and `lm_head`
    /// unless tied; `nn.Linear` weights, RMSNorms without biases.
    fn recipe(config: &ModelConfig, qkv_bias: bool, qk_norm: bool) -> Recipe {
        let s = |x: &str| x.to_string();
        Recipe {
            prefix: String::new(),
            embed: s("model.embed_tokens"),
            embed_scale: false,
            positions: None,
            blocks: s("model.layers"),
            final_norm: s("model.norm"),
            head: (!config.tie_word_embeddings).then(|| s("lm_head")),
            norm: NormRecipe {
                kind: NormKind::Rms,
                bias: false,
                plus_one: false,
            },
            layout: WeightLayout::OutIn,
            attention: AttentionRecipe {
                norm: s("input_layernorm"),
                post_norm: None,
                qkv: Qkv::Separate(["q", "k", "v"].map(|p| format!("self_attn.{p}_proj"))),
                qkv_bias,
                o: s("self_attn.o_proj"),
                o_bias: false,
                qk_norm: qk_norm.then(|| [s("self_attn.q_norm"), s("self_attn.k_norm")]),
            },
            mlp: MlpRecipe {
                norm: s("post_attention_layernorm"),
                post_norm: None,
                kind: Mlp::Gated {
                    gate: s("mlp.gate_proj"),
                    up: s("mlp.up_proj"),
                    down: s("mlp.down_proj"),
                },
                bias: false,
            },
            permuted_qk: false,
        }
    }
}
