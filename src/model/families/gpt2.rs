//! GPT-2 (`model_type` gpt2): LayerNorms with biases, learned positions (`wpe`), the fused
//! query/key/value `attn.c_attn` and every projection a Conv1D (`[in, out]`) with a bias,
//! a GELU MLP, the head tied to `wte`. Files saved from `GPT2LMHeadModel` nest every name
//! under `transformer.`.

use serde::Deserialize;
use serde_json::Value;

use super::{decode, dtype, need};
use crate::error::Result;
use crate::kernels::settings::WeightLayout;
use crate::load::{checkpoint_error, Checkpoint};
use crate::model::config::{float_field, positive};
use crate::model::recipe::{AttentionRecipe, Mlp, MlpRecipe, NormRecipe, Qkv, Recipe};
use crate::model::{Architecture, ModelConfig, SlidingLayers};
use crate::nn::{NormKind, RopeScaling};

/// GPT-2's keys.
#[derive(Debug, Deserialize)]
struct Keys {
    n_embd: Option<usize>,
    n_head: Option<usize>,
    n_inner: Option<usize>,
    n_layer: Option<usize>,
    n_positions: Option<usize>,
    vocab_size: Option<usize>,
    tie_word_embeddings: Option<bool>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    activation_function: Option<String>,
}

pub(super) fn read(v: &Value, checkpoint: &Checkpoint) -> Result<(ModelConfig, Recipe)> {
    let k: Keys = decode(v)?;
    for (key, value, bad, what) in [
        (
            "tie_word_embeddings",
            k.tie_word_embeddings,
            false,
            "an untied GPT-2 head",
        ),
        (
            "scale_attn_weights",
            k.scale_attn_weights,
            false,
            "unscaled attention",
        ),
        (
            "scale_attn_by_inverse_layer_idx",
            k.scale_attn_by_inverse_layer_idx,
            true,
            "attention scaled by layer",
        ),
    ] {
        if value == Some(bad) {
            return Err(checkpoint_error(
                "config.json",
                format!("{key}: {what} is not supported"),
            ));
        }
    }
    let hidden_size = need(k.n_embd, "n_embd")?;
    let num_heads = positive("n_head", need(k.n_head, "n_head")?)?;
    let config = ModelConfig {
        architecture: Architecture::Gpt2,
        vocab_size: need(k.vocab_size, "vocab_size")?,
        hidden_size,
        intermediate_size: k.n_inner.unwrap_or(hidden_size.saturating_mul(4)),
        num_layers: need(k.n_layer, "n_layer")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim: hidden_size / num_heads,
        max_positions: need(k.n_positions, "n_positions")?,
        norm_eps: float_field(v, "layer_norm_epsilon")?.unwrap_or(1e-5),
        rope_theta: None,
        rope_scaling: RopeScaling::None,
        // transformers 4.x configs of GPT-2 often omit it; tied is the default.
        tie_word_embeddings: true,
        activation: k.activation_function.unwrap_or_else(|| "gelu_new".into()),
        dtype: dtype(v),
        sliding_window: None,
        sliding_layers: SlidingLayers::All,
        local_rope: None,
        query_pre_attn_scalar: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
    };
    let s = |x: &str| x.to_string();
    let prefix = if checkpoint.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let recipe = Recipe {
        prefix: s(prefix),
        embed: s("wte"),
        embed_scale: false,
        positions: Some(s("wpe")),
        blocks: s("h"),
        final_norm: s("ln_f"),
        head: None,
        norm: NormRecipe {
            kind: NormKind::Layer,
            bias: true,
            plus_one: false,
        },
        layout: WeightLayout::InOut,
        attention: AttentionRecipe {
            norm: s("ln_1"),
            post_norm: None,
            qkv: Qkv::Fused(s("attn.c_attn")),
            qkv_bias: true,
            o: s("attn.c_proj"),
            o_bias: true,
            qk_norm: None,
        },
        mlp: MlpRecipe {
            norm: s("ln_2"),
            post_norm: None,
            kind: Mlp::Plain {
                fc: s("mlp.c_fc"),
                proj: s("mlp.c_proj"),
            },
            bias: true,
        },
        permuted_qk: false,
    };
    Ok((config, recipe))
}
