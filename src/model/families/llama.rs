//! Llama 1-3 (`model_type` llama) and Mistral (`mistral`): Llama's layers, no biases;
//! rotary default, linear or llama3; Mistral's sliding window when its config gives one
//! shorter than the model's positions.

use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::load::checkpoint_error;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig};

pub(super) fn read(v: &Value, architecture: Architecture) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    Decoder::refuse(
        d.attention_bias,
        "attention_bias",
        "biases on the attention projections",
    )?;
    Decoder::refuse(d.mlp_bias, "mlp_bias", "biases on the MLP projections")?;
    // A window as long as the positions is no window.
    if let Some(window) = d.sliding_window {
        if d.max_position_embeddings.is_none_or(|most| window < most) {
            return Err(checkpoint_error(
                "config.json",
                format!("sliding_window {window}: sliding-window attention is not supported"),
            ));
        }
    }
    let config = d.config(v, architecture)?;
    let recipe = Decoder::recipe(&config, false, false);
    Ok((config, recipe))
}
