//! GGUF files of every family (made by `scripts/make_gguf_model_fixtures.py` from the
//! tiny safetensors fixtures, laid out as llama.cpp's converter lays them out: its
//! metadata, names, the llama architecture's permuted query and key rows, Gemma's
//! `w + 1` norms) run on our ranks against transformers run on the files' dequantized
//! weights: the logits of every prompt position within the derived bound and the greedy
//! tokens equal, at tp 1, 2, 3 and 4 on both kinds of group. A projection whose inputs
//! are split is cut at whole blocks of its type, so a tp with fewer whole blocks than
//! ranks is refused (`Error::InvalidArgument`) and checked to be; uneven whole-block
//! splits run (qwen2 Q8_0 at tp 2 and 3, qwen3 and gemma Q8_0 at tp 4). Malformed files
//! (a shape contradicting the metadata, a missing tensor, an unknown architecture, an
//! unsupported tensor type) end in `Error::Checkpoint` naming the key or tensor.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wgpu_tp::load::{GgmlType, Gguf, MetaValue};
use wgpu_tp::model::{ModelConfig, Transformer};
use wgpu_tp::Error;

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/models")
        .join(file)
}

struct Reference {
    prompt: Vec<u32>,
    logits: Vec<Vec<f64>>,
    greedy: Vec<u32>,
    margin: f64,
}

/// The reference of `stem`.gguf (`stem`.json).
fn reference(stem: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(&format!("{stem}.json"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Reference {
        prompt: ids("prompt_ids"),
        greedy: ids("greedy_ids"),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect(),
        margin: v["greedy_min_margin"].as_f64().unwrap(),
    }
}

/// The bound of tests/model.rs, 40 M γ(K): every value passes through at most 2 blocks
/// of 9 chained operations and the final norm and head, each a sum of at most K terms,
/// both sides in f32 (the weights are the same values on both: the reference decoded
/// the blocks as the kernels do); M the largest reference logit, at least 4; K the
/// widest inner size, at least 256 (512 for tiny-llama-k's MLP).
fn logit_bound(want: &Reference, c: &ModelConfig) -> f64 {
    let largest = want
        .logits
        .iter()
        .flatten()
        .fold(4.0f64, |m, x| m.max(x.abs()));
    let k = [
        256,
        c.hidden_size,
        c.intermediate_size,
        c.num_heads * c.head_dim,
    ]
    .into_iter()
    .max()
    .unwrap();
    40.0 * largest * wgpu_tp::reference::gamma(k)
}

/// `stem`.gguf at tp 1-4 on both kinds of group against its reference: loads and
/// matches up to tp `most`, is refused (whole blocks fewer than ranks) above it.
fn check_file(stem: &str, most: usize) {
    check_file_as(&format!("{stem}.gguf"), stem, most);
}

/// [`check_file`] of the file `file` against `stem`'s reference.
fn check_file_as(file: &str, stem: &str, most: usize) {
    let gguf = Gguf::open(fixture(file)).unwrap();
    let want = reference(stem);
    let config = ModelConfig::read_gguf(&gguf).unwrap();
    let bound = logit_bound(&want, &config);
    assert!(
        2.0 * bound < want.margin,
        "{stem}: bound {bound} vs margin {}",
        want.margin
    );
    let cache_len = (want.prompt.len() + 1).max(32);
    let mut worst_all = 0.0f64;
    for tp in 1..=4 {
        for (kind, group) in ["one adapter", "one device"]
            .into_iter()
            .zip(common::groups(tp))
        {
            let ctx = format!("{stem} tp {tp} (ranks on {kind})");
            let model = match Transformer::from_gguf(&group, &gguf) {
                Ok(m) => {
                    assert!(
                        tp <= most,
                        "{ctx}: loaded, but expected a refusal above tp {most}"
                    );
                    m
                }
                Err(e) => {
                    assert!(
                        tp > most && matches!(e, Error::InvalidArgument { .. }),
                        "{ctx}: {e}"
                    );
                    eprintln!("{ctx}: refused as expected: {e}");
                    continue;
                }
            };
            let mut cache = model.new_cache(cache_len).unwrap();
            let logits = model.logits(&want.prompt, &mut cache).unwrap();
            let vocab = model.config().vocab_size;
            let mut worst = 0.0f64;
            for (t, row) in want.logits.iter().enumerate() {
                for (j, w) in row.iter().enumerate() {
                    let d = (f64::from(logits[t * vocab + j]) - w).abs();
                    worst = worst.max(d);
                    assert!(
                        d <= bound,
                        "{ctx}: logit [{t}, {j}] off by {d:.3e} > {bound:.3e}"
                    );
                }
            }
            let tokens = model.generate(&want.prompt, want.greedy.len()).unwrap();
            assert_eq!(tokens, want.greedy, "{ctx}: greedy tokens");
            eprintln!("{ctx}: max |logit diff| {worst:.3e} (bound {bound:.3e})");
            worst_all = worst_all.max(worst);
        }
    }
    eprintln!("{stem}: largest |logit diff| over every tp and group {worst_all:.3e}");
}

#[test]
fn llama_f16_matches_transformers() {
    check_file("llama.f16", 4);
}

/// Q8_0: the o projection's 64 inputs are 2 blocks, so tp 3 and 4 are refused.
#[test]
fn llama_q8_0_matches_transformers() {
    check_file("llama.q8_0", 2);
}

/// The same model split in three parts by the gguf package's writer, opened from its
/// first part; a later part alone, or the parts without the last, are refused.
#[test]
fn a_split_gguf_reads_as_the_whole_file() {
    let first = "llama.q8_0-split-00001-of-00003.gguf";
    let whole = Gguf::open(fixture("llama.q8_0.gguf")).unwrap();
    let split = Gguf::open(fixture(first)).unwrap();
    assert_eq!(split.tensors().len(), whole.tensors().len());
    assert!(split.tensors().iter().any(|t| t.file == 2));
    for t in whole.tensors() {
        assert_eq!(
            split.tensor_bytes(&t.name).unwrap(),
            whole.tensor_bytes(&t.name).unwrap(),
            "{}",
            t.name
        );
    }
    check_file_as(first, "llama.q8_0", 2);
    let second = Gguf::open(fixture("llama.q8_0-split-00002-of-00003.gguf"));
    assert!(
        matches!(second, Err(Error::Checkpoint { .. })),
        "{second:?}"
    );
    let dir = std::env::temp_dir().join(format!("wgpu-tp-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for part in [1, 2] {
        let name = format!("llama.q8_0-split-0000{part}-of-00003.gguf");
        std::fs::copy(fixture(&name), dir.join(&name)).unwrap();
    }
    let missing = Gguf::open(dir.join(first));
    std::fs::remove_dir_all(&dir).unwrap();
    match missing {
        Err(Error::Checkpoint { what, .. }) => assert!(what.contains("00003-of-00003"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn llama_q4_0_matches_transformers() {
    check_file("llama.q4_0", 2);
}

/// Llama 3.x rotary scaling, which the converter bakes into `rope_freqs` (a divisor
/// per frequency).
#[test]
fn llama3_q8_0_matches_transformers() {
    check_file("llama3.q8_0", 2);
}

/// K-quants (Q4_K, Q5_K, Q6_K) with Q4_1, Q5_0 and Q8_0: the down projection's 1280
/// inputs are 5 Q6_K blocks, split 3 + 2, 2 + 2 + 1 and 2 + 1 + 1 + 1.
#[test]
fn llama_k_quants_match_transformers() {
    check_file("llama-k", 4);
}

/// llama-k carries bpe.gguf's tokenizer metadata: the same tokenizer, so the same ids
/// as `tokenizers` on the tokenizer fixture's texts, and its chat template.
#[test]
fn a_gguf_models_own_tokenizer_encodes_as_tokenizers_does() {
    let gguf = Gguf::open(fixture("llama-k.gguf")).unwrap();
    let config = ModelConfig::read_gguf(&gguf).unwrap();
    let t = wgpu_tp::load::Tokenizer::from_gguf(&gguf).unwrap();
    let path = fixture("../tokenizer/bpe.reference.json");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = want["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(t.encode(text).unwrap(), ids, "{text:?}");
        assert!(ids.iter().all(|&i| (i as usize) < config.vocab_size));
    }
    assert!(t.chat_template().is_some());
}

/// The o projection's 96 inputs are 3 blocks (2 heads each): 4 and 2 heads at tp 2.
#[test]
fn qwen2_q8_0_matches_transformers() {
    check_file("qwen2.q8_0", 3);
}

/// 6 heads of 32 (a block each) over 4 ranks: 2, 2, 1, 1.
#[test]
fn qwen3_q8_0_matches_transformers() {
    check_file("qwen3.q8_0", 4);
}

#[test]
fn phi3_q8_0_matches_transformers() {
    check_file("phi3.q8_0", 3);
}

#[test]
fn gemma2_q8_0_matches_transformers() {
    check_file("gemma2.q8_0", 4);
}

#[test]
fn gemma3_q8_0_matches_transformers() {
    check_file("gemma3.q8_0", 4);
}

/// The o projection's 64 inputs are 2 blocks.
#[test]
fn gpt2_q8_0_matches_transformers() {
    check_file("gpt2.q8_0", 2);
}

// ---- Malformed files -------------------------------------------------------------------

/// ggml's code of `t`.
fn code(t: GgmlType) -> u32 {
    match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q5_0 => 6,
        GgmlType::Q5_1 => 7,
        GgmlType::Q8_0 => 8,
        GgmlType::Q2K => 10,
        GgmlType::Q3K => 11,
        GgmlType::Q4K => 12,
        GgmlType::Q5K => 13,
        GgmlType::Q6K => 14,
        GgmlType::BF16 => 30,
        other => panic!("no code for {other:?}"),
    }
}

/// A tensor to write: name, dims (innermost first), ggml code, bytes.
type Tensor = (String, Vec<usize>, u32, Vec<u8>);

/// The metadata and tensors of `file`, to be changed and written again.
fn parts(file: &str) -> (BTreeMap<String, MetaValue>, Vec<Tensor>) {
    let g = Gguf::open(fixture(file)).unwrap();
    let tensors = g
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dims.clone(),
                code(t.ggml_type),
                g.tensor_bytes(&t.name).unwrap().to_vec(),
            )
        })
        .collect();
    (g.metadata().clone(), tensors)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A metadata value's type code and bytes (integers as i64, floats as f64).
fn value(v: &MetaValue) -> (u32, Vec<u8>) {
    let mut out = Vec::new();
    let ty = match v {
        MetaValue::Int(n) => {
            out.extend_from_slice(&(*n as i64).to_le_bytes());
            11
        }
        MetaValue::Float(x) => {
            out.extend_from_slice(&x.to_le_bytes());
            12
        }
        MetaValue::Bool(b) => {
            out.push(u8::from(*b));
            7
        }
        MetaValue::Str(s) => {
            put_string(&mut out, s);
            8
        }
        MetaValue::Array(items) => {
            let inner = items.first().map_or(11, |x| value(x).0);
            out.extend_from_slice(&inner.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                out.extend_from_slice(&value(x).1);
            }
            9
        }
        other => panic!("no writer for {other:?}"),
    };
    (ty, out)
}

/// Writes a GGUF v3 file (alignment 32) to a fresh scratch path.
fn write(what: &str, meta: &BTreeMap<String, MetaValue>, tensors: &[Tensor]) -> PathBuf {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        put_string(&mut out, k);
        let (ty, bytes) = value(v);
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    let align = |n: usize| n.div_ceil(32) * 32;
    let mut offset = 0usize;
    for (name, dims, ty, bytes) in tensors {
        put_string(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = align(offset + bytes.len());
    }
    out.resize(align(out.len()), 0);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
        out.resize(align(out.len()), 0);
    }
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "wgpu-tp-gguf-model-{}-{n}-{what}.gguf",
        std::process::id()
    ));
    std::fs::write(&path, out).unwrap();
    path
}

/// The error the config read of `path` ends in: (what it names, its message).
fn checkpoint_error(path: &Path) -> (String, String) {
    let gguf = Gguf::open(path).unwrap();
    match ModelConfig::read_gguf(&gguf) {
        Err(Error::Checkpoint { what, message }) => (what, message),
        other => panic!(
            "{}: expected Error::Checkpoint, got {other:?}",
            path.display()
        ),
    }
}

/// The writer itself: a file rewritten unchanged reads as the original.
#[test]
fn rewritten_fixture_reads_the_same() {
    let (meta, tensors) = parts("llama.q8_0.gguf");
    let path = write("same", &meta, &tensors);
    let a = ModelConfig::read_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let b = ModelConfig::read_gguf(&Gguf::open(fixture("llama.q8_0.gguf")).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_shape_contradicting_the_metadata_is_refused() {
    let (mut meta, tensors) = parts("llama.q8_0.gguf");
    meta.insert("llama.feed_forward_length".into(), MetaValue::Int(96));
    let (what, message) = checkpoint_error(&write("shape", &meta, &tensors));
    assert_eq!(what, "blk.0.ffn_gate.weight", "{message}");
    assert!(
        message.contains("[128, 64]") && message.contains("[96, 64]"),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_refused() {
    let (meta, mut tensors) = parts("llama.q8_0.gguf");
    tensors.retain(|t| t.0 != "blk.1.ffn_down.weight");
    let (what, message) = checkpoint_error(&write("missing", &meta, &tensors));
    assert_eq!(what, "blk.1.ffn_down.weight", "{message}");
}

#[test]
fn an_unknown_architecture_is_refused() {
    let (mut meta, tensors) = parts("llama.f16.gguf");
    meta.insert(
        "general.architecture".into(),
        MetaValue::Str("mamba".into()),
    );
    let (what, message) = checkpoint_error(&write("arch", &meta, &tensors));
    assert_eq!(what, "general.architecture", "{message}");
    assert!(message.contains("mamba"), "{message}");
    // And a mixture of experts, named by its key.
    let (mut meta, tensors) = parts("llama.f16.gguf");
    meta.insert("llama.expert_count".into(), MetaValue::Int(8));
    let (what, _) = checkpoint_error(&write("moe", &meta, &tensors));
    assert_eq!(what, "llama.expert_count");
}

/// Q5_1, Q2_K and Q3_K are read by the directory but not run: refused naming the tensor
/// and the type.
#[test]
fn an_unsupported_tensor_type_is_refused() {
    for (ty, block_values, block_bytes) in [
        (GgmlType::Q5_1, 32, 24),
        (GgmlType::Q2K, 256, 84),
        (GgmlType::Q3K, 256, 110),
    ] {
        // tiny-llama-k's rows are 256 values: whole blocks of every type.
        let (meta, mut tensors) = parts("llama-k.gguf");
        let t = tensors
            .iter_mut()
            .find(|t| t.0 == "blk.0.attn_v.weight")
            .unwrap();
        let (cols, rows) = (t.1[0], t.1[1]);
        t.2 = code(ty);
        t.3 = vec![0; rows * cols / block_values * block_bytes];
        let (what, message) = checkpoint_error(&write("type", &meta, &tensors));
        assert_eq!(what, "blk.0.attn_v.weight", "{message}");
        assert!(message.contains(&format!("{ty:?}")), "{message}");
    }
}

/// Columns of a quantized tensor are read only in whole blocks.
#[test]
fn columns_cutting_a_block_are_refused() {
    let gguf = Gguf::open(fixture("llama.q8_0.gguf")).unwrap();
    let name = "blk.0.attn_output.weight";
    assert_eq!(gguf.cols(name, 0..32).unwrap().len(), 64 * 32);
    match gguf.cols(name, 0..16) {
        Err(Error::Checkpoint { what, .. }) => assert_eq!(what, name),
        other => panic!("{other:?}"),
    }
    // Rows are whole blocks of any count.
    assert_eq!(gguf.rows(name, 3..5).unwrap().len(), 2 * 64);
}

/// What llama.cpp assumes when a key is absent: Gemma 2's window 4096 and caps 50 and
/// 30; Gemma 3 without a window has none; the llama architecture without
/// `head_count_kv` has as many key/value heads as query heads (here refused by the
/// tensors' shapes, which say 2), and without `rope.freq_base` turns at 10000.
#[test]
fn absent_keys_take_llama_cpp_defaults() {
    let (mut meta, tensors) = parts("gemma2.q8_0.gguf");
    for key in [
        "gemma2.attention.sliding_window",
        "gemma2.attn_logit_softcapping",
        "gemma2.final_logit_softcapping",
    ] {
        assert!(meta.remove(key).is_some(), "{key}");
    }
    let c = ModelConfig::read_gguf(&Gguf::open(write("gemma2", &meta, &tensors)).unwrap()).unwrap();
    assert_eq!(c.sliding_window, Some(4096));
    assert_eq!(c.attn_logit_softcapping, Some(50.0));
    assert_eq!(c.final_logit_softcapping, Some(30.0));
    assert_eq!(c.query_pre_attn_scalar, Some(c.head_dim as f64));

    let (mut meta, tensors) = parts("gemma3.q8_0.gguf");
    assert!(meta.remove("gemma3.attention.sliding_window").is_some());
    let c = ModelConfig::read_gguf(&Gguf::open(write("gemma3", &meta, &tensors)).unwrap()).unwrap();
    assert_eq!(c.sliding_window, None);
    assert_eq!(c.window(0), None);

    let (mut meta, tensors) = parts("llama.q8_0.gguf");
    assert!(meta.remove("llama.rope.freq_base").is_some());
    let c = ModelConfig::read_gguf(&Gguf::open(write("theta", &meta, &tensors)).unwrap()).unwrap();
    assert_eq!(c.rope_theta, Some(10_000.0));
    assert!(meta.remove("llama.attention.head_count_kv").is_some());
    let (what, _) = checkpoint_error(&write("kv", &meta, &tensors));
    assert_eq!(what, "blk.0.attn_k.weight");
}

/// A zero, mistyped or missing size is refused naming its key.
#[test]
fn bad_sizes_are_refused_naming_the_key() {
    for (key, value) in [
        ("llama.attention.head_count", Some(MetaValue::Int(0))),
        ("llama.embedding_length", Some(MetaValue::Str("64".into()))),
        (
            "llama.feed_forward_length",
            Some(MetaValue::Array(vec![MetaValue::Int(128); 2])),
        ),
        ("llama.block_count", None),
    ] {
        let (mut meta, tensors) = parts("llama.q8_0.gguf");
        match value {
            Some(v) => meta.insert(key.into(), v),
            None => meta.remove(key),
        };
        let (what, message) = checkpoint_error(&write("key", &meta, &tensors));
        assert_eq!(what, key, "{message}");
    }
}
