//! Checkpoints in the safetensors format (feature `safetensors`): `config.json` and one
//! `model.safetensors` or several files listed in `model.safetensors.index.json`, memory
//! mapped, so a rank's shard is read straight from the page cache and the file is never
//! copied whole into memory. On wasm32 (no file system in a browser) a checkpoint and a
//! GGUF file are made from the bytes the page fetched instead
//! ([`Checkpoint::from_bytes`], [`Gguf::from_bytes`]; natively too).
//!
//! This layer knows file formats, not model families: a [`Checkpoint`] is named tensors
//! and the parsed `config.json`. What the config means, which tensors a model needs and
//! their shapes are the family's (`crate::model`: `ModelConfig::read`).

mod files;
mod gguf;
#[cfg(feature = "tokenizer")]
mod gguf_tokenizer;

use files::{extend, release, Bytes};
#[cfg(not(target_arch = "wasm32"))]
use files::{file_names, map};
#[cfg(feature = "tokenizer")]
mod tokenizer;

pub use gguf::{GgmlType, Gguf, GgufTensor, MetaValue};
#[cfg(feature = "tokenizer")]
pub use tokenizer::Tokenizer;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use crate::error::{Error, Result};
pub use crate::kernels::dtype::DType;
use crate::nn::HostWeights;

pub(crate) fn checkpoint_error(what: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        what: what.into(),
        message: message.into(),
    }
}

/// One weight file: its path (its name, for bytes given) and its bytes.
struct Mapped {
    path: PathBuf,
    map: Bytes,
}

/// Where a tensor lives.
struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    /// Byte range in the file's map.
    bytes: Range<usize>,
}

/// An opened checkpoint: its `config.json` and its tensors, memory-mapped.
pub struct Checkpoint {
    dir: PathBuf,
    config: serde_json::Value,
    files: Vec<Mapped>,
    tensors: HashMap<String, Entry>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("files", &self.files.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens the checkpoint in `dir`: reads `config.json` (which must be a JSON object),
    /// maps the weight files and reads their headers. `dir` may also name one
    /// `.safetensors` file, whose folder holds `config.json` (a folder with the same
    /// weights in several precisions, `model.bf16.safetensors` beside `model.safetensors`).
    /// Whether the tensors are the ones the config implies is checked by the model family
    /// (`ModelConfig::read`, `Transformer::from_checkpoint`).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file or tensor: a missing or unreadable file, a
    /// config that is not a JSON object, a truncated or corrupt header, a tensor ending
    /// past its file, a tensor in two files.
    ///
    /// Not on wasm32 (no file system in a browser): use [`Checkpoint::from_bytes`] there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref();
        let (dir, names) = if path.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (folder, name.into_iter().collect())
        } else {
            (path.to_path_buf(), file_names(path)?)
        };
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| checkpoint_error(config_path.display().to_string(), e.to_string()))?;
        let folder = dir.clone();
        let files = names.into_iter().map(move |name| {
            let path = folder.join(&name);
            Ok((map(&path)?, path))
        });
        Self::assemble(dir, &text, files)
    }

    /// A checkpoint from bytes the app holds rather than files: `config_json`, the text of
    /// its `config.json`, and `safetensors`, the bytes of its one `.safetensors` file (what
    /// a page fetched: wasm32 has no file system; natively too). The bytes are kept, not
    /// copied; the tensors are read out of them as `Checkpoint::open` reads its maps.
    /// [`Checkpoint::dir`] is empty.
    ///
    /// # Errors
    /// As `Checkpoint::open` (not on wasm32), the file named `model.safetensors`.
    pub fn from_bytes(config_json: &str, safetensors: Vec<u8>) -> Result<Self> {
        Self::from_byte_files(config_json, vec![("model.safetensors".into(), safetensors)])
    }

    /// [`Checkpoint::from_bytes`] for a checkpoint in several files (those
    /// `model.safetensors.index.json` lists): each file's name (for messages) and bytes.
    ///
    /// # Errors
    /// As `Checkpoint::open`.
    pub fn from_byte_files(config_json: &str, files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let files = files
            .into_iter()
            .map(|(name, bytes)| Ok((Bytes::Held(bytes), PathBuf::from(name))));
        Self::assemble(PathBuf::new(), config_json, files)
    }

    /// The checkpoint of config text `text` and weight files `files_in` (each file's bytes
    /// and path, or the error reading it), from folder `dir`.
    fn assemble(
        dir: PathBuf,
        text: &str,
        files_in: impl Iterator<Item = Result<(Bytes, PathBuf)>>,
    ) -> Result<Self> {
        let config: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| checkpoint_error("config.json", format!("not JSON: {e}")))?;
        if !config.is_object() {
            return Err(checkpoint_error("config.json", "is not a JSON object"));
        }
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for file in files_in {
            let (map, path) = file?;
            let shown = path.display().to_string();
            let (header, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
                checkpoint_error(
                    &shown,
                    format!("not a safetensors file (truncated or corrupt): {e}"),
                )
            })?;
            let start = 8 + header;
            for (tensor, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                let bytes = start + a..start + b;
                if bytes.end > map.len() {
                    return Err(checkpoint_error(
                        &tensor,
                        format!(
                            "{shown} is truncated: the tensor ends past its {} bytes",
                            map.len()
                        ),
                    ));
                }
                let entry = Entry {
                    file: files.len(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes,
                };
                if tensors.insert(tensor.clone(), entry).is_some() {
                    return Err(checkpoint_error(
                        &tensor,
                        "is in two of the checkpoint's files",
                    ));
                }
            }
            files.push(Mapped { path, map });
        }
        Ok(Checkpoint {
            dir,
            config,
            files,
            tensors,
        })
    }

    /// The parsed `config.json` (a JSON object), as the file holds it.
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config
    }

    /// True when the checkpoint holds a tensor named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// How many tensors the checkpoint holds.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// The folder it was opened from (empty for one made from bytes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all mapped files together.
    pub fn file_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.map.len() as u64).sum()
    }

    fn entry(&self, name: &str) -> Result<(&Entry, String)> {
        let full = name.to_string();
        match self.tensors.get(&full) {
            Some(e) => Ok((e, full)),
            None => Err(checkpoint_error(
                full,
                if self.dir.as_os_str().is_empty() {
                    "is missing from the checkpoint's bytes".to_string()
                } else {
                    format!("is missing from the checkpoint in {}", self.dir.display())
                },
            )),
        }
    }

    /// Checks that tensor `name` exists with `shape` and a readable dtype.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor.
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<DType> {
        let (e, full) = self.entry(name)?;
        if e.shape != shape {
            return Err(checkpoint_error(
                full,
                format!(
                    "has shape {:?}, the config implies {shape:?} ({})",
                    e.shape,
                    self.files[e.file].path.display()
                ),
            ));
        }
        let dtype = match e.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            other => {
                return Err(checkpoint_error(
                    full,
                    format!("has dtype {other:?}; the loader reads F32, F16 and BF16"),
                ))
            }
        };
        let want = shape.iter().product::<usize>() * dtype.size();
        if e.bytes.len() != want {
            return Err(checkpoint_error(
                full,
                format!(
                    "holds {} bytes, its shape and dtype need {want}",
                    e.bytes.len()
                ),
            ));
        }
        Ok(dtype)
    }

    /// The shape of tensor `name`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when it is missing.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.0.shape)
    }

    /// Rows `rows` of tensor `name` (a matrix `[rows, cols]`, or a vector as one row) as
    /// f32, widened exactly from f16/bf16; reads only those rows' bytes.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor: missing, another dtype, rows out of range.
    pub fn rows_f32(&self, name: &str, rows: Range<usize>) -> Result<Vec<f32>> {
        Ok(self.rows(name, rows)?.to_f32())
    }

    /// Rows `rows` of tensor `name` as the file holds them: f32, or the 16-bit values of
    /// f16/bf16 (kept at two bytes on the device: [`HostWeights`]); reads only those rows'
    /// bytes.
    ///
    /// # Errors
    /// As [`Checkpoint::rows_f32`].
    pub fn rows(&self, name: &str, rows: Range<usize>) -> Result<HostWeights> {
        let (e, full) = self.entry(name)?;
        let shape = e.shape.clone();
        let dtype = self.check(name, &shape)?;
        let (n_rows, cols) = match shape[..] {
            [n] => (1, n),
            [r, c] => (r, c),
            _ => {
                return Err(checkpoint_error(
                    full,
                    format!("is {}-D, not a matrix", shape.len()),
                ))
            }
        };
        if rows.start > rows.end || rows.end > n_rows {
            return Err(checkpoint_error(
                full,
                format!("has {n_rows} rows, not {rows:?}"),
            ));
        }
        let size = dtype.size();
        let at = e.bytes.start + rows.start * cols * size;
        let map = &self.files[e.file].map;
        let mut out = HostWeights::empty(dtype, rows.len() * cols);
        extend(&mut out, &map[at..at + rows.len() * cols * size]);
        release(map, at..at + rows.len() * cols * size);
        Ok(out)
    }

    /// Columns `cols` of the matrix `name` (`[rows, n]`), as f32: each row's slice read
    /// straight from the file, row-major `[rows, cols.len()]`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor: missing, not a matrix, another dtype,
    /// columns out of range.
    pub fn cols_f32(&self, name: &str, cols: Range<usize>) -> Result<Vec<f32>> {
        Ok(self.cols(name, cols)?.to_f32())
    }

    /// Columns `cols` of the matrix `name` as the file holds them (see
    /// [`Checkpoint::rows`]).
    ///
    /// # Errors
    /// As [`Checkpoint::cols_f32`].
    pub fn cols(&self, name: &str, cols: Range<usize>) -> Result<HostWeights> {
        let (e, full) = self.entry(name)?;
        let shape = e.shape.clone();
        let dtype = self.check(name, &shape)?;
        let [rows, n] = shape[..] else {
            return Err(checkpoint_error(
                full,
                format!("is {}-D, not a matrix", shape.len()),
            ));
        };
        if cols.start > cols.end || cols.end > n {
            return Err(checkpoint_error(
                full,
                format!("has {n} columns, not {cols:?}"),
            ));
        }
        let size = dtype.size();
        let map = &self.files[e.file].map;
        let mut out = HostWeights::empty(dtype, rows * cols.len());
        for r in 0..rows {
            let at = e.bytes.start + (r * n + cols.start) * size;
            extend(&mut out, &map[at..at + cols.len() * size]);
        }
        release(map, e.bytes.clone());
        Ok(out)
    }

    /// The whole tensor `name` as f32 (see [`Checkpoint::rows_f32`]).
    ///
    /// # Errors
    /// As [`Checkpoint::rows_f32`].
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let rows = match self.shape(name)? {
            [r, _] => *r,
            // A vector is one row; other ranks are refused by rows_f32, naming the tensor.
            _ => 1,
        };
        self.rows_f32(name, 0..rows)
    }
}
