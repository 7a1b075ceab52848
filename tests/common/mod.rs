//! Shared test helpers: groups on whatever adapter the machine has (`WGPU_BACKEND` /
//! `WGPU_ADAPTER_NAME` select; else a real GPU before a software one), test data, and
//! comparisons against the f64 reference.
//!
//! Without an adapter a GPU test is skipped locally, but fails under `CI=true`, so CI can
//! never pass by skipping.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use wgpu_tp::reference::{Approx, Rng};
use wgpu_tp::{Error, Group, GroupBuilder, HostLinear, WeightLayout};

/// The tp sizes every layer and collective is checked at.
pub const TP_SIZES: [usize; 5] = [1, 2, 3, 4, 8];

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Builds a group, or returns `None` (locally) when the machine has no adapter. Under
/// `CI=true` a missing adapter panics.
pub fn build(builder: GroupBuilder, what: &str) -> Option<Group> {
    match builder.build() {
        Ok(g) => Some(g),
        Err(e @ Error::NoAdapter { .. }) if !in_ci() => {
            eprintln!("skipping ({what}): {e}");
            None
        }
        Err(e) => panic!("could not build a group ({what}): {e}"),
    }
}

/// A group of `tp` devices on one adapter, shared by every test of this binary.
pub fn group(tp: usize) -> Option<Group> {
    static GROUPS: OnceLock<Mutex<HashMap<usize, Option<Group>>>> = OnceLock::new();
    let mut groups = GROUPS.get_or_init(Default::default).lock().unwrap();
    groups
        .entry(tp)
        .or_insert_with(|| {
            build(
                Group::builder().ranks_on_one_adapter(tp),
                &format!("tp {tp}"),
            )
        })
        .clone()
}

/// The two kinds of group every layer and collective test runs on: `tp` devices on one
/// adapter (host collectives) and `tp` logical ranks sharing one device (on-device
/// collectives). Shared by every test of this binary; empty (locally) without an adapter.
pub fn groups(tp: usize) -> Vec<Group> {
    static SHARED: OnceLock<Mutex<HashMap<usize, Option<Group>>>> = OnceLock::new();
    let shared = SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(tp)
        .or_insert_with(|| {
            build(
                Group::builder().ranks_sharing_one_device(tp),
                &format!("tp {tp} sharing one device"),
            )
        })
        .clone();
    group(tp).into_iter().chain(shared).collect()
}

/// Fresh groups of both kinds (for tests that count collectives).
pub fn fresh_groups(tp: usize) -> Vec<Group> {
    let shared = build(
        Group::builder().ranks_sharing_one_device(tp),
        &format!("fresh tp {tp} sharing one device"),
    );
    fresh_group(tp).into_iter().chain(shared).collect()
}

/// A fresh group of `tp` devices on one adapter (for tests that count collectives).
pub fn fresh_group(tp: usize) -> Option<Group> {
    build(
        Group::builder().ranks_on_one_adapter(tp),
        &format!("fresh tp {tp}"),
    )
}

/// Returns early from a test when no group could be made (locally only).
#[macro_export]
macro_rules! group_or_skip {
    ($tp:expr) => {
        match common::group($tp) {
            Some(g) => g,
            None => return,
        }
    };
}

/// A full `[in, out]` layer without bias.
pub fn lin(weight: &[f32], in_features: usize, out_features: usize) -> HostLinear<'_> {
    HostLinear::new(weight, in_features, out_features, WeightLayout::InOut)
}

/// A layer's full weight `w` (stored per `l`, `i` inputs, `o` outputs) and bias `b`.
pub fn host<'a>(
    w: &'a [f32],
    b: &'a Option<Vec<f32>>,
    i: usize,
    o: usize,
    l: WeightLayout,
) -> HostLinear<'a> {
    let layer = HostLinear::new(w, i, o, l);
    match b {
        Some(b) => layer.with_bias(b),
        None => layer,
    }
}

/// A layer's weight (stored per `layout`) and optional bias, xavier / normal like the seed.
pub fn linear_data(
    rng: &mut Rng,
    in_f: usize,
    out_f: usize,
    with_bias: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let w = rng.xavier(in_f * out_f, in_f, out_f);
    let b = with_bias.then(|| rng.normal(out_f));
    (w, b)
}

/// Transposes a row-major `[rows, cols]` matrix (to store the same weight `OutIn`).
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Stores an `[in, out]` weight in `layout`.
pub fn in_layout(w_in_out: &[f32], in_f: usize, out_f: usize, layout: WeightLayout) -> Vec<f32> {
    match layout {
        WeightLayout::InOut => w_in_out.to_vec(),
        WeightLayout::OutIn => transpose(w_in_out, in_f, out_f),
    }
}

/// Asserts every element of `got` lies within the reference's rigorous f32 bound.
pub fn assert_within(want: &Approx, got: &[f32], ctx: &str) {
    let c = want.check(got);
    assert!(
        c.pass,
        "{ctx}: max |diff| {:.3e} exceeds the bound (max bound {:.3e})",
        c.max_abs_diff, c.tolerance
    );
}

/// Asserts two f32 slices are identical bit for bit.
pub fn assert_same_bits(a: &[f32], b: &[f32], ctx: &str) {
    assert_eq!(a.len(), b.len(), "{ctx}: lengths differ");
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits());
    assert!(first.is_none(), "{ctx}: bits differ at element {first:?}");
}

/// The f64 reference of `x · w + bias` for exact f32 inputs, `w` stored `[in, out]`;
/// panics when the operands are shorter than the shape says.
pub fn reference_linear(
    x: &[f32],
    shape: [usize; 2],
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Approx {
    wgpu_tp::reference::linear(&Approx::exact(x), shape, w, n, WeightLayout::InOut, bias)
        .expect("reference shapes")
}

/// Asserts every rank's local copy of `y` lies within the reference's bound.
pub fn assert_every_rank_within(want: &Approx, y: &wgpu_tp::DistTensor, ctx: &str) {
    for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
        assert_within(want, v, &format!("{ctx} rank {r}"));
    }
}
