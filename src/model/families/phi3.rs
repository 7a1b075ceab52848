//! Phi-3 and Phi-3.5 (`model_type` phi3): Llama's layers with the query, key and value
//! projections fused in `self_attn.qkv_proj` (`[q | k | v]` rows, split per head block)
//! and the gate and up projections in `mlp.gate_up_proj` (`[gate | up]` rows, split per
//! half); rotary default or `longrope`, whose original length is the top-level
//! `original_max_position_embeddings` (4096 when the config leaves it out, as
//! transformers' Phi3Config does).

use serde_json::Value;

use super::{decode, Decoder};
use crate::error::Result;
use crate::model::recipe::{Mlp, Qkv, Recipe};
use crate::model::{Architecture, ModelConfig, SlidingLayers};

/// Phi3Config's `original_max_position_embeddings` when a config leaves it out.
const ORIGINAL_POSITIONS: u64 = 4096;

pub(super) fn read(v: &Value) -> Result<(ModelConfig, Recipe)> {
    let d: Decoder = decode(v)?;
    let mut v = v.clone();
    if let Some(top) = v.as_object_mut() {
        top.entry("original_max_position_embeddings")
            .or_insert(ORIGINAL_POSITIONS.into());
    }
    let config = d.config(&v, Architecture::Phi3)?;
    // Phi-3-mini-4k's window (2047) in every layer.
    let config = d.with_window(config, d.sliding_window, SlidingLayers::All)?;
    let mut recipe = Decoder::recipe(&config, false, false);
    recipe.attention.qkv = Qkv::Fused("self_attn.qkv_proj".into());
    recipe.mlp.kind = Mlp::GatedFused {
        gate_up: "mlp.gate_up_proj".into(),
        down: "mlp.down_proj".into(),
    };
    Ok((config, recipe))
}
