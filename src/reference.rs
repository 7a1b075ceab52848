//! CPU reference in f64 with a rigorous bound on the f32 GPU result's error, and a
//! seeded generator for test data. Used by `verify`, the tests and the benchmarks.
//!
//! # The bound
//! For `y = Σ_{k<K} x_k w_k + b` computed in f32 in any order (any tiling, any split
//! over ranks, any all-reduce order, with or without FMA), Higham's dot-product bound
//! gives `|ŷ - y| <= γ(K + 1) · (Σ |x_k| |w_k| + |b|)` with `γ(n) = n u / (1 - n u)`,
//! `u = 2⁻²⁴`. We use `γ(K + 2)`: one more rounding for a bias added after the reduction.
//! When the inputs themselves carry an error bound `e_k` (the MLP's second layer reads
//! the first layer's output), `Σ e_k |w_k|` is added and `|x_k|` widened by `e_k`.

use crate::settings::{Activation, WeightLayout};

/// Unit roundoff of f32.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// `γ(n) = n u / (1 - n u)`.
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * F32_UNIT_ROUNDOFF;
    nu / (1.0 - nu)
}

/// A reference value with a per-element bound on how far an f32 computation may be.
#[derive(Debug, Clone, PartialEq)]
pub struct Approx {
    /// Row-major values, exact up to f64 rounding.
    pub value: Vec<f64>,
    /// Per-element bound on `|f32 result - value|`.
    pub bound: Vec<f64>,
}

/// The outcome of [`Approx::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// `max |got - value|`.
    pub max_abs_diff: f64,
    /// `max bound` (the tolerance as one number).
    pub tolerance: f64,
    /// Every element within its own bound (and finite where the reference is).
    pub pass: bool,
}

impl Approx {
    /// Exact inputs (f32 values, bound 0).
    pub fn exact(x: &[f32]) -> Self {
        Approx {
            value: x.iter().map(|&v| f64::from(v)).collect(),
            bound: vec![0.0; x.len()],
        }
    }

    /// Compares an f32 result elementwise with its bound.
    pub fn check(&self, got: &[f32]) -> Check {
        let mut max_abs_diff: f64 = 0.0;
        let mut pass = got.len() == self.value.len();
        for ((&g, &v), &b) in got.iter().zip(&self.value).zip(&self.bound) {
            let d = (f64::from(g) - v).abs();
            if d.is_nan() || d > b {
                pass = false;
            }
            max_abs_diff = max_abs_diff.max(if d.is_nan() { f64::INFINITY } else { d });
        }
        let tolerance = self.bound.iter().copied().fold(0.0, f64::max);
        Check {
            max_abs_diff,
            tolerance,
            pass,
        }
    }
}

/// `x · W + bias` for `x: [m, k]` (with its bound), `W` stored per `layout` for `k` inputs
/// and `n` outputs, with the f32 error bound (see the module docs).
pub fn linear(
    x: &Approx,
    [m, k]: [usize; 2],
    w: &[f32],
    n: usize,
    layout: WeightLayout,
    bias: Option<&[f32]>,
) -> Approx {
    let g = gamma(k + 2);
    let mut value = vec![0.0; m * n];
    let mut bound = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut abs, mut carried) = (0.0f64, 0.0f64, 0.0f64);
            for kk in 0..k {
                let wv = f64::from(match layout {
                    WeightLayout::InOut => w[kk * n + j],
                    WeightLayout::OutIn => w[j * k + kk],
                });
                let (xv, xe) = (x.value[i * k + kk], x.bound[i * k + kk]);
                acc += xv * wv;
                abs += (xv.abs() + xe) * wv.abs();
                carried += xe * wv.abs();
            }
            if let Some(b) = bias {
                acc += f64::from(b[j]);
                abs += f64::from(b[j]).abs();
            }
            value[i * n + j] = acc;
            bound[i * n + j] = g * abs + carried;
        }
    }
    Approx { value, bound }
}

/// The activation in f64.
pub fn activate(v: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => v,
        Activation::Relu => {
            // NaN stays NaN, as in the shader (f64::max would return 0).
            if v <= 0.0 {
                0.0
            } else {
                v
            }
        }
        Activation::GeluTanh => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        }
        Activation::GeluErf => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
    }
}

/// Lipschitz constant of the activation (max |f'|): GeLU's derivative peaks at 1.1289
/// (both forms, to 1e-3), bounded here by 1.13.
fn lipschitz(act: Activation) -> f64 {
    match act {
        Activation::Identity | Activation::Relu => 1.0,
        Activation::GeluTanh | Activation::GeluErf => 1.13,
    }
}

/// The error of the WGSL activation itself at `v`. ReLU and identity are exact. GeLU is
/// ~10 f32 operations (≤ 10 u relative each) around `exp`, which WGSL allows
/// `3 + 2|x|` ulp; through `tanh_safe` and `0.5 v (1 + t)` that is below `1e-6 |v|` for
/// the tanh form; the erf form adds the 1.5e-7 error of Abramowitz & Stegun 7.1.26, times
/// `0.5 |v|`. `2e-6 |v| + 2e-7` covers both with a factor-two margin.
fn activation_error(v: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity | Activation::Relu => 0.0,
        Activation::GeluTanh | Activation::GeluErf => 2e-6 * v.abs() + 2e-7,
    }
}

/// `act(a)` elementwise, with the input's bound carried through and the activation's own
/// f32 error added.
pub fn activation(a: &Approx, act: Activation) -> Approx {
    let value = a.value.iter().map(|&v| activate(v, act)).collect();
    let bound = a
        .value
        .iter()
        .zip(&a.bound)
        .map(|(&v, &b)| lipschitz(act) * b + activation_error(v.abs() + b, act))
        .collect();
    Approx { value, bound }
}

/// A seeded SplitMix64 generator, so test data and `verify` are the same everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` standard normal values (Box-Muller), like `torch.randn`.
    pub fn normal(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = self.uniform().max(f64::MIN_POSITIVE);
                let u2 = self.uniform();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    }

    /// `n` values uniform in `[-a, a)`, `a = sqrt(6 / (fan_in + fan_out))`, like
    /// `nn.init.xavier_uniform_`.
    pub fn xavier(&mut self, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
        (0..n)
            .map(|_| ((2.0 * self.uniform() - 1.0) * a) as f32)
            .collect()
    }
}
