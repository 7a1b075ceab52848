//! Every WGSL variant the crate can build, translated by naga to the shading languages of
//! the backends no machine here runs (MSL for Metal, HLSL for DX12) and of those it does
//! (SPIR-V for Vulkan, GLSL for GL): a shader only lavapipe accepts fails here.

use naga::back::{glsl, hlsl, msl, spv, PipelineConstants};
use naga::valid::{Capabilities, ValidationFlags, Validator};

use super::gemm_skinny::Skinny;
use super::Shader;
use crate::kernels::dtype::DType;

/// The values each override constant takes in the crate (src/ops, src/kernels).
fn domain(name: &str) -> &'static [f64] {
    match name {
        "HAS_BIAS" | "W_OUT_IN" | "X_T" => &[0.0, 1.0],
        "ACT" => &[0.0, 1.0, 2.0, 3.0],
        other => panic!("override {other} has no domain here: add the values the crate sets"),
    }
}

/// Every assignment of the overrides `names` over their domains.
fn assignments(names: &[String]) -> Vec<PipelineConstants> {
    let mut all = vec![PipelineConstants::default()];
    for n in names {
        all = all
            .into_iter()
            .flat_map(|c| {
                domain(n).iter().map(move |&v| {
                    let mut c = c.clone();
                    c.insert(n.clone(), v);
                    c
                })
            })
            .collect();
    }
    all
}

/// The float literals of `source` whose magnitude is above f32's largest: naga rounds
/// them to it, Tint (Chrome's WebGPU) refuses the shader.
fn literals_past_f32(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let source = code.as_str();
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() {
            let c = bytes[j];
            let sign = (c == b'-' || c == b'+') && matches!(bytes[j - 1], b'e' | b'E');
            if c.is_ascii_digit() || c == b'.' || c == b'e' || c == b'E' || sign {
                j += 1;
            } else {
                break;
            }
        }
        let token = &source[i..j];
        if token.contains(['.', 'e', 'E']) {
            if let Ok(v) = token.parse::<f64>() {
                if v.abs() > f64::from(f32::MAX) {
                    out.push(token.to_string());
                }
            }
        }
        i = j;
    }
    out
}

/// The `bitcast<f32>(0x...u)` constants of `source` that are an infinity or a NaN: naga
/// takes them, Tint (Chrome's WebGPU) refuses a constant it cannot represent.
fn infinite_bitcasts(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices("bitcast<f32>(0x") {
        let hex: String = source[at + 15..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if let Ok(bits) = u32::from_str_radix(&hex, 16) {
            if bits & 0x7f80_0000 == 0x7f80_0000 {
                out.push(format!("bitcast<f32>(0x{hex}u)"));
            }
        }
    }
    out
}

#[test]
fn the_bitcast_scan_finds_infinities_and_nans() {
    let found = infinite_bitcasts(
        "a = bitcast<f32>(0xff800000u); b = bitcast<f32>(0xff7fffffu); c = bitcast<f32>(0x7fc00000u);",
    );
    assert_eq!(
        found,
        ["bitcast<f32>(0xff800000u)", "bitcast<f32>(0x7fc00000u)"]
    );
}

#[test]
fn the_literal_scan_finds_values_past_f32s_range() {
    let found = literals_past_f32("x = -3.4028235e38; y = 3.4028234e38; z = 1e-5; // 4e38");
    assert_eq!(found, ["3.4028235e38"]);
}

#[test]
fn every_shader_variant_translates_to_msl_hlsl_spirv_and_glsl() {
    let shaders = [
        Shader::GemmTiled,
        Shader::GemmTiledLarge,
        Shader::GemmCpu,
        Shader::GemmSimple,
        Shader::Elementwise,
        Shader::Reduce,
        Shader::Reduce8,
        Shader::Norms,
        Shader::Embedding,
        Shader::Rope,
        Shader::KvCache,
        Shader::Attention,
        Shader::AttentionBackward,
        Shader::SiluMul,
        Shader::CrossEntropy,
        Shader::Optimizer,
        Shader::EmbeddingBackward,
        Shader::Narrow,
    ]
    .into_iter()
    .chain(Skinny::all().into_iter().map(Shader::GemmSkinny));
    let mut variants = 0;
    for shader in shaders {
        // A new variant fails to compile here until it is added to the list above.
        match shader {
            Shader::GemmTiled
            | Shader::GemmTiledLarge
            | Shader::GemmCpu
            | Shader::GemmSimple
            | Shader::GemmSkinny(_)
            | Shader::Elementwise
            | Shader::Reduce
            | Shader::Reduce8
            | Shader::Norms
            | Shader::Embedding
            | Shader::Rope
            | Shader::KvCache
            | Shader::Attention
            | Shader::AttentionBackward
            | Shader::SiluMul
            | Shader::CrossEntropy
            | Shader::Optimizer
            | Shader::EmbeddingBackward
            | Shader::Narrow => {}
        }
        // Every shader that reads weights (each GEMM family, the embedding table) is built
        // with the prelude of every weight format (shaders/weights_*.wgsl).
        for weights in DType::ALL {
            if weights != DType::F32 && !shader.reads_weights() {
                continue;
            }
            let source = shader
                .source(weights)
                .unwrap_or_else(|e| panic!("{shader:?} ({weights} weights): {e}"));
            let shader = format!("{shader:?} ({weights} weights)");
            let past = literals_past_f32(&source);
            assert!(
                past.is_empty(),
                "{shader}: literals past f32's range {past:?}"
            );
            let infinite = infinite_bitcasts(&source);
            assert!(
                infinite.is_empty(),
                "{shader}: infinite or NaN constants {infinite:?}"
            );
            let module =
                naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{shader}: {e}"));
            // GLSL passes arrays by copy (in and out for a pointer): a function taking one,
            // called in a loop, made llvmpipe's GL compile attention's backward for a
            // minute and more.
            for (_, f) in module.functions.iter() {
                for arg in &f.arguments {
                    let array = |ty: naga::Handle<naga::Type>| {
                        matches!(module.types[ty].inner, naga::TypeInner::Array { .. })
                    };
                    let takes_array = match module.types[arg.ty].inner {
                        naga::TypeInner::Pointer { base, .. } => array(base),
                        _ => array(arg.ty),
                    };
                    assert!(
                        !takes_array,
                        "{shader}: fn {:?} takes an array ({:?})",
                        f.name, arg.name
                    );
                }
            }
            let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{shader}: {e:?}"));
            let names: Vec<String> = module
                .overrides
                .iter()
                .filter_map(|(_, o)| o.name.clone())
                .collect();
            for ep in &module.entry_points {
                for constants in assignments(&names) {
                    let ctx = format!("{shader}::{} {constants:?}", ep.name);
                    let stage = (naga::ShaderStage::Compute, ep.name.clone());
                    let (m, i) = naga::back::pipeline_constants::process_overrides(
                        &module,
                        &info,
                        Some((naga::ShaderStage::Compute, &ep.name)),
                        &constants,
                    )
                    .unwrap_or_else(|e| panic!("{ctx}: overrides: {e:?}"));
                    let msl_pipeline = msl::PipelineOptions {
                        entry_point: Some(stage.clone()),
                        ..Default::default()
                    };
                    msl::write_string(&m, &i, &msl::Options::default(), &msl_pipeline)
                        .unwrap_or_else(|e| panic!("{ctx}: MSL: {e:?}"));
                    let hlsl_pipeline = hlsl::PipelineOptions {
                        entry_point: Some(stage.clone()),
                    };
                    let hlsl_options = hlsl::Options::default();
                    let mut out = String::new();
                    hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline)
                        .write(&m, &i, None)
                        .unwrap_or_else(|e| panic!("{ctx}: HLSL: {e:?}"));
                    let spv_pipeline = spv::PipelineOptions {
                        shader_stage: naga::ShaderStage::Compute,
                        entry_point: ep.name.clone(),
                    };
                    spv::write_vec(&m, &i, &spv::Options::default(), Some(&spv_pipeline))
                        .unwrap_or_else(|e| panic!("{ctx}: SPIR-V: {e:?}"));
                    let glsl_pipeline = glsl::PipelineOptions {
                        shader_stage: naga::ShaderStage::Compute,
                        entry_point: ep.name.clone(),
                        multiview: None,
                    };
                    let glsl_options = glsl::Options::default();
                    let mut out = String::new();
                    glsl::Writer::new(
                        &mut out,
                        &m,
                        &i,
                        &glsl_options,
                        &glsl_pipeline,
                        naga::proc::BoundsCheckPolicies::default(),
                    )
                    .and_then(|mut w| w.write())
                    .unwrap_or_else(|e| panic!("{ctx}: GLSL: {e:?}"));
                    variants += 1;
                }
            }
        }
    }
    // GEMM: tiled, tiled-large and simple x bias x 4 activations x 2 layouts x X read
    // transposed or not (96), the CPU family's 3 entries (main_tn: X read transposed) x
    // bias x 4 activations (24); elementwise's 10 entries x 4 activations (40); the reductions (2); the
    // transformer kernels' 23 entries (the norms' 3 and their 6 backward, embed and its
    // backward, rope, kv_write, attention and attention_softcap, attention's 4 backward,
    // silu_mul and gelu_tanh_mul and their backward); the cross-entropy's 2; the
    // optimizer's 3; narrowing's 2 (to_bf16, to_f16); the skinny family's 24 variants (3 row blocks x
    // vec4 or scalar x CPU or GPU x ordered or fast) x 3 entries x bias x 4 activations
    // (576); and every GEMM and the embedding lookup again with each of the 9 other weight
    // preludes: f16, bf16 and the 7 quantized formats (9 x (96 + 24 + 576 + 1)). A new
    // entry, constant or weight format changes the count.
    assert_eq!(variants, 192 + 576 + 9 * 697, "variants translated");
}
