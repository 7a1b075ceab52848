//! Sampling the next token: the options ([`Sampling`]), their state over a generation
//! ([`Sampler`]: the ids seen, the random stream) and the draw from the candidates the
//! head proposes ([`ParallelLmHead::candidates_async`](crate::nn::ParallelLmHead::candidates_async)).
//!
//! The chain, in transformers' order, on the f32 logits of the last position:
//! 1. **repetition penalty** `p`: the logit `x` of every id already in the sequence (the
//!    ids the [`Sampler`] was shown) becomes `x / p` when `x >= 0`, else `x * p` (f32);
//! 2. **temperature** `t`: every logit becomes `x / t` (f32); `t == 0` is greedy (the
//!    largest value after the penalty, the lower id among equals; no random number);
//! 3. the tokens ordered by value, largest first, the lower id first among equals;
//!    weights `w = exp(x - max)` in f64;
//! 4. **top-k**: the first `k` tokens;
//! 5. **top-p**: the shortest prefix whose summed weights (in order, f64) reach `top_p *
//!    Z`, `Z` the summed weights of the tokens top-k left (all of them without top-k);
//! 6. **min-p**: the tokens with `w >= min_p` (a probability at least `min_p` times the
//!    largest's);
//! 7. the **draw**: `u` the next number of the stream (below), `T = u * W` with `W` the
//!    summed weights of the kept tokens in order; the first kept token whose running sum
//!    exceeds `T`, the last kept one when rounding leaves none.
//!
//! The random stream is SplitMix64 (Steele, Lea and Flood 2014) seeded with the seed:
//! `state += 0x9E3779B97F4A7C15; z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z =
//! (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^ (z >> 31)` (wrapping), and `u = (z >> 11) *
//! 2^-53` in `[0, 1)`. Every sampled token takes exactly one number; greedy ones none.
//!
//! **Candidates.** No rank sends its logits: each keeps its shard's best `top_k` (or
//! [`Sampling::candidates`] without top-k) and sums the rest. With top-k, or when every
//! token is a candidate (a vocabulary of at most `candidates` per rank), the chain sees
//! exactly the tokens it would on the full row, in the same order, and sums them in the
//! same order: the token is the one the chain above picks from the full logits, and with
//! the same logits (`Numerics::TpInvariant`) the same at every tp. Otherwise the best
//! `candidates` tokens are known exactly and the rest only as sums: top-p's `Z` adds
//! those sums (rounded per shard, so a cut within about 1e-15 of `top_p` could fall
//! differently), and a chain that would keep more than the known tokens (temperature
//! alone, a `top_p` close to 1 on a flat distribution) is refused with
//! [`Error::InvalidArgument`]: set `top_k` or raise `candidates`.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::nn::Candidates;

/// How the next token is chosen. `Default` is greedy.
///
/// ```
/// use wgpu_tp::model::Sampling;
/// let s = Sampling::default().temperature(0.8).top_k(50).top_p(0.95).seed(7);
/// assert!(s.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    seed: u64,
    candidates: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
            candidates: Sampling::DEFAULT_CANDIDATES,
        }
    }
}

impl Sampling {
    /// The candidates each rank proposes when top-k is off.
    pub const DEFAULT_CANDIDATES: usize = 256;

    /// Greedy (the same as `Default`).
    pub fn greedy() -> Self {
        Self::default()
    }

    /// The temperature (`>= 0`, finite); 0 is greedy.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Keep the `k` most likely tokens; 0 switches it off.
    #[must_use]
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Keep the most likely tokens up to this probability mass, in `(0, 1]`; 1 is off.
    #[must_use]
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }

    /// Keep the tokens at least `p` times as likely as the most likely, in `[0, 1]`; 0 is
    /// off.
    #[must_use]
    pub fn min_p(mut self, p: f32) -> Self {
        self.min_p = p;
        self
    }

    /// The repetition penalty (`> 0`, finite); 1 is off.
    #[must_use]
    pub fn repetition_penalty(mut self, p: f32) -> Self {
        self.repetition_penalty = p;
        self
    }

    /// The seed of the random stream.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The candidates each rank proposes when top-k is off (see the module docs), `>= 1`.
    #[must_use]
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n;
        self
    }

    /// True when no random number is drawn (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad option: a temperature below 0 or
    /// not finite, `top_p` outside `(0, 1]`, `min_p` outside `[0, 1]`, a repetition
    /// penalty not above 0 or not finite, 0 candidates.
    pub fn validate(&self) -> Result<()> {
        let op = "sampling";
        let bad = |what: &str, v: f32, want: &str| {
            Err(Error::invalid(op, format!("{what} {v}; it must be {want}")))
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", self.temperature, "finite and >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in (0, 1]");
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return bad("min_p", self.min_p, "in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "finite and > 0",
            );
        }
        if self.candidates == 0 {
            return Err(Error::invalid(op, "0 candidates; 1 or more"));
        }
        Ok(())
    }

    /// True when the repetition penalty is 1.
    pub(crate) fn repetition_penalty_is_off(&self) -> bool {
        self.repetition_penalty == 1.0
    }

    /// The count each rank proposes.
    pub(crate) fn proposals(&self) -> usize {
        if self.is_greedy() {
            1
        } else if self.top_k > 0 {
            self.top_k
        } else {
            self.candidates
        }
    }
}

/// SplitMix64, the documented random stream of sampling (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next number in `[0, 1)`: the high 53 bits of [`SplitMix64::next_u64`] times
    /// 2^-53.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The state of sampling over one sequence: the options, the ids seen (for the
/// repetition penalty) and the random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    options: Sampling,
    seen: HashSet<u32>,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler at the start of a sequence.
    ///
    /// # Errors
    /// As [`Sampling::validate`].
    pub fn new(options: Sampling) -> Result<Self> {
        options.validate()?;
        Ok(Sampler {
            options,
            seen: HashSet::new(),
            rng: SplitMix64::new(options.seed),
        })
    }

    /// The options.
    pub fn options(&self) -> &Sampling {
        &self.options
    }

    /// Adds ids to the sequence the repetition penalty looks at.
    /// [`Transformer::next_token_with_async`](super::Transformer::next_token_with_async) adds the ids
    /// it is fed; call this for ids fed another way.
    pub fn observe(&mut self, ids: &[u32]) {
        self.seen.extend(ids.iter().copied());
    }

    /// The logit of `id` after the repetition penalty and the temperature.
    pub(crate) fn adjust(&self, id: u32, x: f32) -> f32 {
        let p = self.options.repetition_penalty;
        let x = if p != 1.0 && self.seen.contains(&id) {
            if x < 0.0 {
                x * p
            } else {
                x / p
            }
        } else {
            x
        };
        let t = self.options.temperature;
        if t == 0.0 || t == 1.0 {
            x
        } else {
            x / t
        }
    }

    /// The token the chain picks from `c` (see the module docs).
    pub(crate) fn choose(&mut self, c: &Candidates) -> Result<u32> {
        let op = "sampling";
        let o = self.options;
        let first = c.best.first().copied();
        let max = match first {
            Some((v, _)) if v > f32::NEG_INFINITY => f64::from(v),
            _ => {
                return Err(Error::NonFinite {
                    op,
                    message: "every logit is -inf".into(),
                })
            }
        };
        if o.is_greedy() {
            return Ok(c.best[0].1);
        }
        let k_limited = o.top_k > 0;
        let list = if k_limited {
            &c.best[..o.top_k.min(c.best.len())]
        } else {
            &c.best[..]
        };
        let complete = k_limited || c.rest.iter().all(Option::is_none);
        // The tokens known to be the best, in order.
        let known = if complete {
            list.len()
        } else {
            o.candidates.min(list.len())
        };
        let w: Vec<f64> = list
            .iter()
            .map(|&(v, _)| (f64::from(v) - max).exp())
            .collect();
        // Top-p: the shortest prefix reaching top_p * Z.
        let n_p = if o.top_p < 1.0 {
            let mut z: f64 = w.iter().sum();
            if !complete {
                for &(most, sum) in c.rest.iter().flatten() {
                    z += sum * (f64::from(most) - max).exp();
                }
            }
            let target = f64::from(o.top_p) * z;
            let mut cum = 0.0;
            let mut found = None;
            for (i, wi) in w[..known].iter().enumerate() {
                cum += wi;
                if cum >= target {
                    found = Some(i + 1);
                    break;
                }
            }
            found
        } else if complete {
            Some(known)
        } else {
            None
        };
        // Min-p: the prefix with w >= min_p.
        let min_p = f64::from(o.min_p);
        let n_min = w[..known].iter().take_while(|&&wi| wi >= min_p).count();
        let min_p_decides = o.min_p > 0.0
            && (n_min < known || {
                // Does the best token past the known ones fail min-p too?
                let next = list
                    .get(known)
                    .map(|&(v, _)| v)
                    .into_iter()
                    .chain(c.rest.iter().flatten().map(|&(m, _)| m))
                    .fold(f32::NEG_INFINITY, f32::max);
                (f64::from(next) - max).exp() < min_p
            });
        let n = match (n_p, min_p_decides) {
            (Some(n_p), true) => n_p.min(n_min),
            (Some(n_p), false) => n_p,
            (None, true) => n_min,
            (None, false) => {
                return Err(Error::invalid(
                    op,
                    format!(
                        "the chain keeps more than the {known} candidates proposed (temperature \
                         {}, top_p {}, min_p {}): set top_k, or raise candidates",
                        o.temperature, o.top_p, o.min_p
                    ),
                ))
            }
        }
        .max(1);
        let total: f64 = w[..n].iter().sum();
        let target = self.rng.next_f64() * total;
        let mut cum = 0.0;
        for (i, wi) in w[..n].iter().enumerate() {
            cum += wi;
            if target < cum {
                return Ok(list[i].1);
            }
        }
        Ok(list[n - 1].1)
    }
}
