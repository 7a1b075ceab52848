//! What a model's `config.json` says, under one set of names for every family
//! ([`ModelConfig`]), and the parts of it families share: the rotary block (5.x's
//! `rope_parameters`, 4.x's `rope_theta` + `rope_scaling`) and the checks of sizes. Each
//! family reads its own keys (src/model/families).

use serde_json::Value;

use super::families;
use crate::error::Result;
use crate::load::{checkpoint_error, Checkpoint, Gguf};
use crate::nn::RopeScaling;

/// The model families the loader knows (`model_type` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// Llama 1-3 (`llama`): RMSNorm, rotary positions (default, linear or llama3
    /// scaling), grouped-query attention, SwiGLU MLP; weights `[out, in]`.
    Llama,
    /// Mistral (`mistral`): Llama's layers, with sliding-window attention when the config
    /// gives a window.
    Mistral,
    /// Qwen2 and Qwen2.5 (`qwen2`): Llama's layers with biases on the query, key and
    /// value projections.
    Qwen2,
    /// Qwen3 (`qwen3`): Llama's layers with RMSNorm on each query and key head before
    /// rotary, and heads whose total may differ from the hidden size.
    Qwen3,
    /// Phi-3 and Phi-3.5 (`phi3`): Llama's layers with fused `qkv_proj` and
    /// `gate_up_proj`; rotary default or longrope.
    Phi3,
    /// Gemma 2 (`gemma2`): `1 + w` RMSNorms before and after each layer, embeddings
    /// times `sqrt(hidden)`, GeGLU, soft-capped attention and final logits, layers
    /// alternating sliding-window and full attention.
    Gemma2,
    /// Gemma 3's text model (`gemma3_text`): Gemma 2's layers without the caps, with
    /// RMSNorm on each query and key head, the sliding layers on their own rotary base.
    Gemma3,
    /// GPT-2 (`gpt2`): LayerNorm, learned positions, fused QKV (`c_attn`), GELU MLP;
    /// Conv1D weights `[in, out]`; tied embeddings.
    Gpt2,
}

/// Which layers of a model attend through its sliding window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlidingLayers {
    /// Every layer (Mistral, Phi-3).
    #[default]
    All,
    /// Layer `l` when `listed[l]` (5.x's `layer_types`: `sliding_attention`).
    Listed(Vec<bool>),
    /// Every layer but each `n`-th: layer `l` is full when `(l + 1) % n == 0` (Gemma 2's
    /// alternation, `n` 2; Gemma 3's `sliding_window_pattern`).
    AllButEvery(usize),
    /// Layers from this one on (Qwen2's `max_window_layers`).
    From(usize),
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
    /// Sliding-window attention: a query sees the keys of the last `window` positions
    /// (itself included), in the layers `sliding_layers` names; none for full causal
    /// attention everywhere. [`ModelConfig::window`] gives a layer's.
    pub sliding_window: Option<usize>,
    /// The layers the window applies to.
    pub sliding_layers: SlidingLayers,
    /// The rotary base and scaling of the sliding-window layers when they differ from
    /// the others' (Gemma 3's `rope_local_base_freq`, 5.x's per-layer-type
    /// `rope_parameters`).
    pub local_rope: Option<(f64, RopeScaling)>,
    /// The attention scale is `query_pre_attn_scalar ** -0.5` (Gemma) instead of
    /// `head_dim ** -0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Attention logits capped to `tanh(s / cap) * cap` (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    /// Final logits capped likewise (Gemma 2).
    pub final_logit_softcapping: Option<f64>,
}

/// `key` as a number; `None` when absent (or null), an error when it is something else.
pub(super) fn float_field(v: &Value, key: &str) -> Result<Option<f64>> {
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

pub(super) fn positive(key: &str, n: usize) -> Result<usize> {
    if n == 0 {
        return Err(checkpoint_error("config.json", format!("`{key}` is 0")));
    }
    Ok(n)
}

/// The rotary scaling a Llama config asks for: from `rope_parameters` (5.x) when it names
/// a type, else from `rope_scaling` (4.x); transformers reads `rope_type`, or else the
/// older `type`. `default`, `linear`, `llama3`, `dynamic`, `yarn` and `longrope` are
/// taken, with transformers' defaults for what they leave out (yarn's and longrope's
/// original length: the top-level `original_max_position_embeddings` first, as Phi-3
/// writes it, then the block's, then `max_position_embeddings`); any other type, and a
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
    // An optional number: absent or null is `None`.
    let maybe = |name: &str| -> Result<Option<f64>> {
        match block.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => number(name).map(Some),
        }
    };
    let count = |b: &Value, name: &str, shown: &str| -> Result<Option<usize>> {
        match b.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
                .ok_or_else(|| {
                    checkpoint_error("config.json", format!("{shown} is {x}, not a count"))
                }),
        }
    };
    let max_positions = count(v, "max_position_embeddings", "max_position_embeddings")?;
    let need_max = || {
        max_positions.ok_or_else(|| {
            checkpoint_error(
                "config.json",
                format!(
                    "max_position_embeddings is missing (rotary scaling {rope_type:?} needs it)"
                ),
            )
        })
    };
    // yarn's and longrope's original length, where transformers finds it.
    let original = || -> Result<usize> {
        let name = "original_max_position_embeddings";
        match count(v, name, name)? {
            Some(n) => Ok(n),
            None => match count(block, name, &format!("{key}.{name}"))? {
                Some(n) => Ok(n),
                None => need_max(),
            },
        }
    };
    let scaling = match rope_type {
        "default" => RopeScaling::None,
        "dynamic" => RopeScaling::Dynamic {
            factor: number("factor")?,
            max_positions: need_max()?,
        },
        "yarn" => {
            let original = original()?;
            let factor = match maybe("factor")? {
                Some(f) => f,
                None => need_max()? as f64 / original as f64,
            };
            // transformers' `yarn_get_mscale`.
            let mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            let attention_factor = match maybe("attention_factor")? {
                Some(a) => a,
                None => match (maybe("mscale")?, maybe("mscale_all_dim")?) {
                    (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        mscale(factor, m) / mscale(factor, all)
                    }
                    _ => mscale(factor, 1.0),
                },
            };
            // `or 32`, `or 1`: a zero is the default too.
            let beta = |name: &str, default: f64| -> Result<f64> {
                Ok(maybe(name)?.filter(|&b| b != 0.0).unwrap_or(default))
            };
            let truncate = match block.get("truncate") {
                None | Some(Value::Null) => true,
                Some(x) => x.as_bool().ok_or_else(|| {
                    checkpoint_error(
                        "config.json",
                        format!("{key}.truncate is {x}, not true or false"),
                    )
                })?,
            };
            RopeScaling::Yarn {
                factor,
                original_max_positions: original,
                attention_factor,
                beta_fast: beta("beta_fast", 32.0)?,
                beta_slow: beta("beta_slow", 1.0)?,
                truncate,
            }
        }
        "longrope" => {
            let list = |name: &str| -> Result<Vec<f64>> {
                let bad = || {
                    checkpoint_error(
                        "config.json",
                        format!("{key}.{name} is missing or not a list of numbers (rotary scaling \"longrope\")"),
                    )
                };
                let items = block.get(name).and_then(Value::as_array).ok_or_else(bad)?;
                items.iter().map(|x| x.as_f64().ok_or_else(bad)).collect()
            };
            let original = original()?;
            let factor = match maybe("factor")? {
                Some(f) => f,
                None => need_max()? as f64 / original as f64,
            };
            let attention_factor = match maybe("attention_factor")? {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
            };
            RopeScaling::LongRope {
                short: list("short_factor")?,
                long: list("long_factor")?,
                original_max_positions: original,
                attention_factor,
            }
        }
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
                     (only default, linear, llama3, dynamic, yarn and longrope)"
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

/// A Llama-like config's rotary embeddings: the base (5.x: in `rope_parameters`; 4.x: top
/// level; 10000 when neither says) and the scaling. Rotary on part of each head (top
/// level, or in `rope_parameters`) is refused: the layers turn whole heads, so any factor
/// but 1 would be another model.
pub(super) fn rotary(v: &Value) -> Result<(f64, RopeScaling)> {
    let params = v.get("rope_parameters").filter(|p| !p.is_null());
    let theta = match params.map(|p| float_field(p, "rope_theta")).transpose()? {
        Some(Some(theta)) => theta,
        _ => float_field(v, "rope_theta")?.unwrap_or(10_000.0),
    };
    let scaling = rope_scaling(v)?;
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
    Ok((theta, scaling))
}

impl ModelConfig {
    /// Layer `layer`'s attention window, if it slides.
    pub fn window(&self, layer: usize) -> Option<usize> {
        let slides = match &self.sliding_layers {
            SlidingLayers::All => true,
            SlidingLayers::Listed(listed) => listed.get(layer).copied().unwrap_or(false),
            SlidingLayers::AllButEvery(n) => !(layer + 1).is_multiple_of((*n).max(1)),
            SlidingLayers::From(first) => layer >= *first,
        };
        self.sliding_window.filter(|_| slides)
    }

    /// The config of `checkpoint`, read by its family (`model_type`), after checking that
    /// the checkpoint holds every tensor the config implies, with its shape and a dtype
    /// the loader reads (f32, f16, bf16).
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the key or tensor: an
    /// unknown `model_type`, a missing, mistyped or zero size, heads that do not fit,
    /// what the layers do not implement (a rotary scaling other than default, linear
    /// and llama3, rotary on part of each head, ...), a missing tensor, a wrong shape or
    /// dtype.
    pub fn read(checkpoint: &Checkpoint) -> Result<Self> {
        Ok(families::read(checkpoint)?.0)
    }

    /// The config of the model in the GGUF file `gguf`, from its metadata
    /// (`general.architecture` and its `{arch}.*` keys, with what llama.cpp fixes for
    /// each architecture), after checking that the file holds every tensor the config
    /// implies, with its shape and a type the loader reads (see
    /// [`Transformer::from_gguf`](crate::model::Transformer::from_gguf)).
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the key or tensor: an
    /// architecture the loader does not know, a missing or malformed key, a feature the
    /// layers do not implement, a missing tensor, a wrong shape or an unsupported type.
    pub fn read_gguf(gguf: &Gguf) -> Result<Self> {
        Ok(families::read_gguf(gguf)?.0)
    }

    // On wasm32 `usize` is `u32`: no count can pass `MAX_COUNT` there.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::absurd_extreme_comparisons))]
    pub(super) fn check(&self) -> Result<()> {
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
        if let RopeScaling::LongRope { short, long, .. } = &self.rope_scaling {
            for (name, list) in [("short_factor", short), ("long_factor", long)] {
                if list.len() != self.head_dim / 2 {
                    return Err(checkpoint_error(
                        "config.json",
                        format!(
                            "longrope {name} has {} values; head size {} has {} frequencies",
                            list.len(),
                            self.head_dim,
                            self.head_dim / 2
                        ),
                    ));
                }
            }
        }
        if self.sliding_window == Some(0) {
            return Err(checkpoint_error("config.json", "sliding_window 0"));
        }
        match &self.sliding_layers {
            SlidingLayers::Listed(listed) if listed.len() != self.num_layers => {
                return Err(checkpoint_error(
                    "config.json",
                    format!(
                        "layer_types lists {} layers of {}",
                        listed.len(),
                        self.num_layers
                    ),
                ))
            }
            SlidingLayers::AllButEvery(0) => {
                return Err(checkpoint_error("config.json", "sliding_window_pattern 0"))
            }
            _ => {}
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
}
