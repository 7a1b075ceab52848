//! The tiny Llama and GPT-2 fixtures (random weights, made by
//! `scripts/make_model_fixtures.py` with Hugging Face transformers in float32) run on our
//! ranks against the reference the script saved: the logits of a fixed prompt, and the
//! greedy tokens (also with Llama 3.x and linear rotary scaling); at tp 1, 2, 3 (heads
//! split unevenly) and 4, on both kinds of group and
//! on a group mixing a Vulkan and a GL rank; decoding from the key/value cache equals
//! recomputing the whole sequence; and under `Numerics::TpInvariant` a synthetic model
//! gives the same logits bits at tp 1, 2, 4 and 8.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use wgpu_tp::load::Checkpoint;
use wgpu_tp::model::Transformer;
use wgpu_tp::nn::ParallelLmHead;
use wgpu_tp::reference::{write_synthetic_llama, SyntheticLlama};
use wgpu_tp::{wgpu, DistTensor, Group, Numerics};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

struct Reference {
    prompt: Vec<u32>,
    logits: Vec<Vec<f64>>,
    greedy: Vec<u32>,
    margin: f64,
}

/// The reference of fixture `name`'s f32 weights (`precision` ""), or of its "bf16" or
/// "f16" weights widened exactly to f32.
fn reference(name: &str, precision: &str) -> Reference {
    let suffix = if precision.is_empty() {
        String::new()
    } else {
        format!("_{precision}")
    };
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
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
        greedy: ids(&format!("greedy_ids{suffix}")),
        logits: v[&format!("logits{suffix}")]
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
        margin: v[&format!("greedy_min_margin{suffix}")].as_f64().unwrap(),
    }
}

/// The bound on |ours - theirs| for a logit of `want`. Both sides compute in f32, in
/// different orders; every value passes through 2 blocks of at most 9 chained operations
/// (Gemma's: norm, q/k norm, projection, attention, projection, post-norm, norm, MLP of 2
/// products, post-norm; Llama's 6 of them) and then the final norm and head, each a sum
/// of at most K = 256 terms (the widest inner size), so each side errs by about 20 γ(256)
/// relative to the magnitudes involved: the activations are normalized, the logits below
/// M = the largest reference logit, at least 4 (8.6 for tiny-gemma3, under 4 for the
/// others). Doubled for the two sides and times M: 40 M γ(256), 2.4e-3 for M = 4.
fn logit_bound(want: &Reference) -> f64 {
    let largest = want
        .logits
        .iter()
        .flatten()
        .fold(4.0f64, |m, x| m.max(x.abs()));
    40.0 * largest * wgpu_tp::reference::gamma(256)
}

/// A group of a Vulkan rank and a GL rank, when both adapters exist (CI has them).
fn mixed_group() -> Option<Group> {
    let found = |b: wgpu::Backends| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: b,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        pollster::block_on(instance.enumerate_adapters(b))
            .into_iter()
            .next()
    };
    match (found(wgpu::Backends::VULKAN), found(wgpu::Backends::GL)) {
        (Some(vk), Some(gl)) => Some(Group::builder().adapters(vec![vk, gl]).build().unwrap()),
        _ => {
            assert!(!common::in_ci(), "CI needs a Vulkan and a GL adapter");
            None
        }
    }
}

/// A fresh folder for one call: tests run in parallel, and one that rewrote a file another
/// has mapped would pull the pages from under it (SIGBUS), so no two calls share one.
fn scratch(what: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("wgpu-tp-{}-{n}-{what}", std::process::id()))
}

/// Fixture `name` with its `precision` weights ("bf16", "f16") as its checkpoint, in a
/// scratch folder; the fixture itself for "".
fn fixture_in(name: &str, precision: &str) -> PathBuf {
    if precision.is_empty() {
        return fixture(name);
    }
    let dir = scratch(&format!("{name}-{precision}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(name).join("config.json"), dir.join("config.json")).unwrap();
    std::fs::copy(
        fixture(name).join(format!("model.{precision}.safetensors")),
        dir.join("model.safetensors"),
    )
    .unwrap();
    dir
}

fn check_model(name: &str, precision: &str) {
    let want = reference(name, precision);
    let checkpoint = Checkpoint::open(fixture_in(name, precision)).unwrap();
    check_against(name, precision, &checkpoint, &want);
}

/// Fixture `name`'s f32 weights with its `config` file as `config.json`, in a scratch
/// folder.
fn fixture_with_config(name: &str, config: &str) -> PathBuf {
    let dir = scratch(&format!("{name}-{config}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(name).join(config), dir.join("config.json")).unwrap();
    std::fs::copy(
        fixture(name).join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    dir
}

/// `checkpoint` at tp 1, 2, 3 and 4 (and on a mixed group) against `want`: the logits of
/// every prompt position within the bound, the greedy tokens exactly, and decoding from
/// the cache equal to recomputing.
fn check_against(name: &str, variant: &str, checkpoint: &Checkpoint, want: &Reference) {
    let bound = logit_bound(want);
    // Room for the prompt and one more token (tiny-llama3's prompt is longer than 32).
    let cache_len = (want.prompt.len() + 1).max(32);
    // The greedy tokens can only follow the reference if the bound is below half the
    // smallest gap between the best and second-best logit the reference saw.
    assert!(
        2.0 * bound < want.margin,
        "{name}: bound {bound} vs margin {}",
        want.margin
    );
    let cases = [1, 2, 3, 4]
        .into_iter()
        .flat_map(|tp| common::groups(tp).into_iter().map(move |g| (tp, g)))
        .chain(mixed_group().map(|g| (2, g)));
    for (tp, group) in cases {
        {
            let backends: Vec<_> = group
                .ranks()
                .iter()
                .map(|r| r.adapter_info().backend)
                .collect();
            let ctx = format!(
                "{name} {variant} tp {tp} ({} ranks, {backends:?})",
                group.ranks().len()
            );
            let model = Transformer::from_checkpoint(&group, checkpoint).unwrap();
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
            // Decoding from the cache equals recomputing: the logits of the prompt plus
            // its first greedy token, one step after the prompt vs all at once.
            let mut longer = want.prompt.clone();
            longer.push(want.greedy[0]);
            let mut fresh = model.new_cache(cache_len).unwrap();
            let all = model.logits(&longer, &mut fresh).unwrap();
            let mut step = model.new_cache(cache_len).unwrap();
            model.logits(&want.prompt, &mut step).unwrap();
            let last = model
                .logits(&longer[longer.len() - 1..], &mut step)
                .unwrap();
            let recomputed = &all[(longer.len() - 1) * vocab..];
            for (a, b) in last.iter().zip(recomputed) {
                // The same kernels in another grouping of rows: only the GEMM's split of
                // K may differ, within the same bound.
                assert!(
                    f64::from((a - b).abs()) <= bound,
                    "{ctx}: cached vs recomputed {a} {b}"
                );
            }
            eprintln!("{ctx}: max |logit diff| {worst:.3e}");
        }
    }
}

#[test]
fn tiny_llama_matches_transformers() {
    check_model("tiny-llama", "");
}

/// Llama 3.x rotary scaling (factor 8, the band 1 to 4 of 32 original positions) on a
/// 36-token prompt, so that positions past the original length run; read from the 5.x
/// config (`rope_parameters`) and from the 4.x one (`rope_theta` and `rope_scaling`).
#[test]
fn tiny_llama3_rotary_scaling_matches_transformers() {
    let want = reference("tiny-llama3", "");
    assert!(
        want.prompt.len() > 32,
        "the prompt must outrun the original length"
    );
    for config in ["config.json", "config.v4.json"] {
        let checkpoint = Checkpoint::open(fixture_with_config("tiny-llama3", config)).unwrap();
        check_against("tiny-llama3", config, &checkpoint, &want);
    }
}

/// Linear rotary scaling (factor 4) on the same weights and prompt, from the 5.x config
/// and from the 4.x one (which spells it `rope_scaling: {type: linear}`).
#[test]
fn tiny_llama3_weights_with_linear_rotary_scaling_match_transformers() {
    let want = reference("tiny-llama3", "linear");
    for config in ["config.linear.json", "config.linear.v4.json"] {
        let checkpoint = Checkpoint::open(fixture_with_config("tiny-llama3", config)).unwrap();
        check_against("tiny-llama3", config, &checkpoint, &want);
    }
}

/// Qwen2.5's layers: biases on q, k and v split with their heads (6 over 2 key/value
/// heads: uneven at tp 4, fewer key/value heads than ranks), a tied head, rotary base
/// 1e6, a window named but off (`use_sliding_window` false); from both config forms.
#[test]
fn tiny_qwen2_matches_transformers() {
    let want = reference("tiny-qwen2", "");
    for config in ["config.json", "config.v4.json"] {
        let checkpoint = Checkpoint::open(fixture_with_config("tiny-qwen2", config)).unwrap();
        check_against("tiny-qwen2", config, &checkpoint, &want);
    }
}

/// YaRN (factor 4 over 32 original positions: a ramp over the frequencies and cos/sin
/// scaled by its attention factor), LongRoPE (a factor per frequency; the 36-token prompt
/// ends past the original 32 positions, so the long factors turn every forward, as in
/// transformers) and dynamic NTK (the default frequencies within the model's positions)
/// on tiny-llama3's weights, from both config forms.
#[test]
fn tiny_llama3_weights_with_yarn_longrope_and_dynamic_scaling_match_transformers() {
    for name in ["yarn", "longrope", "dynamic"] {
        let want = reference("tiny-llama3", name);
        for config in [
            format!("config.{name}.json"),
            format!("config.{name}.v4.json"),
        ] {
            let checkpoint = Checkpoint::open(fixture_with_config("tiny-llama3", &config)).unwrap();
            check_against("tiny-llama3", &config, &checkpoint, &want);
        }
    }
}

/// Phi-3.5's layers: the fused `qkv_proj` split per head block and `gate_up_proj` per
/// half (6 heads over 2 key/value heads), LongRoPE with the original length at the top
/// level (the 36-token prompt ends past its 32, so the long factors turn it); from both
/// config forms.
#[test]
fn tiny_phi3_matches_transformers() {
    let want = reference("tiny-phi3", "");
    for config in ["config.json", "config.v4.json"] {
        let checkpoint = Checkpoint::open(fixture_with_config("tiny-phi3", config)).unwrap();
        check_against("tiny-phi3", config, &checkpoint, &want);
    }
}

/// A family fixture (`tiny-<family>`) from both config forms: its own config
/// (`variant` "") or a variant's (`config.<variant>.json`, the same weights).
fn check_family(name: &str, variant: &str) {
    let want = reference(name, variant);
    let stem = if variant.is_empty() {
        "config".to_string()
    } else {
        format!("config.{variant}")
    };
    for config in [format!("{stem}.json"), format!("{stem}.v4.json")] {
        let checkpoint = Checkpoint::open(fixture_with_config(name, &config)).unwrap();
        check_against(name, &config, &checkpoint, &want);
    }
}

/// Qwen2's window from `max_window_layers` (1) on: layer 0 full, layer 1 sliding over 8
/// positions (5.x lists them in `layer_types`, 4.x derives them); Phi-3's window (6) in
/// every layer.
#[test]
fn qwen2_and_phi3_windows_match_transformers() {
    check_family("tiny-qwen2", "window");
    check_family("tiny-phi3", "window");
}

/// Mistral's sliding window (8 positions, in every layer) under the 36-token prompt:
/// positions past the window are never read, prefill and cached decoding alike.
#[test]
fn tiny_mistral_sliding_window_matches_transformers() {
    check_family("tiny-mistral", "");
}

/// Qwen3's RMSNorm on each query and key head before rotary, with head_dim 32 over a
/// hidden size of 64 (the heads total 192).
#[test]
fn tiny_qwen3_matches_transformers() {
    check_family("tiny-qwen3", "");
}

/// Gemma 3's text model: `1 + w` norms before and after attention and MLP, embeddings
/// times sqrt(96), GeGLU, query_pre_attn_scalar 24, q/k norms, a sliding layer (window 8,
/// rotary base 1e4) then a full one (base 1e6, linear scaling 4), tied head.
#[test]
fn tiny_gemma3_matches_transformers() {
    check_family("tiny-gemma3", "");
}

/// Gemma 2: Gemma 3's layers without q/k norms, the attention logits capped at 2 and
/// the final logits at 3 (small caps, so that they matter for these logits), every
/// other layer sliding over 8 positions.
#[test]
fn tiny_gemma2_matches_transformers() {
    check_family("tiny-gemma2", "");
}

/// A capped head's logits are `tanh(v / cap) * cap` of the plain head's, in f32, bit
/// for bit, in the full logits and the greedy token alike; a cap that is not a positive
/// number is refused.
#[test]
fn a_soft_capped_head_caps_every_logit_it_reads() {
    let Some(group) = common::group(2) else {
        return;
    };
    let (vocab, hidden) = (40, 8);
    let w: Vec<f32> = (0..vocab * hidden)
        .map(|i| ((i * 7919 % 97) as f32 - 48.0) / 8.0)
        .collect();
    let rows = |r: std::ops::Range<usize>| Ok(w[r.start * hidden..r.end * hidden].to_vec());
    let plain = ParallelLmHead::from_rows(&group, vocab, hidden, rows).unwrap();
    let capped = plain.clone().with_softcap(3.0).unwrap();
    let x: Vec<f32> = (0..2 * hidden).map(|i| (i as f32 - 7.0) / 4.0).collect();
    let x = DistTensor::replicate(&group, &x, [2, hidden]).unwrap();
    let raw = pollster::block_on(plain.full_logits_async(&x)).unwrap();
    let want: Vec<f32> = raw.iter().map(|v| (v / 3.0).tanh() * 3.0).collect();
    let got = pollster::block_on(capped.full_logits_async(&x)).unwrap();
    common::assert_same_bits(&got, &want, "capped logits");
    assert!(
        raw.iter().any(|v| v.abs() > 3.0),
        "the cap must matter here"
    );
    let last = &want[vocab..];
    let best = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b });
    assert_eq!(
        pollster::block_on(capped.greedy_async(&x)).unwrap(),
        best as u32
    );
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            plain.clone().with_softcap(bad),
            Err(wgpu_tp::Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn tiny_gpt2_matches_transformers() {
    check_model("tiny-gpt2", "");
}

/// The half-precision checkpoints against transformers' run of the same weights widened
/// to f32 (what f32 accumulation over half weights must give): the f32 bound holds, as
/// the kernels widen exactly.
#[test]
fn tiny_llama_in_bf16_and_f16_matches_transformers() {
    check_model("tiny-llama", "bf16");
    check_model("tiny-llama", "f16");
}

#[test]
fn tiny_gpt2_in_bf16_and_f16_matches_transformers() {
    check_model("tiny-gpt2", "bf16");
    check_model("tiny-gpt2", "f16");
}

#[test]
fn a_bf16_checkpoint_keeps_its_weights_at_two_bytes_a_value() {
    // Devices of its own: the other tests of this binary run on the shared groups at the
    // same time, and their tensors would count.
    let Some(group) = common::fresh_group(2) else {
        return;
    };
    let bytes = |name: &str, precision: &str| {
        let checkpoint = Checkpoint::open(fixture_in(name, precision)).unwrap();
        let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
        group.wait_idle().unwrap();
        let held: u64 = group.ranks().iter().map(|r| r.stats().tensor_bytes).sum();
        drop(model);
        held
    };
    // The tiny Llama: hidden 64, 2 layers of q, k, v, o (64 x 64, 32 x 64, 32 x 64,
    // 64 x 64) and gate, up, down (3 x 128 x 64), head 128 x 64, embeddings 128 x 64:
    // 90,112 weights. The tiny GPT-2: hidden 64, 2 layers of c_attn (64 x 192), c_proj
    // (64 x 64), c_fc (64 x 256) and the MLP's c_proj (256 x 64), the embeddings and the
    // head tied to them (2 x 128 x 64): 114,688. Each 2 bytes instead of 4 (every rank's
    // shard an even count: no padding); the norms, biases, rotary table and GPT-2's
    // learned positions stay f32.
    for (name, weights) in [("tiny-llama", 90_112u64), ("tiny-gpt2", 114_688)] {
        let (f32_bytes, bf16_bytes) = (bytes(name, ""), bytes(name, "bf16"));
        assert_eq!(
            f32_bytes - bf16_bytes,
            2 * weights,
            "{name}: {f32_bytes} vs {bf16_bytes}"
        );
    }
}

/// Under `Numerics::TpInvariant` every family's parts keep their bits at any tp: the
/// window (Mistral, Phi-3, Gemma), q/k norms (Qwen3, Gemma 3), soft-caps (Gemma 2), GeGLU,
/// the embedding scale,
/// `1 + w` and post norms, the fused projections, LongRoPE, q/k/v biases (Qwen2), on
/// both kinds of group. (The fixtures' 6 heads and 128 inner features split evenly only
/// at tp 1 and 2, as tp-invariant numerics need.)
#[test]
fn every_family_keeps_its_logits_bits_at_tp_1_and_2_under_tp_invariant_numerics() {
    for (name, config) in [
        ("tiny-mistral", "config.json"),
        ("tiny-qwen2", "config.window.json"),
        ("tiny-qwen3", "config.json"),
        ("tiny-phi3", "config.window.json"),
        ("tiny-gemma2", "config.json"),
        ("tiny-gemma3", "config.json"),
    ] {
        let checkpoint = Checkpoint::open(fixture_with_config(name, config)).unwrap();
        let prompt = &reference(name, "").prompt;
        let mut first: Option<(Vec<f32>, Vec<u32>)> = None;
        for (tp, shared) in [(1, false), (2, false), (2, true)] {
            let Some(group) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
                return;
            };
            let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
            let mut cache = model.new_cache(prompt.len()).unwrap();
            let logits = model.logits(prompt, &mut cache).unwrap();
            let tokens = model.generate(prompt, 4).unwrap();
            match &first {
                None => first = Some((logits, tokens)),
                Some((l, t)) => {
                    let ctx = format!("{name} {config}, tp {tp}, shared {shared}");
                    common::assert_same_bits(&logits, l, &ctx);
                    assert_eq!(&tokens, t, "{ctx}: tokens");
                }
            }
        }
    }
}

#[test]
fn tp_invariant_logits_keep_their_bits_at_tp_1_2_4_and_8() {
    // 8 query heads over 4 key/value heads, every inner size a multiple of 8 (the
    // tp-invariant K blocks): each product splits whole blocks at every tp.
    let m = SyntheticLlama {
        vocab: 96,
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 8,
        kv_heads: 4,
        positions: 32,
    };
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-invariant", std::process::id()));
    write_synthetic_llama(&dir, &m, 11).unwrap();
    let checkpoint = Checkpoint::open(&dir).unwrap();
    let prompt = [3u32, 14, 15, 92, 65, 35];
    let mut first: Option<(Vec<f32>, Vec<u32>)> = None;
    for tp in [1, 2, 4, 8] {
        for shared in [false, true] {
            let Some(group) = common::cached_group(tp, shared, Numerics::TpInvariant) else {
                return;
            };
            let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
            let mut cache = model.new_cache(16).unwrap();
            let logits = model.logits(&prompt, &mut cache).unwrap();
            let tokens = model.generate(&prompt, 6).unwrap();
            match &first {
                None => first = Some((logits, tokens)),
                Some((l, t)) => {
                    let ctx = format!("tp {tp}, shared {shared}");
                    common::assert_same_bits(&logits, l, &ctx);
                    assert_eq!(&tokens, t, "{ctx}: tokens");
                }
            }
        }
    }
}

#[test]
fn bad_ids_and_positions_are_refused() {
    let Some(group) = common::group(2) else {
        return;
    };
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let model = Transformer::from_checkpoint(&group, &checkpoint).unwrap();
    let invalid =
        |r: wgpu_tp::Result<Vec<f32>>| matches!(r, Err(wgpu_tp::Error::InvalidArgument { .. }));
    let mut cache = model.new_cache(4).unwrap();
    // A token past the vocabulary of 128; no tokens at all.
    assert!(invalid(model.logits(&[5, 128], &mut cache)));
    assert!(invalid(model.logits(&[], &mut cache)));
    // Past the cache's 4 positions, then past the model's 64.
    assert!(invalid(model.logits(&[1, 2, 3, 4, 5], &mut cache)));
    assert!(model.new_cache(0).is_err() && model.new_cache(65).is_err());
    // The cache still works after the refusals.
    assert_eq!(model.logits(&[1, 2], &mut cache).unwrap().len(), 2 * 128);
    assert_eq!(cache.len(), 2);
}

#[test]
fn logical_ranks_sharing_a_device_normalize_a_replicated_value_once() {
    let Some(group) = common::cached_group(4, true, Numerics::Fast) else {
        return;
    };
    let w: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 / 16.0).collect();
    let norm = wgpu_tp::nn::Norm::new(&group, wgpu_tp::nn::NormKind::Rms, &w, None, 1e-5).unwrap();
    let x = wgpu_tp::DistTensor::replicate(&group, &[0.5; 32], [2, 16]).unwrap();
    let rank = &group.ranks()[0];
    let before = rank.stats().dispatches;
    let y = norm.forward(&x).unwrap();
    // One dispatch on the shared device, not one per logical rank; every rank reads it.
    assert_eq!(rank.stats().dispatches - before, 1);
    let per_rank = y.to_host_per_rank().unwrap();
    assert!(per_rank.iter().all(|v| v == &per_rank[0]));
}

#[test]
fn a_prompt_wider_than_a_buffer_binding_runs_in_pieces_with_the_same_bits() {
    // 5 KiB bindings: the tiny Llama's widest row per token at tp 1 is its [gate | up]
    // row of 256 floats (1 KiB), so 5 rows fit a binding but tensors are banded in whole
    // multiples of 4 rows: a forward takes 4 tokens and a 10-token prompt runs as 4 + 4 + 2.
    // Its cache rows are 256 bytes: 20 positions fit one band, 21 do not.
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_buffer_size = 5120;
    limits.max_storage_buffer_binding_size = 5120;
    let small = common::build(
        Group::builder()
            .ranks_on_one_adapter(1)
            .numerics(Numerics::TpInvariant)
            .required_limits(limits),
        "5 KiB buffers",
    );
    let whole = common::cached_group(1, false, Numerics::TpInvariant);
    let (Some(small), Some(whole)) = (small, whole) else {
        return;
    };
    let checkpoint = Checkpoint::open(fixture("tiny-llama")).unwrap();
    let prompt: Vec<u32> = (0..10).map(|i| 3 + 11 * i).collect();
    let run = |group: &Group| {
        let model = Transformer::from_checkpoint(group, &checkpoint).unwrap();
        let mut cache = model.new_cache(16).unwrap();
        let logits = model.logits(&prompt, &mut cache).unwrap();
        let next = model.next_token(&[7, 9], &mut cache).unwrap();
        (logits, next, cache.len())
    };
    let (got, want) = (run(&small), run(&whole));
    assert_eq!(got.2, 12);
    assert_eq!(got.1, want.1, "the greedy token after the pieces");
    assert_eq!(got.0.len(), 10 * 128);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got.0),
        bits(&want.0),
        "logits of the prompt in pieces"
    );
    // A cache over one band is refused when made, not at the first forward.
    let model = Transformer::from_checkpoint(&small, &checkpoint).unwrap();
    assert!(model.new_cache(20).is_ok());
    assert!(matches!(
        model.new_cache(21),
        Err(wgpu_tp::Error::BufferTooLarge { .. })
    ));
}
