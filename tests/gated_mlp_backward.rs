//! The backward of `GatedMlp` (issue 25), SwiGLU (Llama) and GeGLU (Gemma): every gradient
//! (input, merged gate/up weight, down weight) against an f64 reference carrying a bound
//! on the f32 result propagated operation by operation through the kernels' arithmetic
//! (tests/common/bounds.rs), at tp 1-4 with uneven intermediate shards on both kinds of
//! group; that reference against central differences of its forward; PyTorch autograd of
//! the same MLP (`scripts/make_backward_fixtures.py`) within twice the bound; one
//! all-reduce; the same bits at tp 1, 2 and 4 under tp-invariant numerics.

mod common;

use common::attention::{exact, f32s, project, tn};
use common::bounds::{sum, E};
use common::{assert_same_bits, cached_group, fresh_groups, groups};
use wgpu_tp::nn::{GatedActivation, GatedMlp, GatedMlpGrads};
use wgpu_tp::reference::Rng;
use wgpu_tp::{DistTensor, Group, Numerics};

const TOKENS: usize = 5;
const HIDDEN: usize = 16;

/// Inputs in f64 (f32 values, or perturbed for central differences); weights `[out, in]`.
#[derive(Debug, Clone)]
struct Case {
    ffn: usize,
    x: Vec<f64>,
    gate: Vec<f64>,
    up: Vec<f64>,
    down: Vec<f64>,
    dy: Vec<f64>,
    act: GatedActivation,
}

struct Want {
    y: Vec<E>,
    dx: Vec<E>,
    dgate: Vec<E>,
    dup: Vec<E>,
    ddown: Vec<E>,
}

fn c32(v: f32) -> E {
    E::exact(f64::from(v))
}

/// The activation at `g` and `d * act'(g)`, as swiglu.wgsl and gelu.wgsl compute them.
fn act(g: E, d: E, which: GatedActivation) -> (E, E) {
    let one = E::exact(1.0);
    match which {
        GatedActivation::Silu => {
            let e = E { v: -g.v, e: g.e }.exp();
            let sig = one.div(one.add(e));
            let slope = sig.mul(one.add(g.mul(one.sub(sig))));
            (g.div(one.add(e)), d.mul(slope))
        }
        GatedActivation::GeluTanh => {
            let (beta, kappa) = (c32(0.797_884_6), c32(0.044715));
            let cube = g.mul(g).mul(g);
            let inner = beta.mul(g.add(kappa.mul(cube)));
            let value = c32(0.5).mul(g).mul(one.add(inner.tanh()));
            // gelu_tanh_grad.
            let inner = beta.mul(g.add(kappa.mul(g.mul(g).mul(g))));
            let s = c32(2.0).div(c32(2.0).mul(inner).exp().add(one));
            let two_s = c32(2.0).sub(s);
            let t1 = c32(0.5).mul(two_s);
            let t2 = c32(0.5)
                .mul(g)
                .mul(s)
                .mul(two_s)
                .mul(beta)
                .mul(one.add(c32(0.134145).mul(g).mul(g)));
            (value, d.mul(t1.add(t2)))
        }
    }
}

fn reference(c: &Case) -> Want {
    let (t, h, f) = (TOKENS, HIDDEN, c.ffn);
    let x = exact(&c.x);
    let g = project(&x, t, h, &exact(&c.gate), f, None);
    let u = project(&x, t, h, &exact(&c.up), f, None);
    let d = exact(&c.down);
    let dy = exact(&c.dy);
    let zero = E::exact(0.0);
    let acts: Vec<E> = g.iter().map(|&g| act(g, zero, c.act).0).collect();
    let hid: Vec<E> = acts.iter().zip(&u).map(|(a, u)| a.mul(*u)).collect();
    let y = project(&hid, t, f, &d, h, None);
    // dL/dh = dy · Wd.
    let d_t: Vec<E> = (0..f)
        .flat_map(|j| (0..h).map(move |r| (r, j)))
        .map(|(r, j)| d[r * f + j])
        .collect();
    let dh = project(&dy, t, h, &d_t, f, None);
    let mut dg = Vec::new();
    let mut du = Vec::new();
    for i in 0..t * f {
        let (a, slope_d) = act(g[i], dh[i].mul(u[i]), c.act);
        dg.push(slope_d);
        du.push(dh[i].mul(a));
    }
    let (wg, wu) = (exact(&c.gate), exact(&c.up));
    let mut dx = Vec::new();
    for r in 0..t {
        for k in 0..h {
            let mut terms = Vec::new();
            for j in 0..f {
                terms.push(dg[r * f + j].mul(wg[j * h + k]));
                terms.push(du[r * f + j].mul(wu[j * h + k]));
            }
            dx.push(sum(&terms));
        }
    }
    Want {
        y,
        dx,
        dgate: tn(&dg, &x, t, f, h),
        dup: tn(&du, &x, t, f, h),
        ddown: tn(&dy, &hid, t, h, f),
    }
}

fn case(seed: u64, ffn: usize, act: GatedActivation) -> Case {
    let mut rng = Rng::new(seed);
    let mut w = |n: usize, i: usize, o: usize| -> Vec<f64> {
        rng.xavier(n, i, o).iter().map(|&v| f64::from(v)).collect()
    };
    let (gate, up, down) = (
        w(ffn * HIDDEN, HIDDEN, ffn),
        w(ffn * HIDDEN, HIDDEN, ffn),
        w(HIDDEN * ffn, ffn, HIDDEN),
    );
    let mut rng = Rng::new(seed + 1);
    let mut n = |len: usize| -> Vec<f64> {
        rng.normal(len)
            .iter()
            .map(|&v| f64::from(v) * 2.0)
            .collect()
    };
    Case {
        ffn,
        x: n(TOKENS * HIDDEN),
        gate,
        up,
        down,
        dy: n(TOKENS * HIDDEN),
        act,
    }
}

fn layer(g: &Group, c: &Case) -> GatedMlp {
    let (h, f) = (HIDDEN, c.ffn);
    let rows = |w: &[f64], r: std::ops::Range<usize>| f32s(&w[r.start * h..r.end * h]);
    GatedMlp::new(
        g,
        h,
        f,
        |r| Ok(rows(&c.gate, r)),
        |r| Ok(rows(&c.up, r)),
        |cols| {
            Ok((0..h)
                .flat_map(|r| f32s(&c.down[r * f + cols.start..r * f + cols.end]))
                .collect::<Vec<f32>>())
        },
    )
    .unwrap()
    .with_activation(c.act)
}

/// dX, dW_gate, dW_up (`[ffn, hidden]` each, from the merged weight's rank blocks
/// `[gate_r | up_r]`) and dW_down on the host.
fn host(mlp: &GatedMlp, g: &GatedMlpGrads, ffn: usize) -> [Vec<f32>; 4] {
    let merged = g.gate_up.weight.to_host().unwrap();
    let sizes = mlp.gate_up().out_features_per_rank();
    let (mut gate, mut up) = (Vec::new(), Vec::new());
    let mut at = 0;
    for s in sizes {
        let n = s / 2 * HIDDEN;
        gate.extend_from_slice(&merged[at..at + n]);
        up.extend_from_slice(&merged[at + n..at + 2 * n]);
        at += 2 * n;
    }
    assert_eq!(gate.len(), ffn * HIDDEN);
    [
        g.gate_up.input.to_host().unwrap(),
        gate,
        up,
        g.down.weight.to_host().unwrap(),
    ]
}

fn within(want: &[E], got: &[f32], ctx: &str) {
    assert_eq!(want.len(), got.len(), "{ctx}");
    for (i, (w, &g)) in want.iter().zip(got).enumerate() {
        let d = (f64::from(g) - w.v).abs();
        assert!(
            d <= w.e,
            "{ctx}[{i}]: {g} against {} (bound {:.3e})",
            w.v,
            w.e
        );
    }
}

/// Both activations at tp 1-4 (22 intermediate features: 6, 6, 5, 5 at tp 4) on both
/// kinds of group: the output and every gradient within the bound; one all-reduce.
#[test]
fn gated_mlp_backward_is_within_the_f64_bound_at_tp_1_to_4() {
    for act in [GatedActivation::Silu, GatedActivation::GeluTanh] {
        let c = case(270, 22, act);
        let want = reference(&c);
        let wants = [&want.dx, &want.dgate, &want.dup, &want.ddown];
        for tp in 1..=4 {
            for (kind, g) in fresh_groups(tp).into_iter().enumerate() {
                let ctx = format!("{act:?}, tp {tp}, group kind {kind}");
                let mlp = layer(&g, &c);
                let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
                let dy = DistTensor::replicate(&g, &f32s(&c.dy), [TOKENS, HIDDEN]).unwrap();
                within(
                    &want.y,
                    &mlp.forward(&x).unwrap().to_host().unwrap(),
                    &format!("{ctx}: y"),
                );
                let before = g.stats().all_reduces();
                let grads = mlp.backward(&x, &dy).unwrap();
                assert_eq!(g.stats().all_reduces() - before, 1, "{ctx}: one all-reduce");
                for (i, got) in host(&mlp, &grads, c.ffn).iter().enumerate() {
                    within(wants[i], got, &format!("{ctx}: gradient {i}"));
                }
            }
        }
    }
}

fn loss(c: &Case) -> f64 {
    reference(c).y.iter().zip(&c.dy).map(|(y, d)| y.v * d).sum()
}

/// The reference's gradients are those of its forward: central differences (relative
/// step 1e-6; f64 gives ~1e-9 of agreement) at a few entries of every input.
#[test]
fn the_gated_reference_is_central_differences_of_its_forward() {
    for act in [GatedActivation::Silu, GatedActivation::GeluTanh] {
        let c = case(271, 22, act);
        let want = reference(&c);
        type Field = fn(&mut Case) -> &mut Vec<f64>;
        let fields: [(&str, Field, &[E]); 4] = [
            ("x", |c| &mut c.x, &want.dx),
            ("gate", |c| &mut c.gate, &want.dgate),
            ("up", |c| &mut c.up, &want.dup),
            ("down", |c| &mut c.down, &want.ddown),
        ];
        for (what, field, grad) in fields {
            let n = field(&mut c.clone()).len();
            for i in [0, n / 3, n / 2 + 1, n - 1] {
                let h = 1e-6;
                let (mut plus, mut minus) = (c.clone(), c.clone());
                field(&mut plus)[i] += h;
                field(&mut minus)[i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                let g = grad[i].v;
                assert!(
                    (fd - g).abs() <= 1e-6 * (1.0 + g.abs()),
                    "{act:?}: dL/d{what}[{i}]: {fd} against {g}"
                );
            }
        }
    }
}

/// PyTorch autograd of the same MLPs (`gmlp_silu.*`, `gmlp_gelu.*`): torch's gradients
/// within the bound `B`, ours within `2 B` of torch's, at tp 1-4.
#[test]
fn gated_mlp_backward_matches_pytorch_autograd() {
    let f = common::torch_fixture();
    for (name, act) in [
        ("silu", GatedActivation::Silu),
        ("gelu", GatedActivation::GeluTanh),
    ] {
        let get = |n: &str| f[&format!("gmlp_{name}.{n}")].clone();
        let f64s = |n: &str| get(n).iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let c = Case {
            ffn: 22,
            x: f64s("x"),
            gate: f64s("gate"),
            up: f64s("up"),
            down: f64s("down"),
            dy: f64s("dy"),
            act,
        };
        let want = reference(&c);
        let wants = [&want.dx, &want.dgate, &want.dup, &want.ddown];
        let torch = ["dx", "dgate", "dup", "ddown"].map(get);
        for (w, t) in wants.iter().zip(&torch) {
            within(w, t, &format!("{name}: torch"));
        }
        for tp in 1..=4 {
            for g in groups(tp) {
                let mlp = layer(&g, &c);
                let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
                let dy = DistTensor::replicate(&g, &f32s(&c.dy), [TOKENS, HIDDEN]).unwrap();
                let got = host(&mlp, &mlp.backward(&x, &dy).unwrap(), c.ffn);
                for (i, ((w, t), got)) in wants.iter().zip(&torch).zip(&got).enumerate() {
                    for (j, ((w, &t), &g)) in w.iter().zip(t).zip(got).enumerate() {
                        let d = (f64::from(g) - f64::from(t)).abs();
                        assert!(
                            d <= 2.0 * w.e,
                            "{name}, tp {tp}: gradient {i}[{j}]: {g} vs torch {t}"
                        );
                    }
                }
            }
        }
    }
}

/// Under tp-invariant numerics (24 intermediate features: even at tp 1, 2 and 4) every
/// gradient is the same bits at tp 1, 2 and 4 on both kinds of group.
#[test]
fn gated_mlp_gradients_are_the_same_bits_at_tp_1_2_and_4_under_tp_invariant_numerics() {
    for act in [GatedActivation::Silu, GatedActivation::GeluTanh] {
        let c = case(272, 24, act);
        let mut first: Option<[Vec<f32>; 4]> = None;
        for tp in [1, 2, 4] {
            for shared in [false, true] {
                let Some(g) = cached_group(tp, shared, Numerics::TpInvariant) else {
                    return;
                };
                let mlp = layer(&g, &c);
                let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
                let dy = DistTensor::replicate(&g, &f32s(&c.dy), [TOKENS, HIDDEN]).unwrap();
                let got = host(&mlp, &mlp.backward(&x, &dy).unwrap(), c.ffn);
                match &first {
                    None => first = Some(got),
                    Some(want) => {
                        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                            assert_same_bits(
                                a,
                                b,
                                &format!("{act:?} tp {tp} shared {shared}: {i}"),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Bad input is an error: a sharded input, a gradient of another shape or placement.
#[test]
fn bad_input_to_the_gated_backward_is_an_error() {
    let c = case(273, 22, GatedActivation::Silu);
    for g in groups(2) {
        let mlp = layer(&g, &c);
        let x = DistTensor::replicate(&g, &f32s(&c.x), [TOKENS, HIDDEN]).unwrap();
        let dy = DistTensor::replicate(&g, &f32s(&c.dy), [TOKENS, HIDDEN]).unwrap();
        let sharded = x.redistribute(wgpu_tp::Placement::Shard(0)).unwrap();
        let err = mlp.backward(&sharded, &dy).unwrap_err();
        assert!(matches!(err, wgpu_tp::Error::Placement { .. }), "{err}");
        let short = DistTensor::replicate(&g, &f32s(&c.dy[..2 * HIDDEN]), [2, HIDDEN]).unwrap();
        let err = mlp.backward(&x, &short).unwrap_err();
        assert!(matches!(err, wgpu_tp::Error::Shape { .. }), "{err}");
        let dy_sharded = dy.redistribute(wgpu_tp::Placement::Shard(1)).unwrap();
        let err = mlp.backward(&x, &dy_sharded).unwrap_err();
        assert!(matches!(err, wgpu_tp::Error::Placement { .. }), "{err}");
    }
}
