//! PEFT's files for a [`Lora`]: `adapter_config.json` and `adapter_model.safetensors`,
//! read onto a model ([`Lora::from_peft`]) and written ([`Lora::save_peft`]) as
//! `PeftModel.from_pretrained` and `save_pretrained` read and write them.

use super::{Lora, LoraConfig, ALL_LINEAR};
use crate::error::{Error, Result};
use crate::model::Transformer;

/// PEFT's name of an adapter's tensor.
pub(super) fn peft_name(module: &str, which: &str) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

impl Lora {
    /// Reads an adapter PEFT saved (`dir/adapter_config.json` and
    /// `dir/adapter_model.safetensors`, of a LoRA on `model`'s checkpoint) onto `model`,
    /// attached.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a config this does not read (DoRA, per-module ranks,
    /// trained biases, a regular expression as `target_modules`), a
    /// missing or misshapen tensor, or as [`Lora::new`]; file errors.
    pub fn from_peft(model: &Transformer, dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let op = "lora.from_peft";
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|e| Error::invalid(op, format!("reading {}: {e}", path.display())))
        };
        let json = String::from_utf8(read("adapter_config.json")?)
            .map_err(|e| Error::invalid(op, format!("adapter_config.json: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Error::invalid(op, format!("adapter_config.json: {e}")))?;
        let config = peft_config(op, &value)?;
        let file = "adapter_model.safetensors".to_string();
        let tensors =
            crate::load::Checkpoint::from_byte_files(&json, vec![(file.clone(), read(&file)?)])?;
        let mut used = 0;
        let lora = Self::build(model, config, |m, which, shape| {
            let name = peft_name(&m.name, &which.to_string());
            let got = tensors.shape(&name)?;
            if got != shape {
                return Err(Error::shape(
                    op,
                    format!("{name} {shape:?}"),
                    format!("{got:?}"),
                ));
            }
            used += 1;
            tensors.f32(&name)
        })?;
        if used != tensors.tensor_count() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} tensors in {file}, {used} of them adapters of the targets",
                    tensors.tensor_count()
                ),
            ));
        }
        lora.attach();
        Ok(lora)
    }

    /// Writes the adapter as PEFT saves one: `dir/adapter_model.safetensors` (f32) and
    /// `dir/adapter_config.json` (`base` its `base_model_name_or_path`), which
    /// `PeftModel.from_pretrained(base_model, dir)` loads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a file cannot be written; GPU errors.
    pub fn save_peft(&self, dir: impl AsRef<std::path::Path>, base: Option<&str>) -> Result<()> {
        let op = "lora.save_peft";
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::invalid(op, format!("creating {}: {e}", dir.display())))?;
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = self
            .to_host()?
            .into_iter()
            .map(|(name, shape, v)| (name, shape.to_vec(), v))
            .collect();
        crate::model::save::write(op, &dir.join("adapter_model.safetensors"), &tensors)?;
        // The modules' own names, as PEFT writes `all-linear` resolved.
        let mut targets: Vec<&str> = self
            .modules()
            .into_iter()
            .map(|m| m.rsplit('.').next().unwrap_or(m))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": 0.0,
            "target_modules": targets,
            "bias": "none",
            // PEFT's flag for Conv1D's `[in, out]` weights (the adapters' shapes are the
            // same either way).
            "fan_in_fan_out": self.targets.iter().any(|t| t.site.transposed),
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
        });
        let path = dir.join("adapter_config.json");
        std::fs::write(&path, format!("{config:#}\n"))
            .map_err(|e| Error::invalid(op, format!("writing {}: {e}", path.display())))
    }
}

/// PEFT's `adapter_config.json` as a [`LoraConfig`], refusing what it cannot mean here.
fn peft_config(op: &'static str, v: &serde_json::Value) -> Result<LoraConfig> {
    let bad = |what: &str| Error::invalid(op, format!("adapter_config.json: {what}"));
    if v["peft_type"] != "LORA" {
        return Err(bad("peft_type is not LORA"));
    }
    let unsupported = [
        ("use_dora", v["use_dora"].as_bool() == Some(true)),
        ("use_rslora", v["use_rslora"].as_bool() == Some(true)),
        ("bias", !matches!(v["bias"].as_str(), None | Some("none"))),
        (
            "rank_pattern",
            v["rank_pattern"].as_object().is_some_and(|o| !o.is_empty()),
        ),
        (
            "alpha_pattern",
            v["alpha_pattern"]
                .as_object()
                .is_some_and(|o| !o.is_empty()),
        ),
        ("layers_to_transform", !v["layers_to_transform"].is_null()),
        ("modules_to_save", !v["modules_to_save"].is_null()),
        ("lora_bias", v["lora_bias"].as_bool() == Some(true)),
        ("use_qalora", v["use_qalora"].as_bool() == Some(true)),
        ("exclude_modules", !v["exclude_modules"].is_null()),
        ("layer_replication", !v["layer_replication"].is_null()),
        ("target_parameters", !v["target_parameters"].is_null()),
        (
            "trainable_token_indices",
            !v["trainable_token_indices"].is_null(),
        ),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, on)| *on) {
        return Err(bad(&format!("{name} is not read")));
    }
    let rank = v["r"].as_u64().ok_or_else(|| bad("no r"))? as usize;
    let alpha = v["lora_alpha"]
        .as_f64()
        .ok_or_else(|| bad("no lora_alpha"))? as f32;
    let targets = match &v["target_modules"] {
        serde_json::Value::String(t) if t == ALL_LINEAR => vec![t.clone()],
        list => list
            .as_array()
            .and_then(|l| {
                l.iter()
                    .map(|t| t.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad("target_modules is neither a list of names nor all-linear"))?,
    };
    Ok(LoraConfig {
        rank,
        alpha,
        targets,
        seed: 0,
    })
}
