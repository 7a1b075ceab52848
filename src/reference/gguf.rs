//! A Llama-family GGUF file with seeded random weights, laid out as llama.cpp's converter
//! writes one (GGUF v3, `llama.*` metadata, `blk.N.*` tensor names, 32-byte alignment):
//! for benches that need a quantized model of a given size without downloading one.
//!
//! The matrices are blocks of a chosen type with random quant bytes under small random
//! scales (values of order 0.01 to 0.1, as trained weights), the norms near 1 in f32. It
//! is written a tensor at a time, so a model of gigabytes never sits in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::{Rng, SyntheticLlama};
use crate::error::{Error, Result};
use crate::kernels::dtype::DType;

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        what: path.display().to_string(),
        message: e.to_string(),
    }
}

/// ggml's code of `dtype`.
fn ggml_code(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q4_1 => 3,
        DType::Q5_0 => 6,
        DType::Q8_0 => 8,
        DType::Q4K => 12,
        DType::Q5K => 13,
        DType::Q6K => 14,
        DType::BF16 => 30,
    }
}

/// The byte offsets of `dtype`'s f16 scale fields in a block (none for f32 and halves).
fn scale_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => &[0],
        DType::Q4_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        _ => &[],
    }
}

/// `values` random values of `dtype` as bytes: quant bytes at random under positive f16
/// scales in [2^-13, 2^-10) (K-quants, whose 6-bit sub-scales multiply them) or
/// [2^-9, 2^-6) (the others); f32 or half values of order 0.03.
fn random_bytes(rng: &mut Rng, dtype: DType, values: usize) -> Vec<u8> {
    if !dtype.is_quantized() {
        let v: Vec<f32> = rng.normal(values).iter().map(|x| 0.03 * x).collect();
        return match dtype {
            DType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::BF16 => v
                .iter()
                .flat_map(|x| super::checkpoint::to_bf16(*x).to_le_bytes())
                .collect(),
            _ => v
                .iter()
                .flat_map(|x| super::checkpoint::to_f16(*x).to_le_bytes())
                .collect(),
        };
    }
    let size = dtype.block_bytes();
    let mut out = Vec::with_capacity(dtype.bytes_of(values));
    let mut word = 0u64;
    for i in 0..dtype.bytes_of(values) {
        if i % 8 == 0 {
            word = rng.next_u64();
        }
        out.push((word >> (8 * (i % 8))) as u8);
    }
    let exponent = if dtype.block_values() == 256 { 2 } else { 6 };
    for b in out.chunks_exact_mut(size) {
        for &at in scale_fields(dtype) {
            let r = u16::from_le_bytes([b[at], b[at + 1]]);
            let h = ((exponent + r % 3) << 10) | (r >> 6 & 0x3ff);
            b[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    out
}

/// A GGUF string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Writes `path`: a Llama model of sizes `m` whose matrices are `dtype` (the embedding
/// table and head `head`), seeded by `seed`; returns the file's size in bytes. Dims must
/// be whole blocks of the types (256 values for K-quants).
///
/// # Errors
/// [`Error::InvalidArgument`] for sizes that are not whole blocks; [`Error::Checkpoint`]
/// when the file cannot be written.
pub fn write_synthetic_llama_gguf(
    path: &Path,
    m: &SyntheticLlama,
    seed: u64,
    dtype: DType,
    head: DType,
) -> Result<u64> {
    let hd = m.hidden / m.heads.max(1);
    let (h, i, q, kv) = (m.hidden, m.intermediate, m.heads * hd, m.kv_heads * hd);
    // (name, [rows, cols], type)
    let mut tensors: Vec<(String, [usize; 2], DType)> =
        vec![("token_embd.weight".into(), [m.vocab, h], head)];
    for l in 0..m.layers {
        let p = format!("blk.{l}");
        tensors.push((format!("{p}.attn_norm.weight"), [1, h], DType::F32));
        tensors.push((format!("{p}.attn_q.weight"), [q, h], dtype));
        tensors.push((format!("{p}.attn_k.weight"), [kv, h], dtype));
        tensors.push((format!("{p}.attn_v.weight"), [kv, h], dtype));
        tensors.push((format!("{p}.attn_output.weight"), [h, q], dtype));
        tensors.push((format!("{p}.ffn_norm.weight"), [1, h], DType::F32));
        tensors.push((format!("{p}.ffn_gate.weight"), [i, h], dtype));
        tensors.push((format!("{p}.ffn_up.weight"), [i, h], dtype));
        tensors.push((format!("{p}.ffn_down.weight"), [h, i], dtype));
    }
    tensors.push(("output_norm.weight".into(), [1, h], DType::F32));
    tensors.push(("output.weight".into(), [m.vocab, h], head));
    for (name, [_, cols], t) in &tensors {
        if !cols.is_multiple_of(t.block_values()) {
            return Err(Error::invalid(
                "write_synthetic_llama_gguf",
                format!("{name}: rows of {cols} values are not whole {t} blocks"),
            ));
        }
    }
    let mut head_bytes = Vec::new();
    head_bytes.extend(b"GGUF");
    head_bytes.extend(3u32.to_le_bytes());
    head_bytes.extend((tensors.len() as u64).to_le_bytes());
    let u32s = [
        ("llama.context_length", m.positions),
        ("llama.embedding_length", h),
        ("llama.block_count", m.layers),
        ("llama.feed_forward_length", i),
        ("llama.attention.head_count", m.heads),
        ("llama.attention.head_count_kv", m.kv_heads),
        ("llama.rope.dimension_count", hd),
        ("llama.vocab_size", m.vocab),
    ];
    let f32s = [
        ("llama.rope.freq_base", 10000.0f32),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5),
    ];
    head_bytes.extend(((2 + u32s.len() + f32s.len()) as u64).to_le_bytes());
    for (k, v) in [
        ("general.architecture", "llama"),
        ("general.name", "synthetic"),
    ] {
        string(&mut head_bytes, k);
        head_bytes.extend(8u32.to_le_bytes());
        string(&mut head_bytes, v);
    }
    for (k, v) in u32s {
        string(&mut head_bytes, k);
        head_bytes.extend(4u32.to_le_bytes());
        head_bytes.extend((v as u32).to_le_bytes());
    }
    for (k, v) in f32s {
        string(&mut head_bytes, k);
        head_bytes.extend(6u32.to_le_bytes());
        head_bytes.extend(v.to_le_bytes());
    }
    let mut offset = 0u64;
    for (name, [rows, cols], t) in &tensors {
        string(&mut head_bytes, name);
        // Norms are 1-D; matrices [cols, rows], innermost first.
        let dims: Vec<u64> = if *rows == 1 && *t == DType::F32 {
            vec![*cols as u64]
        } else {
            vec![*cols as u64, *rows as u64]
        };
        head_bytes.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| head_bytes.extend(d.to_le_bytes()));
        head_bytes.extend(ggml_code(*t).to_le_bytes());
        head_bytes.extend(offset.to_le_bytes());
        offset = (offset + t.bytes_of(rows * cols) as u64).next_multiple_of(32);
    }
    head_bytes.resize(head_bytes.len().next_multiple_of(32), 0);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut out = BufWriter::new(file);
    out.write_all(&head_bytes).map_err(|e| io(path, e))?;
    let mut rng = Rng::new(seed);
    for (name, [rows, cols], t) in &tensors {
        let mut bytes = if name.ends_with("norm.weight") {
            let v: Vec<f32> = rng.normal(*cols).iter().map(|x| 1.0 + 0.1 * x).collect();
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            random_bytes(&mut rng, *t, rows * cols)
        };
        bytes.resize(bytes.len().next_multiple_of(32), 0);
        out.write_all(&bytes).map_err(|e| io(path, e))?;
    }
    out.flush().map_err(|e| io(path, e))?;
    Ok(head_bytes.len() as u64 + offset)
}
