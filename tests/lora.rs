//! LoRA (issue 25): adapters on the tiny Llama fixture's projections, sharded with their
//! layers. Their gradients equal PEFT's under PyTorch autograd at tp 1-4 on both kinds of
//! group (tp 3: heads split 2, 1, 1; tp 4: each key/value head on two ranks), for
//! adapters on every projection, on q and v only, and on the bf16 weights
//! (`scripts/make_lora_fixtures.py`); training them lowers the loss while every base
//! weight keeps its bits; a saved adapter loads back; bad input is an error.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::groups;
use wgpu_tp::load::{Checkpoint, Gguf};
use wgpu_tp::model::{Lora, LoraConfig, Transformer};
use wgpu_tp::nn::{clip_grad_norm, AdamW, AdamWConfig};
use wgpu_tp::{DistTensor, Error, Group, Numerics};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny(name: &str, g: &Group) -> Transformer {
    let dir = fixtures().join("models").join(name);
    Transformer::from_checkpoint(g, &Checkpoint::open(dir).unwrap()).unwrap()
}

/// The fixture's sequence: 16 ids, each predicting the next (the last none).
fn sequence() -> (Vec<u32>, Vec<Option<u32>>) {
    let ids: Vec<u32> = (0..16).map(|i| (i * 37 + 5) % 128).collect();
    let targets = (0..16).map(|i| ids.get(i + 1).copied()).collect();
    (ids, targets)
}

/// The largest `|a - b|` and the largest `|b|`.
fn worst(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    (diff, scale)
}

/// PEFT's adapters (`all`: r 4, alpha 16 on all seven projections; `qv`: r 2 on q and v
/// only; `bf16`: `all` on the checkpoint's bf16 weights, kept in bf16 on the device)
/// read onto the tiny Llama, and `phi3` (r 4, alpha 8 on Phi-3's fused `qkv_proj` and
/// `gate_up_proj`, one adapter each over the fused outputs, and `o_proj`, `down_proj`)
/// onto the tiny Phi-3, and `gpt2` (r 4, alpha 8 on GPT-2's Conv1D modules, stored `[in,
/// out]`: `c_attn`, both `c_proj`, `c_fc`) onto the tiny GPT-2, at tp 1-4 on both kinds
/// of group: the loss, the logits and
/// every adapter tensor's gradient against PyTorch autograd of PEFT's model.
/// Gradients within 1e-4 of each tensor's largest element: not a derived bound (the
/// model's backward is held to one in its layers' tests and to autograd in
/// tests/model_training.rs); a wiring error here (a row block of another rank or head, a
/// missing scale, a share summed twice) moves elements by their own size, while f32
/// summation order moves them by ~1e-6 of it. Logits within 1e-4 of the largest: the
/// base model's agree with transformers' to 5e-6 (tests/model.rs), and the adapter's
/// term `s·(x·Aᵀ)·Bᵀ` is PEFT's, summed in another order.
#[test]
fn adapters_gradients_are_pefts_at_every_tp() {
    for name in ["all", "qv", "bf16", "phi3", "gpt2"] {
        let dir = fixtures().join("lora").join(name);
        let weights = match name {
            "bf16" => "models/tiny-llama/model.bf16.safetensors",
            "phi3" => "models/tiny-phi3",
            "gpt2" => "models/tiny-gpt2",
            _ => "models/tiny-llama/model.safetensors",
        };
        let checkpoint = fixtures().join(weights);
        let checkpoint = Checkpoint::open(checkpoint).unwrap();
        for tp in 1..=4 {
            for (kind, g) in groups(tp).into_iter().enumerate() {
                let what = format!("{name} tp {tp} kind {kind}");
                matches_peft(&g, &checkpoint, &dir, &what);
            }
        }
    }
}

/// The adapter in `dir` (with its `expected.safetensors`) read onto `checkpoint` on `g`:
/// the logits, the loss and every adapter gradient against PEFT's, within
/// [`adapters_gradients_are_pefts_at_every_tp`]'s tolerances, by each way of computing
/// them: from the model's whole backward (`Lora::grads`), and with the base frozen
/// (`Lora::backward`, with sequence parallelism and without).
fn matches_peft(g: &Group, checkpoint: &Checkpoint, dir: &Path, what: &str) {
    let (ids, targets) = sequence();
    let want = common::f32_tensors(dir.join("expected.safetensors"));
    let model = Transformer::from_checkpoint(g, checkpoint).unwrap();
    let lora = Lora::from_peft(&model, dir).unwrap();
    let logits = model
        .logits(&ids, &mut model.new_cache(16).unwrap())
        .unwrap();
    let (diff, scale) = worst(&logits, &want["logits"]);
    assert!(diff <= 1e-4 * scale, "{what}: logits {diff} of {scale}");
    let step = model.backward(&ids, &targets).unwrap();
    let full = lora.grads(&step).unwrap();
    assert_eq!(full.loss.to_bits(), step.loss.to_bits(), "{what}: loss");
    let frozen = lora.backward(&model, &ids, &targets).unwrap();
    assert_eq!(
        frozen.loss.to_bits(),
        step.loss.to_bits(),
        "{what}: frozen loss"
    );
    let sp = lora
        .backward_sequence_parallel(&model, &ids, &targets)
        .unwrap();
    for (how, grads) in [("whole", full), ("frozen", frozen), ("frozen, sp", sp)] {
        let what = format!("{what}, {how}");
        let loss = f64::from(want["loss"][0]);
        assert!((grads.loss - loss).abs() <= 1e-5 * loss, "{what}: loss");
        let named = lora.unfused(&grads.grads).unwrap();
        let expected = want.keys().filter(|k| k.starts_with("grad.")).count();
        assert_eq!(named.len(), expected, "{what}: every adapter");
        for (tensor, shape, got) in &named {
            let w = &want[&format!("grad.{tensor}")];
            assert_eq!(got.len(), shape[0] * shape[1]);
            let (diff, scale) = worst(got, w);
            assert!(
                diff <= 1e-4 * scale,
                "{what}: {tensor}: max |diff| {diff} of max |g| {scale}"
            );
        }
        // Counted once: the norm of what clipping counts is the whole gradient's.
        let whole: f64 = named
            .iter()
            .flat_map(|(_, _, v)| v)
            .map(|&v| f64::from(v) * f64::from(v))
            .sum();
        let counted: Vec<&DistTensor> = grads.counted.iter().collect();
        let norm = clip_grad_norm(&counted, f32::MAX).unwrap().norm;
        assert!(
            (norm - whole.sqrt()).abs() <= 1e-5 * norm,
            "{what}: counted norm {norm} against {}",
            whole.sqrt()
        );
    }
}

/// Every parameter of the model on the host.
fn weights(model: &Transformer) -> Vec<Vec<f32>> {
    let params = model.parameters();
    params.iter().map(|p| p.to_host().unwrap()).collect()
}

/// `steps` steps of AdamW (lr 0.01) clipped at norm 1 of `lora`'s adapters, the base
/// frozen (`Lora::backward`): the loss before each.
fn train(model: &Transformer, lora: &Lora, steps: usize) -> Vec<f64> {
    let (ids, targets) = sequence();
    let params = lora.parameters();
    let refs: Vec<&DistTensor> = params.iter().collect();
    let mut opt = AdamW::new(&refs, AdamWConfig::default().lr(0.01)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let grads = lora.backward(model, &ids, &targets).unwrap();
        losses.push(grads.loss);
        let counted: Vec<&DistTensor> = grads.counted.iter().collect();
        let clip = clip_grad_norm(&counted, 1.0).unwrap();
        let all: Vec<&DistTensor> = grads.grads.iter().collect();
        opt.step(&refs, &all, clip.scale).unwrap();
    }
    losses
}

/// New adapters (B zero) leave the model's loss at its bits; 20 steps on them lower it
/// under half at tp 1-4 on both kinds of group, while every weight of the model stays
/// the one it loaded, bit for bit (the base is frozen); detached, the model gives its
/// base loss again. The adapters of q and v only, the gaps between their blocks in the
/// fused weight, stay zero.
#[test]
fn adapters_train_at_every_tp_and_the_base_stays_frozen() {
    let (ids, targets) = sequence();
    for tp in 1..=4 {
        for (kind, g) in groups(tp).into_iter().enumerate() {
            let model = tiny("tiny-llama", &g);
            let before = weights(&model);
            let base_loss = model.backward(&ids, &targets).unwrap().loss;
            let lora = Lora::new(&model, LoraConfig::default().seed(7)).unwrap();
            let losses = train(&model, &lora, 20);
            println!("tp {tp} kind {kind}: {losses:.4?}");
            assert_eq!(losses[0].to_bits(), base_loss.to_bits(), "tp {tp}");
            let end = losses[losses.len() - 1];
            assert!(
                end < 0.5 * losses[0],
                "tp {tp}: loss {} -> {end}",
                losses[0]
            );
            assert!(weights(&model) == before, "tp {tp}: the base changed");
            lora.detach();
            let detached = model.backward(&ids, &targets).unwrap().loss;
            assert_eq!(detached.to_bits(), base_loss.to_bits(), "tp {tp}: detached");
        }
    }
    let Some(g) = groups(3).into_iter().next() else {
        return;
    };
    let model = tiny("tiny-llama", &g);
    let config = LoraConfig::default().rank(2).targets(&["q_proj", "v_proj"]);
    let lora = Lora::new(&model, config).unwrap();
    train(&model, &lora, 3);
    let named: HashMap<String, Vec<f32>> = lora
        .to_host()
        .unwrap()
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect();
    assert_eq!(named.len(), 8, "q and v of two layers, A and B");
    assert!(named.values().all(|v| v.iter().any(|&x| x != 0.0)));
    // In the fused B each rank's k rows and the q/v columns of the other's rows are zero.
    assert_eq!(lora.parameters().len(), 4, "one fused A and B per layer");
    for b in lora.parameters().iter().skip(1).step_by(2) {
        let host = b.to_host().unwrap();
        let width = b.shape()[1];
        assert_eq!(width, 4, "q's 2 columns and v's 2");
        let mut at = 0;
        for &rows in b.shard_sizes() {
            // q rows (16 per head), k rows, v rows of this rank: heads 2, 1, 1 over kv 1, 1, 1.
            let q = if at == 0 { 32 } else { 16 };
            let (k, v) = (16, 16);
            assert_eq!(rows, q + k + v);
            let row = |i: usize| &host[(at + i) * width..(at + i + 1) * width];
            assert!(
                (0..q).all(|i| row(i)[2..] == [0.0, 0.0]),
                "q rows: v's columns"
            );
            assert!((q..q + k).all(|i| row(i) == [0.0; 4]), "k rows");
            assert!(
                (q + k..rows).all(|i| row(i)[..2] == [0.0, 0.0]),
                "v rows: q's columns"
            );
            at += rows;
        }
    }
}

/// QLoRA: adapters on a quantized base, the tiny Qwen2's GGUF file in Q8_0 (its
/// projections kept as blocks on the device, read as they are by every product, the input
/// gradient's too), by llama.cpp's module names. The adapters' gradients at tp 3 (heads
/// split 2, 1, 1... over ranks sharing a key/value head) are tp 1's within 1e-4 of each
/// tensor's largest element (the same arithmetic but for the association of the
/// cross-rank sums, ~1e-6 of it); 20 steps lower the loss under half at tp 1 and 3.
#[test]
fn adapters_train_on_a_quantized_base() {
    let gguf = Gguf::open(fixtures().join("gguf/models/qwen2.q8_0.gguf")).unwrap();
    let targets = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    let (ids, labels) = sequence();
    let dir = scratch("qlora");
    let mut first: Option<Vec<wgpu_tp::model::NamedTensor>> = None;
    for tp in [1, 3] {
        let Some(g) = groups(tp).into_iter().next() else {
            return;
        };
        let model = Transformer::from_gguf(&g, &gguf).unwrap();
        let params = model.parameters();
        let quantized = params
            .iter()
            .filter(|p| p.locals()[0].dtype() == wgpu_tp::DType::Q8_0);
        assert!(quantized.count() >= 8, "tp {tp}: the projections are Q8_0");
        // At tp 1 new adapters, one step on them (B nonzero, so that both factors'
        // gradients are), saved; at tp 3 the same adapters read back.
        let lora = match &first {
            None => {
                let config = LoraConfig::default().rank(4).targets(&targets);
                let lora = Lora::new(&model, config).unwrap();
                train(&model, &lora, 1);
                lora.save_peft(&dir, None).unwrap();
                lora
            }
            Some(_) => Lora::from_peft(&model, &dir).unwrap(),
        };
        let step = model.backward(&ids, &labels).unwrap();
        let named = lora.unfused(&lora.grads(&step).unwrap().grads).unwrap();
        assert_eq!(named.len(), 28, "tp {tp}");
        match &first {
            None => first = Some(named),
            Some(want) => {
                for ((name, _, got), (_, _, w)) in named.iter().zip(want) {
                    let (diff, scale) = worst(got, w);
                    assert!(scale > 0.0, "{name}: a zero gradient");
                    assert!(diff <= 1e-4 * scale, "tp {tp}: {name}: {diff} of {scale}");
                }
            }
        }
        let losses = train(&model, &lora, 20);
        let end = losses[losses.len() - 1];
        assert!(
            end < 0.5 * losses[0],
            "tp {tp}: loss {} -> {end}",
            losses[0]
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh folder per call.
fn scratch(what: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-{n}-{what}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Adapters trained at tp 2 and saved as PEFT saves them load at tp 3 and 1 with the same
/// bits, and the model they are attached to gives the trained model's logits (within
/// 1e-5 of the largest: the products are the same sums, but the kernels may be chosen by
/// shape, which differs by tp).
#[test]
fn a_saved_adapter_loads_back_at_another_tp() {
    let (ids, _) = sequence();
    let (Some(g2), Some(g3), Some(g1)) = (
        groups(2).into_iter().next(),
        groups(3).into_iter().next(),
        groups(1).into_iter().next(),
    ) else {
        return;
    };
    let model = tiny("tiny-llama", &g2);
    let lora = Lora::new(&model, LoraConfig::default().rank(4).alpha(8.0)).unwrap();
    train(&model, &lora, 4);
    let dir = scratch("adapter");
    lora.save_peft(&dir, Some("tiny-llama")).unwrap();
    let logits = model
        .logits(&ids, &mut model.new_cache(16).unwrap())
        .unwrap();
    for g in [g3, g1] {
        let other = tiny("tiny-llama", &g);
        let loaded = Lora::from_peft(&other, &dir).unwrap();
        assert_eq!(loaded.to_host().unwrap(), lora.to_host().unwrap());
        assert_eq!(loaded.scale(), 2.0);
        let again = other
            .logits(&ids, &mut other.new_cache(16).unwrap())
            .unwrap();
        let (diff, scale) = worst(&again, &logits);
        assert!(diff <= 1e-5 * scale, "logits {diff} of {scale}");
    }
    // The default targets (`all-linear`) were written resolved, as PEFT writes them; its
    // unresolved form reads as the same adapters.
    let path = dir.join("adapter_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let written = [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ];
    assert_eq!(config["target_modules"], serde_json::json!(written));
    config["target_modules"] = serde_json::json!("all-linear");
    std::fs::write(&path, config.to_string()).unwrap();
    let loaded = Lora::from_peft(&tiny("tiny-llama", &g2), &dir).unwrap();
    assert_eq!(loaded.modules(), lora.modules());
    assert_eq!(loaded.to_host().unwrap(), lora.to_host().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Under tp-invariant numerics LoRA trains to the same bits at tp 1, 2 and 4 on both
/// kinds of group: every step's loss and the trained adapters, on the tiny Llama (its 2
/// key/value heads each on two ranks at tp 4) and the tiny GPT-2 (`[in, out]` weights),
/// the base frozen; the trained adapters' gradients from the model's whole backward are
/// the same bits too; and its gradients are PEFT's at tp 2.
#[test]
fn adapters_train_to_the_same_bits_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    if let Some(g) = common::cached_group(2, false, Numerics::TpInvariant) {
        for (adapter, model) in [("all", "tiny-llama"), ("gpt2", "tiny-gpt2")] {
            let checkpoint = Checkpoint::open(fixtures().join("models").join(model)).unwrap();
            let dir = fixtures().join("lora").join(adapter);
            matches_peft(&g, &checkpoint, &dir, &format!("{adapter}, tp-invariant"));
        }
    }
    for name in ["tiny-llama", "tiny-gpt2"] {
        type Run = (Vec<u64>, Vec<wgpu_tp::model::NamedTensor>);
        let mut first: Option<(Run, Vec<wgpu_tp::model::NamedTensor>)> = None;
        for tp in [1, 2, 4] {
            for shared in [false, true] {
                let Some(g) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
                    return;
                };
                let model = tiny(name, &g);
                let lora = Lora::new(&model, LoraConfig::default().rank(4).seed(3)).unwrap();
                let losses = train(&model, &lora, 3);
                let bits: Vec<u64> = losses.iter().map(|l| l.to_bits()).collect();
                let adapters = lora.to_host().unwrap();
                let (ids, targets) = sequence();
                let step = model.backward(&ids, &targets).unwrap();
                let whole = lora.unfused(&lora.grads(&step).unwrap().grads).unwrap();
                lora.detach();
                match &first {
                    None => first = Some(((bits, adapters), whole)),
                    Some(((b, a), w)) => {
                        assert_eq!(b, &bits, "{name} tp {tp} shared {shared}: losses");
                        for (x, y) in a.iter().zip(&adapters).chain(w.iter().zip(&whole)) {
                            assert_eq!(x.0, y.0);
                            common::assert_same_bits(
                                &x.2,
                                &y.2,
                                &format!("{name} tp {tp}: {}", x.0),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The default targets, `all-linear`, are every projection of the blocks: Llama's seven
/// modules, Phi-3's four (two of them fused), GPT-2's four Conv1D modules, in each layer.
#[test]
fn all_linear_adapts_every_projection_of_the_blocks() {
    let Some(g) = groups(2).into_iter().next() else {
        return;
    };
    for (name, per_layer) in [("tiny-llama", 7), ("tiny-phi3", 4), ("tiny-gpt2", 4)] {
        let model = tiny(name, &g);
        let lora = Lora::new(&model, LoraConfig::default()).unwrap();
        let layers = model.config().num_layers;
        assert_eq!(lora.modules().len(), per_layer * layers, "{name}");
    }
}

fn invalid<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::InvalidArgument { .. } | Error::Shape { .. } | Error::Checkpoint { .. }) => {}
        other => panic!("{what}: {other:?}"),
    }
}

/// Bad input is an error: a rank of 0 or over a module's features, a target no module
/// matches, adapters on a model that has some,
/// another model's gradients or backward, a PEFT config this does not read, a missing or misshapen
/// tensor.
#[test]
fn bad_input_to_lora_is_an_error() {
    let Some(g) = groups(2).into_iter().next() else {
        return;
    };
    let model = tiny("tiny-llama", &g);
    invalid(Lora::new(&model, LoraConfig::default().rank(0)), "rank 0");
    invalid(Lora::new(&model, LoraConfig::default().rank(65)), "rank 65");
    let nope = LoraConfig::default().targets(&["q_proj", "nope"]);
    invalid(Lora::new(&model, nope), "no such module");
    let lora = Lora::new(&model, LoraConfig::default()).unwrap();
    let (ids, targets) = sequence();
    let other = tiny("tiny-gemma2", &g);
    let step = other.backward(&ids, &targets).unwrap();
    invalid(lora.grads(&step), "another model's gradients");
    invalid(
        lora.backward(&other, &ids, &targets),
        "another model's backward",
    );
    invalid(lora.unfused(&[]), "unfused of nothing");
    invalid(Lora::new(&model, LoraConfig::default()), "adapters twice");
    lora.detach();
    invalid(Lora::from_peft(&model, scratch("empty")), "no adapter");
    let from = fixtures().join("lora/qv");
    let copy = |config: &str, tensors: &Path| {
        let dir = scratch("bad");
        std::fs::write(dir.join("adapter_config.json"), config).unwrap();
        std::fs::copy(tensors, dir.join("adapter_model.safetensors")).unwrap();
        dir
    };
    let text = std::fs::read_to_string(from.join("adapter_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tensors = from.join("adapter_model.safetensors");
    for (what, key, value) in [
        ("dora", "use_dora", serde_json::json!(true)),
        ("rank", "r", serde_json::json!(3)),
        (
            "targets",
            "target_modules",
            serde_json::json!(["k_proj", "v_proj"]),
        ),
        ("regex", "target_modules", serde_json::json!(".*_proj")),
        ("not lora", "peft_type", serde_json::json!("IA3")),
    ] {
        let mut bad = config.clone();
        bad[key] = value;
        invalid(
            Lora::from_peft(&model, copy(&bad.to_string(), &tensors)),
            what,
        );
    }
    // More tensors than the targets take: all seven projections' (r 4) for q and v.
    let all = fixtures().join("lora/all/adapter_model.safetensors");
    let mut fewer = config.clone();
    fewer["r"] = serde_json::json!(4);
    let dir = copy(&fewer.to_string(), &all);
    match Lora::from_peft(&model, dir) {
        Err(Error::InvalidArgument { message, .. }) => assert!(message.contains("28 tensors")),
        other => panic!("extra tensors: {other:?}"),
    }
}

/// The base frozen, a step holds none of the base's gradients: at tp 2, over 8 tokens,
/// the most bytes rank 0's tensors hold at once during `Lora::backward` (over what the
/// model and adapters hold before: the forward's activations, the backward's transients,
/// the adapters' gradients; 75 KB when written) stay under the model's own bytes, which
/// the base's gradients alone would take; the whole backward (`Transformer::backward`,
/// then `Lora::grads`) takes more than that. Both give the same loss.
#[test]
fn a_frozen_step_holds_none_of_the_bases_gradients() {
    // Its own devices: no other test's tensors in their counts.
    let Some(g) = common::fresh_group(2) else {
        return;
    };
    let (ids, targets) = sequence();
    let (ids, targets) = (&ids[..8], &targets[..8]);
    let model = tiny("tiny-llama", &g);
    let lora = Lora::new(&model, LoraConfig::default().rank(4)).unwrap();
    let rank = &g.ranks()[0];
    let peak = |f: &dyn Fn() -> f64| {
        g.wait_idle().unwrap();
        rank.reset_peak();
        let before = rank.stats().tensor_bytes;
        let loss = f();
        (rank.stats().peak_tensor_bytes - before, loss)
    };
    let (frozen, frozen_loss) = peak(&|| lora.backward(&model, ids, targets).unwrap().loss);
    let (whole, whole_loss) = peak(&|| {
        let step = model.backward(ids, targets).unwrap();
        lora.grads(&step).unwrap().loss
    });
    assert_eq!(frozen_loss.to_bits(), whole_loss.to_bits());
    let bytes = |t: &DistTensor| t.locals()[0].len() as u64 * 4;
    let model_bytes: u64 = model.parameters().iter().map(bytes).sum();
    assert!(whole > model_bytes, "whole {whole} of {model_bytes}");
    assert!(frozen < model_bytes, "frozen {frozen} of {model_bytes}");
}
