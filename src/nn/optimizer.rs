//! Training's optimizer on each rank's shards: AdamW (torch.optim.AdamW's arithmetic, its
//! moments f32 and placed as their parameter, updated in place) and gradient clipping by
//! the global norm (each rank's sums of squares, one exchange of one number per rank).

use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::kernels::dtype::DType;
use crate::ops::{self, AdamWStep};
use crate::tensor::{read_back, Tensor};

/// AdamW's settings, with torch.optim.AdamW's names and defaults.
///
/// ```
/// use wgpu_tp::nn::AdamWConfig;
///
/// let config = AdamWConfig::default().lr(3e-4).weight_decay(0.0);
/// assert_eq!(config.betas, (0.9, 0.999));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct AdamWConfig {
    /// Default 1e-3.
    pub lr: f32,
    /// Default (0.9, 0.999).
    pub betas: (f32, f32),
    /// Default 1e-8.
    pub eps: f32,
    /// Decoupled weight decay. Default 1e-2.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamWConfig {
    /// Sets the field `lr`.
    #[must_use]
    pub fn lr(self, lr: f32) -> Self {
        AdamWConfig { lr, ..self }
    }

    /// Sets the field `betas`.
    #[must_use]
    pub fn betas(self, betas: (f32, f32)) -> Self {
        AdamWConfig { betas, ..self }
    }

    /// Sets the field `eps`.
    #[must_use]
    pub fn eps(self, eps: f32) -> Self {
        AdamWConfig { eps, ..self }
    }

    /// Sets the field `weight_decay`.
    #[must_use]
    pub fn weight_decay(self, weight_decay: f32) -> Self {
        AdamWConfig {
            weight_decay,
            ..self
        }
    }
}

/// AdamW over a fixed list of parameters (`DistTensor`s, sharded or replicated, e.g.
/// a layer's [`weight`](super::ColumnParallelLinear::weight) and
/// [`bias`](super::ColumnParallelLinear::bias)). Each rank updates its own shards in
/// place, as torch.optim.AdamW does operation for operation (`shaders/optimizer.wgsl`):
/// an element's new value depends only on its own value, gradient and moments, so a
/// training run's weights do not depend on how they are sharded.
///
/// A bf16 or f16 parameter (a half-precision checkpoint's weights and embedding table)
/// gets an f32 master copy, made from its values when the optimizer is: each step updates
/// the master copy (the f32 arithmetic, moments in f32) and writes it back into the
/// parameter rounded to nearest even (`shaders/narrow.wgsl`), so that updates smaller than
/// the half type's step accumulate instead of being lost. Gradients are f32 always.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    steps: u32,
    /// Each parameter's placement and shape, and its two moments, placed alike.
    params: Vec<(Placement, [usize; 2], DistTensor, DistTensor)>,
    /// Each half-precision parameter's f32 master copy, per local rank.
    masters: Vec<Option<Vec<Tensor>>>,
}

impl AdamW {
    /// Zero moments for `params`, and f32 master copies of those in bf16 or f16.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a parameter that is quantized or `Partial`, or a
    /// setting out of range (a learning rate or epsilon that is negative or not finite,
    /// betas outside `[0, 1)`); allocation errors.
    pub fn new(params: &[&DistTensor], config: AdamWConfig) -> Result<Self> {
        let op = "adamw";
        let (b1, b2) = config.betas;
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        let valid = ok(config.lr)
            && ok(config.eps)
            && ok(config.weight_decay)
            && (0.0..1.0).contains(&b1)
            && (0.0..1.0).contains(&b2);
        if !valid {
            return Err(Error::invalid(op, format!("settings {config:?}")));
        }
        let mut state = Vec::with_capacity(params.len());
        let mut masters = Vec::with_capacity(params.len());
        for p in params {
            check_param(op, p, true)?;
            masters.push(master_copy(p)?);
            let zeros = || {
                let locals = p
                    .locals()
                    .iter()
                    .map(|t| Tensor::zeros(t.rank(), t.shape()))
                    .collect::<Result<Vec<_>>>()?;
                Ok::<_, Error>(DistTensor::from_parts(
                    p.group(),
                    locals,
                    p.placement(),
                    p.shape(),
                    p.shard_sizes().to_vec(),
                ))
            };
            state.push((p.placement(), p.shape(), zeros()?, zeros()?));
        }
        Ok(AdamW {
            config,
            steps: 0,
            params: state,
            masters,
        })
    }

    /// The settings.
    pub fn config(&self) -> AdamWConfig {
        self.config
    }

    /// Sets the learning rate of the steps to come (a schedule).
    pub fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// One step: every parameter updated in place from its gradient times `grad_scale`
    /// (1, or [`GradNorm::scale`] to clip), encoded and submitted on every rank (nothing
    /// waits). `params` and `grads` are the parameters the optimizer was made for, in the
    /// same order, and their gradients placed and shaped alike.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another number of parameters, or a parameter or
    /// gradient that is not f32; [`Error::Shape`] or [`Error::Placement`] for a gradient
    /// not shaped and placed as its parameter; GPU errors.
    pub fn step(
        &mut self,
        params: &[&DistTensor],
        grads: &[&DistTensor],
        grad_scale: f32,
    ) -> Result<()> {
        let op = "adamw.step";
        if params.len() != self.params.len() || grads.len() != params.len() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} parameters and {} gradients for an optimizer of {}",
                    params.len(),
                    grads.len(),
                    self.params.len()
                ),
            ));
        }
        for ((p, g), (placement, shape, _, _)) in params.iter().zip(grads).zip(&self.params) {
            for (t, half) in [(p, true), (g, false)] {
                check_param(op, t, half)?;
                if t.shape() != *shape {
                    return Err(Error::shape(
                        op,
                        crate::error::fmt_shape(*shape),
                        crate::error::fmt_shape(t.shape()),
                    ));
                }
                t.require_placement(op, |q| q == *placement, "the parameter's placement")?;
            }
        }
        let t = self.steps + 1;
        let c = self.config;
        let (b1, b2) = c.betas;
        let s = AdamWStep {
            lr: c.lr,
            beta1: b1,
            beta2: b2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            // torch: bias_correction1 = 1 - beta1 ** step (Python floats), step_size =
            // lr / bias_correction1, bias_correction2_sqrt = sqrt(1 - beta2 ** step).
            step_size: (f64::from(c.lr) / (1.0 - f64::from(b1).powi(t as i32))) as f32,
            bias_correction2_sqrt: (1.0 - f64::from(b2).powi(t as i32)).sqrt() as f32,
            grad_scale,
        };
        for (p, master) in params.iter().zip(&self.masters) {
            let half = p.locals().iter().any(|t| t.dtype() != DType::F32);
            if half != master.is_some() {
                return Err(Error::invalid(
                    op,
                    "a parameter of another type than the optimizer was made for",
                ));
            }
        }
        crate::rank::batched(op, || {
            let state = self.params.iter().zip(&self.masters);
            for ((p, g), ((_, _, m, v), master)) in params.iter().zip(grads).zip(state) {
                let locals = p.locals();
                for (i, (((w, g), m), v)) in locals
                    .iter()
                    .zip(g.locals())
                    .zip(m.locals())
                    .zip(v.locals())
                    .enumerate()
                {
                    // Logical ranks sharing a device hold a replicated value once: step it
                    // once (with the first of them's moments), not once per rank.
                    if locals[..i].iter().any(|earlier| earlier.same_storage(w)) {
                        continue;
                    }
                    match master {
                        Some(copies) => {
                            ops::adamw_step(&copies[i], g, m, v, s)?;
                            ops::narrow_into(&copies[i], w)?;
                        }
                        None => ops::adamw_step(w, g, m, v, s)?,
                    }
                }
            }
            Ok(())
        })?;
        self.steps = t;
        Ok(())
    }
}

/// A parameter or gradient the optimizer takes: not `Partial`; f32, or for a parameter
/// (`half`) bf16 or f16 too.
fn check_param(op: &'static str, t: &DistTensor, half: bool) -> Result<()> {
    t.require_placement(op, |p| p != Placement::Partial, "Replicate or Shard")?;
    for l in t.locals() {
        let widened = matches!(l.dtype(), DType::BF16 | DType::F16) && !l.is_mixed();
        if !(half && widened) {
            l.require_f32(op)?;
        }
    }
    Ok(())
}

/// A half-precision parameter's f32 master copy (its values widened exactly, on the
/// device: each band of rows looked up as an embedding table's), per local rank; `None`
/// for an f32 one.
fn master_copy(p: &DistTensor) -> Result<Option<Vec<Tensor>>> {
    if p.locals().iter().all(|t| t.dtype() == DType::F32) {
        return Ok(None);
    }
    let widen = |t: &Tensor| {
        let out = Tensor::zeros(t.rank(), t.shape())?;
        for band in out.bands() {
            let rows = band.rows.clone();
            let ids: Vec<u32> = (rows.start as u32..rows.end as u32).collect();
            let looked_up = ops::embed(t, 0, &Tensor::from_ids(t.rank(), &ids)?)?;
            ops::place(&looked_up, &out, [rows.start, 0])?;
        }
        Ok(out)
    };
    let copies = crate::rank::batched("adamw", || p.locals().iter().map(widen).collect())?;
    Ok(Some(copies))
}

/// The global norm of a model's gradients and the factor that clips it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNorm {
    /// The L2 norm of every gradient together (a replicated one counted once).
    pub norm: f64,
    /// `min(1, max_norm / (norm + 1e-6))`, torch's `clip_grad_norm_` factor: pass it to
    /// [`AdamW::step`].
    pub scale: f32,
}

/// The global L2 norm of `grads` and the factor clipping it to `max_norm`, as torch's
/// `clip_grad_norm_` computes them. Each rank sums the squares of its shards in f32 along
/// the dimension they are not split on (a column-split gradient by columns, a row-split
/// or replicated one by rows; a replicated one only on rank 0, so it counts once), and
/// those sums are added in f64 in the order of the full tensors: every sum is over the same
/// elements in the same order at every tp, so the norm (and the run it clips) is the same
/// bits at every tp. Ranks in other processes send their sums in one exchange.
///
/// # Errors
/// [`Error::InvalidArgument`] for a `Partial` or non-f32 gradient, or a `max_norm` that is
/// not positive; [`Error::NonFinite`] when the norm is not finite; GPU, read-back and
/// collective errors.
pub async fn clip_grad_norm_async(grads: &[&DistTensor], max_norm: f32) -> Result<GradNorm> {
    let op = "clip_grad_norm";
    if max_norm.is_nan() || max_norm <= 0.0 {
        return Err(Error::invalid(op, format!("max_norm {max_norm}")));
    }
    let Some(first) = grads.first() else {
        return Ok(GradNorm {
            norm: 0.0,
            scale: 1.0,
        });
    };
    let group = first.group().clone();
    for g in grads {
        check_param(op, g, false)?;
        if !g.group().same_as(&group) {
            return Err(Error::GroupMismatch { op });
        }
    }
    let local = group.local_range();
    // Per gradient, every local rank's sums (none from a replicated one's other ranks).
    let sums = crate::rank::batched(op, || {
        let mut all = Vec::with_capacity(grads.len());
        for g in grads {
            let mut per_rank = Vec::with_capacity(local.len());
            for (i, r) in local.clone().enumerate() {
                let t = &g.locals()[i];
                per_rank.push(match g.placement() {
                    Placement::Replicate if r != 0 => None,
                    Placement::Shard(1) => Some(ops::column_sum_squares(t)?),
                    _ => Some(ops::sum_squares(t)?),
                });
            }
            all.push(per_rank);
        }
        Ok(all)
    })?;
    let mut values: Vec<Vec<f32>> = Vec::new();
    for per_rank in &sums {
        let present: Vec<&Tensor> = per_rank.iter().flatten().collect();
        values.extend(read_back(op, &present).await?);
    }
    let total = if group.process_count() > 1 {
        // Each process's share added in f64, then the processes' in rank order.
        let mine: f64 = values.iter().flatten().map(|&v| f64::from(v)).sum();
        let locals = group
            .ranks()
            .iter()
            .enumerate()
            .map(|(i, r)| Tensor::from_host(r, &[if i == 0 { mine as f32 } else { 0.0 }], [1, 1]))
            .collect::<Result<Vec<_>>>()?;
        let d = DistTensor::from_parts(&group, locals, Placement::Partial, [1, 1], Vec::new());
        f64::from(d.to_host_async().await?[0])
    } else {
        // Gradient by gradient, rank by rank: the full tensors' order.
        values.iter().flatten().map(|&v| f64::from(v)).sum()
    };
    let norm = total.sqrt();
    if !norm.is_finite() {
        return Err(Error::NonFinite {
            op,
            message: format!("the gradients' norm is {norm}"),
        });
    }
    let scale = (f64::from(max_norm) / (norm + 1e-6)).min(1.0) as f32;
    Ok(GradNorm { norm, scale })
}

/// Blocking [`clip_grad_norm_async`].
///
/// Not on wasm32 (nothing may block a page's thread): await the `_async` twin there.
///
/// # Errors
/// As [`clip_grad_norm_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn clip_grad_norm(grads: &[&DistTensor], max_norm: f32) -> Result<GradNorm> {
    crate::rank::block_on(clip_grad_norm_async(grads, max_norm))
}
