//! The crate's top-level modules import each other without a circle, so the walk from a
//! layer down to the kernels and back only goes one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    // module -> the top-level modules its files name as `crate::x`.
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let entry = deps.entry(top.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `crate::Name` (a re-export) names no module; doc links to fns are skipped
            // by keeping only names that are modules.
            if !name.is_empty() && name != top {
                entry.insert(name);
            }
        }
    }
    let modules: BTreeSet<String> = deps.keys().cloned().collect();
    for d in deps.values_mut() {
        d.retain(|m| modules.contains(m));
    }
    assert!(
        modules.contains("rank") && modules.contains("ops"),
        "{modules:?}"
    );
    for start in &modules {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = deps[start].iter().collect();
        while let Some(m) = stack.pop() {
            assert_ne!(m, start, "{start} reaches itself: {deps:?}");
            if seen.insert(m.clone()) {
                stack.extend(deps[m].iter());
            }
        }
    }
}
