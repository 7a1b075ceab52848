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

/// `config` with Qwen's window (Qwen2 and Qwen3 alike): only with `use_sliding_window`,
/// 4096 when the config has no `sliding_window` key (as the config classes default it),
/// in the layers from `max_window_layers` (28 by default) on, or those `layer_types`
/// lists.
pub(super) fn with_window(d: &Decoder, v: &Value, config: ModelConfig) -> Result<ModelConfig> {
    let keys: Keys = decode(v)?;
    let window = d
        .window_or(v, Some(4096))
        .filter(|_| keys.use_sliding_window == Some(true));
    let first = keys.max_window_layers.unwrap_or(28);
    d.with_window(config, window, SlidingLayers::From(first))
}

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let config = with_window(&d, v, d.config(v, Architecture::Qwen2)?)?;
    let recipe = Decoder::recipe(&config, true, false);
    Ok((config, recipe))
}
