//! Qwen2 and Qwen2.5 (`model_type` qwen2): Llama's layers with biases on the query, key
//! and value projections (always: the config has no key for them), split with their
//! heads. Their configs name a window (`sliding_window`) used only with
//! `use_sliding_window`.

use serde::Deserialize;
use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig, SlidingLayers};

/// Qwen2's own keys.
#[derive(Debug, Deserialize)]
struct Keys {
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
}

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let keys: Keys = decode(v)?;
    let config = d.config(v, Architecture::Qwen2)?;
    // The window only with `use_sliding_window`, in the layers from `max_window_layers`
    // (28 by default) on, or those `layer_types` lists.
    let window = d
        .sliding_window
        .filter(|_| keys.use_sliding_window == Some(true));
    let first = keys.max_window_layers.unwrap_or(28);
    let config = d.with_window(config, window, SlidingLayers::From(first))?;
    let recipe = Decoder::recipe(&config, true, false);
    Ok((config, recipe))
}
