//! CPU reference in f64 with a rigorous bound on the f32 GPU result's error, and a
//! seeded generator for test data. Used by `verify`, the tests and the benchmarks; behind
//! the `reference` feature (`features = ["reference"]`), off by default.
//!
//! # The bound
//! For `y = Σ_{k<K} x_k w_k + b` computed in f32 in any order (any tiling, any split
//! over ranks, any all-reduce order, with or without FMA), Higham's dot-product bound
//! gives `|ŷ - y| <= γ(K + 1) · (Σ |x_k| |w_k| + |b|)` with `γ(n) = n u / (1 - n u)`,
//! `u = 2⁻²⁴`. We use `γ(K + 2)`: one more rounding for a bias added after the reduction.
//! When the inputs themselves carry an error bound `e_k` (the MLP's second layer reads
//! the first layer's output), `Σ e_k |w_k|` is added and `|x_k|` widened by `e_k`.

#[cfg(feature = "safetensors")]
mod checkpoint;
mod cross_entropy;
mod norms;

#[cfg(feature = "safetensors")]
mod gguf;

#[cfg(feature = "safetensors")]
pub use checkpoint::{write_synthetic_llama, write_synthetic_llama_as, SyntheticLlama};
#[cfg(feature = "safetensors")]
pub use gguf::write_synthetic_llama_gguf;

pub use cross_entropy::cross_entropy;
pub use norms::{layer_norm_backward, rms_norm_backward};

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::kernels::settings::{Activation, WeightLayout};

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
///
/// Each output sums its `k` products in order, then adds the bias, so the values do not
/// depend on how the work is split: the product runs in blocks (a block of `W` stays in
/// cache while a block of rows of `x` passes over it) spread over the machine's threads.
///
/// # Errors
/// [`Error::Shape`] when `x` (values or bounds), `w` or `bias` is shorter than `[m, k]`,
/// `k × n` and `n` say, or when `m × k`, `k × n` or `m × n` overflows `usize`.
pub fn linear(
    x: &Approx,
    [m, k]: [usize; 2],
    w: &[f32],
    n: usize,
    layout: WeightLayout,
    bias: Option<&[f32]>,
) -> Result<Approx> {
    const OP: &str = "reference::linear";
    let overflow = || {
        Error::shape(
            OP,
            "m × k, k × n and m × n that fit in usize",
            format!("x [{m}, {k}], {n} outputs"),
        )
    };
    let mk = m.checked_mul(k).ok_or_else(overflow)?;
    let kn = k.checked_mul(n).ok_or_else(overflow)?;
    let mn = m.checked_mul(n).ok_or_else(overflow)?;
    let short = |what: &str, need: usize, got: usize| {
        Error::shape(
            OP,
            format!("{what} of at least {need} values"),
            format!("{got}"),
        )
    };
    if x.value.len() < mk || x.bound.len() < mk {
        let got = x.value.len().min(x.bound.len());
        return Err(short(&format!("x [{m}, {k}] (values and bounds)"), mk, got));
    }
    if w.len() < kn {
        let [r, c] = layout.stored_shape(k, n);
        return Err(short(&format!("weight [{r}, {c}]"), kn, w.len()));
    }
    if let Some(b) = bias.filter(|b| b.len() < n) {
        return Err(short(&format!("bias [{n}]"), n, b.len()));
    }
    let product = Product {
        x,
        m,
        k,
        w,
        n,
        layout,
    };
    let tiles = m.div_ceil(ROWS) * n.div_ceil(COLS);
    let threads = if mk.saturating_mul(n) < PARALLEL_MIN {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(tiles)
    };
    let next = AtomicUsize::new(0);
    // wasm32 has no threads: the caller's thread takes every tile.
    #[cfg(target_arch = "wasm32")]
    let done = {
        let _ = threads;
        product.tiles(&next)
    };
    #[cfg(not(target_arch = "wasm32"))]
    let done = std::thread::scope(|s| {
        // Helpers that fail to start leave their tiles to the others.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(s, || product.tiles(&next))
                    .ok()
            })
            .collect();
        let mut done = product.tiles(&next);
        for h in helpers {
            done.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        done
    });
    let g = gamma(k.saturating_add(2));
    let mut value = vec![0.0; mn];
    let mut bound = vec![0.0; mn];
    for t in done {
        let width = t.cols.len();
        for (ii, i) in t.rows.enumerate() {
            for (jj, j) in t.cols.clone().enumerate() {
                let (mut acc, mut abs) = (t.acc[ii * width + jj], t.abs[ii * width + jj]);
                if let Some(b) = bias {
                    acc += f64::from(b[j]);
                    abs += f64::from(b[j]).abs();
                }
                value[i * n + j] = acc;
                bound[i * n + j] = g * abs + t.carried[ii * width + jj];
            }
        }
    }
    Ok(Approx { value, bound })
}

/// Rows of `x` per tile of [`linear`]'s output.
const ROWS: usize = 32;
/// Columns per tile: one row's three accumulators (`3 × 256` f64, 6 KiB) stay in L1.
const COLS: usize = 256;
/// Inner steps per block: a packed block of `W` (`128 × 256` f32, 128 KiB) stays in L2
/// while the tile's rows pass over it.
const DEPTH: usize = 128;
/// Below this many multiply-adds [`linear`] stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 20;

/// The operands of one [`linear`] call, lengths checked.
struct Product<'a> {
    x: &'a Approx,
    m: usize,
    k: usize,
    w: &'a [f32],
    n: usize,
    layout: WeightLayout,
}

/// One tile of the output: the three sums of the module docs before the bias, row-major.
struct Tile {
    rows: Range<usize>,
    cols: Range<usize>,
    acc: Vec<f64>,
    abs: Vec<f64>,
    carried: Vec<f64>,
}

impl Product<'_> {
    /// Takes tiles from `next` until none are left.
    fn tiles(&self, next: &AtomicUsize) -> Vec<Tile> {
        let across = self.n.div_ceil(COLS);
        let count = self.m.div_ceil(ROWS) * across;
        let mut done = Vec::new();
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= count {
                return done;
            }
            let (r, c) = (t / across * ROWS, t % across * COLS);
            done.push(self.tile(r..self.m.min(r + ROWS), c..self.n.min(c + COLS)));
        }
    }

    /// The sums for `rows × cols`, each over `k` in order (blocks of `DEPTH` in turn).
    fn tile(&self, rows: Range<usize>, cols: Range<usize>) -> Tile {
        let (k, width) = (self.k, cols.len());
        let size = rows.len() * width;
        let (mut acc, mut abs, mut carried) = (vec![0.0; size], vec![0.0; size], vec![0.0; size]);
        let mut packed = vec![0.0f32; DEPTH.min(k) * width];
        for k0 in (0..k).step_by(DEPTH) {
            let depth = DEPTH.min(k - k0);
            // W[k0 .. k0 + depth, cols] as [depth, width].
            match self.layout {
                WeightLayout::InOut => {
                    for (kk, dst) in packed.chunks_exact_mut(width).take(depth).enumerate() {
                        let from = (k0 + kk) * self.n + cols.start;
                        dst.copy_from_slice(&self.w[from..from + width]);
                    }
                }
                WeightLayout::OutIn => {
                    for (jj, j) in cols.clone().enumerate() {
                        let src = &self.w[j * k + k0..j * k + k0 + depth];
                        for (kk, &v) in src.iter().enumerate() {
                            packed[kk * width + jj] = v;
                        }
                    }
                }
            }
            for (ii, i) in rows.clone().enumerate() {
                let at = i * k + k0..i * k + k0 + depth;
                let (xs, es) = (&self.x.value[at.clone()], &self.x.bound[at]);
                let out = ii * width..(ii + 1) * width;
                let (a, s, c) = (
                    &mut acc[out.clone()],
                    &mut abs[out.clone()],
                    &mut carried[out],
                );
                for ((&xv, &xe), ws) in xs.iter().zip(es).zip(packed.chunks_exact(width)) {
                    let xa = xv.abs() + xe;
                    let sums = a.iter_mut().zip(s.iter_mut()).zip(c.iter_mut());
                    for (((a, s), c), &wv) in sums.zip(ws) {
                        let wv = f64::from(wv);
                        *a += xv * wv;
                        *s += xa * wv.abs();
                        *c += xe * wv.abs();
                    }
                }
            }
        }
        Tile {
            rows,
            cols,
            acc,
            abs,
            carried,
        }
    }
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

/// The activation's derivative in f64 (ReLU's is 0 at 0, as torch's).
pub fn activate_grad(v: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if v > 0.0 {
                1.0
            } else if v.is_nan() {
                v
            } else {
                0.0
            }
        }
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let t = (c * (v + 0.044715 * v * v * v)).tanh();
            0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v)
        }
        Activation::GeluErf => {
            let phi = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)) + v * phi
        }
    }
}

/// The error of the WGSL `activate_grad` (shaders/activation.wgsl) at `v` for an output
/// gradient `d`, both exact, with `U` = 2^-24 per f32 rounding and WGSL's `exp` allowed
/// `3 + 2|x|` ulp, doubled for margin:
/// - tanh form: `s = 2 / (exp(2u) + 1)` is within `(5 + 14|u|) U` relative (`exp`, its
///   argument's own 5 roundings times `2|u|`, the add and the divide); `t1 = 0.5 (2 - s)`
///   within half of `s`'s error plus a rounding; `t2`, a product of 7 factors of which `s`
///   and `2 - s` carry that error, within `(22 + 28|u|) U` relative;
/// - erf form: Abramowitz & Stegun 7.1.26's 1.5e-7, plus its f32 evaluation, within
///   `(15 + 2a^2) U` of `erfc(a)` (`a = |v| / sqrt 2`; the `exp(-a^2)` term it scales);
///   `t2 = v exp(-v^2 / 2) / sqrt(2 pi)` within `(7 + 2v^2) U` relative;
/// - then `d (t1 + t2)`: two roundings.
fn activation_grad_error(v: f64, d: f64, act: Activation) -> f64 {
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let terms = match act {
        Activation::Identity | Activation::Relu => return 0.0,
        Activation::GeluTanh => {
            let u = c * (v + 0.044715 * v * v * v);
            let s = 2.0 / ((2.0 * u).exp() + 1.0);
            let t1 = 0.5 * (2.0 - s);
            let w = v.clamp(-20.0, 20.0);
            let t2 = 0.5 * w * s * (2.0 - s) * c * (1.0 + 0.134145 * w * w);
            let e_s = (5.0 + 14.0 * u.abs()) * U;
            0.5 * s.abs() * e_s + U * t1.abs() + (22.0 + 28.0 * u.abs()) * U * t2.abs()
        }
        Activation::GeluErf => {
            let a = v.abs() / std::f64::consts::SQRT_2;
            let e_erf = 1.5e-7 + (15.0 + 2.0 * a * a) * U * (libm::erfc(a) + 1.5e-7) + 2.0 * U;
            let t1 = 0.5 * (1.0 + libm::erf(a));
            let w = v.clamp(-20.0, 20.0);
            let t2 = w * (-0.5 * w * w).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * e_erf + U * t1.abs() + (7.0 + 2.0 * w * w) * U * t2.abs()
        }
    };
    2.0 * (d.abs() * terms + 2.0 * U * (d * activate_grad(v, act)).abs())
}

/// `dh * act'(z)` elementwise (the activation's backward), with the inputs' bounds carried
/// through: `|act'|` times `dh`'s bound, plus `|dh|` times how far `act'` may move within
/// `z`'s bound (GeLU's `|act''|` is at most 0.8 in both forms: `phi(x) (2 - x^2)` peaks at
/// `2 phi(0) = 0.798`; ReLU's derivative may be 0 or 1 when the bound spans 0), plus the
/// f32 error of the kernel itself.
pub fn activation_grad(z: &Approx, dh: &Approx, act: Activation) -> Approx {
    let mut value = Vec::with_capacity(z.value.len());
    let mut bound = Vec::with_capacity(z.value.len());
    for (((&v, &bz), &d), &bd) in z.value.iter().zip(&z.bound).zip(&dh.value).zip(&dh.bound) {
        let g = activate_grad(v, act);
        value.push(d * g);
        let moved = match act {
            Activation::Identity => 0.0,
            Activation::Relu => {
                if bz > 0.0 && v.abs() <= bz {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::GeluTanh | Activation::GeluErf => 0.8 * bz,
        };
        // The kernel's own error at the f32 values it reads, within the bounds of these.
        let own = activation_grad_error(v, d.abs() + bd, act);
        bound.push(g.abs() * bd + (d.abs() + bd) * moved + own);
    }
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

#[cfg(test)]
mod tests;
