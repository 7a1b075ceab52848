//! A training step at tp 4 against tp 1: the Megatron MLP and a vocabulary-parallel LM
//! head trained by cross-entropy (forward, backward, gradient clipping, AdamW), the loss
//! read back each step as a training loop prints it.

use wgpu_tp::nn::{
    clip_grad_norm, vocab_parallel_cross_entropy, AdamW, AdamWConfig, ParallelLmHead,
};
use wgpu_tp::reference::Rng;
use wgpu_tp::{Activation, DistTensor, Group, HostLinear, ParallelMlp, WeightLayout};

use crate::median;

const TOKENS: usize = 64;
const HIDDEN: usize = 1024;
const FFN: usize = 4096;
const VOCAB: usize = 8192;

/// The median wall time of one training step at `tp` (devices on one adapter).
fn step_seconds(tp: usize, reps: usize) -> Result<f64, wgpu_tp::Error> {
    let group = Group::builder().ranks_on_one_adapter(tp).build()?;
    let mut rng = Rng::new(7);
    let (w1, w2) = (
        rng.xavier(HIDDEN * FFN, HIDDEN, FFN),
        rng.xavier(FFN * HIDDEN, FFN, HIDDEN),
    );
    let (b1, b2) = (vec![0.0; FFN], vec![0.0; HIDDEN]);
    let table = rng.xavier(VOCAB * HIDDEN, HIDDEN, VOCAB);
    let io = WeightLayout::InOut;
    let mlp = ParallelMlp::from_full(
        &group,
        HostLinear::new(&w1, HIDDEN, FFN, io).with_bias(&b1),
        HostLinear::new(&w2, FFN, HIDDEN, io).with_bias(&b2),
        Activation::GeluTanh,
    )?;
    let head = ParallelLmHead::from_rows(&group, VOCAB, HIDDEN, |r| {
        Ok(table[r.start * HIDDEN..r.end * HIDDEN].to_vec())
    })?;
    let x = DistTensor::replicate(&group, &rng.normal(TOKENS * HIDDEN), [TOKENS, HIDDEN])?;
    let targets: Vec<Option<u32>> = (0..TOKENS)
        .map(|i| Some((i * 131 % VOCAB) as u32))
        .collect();
    let (f1, f2) = (mlp.fc1(), mlp.fc2());
    let params = || {
        let missing = || wgpu_tp::Error::InvalidArgument {
            op: "bench",
            message: "a layer without its bias".into(),
        };
        Ok::<_, wgpu_tp::Error>(vec![
            f1.weight(),
            f1.bias().ok_or_else(missing)?,
            f2.weight(),
            f2.bias().ok_or_else(missing)?,
            head.weight(),
        ])
    };
    let mut opt = AdamW::new(&params()?, AdamWConfig::default().lr(1e-4))?;
    let t = median(reps, || {
        let hidden = mlp.forward(&x)?;
        let logits = head.forward(&hidden)?;
        let ce = vocab_parallel_cross_entropy(&logits, &targets)?;
        let h = head.backward(&hidden, &ce.grad)?;
        let m = mlp.backward(&x, &h.input)?;
        let missing = || wgpu_tp::Error::InvalidArgument {
            op: "bench",
            message: "a gradient without its bias".into(),
        };
        let grads = [
            &m.fc1.weight,
            m.fc1.bias.as_ref().ok_or_else(missing)?,
            &m.fc2.weight,
            m.fc2.bias.as_ref().ok_or_else(missing)?,
            &h.weight,
        ];
        let norm = clip_grad_norm(&grads, 1.0)?;
        opt.step(&params()?, &grads, norm.scale)?;
        // The step's updates done before the next is timed.
        for r in group.ranks() {
            r.wait_idle()?;
        }
        Ok(())
    })?;
    Ok(t.as_secs_f64())
}

/// A training step's wall time at tp 4 over tp 1.
pub fn train_step_tp4_vs_tp1(reps: usize) -> Result<f64, wgpu_tp::Error> {
    let one = step_seconds(1, reps)?;
    let four = step_seconds(4, reps)?;
    println!(
        "\nTraining step (MLP {HIDDEN} -> {FFN} -> {HIDDEN}, LM head over {VOCAB}, \
         {TOKENS} tokens: forward, cross-entropy, backward, clipping, AdamW; median of {reps})"
    );
    println!(
        "  tp 1: {:.1} ms   tp 4 (4 devices, one adapter): {:.1} ms",
        one * 1e3,
        four * 1e3
    );
    Ok(four / one)
}

/// Activation bytes a rank keeps between a training step's forward and its backward, with
/// sequence parallelism against without, at tp 4: the Megatron block's replicated
/// activations (the norm's input and the MLP's input, `[tokens, hidden]` each; the MLP's
/// intermediate is recomputed, not kept) become each rank's tokens (`Shard(0)`).
pub fn sp_activation_bytes_vs_tp() -> Result<f64, wgpu_tp::Error> {
    let group = Group::builder().ranks_on_one_adapter(4).build()?;
    let x = Rng::new(8).normal(TOKENS * HIDDEN);
    let norm = wgpu_tp::nn::Norm::new(
        &group,
        wgpu_tp::nn::NormKind::Rms,
        &vec![1.0; HIDDEN],
        None,
        1e-5,
    )?;
    // What rank 0 keeps: the norm's input and its output (the MLP's input).
    let kept = |x: &DistTensor| -> Result<usize, wgpu_tp::Error> {
        let y = norm.forward(x)?;
        Ok((x.locals()[0].len() + y.locals()[0].len()) * 4)
    };
    let without = kept(&DistTensor::replicate(&group, &x, [TOKENS, HIDDEN])?)?;
    let with = kept(&DistTensor::shard(&group, &x, [TOKENS, HIDDEN], 0)?)?;
    println!(
        "
Activations kept per rank, {TOKENS} tokens x {HIDDEN} at tp 4: {without} bytes, \
         {with} with sequence parallelism"
    );
    Ok(with as f64 / without as f64)
}

/// A LoRA step (rank 8 on every projection, the base frozen: `Lora::backward`, clipping,
/// AdamW on the adapters) against a full fine-tuning step (`Transformer::backward`,
/// clipping, AdamW on every parameter) of a synthetic Llama at tp 2 over 64 tokens: the
/// median wall time's ratio and the most bytes rank 0's tensors hold at once during a
/// step (over the model, the optimizer's state and the adapters, held before).
pub struct LoraFigures {
    pub time: f64,
    pub peak_bytes: f64,
}

pub fn lora_step_vs_full_step(reps: usize) -> Result<LoraFigures, Box<dyn std::error::Error>> {
    use wgpu_tp::load::Checkpoint;
    use wgpu_tp::model::{Lora, LoraConfig, Transformer};
    use wgpu_tp::reference::{write_synthetic_llama, SyntheticLlama};
    let m = SyntheticLlama {
        vocab: VOCAB,
        hidden: HIDDEN,
        intermediate: 2816,
        layers: 2,
        heads: 16,
        kv_heads: 16,
        positions: 256,
    };
    let dir = std::env::temp_dir().join("wgpu-tp-bench-lora");
    write_synthetic_llama(&dir, &m, 9)?;
    let group = Group::builder().ranks_on_one_adapter(2).build()?;
    let model = Transformer::from_checkpoint(&group, &Checkpoint::open(&dir)?)?;
    let ids: Vec<u32> = (0..TOKENS).map(|i| (i * 131 % VOCAB) as u32).collect();
    let targets: Vec<Option<u32>> = (0..TOKENS).map(|i| ids.get(i + 1).copied()).collect();
    let rank = &group.ranks()[0];
    // One step's median time and its peak over what is held before it.
    let measure = |step: &mut dyn FnMut() -> Result<(), wgpu_tp::Error>| {
        step()?; // warm: kernels compiled, optimizer state made
        group.wait_idle()?;
        rank.reset_peak();
        let before = rank.stats().tensor_bytes;
        let t = median(reps, || {
            step()?;
            group.wait_idle()
        })?;
        let peak = rank.stats().peak_tensor_bytes.saturating_sub(before);
        Ok::<_, wgpu_tp::Error>((t.as_secs_f64(), peak as f64))
    };
    let params = model.parameters();
    let refs: Vec<&DistTensor> = params.iter().collect();
    let mut opt = AdamW::new(&refs, AdamWConfig::default().lr(1e-5))?;
    let (full_t, full_b) = measure(&mut || {
        let g = model.backward(&ids, &targets)?;
        let counted: Vec<&DistTensor> = g.counted.iter().collect();
        let norm = clip_grad_norm(&counted, 1.0)?;
        let all: Vec<&DistTensor> = g.grads.iter().collect();
        opt.step(&refs, &all, norm.scale)
    })?;
    drop(opt);
    let lora = Lora::new(&model, LoraConfig::default())?;
    let adapters = lora.parameters();
    let refs: Vec<&DistTensor> = adapters.iter().collect();
    let mut opt = AdamW::new(&refs, AdamWConfig::default().lr(1e-3))?;
    let (lora_t, lora_b) = measure(&mut || {
        let g = lora.backward(&model, &ids, &targets)?;
        let counted: Vec<&DistTensor> = g.counted.iter().collect();
        let norm = clip_grad_norm(&counted, 1.0)?;
        let all: Vec<&DistTensor> = g.grads.iter().collect();
        opt.step(&refs, &all, norm.scale)
    })?;
    println!(
        "\nLoRA step against full fine-tuning (synthetic Llama: hidden {HIDDEN}, 2 layers, \
         vocab {VOCAB}; {TOKENS} tokens at tp 2; median of {reps})"
    );
    println!(
        "  full: {:.1} ms, peak {:.1} MB a rank   LoRA r 8 on every projection: {:.1} ms, \
         peak {:.1} MB",
        full_t * 1e3,
        full_b / 1e6,
        lora_t * 1e3,
        lora_b / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(LoraFigures {
        time: lora_t / full_t,
        peak_bytes: lora_b / full_b,
    })
}
