//! Writing a [`Transformer`]'s weights back as a checkpoint: every tensor under the name
//! its family's recipe reads it by (transformers' names), f32, whole (each rank's shards
//! gathered, a rank's fused heads or merged gate/up split back into the checkpoint's
//! modules), stored as the family stores it (`[in, out]` for GPT-2's Conv1D, q/k/v in one
//! module for GPT-2 and Phi-3, gate and up in one for Phi-3), one safetensors file.
//! Gemma's `1 + w` norms are written back as a `w` with the same `1 + w`; a GGUF file's
//! permuted heads are not written.

use std::path::Path;

use super::recipe::{Mlp, Qkv};
use super::Transformer;
use crate::dist::DistTensor;
use crate::error::{Error, Result};
use crate::kernels::settings::WeightLayout;
use crate::nn::transpose;

impl Transformer {
    /// Writes every weight to `path` as one safetensors file of f32 tensors named as
    /// transformers names them (a `model.safetensors` that `from_pretrained` loads beside
    /// the model's `config.json`): after training, the fine-tuned model.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a model read from a GGUF file whose query and key
    /// rows llama.cpp permuted, or when the file cannot be written; GPU errors.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let op = "transformer.save_safetensors";
        let r = &self.recipe;
        let a = &r.attention;
        if r.permuted_qk {
            return Err(Error::invalid(
                op,
                "a GGUF file's permuted query and key rows are not written back",
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
        if let (Some(name), Some(wpe)) = (&r.positions, &self.positions) {
            tensors.push((
                format!("{p}{name}.weight"),
                wpe.shape().to_vec(),
                wpe.to_host()?,
            ));
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let b = format!("{p}{}.{l}", r.blocks);
            let [attention, mlp] = [&block.steps[0], &block.steps[1]];
            if let Some(n) = &attention.norm {
                norm(format!("{b}.{}", a.norm), n, &mut tensors)?;
            }
            // Exported as q, k, v, o (each then its bias): fused back where the checkpoint
            // fuses them.
            let mut values = attention.layer.export()?;
            let mut names: Vec<(String, Vec<usize>)> = Vec::new();
            let mut module = |name: &String, out: usize, input: usize, bias: bool| {
                names.push((format!("{b}.{name}.weight"), vec![out, input]));
                if bias {
                    names.push((format!("{b}.{name}.bias"), vec![out]));
                }
            };
            match &a.qkv {
                Qkv::Separate([qn, kn, vn]) => {
                    for (name, n) in [(qn, q), (kn, kv), (vn, kv)] {
                        module(name, n, h, a.qkv_bias);
                    }
                }
                Qkv::Fused(name) => {
                    module(name, q + 2 * kv, h, a.qkv_bias);
                    values = fuse(values, 3, a.qkv_bias);
                }
            }
            module(&a.o, h, q, a.o_bias);
            named(op, &mut tensors, names, values, r.layout)?;
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
            // Exported as gate, up, down or fc, proj (each then its bias).
            let mut values = mlp.layer.export()?;
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
                Mlp::GatedFused { gate_up, down } => {
                    module(gate_up, 2 * i, h);
                    module(down, h, i);
                    values = fuse(values, 2, r.mlp.bias);
                }
                Mlp::Plain { fc, proj } => {
                    module(fc, i, h);
                    module(proj, h, i);
                }
            }
            named(op, &mut tensors, names, values, r.layout)?;
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

/// The first `parts` modules of `values` (each a weight `[out, in]`, then its bias with
/// `bias`) joined into one: their rows, then their biases, one after another; the rest
/// left as they are.
fn fuse(values: Vec<Vec<f32>>, parts: usize, bias: bool) -> Vec<Vec<f32>> {
    let per = 1 + usize::from(bias);
    let mut rest = values.into_iter();
    let joined: Vec<Vec<f32>> = rest.by_ref().take(parts * per).collect();
    let mut out = vec![joined.iter().step_by(per).flatten().copied().collect()];
    if bias {
        out.push(
            joined
                .iter()
                .skip(1)
                .step_by(per)
                .flatten()
                .copied()
                .collect(),
        );
    }
    out.extend(rest);
    out
}

/// Pairs `names` (with shapes, weights `[out, in]`) with `values` in order, checking the
/// counts and lengths; the weights stored as `layout` says.
fn named(
    op: &'static str,
    out: &mut Vec<(String, Vec<usize>, Vec<f32>)>,
    names: Vec<(String, Vec<usize>)>,
    values: Vec<Vec<f32>>,
    layout: WeightLayout,
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
        match (layout, &shape[..]) {
            (WeightLayout::InOut, &[rows, cols]) => {
                out.push((name, vec![cols, rows], transpose(&v, rows, cols)));
            }
            _ => out.push((name, shape, v)),
        }
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
