//! The model surface as a hostile user or file would try it: sizes a config or a caller
//! gives that no device could hold, values that make the model meaningless, weights that
//! are not numbers, caches of another model, positions past the cache, and a seeded fuzz
//! of config values and tensor headers. Each must end in an `Error` (or the right answer),
//! never a panic, an abort, or an `Ok` holding something that is not a number; and the
//! fuzz must not grow the process (its tests run one at a time: `ALONE`).

mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::Transformer;
use wgpu_tp::nn::Rotary;
use wgpu_tp::reference::{write_synthetic_llama, Rng, SyntheticLlama};
use wgpu_tp::Error;

/// Held by every test of this binary: the fuzz reads the whole process's resident set.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh folder for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TINY: SyntheticLlama = SyntheticLlama {
    vocab: 32,
    hidden: 16,
    intermediate: 32,
    layers: 2,
    heads: 2,
    kv_heads: 1,
    positions: 64,
};

/// A tiny synthetic Llama in a scratch folder named `test`.
fn tiny(test: &str, m: &SyntheticLlama) -> PathBuf {
    let dir = scratch(test);
    write_synthetic_llama(&dir, m, 7).unwrap();
    dir
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// `dir`'s config with `key` (a path of object keys) set to `value`.
fn set_config(dir: &Path, key: &[&str], value: Value) {
    let mut c = config(dir);
    let mut at = &mut c;
    for k in &key[..key.len() - 1] {
        at = at.get_mut(*k).unwrap();
    }
    at[key[key.len() - 1]] = value;
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
}

/// The checkpoint in `dir`, its config read by its family (which checks the tensors).
fn open(dir: &Path) -> wgpu_tp::Result<Checkpoint> {
    let checkpoint = Checkpoint::open(dir)?;
    wgpu_tp::model::ModelConfig::read(&checkpoint)?;
    Ok(checkpoint)
}

fn checkpoint_message(r: wgpu_tp::Result<Checkpoint>) -> String {
    match r {
        Err(Error::Checkpoint { message, .. }) => message,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn huge_config_sizes_are_refused_before_anything_is_allocated() {
    let _alone = alone();
    let dir = tiny("huge-sizes", &TINY);
    // 2^40 layers: refused naming the field, before a list of 2^40 layers' tensors is made.
    set_config(&dir, &["num_hidden_layers"], (1u64 << 40).into());
    let m = checkpoint_message(open(&dir));
    assert!(m.contains("num_hidden_layers 1099511627776"), "{m}");
    set_config(&dir, &["num_hidden_layers"], 3.into());
    let m = checkpoint_message(open(&dir));
    assert!(m.contains("num_hidden_layers 3"), "{m}");
    set_config(&dir, &["num_hidden_layers"], 2.into());
    // Counts past what a kernel can address, and products that overflow.
    for (key, value, says) in [
        (
            "max_position_embeddings",
            1u64 << 40,
            "max_position_embeddings 1099511627776",
        ),
        ("vocab_size", u64::MAX, "vocab_size"),
        ("head_dim", 1 << 33, "head size 8589934592"),
        ("num_attention_heads", 1 << 31, "query heads x head size"),
    ] {
        let before = config(&dir);
        set_config(&dir, &[key], value.into());
        let m = checkpoint_message(open(&dir));
        assert!(m.contains(says), "{key}: {m}");
        std::fs::write(dir.join("config.json"), before.to_string()).unwrap();
    }
    // The largest count a kernel takes loads (the rotary table sized by use, not by the
    // config), and a cache that long is refused by the devices' limits.
    set_config(
        &dir,
        &["max_position_embeddings"],
        u64::from(u32::MAX).into(),
    );
    let checkpoint = Checkpoint::open(&dir).unwrap();
    let Some(group) = common::group(2) else {
        return;
    };
    let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
    let e = model.new_cache(u32::MAX as usize).unwrap_err();
    assert!(matches!(e, Error::BufferTooLarge { .. }), "{e:?}");
    let mut cache = model.new_cache(8).unwrap();
    assert_eq!(model.logits(&[1, 2, 3], &mut cache).unwrap().len(), 3 * 32);
}

#[test]
fn rotary_tables_past_a_buffer_are_refused() {
    let _alone = alone();
    let Some(group) = common::group(2) else {
        return;
    };
    for positions in [1usize << 40, usize::MAX] {
        let e = Rotary::new(&group, 16, positions, 1e4).unwrap_err();
        assert!(matches!(e, Error::BufferTooLarge { .. }), "{e:?}");
    }
    for theta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = Rotary::new(&group, 16, 8, theta).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{theta}: {e:?}");
    }
    // A table grows to what a cache needs, and past a buffer it is refused.
    let r = Rotary::new(&group, 16, 8, 1e4).unwrap();
    r.cover(20).unwrap();
    assert!(r.positions() >= 20);
    assert!(matches!(
        r.cover(usize::MAX),
        Err(Error::BufferTooLarge { .. })
    ));
}

#[test]
fn generate_past_the_models_positions_is_refused() {
    let _alone = alone();
    let Some(group) = common::group(2) else {
        return;
    };
    let dir = tiny("generate-positions", &TINY);
    let model = Transformer::from_checkpoint(&group, &Checkpoint::open(&dir).unwrap()).unwrap();
    for (prompt, new) in [
        (&[1u32, 2][..], usize::MAX),
        (&[1, 2, 3][..], 1 << 40),
        (&[1, 2, 3][..], 63),
    ] {
        let e = model.generate(prompt, new).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{new}: {e:?}");
    }
    // Up to the model's 64 positions runs: the last new token takes none.
    assert_eq!(model.generate(&[1, 2, 3], 62).unwrap().len(), 62);
    let full: Vec<u32> = (0..64).map(|i| i % 32).collect();
    assert_eq!(model.generate(&full, 1).unwrap().len(), 1);
}

#[test]
fn meaningless_config_values_are_refused() {
    let _alone = alone();
    let dir = tiny("meaningless", &TINY);
    for (key, value) in [
        (&["rms_norm_eps"][..], Value::from(-1.0)),
        (&["rms_norm_eps"][..], Value::from(0.0)),
        (&["rms_norm_eps"][..], Value::from("small")),
        (&["rope_parameters", "rope_theta"][..], Value::from(0.0)),
        (&["rope_parameters", "rope_theta"][..], Value::from(-10.0)),
        (&["rope_parameters", "rope_theta"][..], Value::from("big")),
    ] {
        let before = config(&dir);
        set_config(&dir, key, value.clone());
        let m = checkpoint_message(open(&dir));
        let field = key[key.len() - 1];
        assert!(
            m.contains(field) || m.contains("epsilon"),
            "{field} {value}: {m}"
        );
        std::fs::write(dir.join("config.json"), before.to_string()).unwrap();
    }
}

/// `dir`'s weights with tensor `name`'s values replaced by `value`.
fn poison(dir: &Path, name: &str, value: f32) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: HashMap<String, (Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    let entry = t.get_mut(name).unwrap();
    entry.1 = entry
        .1
        .chunks(4)
        .flat_map(|_| value.to_le_bytes())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = t
        .iter()
        .map(|(n, (s, b))| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b);
            (n.clone(), v.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

#[test]
fn non_finite_logits_are_an_error_not_a_token() {
    let _alone = alone();
    let Some(group) = common::group(2) else {
        return;
    };
    for (name, value) in [
        ("model.norm.weight", f32::NAN),
        ("lm_head.weight", f32::INFINITY),
        ("model.layers.0.mlp.down_proj.weight", f32::NAN),
    ] {
        let dir = tiny("non-finite", &TINY);
        poison(&dir, name, value);
        let model = Transformer::from_checkpoint(&group, &Checkpoint::open(&dir).unwrap()).unwrap();
        let mut cache = model.new_cache(8).unwrap();
        let e = model.next_token(&[1, 2, 3], &mut cache).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{name}: {e:?}");
        let e = model.generate(&[1, 2, 3], 4).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{name}: {e:?}");
    }
}

#[test]
fn a_cache_from_another_model_is_refused() {
    let _alone = alone();
    let Some(group) = common::group(2) else {
        return;
    };
    let two = tiny("cache-two", &TINY);
    let one = tiny("cache-one", &SyntheticLlama { layers: 1, ..TINY });
    let a = Transformer::from_checkpoint(&group, &Checkpoint::open(&two).unwrap()).unwrap();
    let b = Transformer::from_checkpoint(&group, &Checkpoint::open(&one).unwrap()).unwrap();
    // The same file loaded twice is two models too.
    let a2 = Transformer::from_checkpoint(&group, &Checkpoint::open(&two).unwrap()).unwrap();
    for (other, what) in [(&b, "fewer layers"), (&a2, "the same file")] {
        let mut cache = other.new_cache(8).unwrap();
        let e = a.logits(&[1, 2], &mut cache).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{what}: {e:?}");
        assert!(cache.is_empty(), "{what}");
    }
    // A clone is the same model: its caches serve both.
    let clone = a.clone();
    let mut cache = clone.new_cache(8).unwrap();
    let x = a.logits(&[1, 2], &mut cache).unwrap();
    assert_eq!(x.len(), 2 * 32);
}

/// One fuzz case: `dir` opened, loaded and run; `Ok(true)` when it ran to logits (which
/// must then all be numbers), `Ok(false)` when refused with an error.
fn run_case(group: &wgpu_tp::Group, dir: &Path) -> bool {
    let Ok(checkpoint) = Checkpoint::open(dir) else {
        return false;
    };
    let Ok(model) = Transformer::from_checkpoint(group, &checkpoint) else {
        return false;
    };
    let c = model.config();
    let ids: Vec<u32> = (0..3).map(|i| (i * 7 % c.vocab_size) as u32).collect();
    let Ok(mut cache) = model.new_cache(4.min(c.max_positions)) else {
        return false;
    };
    match model.logits(&ids[..ids.len().min(c.max_positions)], &mut cache) {
        Ok(logits) => {
            assert!(
                logits.iter().all(|v| v.is_finite()),
                "Ok with logits that are not numbers: {}",
                dir.display()
            );
            true
        }
        Err(_) => false,
    }
}

/// Values a config field is set to: within, at and beyond its limits, and of other types.
fn fuzz_value(rng: &mut Rng) -> Value {
    let pick = rng.next_u64() % 16;
    match pick {
        0 => 0.into(),
        1 => 1.into(),
        2 => (-1).into(),
        3 => (1u64 << 31).into(),
        4 => u64::from(u32::MAX).into(),
        5 => (1u64 << 32).into(),
        6 => (1u64 << 40).into(),
        7 => u64::MAX.into(),
        8 => 1e300.into(),
        9 => (-1.5).into(),
        10 => "text".into(),
        11 => Value::Null,
        12 => 1e-30.into(),
        13 => (rng.next_u64() % 300).into(),
        14 => true.into(),
        _ => (rng.next_u64() % 9 + 1).into(),
    }
}

/// Rewrites the JSON header of `path`'s safetensors file with `edit`, keeping the data.
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut text = header.to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// A family's checkpoint to fuzz: its folder, weights and config as written, tensor
/// names, and the config fields to change.
struct Base {
    dir: PathBuf,
    weights: Vec<u8>,
    config: String,
    names: Vec<String>,
    keys: &'static [&'static str],
}

impl Base {
    fn new(dir: PathBuf, keys: &'static [&'static str]) -> Self {
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        Base {
            dir,
            weights,
            config,
            names,
            keys,
        }
    }
}

/// 400 seeded cases, each a tiny checkpoint (a synthetic Llama or the GPT-2 fixture)
/// with one or two config fields or one tensor header changed to a value within or
/// beyond its limits: each loads and runs to finite logits or ends in an error; none
/// panics (an abort would end the test binary).
#[test]
fn fuzzed_configs_and_headers_end_in_errors_or_numbers() {
    let _alone = alone();
    let Some(group) = common::group(2) else {
        return;
    };
    let gpt2 = scratch("fuzz-gpt2");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-gpt2");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), gpt2.join(f)).unwrap();
    }
    let bases = [
        Base::new(
            tiny("fuzz-llama", &TINY),
            &[
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "max_position_embeddings",
                "rms_norm_eps",
                "rope_theta",
                "tie_word_embeddings",
                "sliding_window",
                "model_type",
            ],
        ),
        Base::new(
            gpt2,
            &[
                "vocab_size",
                "n_embd",
                "n_inner",
                "n_layer",
                "n_head",
                "n_positions",
                "layer_norm_epsilon",
                "tie_word_embeddings",
                "model_type",
            ],
        ),
    ];
    let mut rng = Rng::new(2026);
    let (mut ran, mut refused, mut warm) = (0, 0, None);
    for case in 0..400 {
        let base = &bases[case % 2];
        let dir = &base.dir;
        std::fs::write(dir.join("model.safetensors"), &base.weights).unwrap();
        std::fs::write(dir.join("config.json"), &base.config).unwrap();
        let what;
        if case % 3 == 2 {
            // A tensor header: its shape, dtype or offsets.
            let name = base.names[(rng.next_u64() % base.names.len() as u64) as usize].clone();
            let field = rng.next_u64() % 3;
            let v = fuzz_value(&mut rng);
            what = format!("{name}.{field} = {v}");
            edit_header(&dir.join("model.safetensors"), |h| {
                let t = h.get_mut(&name).unwrap();
                match field {
                    0 => t["shape"] = Value::Array(vec![v.clone(), 16.into()]),
                    1 => {
                        let types = ["F64", "I8", "BF16", "BOOL"];
                        t["dtype"] = types[(v.as_u64().unwrap_or(3) % 4) as usize].into();
                    }
                    _ => t["data_offsets"] = Value::Array(vec![0.into(), v.clone()]),
                }
            });
        } else {
            let mut c: Value = serde_json::from_str(&base.config).unwrap();
            let mut parts = Vec::new();
            for _ in 0..=(case % 2) {
                let key = base.keys[(rng.next_u64() % base.keys.len() as u64) as usize];
                let v = fuzz_value(&mut rng);
                parts.push(format!("{key} = {v}"));
                c[key] = v;
            }
            what = parts.join(", ");
            std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
        }
        match catch_unwind(AssertUnwindSafe(|| run_case(&group, dir))) {
            Ok(true) => ran += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("case {case} ({what}) panicked"),
        }
        if case == 99 {
            warm = common::rss();
        }
    }
    // The 300 cases after the first 100 (pipelines compiled, buffers cached) keep the
    // process flat: a leak of one tensor or one shader a case would be megabytes.
    if let (Some(warm), Some(now)) = (warm, common::rss()) {
        let grown = now.saturating_sub(warm) >> 20;
        assert!(grown < 16, "300 fuzz cases grew the process by {grown} MiB");
    }
    eprintln!("{ran} ran, {refused} refused");
    // The cases reach both ends: some run (values within the limits), most are refused.
    assert!(ran > 20 && refused > 150, "{ran} ran, {refused} refused");
}
