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
