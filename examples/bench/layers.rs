//! The Megatron MLP at tp 4 against tp 1, and the seed-shaped verify from process start.

use std::process::Command;
use std::time::Instant;

use wgpu_tp::reference::Rng;
use wgpu_tp::{Activation, DistTensor, Group, HostLinear, Numerics, ParallelMlp, WeightLayout};

use crate::median;

const BATCH: usize = 64;
const HIDDEN: usize = 1024;
const FFN: usize = 4096;

fn mlp_seconds(tp: usize, reps: usize, numerics: Numerics) -> Result<f64, wgpu_tp::Error> {
    let group = Group::builder()
        .ranks_on_one_adapter(tp)
        .numerics(numerics)
        .build()?;
    let mut rng = Rng::new(7);
    let w1 = rng.xavier(HIDDEN * FFN, HIDDEN, FFN);
    let w2 = rng.xavier(FFN * HIDDEN, FFN, HIDDEN);
    let (b1, b2) = (rng.normal(FFN), rng.normal(HIDDEN));
    let layer =
        |w: &'static [f32], b, i, o| HostLinear::new(w, i, o, WeightLayout::InOut).with_bias(b);
    let (w1, w2): (&'static [f32], &'static [f32]) = (w1.leak(), w2.leak());
    let mlp = ParallelMlp::from_full(
        &group,
        layer(w1, &b1, HIDDEN, FFN),
        layer(w2, &b2, FFN, HIDDEN),
        Activation::GeluTanh,
    )?;
    let x = DistTensor::replicate(&group, &rng.normal(BATCH * HIDDEN), [BATCH, HIDDEN])?;
    let t = median(reps, || {
        mlp.forward(&x)?.to_host()?;
        Ok(())
    })?;
    Ok(t.as_secs_f64())
}

/// Wall time of the MLP (forward and read-back of the output) at tp 4 over tp 1.
pub fn mlp_tp4_vs_tp1(reps: usize) -> Result<f64, wgpu_tp::Error> {
    let one = mlp_seconds(1, reps, Numerics::Fast)?;
    let four = mlp_seconds(4, reps, Numerics::Fast)?;
    println!("\nMegatron MLP, batch {BATCH}, hidden {HIDDEN}, ffn {FFN}, gelu (median of {reps})");
    println!(
        "  tp 1: {:.1} ms   tp 4 (4 devices, one adapter): {:.1} ms",
        one * 1e3,
        four * 1e3
    );
    Ok(four / one)
}

/// Wall time of the tp-4 MLP with `Numerics::TpInvariant` over the default numerics.
pub fn tp_invariant_cost(reps: usize) -> Result<f64, wgpu_tp::Error> {
    let fast = mlp_seconds(4, reps, Numerics::Fast)?;
    let invariant = mlp_seconds(4, reps, Numerics::TpInvariant)?;
    println!(
        "\nThe same MLP at tp 4, tp-invariant numerics: {:.1} ms (default {:.1} ms)",
        invariant * 1e3,
        fast * 1e3
    );
    Ok(invariant / fast)
}

/// verify's wall time from process start at tp 4, in seconds.
pub struct Verify {
    /// Best of 3 with the driver's shader cache as it is (warm after the first run).
    pub warm: f64,
    /// Best of 3 with Mesa's shader cache off (`MESA_SHADER_CACHE_DISABLE=true`): every
    /// pipeline compiled on every rank's device, as on a machine's first run. Other
    /// drivers ignore the variable.
    pub cold: f64,
}

/// Builds the verify example (release), then times it from process start at tp 4, warm
/// and cold ([`Verify`]).
pub fn verify_seconds() -> Result<Verify, Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--example", "verify"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err("could not build the verify example".into());
    }
    let exe = std::env::current_exe()?.with_file_name("verify");
    let best_of_3 = |cold: bool| -> Result<f64, Box<dyn std::error::Error>> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let mut cmd = Command::new(&exe);
            cmd.args(["--tp-size", "4"]);
            if cold {
                cmd.env("MESA_SHADER_CACHE_DISABLE", "true");
            }
            let t = Instant::now();
            let out = cmd.output()?;
            let secs = t.elapsed().as_secs_f64();
            if !out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                return Err(format!("verify failed: {stdout}").into());
            }
            best = best.min(secs);
        }
        Ok(best)
    };
    let v = Verify {
        warm: best_of_3(false)?,
        cold: best_of_3(true)?,
    };
    println!(
        "\nverify --tp-size 4 (release, from process start, best of 3): {:.3} s, \
         with MESA_SHADER_CACHE_DISABLE=true {:.3} s",
        v.warm, v.cold
    );
    Ok(v)
}
