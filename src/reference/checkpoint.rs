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
    write_synthetic_llama_as(dir, m, seed, crate::DType::F32)
}

/// [`write_synthetic_llama`] with the values rounded to `dtype` (to nearest, ties to
/// even) and stored as such, as a half-precision checkpoint holds them.
///
/// # Errors
/// As [`write_synthetic_llama`]; [`Error::InvalidArgument`] for a quantized type, which
/// safetensors does not hold.
pub fn write_synthetic_llama_as(
    dir: &Path,
    m: &SyntheticLlama,
    seed: u64,
    dtype: crate::DType,
) -> Result<u64> {
    if dtype.is_quantized() {
        return Err(crate::Error::invalid(
            "write_synthetic_llama",
            format!("{dtype} weights are not a safetensors type"),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let hd = m.hidden / m.heads.max(1);
    let config = format!(
        "{{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \
         \"vocab_size\": {}, \"hidden_size\": {}, \"intermediate_size\": {}, \
         \"num_hidden_layers\": {}, \"num_attention_heads\": {}, \"num_key_value_heads\": {}, \
         \"head_dim\": {hd}, \"max_position_embeddings\": {}, \"rms_norm_eps\": 1e-05, \
         \"rope_parameters\": {{\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}, \
         \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"dtype\": \"{}\"}}",
        m.vocab,
        m.hidden,
        m.intermediate,
        m.layers,
        m.heads,
        m.kv_heads,
        m.positions,
        match dtype {
            crate::DType::F32 => "float32",
            crate::DType::F16 => "float16",
            _ => "bfloat16",
        }
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
    let (st, bytes): (safetensors::Dtype, Vec<Vec<u8>>) = match dtype {
        crate::DType::F32 => (
            safetensors::Dtype::F32,
            tensors
                .iter()
                .map(|(_, _, w)| bytemuck::cast_slice(w).to_vec())
                .collect(),
        ),
        crate::DType::BF16 => (
            safetensors::Dtype::BF16,
            tensors
                .iter()
                .map(|(_, _, w)| w.iter().flat_map(|&v| to_bf16(v).to_le_bytes()).collect())
                .collect(),
        ),
        _ => (
            safetensors::Dtype::F16,
            tensors
                .iter()
                .map(|(_, _, w)| w.iter().flat_map(|&v| to_f16(v).to_le_bytes()).collect())
                .collect(),
        ),
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            safetensors::tensor::TensorView::new(st, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io(dir, e))?;
    let path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).map_err(|e| io(&path, e))?;
    std::fs::metadata(&path)
        .map(|md| md.len())
        .map_err(|e| io(&path, e))
}

/// `v` rounded to bfloat16 (to nearest, ties to even; finite values only here).
pub(super) fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// `v` rounded to IEEE binary16 (to nearest, ties to even; values far under 65504 here,
/// subnormals included).
pub(super) fn to_f16(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = v.abs();
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < 2f32.powi(-14) {
        // Subnormal: a multiple of 2^-24, rounded to nearest even by the f32 sum.
        let m = (a * 2f32.powi(24)).round_ties_even() as u16;
        return sign | m;
    }
    let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    let mut h = ((e as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent: still the right value
    }
    sign | h as u16
}

#[cfg(test)]
mod tests {
    use super::{to_bf16, to_f16};
    use crate::kernels::dtype::{bf16_to_f32, f16_to_f32};

    #[test]
    fn rounding_to_half_is_to_nearest_with_ties_to_even() {
        assert_eq!(to_f16(1.0), 0x3c00);
        assert_eq!(to_f16(-2.0), 0xc000);
        assert_eq!(to_f16(65504.0), 0x7bff);
        assert_eq!(to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "a tie goes to even");
        assert_eq!(
            to_f16(1.0 + 3.0 * 2f32.powi(-11)),
            0x3c02,
            "a tie goes to even"
        );
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80, "a tie goes to even");
        assert_eq!(
            to_bf16(1.0 + 3.0 * 2f32.powi(-8)),
            0x3f82,
            "a tie goes to even"
        );
        // Every value lands within half a unit in the last place of the half type.
        let mut rng = crate::reference::Rng::new(9);
        for v in rng.normal(10_000) {
            let v = v * 3.0;
            let h = f16_to_f32(to_f16(v));
            let ulp = if v.abs() < 2f32.powi(-14) {
                2f32.powi(-24)
            } else {
                2f32.powi(v.abs().log2().floor() as i32 - 10)
            };
            assert!((h - v).abs() <= ulp / 2.0, "f16 {v} -> {h}");
            let b = bf16_to_f32(to_bf16(v));
            let ulp = 2f32.powi(v.abs().log2().floor() as i32 - 7);
            assert!((b - v).abs() <= ulp / 2.0, "bf16 {v} -> {b}");
        }
    }
}
