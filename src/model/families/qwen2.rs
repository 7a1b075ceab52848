//! Qwen2 and Qwen2.5 (`model_type` qwen2): Llama's layers with biases on the query, key
//! and value projections (always: the config has no key for them), split with their
//! heads. Their configs name a window (`sliding_window`) used only with
//! `use_sliding_window`.

use serde::Deserialize;
use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::load::checkpoint_error;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig};

/// Qwen2's own keys.
#[derive(Debug, Deserialize)]
struct Keys {
    use_sliding_window: Option<bool>,
}

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let keys: Keys = decode(v)?;
    if keys.use_sliding_window == Some(true) {
        return Err(checkpoint_error(
            "config.json",
            format!(
                "use_sliding_window (window {:?}): sliding-window attention is not supported",
                d.sliding_window
            ),
        ));
    }
    let config = d.config(v, Architecture::Qwen2)?;
    let recipe = Decoder::recipe(&config, true, false);
    Ok((config, recipe))
}
