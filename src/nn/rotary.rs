//! `Rotary`: the rotary position table every attention layer of a model shares, and
//! `RopeScaling`, how its frequencies are scaled for contexts longer than the trained one.

use std::sync::{Arc, Mutex};

use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::group::Group;

/// How the rotary frequencies are scaled for a context longer than the one a model was
/// trained on: transformers' `rope_type` values `default`, `linear`, `llama3`, `dynamic`,
/// `yarn` and `longrope`, each computed in the same precision and order as transformers
/// 5.x's `modeling_rope_utils` (tests compare the bits).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum RopeScaling {
    /// The plain frequencies `theta^(-2j / head_dim)` (`default`).
    #[default]
    None,
    /// Every frequency divided by `factor` (`linear`).
    Linear {
        /// What the frequencies are divided by.
        factor: f64,
    },
    /// Llama 3.x (`llama3`): frequencies whose wavelength exceeds
    /// `original_max_positions / low_freq_factor` divided by `factor`, those whose
    /// wavelength is below `original_max_positions / high_freq_factor` kept, and those
    /// between interpolated smoothly.
    Llama3 {
        /// What the low frequencies are divided by.
        factor: f64,
        /// The low end of the interpolated band (as a divisor of the original length).
        low_freq_factor: f64,
        /// The high end of the interpolated band (as a divisor of the original length).
        high_freq_factor: f64,
        /// The context length the model was trained on
        /// (`original_max_position_embeddings`).
        original_max_positions: usize,
    },
    /// Dynamic NTK (`dynamic`): the base grows with the sequence once it is longer than
    /// `max_positions`. The layers never run past `max_positions` (caches are refused
    /// longer), where the base is `theta * (factor * L / L - (factor - 1))^(d / (d - 2))`
    /// with `L = max_positions`, as transformers computes it (`theta` itself for the
    /// usual factors).
    Dynamic {
        /// The NTK factor.
        factor: f64,
        /// The model's `max_position_embeddings`.
        max_positions: usize,
    },
    /// YaRN (`yarn`, Qwen2.5's long-context configs): frequencies blended between
    /// `f / factor` and `f` by a ramp over the dimensions whose wavelengths fall between
    /// `beta_fast` and `beta_slow` turns of the original length; cos and sin scaled by
    /// `attention_factor`.
    Yarn {
        /// The interpolation factor.
        factor: f64,
        /// The context length the model was trained on.
        original_max_positions: usize,
        /// What cos and sin are multiplied by (given, or `0.1 ln(factor) + 1`, or the
        /// ratio of the two `mscale` forms, as transformers infers it).
        attention_factor: f64,
        /// Turns of the original length below which a dimension keeps its frequency
        /// (transformers' default 32).
        beta_fast: f64,
        /// Turns above which a dimension is interpolated (default 1).
        beta_slow: f64,
        /// Whether the ramp's ends are rounded to whole dimensions (default true).
        truncate: bool,
    },
    /// LongRoPE (`longrope`, Phi-3): each frequency divided by its own factor, the
    /// `short` ones while a forward's positions end within `original_max_positions` and
    /// the `long` ones past it (transformers picks them per forward, by its last
    /// position); cos and sin scaled by `attention_factor`.
    LongRope {
        /// One factor per frequency (`head_dim / 2`), for sequences within the original
        /// length.
        short: Vec<f64>,
        /// Likewise, past it.
        long: Vec<f64>,
        /// The context length the model was trained on.
        original_max_positions: usize,
        /// What cos and sin are multiplied by (given, or `sqrt(1 + ln(factor) /
        /// ln(original))` for a factor over 1).
        attention_factor: f64,
    },
}

impl RopeScaling {
    /// What is wrong with these parameters, if anything: a factor that is not a positive
    /// number, a band whose high end is not above its low end, no original length.
    pub fn problem(&self) -> Option<String> {
        let bad = |name: &str, x: f64| {
            (!(x.is_finite() && x > 0.0))
                .then(|| format!("{name} {x} (it must be a positive number)"))
        };
        match *self {
            RopeScaling::None => None,
            RopeScaling::Linear { factor } => bad("factor", factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => bad("factor", factor)
                .or_else(|| bad("low_freq_factor", low_freq_factor))
                .or_else(|| bad("high_freq_factor", high_freq_factor))
                .or_else(|| {
                    (high_freq_factor <= low_freq_factor).then(|| {
                        format!(
                            "high_freq_factor {high_freq_factor} is not above \
                             low_freq_factor {low_freq_factor}"
                        )
                    })
                })
                .or_else(|| {
                    (original_max_positions == 0)
                        .then(|| "original_max_position_embeddings 0".to_string())
                }),
            RopeScaling::Dynamic {
                factor,
                max_positions,
            } => bad("factor", factor)
                .or_else(|| (max_positions == 0).then(|| "max_position_embeddings 0".to_string())),
            RopeScaling::Yarn {
                factor,
                original_max_positions,
                attention_factor,
                beta_fast,
                beta_slow,
                ..
            } => bad("factor", factor)
                .or_else(|| bad("attention_factor", attention_factor))
                .or_else(|| bad("beta_fast", beta_fast))
                .or_else(|| bad("beta_slow", beta_slow))
                .or_else(|| {
                    (original_max_positions == 0)
                        .then(|| "original_max_position_embeddings 0".to_string())
                }),
            RopeScaling::LongRope {
                ref short,
                ref long,
                original_max_positions,
                attention_factor,
            } => short
                .iter()
                .map(|&x| bad("short_factor", x))
                .chain(long.iter().map(|&x| bad("long_factor", x)))
                .flatten()
                .next()
                .or_else(|| bad("attention_factor", attention_factor))
                .or_else(|| {
                    (original_max_positions == 0)
                        .then(|| "original_max_position_embeddings 0".to_string())
                }),
        }
    }

    /// What the table's cos and sin are multiplied by (1 but for YaRN and LongRoPE).
    pub fn attention_factor(&self) -> f64 {
        match *self {
            RopeScaling::Yarn {
                attention_factor, ..
            }
            | RopeScaling::LongRope {
                attention_factor, ..
            } => attention_factor,
            _ => 1.0,
        }
    }

    /// The position a forward must end past to use LongRoPE's long factors.
    fn long_after(&self) -> Option<usize> {
        match *self {
            RopeScaling::LongRope {
                original_max_positions,
                ..
            } => Some(original_max_positions),
            _ => None,
        }
    }
}

/// The rotary table, `[positions, head_dim]` on every rank: row `p` holds the cosines of
/// `p * f_j` for `j < head_dim / 2`, then their sines, where `f_j` are the inverse
/// frequencies `theta^(-2j / head_dim)` scaled as [`RopeScaling`] says
/// ([`Rotary::inverse_frequencies`]).
///
/// Sized by use: it covers the positions asked for when made, and grows (to at least
/// twice as many) when an attention layer makes a cache longer than it covers
/// ([`ParallelAttention::new_cache`](super::ParallelAttention::new_cache)); a row's values do not depend on the table's size.
/// Cheap to clone: clones share one table.
#[derive(Debug, Clone)]
pub struct Rotary {
    inner: Arc<RotaryInner>,
}

#[derive(Debug)]
struct RotaryInner {
    group: Group,
    head_dim: usize,
    theta: f64,
    scaling: RopeScaling,
    table: Mutex<Tables>,
}

/// The table, and LongRoPE's second one (its long factors).
#[derive(Debug)]
struct Tables {
    short: DistTensor,
    long: Option<DistTensor>,
}

impl Rotary {
    /// The table for `positions` positions, computed as Hugging Face computes it (the
    /// inverse frequencies and the angles in f32), with cosine and sine rounded from f64;
    /// unscaled frequencies ([`Rotary::with_scaling`] with [`RopeScaling::None`]).
    ///
    /// # Errors
    /// As [`Rotary::with_scaling`].
    pub fn new(group: &Group, head_dim: usize, positions: usize, theta: f64) -> Result<Self> {
        Self::with_scaling(group, head_dim, positions, theta, RopeScaling::None)
    }

    /// The table for `positions` positions with the frequencies scaled as `scaling` says,
    /// as [`Rotary::new`] otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an odd or zero `head_dim`, no positions, a `theta`
    /// that is not a positive number, or `scaling` parameters that
    /// [`RopeScaling::problem`] finds wrong; [`Error::BufferTooLarge`] for a table over
    /// one buffer binding of some rank (checked before anything is allocated);
    /// allocation errors.
    pub fn with_scaling(
        group: &Group,
        head_dim: usize,
        positions: usize,
        theta: f64,
        scaling: RopeScaling,
    ) -> Result<Self> {
        let op = "rotary.new";
        if head_dim == 0 || !head_dim.is_multiple_of(2) || positions == 0 {
            return Err(Error::invalid(
                op,
                format!("head size {head_dim} (even), {positions} positions"),
            ));
        }
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::invalid(
                op,
                format!("theta {theta}: it must be a positive number"),
            ));
        }
        if let Some(problem) = scaling.problem() {
            return Err(Error::invalid(op, format!("rotary scaling: {problem}")));
        }
        if let RopeScaling::LongRope { short, long, .. } = &scaling {
            if short.len() != head_dim / 2 || long.len() != head_dim / 2 {
                return Err(Error::invalid(
                    op,
                    format!(
                        "longrope: {} short and {} long factors for {} frequencies",
                        short.len(),
                        long.len(),
                        head_dim / 2
                    ),
                ));
            }
        }
        let tables = Self::tables(group, head_dim, positions, theta, &scaling, op)?;
        let inner = RotaryInner {
            group: group.clone(),
            head_dim,
            theta,
            scaling,
            table: Mutex::new(tables),
        };
        Ok(Rotary {
            inner: Arc::new(inner),
        })
    }

    /// The `head_dim / 2` inverse frequencies, in f32 as transformers computes them
    /// (`modeling_rope_utils.py`: `1 / theta^(2j / head_dim)`, then `linear` divides by
    /// the factor and `llama3` rescales by wavelength), operation for operation, so that
    /// each rounds as torch's does: a Python number over a tensor is the tensor's
    /// reciprocal times the number, and every Python number is rounded to f32 first.
    ///
    /// For LongRoPE these are the short factors' ([`Rotary::long_inverse_frequencies`]
    /// gives the long ones).
    pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Vec<f32> {
        Self::frequencies(head_dim, theta, scaling, false)
    }

    /// LongRoPE's frequencies past the original length (its long factors); the same as
    /// [`Rotary::inverse_frequencies`] for every other scaling.
    pub fn long_inverse_frequencies(
        head_dim: usize,
        theta: f64,
        scaling: &RopeScaling,
    ) -> Vec<f32> {
        Self::frequencies(head_dim, theta, scaling, true)
    }

    fn frequencies(head_dim: usize, theta: f64, scaling: &RopeScaling, long: bool) -> Vec<f32> {
        // `base ** (arange(0, dim, 2).float() / dim)` in f32.
        let powers = |base: f64| {
            (0..head_dim / 2).map(move |j| (base as f32).powf((2 * j) as f32 / head_dim as f32))
        };
        let inv = powers(theta).map(|p| 1.0 / p);
        match *scaling {
            RopeScaling::None => inv.collect(),
            RopeScaling::Dynamic {
                factor,
                max_positions,
            } => {
                // transformers: `seq_len = max(seq_len, max_position_embeddings)`, and
                // the layers never run past the latter; Python floats (f64) throughout.
                let (d, l) = (head_dim as f64, max_positions as f64);
                let base = theta * ((factor * l / l) - (factor - 1.0)).powf(d / (d - 2.0));
                powers(base).map(|p| 1.0 / p).collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max_positions,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                let (d, original) = (head_dim as f64, original_max_positions as f64);
                let correction = |turns: f64| {
                    (d * (original / (turns * 2.0 * std::f64::consts::PI)).ln())
                        / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001; // transformers' guard against a zero-width ramp
                }
                let (low32, width32) = (low as f32, (high - low) as f32);
                let factor32 = factor as f32;
                powers(theta)
                    .enumerate()
                    .map(|(j, p)| {
                        let extrapolation = 1.0 / p;
                        let interpolation = 1.0 / (factor32 * p);
                        let ramp = ((j as f32 - low32) / width32).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp;
                        interpolation * (1.0 - keep) + extrapolation * keep
                    })
                    .collect()
            }
            RopeScaling::LongRope {
                ref short,
                long: ref long_factors,
                ..
            } => {
                let factors = if long { long_factors } else { short };
                powers(theta)
                    .zip(factors)
                    .map(|(p, &f)| 1.0 / (f as f32 * p))
                    .collect()
            }
            RopeScaling::Linear { factor } => inv.map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let old = original_max_positions as f64;
                let low_wavelen = (old / low_freq_factor) as f32;
                let high_wavelen = (old / high_freq_factor) as f32;
                let two_pi = std::f64::consts::TAU as f32;
                let (factor32, low32) = (factor as f32, low_freq_factor as f32);
                let band = (high_freq_factor - low_freq_factor) as f32;
                inv.map(|f| {
                    let wavelen = (1.0 / f) * two_pi;
                    let llama = if wavelen > low_wavelen {
                        f / factor32
                    } else {
                        f
                    };
                    // torch's `~(wavelen < high) * ~(wavelen > low)`; no NaN here (f > 0).
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let smooth = ((1.0 / wavelen) * old as f32 - low32) / band;
                        (1.0 - smooth) * llama / factor32 + smooth * llama
                    } else {
                        llama
                    }
                })
                .collect()
            }
        }
    }

    /// The rows `0..positions` on every rank, once each fits one buffer binding: each
    /// row the cosines then the sines of its angles (position times frequency, in f32),
    /// times the scaling's attention factor in f32 (transformers' `cos * scaling`).
    fn table(
        group: &Group,
        head_dim: usize,
        positions: usize,
        inv: &[f32],
        factor: f32,
        op: &'static str,
    ) -> Result<DistTensor> {
        for rank in group.ranks() {
            crate::tensor::check_one_band(rank, [positions, head_dim], op)?;
        }
        let mut table = Vec::with_capacity(positions * head_dim);
        for p in 0..positions {
            let angles: Vec<f64> = inv.iter().map(|f| f64::from(p as f32 * f)).collect();
            table.extend(angles.iter().map(|a| a.cos() as f32 * factor));
            table.extend(angles.iter().map(|a| a.sin() as f32 * factor));
        }
        DistTensor::replicate(group, &table, [positions, head_dim])
    }

    /// The table of `positions` rows, and LongRoPE's long one.
    fn tables(
        group: &Group,
        head_dim: usize,
        positions: usize,
        theta: f64,
        scaling: &RopeScaling,
        op: &'static str,
    ) -> Result<Tables> {
        let factor = scaling.attention_factor() as f32;
        let inv = Self::inverse_frequencies(head_dim, theta, scaling);
        let short = Self::table(group, head_dim, positions, &inv, factor, op)?;
        let long = match scaling.long_after() {
            Some(_) => {
                let inv = Self::long_inverse_frequencies(head_dim, theta, scaling);
                Some(Self::table(group, head_dim, positions, &inv, factor, op)?)
            }
            None => None,
        };
        Ok(Tables { short, long })
    }

    /// Positions the table covers now.
    pub fn positions(&self) -> usize {
        self.current().map_or(0, |t| t.shape()[0])
    }

    /// The table as it is now.
    pub(super) fn current(&self) -> Result<DistTensor> {
        self.current_for(0)
    }

    /// The table a forward whose positions end at `end` (exclusive) turns by: LongRoPE's
    /// long one past its original length, as transformers picks it per forward; the one
    /// table otherwise.
    pub(super) fn current_for(&self, end: usize) -> Result<DistTensor> {
        let tables =
            self.inner.table.lock().map_err(|_| {
                Error::invalid("rotary", "table lock poisoned by a panicking thread")
            })?;
        Ok(match (&tables.long, self.inner.scaling.long_after()) {
            (Some(long), Some(original)) if end > original => long.clone(),
            _ => tables.short.clone(),
        })
    }

    /// Grows the table to cover `positions` (to twice what it covered, when that fits one
    /// buffer binding of every rank); nothing when it does already.
    ///
    /// # Errors
    /// [`Error::BufferTooLarge`] when `positions` rows do not fit one buffer binding;
    /// allocation errors.
    pub fn cover(&self, positions: usize) -> Result<()> {
        let op = "rotary.cover";
        let poisoned = || Error::invalid(op, "table lock poisoned by a panicking thread");
        let have = self
            .inner
            .table
            .lock()
            .map_err(|_| poisoned())?
            .short
            .shape()[0];
        if positions <= have {
            return Ok(());
        }
        let RotaryInner {
            group,
            head_dim,
            theta,
            scaling,
            table: held,
        } = &*self.inner;
        let doubled = have.saturating_mul(2);
        let fits = group
            .ranks()
            .iter()
            .all(|rank| crate::tensor::check_one_band(rank, [doubled, *head_dim], op).is_ok());
        let rows = if fits {
            doubled.max(positions)
        } else {
            positions
        };
        // Built and uploaded with no lock held (an upload submits, and a forward reading
        // the table may run inside another submission's callback); swapped in unless a
        // larger one came first.
        let tables = Self::tables(group, *head_dim, rows, *theta, scaling, op)?;
        let mut held = held.lock().map_err(|_| poisoned())?;
        if held.short.shape()[0] < rows {
            *held = tables;
        }
        Ok(())
    }
}
