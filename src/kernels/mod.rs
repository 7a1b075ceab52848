//! WGSL sources, the per-rank pipeline cache, and dispatch helpers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::kernels::dtype::DType;
use template::Slots;
use uniforms::Uniforms;

pub(crate) mod dtype;
pub(crate) mod gemm_cpu;
pub(crate) mod gemm_skinny;
pub(crate) mod params;
#[cfg(test)]
mod portability;
pub(crate) mod quant;
pub(crate) mod settings;
pub(crate) mod template;
mod uniforms;

/// `activation.wgsl` after the GeLU derivative it calls (`gelu.wgsl`).
const ACTIVATION_WGSL: &str = concat!(
    include_str!("../../shaders/gelu.wgsl"),
    "\n",
    include_str!("../../shaders/activation.wgsl")
);
const GELU_WGSL: &str = include_str!("../../shaders/gelu.wgsl");
const GEMM_PARAMS_WGSL: &str = include_str!("../../shaders/gemm_params.wgsl");
const GEMM_SCALAR_WGSL: &str = include_str!("../../shaders/gemm_scalar.wgsl");
const GEMM_TILED_WGSL: &str = include_str!("../../shaders/gemm_tiled.wgsl");
const GEMM_TILED_LARGE_WGSL: &str = include_str!("../../shaders/gemm_tiled_large.wgsl");
const GEMM_SIMPLE_WGSL: &str = include_str!("../../shaders/gemm_simple.wgsl");
const WEIGHTS_F32_WGSL: &str = include_str!("../../shaders/weights_f32.wgsl");
const WEIGHTS_F16_WGSL: &str = include_str!("../../shaders/weights_f16.wgsl");
const WEIGHTS_BF16_WGSL: &str = include_str!("../../shaders/weights_bf16.wgsl");
const F16_WGSL: &str = include_str!("../../shaders/f16.wgsl");
const WEIGHTS_QUANT_WGSL: &str = include_str!("../../shaders/weights_quant.wgsl");
const WEIGHTS_Q8_0_WGSL: &str = include_str!("../../shaders/weights_q8_0.wgsl");
const WEIGHTS_Q4_0_WGSL: &str = include_str!("../../shaders/weights_q4_0.wgsl");
const WEIGHTS_Q4_1_WGSL: &str = include_str!("../../shaders/weights_q4_1.wgsl");
const WEIGHTS_Q5_0_WGSL: &str = include_str!("../../shaders/weights_q5_0.wgsl");
const WEIGHTS_Q4_K_WGSL: &str = include_str!("../../shaders/weights_q4_k.wgsl");
const WEIGHTS_Q5_K_WGSL: &str = include_str!("../../shaders/weights_q5_k.wgsl");
const WEIGHTS_Q6_K_WGSL: &str = include_str!("../../shaders/weights_q6_k.wgsl");
const ELEMENTWISE_WGSL: &str = include_str!("../../shaders/elementwise.wgsl");
const REDUCE_WGSL: &str = include_str!("../../shaders/reduce.wgsl");
const REDUCE8_WGSL: &str = include_str!("../../shaders/reduce8.wgsl");
const NORMS_WGSL: &str = include_str!("../../shaders/norms.wgsl");
const EMBEDDING_WGSL: &str = include_str!("../../shaders/embedding.wgsl");
const ROTARY_WGSL: &str = include_str!("../../shaders/rotary.wgsl");
const ROPE_WGSL: &str = include_str!("../../shaders/rope.wgsl");
const KV_CACHE_WGSL: &str = include_str!("../../shaders/kv_cache.wgsl");
const ATTENTION_COMMON_WGSL: &str = include_str!("../../shaders/attention_common.wgsl");
const ATTENTION_WGSL: &str = include_str!("../../shaders/attention.wgsl");
const ATTENTION_BACKWARD_WGSL: &str = include_str!("../../shaders/attention_backward.wgsl");
const SWIGLU_WGSL: &str = include_str!("../../shaders/swiglu.wgsl");
const CROSS_ENTROPY_WGSL: &str = include_str!("../../shaders/cross_entropy.wgsl");
const OPTIMIZER_WGSL: &str = include_str!("../../shaders/optimizer.wgsl");
const NARROW_WGSL: &str = include_str!("../../shaders/narrow.wgsl");
const EMBEDDING_BACKWARD_WGSL: &str = include_str!("../../shaders/embedding_backward.wgsl");

/// Invocations per workgroup of `elementwise.wgsl` and `reduce.wgsl`.
pub(crate) const ELEMENTWISE_WORKGROUP: u32 = 256;

/// A shader file (with the shared pieces it is built from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// `gemm_tiled.wgsl`: x, w, bias (read), y (read-write), params (uniform).
    GemmTiled,
    /// `gemm_tiled_large.wgsl`: same bindings.
    GemmTiledLarge,
    /// `gemm_cpu.wgsl` and its entry points (`gemm_cpu_entry.wgsl`, filled by
    /// `kernels/gemm_cpu.rs`): same bindings.
    GemmCpu,
    /// `gemm_simple.wgsl`: same bindings.
    GemmSimple,
    /// `gemm_skinny.wgsl` and its entry points, filled per variant
    /// (`kernels/gemm_skinny/mod.rs`): same bindings.
    GemmSkinny(gemm_skinny::Skinny),
    /// `elementwise.wgsl`: a, b (read), out (read-write), params (uniform).
    Elementwise,
    /// `reduce.wgsl`: a, b, c, d (read), out (read-write), params (uniform).
    Reduce,
    /// `reduce8.wgsl`: a .. h (read), out (read-write), params (uniform).
    Reduce8,
    /// `norms.wgsl` (`rms_norm`, `layer_norm`); this and the other transformer kernels
    /// below bind the GEMMs' layout (each file says what it reads where).
    Norms,
    /// `embedding.wgsl` (`embed`): its table is the weights.
    Embedding,
    /// `rope.wgsl` after `rotary.wgsl`.
    Rope,
    /// `kv_cache.wgsl` (`kv_write`) after `rotary.wgsl`.
    KvCache,
    /// `attention.wgsl` after `rotary.wgsl` and `attention_common.wgsl`.
    Attention,
    /// `attention_backward.wgsl` after the same: qkv, table, d_out, aux (read), out
    /// (read-write), params (uniform): the reductions' layout.
    AttentionBackward,
    /// `swiglu.wgsl` after `gelu.wgsl` (`silu_mul`, `gelu_tanh_mul` and their backward).
    SiluMul,
    /// `cross_entropy.wgsl` (`row_stats`, `grad`).
    CrossEntropy,
    /// `optimizer.wgsl` (`adamw`, `sum_squares`): w, m, v (read-write), g (read),
    /// params (uniform).
    Optimizer,
    /// `embedding_backward.wgsl` (`embed_backward`).
    EmbeddingBackward,
    /// `narrow.wgsl` (`to_bf16`, `to_f16`): the elementwise layout, its output words.
    Narrow,
}

/// The bind-group layouts: one per distinct list of storage bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Layout {
    Gemm,
    Elementwise,
    Reduce,
    Reduce8,
    Optimizer,
}

impl Layout {
    /// `read_only` of each storage binding, in binding order; the uniform comes last.
    fn storage_bindings(self) -> &'static [bool] {
        match self {
            Layout::Gemm => &[true, true, true, false],
            Layout::Elementwise => &[true, true, false],
            Layout::Reduce => &[true, true, true, true, false],
            Layout::Reduce8 => &[true, true, true, true, true, true, true, true, false],
            Layout::Optimizer => &[false, true, false, false],
        }
    }
}

/// Where a shader's weights are bound and the unit it reads them in (its prelude's
/// slots, `shaders/weights_f32.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WeightsBinding {
    binding: usize,
    vec4: bool,
}

/// The prelude of weights of type `dtype` (`shaders/weights_*.wgsl`) for `at`: f16.wgsl
/// first where the format holds f16 values, and the quantized formats after the binding
/// and byte readers they share (weights_quant.wgsl).
fn weights_prelude(dtype: DType, at: WeightsBinding) -> Result<String> {
    let slots = Slots::new()
        .num("BINDING", at.binding)
        .flag("VEC4", at.vec4);
    let src = match dtype {
        DType::F32 => return template::render("weights_f32.wgsl", WEIGHTS_F32_WGSL, &slots),
        DType::BF16 => return template::render("weights_bf16.wgsl", WEIGHTS_BF16_WGSL, &slots),
        DType::F16 => {
            let prelude = template::render("weights_f16.wgsl", WEIGHTS_F16_WGSL, &slots)?;
            return Ok([F16_WGSL, &prelude].join("\n"));
        }
        DType::Q8_0 => WEIGHTS_Q8_0_WGSL,
        DType::Q4_0 => WEIGHTS_Q4_0_WGSL,
        DType::Q4_1 => WEIGHTS_Q4_1_WGSL,
        DType::Q5_0 => WEIGHTS_Q5_0_WGSL,
        DType::Q4K => WEIGHTS_Q4_K_WGSL,
        DType::Q5K => WEIGHTS_Q5_K_WGSL,
        DType::Q6K => WEIGHTS_Q6_K_WGSL,
    };
    let common = template::render("weights_quant.wgsl", WEIGHTS_QUANT_WGSL, &slots)?;
    Ok([F16_WGSL, &common, src].join("\n"))
}

impl Shader {
    /// Where this shader's weights are bound, if it reads any.
    fn weights(self) -> Option<WeightsBinding> {
        let (binding, vec4) = match self {
            Shader::GemmTiled | Shader::GemmTiledLarge | Shader::GemmSimple => (1, false),
            Shader::GemmCpu => (1, true),
            Shader::GemmSkinny(v) => (1, v.vec4),
            Shader::Embedding => (0, false),
            _ => return None,
        };
        Some(WeightsBinding { binding, vec4 })
    }

    /// Whether this shader reads weights of any type (else f32 inputs only).
    #[cfg(test)]
    fn reads_weights(self) -> bool {
        self.weights().is_some()
    }

    /// The WGSL of this shader reading `weights` weights: its file after the shared pieces
    /// it uses and the prelude of the weights' format.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for weights other than f32 asked of a shader that reads
    /// none; a template the crate wrote wrong.
    fn source(self, weights: DType) -> Result<String> {
        let prelude = match self.weights() {
            Some(at) => weights_prelude(weights, at)?,
            None if weights == DType::F32 => String::new(),
            None => {
                return Err(Error::invalid(
                    "kernels",
                    format!("{self:?} reads no {weights} weights"),
                ))
            }
        };
        let scalar_gemm = [
            ACTIVATION_WGSL,
            GEMM_PARAMS_WGSL,
            &prelude,
            GEMM_SCALAR_WGSL,
        ];
        let parts: Vec<&str> = match self {
            Shader::GemmTiled => [&scalar_gemm[..], &[GEMM_TILED_WGSL]].concat(),
            Shader::GemmTiledLarge => [&scalar_gemm[..], &[GEMM_TILED_LARGE_WGSL]].concat(),
            Shader::GemmSimple => [&scalar_gemm[..], &[GEMM_SIMPLE_WGSL]].concat(),
            Shader::GemmCpu => {
                let family = gemm_cpu::source(gemm_cpu::ROWS, gemm_cpu::COLS4)?;
                return Ok([ACTIVATION_WGSL, GEMM_PARAMS_WGSL, &prelude, &family].join("\n"));
            }
            Shader::GemmSkinny(v) => {
                let family = v.source(weights.is_quantized())?;
                return Ok([ACTIVATION_WGSL, GEMM_PARAMS_WGSL, &prelude, &family].join("\n"));
            }
            Shader::Elementwise => vec![ACTIVATION_WGSL, ELEMENTWISE_WGSL],
            Shader::Reduce => vec![REDUCE_WGSL],
            Shader::Reduce8 => vec![REDUCE8_WGSL],
            Shader::Norms => vec![NORMS_WGSL],
            Shader::Embedding => vec![&prelude, EMBEDDING_WGSL],
            Shader::Rope => vec![ROTARY_WGSL, ROPE_WGSL],
            Shader::KvCache => vec![ROTARY_WGSL, KV_CACHE_WGSL],
            Shader::Attention => vec![ROTARY_WGSL, ATTENTION_COMMON_WGSL, ATTENTION_WGSL],
            Shader::AttentionBackward => {
                vec![ROTARY_WGSL, ATTENTION_COMMON_WGSL, ATTENTION_BACKWARD_WGSL]
            }
            Shader::SiluMul => vec![GELU_WGSL, SWIGLU_WGSL],
            Shader::CrossEntropy => vec![CROSS_ENTROPY_WGSL],
            Shader::Optimizer => vec![OPTIMIZER_WGSL],
            Shader::EmbeddingBackward => vec![EMBEDDING_BACKWARD_WGSL],
            Shader::Narrow => vec![NARROW_WGSL],
        };
        Ok(parts.join("\n"))
    }

    /// The storage bindings it reads (before the one it writes).
    pub(crate) fn inputs(self) -> usize {
        self.layout().storage_bindings().len() - 1
    }

    fn layout(self) -> Layout {
        match self {
            Shader::Elementwise | Shader::Narrow => Layout::Elementwise,
            Shader::Reduce | Shader::AttentionBackward => Layout::Reduce,
            Shader::Reduce8 => Layout::Reduce8,
            Shader::Optimizer => Layout::Optimizer,
            Shader::GemmTiled
            | Shader::GemmTiledLarge
            | Shader::GemmCpu
            | Shader::GemmSimple
            | Shader::GemmSkinny(_)
            | Shader::Norms
            | Shader::Embedding
            | Shader::Rope
            | Shader::KvCache
            | Shader::Attention
            | Shader::SiluMul
            | Shader::CrossEntropy
            | Shader::EmbeddingBackward => Layout::Gemm,
        }
    }
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
                    let source = key.shader.source(key.weights)?;
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
