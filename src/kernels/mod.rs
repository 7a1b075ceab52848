//! WGSL sources, the per-rank pipeline cache, and dispatch helpers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::dtype::DType;
use crate::error::{Error, Result};
use uniforms::Uniforms;

pub(crate) mod gemm_cpu;
pub(crate) mod gemm_skinny;
mod half;
pub(crate) mod params;
#[cfg(test)]
mod portability;
mod uniforms;

const ACTIVATION_WGSL: &str = include_str!("../../shaders/activation.wgsl");
const GEMM_PARAMS_WGSL: &str = include_str!("../../shaders/gemm_params.wgsl");
const GEMM_SCALAR_WGSL: &str = include_str!("../../shaders/gemm_scalar.wgsl");
const GEMM_TILED_WGSL: &str = include_str!("../../shaders/gemm_tiled.wgsl");
const GEMM_TILED_LARGE_WGSL: &str = include_str!("../../shaders/gemm_tiled_large.wgsl");
const GEMM_CPU_WGSL: &str = include_str!("../../shaders/gemm_cpu.wgsl");
const GEMM_SIMPLE_WGSL: &str = include_str!("../../shaders/gemm_simple.wgsl");
const GEMM_SKINNY_WGSL: &str = include_str!("../../shaders/gemm_skinny.wgsl");
const ELEMENTWISE_WGSL: &str = include_str!("../../shaders/elementwise.wgsl");
const REDUCE_WGSL: &str = include_str!("../../shaders/reduce.wgsl");
const REDUCE8_WGSL: &str = include_str!("../../shaders/reduce8.wgsl");
const MODEL_WGSL: &str = include_str!("../../shaders/model.wgsl");

/// Invocations per workgroup of `elementwise.wgsl` and `reduce.wgsl`.
pub(crate) const ELEMENTWISE_WORKGROUP: u32 = 256;

/// A shader file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// `gemm_tiled.wgsl`: x, w, bias (read), y (read-write), params (uniform).
    GemmTiled,
    /// `gemm_tiled_large.wgsl`: same bindings.
    GemmTiledLarge,
    /// `gemm_cpu.wgsl` and its generated entry points (`kernels/gemm_cpu.rs`): same
    /// bindings.
    GemmCpu,
    /// `gemm_simple.wgsl`: same bindings.
    GemmSimple,
    /// `gemm_skinny.wgsl` and the generated variant (`kernels/gemm_skinny/mod.rs`): same
    /// bindings.
    GemmSkinny(gemm_skinny::Skinny),
    /// `elementwise.wgsl`: a, b (read), out (read-write), params (uniform).
    Elementwise,
    /// `reduce.wgsl`: a, b, c, d (read), out (read-write), params (uniform).
    Reduce,
    /// `reduce8.wgsl`: a .. h (read), out (read-write), params (uniform).
    Reduce8,
    /// `model.wgsl`: a, b, c (read), out (read-write), params (uniform): the GEMMs'
    /// layout.
    Model,
}

/// The bind-group layouts: one per distinct list of storage bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Layout {
    Gemm,
    Elementwise,
    Reduce,
    Reduce8,
}

impl Layout {
    /// `read_only` of each storage binding, in binding order; the uniform comes last.
    fn storage_bindings(self) -> &'static [bool] {
        match self {
            Layout::Gemm => &[true, true, true, false],
            Layout::Elementwise => &[true, true, false],
            Layout::Reduce => &[true, true, true, true, false],
            Layout::Reduce8 => &[true, true, true, true, true, true, true, true, false],
        }
    }
}

impl Shader {
    /// The WGSL of this shader: its file after the shared pieces it uses.
    fn source(self) -> String {
        let parts: &[&str] = match self {
            Shader::GemmTiled => &[GEMM_PARAMS_WGSL, GEMM_SCALAR_WGSL, GEMM_TILED_WGSL],
            Shader::GemmTiledLarge => &[GEMM_PARAMS_WGSL, GEMM_SCALAR_WGSL, GEMM_TILED_LARGE_WGSL],
            Shader::GemmSimple => &[GEMM_PARAMS_WGSL, GEMM_SCALAR_WGSL, GEMM_SIMPLE_WGSL],
            Shader::GemmCpu => return gemm_cpu_source(gemm_cpu::ROWS, gemm_cpu::COLS4),
            Shader::GemmSkinny(v) => {
                return [
                    ACTIVATION_WGSL,
                    GEMM_PARAMS_WGSL,
                    GEMM_SKINNY_WGSL,
                    &v.source(),
                ]
                .join("\n")
            }
            Shader::Elementwise => &[ELEMENTWISE_WGSL],
            Shader::Reduce => return REDUCE_WGSL.to_string(),
            Shader::Reduce8 => return REDUCE8_WGSL.to_string(),
            Shader::Model => return MODEL_WGSL.to_string(),
        };
        std::iter::once(ACTIVATION_WGSL)
            .chain(parts.iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The WGSL of this shader reading `weights` weights (see half.rs); `None` for a
    /// shader that reads no weights, asked for half ones.
    fn source_for(self, weights: DType) -> Option<String> {
        let (name, unit) = match self {
            _ if weights == DType::F32 => return Some(self.source()),
            Shader::GemmTiled | Shader::GemmTiledLarge | Shader::GemmSimple => {
                ('w', half::Unit::Scalar)
            }
            Shader::GemmCpu => ('w', half::Unit::Vec4),
            Shader::GemmSkinny(v) if v.vec4 => ('w', half::Unit::Vec4),
            Shader::GemmSkinny(_) => ('w', half::Unit::Scalar),
            // The embedding lookup's table.
            Shader::Model => ('a', half::Unit::Scalar),
            _ => return None,
        };
        Some(half::packed_weights(&self.source(), name, unit, weights))
    }

    fn layout(self) -> Layout {
        match self {
            Shader::GemmTiled
            | Shader::GemmTiledLarge
            | Shader::GemmCpu
            | Shader::GemmSimple
            | Shader::GemmSkinny(_)
            | Shader::Model => Layout::Gemm,
            Shader::Elementwise => Layout::Elementwise,
            Shader::Reduce => Layout::Reduce,
            Shader::Reduce8 => Layout::Reduce8,
        }
    }
}

/// The WGSL of `gemm_cpu.wgsl` with a `rows` x (4 `cols4`) register block: the shared
/// pieces, the hand-written file, then the generated constants and entry points.
fn gemm_cpu_source(rows: usize, cols4: usize) -> String {
    [
        ACTIVATION_WGSL,
        GEMM_PARAMS_WGSL,
        GEMM_CPU_WGSL,
        &gemm_cpu::entry_points(rows, cols4),
    ]
    .join("\n")
}

/// A compiled pipeline's identity: shader, entry point, override constants, and the type
/// of the weights a GEMM reads (f32 for every other shader).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub shader: Shader,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    pub weights: DType,
}

/// One rank's shader modules, layouts and compiled pipelines, each made once, and the
/// uniform buffers of the parameters it has dispatched with.
#[derive(Debug)]
pub(crate) struct Kernels {
    layouts: Mutex<HashMap<Layout, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    modules: Mutex<HashMap<(Shader, DType), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    uniforms: Mutex<Uniforms>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    pub(crate) fn new() -> Self {
        Kernels {
            layouts: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            uniforms: Mutex::new(Uniforms::default()),
        }
    }

    /// The bind-group and pipeline layouts of `shader`, made on first use (so a device
    /// whose limits cannot hold one shader's bindings still runs the others).
    fn layout(
        &self,
        device: &wgpu::Device,
        shader: Shader,
    ) -> Result<(wgpu::BindGroupLayout, wgpu::PipelineLayout)> {
        let mut layouts = self.layouts.lock().map_err(|_| poisoned())?;
        let layout = shader.layout();
        if let Some(l) = layouts.get(&layout) {
            return Ok(l.clone());
        }
        let storage = layout.storage_bindings();
        let mut entries: Vec<_> = storage
            .iter()
            .enumerate()
            .map(|(i, &ro)| storage_entry(i as u32, ro))
            .collect();
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: storage.len() as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-tp bind group layout"),
            entries: &entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgpu-tp pipeline layout"),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        layouts.insert(layout, (bgl.clone(), pl.clone()));
        Ok((bgl, pl))
    }

    /// The pipeline for `key`, compiled on first use.
    pub(crate) fn pipeline(
        &self,
        device: &wgpu::Device,
        key: &PipelineKey,
    ) -> Result<wgpu::ComputePipeline> {
        let mut pipelines = self.pipelines.lock().map_err(|_| poisoned())?;
        if let Some(p) = pipelines.get(key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(&(key.shader, key.weights)) {
                Some(m) => m.clone(),
                None => {
                    let source = key.shader.source_for(key.weights).ok_or_else(|| {
                        Error::invalid(
                            key.entry,
                            format!("{:?} reads no {} weights", key.shader, key.weights),
                        )
                    })?;
                    let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some("wgpu-tp shader"),
                        source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
                    });
                    modules.insert((key.shader, key.weights), m.clone());
                    m
                }
            }
        };
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|&(n, v)| (n, f64::from(v)))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry),
            layout: Some(&self.layout(device, key.shader)?.1),
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        pipelines.insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    /// Uniform buffers made so far.
    pub(crate) fn uniforms_made(&self) -> u64 {
        self.uniforms.lock().map_or(0, |u| u.made())
    }

    /// Forgets every kept uniform buffer: after a failed dispatch, whose uniform may be
    /// one wgpu could not make.
    pub(crate) fn forget_uniforms(&self) {
        if let Ok(mut u) = self.uniforms.lock() {
            u.clear();
        }
    }

    /// Encodes one dispatch of `key` over `buffers` (in binding order) and the uniform
    /// `params` (the last binding: a buffer kept per content, written through `queue` the
    /// first time, before the encoder's submission runs) into `encoder`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        key: &PipelineKey,
        buffers: &[&wgpu::Buffer],
        params: &[u8],
        workgroups: [u32; 2],
    ) -> Result<()> {
        let pipeline = self.pipeline(device, key)?;
        let uniform = self
            .uniforms
            .lock()
            .map_err(|_| poisoned())?
            .get(device, queue, params);
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: uniform.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-tp bind group"),
            layout: &self.layout(device, key.shader)?.0,
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(key.entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], 1);
        Ok(())
    }
}

fn poisoned() -> Error {
    Error::invalid(
        "kernels",
        "pipeline cache lock poisoned by a panicking thread",
    )
}

/// One dispatch of `elementwise.wgsl` or `reduce.wgsl`: `count` elements from `base`, on a
/// 2-D grid of `ELEMENTWISE_WORKGROUP`-wide workgroups linearized with `stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub base: u32,
    pub count: u32,
    pub grid: [u32; 2],
    pub stride: u32,
}

/// Dispatches covering elements `[0, len)`, each within `max_dim` workgroups per
/// dimension (several when one cannot cover them all).
pub(crate) fn pieces(len: usize, max_dim: u32) -> Vec<Piece> {
    let max_dim = u64::from(max_dim.max(1));
    let most = max_dim * max_dim * u64::from(ELEMENTWISE_WORKGROUP);
    let mut out = Vec::new();
    let mut base = 0u64;
    while base < len as u64 {
        let count = (len as u64 - base).min(most);
        let groups = count.div_ceil(u64::from(ELEMENTWISE_WORKGROUP));
        let gx = groups.min(max_dim);
        let gy = groups.div_ceil(gx);
        out.push(Piece {
            base: base as u32,
            count: count as u32,
            grid: [gx as u32, gy as u32],
            stride: gx as u32 * ELEMENTWISE_WORKGROUP,
        });
        base += count;
    }
    out
}

#[cfg(test)]
mod tests;
