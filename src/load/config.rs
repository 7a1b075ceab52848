//! `config.json` of a Hugging Face checkpoint, as transformers 4.x and 5.x write it (5.x
//! moved `rope_theta` into `rope_parameters` and renamed `torch_dtype` to `dtype`), for the
//! Llama family and GPT-2; and the tensors each architecture's checkpoint must hold.

use serde_json::Value;

use super::checkpoint_error;
use crate::error::Result;
use crate::nn::RopeScaling;

/// The model families the loader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// Llama and its kin (`model_type` llama, mistral): RMSNorm, rotary positions,
    /// grouped-query attention, SwiGLU MLP; weights `[out, in]`.
    Llama,
    /// GPT-2: LayerNorm, learned positions, fused QKV (`c_attn`), GELU MLP; Conv1D
    /// weights `[in, out]`; tied embeddings.
    Gpt2,
}

/// What a model's `config.json` says, under one set of names for both families.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelConfig {
    /// The family.
    pub architecture: Architecture,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// The MLP's inner size.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Longest sequence the positions cover.
    pub max_positions: usize,
    /// Epsilon of the norms.
    pub norm_eps: f64,
    /// Base of the rotary frequencies (Llama), none for learned positions (GPT-2).
    pub rope_theta: Option<f64>,
    /// How the rotary frequencies are scaled (`rope_type` linear, llama3); none for the
    /// default and for learned positions.
    pub rope_scaling: RopeScaling,
    /// The LM head is the embedding table.
    pub tie_word_embeddings: bool,
    /// The MLP's activation, as the config names it (`silu`, `gelu_new`, ...).
    pub activation: String,
    /// The dtype the checkpoint was saved in, when the config says (`float32`, ...).
    pub dtype: Option<String>,
}

fn usize_field(v: &Value, key: &str) -> Result<usize> {
    let what = || checkpoint_error("config.json", format!("`{key}` is missing or not a count"));
    let n = v.get(key).and_then(Value::as_u64).ok_or_else(what)?;
    usize::try_from(n).map_err(|_| what())
}

/// `key` as a number; `None` when absent (or null), an error when it is something else.
fn float_field(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_f64().map(Some).ok_or_else(|| {
            checkpoint_error("config.json", format!("`{key}` is {x}, not a number"))
        }),
    }
}

/// The largest count a config may give: every kernel takes its sizes and offsets as
/// 32-bit integers, so nothing larger could run.
const MAX_COUNT: usize = u32::MAX as usize;

fn positive(key: &str, n: usize) -> Result<usize> {
    if n == 0 {
        return Err(checkpoint_error("config.json", format!("`{key}` is 0")));
    }
    Ok(n)
}

/// The rotary scaling a Llama config asks for: from `rope_parameters` (5.x) when it names
/// a type, else from `rope_scaling` (4.x); transformers reads `rope_type`, or else the
/// older `type`. Only `default`, `linear` and `llama3` are taken; any other type, and a
/// missing or bad parameter, is an error naming the key.
fn rope_scaling(v: &Value) -> Result<RopeScaling> {
    let typed = |key: &'static str| {
        v.get(key)
            .filter(|b| b.get("rope_type").or_else(|| b.get("type")).is_some())
            .map(|b| (key, b))
    };
    let Some((key, block)) = typed("rope_parameters").or_else(|| typed("rope_scaling")) else {
        return Ok(RopeScaling::None);
    };
    let type_key = if block.get("rope_type").is_some() {
        "rope_type"
    } else {
        "type"
    };
    let raw = block.get(type_key).unwrap_or(&Value::Null);
    let rope_type = raw.as_str().ok_or_else(|| {
        checkpoint_error(
            "config.json",
            format!("{key}.{type_key} is {raw}, not a name"),
        )
    })?;
    let number = |name: &str| -> Result<f64> {
        match block.get(name) {
            Some(x) => x.as_f64().ok_or_else(|| {
                checkpoint_error(
                    "config.json",
                    format!("{key}.{name} is {x}, not a number (rotary scaling {rope_type:?})"),
                )
            }),
            None => Err(checkpoint_error(
                "config.json",
                format!("{key}.{name} is missing (rotary scaling {rope_type:?} needs it)"),
            )),
        }
    };
    let scaling = match rope_type {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: number("factor")?,
        },
        "llama3" => {
            let name = "original_max_position_embeddings";
            let original = match block.get(name) {
                None => Err(format!("{key}.{name} is missing")),
                Some(x) => x
                    .as_u64()
                    .ok_or_else(|| format!("{key}.{name} is {x}, not a count")),
            }
            .map_err(|e| {
                checkpoint_error(
                    "config.json",
                    format!("{e} (rotary scaling \"llama3\" needs it)"),
                )
            })?;
            RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_positions: usize::try_from(original).unwrap_or(usize::MAX),
            }
        }
        other => {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "{key}.{type_key} {other:?}: this rotary scaling is not supported \
                     (only default, linear and llama3)"
                ),
            ))
        }
    };
    if let Some(problem) = scaling.problem() {
        return Err(checkpoint_error(
            "config.json",
            format!("{key} ({rope_type}): {problem}"),
        ));
    }
    Ok(scaling)
}

impl ModelConfig {
    /// Parses the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the field: not JSON, an
    /// unknown `model_type`, a missing or zero size, heads that do not divide the hidden
    /// size, rotary scaling other than default, linear and llama3 (or with a missing or
    /// bad parameter).
    pub fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| checkpoint_error("config.json", format!("not JSON: {e}")))?;
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let dtype = ["dtype", "torch_dtype"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let config = match model_type {
            "llama" | "mistral" => Self::llama(&v, dtype)?,
            "gpt2" => Self::gpt2(&v, dtype)?,
            other => {
                return Err(checkpoint_error(
                    "config.json",
                    format!(
                        "model_type {other:?} is not one the loader knows (llama, mistral, gpt2)"
                    ),
                ))
            }
        };
        config.check()?;
        Ok(config)
    }

    fn llama(v: &Value, dtype: Option<String>) -> Result<Self> {
        // 5.x: `rope_parameters: {rope_theta, rope_type, ...}`; 4.x: `rope_theta` and an
        // optional `rope_scaling: {rope_type, ...}`.
        let params = v.get("rope_parameters").filter(|p| !p.is_null());
        let rope_theta = match params.map(|p| float_field(p, "rope_theta")).transpose()? {
            Some(Some(theta)) => theta,
            _ => float_field(v, "rope_theta")?.unwrap_or(10_000.0),
        };
        let rope_scaling = rope_scaling(v)?;
        // Rotary on part of each head (top level, or in 5.x's `rope_parameters`): the
        // layers turn whole heads, so any factor but 1 would be another model.
        for (block, key) in [
            (Some(v), "partial_rotary_factor"),
            (params, "rope_parameters.partial_rotary_factor"),
        ] {
            let factor = block
                .map(|b| float_field(b, "partial_rotary_factor"))
                .transpose()?
                .flatten();
            if let Some(f) = factor.filter(|&f| f != 1.0) {
                return Err(checkpoint_error(
                    "config.json",
                    format!("{key} {f}: rotary embeddings on part of each head are not supported"),
                ));
            }
        }
        // What the layers do not implement is refused, never silently left out.
        for (key, what) in [
            ("attention_bias", "biases on the attention projections"),
            ("mlp_bias", "biases on the MLP projections"),
        ] {
            if v.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(checkpoint_error(
                    "config.json",
                    format!("{key}: {what} are not supported"),
                ));
            }
        }
        let max_positions = usize_field(v, "max_position_embeddings")?;
        if let Some(window) = v.get("sliding_window").and_then(Value::as_u64) {
            if (window as usize) < max_positions {
                return Err(checkpoint_error(
                    "config.json",
                    format!("sliding_window {window}: sliding-window attention is not supported"),
                ));
            }
        }
        let hidden_size = usize_field(v, "hidden_size")?;
        let num_heads = positive(
            "num_attention_heads",
            usize_field(v, "num_attention_heads")?,
        )?;
        let num_kv_heads = match v.get("num_key_value_heads") {
            Some(Value::Null) | None => num_heads,
            Some(_) => usize_field(v, "num_key_value_heads")?,
        };
        let head_dim = match v.get("head_dim") {
            Some(Value::Null) | None => hidden_size / num_heads,
            Some(_) => usize_field(v, "head_dim")?,
        };
        Ok(ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: usize_field(v, "vocab_size")?,
            hidden_size,
            intermediate_size: usize_field(v, "intermediate_size")?,
            num_layers: usize_field(v, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            max_positions,
            norm_eps: float_field(v, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: Some(rope_theta),
            rope_scaling,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            activation: v
                .get("hidden_act")
                .and_then(Value::as_str)
                .unwrap_or("silu")
                .to_string(),
            dtype,
        })
    }

    fn gpt2(v: &Value, dtype: Option<String>) -> Result<Self> {
        let flag = |key: &str| v.get(key).and_then(Value::as_bool);
        for (key, bad, what) in [
            ("tie_word_embeddings", false, "an untied GPT-2 head"),
            ("scale_attn_weights", false, "unscaled attention"),
            (
                "scale_attn_by_inverse_layer_idx",
                true,
                "attention scaled by layer",
            ),
        ] {
            if flag(key) == Some(bad) {
                return Err(checkpoint_error(
                    "config.json",
                    format!("{key}: {what} is not supported"),
                ));
            }
        }
        let hidden_size = usize_field(v, "n_embd")?;
        let num_heads = positive("n_head", usize_field(v, "n_head")?)?;
        let intermediate_size = match v.get("n_inner") {
            Some(Value::Null) | None => hidden_size.saturating_mul(4),
            Some(_) => usize_field(v, "n_inner")?,
        };
        Ok(ModelConfig {
            architecture: Architecture::Gpt2,
            vocab_size: usize_field(v, "vocab_size")?,
            hidden_size,
            intermediate_size,
            num_layers: usize_field(v, "n_layer")?,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: hidden_size / num_heads,
            max_positions: usize_field(v, "n_positions")?,
            norm_eps: float_field(v, "layer_norm_epsilon")?.unwrap_or(1e-5),
            rope_theta: None,
            rope_scaling: RopeScaling::None,
            // transformers 4.x configs of GPT-2 often omit it; tied is the default.
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            activation: v
                .get("activation_function")
                .and_then(Value::as_str)
                .unwrap_or("gelu_new")
                .to_string(),
            dtype,
        })
    }

    fn check(&self) -> Result<()> {
        // Named as the family's config.json names them (head sizes and GPT-2's key/value
        // heads are derived).
        let gpt2 = self.architecture == Architecture::Gpt2;
        let name =
            |llama: &'static str, gpt2_key: &'static str| if gpt2 { gpt2_key } else { llama };
        for (key, n) in [
            ("vocab_size", self.vocab_size),
            (name("hidden_size", "n_embd"), self.hidden_size),
            (name("intermediate_size", "n_inner"), self.intermediate_size),
            (name("num_hidden_layers", "n_layer"), self.num_layers),
            (name("num_attention_heads", "n_head"), self.num_heads),
            (name("num_key_value_heads", "n_head"), self.num_kv_heads),
            ("head size", self.head_dim),
            (
                name("max_position_embeddings", "n_positions"),
                self.max_positions,
            ),
        ] {
            positive(key, n)?;
            if n > MAX_COUNT {
                return Err(checkpoint_error(
                    "config.json",
                    format!("{key} {n} is too large (the kernels count to {MAX_COUNT})"),
                ));
            }
        }
        // The widest rows the tensors have, each within the kernels' counts too.
        let (h, heads) = (self.hidden_size, self.num_heads);
        for (what, a, b) in [
            ("query heads x head size", heads, self.head_dim),
            ("3 x hidden size (a fused qkv)", 3, h),
        ] {
            match a.checked_mul(b) {
                Some(n) if n <= MAX_COUNT => {}
                _ => {
                    return Err(checkpoint_error(
                        "config.json",
                        format!(
                            "{what} = {a} x {b} is too large (the kernels count to {MAX_COUNT})"
                        ),
                    ))
                }
            }
        }
        // Values that would make every logit NaN, refused rather than run.
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "norm epsilon {} (it must be a positive number)",
                    self.norm_eps
                ),
            ));
        }
        if let Some(theta) = self.rope_theta {
            if !(theta.is_finite() && theta > 0.0) {
                return Err(checkpoint_error(
                    "config.json",
                    format!("rope_theta {theta} (it must be a positive number)"),
                ));
            }
        }
        if self.architecture == Architecture::Gpt2
            && !self.hidden_size.is_multiple_of(self.num_heads)
        {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "{} heads do not divide the hidden size {}",
                    self.num_heads, self.hidden_size
                ),
            ));
        }
        let largest = crate::ops::MAX_HEAD_DIM;
        if self.head_dim > largest {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "head size {}: the attention kernel takes heads of up to {largest}",
                    self.head_dim
                ),
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(checkpoint_error(
                "config.json",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        Ok(())
    }

    /// Every tensor the checkpoint must hold, by its Hugging Face name (GPT-2's without
    /// the `transformer.` prefix some files add), with its shape as stored.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut add = |name: String, shape: &[usize]| out.push((name, shape.to_vec()));
        match self.architecture {
            Architecture::Llama => {
                add("model.embed_tokens.weight".into(), &[v, h]);
                for l in 0..self.num_layers {
                    let p = format!("model.layers.{l}");
                    add(format!("{p}.input_layernorm.weight"), &[h]);
                    add(format!("{p}.self_attn.q_proj.weight"), &[q, h]);
                    add(format!("{p}.self_attn.k_proj.weight"), &[kv, h]);
                    add(format!("{p}.self_attn.v_proj.weight"), &[kv, h]);
                    add(format!("{p}.self_attn.o_proj.weight"), &[h, q]);
                    add(format!("{p}.post_attention_layernorm.weight"), &[h]);
                    add(format!("{p}.mlp.gate_proj.weight"), &[i, h]);
                    add(format!("{p}.mlp.up_proj.weight"), &[i, h]);
                    add(format!("{p}.mlp.down_proj.weight"), &[h, i]);
                }
                add("model.norm.weight".into(), &[h]);
                if !self.tie_word_embeddings {
                    add("lm_head.weight".into(), &[v, h]);
                }
            }
            Architecture::Gpt2 => {
                add("wte.weight".into(), &[v, h]);
                add("wpe.weight".into(), &[self.max_positions, h]);
                for l in 0..self.num_layers {
                    let p = format!("h.{l}");
                    for ln in ["ln_1", "ln_2"] {
                        add(format!("{p}.{ln}.weight"), &[h]);
                        add(format!("{p}.{ln}.bias"), &[h]);
                    }
                    add(format!("{p}.attn.c_attn.weight"), &[h, 3 * h]);
                    add(format!("{p}.attn.c_attn.bias"), &[3 * h]);
                    add(format!("{p}.attn.c_proj.weight"), &[h, h]);
                    add(format!("{p}.attn.c_proj.bias"), &[h]);
                    add(format!("{p}.mlp.c_fc.weight"), &[h, i]);
                    add(format!("{p}.mlp.c_fc.bias"), &[i]);
                    add(format!("{p}.mlp.c_proj.weight"), &[i, h]);
                    add(format!("{p}.mlp.c_proj.bias"), &[h]);
                }
                add("ln_f.weight".into(), &[h]);
                add("ln_f.bias".into(), &[h]);
            }
        }
        out
    }
}
