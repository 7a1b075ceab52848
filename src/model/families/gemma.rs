//! Gemma 2 (`model_type` gemma2) and Gemma 3's text model (`gemma3_text`): RMSNorms
//! multiplying by `1 + weight`, before and after attention and MLP; embeddings times
//! `sqrt(hidden)`; GeGLU (`hidden_activation` gelu_pytorch_tanh); attention scaled by
//! `query_pre_attn_scalar ** -0.5`; layers alternating sliding-window and full attention
//! (`layer_types`, else Gemma 2's every other layer, Gemma 3's `sliding_window_pattern`);
//! tied head. Gemma 2 caps attention and final logits (`attn_logit_softcapping`,
//! `final_logit_softcapping`); Gemma 3 norms each query and key head and gives its
//! sliding layers their own rotary base (`rope_local_base_freq`, or 5.x's
//! `rope_parameters` per layer type).

use serde::Deserialize;
use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::load::checkpoint_error;
use crate::model::config::{float_field, rotary};
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig, SlidingLayers};

/// Gemma's own keys.
#[derive(Debug, Deserialize)]
struct Keys {
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    sliding_window_pattern_5: Option<usize>,
    rope_local_base_freq: Option<f64>,
    use_bidirectional_attention: Option<bool>,
}

/// The rotary blocks of 5.x's `rope_parameters` nested by layer type, each read as a
/// config of its own would be.
fn nested_rotary(v: &Value, kind: &str) -> Result<Option<(f64, crate::nn::RopeScaling)>> {
    let Some(block) = v.get("rope_parameters").and_then(|p| p.get(kind)) else {
        return Ok(None);
    };
    let mut alone = serde_json::Map::new();
    alone.insert("rope_parameters".into(), block.clone());
    for key in [
        "max_position_embeddings",
        "original_max_position_embeddings",
    ] {
        if let Some(x) = v.get(key) {
            alone.insert(key.into(), x.clone());
        }
    }
    rotary(&Value::Object(alone))
        .map(Some)
        .map_err(|e| match e {
            crate::Error::Checkpoint { what, message } => crate::Error::Checkpoint {
                what,
                message: format!("rope_parameters.{kind}: {message}"),
            },
            other => other,
        })
}

pub(super) fn read(v: &Value, architecture: Architecture) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let k: Keys = decode(v)?;
    if k.use_bidirectional_attention == Some(true) {
        return Err(checkpoint_error(
            "config.json",
            "use_bidirectional_attention: attention is causal here",
        ));
    }
    let gemma3 = architecture == Architecture::Gemma3;
    // 5.x Gemma 3: `rope_parameters` per layer type; else one block (or 4.x's keys).
    let nested = v
        .get("rope_parameters")
        .is_some_and(|p| p.get("full_attention").is_some());
    let (full, local) = if nested {
        let full = nested_rotary(v, "full_attention")?;
        let local = nested_rotary(v, "sliding_attention")?;
        let full = full.ok_or_else(|| {
            checkpoint_error("config.json", "rope_parameters.full_attention is missing")
        })?;
        (Some(full), local)
    } else {
        let local = match k.rope_local_base_freq {
            Some(theta) if gemma3 => Some((theta, crate::nn::RopeScaling::None)),
            // Gemma 3's default local base.
            None if gemma3 => Some((10_000.0, crate::nn::RopeScaling::None)),
            _ => None,
        };
        (None, local)
    };
    let mut config = if nested {
        // `Decoder::config` reads the flat rotary keys; the full layers' block is put
        // in their place.
        let mut flat = v.clone();
        if let (Some(top), Some((theta, _))) = (flat.as_object_mut(), &full) {
            top.remove("rope_parameters");
            top.remove("rope_scaling");
            top.insert("rope_theta".into(), (*theta).into());
        }
        let mut c = d.config(&flat, architecture)?;
        if let Some((theta, scaling)) = full {
            (c.rope_theta, c.rope_scaling) = (Some(theta), scaling);
        }
        c
    } else {
        d.config(v, architecture)?
    };
    config.local_rope = local;
    config.tie_word_embeddings = d.tie_word_embeddings.unwrap_or(true);
    config.norm_eps = float_field(v, "rms_norm_eps")?.unwrap_or(1e-6);
    config.activation = k
        .hidden_activation
        .or(k.hidden_act)
        .unwrap_or_else(|| "gelu_pytorch_tanh".into());
    config.query_pre_attn_scalar = Some(k.query_pre_attn_scalar.unwrap_or(256.0));
    config.attn_logit_softcapping = k.attn_logit_softcapping;
    config.final_logit_softcapping = k.final_logit_softcapping;
    // Gemma 2 (4.x): even layers slide; Gemma 3 (4.x): all but every
    // `sliding_window_pattern`-th (6 by default).
    let pattern = if gemma3 {
        k.sliding_window_pattern
            .or(k.sliding_window_pattern_5)
            .unwrap_or(6)
    } else {
        2
    };
    let config = d.with_window(
        config,
        d.sliding_window,
        SlidingLayers::AllButEvery(pattern),
    )?;
    let mut recipe = Decoder::recipe(&config, false, gemma3);
    recipe.embed_scale = true;
    recipe.norm.plus_one = true;
    recipe.attention.post_norm = Some("post_attention_layernorm".into());
    recipe.mlp.norm = "pre_feedforward_layernorm".into();
    recipe.mlp.post_norm = Some("post_feedforward_layernorm".into());
    Ok((config, recipe))
}
