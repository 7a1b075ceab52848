//! PyTorch autograd's gradients of the tiny models (`scripts/make_backward_fixtures.py`,
//! tests/fixtures/backward/torch.safetensors) against a [`ModelGrads`], shared by
//! tests/model_training.rs and the workers of tests/processes.rs.

use std::collections::HashMap;

use wgpu_tp::model::ModelGrads;

/// How our parameters (in `Transformer::parameters` order) name transformers' tensors:
/// one each, or a fused one split into consecutive parts of so many values.
pub enum Names {
    One(String),
    Split(Vec<(String, usize)>),
}

/// The names of tiny Llama's or Gemma 2's parameters (Gemma 2: norms after each layer
/// too, and the head tied to the embedding).
fn llama_like(layers: usize, [h, q, kv, i]: [usize; 4], gemma: bool, qk_norm: bool) -> Vec<Names> {
    let one = |n: String| Names::One(n);
    let mut v = vec![one("model.embed_tokens.weight".into())];
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        v.push(one(format!("{p}input_layernorm.weight")));
        v.push(Names::Split(vec![
            (format!("{p}self_attn.q_proj.weight"), q * h),
            (format!("{p}self_attn.k_proj.weight"), kv * h),
            (format!("{p}self_attn.v_proj.weight"), kv * h),
        ]));
        v.push(one(format!("{p}self_attn.o_proj.weight")));
        if qk_norm {
            v.push(one(format!("{p}self_attn.q_norm.weight")));
            v.push(one(format!("{p}self_attn.k_norm.weight")));
        }
        if gemma {
            v.push(one(format!("{p}post_attention_layernorm.weight")));
            v.push(one(format!("{p}pre_feedforward_layernorm.weight")));
        } else {
            v.push(one(format!("{p}post_attention_layernorm.weight")));
        }
        v.push(Names::Split(vec![
            (format!("{p}mlp.gate_proj.weight"), i * h),
            (format!("{p}mlp.up_proj.weight"), i * h),
        ]));
        v.push(one(format!("{p}mlp.down_proj.weight")));
        if gemma {
            v.push(one(format!("{p}post_feedforward_layernorm.weight")));
        }
    }
    v.push(one("model.norm.weight".into()));
    // Tied: the head's gradient is the embedding's.
    v.push(one(if gemma {
        "model.embed_tokens.weight".into()
    } else {
        "lm_head.weight".into()
    }));
    v
}

/// Tiny GPT-2's: LayerNorms with biases, learned positions, Conv1D ([in, out]) weights
/// (the fused attention one as transformers stores it, its rank blocks fused otherwise at
/// tp > 1), the head tied to the embedding.
fn gpt2(layers: usize) -> Vec<Names> {
    let one = |n: &str| match n.contains("c_attn") {
        true => Names::Split(vec![(format!("transformer.{n}"), 0)]),
        false => Names::One(format!("transformer.{n}")),
    };
    let mut v = vec![one("wte.weight"), one("wpe.weight")];
    for l in 0..layers {
        for n in [
            "ln_1",
            "attn.c_attn",
            "attn.c_proj",
            "ln_2",
            "mlp.c_fc",
            "mlp.c_proj",
        ] {
            v.push(one(&format!("h.{l}.{n}.weight")));
            v.push(one(&format!("h.{l}.{n}.bias")));
        }
    }
    v.push(one("ln_f.weight"));
    v.push(one("ln_f.bias"));
    v.push(one("wte.weight"));
    v
}

/// The fixture's models with their parameters' names (tiny-`name`).
pub fn tiny_models() -> Vec<(&'static str, Vec<Names>)> {
    vec![
        ("llama", llama_like(2, [64, 64, 32, 128], false, false)),
        ("gemma2", llama_like(2, [96, 192, 64, 128], true, false)),
        ("qwen3", llama_like(2, [64, 192, 64, 128], false, true)),
        ("gemma3", llama_like(2, [96, 192, 64, 128], true, true)),
        ("gpt2", gpt2(2)),
    ]
}

/// `step` (the fixture's sequence on tiny-`model`) against autograd's: the loss within
/// 1e-5 relative, and every gradient `names` gives one tensor for (fused ones too when
/// `step`'s group has one rank: split back into transformers' tensors) within 1e-4 of
/// its tensor's largest element (tests/model_training.rs says why).
pub fn assert_autograds(
    f: &HashMap<String, Vec<f32>>,
    model: &str,
    names: &[Names],
    step: &ModelGrads,
    ctx: &str,
) {
    let loss = f64::from(f[&format!("{model}.loss")][0]);
    assert!(
        (step.loss - loss).abs() <= 1e-5 * loss,
        "{model} {ctx}: loss {} vs torch {loss}",
        step.loss
    );
    assert_eq!(step.grads.len(), names.len(), "{model}: parameters");
    for (grad, names) in step.grads.iter().zip(names) {
        let whole = grad.group().world_size() == 1;
        let ours = grad.to_host().unwrap();
        let parts = match names {
            Names::One(n) => vec![(n, ours.len())],
            Names::Split(_) if !whole => continue,
            // A fused tensor of one part (GPT-2's c_attn): all of it.
            Names::Split(parts) if parts.len() == 1 => vec![(&parts[0].0, ours.len())],
            Names::Split(parts) => parts.iter().map(|(n, k)| (n, *k)).collect(),
        };
        let mut at = 0;
        for (name, n) in parts {
            let want = &f[&format!("{model}.grad.{name}")];
            assert_eq!(want.len(), n, "{model}: {name}");
            let got = &ours[at..at + n];
            at += n;
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(want)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-4 * scale,
                "{model} {ctx}: {name}: max |diff| {worst} of max |g| {scale}"
            );
        }
        assert_eq!(at, ours.len(), "{model}: every value compared");
    }
}
