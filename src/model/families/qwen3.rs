//! Qwen3 (`model_type` qwen3): Llama's layers with an RMSNorm over each query and key
//! head before rotary (`q_norm`, `k_norm`, weights `[head_dim]`), `head_dim` set by the
//! config (its heads may total more or less than the hidden size), optional
//! `attention_bias` on q, k, v and o.

use serde::Deserialize;
use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig, SlidingLayers};

/// Qwen3's own keys.
#[derive(Debug, Deserialize)]
struct Keys {
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
}

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let keys: Keys = decode(v)?;
    Decoder::refuse(
        d.attention_bias,
        "attention_bias",
        "biases on the attention projections",
    )?;
    let config = d.config(v, Architecture::Qwen3)?;
    // The window only with `use_sliding_window`, in the layers from `max_window_layers`
    // (28 by default) on, or those `layer_types` lists.
    let window = d
        .sliding_window
        .filter(|_| keys.use_sliding_window == Some(true));
    let first = keys.max_window_layers.unwrap_or(28);
    let config = d.with_window(config, window, SlidingLayers::From(first))?;
    let recipe = Decoder::recipe(&config, false, true);
    Ok((config, recipe))
}
