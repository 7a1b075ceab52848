//! Shared test helpers: groups on whatever adapter the machine has (`WGPU_BACKEND` /
//! `WGPU_ADAPTER_NAME` select; else a real GPU before a software one), test data, and
//! comparisons against the f64 reference.
//!
//! Without an adapter a GPU test is skipped locally, but fails under `CI=true`, so CI can
//! never pass by skipping.
#![allow(dead_code)]

pub mod attention;
pub mod bounds;
pub mod half;
pub mod torch_grads;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use wgpu_tp::reference::{Approx, Rng};
use wgpu_tp::{
    DistTensor, Error, Group, GroupBuilder, HostLinear, Numerics, Placement, Tensor, WeightLayout,
};

/// The tp sizes every layer and collective is checked at.
pub const TP_SIZES: [usize; 5] = [1, 2, 3, 4, 8];

/// The process's resident set in bytes (Linux), or None elsewhere.
pub fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A device of a fresh `wgpu::Instance` of its own, made the way an app makes its own;
/// `None` locally without an adapter (under `CI=true` a missing adapter panics).
pub fn device_of_its_own_instance() -> Option<(wgpu_tp::wgpu::Device, wgpu_tp::wgpu::Queue)> {
    use wgpu_tp::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter = match pollster::block_on(instance.request_adapter(&Default::default())) {
        Ok(a) => a,
        Err(e) if !in_ci() => {
            eprintln!("skipping: {e}");
            return None;
        }
        Err(e) => panic!("no adapter: {e}"),
    };
    Some(pollster::block_on(adapter.request_device(&Default::default())).unwrap())
}

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

/// Under tp-invariant numerics, `run`'s loss curve at every tp of `tps` on both kinds of
/// group: the same bits everywhere (nothing to compare, locally, without an adapter).
#[allow(dead_code)]
pub fn assert_invariant_losses(tps: &[usize], run: impl Fn(&Group) -> Vec<f64>) {
    let mut first: Option<Vec<u64>> = None;
    for &tp in tps {
        for shared in [false, true] {
            let Some(g) = cached_group(tp, shared, Numerics::TpInvariant) else {
                return;
            };
            let bits: Vec<u64> = run(&g).iter().map(|l| l.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert_eq!(f, &bits, "tp {tp} shared {shared}"),
            }
        }
    }
}

/// The group of `tp` ranks of one kind (devices on one adapter, or logical ranks sharing
/// one device) with `numerics`, made once and shared by every test of this binary; `None`
/// (locally) without an adapter.
pub fn cached_group(tp: usize, shared: bool, numerics: Numerics) -> Option<Group> {
    type Groups = Mutex<HashMap<(usize, bool, Numerics), Option<Group>>>;
    static GROUPS: OnceLock<Groups> = OnceLock::new();
    let mut groups = GROUPS.get_or_init(Default::default).lock().unwrap();
    groups
        .entry((tp, shared, numerics))
        .or_insert_with(|| {
            let b = Group::builder().numerics(numerics);
            let (b, what) = if shared {
                (b.ranks_sharing_one_device(tp), "sharing one device")
            } else {
                (b.ranks_on_one_adapter(tp), "on one adapter")
            };
            build(b, &format!("tp {tp} {what}, {numerics:?}"))
        })
        .clone()
}

/// A group of `tp` devices on one adapter, shared by every test of this binary.
pub fn group(tp: usize) -> Option<Group> {
    cached_group(tp, false, Numerics::Fast)
}

/// The two kinds of group every layer and collective test runs on: `tp` devices on one
/// adapter (host collectives) and `tp` logical ranks sharing one device (on-device
/// collectives). Shared by every test of this binary; empty (locally) without an adapter.
pub fn groups(tp: usize) -> Vec<Group> {
    [false, true]
        .into_iter()
        .filter_map(|shared| cached_group(tp, shared, Numerics::Fast))
        .collect()
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
    b.as_deref().map_or(layer, |b| layer.with_bias(b))
}

/// One linear layer's seeded test data: input `x` `[m, k]`, weight `w` `[k, n]` (as the
/// reference takes it), the same weight `stored` per a layout, and a bias or none.
pub struct LinearCase {
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub stored: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

impl LinearCase {
    /// Weight and bias from a generator seeded with `seed`, then the input.
    pub fn new(
        seed: u64,
        (m, k, n): (usize, usize, usize),
        layout: WeightLayout,
        with_bias: bool,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let (w, b) = linear_data(&mut rng, k, n, with_bias);
        let x = rng.normal(m * k);
        let stored = in_layout(&w, k, n, layout);
        LinearCase { x, w, stored, b }
    }

    /// The full layer as the library takes it (`k` inputs, `n` outputs, stored per `layout`).
    pub fn host(&self, k: usize, n: usize, layout: WeightLayout) -> HostLinear<'_> {
        host(&self.stored, &self.b, k, n, layout)
    }
}

/// `tp` addends of `len` normal values each, drawn from `rng` in rank order.
pub fn normal_parts(rng: &mut Rng, tp: usize, len: usize) -> Vec<Vec<f32>> {
    (0..tp).map(|_| rng.normal(len)).collect()
}

/// A `Partial` tensor of `shape` whose rank `r` holds the addend `parts[r]` (each process
/// its own ranks' addends).
pub fn partial(group: &Group, parts: &[Vec<f32>], shape: [usize; 2]) -> DistTensor {
    let locals = group
        .ranks()
        .iter()
        .zip(&parts[group.local_range()])
        .map(|(r, p)| Tensor::from_host(r, p, shape).unwrap())
        .collect();
    DistTensor::from_locals(group, locals, Placement::Partial).unwrap()
}

/// The f32 sum of `parts` in rank order, which both collectives must reproduce bit for bit.
pub fn rank_order_sum(parts: &[Vec<f32>]) -> Vec<f32> {
    let mut acc = parts[0].clone();
    for p in &parts[1..] {
        acc.iter_mut().zip(p).for_each(|(a, b)| *a += *b);
    }
    acc
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

/// A reference's `[rows, cols]` values and bounds transposed (a backward's `X^T`).
#[allow(dead_code)]
pub fn transpose_approx(a: &Approx, rows: usize, cols: usize) -> Approx {
    let t = |v: &[f64]| {
        let mut out = vec![0.0; v.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = v[r * cols + c];
            }
        }
        out
    };
    Approx {
        value: t(&a.value),
        bound: t(&a.bound),
    }
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
    reference_linear_of(&Approx::exact(x), shape, w, n, bias)
}

/// The f64 reference of `h · w + bias` for an input that is itself a reference (the MLP's
/// second layer reads the first's), its bound carried through; `w` stored `[in, out]`.
pub fn reference_linear_of(
    h: &Approx,
    shape: [usize; 2],
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Approx {
    wgpu_tp::reference::linear(h, shape, w, n, WeightLayout::InOut, bias).expect("reference shapes")
}

/// Asserts every rank's local copy of `y` lies within the reference's bound.
pub fn assert_every_rank_within(want: &Approx, y: &wgpu_tp::DistTensor, ctx: &str) {
    for (r, v) in y.to_host_per_rank().unwrap().iter().enumerate() {
        assert_within(want, v, &format!("{ctx} rank {r}"));
    }
}

/// The window `rows x cols` at `(row0, col0)` of the row-major `[_, src_cols]` matrix
/// `src` (written here, not taken from the crate, so a test checks the crate's slicing
/// against an independent one).
#[allow(dead_code)]
pub fn slice_host(
    src: &[f32],
    src_cols: usize,
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
) -> Vec<f32> {
    (row0..row0 + rows)
        .flat_map(|r| {
            src[r * src_cols + col0..r * src_cols + col0 + cols]
                .iter()
                .copied()
        })
        .collect()
}

/// The row-major `[rows, cols]` matrix `src` cut along `dim` into shards of `sizes`.
#[allow(dead_code)]
pub fn split_host(src: &[f32], shape: [usize; 2], dim: usize, sizes: &[usize]) -> Vec<Vec<f32>> {
    let [rows, cols] = shape;
    assert_eq!(src.len(), rows * cols, "split_host: {shape:?}");
    let mut start = 0;
    sizes
        .iter()
        .map(|&len| {
            let part = if dim == 0 {
                slice_host(src, cols, start, len, 0, cols)
            } else {
                slice_host(src, cols, 0, rows, start, len)
            };
            start += len;
            part
        })
        .collect()
}

/// The row-major shards `parts` (of `shapes`) put back together along `dim`.
#[allow(dead_code)]
pub fn concat_host(parts: &[Vec<f32>], shapes: &[[usize; 2]], dim: usize) -> Vec<f32> {
    if dim == 0 {
        return parts.concat();
    }
    let rows = shapes.first().map_or(0, |s| s[0]);
    (0..rows)
        .flat_map(|r| {
            parts
                .iter()
                .zip(shapes)
                .flat_map(move |(p, s)| p[r * s[1]..(r + 1) * s[1]].iter().copied())
        })
        .collect()
}

/// Every tensor of PyTorch autograd's fixture (`tests/fixtures/backward/torch.safetensors`,
/// written by `scripts/make_backward_fixtures.py`), as f32 (int64 targets converted).
pub fn torch_fixture() -> HashMap<String, Vec<f32>> {
    f32_tensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/backward/torch.safetensors"
    ))
}

/// Every tensor of a safetensors fixture, as f32 (int64 converted).
pub fn f32_tensors(path: impl AsRef<std::path::Path>) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).expect("the fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            let v = match t.dtype() {
                safetensors::Dtype::F32 => t
                    .data()
                    .chunks(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::I64 => t
                    .data()
                    .chunks(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                d => panic!("{name}: {d:?}"),
            };
            (name, v)
        })
        .collect()
}
