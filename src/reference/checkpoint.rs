//! A Llama-family checkpoint with seeded random weights, written as Hugging Face writes
//! one (`config.json` in the transformers 5.x style, `model.safetensors` in f32): for
//! tests and benches that need a model of a given size without downloading one.

use std::path::Path;

use super::Rng;
use crate::error::{Error, Result};

/// The sizes of a synthetic Llama model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticLlama {
    /// Vocabulary rows.
    pub vocab: usize,
    /// Hidden size.
    pub hidden: usize,
    /// MLP inner size.
    pub intermediate: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Positions.
    pub positions: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        what: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `config.json` and `model.safetensors` for `m` into `dir` (created if needed):
/// xavier-uniform matrices and norm weights near 1, from `seed`; returns the weight
/// file's size in bytes.
///
/// # Errors
/// [`Error::Checkpoint`] when the files cannot be written.
pub fn write_synthetic_llama(dir: &Path, m: &SyntheticLlama, seed: u64) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let hd = m.hidden / m.heads.max(1);
    let config = format!(
        "{{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \
         \"vocab_size\": {}, \"hidden_size\": {}, \"intermediate_size\": {}, \
         \"num_hidden_layers\": {}, \"num_attention_heads\": {}, \"num_key_value_heads\": {}, \
         \"head_dim\": {hd}, \"max_position_embeddings\": {}, \"rms_norm_eps\": 1e-05, \
         \"rope_parameters\": {{\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}, \
         \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"dtype\": \"float32\"}}",
        m.vocab, m.hidden, m.intermediate, m.layers, m.heads, m.kv_heads, m.positions
    );
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config).map_err(|e| io(&config_path, e))?;
    let mut rng = Rng::new(seed);
    let (h, i, q, kv) = (m.hidden, m.intermediate, m.heads * hd, m.kv_heads * hd);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize| {
        let w = rng.xavier(rows * cols, cols, rows);
        tensors.push((name, vec![rows, cols], w));
    };
    matrix("model.embed_tokens.weight".into(), m.vocab, h);
    for l in 0..m.layers {
        let p = format!("model.layers.{l}");
        matrix(format!("{p}.self_attn.q_proj.weight"), q, h);
        matrix(format!("{p}.self_attn.k_proj.weight"), kv, h);
        matrix(format!("{p}.self_attn.v_proj.weight"), kv, h);
        matrix(format!("{p}.self_attn.o_proj.weight"), h, q);
        matrix(format!("{p}.mlp.gate_proj.weight"), i, h);
        matrix(format!("{p}.mlp.up_proj.weight"), i, h);
        matrix(format!("{p}.mlp.down_proj.weight"), h, i);
    }
    matrix("lm_head.weight".into(), m.vocab, h);
    let mut norm = |name: String| {
        let w: Vec<f32> = rng.normal(h).iter().map(|v| 1.0 + 0.1 * v).collect();
        tensors.push((name, vec![h], w));
    };
    for l in 0..m.layers {
        norm(format!("model.layers.{l}.input_layernorm.weight"));
        norm(format!("model.layers.{l}.post_attention_layernorm.weight"));
    }
    norm("model.norm.weight".into());
    let views = tensors
        .iter()
        .map(|(n, s, w)| {
            let bytes: &[u8] = bytemuck::cast_slice(w);
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytes)
                .map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io(dir, e))?;
    let path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).map_err(|e| io(&path, e))?;
    std::fs::metadata(&path)
        .map(|md| md.len())
        .map_err(|e| io(&path, e))
}
