//! Writing a [`Transformer`]'s weights back as a checkpoint: every tensor under the name
//! its family's recipe reads it by (transformers' names), f32, whole (each rank's shards
//! gathered, fused projections split back), one safetensors file. Written for the
//! families whose tensors map one to one onto the model's parameters (Llama, Mistral,
//! Qwen2, Qwen3, Gemma 2 and 3): `[out, in]` projections, separate q, k and v, a separate
//! gate and up, no GGUF permutation; Gemma's `1 + w` norms written back as a `w` with the
//! same `1 + w`.

use std::path::Path;

use super::recipe::{Mlp, Qkv};
use super::Transformer;
use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::kernels::settings::WeightLayout;

impl Transformer {
    /// Writes every weight to `path` as one safetensors file of f32 tensors named as
    /// transformers names them (a `model.safetensors` that `from_pretrained` loads beside
    /// the model's `config.json`): after training, the fine-tuned model.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a family it is not written for (GPT-2's fused
    /// `[in, out]` projections and learned positions, Phi-3's fused q/k/v and merged
    /// gate/up, a GGUF file's permuted heads) or when the file cannot be written; GPU
    /// errors.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let op = "transformer.save_safetensors";
        let r = &self.recipe;
        let a = &r.attention;
        let unsupported = r.layout != WeightLayout::OutIn
            || r.permuted_qk
            || r.positions.is_some()
            || matches!(a.qkv, Qkv::Fused(_))
            || matches!(r.mlp.kind, Mlp::GatedFused { .. });
        if unsupported {
            return Err(Error::invalid(
                op,
                "saving is written for Llama-like families ([out, in] projections, separate \
                 q, k and v, a separate gate and up)",
            ));
        }
        let c = &self.config;
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (q, kv, i) = (c.num_heads * hd, c.num_kv_heads * hd, c.intermediate_size);
        let p = &r.prefix;
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        // Gemma's norms multiply by `1 + w`, which the model holds as `s`, rounded to f32:
        // written back as `w = s - 1`, whose `1 + w` is `s` again where `s >= 1/2` (then
        // `s - 1` is exact), as transformers computes it; the checkpoint's bits of `w`
        // below `s`'s last place are not kept.
        let plus_one = r.norm.plus_one;
        let weight_of = |t: &DistTensor| -> Result<Vec<f32>> {
            let v = t.to_host()?;
            Ok(if plus_one {
                v.into_iter().map(|x| x - 1.0).collect()
            } else {
                v
            })
        };
        let norm = |name: String, n: &crate::nn::Norm, out: &mut Vec<_>| -> Result<()> {
            out.push((format!("{name}.weight"), vec![h], weight_of(n.weight())?));
            if let Some(b) = n.bias() {
                out.push((format!("{name}.bias"), vec![h], b.to_host()?));
            }
            Ok(())
        };
        tensors.push((
            format!("{p}{}.weight", r.embed),
            vec![c.vocab_size, h],
            self.embedding.weight().to_host()?,
        ));
        for (l, block) in self.blocks.iter().enumerate() {
            let b = format!("{p}{}.{l}", r.blocks);
            let [attention, mlp] = [&block.steps[0], &block.steps[1]];
            if let Some(n) = &attention.norm {
                norm(format!("{b}.{}", a.norm), n, &mut tensors)?;
            }
            let Qkv::Separate([qn, kn, vn]) = &a.qkv else {
                return Err(Error::invalid(op, "fused q, k and v"));
            };
            let mut names: Vec<(String, Vec<usize>)> = Vec::new();
            for (name, n) in [(qn, q), (kn, kv), (vn, kv)] {
                names.push((format!("{b}.{name}.weight"), vec![n, h]));
                if a.qkv_bias {
                    names.push((format!("{b}.{name}.bias"), vec![n]));
                }
            }
            names.push((format!("{b}.{}.weight", a.o), vec![h, q]));
            if a.o_bias {
                names.push((format!("{b}.{}.bias", a.o), vec![h]));
            }
            named(op, &mut tensors, names, attention.layer.export()?)?;
            // The per-head norms' weights: the attention's last two parameters.
            if let Some([qn, kn]) = &a.qk_norm {
                let params = attention.layer.parameters();
                let [qw, kw] = [&params[params.len() - 2], &params[params.len() - 1]];
                tensors.push((format!("{b}.{qn}.weight"), vec![hd], weight_of(qw)?));
                tensors.push((format!("{b}.{kn}.weight"), vec![hd], weight_of(kw)?));
            }
            if let (Some(name), Some(n)) = (&a.post_norm, &attention.post_norm) {
                norm(format!("{b}.{name}"), n, &mut tensors)?;
            }
            if let Some(n) = &mlp.norm {
                norm(format!("{b}.{}", r.mlp.norm), n, &mut tensors)?;
            }
            let mut names: Vec<(String, Vec<usize>)> = Vec::new();
            let mut module = |name: &String, out: usize, input: usize| {
                names.push((format!("{b}.{name}.weight"), vec![out, input]));
                if r.mlp.bias {
                    names.push((format!("{b}.{name}.bias"), vec![out]));
                }
            };
            match &r.mlp.kind {
                Mlp::Gated { gate, up, down } => {
                    module(gate, i, h);
                    module(up, i, h);
                    module(down, h, i);
                }
                Mlp::Plain { fc, proj } => {
                    module(fc, i, h);
                    module(proj, h, i);
                }
                Mlp::GatedFused { .. } => return Err(Error::invalid(op, "a merged gate/up")),
            }
            named(op, &mut tensors, names, mlp.layer.export()?)?;
            if let (Some(name), Some(n)) = (&r.mlp.post_norm, &mlp.post_norm) {
                norm(format!("{b}.{name}"), n, &mut tensors)?;
            }
        }
        norm(format!("{p}{}", r.final_norm), &self.norm, &mut tensors)?;
        if let Some(head) = &r.head {
            let w: &DistTensor = self.head.weight();
            tensors.push((
                format!("{p}{head}.weight"),
                vec![c.vocab_size, h],
                w.to_host()?,
            ));
        }
        write(op, path.as_ref(), &tensors)
    }
}

/// Pairs `names` (with shapes) with `values` in order, checking the counts and lengths.
fn named(
    op: &'static str,
    out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
    names: Vec<(String, Vec<usize>)>,
    values: Vec<Vec<f32>>,
) -> Result<()> {
    if names.len() != values.len() {
        return Err(Error::invalid(
            op,
            format!("{} tensors named, {} exported", names.len(), values.len()),
        ));
    }
    for ((name, shape), v) in names.into_iter().zip(values) {
        if v.len() != shape.iter().product::<usize>() {
            return Err(Error::shape(
                op,
                format!("{name} {shape:?}"),
                format!("{} values", v.len()),
            ));
        }
        out.push((name, shape, v));
    }
    Ok(())
}

/// One safetensors file of f32 tensors.
pub(super) fn write(
    op: &'static str,
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| bytemuck::cast_slice::<f32, u8>(v).to_vec())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::invalid(op, format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| Error::invalid(op, format!("writing {}: {e}", path.display())))
}
