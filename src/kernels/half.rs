//! Half-precision weights in the GEMM shaders. Each family's WGSL is written for an f32
//! `w` binding; for bf16 or f16 weights it is rewritten when its pipeline is built: `w`
//! becomes the packed words (two values a 32-bit word, the first in the low half: the
//! little-endian bytes of the 16-bit values, as a checkpoint holds them), and every read
//! `w[i]` becomes `wl(i)`, which widens exactly to f32. So every family, both layouts
//! and every override keep their code paths and, given the widened values, their bits:
//! the arithmetic after the load is the f32 path's. Plain WGSL (bit operations only): no
//! `SHADER_F16` needed.
//!
//! A scalar family reads element `i` from word `i / 2`; a vec4 family (its `w` an array of
//! `vec4<f32>`, unit `i` the elements `4 i .. 4 i + 4`) reads unit `i` from the word pair
//! `i` (an array of `vec2<u32>`).

use crate::kernels::dtype::DType;

/// How a family's `w` binding is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// `array<f32>`: element `i`.
    Scalar,
    /// `array<vec4<f32>>`: unit `i`, elements `4 i .. 4 i + 4`.
    Vec4,
}

/// `src` (a shader whose weights binding `name` is typed by `unit`: `w` in the GEMMs,
/// `a` in the model shader, whose embedding lookup reads a table) reading `dtype`
/// weights packed two to a word; `src` itself for f32.
pub(crate) fn packed_weights(src: &str, name: char, unit: Unit, dtype: DType) -> String {
    if dtype == DType::F32 {
        return src.to_string();
    }
    let declaration = format!("var<storage, read> {name}: array<");
    let words = match unit {
        Unit::Scalar => "u32",
        Unit::Vec4 => "vec2<u32>",
    };
    let mut out = String::with_capacity(src.len() + 512);
    for line in src.lines() {
        match line.find(&declaration) {
            Some(at) => {
                out += &line[..at];
                out += &format!("{declaration}{words}>;");
            }
            None => out += &reads_through_wl(line, name),
        }
        out.push('\n');
    }
    out += &load(name, unit, dtype);
    out
}

/// `line` with every `name[...]` (a whole identifier) written `wl(...)`; comments as
/// they are.
fn reads_through_wl(line: &str, name: char) -> String {
    let (code, comment) = match line.find("//") {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(line.len() + 8);
    // One entry per open bracket: true when it opened a read of `w`.
    let mut open: Vec<bool> = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        let ident = |j: usize| chars[j].is_ascii_alphanumeric() || chars[j] == '_';
        match c {
            c if c == name && chars.get(i + 1) == Some(&'[') && (i == 0 || !ident(i - 1)) => {
                out += "wl";
            }
            '[' => {
                let of_w = i > 0 && chars[i - 1] == name && (i < 2 || !ident(i - 2));
                open.push(of_w);
                out.push(if of_w { '(' } else { '[' });
            }
            ']' => out.push(if open.pop() == Some(true) { ')' } else { ']' }),
            _ => out.push(c),
        }
    }
    out + comment
}

/// IEEE binary16 bits (the low 16 of `h`) to the equal f32, in integer operations:
/// `unpack2x16float` would need a capability some backends lack (naga's
/// `SHADER_FLOAT16_IN_FLOAT32`). Subnormals are `m * 2^-24`, a normal f32.
const F16_TO_F32: &str = "
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        return bitcast<f32>(sign | bitcast<u32>(ldexp(f32(m), -24)));
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}
";

/// The `wl` function: one widened weight (or unit of four) from the packed words of
/// binding `name`.
fn load(name: char, unit: Unit, dtype: DType) -> String {
    let widen = |word: &str, high: bool| match (dtype, high) {
        (DType::BF16, false) => format!("bitcast<f32>({word} << 16u)"),
        (DType::BF16, true) => format!("bitcast<f32>({word} & 0xffff0000u)"),
        (_, false) => format!("f16_to_f32({word} & 0xffffu)"),
        (_, true) => format!("f16_to_f32({word} >> 16u)"),
    };
    let helper = if dtype == DType::F16 { F16_TO_F32 } else { "" };
    helper.to_string()
        + &match unit {
            Unit::Scalar => format!(
                "\n// Weight element i, widened from {dtype} (src/kernels/half.rs).\n\
             fn wl(i: u32) -> f32 {{\n\
             \x20   let word = {name}[i >> 1u];\n\
             \x20   if ((i & 1u) == 0u) {{\n\
             \x20       return {};\n\
             \x20   }}\n\
             \x20   return {};\n}}\n",
                widen("word", false),
                widen("word", true)
            ),
            Unit::Vec4 => format!(
                "\n// Weight unit i (elements 4 i .. 4 i + 4), widened from {dtype} \
             (src/kernels/half.rs).\n\
             fn wl(i: u32) -> vec4<f32> {{\n\
             \x20   let pair = {name}[i];\n\
             \x20   return vec4<f32>({}, {}, {}, {});\n}}\n",
                widen("pair.x", false),
                widen("pair.x", true),
                widen("pair.y", false),
                widen("pair.y", true)
            ),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_of_w_go_through_wl_and_nothing_else_changes() {
        let line = "let b = w[p.w_offset + x[i] * 2u] + red[w[j]] + xw[3]; // w[comment";
        assert_eq!(
            reads_through_wl(line, 'w'),
            "let b = wl(p.w_offset + x[i] * 2u) + red[wl(j)] + xw[3]; // w[comment"
        );
        let src = "@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;\nlet a = w[0];";
        let out = packed_weights(src, 'w', Unit::Vec4, DType::BF16);
        assert!(out.starts_with("@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;"));
        assert!(out.contains("let a = wl(0);") && out.contains("fn wl(i: u32) -> vec4<f32>"));
        assert_eq!(packed_weights(src, 'w', Unit::Vec4, DType::F32), src);
    }
}
