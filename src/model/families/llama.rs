//! Llama 1-3 (`model_type` llama) and Mistral (`mistral`): Llama's layers, no biases;
//! any rotary scaling; Mistral's sliding window (`sliding_window`) in every layer (or
//! those `layer_types` lists). Llama has no window: a config giving one shorter than its
//! positions is refused.

use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::load::checkpoint_error;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig, SlidingLayers};

pub(super) fn read(v: &Value, architecture: Architecture) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    Decoder::refuse(
        d.attention_bias,
        "attention_bias",
        "biases on the attention projections",
    )?;
    Decoder::refuse(d.mlp_bias, "mlp_bias", "biases on the MLP projections")?;
    if architecture == Architecture::Llama {
        // A window as long as the positions is no window.
        if let Some(window) = d.sliding_window {
            if d.max_position_embeddings.is_none_or(|most| window < most) {
                return Err(checkpoint_error(
                    "config.json",
                    format!("sliding_window {window}: Llama's layers have no sliding window"),
                ));
            }
        }
    }
    let mut config = d.config(v, architecture)?;
    if architecture == Architecture::Mistral {
        // MistralConfig's default window is 4096 (a config without the key has it).
        let window = d.window_or(v, Some(4096));
        config = d.with_window(config, window, SlidingLayers::All)?;
    }
    let recipe = Decoder::recipe(&config, false, false);
    Ok((config, recipe))
}
