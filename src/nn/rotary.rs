//! `Rotary`: the rotary position table every attention layer of a model shares, and
//! `RopeScaling`, how its frequencies are scaled for contexts longer than the trained one.

use std::sync::{Arc, Mutex};

use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::group::Group;

/// How the rotary frequencies are scaled for a context longer than the one a model was
/// trained on: transformers' `rope_type` values `default`, `linear` and `llama3`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
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
    table: Mutex<DistTensor>,
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
        let inner = RotaryInner {
            group: group.clone(),
            head_dim,
            theta,
            scaling,
            table: Mutex::new(Self::table(group, head_dim, positions, theta, scaling, op)?),
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
    pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: RopeScaling) -> Vec<f32> {
        let inv =
            (0..head_dim / 2).map(|j| 1.0 / (theta as f32).powf((2 * j) as f32 / head_dim as f32));
        match scaling {
            RopeScaling::None => inv.collect(),
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

    /// The rows `0..positions` on every rank, once each fits one buffer binding.
    fn table(
        group: &Group,
        head_dim: usize,
        positions: usize,
        theta: f64,
        scaling: RopeScaling,
        op: &'static str,
    ) -> Result<DistTensor> {
        for rank in group.ranks() {
            crate::tensor::check_one_band(rank, [positions, head_dim], op)?;
        }
        let inv = Self::inverse_frequencies(head_dim, theta, scaling);
        let mut table = Vec::with_capacity(positions * head_dim);
        for p in 0..positions {
            let angles: Vec<f64> = inv.iter().map(|f| f64::from(p as f32 * f)).collect();
            table.extend(angles.iter().map(|a| a.cos() as f32));
            table.extend(angles.iter().map(|a| a.sin() as f32));
        }
        DistTensor::replicate(group, &table, [positions, head_dim])
    }

    /// Positions the table covers now.
    pub fn positions(&self) -> usize {
        self.current().map_or(0, |t| t.shape()[0])
    }

    /// The table as it is now.
    pub(super) fn current(&self) -> Result<DistTensor> {
        self.inner
            .table
            .lock()
            .map(|t| t.clone())
            .map_err(|_| Error::invalid("rotary", "table lock poisoned by a panicking thread"))
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
        let have = self.inner.table.lock().map_err(|_| poisoned())?.shape()[0];
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
        let table = Self::table(group, *head_dim, rows, *theta, *scaling, op)?;
        let mut held = held.lock().map_err(|_| poisoned())?;
        if held.shape()[0] < rows {
            *held = table;
        }
        Ok(())
    }
}
