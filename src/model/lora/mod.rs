//! [`Lora`]: low-rank adapters (Hu et al. 2021, PEFT's `LoraConfig`) on a [`Transformer`]'s
//! projections, sharded with their layer, the base weights frozen.
//!
//! A projection `W` (`[out, in]`) is adapted as `W + s·B·A`, `A: [r, in]`, `B: [out, r]`,
//! `s = alpha / r`. On a column-parallel projection (q, k, v; gate, up) `A` is whole on
//! every rank and `B` split by rows with the weight; on a row-parallel one (o, down) `A` is
//! split by columns with the weight and `B` whole. A fused weight (q, k and v of every
//! rank's heads one after another; gate and up) carries its modules' adapters side by
//! side: `A` stacks theirs (`[m·r, in]`) and `B` places each module's rows in its module's
//! `r` columns (zero elsewhere: their gradients are masked, so AdamW keeps them zero).
//!
//! A weight stored `[in, out]` (GPT-2's Conv1D, PEFT's `fan_in_fan_out`) is adapted as
//! stored: `Wᵀ + s·Aᵀ·Bᵀ`, the same arithmetic with `Bᵀ` in `A`'s place and `Aᵀ` in
//! `B`'s, so a column-parallel one splits `Bᵀ` by columns (its rank blocks of q, k and v
//! gathered from the module's columns) and a row-parallel one splits `Aᵀ` by rows; PEFT's
//! `A` and `B` are transposed back on reading and writing.
//!
//! The adapters are attached to their layers ([`AdapterSlot`](crate::nn::AdapterSlot)):
//! every product that reads an adapted weight, the forward's and the input gradient's, adds
//! `s·(x·Aᵀ)·Bᵀ` (or `s·(dy·B)·A`), never materializing `B·A`, so the base weight is never
//! written and keeps its type (f32, half precision or a GGUF file's quantized blocks, read
//! by the GEMMs as they are: QLoRA's frozen quantized base). The
//! adapters' gradients come from the weight's by the chain rule (`dW = dyᵀ·x` is the same
//! with or without the adapter): `dB = s·dW·Aᵀ`, `dA = s·Bᵀ·dW`, the sum over ranks of a
//! split `B`'s share (or over a split `A`'s inputs for `dB`) taken by one small
//! all-reduce. [`Lora::backward`] makes no `dW` (under tp-invariant numerics one at a
//! time): the model's backward, the base frozen, gives each adapted weight's factors `dy`
//! and `x`, and the adapters' gradients are `s·dyᵀ·(x·Aᵀ)` and `s·(dy·B)ᵀ·x`; no other
//! weight's gradient is computed (the norms' one-row ones aside). [`Lora::grads`] takes
//! them from a whole backward's `dW` instead.
//!
//! [`Lora::save_peft`] writes the adapter as PEFT does (`adapter_model.safetensors`,
//! `adapter_config.json`); [`Lora::from_peft`] reads one.

use std::ops::Range;

mod grads;
#[cfg(not(target_arch = "wasm32"))]
mod peft;
#[cfg(not(target_arch = "wasm32"))]
use peft::peft_name;

pub use grads::LoraGrads;

use super::recipe::{Mlp, Qkv};
use super::{SplitMix64, Transformer};
use crate::dist::{DistTensor, Placement};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::nn::{transpose, Adaptable, Adapter, RowBlock};
#[cfg(not(target_arch = "wasm32"))]
use crate::tensor::shard::offsets;
use crate::tensor::Tensor;

/// The options of a [`Lora`], PEFT's names and defaults, made from [`Default`] with
/// chainable setters:
///
/// ```
/// use wgpu_tp::model::LoraConfig;
///
/// let config = LoraConfig::default().rank(4).alpha(8.0).targets(&["q_proj", "v_proj"]);
/// assert_eq!(config.rank, 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoraConfig {
    /// `r`, the adapters' rank. Default: 8.
    pub rank: usize,
    /// `lora_alpha`: the update is scaled by `alpha / rank`. Default: 16.
    pub alpha: f32,
    /// The modules adapted, as PEFT's `target_modules`: a module is adapted when its name
    /// is one of these or ends with `.` and one of these; `all-linear` (PEFT's) adapts
    /// every projection of the blocks (Llama's `q_proj` … `down_proj`, Phi-3's
    /// `qkv_proj`, `o_proj`, `gate_up_proj`, `down_proj`), not the LM head. Default:
    /// `all-linear`.
    pub targets: Vec<String>,
    /// Seeds `A`'s initialization (PEFT's: uniform in `±1/√in`; `B` starts at zero).
    /// Default: 0.
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: vec![ALL_LINEAR.to_string()],
            seed: 0,
        }
    }
}

impl LoraConfig {
    /// Sets the field `rank`.
    #[must_use]
    pub fn rank(self, rank: usize) -> Self {
        LoraConfig { rank, ..self }
    }

    /// Sets the field `alpha`.
    #[must_use]
    pub fn alpha(self, alpha: f32) -> Self {
        LoraConfig { alpha, ..self }
    }

    /// Sets the field `targets`.
    #[must_use]
    pub fn targets(self, targets: &[&str]) -> Self {
        let targets = targets.iter().map(|t| (*t).to_string()).collect();
        LoraConfig { targets, ..self }
    }

    /// Sets the field `seed`.
    #[must_use]
    pub fn seed(self, seed: u64) -> Self {
        LoraConfig { seed, ..self }
    }

    fn matches(&self, module: &str) -> bool {
        self.targets.iter().any(|t| Self::one_matches(t, module))
    }

    fn one_matches(target: &str, module: &str) -> bool {
        target == ALL_LINEAR || module == target || module.ends_with(&format!(".{target}"))
    }
}

/// PEFT's target for every linear projection but the output layer.
const ALL_LINEAR: &str = "all-linear";

/// A module of the checkpoint a fused weight holds part of: its name and its whole `[out,
/// in]` shape.
#[derive(Debug, Clone)]
struct Module {
    name: String,
    out: usize,
    input: usize,
}

impl Module {
    /// The shape of its weight as stored, `M`: `[out, in]`, or `[in, out]` (`transposed`).
    fn stored(&self, transposed: bool) -> [usize; 2] {
        if transposed {
            [self.input, self.out]
        } else {
            [self.out, self.input]
        }
    }
}

/// One adapted weight of the model.
#[derive(Debug, Clone)]
struct Target {
    /// Its index in [`Transformer::parameters`].
    param: usize,
    site: Adaptable,
    /// The adapted modules, in the order of their blocks of `A`'s rows (or the one module
    /// of a weight split by its stored columns).
    modules: Vec<Module>,
    /// For each of the weight's parts: its module's index in `modules` (`None` when not
    /// adapted) and the part's first row in it.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    parts: Vec<Option<(usize, usize)>>,
    /// The model's weight (read for its shape and split).
    weight: DistTensor,
    a: DistTensor,
    b: DistTensor,
    /// Split by rows: per local rank, `B`'s entries that are not an adapter's (zeroed in
    /// its gradient), and its rows of key/value heads an earlier rank holds (counted
    /// once), each as a rectangle `(at, shape)`.
    masked: Vec<Vec<Rect>>,
    doubled: Vec<Vec<Rect>>,
}

type Rect = ([usize; 2], [usize; 2]);

/// A whole tensor on the host: its name, shape (`[rows, cols]`) and row-major values.
pub type NamedTensor = (String, [usize; 2], Vec<f32>);

/// Low-rank adapters on a [`Transformer`]'s projections, sharded with their layers, the
/// base weights frozen (see the module's documentation for how it is computed).
///
/// ```no_run
/// # fn main() -> wgpu_tp::Result<()> {
/// use wgpu_tp::load::Checkpoint;
/// use wgpu_tp::model::{Lora, LoraConfig, Transformer};
/// use wgpu_tp::nn::{clip_grad_norm, AdamW, AdamWConfig};
/// use wgpu_tp::{DistTensor, Group};
///
/// let group = Group::builder().ranks_on_one_adapter(2).build()?;
/// let model = Transformer::from_checkpoint(&group, &Checkpoint::open("model")?)?;
/// let lora = Lora::new(&model, LoraConfig::default())?;
/// let params = lora.parameters();
/// let params: Vec<&DistTensor> = params.iter().collect();
/// let mut opt = AdamW::new(&params, AdamWConfig::default().lr(1e-3))?;
/// let (ids, targets) = ([1u32, 5, 9], [Some(5u32), Some(9), None]);
/// let grads = lora.backward(&model, &ids, &targets)?;
/// let counted: Vec<&DistTensor> = grads.counted.iter().collect();
/// let norm = clip_grad_norm(&counted, 1.0)?;
/// let all: Vec<&DistTensor> = grads.grads.iter().collect();
/// opt.step(&params, &all, norm.scale)?;
/// lora.save_peft("adapter", Some("model"))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Lora {
    group: Group,
    config: LoraConfig,
    scale: f32,
    targets: Vec<Target>,
}

impl Lora {
    /// New adapters on `model`'s modules that `config.targets` names: `A` uniform in
    /// `±1/√in` (PEFT's default), `B` zero (so the model is unchanged until trained),
    /// attached to the model's layers (see [`Lora::detach`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a rank of 0 or over a module's features, a target no
    /// module matches, or a model that already carries adapters; GPU errors.
    pub fn new(model: &Transformer, config: LoraConfig) -> Result<Self> {
        let mut rng = SplitMix64::new(config.seed);
        let lora = Self::build(model, config, |m, which, shape| {
            Ok(match which {
                'A' => {
                    let bound = 1.0 / (m.input as f64).sqrt();
                    (0..shape[0] * shape[1])
                        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                        .collect()
                }
                _ => vec![0.0; shape[0] * shape[1]],
            })
        })?;
        lora.attach();
        Ok(lora)
    }

    /// Finds the targets and builds their adapters, `init(module, 'A' or 'B', shape)`
    /// giving each module's whole `A` (`[r, in]`) and `B` (`[out, r]`), unattached.
    fn build(
        model: &Transformer,
        config: LoraConfig,
        mut init: impl FnMut(&Module, char, [usize; 2]) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let op = "lora.new";
        let r = config.rank;
        if r == 0 || !config.alpha.is_finite() {
            return Err(Error::invalid(
                op,
                format!("rank {r} and alpha {}", config.alpha),
            ));
        }
        let group = model.group.clone();
        let mut targets = Vec::new();
        let mut matched = vec![false; config.targets.len()];
        for mut site in model.lora_sites()? {
            let mut modules: Vec<Module> = Vec::new();
            let mut parts = Vec::new();
            for (m, at) in std::mem::take(&mut site.parts) {
                if !config.matches(&m.name) {
                    parts.push(None);
                    continue;
                }
                for (t, hit) in config.targets.iter().zip(matched.iter_mut()) {
                    *hit |= LoraConfig::one_matches(t, &m.name);
                }
                if r > m.out.min(m.input) {
                    return Err(Error::invalid(
                        op,
                        format!("rank {r} over {}'s [{}, {}]", m.name, m.out, m.input),
                    ));
                }
                let index = match modules.iter().position(|k| k.name == m.name) {
                    Some(k) => k,
                    None => {
                        modules.push(m);
                        modules.len() - 1
                    }
                };
                parts.push(Some((index, at)));
            }
            if modules.is_empty() {
                continue;
            }
            // In `M`'s frame (`M + s·B·A` as stored): a transposed weight's `A` is PEFT's
            // `Bᵀ`, its `B` PEFT's `Aᵀ`.
            let transposed = site.adaptable.transposed;
            let hosts = modules
                .iter()
                .map(|m| {
                    let (a, b) = (init(m, 'A', [r, m.input])?, init(m, 'B', [m.out, r])?);
                    Ok(if transposed {
                        [transpose(&b, m.out, r), transpose(&a, r, m.input)]
                    } else {
                        [a, b]
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            targets.push(Target::new(&group, site, modules, parts, r, &hosts)?);
        }
        if let Some(t) = matched.iter().position(|m| !m) {
            return Err(Error::invalid(
                op,
                format!(
                    "no module of this model that LoRA can adapt matches the target {:?}",
                    config.targets[t]
                ),
            ));
        }
        if targets.iter().any(|t| t.site.slot.get().is_some()) {
            return Err(Error::invalid(
                op,
                "the model already carries adapters (detach them first)",
            ));
        }
        let lora = Lora {
            group,
            scale: config.alpha / r as f32,
            config,
            targets,
        };
        Ok(lora)
    }

    /// Its options.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The names of the modules adapted (transformers' names), in order.
    pub fn modules(&self) -> Vec<&str> {
        let modules = self.targets.iter().flat_map(|t| &t.modules);
        modules.map(|m| m.name.as_str()).collect()
    }

    /// Every adapter tensor, each adapted weight's `A` then `B` (a fused weight's modules'
    /// side by side), placed as [`LoraGrads`] gives their gradients: what an optimizer
    /// trains, in place (the layers read them as they are).
    pub fn parameters(&self) -> Vec<DistTensor> {
        let pairs = self.targets.iter().map(|t| [t.a.clone(), t.b.clone()]);
        pairs.flatten().collect()
    }

    /// Attaches the adapters to the model's layers.
    fn attach(&self) {
        for t in &self.targets {
            t.site.slot.set(Some(Adapter {
                a: t.a.locals().to_vec(),
                b: t.b.locals().to_vec(),
                scale: self.scale,
            }));
        }
    }

    /// Takes the adapters off the model: it is its base again (and may take others).
    /// Attached by [`Lora::new`] and [`Lora::from_peft`], they stay on the model until
    /// this, whether or not this `Lora` is kept.
    pub fn detach(&self) {
        for t in &self.targets {
            t.site.slot.set(None);
        }
    }

    /// Every adapted module's `A` (`[r, in]`) and `B` (`[out, r]`) on the host, whole,
    /// with PEFT's names (`base_model.model.{module}.lora_A.weight`), in
    /// [`Lora::modules`]' order.
    ///
    /// # Errors
    /// GPU errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_host(&self) -> Result<Vec<NamedTensor>> {
        self.unfused(&self.parameters())
    }

    /// Tensors placed as [`Lora::parameters`] (the adapters, or their gradients) on the
    /// host as [`Lora::to_host`] gives the adapters: each module's whole `A` and `B`,
    /// PEFT's names.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for tensors of other shapes or another count; GPU errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn unfused(&self, values: &[DistTensor]) -> Result<Vec<NamedTensor>> {
        let op = "lora.unfused";
        let like = self.parameters();
        let same = values.len() == like.len()
            && values
                .iter()
                .zip(&like)
                .all(|(v, p)| v.shape() == p.shape());
        if !same {
            return Err(Error::invalid(op, "tensors not placed as the adapters"));
        }
        let r = self.config.rank;
        let mut out = Vec::new();
        for (t, pair) in self.targets.iter().zip(values.chunks(2)) {
            let (a, b) = (pair[0].to_host()?, pair[1].to_host()?);
            let width = t.b.shape()[1];
            let transposed = t.site.transposed;
            let stored: Vec<[usize; 2]> = t.modules.iter().map(|m| m.stored(transposed)).collect();
            let mut bs: Vec<Vec<f32>> =
                stored.iter().map(|[rows, _]| vec![0.0; rows * r]).collect();
            let mut a_whole = None;
            if t.site.by_rows {
                let starts = offsets(t.weight.shard_sizes());
                for (rows, start) in t.site.blocks.iter().zip(starts) {
                    let mut at = start;
                    for block in rows {
                        if let Some((m, first)) = t.parts[block.part] {
                            for j in 0..block.len {
                                let from = (at + j) * width + m * r;
                                let to = (first + block.from + j) * r;
                                bs[m][to..to + r].copy_from_slice(&b[from..from + r]);
                            }
                        }
                        at += block.len;
                    }
                }
            } else {
                bs[0] = b;
                // The ranks' columns, one after another, put back in the module's order.
                let cols = stored[0][1];
                let mut whole = vec![0.0; r * cols];
                let mut at = 0;
                for blocks in &t.site.blocks {
                    let columns = module_columns(blocks, &t.parts)?;
                    for (j, &c) in columns.iter().enumerate() {
                        for row in 0..r {
                            whole[row * cols + c] = a[row * cols + at + j];
                        }
                    }
                    at += columns.len();
                }
                a_whole = Some(whole);
            }
            for (m, (module, bm)) in t.modules.iter().zip(bs).enumerate() {
                let [rows, cols] = stored[m];
                let am = match &a_whole {
                    Some(whole) => whole.clone(),
                    None => a[m * r * cols..(m + 1) * r * cols].to_vec(),
                };
                let (am, bm) = if transposed {
                    (transpose(&bm, rows, r), transpose(&am, r, cols))
                } else {
                    (am, bm)
                };
                out.push((peft_name(&module.name, "A"), [r, module.input], am));
                out.push((peft_name(&module.name, "B"), [module.out, r], bm));
            }
        }
        Ok(out)
    }
}

impl Target {
    /// Uploads the adapters (`hosts[m]`: module `m`'s whole `A` and `B`) placed as the
    /// weight is split.
    fn new(
        group: &Group,
        site: Site,
        modules: Vec<Module>,
        parts: Vec<Option<(usize, usize)>>,
        r: usize,
        hosts: &[[Vec<f32>; 2]],
    ) -> Result<Self> {
        let weight = site.weight;
        let sizes = weight.shard_sizes().to_vec();
        let local = group.local_range();
        let (mut masked, mut doubled) = (Vec::new(), Vec::new());
        let transposed = site.adaptable.transposed;
        let (a, b) = if site.adaptable.by_rows {
            let width = modules.len() * r;
            let input = modules[0].stored(transposed)[1];
            let a_host: Vec<f32> = hosts.iter().flat_map(|[a, _]| a.iter().copied()).collect();
            let a = DistTensor::replicate(group, &a_host, [width, input])?;
            let mut locals = Vec::new();
            for (rank, g) in group.ranks().iter().zip(local.clone()) {
                let mut host = vec![0.0; sizes[g] * width];
                let (mut mask, mut twice, mut at) = (Vec::new(), Vec::new(), 0);
                for block in &site.adaptable.blocks[g] {
                    let rows = [at, block.len];
                    match parts[block.part] {
                        Some((m, first)) => {
                            for j in 0..block.len {
                                let from = (first + block.from + j) * r;
                                let to = (at + j) * width + m * r;
                                host[to..to + r].copy_from_slice(&hosts[m][1][from..from + r]);
                            }
                            mask.extend(cols_outside(rows, m * r..(m + 1) * r, width));
                        }
                        None => mask.push(([at, 0], [block.len, width])),
                    }
                    if !block.owned {
                        twice.push(([at, 0], [block.len, width]));
                    }
                    at += block.len;
                }
                locals.push(Tensor::from_host(rank, &host, [sizes[g], width])?);
                masked.push(mask);
                doubled.push(twice);
            }
            let total = weight.shape()[0];
            let b =
                DistTensor::from_parts(group, locals, Placement::Shard(0), [total, width], sizes);
            (a, b)
        } else {
            let [rows, cols] = modules[0].stored(transposed);
            let [a_host, b_host] = &hosts[0];
            let locals = group
                .ranks()
                .iter()
                .zip(local.clone())
                .map(|(rank, g)| {
                    let columns = module_columns(&site.adaptable.blocks[g], &parts)?;
                    let part: Vec<f32> = a_host
                        .chunks(cols)
                        .flat_map(|row| columns.iter().map(move |&c| row[c]))
                        .collect();
                    Tensor::from_host(rank, &part, [r, sizes[g]])
                })
                .collect::<Result<Vec<_>>>()?;
            let a = DistTensor::from_parts(group, locals, Placement::Shard(1), [r, cols], sizes);
            let b = DistTensor::replicate(group, b_host, [rows, r])?;
            for _ in local {
                masked.push(Vec::new());
                doubled.push(Vec::new());
            }
            (a, b)
        };
        Ok(Target {
            param: site.param,
            site: site.adaptable,
            modules,
            parts,
            weight,
            a,
            b,
            masked,
            doubled,
        })
    }
}

/// The module's columns a rank's `blocks` of a weight split by columns hold, in order
/// (one module: every part adapted).
fn module_columns(blocks: &[RowBlock], parts: &[Option<(usize, usize)>]) -> Result<Vec<usize>> {
    let mut columns = Vec::new();
    for block in blocks {
        let Some((_, first)) = parts[block.part] else {
            return Err(Error::invalid(
                "lora.new",
                "a projection split by its columns is adapted whole or not at all",
            ));
        };
        columns.extend((0..block.len).map(|j| first + block.from + j));
    }
    Ok(columns)
}

/// The rectangles of rows `[at, len]` outside columns `keep` of `width`.
fn cols_outside(rows: [usize; 2], keep: Range<usize>, width: usize) -> Vec<Rect> {
    let [at, len] = rows;
    let mut out = Vec::new();
    if keep.start > 0 {
        out.push(([at, 0], [len, keep.start]));
    }
    if keep.end < width {
        out.push(([at, keep.end], [len, width - keep.end]));
    }
    out
}

/// An adaptable weight of the model, found by [`Transformer::lora_sites`].
struct Site {
    param: usize,
    weight: DistTensor,
    adaptable: Adaptable,
    /// Each of the weight's parts: its module and the part's first row in it.
    parts: Vec<(Module, usize)>,
}

impl Transformer {
    /// Every weight a low-rank adapter can adapt, with its parameter index and its parts'
    /// modules (transformers' names).
    fn lora_sites(&self) -> Result<Vec<Site>> {
        let r = &self.recipe;
        let c = &self.config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let module = |name: String, out: usize, input: usize| Module { name, out, input };
        let mut sites = Vec::new();
        let mut offsets = self.layer_offsets().into_iter();
        for (l, block) in self.blocks.iter().enumerate() {
            let b = format!("{}{}.{l}", r.prefix, r.blocks);
            let named: [Vec<Vec<(Module, usize)>>; 2] = [
                vec![
                    match &r.attention.qkv {
                        Qkv::Separate([qn, kn, vn]) => vec![
                            (module(format!("{b}.{qn}"), q, h), 0),
                            (module(format!("{b}.{kn}"), kv, h), 0),
                            (module(format!("{b}.{vn}"), kv, h), 0),
                        ],
                        Qkv::Fused(n) => {
                            let m = module(format!("{b}.{n}"), q + 2 * kv, h);
                            vec![(m.clone(), 0), (m.clone(), q), (m, q + kv)]
                        }
                    },
                    vec![(module(format!("{b}.{}", r.attention.o), h, q), 0)],
                ],
                match &r.mlp.kind {
                    Mlp::Gated { gate, up, down } => vec![
                        vec![
                            (module(format!("{b}.{gate}"), i, h), 0),
                            (module(format!("{b}.{up}"), i, h), 0),
                        ],
                        vec![(module(format!("{b}.{down}"), h, i), 0)],
                    ],
                    Mlp::GatedFused { gate_up, down } => {
                        let m = module(format!("{b}.{gate_up}"), 2 * i, h);
                        vec![
                            vec![(m.clone(), 0), (m, i)],
                            vec![(module(format!("{b}.{down}"), h, i), 0)],
                        ]
                    }
                    Mlp::Plain { fc, proj } => vec![
                        vec![(module(format!("{b}.{fc}"), i, h), 0)],
                        vec![(module(format!("{b}.{proj}"), h, i), 0)],
                    ],
                },
            ];
            for (step, names) in block.steps.iter().zip(named) {
                let at = offsets.next().ok_or_else(|| {
                    Error::invalid("lora.new", "a step without its parameters' offset")
                })?;
                let params = step.layer.parameters();
                for (adaptable, parts) in step.layer.adaptable().into_iter().zip(names) {
                    sites.push(Site {
                        param: at + adaptable.param,
                        weight: params[adaptable.param].clone(),
                        adaptable,
                        parts,
                    });
                }
            }
        }
        Ok(sites)
    }
}
