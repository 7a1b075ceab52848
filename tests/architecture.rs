//! The crate's layout: every top-level module sits in one layer, and library code only
//! imports layers below its own, so the walk from a model down to the kernels only goes
//! one way. Unit tests (`#[cfg(test)]` modules, in their own file or inline) may use
//! anything, and so may comments (a doc link up is not an import).
//! The crate keeps one module style (`foo/mod.rs`) and no leaf files beside `lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may import the ones before it, never after.
const LAYERS: &[&str] = &[
    "error",     // one error type
    "kernels",   // WGSL sources, their settings and parameters, the pipeline cache
    "reference", // the f64 CPU reference (feature `reference`)
    "rank",      // a device + queue: dispatch, waits, staging, the buffer pool
    "tensor",    // a 2-D buffer on one rank; host shards
    "ops",       // single-rank kernels
    "comm",      // every collective: transports, checks, the MPI link
    "group",     // how ranks are made
    "dist",      // DistTensor and placements
    "nn",        // the tensor-parallel layers
    "load",      // checkpoints
    "model",     // model families and generation
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files of the modules declared `#[cfg(test)] mod x;` somewhere under `src`.
fn test_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        // A `mod.rs` or `lib.rs` declares children beside it; `a/b.rs` would in `a/b/`.
        let stem = f.file_stem().unwrap();
        let dir = if stem == "mod" || stem == "lib" {
            f.parent().unwrap().to_path_buf()
        } else {
            f.with_extension("")
        };
        for (i, _) in text.match_indices("#[cfg(test)]\nmod ") {
            let rest = &text[i + "#[cfg(test)]\nmod ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if rest[name.len()..].starts_with(';') {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(&name).join("mod.rs"));
            }
        }
    }
    out
}

/// The text of a source file without comments and its inline unit tests.
fn library_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module each name `lib.rs` re-exports comes from (`pub use a::b::{X, Y}`
/// maps `X` and `Y` to `a`), so `crate::X` counts as an import of `a`.
fn re_exports() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(at) = stmt.find("pub use ") else {
            continue;
        };
        let path = stmt[at + 8..].trim();
        let module = path.split("::").next().unwrap().to_string();
        let names = match path.find('{') {
            Some(b) => path[b + 1..].trim_end_matches('}').to_string(),
            None => path.rsplit("::").next().unwrap().to_string(),
        };
        for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.insert(n.to_string(), module.clone());
        }
    }
    out
}

/// The names a file reaches through `crate::` (`crate::a::..`, `crate::X`, and each name
/// of `crate::{a, X, ..}`).
fn crate_names(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            out.extend(list[..end].split(',').map(|n| ident(n.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

#[test]
fn every_module_imports_only_the_layers_below_its_own() {
    let src = src();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let level = |m: &str| LAYERS.iter().position(|l| *l == m);
    let exports = re_exports();
    assert!(
        exports.get("Group").map(String::as_str) == Some("group"),
        "{exports:?}"
    );
    let tests = test_files(&files);
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files.iter().filter(|f| !tests.contains(*f)) {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" {
            continue;
        }
        let mine = level(&top).unwrap_or_else(|| panic!("{top} (src/{rel:?}) is in no layer"));
        seen.insert(top.clone());
        for name in crate_names(&library_code(f)) {
            let module = exports.get(&name).cloned().unwrap_or(name);
            if let Some(theirs) = level(&module) {
                if theirs > mine {
                    wrong.push(format!("src/{} imports {module}", rel.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports from a layer above: {wrong:#?}");
    assert!(seen.contains("comm") && seen.contains("ops"), "{seen:?}");
}

#[test]
fn one_module_style_and_no_leaf_files_beside_lib() {
    let src = src();
    let mut files = Vec::new();
    sources(&src, &mut files);
    for f in &files {
        let dir = f.with_extension("");
        assert!(
            !dir.is_dir(),
            "{} beside its folder: the crate writes folder/mod.rs",
            f.display()
        );
    }
    let top: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = ["lib.rs", "error.rs"].map(String::from).into();
    assert_eq!(top, expected, "leaf files belong in the folder they serve");
}
