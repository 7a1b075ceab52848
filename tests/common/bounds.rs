//! A value an f32 computation approximates with a bound on the f32 result, propagated
//! operation by operation (`E`): the references of attention's and the gated MLP's
//! backward (tests/common/attention.rs, tests/gated_mlp_backward.rs).

use wgpu_tp::reference::{gamma, F32_UNIT_ROUNDOFF as U};

/// A value an f32 computation approximates and a bound on how far the f32 result may be:
/// each operation adds its own rounding (WGSL's accuracy: `+ - *` correctly rounded,
/// division 2.5 ulp, `exp` 3 + 2|x| ulp, `tanh` as tests/attention_options.rs derives)
/// to what its operands' errors carry, to every order (the products of errors kept).
#[derive(Debug, Clone, Copy)]
pub struct E {
    pub v: f64,
    pub e: f64,
}

impl E {
    pub fn exact(v: f64) -> E {
        E { v, e: 0.0 }
    }

    /// `|value| + bound`: the most the f32 value's magnitude can be.
    pub fn mag(self) -> f64 {
        self.v.abs() + self.e
    }

    pub fn mul(self, o: E) -> E {
        if exact_in_f32(&[self, o], self.v * o.v) {
            return E::exact(self.v * o.v);
        }
        let e = self.v.abs() * o.e + o.v.abs() * self.e + self.e * o.e;
        E {
            v: self.v * o.v,
            e: e + U * self.mag() * o.mag(),
        }
    }

    pub fn add(self, o: E) -> E {
        sum(&[self, o])
    }

    pub fn sub(self, o: E) -> E {
        self.add(E { v: -o.v, e: o.e })
    }

    /// `|â/b̂ - a/b| <= (e_a + |a/b| e_b) / (|b| - e_b)`, then 2.5 ulp of the result.
    pub fn div(self, o: E) -> E {
        let v = self.v / o.v;
        assert!(o.v.abs() > o.e, "a divisor within its bound of 0");
        let carried = (self.e + v.abs() * o.e) / (o.v.abs() - o.e);
        E {
            v,
            e: carried + 2.5 * 2.0 * U * (v.abs() + carried),
        }
    }

    /// exp moves by at most `exp(x + e) - exp(x)` for an argument off by `e`; then 3 + 2|x|
    /// ulp of a result at most `exp(x + e)`.
    pub fn exp(self) -> E {
        let v = self.v.exp();
        let hi = (self.v + self.e).exp();
        E {
            v,
            e: v * self.e.exp_m1() + (3.0 + 2.0 * self.mag()) * 2.0 * U * hi,
        }
    }

    /// `sqrt` moves by at most `e / (sqrt(a) + sqrt(a - e))` for an argument `a` off by
    /// `e`; WGSL's `sqrt` is `1 / inverseSqrt(x)` (2 ulp, then the division's 2.5), counted
    /// as 5 ulp of the result.
    pub fn sqrt(self) -> E {
        assert!(
            self.v > self.e,
            "a square root's argument within its bound of 0"
        );
        let v = self.v.sqrt();
        let carried = self.e / (v + (self.v - self.e).sqrt());
        E {
            v,
            e: carried + 5.0 * 2.0 * U * (v + carried),
        }
    }

    /// tanh's slope is at most 1; WGSL's tanh errs by (8 + 4|y|) ulps of 1 (|y| clamped
    /// at 10, where clamping moves the result by 1 - tanh(10) < 2^-27).
    pub fn tanh(self) -> E {
        let y = self.v;
        E {
            v: y.tanh(),
            e: self.e + (8.0 + 4.0 * self.mag().min(10.0)) * 2.0 * U + (1.0 - 10f64.tanh()),
        }
    }
}

/// Whether an operation on exact `operands` giving `result` rounds nothing: `result` is an
/// f32 and exactly so is every partial sum, in any order, of operands on a common grid
/// of 2^-k (each a multiple of it, their magnitudes' sum below 2^24 of it).
pub fn exact_in_f32(operands: &[E], result: f64) -> bool {
    if operands.iter().any(|o| o.e != 0.0) || f64::from(result as f32) != result {
        return false;
    }
    let mut grid = 1.0f64;
    while grid > 1e-18 && operands.iter().any(|o| (o.v / grid).fract() != 0.0) {
        grid /= 2.0;
    }
    let total: f64 = operands.iter().map(|o| o.v.abs()).sum();
    total / grid < 16_777_216.0
}

/// A sum of `terms` in any order and grouping: their errors, and the n - 1 additions'
/// roundings within γ(n) of the terms' magnitudes (none where [`exact_in_f32`]).
pub fn sum(terms: &[E]) -> E {
    let v = terms.iter().map(|t| t.v).sum();
    if exact_in_f32(terms, v) {
        return E::exact(v);
    }
    let e: f64 = terms.iter().map(|t| t.e).sum();
    let mag: f64 = terms.iter().map(|t| t.mag()).sum();
    E {
        v,
        e: e + gamma(terms.len()) * mag,
    }
}

pub fn dot(a: &[E], b: &[E]) -> E {
    let products: Vec<E> = a.iter().zip(b).map(|(x, y)| x.mul(*y)).collect();
    sum(&products)
}
