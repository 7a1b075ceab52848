//! WGSL templates: shader files with named slots, filled when a pipeline is built. This is
//! the only description of the syntax; the templates are the weight preludes
//! (`shaders/weights_*.wgsl`) and the generated GEMM families (`shaders/gemm_cpu*.wgsl`,
//! `shaders/gemm_skinny*.wgsl`).
//!
//! - `{{NAME}}` is replaced by the value of `NAME` (a number or WGSL text). Inside the
//!   braces a slot may also be a sum of products of names and numbers, `{{4*q+1}}` or
//!   `{{i*UNITS+j}}`, for the numbered names an unrolled block spells out.
//! - A line `//# for NAME in 0..COUNT` (`COUNT` a number or a name) starts a block that
//!   ends at the matching `//# end`: the lines between are written once for each `NAME` =
//!   0, 1, ..., `COUNT - 1`, with `NAME` bound to that number inside them.
//! - A line `//# if NAME` (optionally `//# if !NAME`) starts a block written only when the
//!   flag `NAME` is true (false), up to its `//# end`, with an optional `//# else` between.
//!   A name bound to a number (a loop's) is true when nonzero.
//!
//! Blocks nest. Directive lines are not copied; every other line is, with its slots filled.
//! Nothing else in the text is special, so a template reads (and is documented) as WGSL.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The values a template is filled with: numbers, WGSL text and flags.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slots {
    values: HashMap<String, String>,
    flags: HashMap<String, bool>,
}

impl Slots {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to a number.
    pub(crate) fn num(mut self, name: &str, value: usize) -> Self {
        self.values.insert(name.to_string(), value.to_string());
        self
    }

    /// Binds `name` to WGSL text.
    pub(crate) fn text(mut self, name: &str, value: &str) -> Self {
        self.values.insert(name.to_string(), value.to_string());
        self
    }

    /// Sets the flag `name` (for `//# if`).
    pub(crate) fn flag(mut self, name: &str, value: bool) -> Self {
        self.flags.insert(name.to_string(), value);
        self
    }
}

fn bad(template: &str, what: String) -> Error {
    Error::invalid("shader template", format!("{template}: {what}"))
}

/// `template` (named `name` in errors) with its blocks expanded and its slots filled.
///
/// # Errors
/// [`Error::InvalidArgument`] for a slot or flag with no value or an unbalanced block: a
/// mistake in the crate's own templates (the portability test renders every variant).
pub(crate) fn render(name: &str, template: &str, slots: &Slots) -> Result<String> {
    let lines: Vec<&str> = template.lines().collect();
    let mut out = String::with_capacity(template.len() * 2);
    let end = expand(name, &lines, 0, &mut slots.clone(), &mut out, true)?;
    if end != lines.len() {
        return Err(bad(
            name,
            format!("`//# end` with no block at line {}", end + 1),
        ));
    }
    Ok(out)
}

/// Expands `lines` from `at` until an unmatched `//# end` or `//# else` (whose index it
/// returns) or the end, writing to `out` when `emit`.
fn expand(
    name: &str,
    lines: &[&str],
    mut at: usize,
    slots: &mut Slots,
    out: &mut String,
    emit: bool,
) -> Result<usize> {
    while at < lines.len() {
        let line = lines[at];
        let Some(directive) = line.trim_start().strip_prefix("//#") else {
            if emit {
                fill(name, line, slots, out)?;
                out.push('\n');
            }
            at += 1;
            continue;
        };
        let words: Vec<&str> = directive.split_whitespace().collect();
        match words.as_slice() {
            ["end"] | ["else"] => return Ok(at),
            ["for", var, "in", range] => {
                let count = range
                    .strip_prefix("0..")
                    .ok_or_else(|| bad(name, format!("line {}: a range 0..COUNT", at + 1)))?;
                let count = if emit { eval(name, count, slots)? } else { 0 };
                let mut close = expand(name, lines, at + 1, slots, out, false)?;
                for v in 0..count {
                    let mut inner = slots.clone().num(var, v);
                    close = expand(name, lines, at + 1, &mut inner, out, true)?;
                }
                at = closing(name, lines, close, at)? + 1;
            }
            ["if", flag] => {
                let (flag, want) = match flag.strip_prefix('!') {
                    Some(f) => (f, false),
                    None => (*flag, true),
                };
                let on = !emit || truth(name, flag, slots)? == want;
                let mut close = expand(name, lines, at + 1, slots, out, emit && on)?;
                if lines.get(close).map(|l| l.trim()) == Some("//# else") {
                    close = expand(name, lines, close + 1, slots, out, emit && !on)?;
                }
                at = closing(name, lines, close, at)? + 1;
            }
            _ => return Err(bad(name, format!("line {}: unknown directive", at + 1))),
        }
    }
    Ok(at)
}

/// The flag `flag`, or whether the number it names is nonzero.
fn truth(name: &str, flag: &str, slots: &Slots) -> Result<bool> {
    match slots.flags.get(flag) {
        Some(&on) => Ok(on),
        None if slots.values.contains_key(flag) => Ok(eval(name, flag, slots)? != 0),
        None => Err(bad(name, format!("no value for flag {flag}"))),
    }
}

/// `close`, checked to be the `//# end` of the block opened at `open`.
fn closing(name: &str, lines: &[&str], close: usize, open: usize) -> Result<usize> {
    match lines.get(close).map(|l| l.trim()) {
        Some("//# end") => Ok(close),
        _ => Err(bad(
            name,
            format!("line {}: block with no `//# end`", open + 1),
        )),
    }
}

/// `line` with every `{{...}}` filled, appended to `out`.
fn fill(name: &str, line: &str, slots: &Slots, out: &mut String) -> Result<()> {
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| bad(name, format!("unclosed slot in `{line}`")))?;
        let slot = after[..close].trim();
        match slots.values.get(slot) {
            Some(v) => out.push_str(v),
            None => out.push_str(&eval(name, slot, slots)?.to_string()),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(())
}

/// A sum of products of numbers and names bound to numbers.
fn eval(name: &str, expr: &str, slots: &Slots) -> Result<usize> {
    let mut sum = 0;
    for term in expr.split('+') {
        let mut product = 1;
        for factor in term.split('*') {
            let factor = factor.trim();
            let value = match factor.parse::<usize>() {
                Ok(v) => v,
                Err(_) => slots
                    .values
                    .get(factor)
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| bad(name, format!("no number for `{factor}` in `{expr}`")))?,
            };
            product *= value;
        }
        sum += product;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_loops_and_flags_expand_as_documented() {
        let t = "alias T = {{T}};\n\
                 //# for i in 0..ROWS\n\
                 //# for j in 0..2\n\
                 var a{{i}}_{{j}} = x[{{i*2+j}}];\n\
                 //# end\n\
                 //# end\n\
                 //# if VEC4\n\
                 let v = 4;\n\
                 //# else\n\
                 let v = 1;\n\
                 //# end\n\
                 //# if !VEC4\n\
                 // scalar\n\
                 //# end\n\
                 //# for c in 0..2\n\
                 //# if c\n\
                 checked\n\
                 //# end\n\
                 //# end";
        let slots = Slots::new()
            .text("T", "f32")
            .num("ROWS", 2)
            .flag("VEC4", false);
        assert_eq!(
            render("t", t, &slots).unwrap(),
            "alias T = f32;\nvar a0_0 = x[0];\nvar a0_1 = x[1];\nvar a1_0 = x[2];\n\
             var a1_1 = x[3];\nlet v = 1;\n// scalar\nchecked\n"
        );
        assert!(render("t", "{{NOPE}}", &slots).is_err());
        assert!(render("t", "//# for i in 0..2\nx", &slots).is_err());
        assert!(render("t", "//# end", &slots).is_err());
        assert!(render("t", "//# if MISSING\n//# end", &slots).is_err());
    }
}
