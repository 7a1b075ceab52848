//! The safetensors loader (`wgpu_tp::load`) on the tiny fixture models: configs of
//! transformers 4.x and 5.x, half-precision files, sharded checkpoints, and a clear error
//! naming the file or tensor for every kind of bad file. No GPU needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::{Architecture, ModelConfig};
use wgpu_tp::nn::{RopeScaling, Rotary};
use wgpu_tp::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// A fresh folder for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of fixture `name` in a scratch folder, with `weights` as `model.safetensors`
/// and `config` as `config.json`.
fn copy(test: &str, name: &str, weights: &str, config: &str) -> PathBuf {
    let dir = scratch(test);
    std::fs::copy(fixture(name).join(weights), dir.join("model.safetensors")).unwrap();
    std::fs::copy(fixture(name).join(config), dir.join("config.json")).unwrap();
    dir
}

/// Every tensor of a fixture file: name -> (dtype, shape, bytes).
fn tensors(path: &Path) -> HashMap<String, (StDtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn write(path: &Path, t: &HashMap<String, (StDtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = t
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// The error opening `dir` gives; panics if it opens.
/// The checkpoint in `dir` and its config, read by its family (which checks the tensors).
fn open(dir: impl AsRef<Path>) -> wgpu_tp::Result<(Checkpoint, ModelConfig)> {
    let checkpoint = Checkpoint::open(dir)?;
    let config = ModelConfig::read(&checkpoint)?;
    Ok((checkpoint, config))
}

fn open_error(dir: &Path) -> (String, String) {
    match open(dir) {
        Err(Error::Checkpoint { what, message }) => (what, message),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn both_fixtures_open_with_the_configs_of_transformers_4_and_5() {
    let (_, c) = open(fixture("tiny-llama")).unwrap();
    let c = &c;
    assert_eq!(c.architecture, Architecture::Llama);
    let sizes = (
        c.vocab_size,
        c.hidden_size,
        c.intermediate_size,
        c.num_layers,
    );
    assert_eq!(sizes, (128, 64, 128, 2));
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
    assert_eq!((c.rope_theta, c.norm_eps), (Some(10_000.0), 1e-5));
    assert!(!c.tie_word_embeddings);
    assert_eq!(
        (c.activation.as_str(), c.dtype.as_deref()),
        ("silu", Some("float32"))
    );
    let (gpt2, g) = open(fixture("tiny-gpt2")).unwrap();
    let g = &g;
    assert_eq!(g.architecture, Architecture::Gpt2);
    // n_inner: null means 4 x n_embd.
    assert_eq!(
        (g.hidden_size, g.intermediate_size, g.max_positions),
        (64, 256, 64)
    );
    assert!(g.tie_word_embeddings && g.rope_theta.is_none());
    // The same models described by transformers 4.x configs (rope_theta at the top,
    // torch_dtype; GPT-2 without tie_word_embeddings) give the same config.
    for (name, cfg) in [("tiny-llama", c), ("tiny-gpt2", g)] {
        let dir = copy(
            &format!("v4-{name}"),
            name,
            "model.safetensors",
            "config.v4.json",
        );
        let (_, v4) = open(&dir).unwrap();
        assert_eq!(&v4, cfg, "{name}: 4.x config");
    }
    // Values come through as stored, under the names the file gives them (this GPT-2
    // file nests them under `transformer.`, which its family reads).
    assert!(gpt2.f32("wte.weight").is_err());
    let wte = gpt2.f32("transformer.wte.weight").unwrap();
    let raw = tensors(&fixture("tiny-gpt2").join("model.safetensors"));
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(&raw["transformer.wte.weight"].2);
    assert_eq!(wte, want);
    let rows = gpt2.rows_f32("transformer.wte.weight", 5..7).unwrap();
    assert_eq!(rows, want[5 * 64..7 * 64]);
    assert!(matches!(
        gpt2.rows_f32("transformer.wte.weight", 127..129),
        Err(Error::Checkpoint { .. })
    ));
}

/// tiny-llama3's configs: every scaling in the 5.x form (`rope_parameters`) and the 4.x
/// form (`rope_theta`, `rope_scaling`; linear spelling its type `type`), read alike; and
/// the inverse frequencies and attention factors the loader's rotary table uses are, bit
/// for bit, the float32 ones transformers computed for that fixture (LongRoPE's short and
/// long sets both; dynamic NTK's, within the model's positions, the default ones).
#[test]
fn scaled_rotary_configs_of_transformers_4_and_5_read_alike_and_give_its_frequencies() {
    let text = std::fs::read_to_string(fixture("tiny-llama3").join("reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let llama3 = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_positions: 32,
    };
    let linear = RopeScaling::Linear { factor: 4.0 };
    let floats = |key: &str| -> Vec<f32> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (name, scaling) in [
        ("", Some(llama3)),
        ("linear", Some(linear)),
        ("yarn", None),
        ("longrope", None),
        ("dynamic", None),
    ] {
        let suffix = if name.is_empty() {
            String::new()
        } else {
            format!("_{name}")
        };
        let stem = if name.is_empty() {
            "config".to_string()
        } else {
            format!("config.{name}")
        };
        let [v5, v4] = [format!("{stem}.json"), format!("{stem}.v4.json")].map(|config| {
            let dir = copy(
                &format!("scaled-{config}"),
                "tiny-llama3",
                "model.safetensors",
                &config,
            );
            open(&dir).unwrap().1
        });
        assert_eq!(v4, v5, "{stem}");
        if let Some(scaling) = scaling {
            assert_eq!(v5.rope_scaling, scaling, "{stem}");
        }
        assert_eq!(v5.rope_theta, Some(10_000.0));
        let key = format!("inv_freq{suffix}");
        let ours = Rotary::inverse_frequencies(v5.head_dim, 10_000.0, &v5.rope_scaling);
        let theirs = floats(&key);
        assert_eq!(bits(&ours), bits(&theirs), "{key}: {ours:?} vs {theirs:?}");
        if let Some(factor) = reference.get(format!("attention_factor{suffix}")) {
            assert_eq!(v5.rope_scaling.attention_factor(), factor.as_f64().unwrap());
        }
        if name == "longrope" {
            let ours = Rotary::long_inverse_frequencies(v5.head_dim, 10_000.0, &v5.rope_scaling);
            let theirs = floats("inv_freq_longrope_long");
            assert_eq!(bits(&ours), bits(&theirs), "long: {ours:?} vs {theirs:?}");
            assert_ne!(bits(&ours), bits(&floats("inv_freq_longrope")));
        }
    }
    // The unscaled frequencies are plain tiny-llama's.
    let (_, plain) = open(fixture("tiny-llama")).unwrap();
    assert_eq!(plain.rope_scaling, RopeScaling::None);
}

/// Rotary scaling the loader does not do (an unknown type),
/// and a llama3 or linear block missing a parameter or holding a bad one, are refused
/// with an error naming the key and the value, in either config form: never loaded as
/// some other model.
#[test]
fn unsupported_or_incomplete_rotary_scaling_is_refused_naming_the_key() {
    let dir = scratch("rope-refused");
    let v5: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-llama3").join("config.json")).unwrap(),
    )
    .unwrap();
    let v4: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-llama3").join("config.v4.json")).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixture("tiny-llama3").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let refused = |config: &serde_json::Value, says: &[&str]| {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let (what, message) = open_error(&dir);
        assert_eq!(what, "config.json", "{message}");
        for s in says {
            assert!(
                message.contains(s),
                "{config}: {message:?} does not say {s:?}"
            );
        }
    };
    for (form, base, block) in [
        ("5.x", &v5, "rope_parameters"),
        ("4.x", &v4, "rope_scaling"),
    ] {
        for rope_type in ["su-per-long", "mrope"] {
            let mut c = base.clone();
            c[block]["rope_type"] = serde_json::json!(rope_type);
            refused(
                &c,
                &[&format!("{block}.rope_type"), &format!("{rope_type:?}")],
            );
        }
        // The older spelling `type` is read as well.
        let mut c = base.clone();
        c[block].as_object_mut().unwrap().remove("rope_type");
        c[block]["type"] = serde_json::json!("ntk-by-parts");
        refused(&c, &[&format!("{block}.type"), "\"ntk-by-parts\""]);
        for key in [
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ] {
            let mut c = base.clone();
            c[block].as_object_mut().unwrap().remove(key);
            refused(&c, &[&format!("{block}.{key}"), "missing", "llama3"]);
            let mut c = base.clone();
            c[block][key] = serde_json::json!("eight");
            refused(&c, &[&format!("{block}.{key}"), "\"eight\""]);
        }
        // Values that would give no model at all, or NaN frequencies.
        for (key, value, says) in [
            ("factor", serde_json::json!(0.0), "factor 0"),
            (
                "high_freq_factor",
                serde_json::json!(1.0),
                "high_freq_factor 1",
            ),
            (
                "original_max_position_embeddings",
                serde_json::json!(0),
                "original_max_position_embeddings 0",
            ),
        ] {
            let mut c = base.clone();
            c[block][key] = value;
            refused(&c, &[block, says]);
        }
        // Linear scaling without its factor.
        let mut c = base.clone();
        c[block] = if form == "5.x" {
            serde_json::json!({"rope_type": "linear", "rope_theta": 10000.0})
        } else {
            serde_json::json!({"type": "linear"})
        };
        refused(&c, &[&format!("{block}.factor"), "missing", "linear"]);
        // Rotary on half of each head (the layers turn whole heads); 1 is every column.
        let mut c = base.clone();
        c["partial_rotary_factor"] = serde_json::json!(0.5);
        refused(&c, &["partial_rotary_factor 0.5", "part of each head"]);
        c["partial_rotary_factor"] = serde_json::json!(1.0);
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        open(&dir).unwrap();
        if form == "5.x" {
            let mut c = base.clone();
            c[block]["partial_rotary_factor"] = serde_json::json!(0.5);
            refused(&c, &["rope_parameters.partial_rotary_factor 0.5"]);
        }
    }
}

#[test]
fn half_precision_files_widen_exactly_to_within_half_an_ulp_of_the_f32_weights() {
    let f32s = Checkpoint::open(fixture("tiny-llama")).unwrap();
    // Round to nearest: within half an ulp of the half format, at most 2^-p of the value
    // for p significant bits (bf16: 8, f16: 11), or 2^-25 absolute in f16's subnormals.
    for (file, rel, abs) in [
        ("model.bf16.safetensors", 2f32.powi(-8), 0.0),
        ("model.f16.safetensors", 2f32.powi(-11), 2f32.powi(-25)),
    ] {
        let dir = copy(file, "tiny-llama", file, "config.json");
        let half = Checkpoint::open(&dir).unwrap();
        for name in [
            "model.embed_tokens.weight",
            "model.layers.1.mlp.down_proj.weight",
        ] {
            let (a, b) = (f32s.f32(name).unwrap(), half.f32(name).unwrap());
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    (x - y).abs() <= rel * x.abs() + abs,
                    "{file} {name}: {x} vs {y}"
                );
            }
            assert_ne!(a, b, "{file}: the half values are not the f32 ones");
        }
    }
}

#[test]
fn sharded_checkpoints_open_from_their_index() {
    let dir = scratch("sharded");
    let all = tensors(&fixture("tiny-llama").join("model.safetensors"));
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map: Vec<String> = Vec::new();
    for (i, (name, t)) in all.iter().enumerate() {
        let (file, part) = if i % 2 == 0 {
            ("model-00001-of-00002.safetensors", &mut a)
        } else {
            ("model-00002-of-00002.safetensors", &mut b)
        };
        map.push(format!("{name:?}: {file:?}"));
        part.insert(name.clone(), t.clone());
    }
    write(&dir.join("model-00001-of-00002.safetensors"), &a);
    write(&dir.join("model-00002-of-00002.safetensors"), &b);
    let index = format!(
        "{{\"metadata\": {{}}, \"weight_map\": {{{}}}}}",
        map.join(", ")
    );
    std::fs::write(dir.join("model.safetensors.index.json"), &index).unwrap();
    std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
    let sharded = Checkpoint::open(&dir).unwrap();
    let whole = Checkpoint::open(fixture("tiny-llama")).unwrap();
    for name in all.keys() {
        assert_eq!(
            sharded.f32(name).unwrap(),
            whole.f32(name).unwrap(),
            "{name}"
        );
    }
    // A tensor in both files is refused, naming it.
    let name = a.keys().next().unwrap().clone();
    b.insert(name.clone(), a[&name].clone());
    write(&dir.join("model-00002-of-00002.safetensors"), &b);
    let (what, message) = open_error(&dir);
    assert!(what == name && message.contains("two"), "{what}: {message}");
    // A file the index names that is not there.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let (what, _) = open_error(&dir);
    assert!(what.ends_with("model-00002-of-00002.safetensors"), "{what}");
}

#[test]
fn bad_files_get_an_error_naming_the_file_or_tensor() {
    let src = fixture("tiny-llama").join("model.safetensors");
    let all = tensors(&src);
    let base = |test: &str| copy(test, "tiny-llama", "model.safetensors", "config.json");

    // A missing tensor.
    let dir = base("missing");
    let mut t = all.clone();
    t.remove("model.layers.1.mlp.up_proj.weight");
    write(&dir.join("model.safetensors"), &t);
    let (what, message) = open_error(&dir);
    assert_eq!(what, "model.layers.1.mlp.up_proj.weight");
    assert!(message.contains("missing"), "{message}");

    // A tensor of a dtype the loader does not read.
    let dir = base("dtype");
    let mut t = all.clone();
    let e = t.get_mut("model.norm.weight").unwrap();
    e.0 = StDtype::I32;
    write(&dir.join("model.safetensors"), &t);
    let (what, message) = open_error(&dir);
    assert!(
        what == "model.norm.weight" && message.contains("I32"),
        "{what}: {message}"
    );

    // A config that does not match the tensors (hidden size 32).
    let dir = base("mismatch");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let text = text.replace("\"hidden_size\": 64", "\"hidden_size\": 32");
    std::fs::write(dir.join("config.json"), text).unwrap();
    let (what, message) = open_error(&dir);
    assert!(
        what == "model.embed_tokens.weight" && message.contains("[128, 64]"),
        "{message}"
    );

    // A truncated file.
    let dir = base("truncated");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let (what, message) = open_error(&dir);
    assert!(
        what.ends_with("model.safetensors") && message.contains("truncated"),
        "{message}"
    );

    // Not a safetensors file at all, and a header that is not JSON.
    let dir = base("garbage");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0not json at all!",
    )
    .unwrap();
    let (what, _) = open_error(&dir);
    assert!(what.ends_with("model.safetensors"), "{what}");

    // No weights; no config; a config that is not JSON; an unknown model type; rotary
    // scaling the loader does not do.
    let dir = scratch("empty");
    assert_eq!(
        open_error(&dir).0,
        dir.join("config.json").display().to_string()
    );
    std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
    assert!(open_error(&dir).0.ends_with("model.safetensors"));
    std::fs::copy(
        fixture("tiny-llama/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    // Heads wider than the attention kernel takes (it keeps a turned query per
    // invocation): refused when the config is read, not at the first forward.
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v["head_dim"] = serde_json::json!(512);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let (what, message) = open_error(&dir);
    assert!(
        what == "config.json" && message.contains("head size 512"),
        "{message}"
    );
    for (bad, says) in [
        ("{", "not JSON"),
        ("{\"model_type\": \"bert\"}", "bert"),
        (
            "{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\"}, \"hidden_size\": 64}",
            "yarn",
        ),
        ("{\"model_type\": \"gpt2\", \"n_embd\": 64}", "n_head"),
        // What the layers do not implement is refused, not ignored: 4.x-style scaling,
        // projection biases, a sliding window, GPT-2 variants.
        ("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 8}}", "dynamic"),
        ("{\"model_type\": \"llama\", \"attention_bias\": true}", "attention_bias"),
        ("{\"model_type\": \"llama\", \"max_position_embeddings\": 32768, \"sliding_window\": 4096}", "sliding_window"),
        ("{\"model_type\": \"gpt2\", \"tie_word_embeddings\": false}", "untied"),
        ("{\"model_type\": \"gpt2\", \"scale_attn_by_inverse_layer_idx\": true}", "by layer"),
    ] {
        std::fs::write(dir.join("config.json"), bad).unwrap();
        let (what, message) = open_error(&dir);
        assert!(what == "config.json" && message.contains(says), "{bad}: {message}");
    }
}

#[test]
fn a_tokenizer_beside_the_weights_turns_text_into_the_reference_ids_and_back() {
    use wgpu_tp::load::Tokenizer;
    let tok = Tokenizer::beside(fixture("tiny-llama"))
        .unwrap()
        .expect("tiny-llama has one");
    // The fixture's word-level tokenizer: word "t<i>" is id i.
    let ids = tok.encode("t1 t17 t42 t99 t3 t64 t5").unwrap();
    assert_eq!(ids, [1, 17, 42, 99, 3, 64, 5]);
    assert_eq!(tok.decode(&[70, 93, 15]).unwrap(), "t70 t93 t15");
    // No tokenizer: none; a broken one: an error naming it.
    assert!(Tokenizer::beside(fixture("tiny-gpt2")).unwrap().is_none());
    let dir = scratch("tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    match Tokenizer::beside(&dir) {
        Err(Error::Checkpoint { what, .. }) => assert!(what.ends_with("tokenizer.json"), "{what}"),
        other => panic!("a broken tokenizer.json: {other:?}"),
    }
}

/// The newer families' fixtures read alike from the 5.x and the 4.x config, with the
/// family's knobs; what a family's config asks for and the layers lack is refused naming
/// the key.
#[test]
fn family_configs_of_transformers_4_and_5_read_alike() {
    for (name, architecture, heads, tied) in [
        ("tiny-qwen2", Architecture::Qwen2, (6, 2, 16), true),
        // head_dim 32: the heads total 192 over a hidden size of 64.
        ("tiny-qwen3", Architecture::Qwen3, (6, 2, 32), false),
        ("tiny-phi3", Architecture::Phi3, (6, 2, 16), false),
        ("tiny-gemma2", Architecture::Gemma2, (6, 2, 32), true),
        ("tiny-gemma3", Architecture::Gemma3, (6, 2, 32), true),
    ] {
        let (_, v5) = open(fixture(name)).unwrap();
        let dir = copy(
            &format!("v4-{name}"),
            name,
            "model.safetensors",
            "config.v4.json",
        );
        let (_, v4) = open(&dir).unwrap();
        assert_eq!(v4, v5, "{name}");
        assert_eq!(v5.architecture, architecture);
        assert_eq!((v5.num_heads, v5.num_kv_heads, v5.head_dim), heads);
        assert_eq!(v5.tie_word_embeddings, tied);
        let theta = match name {
            "tiny-phi3" | "tiny-gemma2" => 1e4,
            _ => 1e6,
        };
        assert_eq!(v5.rope_theta, Some(theta));
    }
    let dir = copy(
        "qwen2-refused",
        "tiny-qwen2",
        "model.safetensors",
        "config.json",
    );
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // Qwen2's window: only with use_sliding_window, from max_window_layers on, or in the
    // layers layer_types lists.
    let read = |c: &serde_json::Value| {
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        let (_, config) = open(&dir).unwrap();
        [config.window(0), config.window(1)]
    };
    let mut c = base.clone();
    c["sliding_window"] = serde_json::json!(4);
    c.as_object_mut().unwrap().remove("layer_types");
    assert_eq!(read(&c), [None, None], "use_sliding_window false");
    c["use_sliding_window"] = serde_json::json!(true);
    c["max_window_layers"] = serde_json::json!(1);
    assert_eq!(read(&c), [None, Some(4)]);
    c["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
    assert_eq!(read(&c), [Some(4), None]);
    // Without the key, the config class's 4096.
    let mut d = c.clone();
    d.as_object_mut().unwrap().remove("sliding_window");
    assert_eq!(read(&d), [Some(4096), None]);
    for (key, value, says) in [
        (
            "layer_types",
            serde_json::json!(["full_attention", "chunked_attention"]),
            "layer_types[1] \"chunked_attention\"",
        ),
        (
            "layer_types",
            serde_json::json!(["full_attention", "full_attention", "full_attention"]),
            "layer_types lists 3 layers of 2",
        ),
        ("sliding_window", serde_json::json!(0), "sliding_window 0"),
        ("hidden_size", serde_json::json!("wide"), "`hidden_size`"),
    ] {
        let mut c = c.clone();
        c[key] = value;
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        let (what, message) = open_error(&dir);
        assert!(
            what == "config.json" && message.contains(says),
            "{key}: {message}"
        );
    }
    // Without the q, k, v biases the config implies, the checkpoint is refused.
    let path = dir.join("model.safetensors");
    let mut t = tensors(&path);
    t.remove("model.layers.0.self_attn.k_proj.bias");
    write(&path, &t);
    std::fs::write(dir.join("config.json"), base.to_string()).unwrap();
    let (what, message) = open_error(&dir);
    assert!(
        what == "model.layers.0.self_attn.k_proj.bias" && message.contains("missing"),
        "{what}: {message}"
    );
}

/// The same checkpoint from bytes (what a page fetched: wasm32 has no file system) as
/// from its folder: the same config, tensors and values; several files by name; the same
/// errors naming the file.
#[test]
fn a_checkpoint_from_bytes_reads_as_the_one_opened_from_its_folder() {
    let dir = fixture("tiny-llama");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bytes = Checkpoint::from_bytes(&config, weights.clone()).unwrap();
    let opened = Checkpoint::open(&dir).unwrap();
    assert_eq!(bytes.config_json(), opened.config_json());
    assert_eq!(bytes.tensor_count(), opened.tensor_count());
    assert_eq!(bytes.file_bytes(), opened.file_bytes());
    assert_eq!(
        ModelConfig::read(&bytes).unwrap(),
        ModelConfig::read(&opened).unwrap()
    );
    let all = tensors(&dir.join("model.safetensors"));
    for name in all.keys() {
        assert_eq!(
            bytes.f32(name).unwrap(),
            opened.f32(name).unwrap(),
            "{name}"
        );
    }
    // bf16 weights stay at two bytes, as from the file.
    let half = std::fs::read(dir.join("model.bf16.safetensors")).unwrap();
    let half = Checkpoint::from_bytes(&config, half).unwrap();
    let half_opened = Checkpoint::open(dir.join("model.bf16.safetensors")).unwrap();
    for name in all.keys() {
        assert_eq!(
            half.rows(name, 0..1).unwrap(),
            half_opened.rows(name, 0..1).unwrap(),
            "{name}"
        );
    }

    // Several files, each by its name.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, (name, (d, s, v))) in all.iter().enumerate() {
        let view = (name.clone(), TensorView::new(*d, s.clone(), v).unwrap());
        if i % 2 == 0 {
            a.push(view)
        } else {
            b.push(view)
        }
    }
    let a = safetensors::serialize(a, None).unwrap();
    let b = safetensors::serialize(b, None).unwrap();
    let files = vec![
        ("a.safetensors".to_string(), a.clone()),
        ("b.safetensors".into(), b),
    ];
    let sharded = Checkpoint::from_byte_files(&config, files).unwrap();
    for name in all.keys() {
        assert_eq!(
            sharded.f32(name).unwrap(),
            opened.f32(name).unwrap(),
            "{name}"
        );
    }
    let twice = vec![
        ("a.safetensors".to_string(), a.clone()),
        ("c.safetensors".into(), a),
    ];
    match Checkpoint::from_byte_files(&config, twice) {
        Err(Error::Checkpoint { message, .. }) => assert!(message.contains("two"), "{message}"),
        other => panic!("a tensor in two files: {other:?}"),
    }

    // Errors name what is wrong, as from files.
    match Checkpoint::from_bytes("{not json", weights.clone()) {
        Err(Error::Checkpoint { what, .. }) => assert_eq!(what, "config.json"),
        other => panic!("a bad config: {other:?}"),
    }
    match Checkpoint::from_bytes(&config, weights[..weights.len() / 2].to_vec()) {
        Err(Error::Checkpoint { what, message }) => {
            assert!(message.contains("truncated"), "{what}: {message}")
        }
        other => panic!("truncated weights: {other:?}"),
    }
    match Checkpoint::from_bytes(&config, vec![1, 2, 3]) {
        Err(Error::Checkpoint { what, .. }) => assert_eq!(what, "model.safetensors"),
        other => panic!("not a safetensors file: {other:?}"),
    }
}

/// A tokenizer from the bytes of the files beside the weights reads as the one from the
/// folder; without `tokenizer.json` it is an error naming it.
#[test]
fn a_tokenizer_from_bytes_reads_as_the_one_beside_the_weights() {
    use wgpu_tp::load::Tokenizer;
    let dir = fixture("tiny-llama");
    let names = [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "config.json",
    ];
    let read: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .copied()
        .zip(read.iter().map(Vec::as_slice))
        .collect();
    let bytes = Tokenizer::from_bytes(&files).unwrap();
    let beside = Tokenizer::beside(&dir).unwrap().unwrap();
    let text = "t1 t17 t42 t99 t3 t64 t5";
    assert_eq!(bytes.encode(text).unwrap(), beside.encode(text).unwrap());
    assert_eq!(bytes.decode(&[70, 93, 15]).unwrap(), "t70 t93 t15");
    assert_eq!(bytes.eos_ids(), beside.eos_ids());
    assert_eq!(bytes.chat_template(), beside.chat_template());
    match Tokenizer::from_bytes(&files[1..]) {
        Err(Error::Checkpoint { what, .. }) => assert_eq!(what, "tokenizer.json"),
        other => panic!("no tokenizer.json: {other:?}"),
    }
    match Tokenizer::from_bytes(&[("tokenizer.json", b"{not json")]) {
        Err(Error::Checkpoint { what, .. }) => assert_eq!(what, "tokenizer.json"),
        other => panic!("a broken tokenizer.json: {other:?}"),
    }
}

/// A GGUF file from its bytes reads as the one opened from its path; a part of a split
/// model is refused.
#[test]
fn a_gguf_file_from_bytes_reads_as_the_one_opened() {
    use wgpu_tp::load::Gguf;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/models");
    let path = models.join("llama-k.gguf");
    let bytes = Gguf::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    let opened = Gguf::open(&path).unwrap();
    assert_eq!(bytes.version(), opened.version());
    assert_eq!(bytes.metadata(), opened.metadata());
    assert_eq!(bytes.tensors().len(), opened.tensors().len());
    for t in opened.tensors() {
        assert_eq!(
            bytes.tensor_bytes(&t.name).unwrap(),
            opened.tensor_bytes(&t.name).unwrap(),
            "{}",
            t.name
        );
    }
    let part = std::fs::read(models.join("llama.q8_0-split-00001-of-00003.gguf")).unwrap();
    match Gguf::from_bytes(part) {
        Err(Error::Checkpoint { message, .. }) => assert!(message.contains("split"), "{message}"),
        other => panic!("a split part: {other:?}"),
    }
}
