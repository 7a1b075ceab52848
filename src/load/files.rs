//! The checkpoint's files: which they are, their maps, and reading values out of them.

#[cfg(not(target_arch = "wasm32"))]
use std::fs::File;
use std::ops::{Deref, Range};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use super::checkpoint_error;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::nn::HostWeights;

/// Appends the little-endian values in `bytes` to `out`, of its type.
pub(super) fn extend(out: &mut HostWeights, bytes: &[u8]) {
    match out {
        HostWeights::F32(v) => v.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        HostWeights::Half(_, v) => v.extend(
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        ),
        HostWeights::Packed(_, v) => v.extend_from_slice(bytes),
        // Only joins make stacked parts; a read fills a single type.
        HostWeights::Rows(_) => {}
    }
}

/// A weight file's bytes: memory-mapped from a path (not on wasm32, which has no file
/// system), or held in memory as the app gave them (`from_bytes`: what a page fetched).
pub(super) enum Bytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Held(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped(m) => m,
            Bytes::Held(v) => v,
        }
    }
}

/// Lets the kernel drop the mapped pages wholly inside `bytes` from this process's
/// resident set once they are read (they stay in the page cache and come back on the
/// next read): loading a model then never holds the file in memory on top of the
/// tensors made from it. Bytes held in memory stay as they are.
pub(super) fn release(map: &Bytes, bytes: Range<usize>) {
    #[cfg(not(target_arch = "wasm32"))]
    if let Bytes::Mapped(map) = map {
        release_mapped(map, bytes);
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (map, bytes);
}

#[cfg(not(target_arch = "wasm32"))]
fn release_mapped(map: &memmap2::Mmap, bytes: Range<usize>) {
    #[cfg(unix)]
    {
        const PAGE: usize = 1 << 16; // a multiple of every page size in use; inward only
        let (start, end) = (bytes.start.div_ceil(PAGE) * PAGE, bytes.end / PAGE * PAGE);
        if end > start {
            // SAFETY: a read-only, file-backed map: dropped pages are read again from the
            // file, never lost. The advice is only a hint, so a failure changes nothing.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
    #[cfg(not(unix))]
    let _ = (map, bytes);
}

/// Maps `path` read-only.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn map(path: &Path) -> Result<Bytes> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| checkpoint_error(&shown, e.to_string()))?;
    // SAFETY: the map is read-only and private to this process; a file truncated or
    // rewritten by another process while mapped is outside what any mmap user can guard
    // against (as for candle's and safetensors' own loaders).
    unsafe { memmap2::Mmap::map(&file) }
        .map(Bytes::Mapped)
        .map_err(|e| checkpoint_error(&shown, e.to_string()))
}

/// The file names of a checkpoint in `dir`: `model.safetensors`, or those the index lists.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn file_names(dir: &Path) -> Result<Vec<String>> {
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return Ok(vec!["model.safetensors".into()]);
    }
    let shown = index.display().to_string();
    let text =
        std::fs::read_to_string(&index).map_err(|e| checkpoint_error(&shown, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| checkpoint_error(&shown, format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| checkpoint_error(&shown, "no `weight_map` object"))?;
    let mut names: Vec<String> = Vec::new();
    for file in map.values() {
        let f = file
            .as_str()
            .ok_or_else(|| checkpoint_error(&shown, "a `weight_map` value is not a file name"))?;
        if f.contains('/') || f.contains("..") {
            return Err(checkpoint_error(
                &shown,
                format!("file {f:?} is outside the folder"),
            ));
        }
        if !names.iter().any(|n| n == f) {
            names.push(f.to_string());
        }
    }
    names.sort();
    Ok(names)
}
