//! Qwen3 (`model_type` qwen3): Llama's layers with an RMSNorm over each query and key
//! head before rotary (`q_norm`, `k_norm`, weights `[head_dim]`), `head_dim` set by the
//! config (its heads may total more or less than the hidden size), optional
//! `attention_bias` on q, k, v and o.

use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::model::recipe::Recipe;
use crate::model::{Architecture, ModelConfig};

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    Decoder::refuse(
        d.attention_bias,
        "attention_bias",
        "biases on the attention projections",
    )?;
    let config = super::qwen2::with_window(&d, v, d.config(v, Architecture::Qwen3)?)?;
    let recipe = Decoder::recipe(&config, false, true);
    Ok((config, recipe))
}
