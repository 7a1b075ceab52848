//! The norms' backward in f64, with bounds on what the kernels compute in f32
//! (`shaders/norms.wgsl`'s `rms_norm_backward`, `layer_norm_backward` and their `_terms`,
//! the weight's and bias's terms summed over the rows by `matmul_tn`).

use super::Approx;

/// f32's unit roundoff.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// `gamma(n) = n U / (1 - n U)`, the bound on a sum of `n` rounded terms.
fn gamma(n: usize) -> f64 {
    n as f64 * U / (1.0 - n as f64 * U)
}

/// RMSNorm's gradients at `x` (`[rows, cols]`) with `weight` (`cols`) given `dy`:
/// `dx = r w dy - x r^3 A / n` with `r = 1 / sqrt(mean(x^2) + eps)`, `A = sum_k w_k dy_k
/// x_k`, and `dweight = sum over rows of dy x r`.
///
/// The bounds, first order in U with a factor-two margin (each f32 input exact):
/// - `r`: the sum of squares within `gamma(n)` relative, the mean, the epsilon, `sqrt`
///   (WGSL: as `inverseSqrt` times x, 2 + 1 ulp) and the divide (2.5 ulp), about
///   `(n + 12) U` relative, halved by the square root but not counted so;
/// - `A`: `gamma(n + 2) sum |w dy x|`;
/// - `dx`: `|r w dy| (e_r + 2U) + |x| r^3 / n (|A| (3 e_r + 4U) + gamma(n + 2) sum |w dy
///   x|) + U |dx|`;
/// - `dweight`: each term within `e_r + 2U` relative, their sum over the rows within
///   `gamma(rows)` of the sum of their magnitudes.
pub fn rms_norm_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    [rows, cols]: [usize; 2],
    eps: f32,
) -> (Approx, Approx) {
    let n = cols as f64;
    let e_r = (cols + 12) as f64 * U;
    let mut dx = Approx {
        value: Vec::with_capacity(rows * cols),
        bound: Vec::with_capacity(rows * cols),
    };
    let mut dw = vec![0.0f64; cols];
    let mut dw_abs = vec![0.0f64; cols];
    let mut dw_err = vec![0.0f64; cols];
    for (xr, dyr) in x.chunks(cols).zip(dy.chunks(cols)).take(rows) {
        let xr: Vec<f64> = xr.iter().map(|&v| f64::from(v)).collect();
        let dyr: Vec<f64> = dyr.iter().map(|&v| f64::from(v)).collect();
        let w: Vec<f64> = weight.iter().map(|&v| f64::from(v)).collect();
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / n;
        let r = 1.0 / (ms + f64::from(eps)).sqrt();
        let a: f64 = (0..cols).map(|k| w[k] * dyr[k] * xr[k]).sum();
        let a_abs: f64 = (0..cols).map(|k| (w[k] * dyr[k] * xr[k]).abs()).sum();
        for k in 0..cols {
            let v = r * w[k] * dyr[k] - xr[k] * r * r * r * a / n;
            let b = (r * w[k] * dyr[k]).abs() * (e_r + 2.0 * U)
                + xr[k].abs() * r * r * r / n
                    * (a.abs() * (3.0 * e_r + 4.0 * U) + gamma(cols + 2) * a_abs)
                + U * v.abs();
            dx.value.push(v);
            dx.bound.push(2.0 * b);
            let term = dyr[k] * xr[k] * r;
            dw[k] += term;
            dw_abs[k] += term.abs();
            dw_err[k] += term.abs() * (e_r + 2.0 * U);
        }
    }
    let bound = (0..cols)
        .map(|k| 2.0 * (dw_err[k] + gamma(rows) * dw_abs[k]))
        .collect();
    (dx, Approx { value: dw, bound })
}

/// LayerNorm's gradients at `x` (`[rows, cols]`) with `weight` (`cols`) given `dy`:
/// `dx = r (g - mean(g) - xhat mean(g xhat))` with `g = w dy`, `xhat = (x - m) r`, `r = 1 /
/// sqrt(var + eps)`; `dweight` and `dbias` the sums over rows of `dy xhat` and `dy`.
///
/// The bounds, first order in U with a factor-two margin (each f32 input exact):
/// - the mean within `gamma(n) sum |x| / n + U |m|`, which each centred value carries,
///   plus its own rounding;
/// - `r` within `(n + 12) U` relative (as RMSNorm's: the mean's error moves the variance
///   only at second order, the centred values summing to 0);
/// - `xhat` within `|x - m| r (e_r + U) + r e_m`;
/// - `sum g` within `gamma(n) sum |g|`; `sum g xhat` within `gamma(n + 1) sum |g xhat| +
///   sum |g| e_xhat`;
/// - `dx` within `|dx| e_r + r (3 U T + e_sg / n + |xhat| e_sgx / n + e_xhat |sgx| / n) +
///   U |dx|`, `T = |g| + |sg| / n + |xhat sgx| / n`;
/// - `dweight`'s terms within `|dy| e_xhat + U |term|`, the sums over rows within
///   `gamma(rows)` of their magnitudes; `dbias` within `gamma(rows) sum |dy|`.
pub fn layer_norm_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    [rows, cols]: [usize; 2],
    eps: f32,
) -> (Approx, Approx, Approx) {
    let n = cols as f64;
    let e_r = (cols + 12) as f64 * U;
    let w: Vec<f64> = weight.iter().map(|&v| f64::from(v)).collect();
    let mut dx = Approx {
        value: Vec::with_capacity(rows * cols),
        bound: Vec::with_capacity(rows * cols),
    };
    let (mut dw, mut dw_abs, mut dw_err) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    let (mut db, mut db_abs) = (vec![0.0; cols], vec![0.0; cols]);
    for (xr, dyr) in x.chunks(cols).zip(dy.chunks(cols)).take(rows) {
        let xr: Vec<f64> = xr.iter().map(|&v| f64::from(v)).collect();
        let dyr: Vec<f64> = dyr.iter().map(|&v| f64::from(v)).collect();
        let m = xr.iter().sum::<f64>() / n;
        let e_m = gamma(cols) * xr.iter().map(|v| v.abs()).sum::<f64>() / n + U * m.abs();
        let var = xr.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        let r = 1.0 / (var + f64::from(eps)).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|v| (v - m) * r).collect();
        let e_xhat: Vec<f64> = xr
            .iter()
            .map(|v| (v - m).abs() * r * (e_r + U) + r * e_m)
            .collect();
        let g: Vec<f64> = (0..cols).map(|k| w[k] * dyr[k]).collect();
        let sg: f64 = g.iter().sum();
        let sgx: f64 = (0..cols).map(|k| g[k] * xhat[k]).sum();
        let g_abs: f64 = g.iter().map(|v| v.abs()).sum();
        let e_sg = gamma(cols) * g_abs;
        let e_sgx = gamma(cols + 1) * (0..cols).map(|k| (g[k] * xhat[k]).abs()).sum::<f64>()
            + (0..cols).map(|k| g[k].abs() * e_xhat[k]).sum::<f64>();
        for k in 0..cols {
            let v = r * (g[k] - sg / n - xhat[k] * sgx / n);
            let t = g[k].abs() + sg.abs() / n + (xhat[k] * sgx).abs() / n;
            let b = v.abs() * e_r
                + r * (3.0 * U * t
                    + e_sg / n
                    + xhat[k].abs() * e_sgx / n
                    + e_xhat[k] * sgx.abs() / n)
                + U * v.abs();
            dx.value.push(v);
            dx.bound.push(2.0 * b);
            let term = dyr[k] * xhat[k];
            dw[k] += term;
            dw_abs[k] += term.abs();
            dw_err[k] += dyr[k].abs() * e_xhat[k] + U * term.abs();
            db[k] += dyr[k];
            db_abs[k] += dyr[k].abs();
        }
    }
    let dw_bound = (0..cols)
        .map(|k| 2.0 * (dw_err[k] + gamma(rows) * dw_abs[k]))
        .collect();
    let db_bound = (0..cols).map(|k| 2.0 * gamma(rows) * db_abs[k]).collect();
    (
        dx,
        Approx {
            value: dw,
            bound: dw_bound,
        },
        Approx {
            value: db,
            bound: db_bound,
        },
    )
}
