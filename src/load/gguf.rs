//! GGUF files (llama.cpp's format, versions 2 and 3), memory-mapped: the header, the
//! metadata (every key and its typed value) and the tensor directory (name, shape, ggml
//! type, where its bytes are), each bound checked against the file before anything is
//! allocated from a count it gives; and the tensors read as the layers take them
//! ([`Gguf::rows`], [`Gguf::cols`] in whole blocks, [`Gguf::f32`]), a rank reading only
//! its shard's bytes. The families' use of the metadata is `crate::model`'s
//! (`Transformer::from_gguf`).
//!
//! Layout (little-endian): `GGUF`, version `u32`, tensor count `u64`, metadata count
//! `u64`; the metadata, each a string key, a `u32` type and its value; the tensor
//! infos, each a string name, `u32` dimension count, `u64` dimensions (innermost first),
//! `u32` ggml type and `u64` offset into the data section; the data section starts at
//! the next multiple of `general.alignment` (32 by default). A string is a `u64` length
//! and its UTF-8 bytes.

use std::collections::BTreeMap;
use std::ops::Range;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use super::checkpoint_error;
#[cfg(not(target_arch = "wasm32"))]
use super::files::map;
use super::files::{extend, release, Bytes};
use crate::error::{Error, Result};
use crate::kernels::dtype::DType;
use crate::nn::HostWeights;

/// A metadata value, as its type says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetaValue {
    /// Types 0-5 and 10-11: every integer type, widened.
    Int(i128),
    /// Types 6 (f32, widened exactly) and 12 (f64).
    Float(f64),
    /// Type 7.
    Bool(bool),
    /// Type 8.
    Str(String),
    /// Type 9: values of one type.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as a count, when it is a non-negative integer that fits `usize`.
    pub fn as_count(&self) -> Option<usize> {
        match *self {
            MetaValue::Int(n) => usize::try_from(n).ok(),
            _ => None,
        }
    }

    /// The value as a number (integers and floats).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Int(n) => Some(n as f64),
            MetaValue::Float(x) => Some(x),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A ggml tensor type the reader knows: its values per block and bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    /// f32 values (code 0).
    F32,
    /// f16 values (1).
    F16,
    /// bf16 values (30).
    BF16,
    /// Blocks of 32: an f16 scale and 4-bit values (2).
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 4-bit values (3).
    Q4_1,
    /// Blocks of 32: an f16 scale and 5-bit values (6).
    Q5_0,
    /// Blocks of 32: f16 scale and minimum, 5-bit values (7).
    Q5_1,
    /// Blocks of 32: an f16 scale and 8-bit values (8).
    Q8_0,
    /// Super-blocks of 256, 2-bit (10).
    Q2K,
    /// Super-blocks of 256, 3-bit (11).
    Q3K,
    /// Super-blocks of 256, 4-bit with 6-bit sub-block scales and minimums (12).
    Q4K,
    /// Super-blocks of 256, 5-bit (13).
    Q5K,
    /// Super-blocks of 256, 6-bit with 8-bit sub-block scales (14).
    Q6K,
}

impl GgmlType {
    /// The type of ggml's code `code`, if the reader knows it.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// Values per block (1 for the plain types).
    pub fn block_values(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }
}

impl GgmlType {
    /// The element type the layers read this type as: f32, f16, bf16 and the block types
    /// the kernels decode (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K); none for the others
    /// (Q5_1, Q2_K, Q3_K).
    pub fn dtype(self) -> Option<DType> {
        Some(match self {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::BF16 => DType::BF16,
            GgmlType::Q8_0 => DType::Q8_0,
            GgmlType::Q4_0 => DType::Q4_0,
            GgmlType::Q4_1 => DType::Q4_1,
            GgmlType::Q5_0 => DType::Q5_0,
            GgmlType::Q4K => DType::Q4K,
            GgmlType::Q5K => DType::Q5K,
            GgmlType::Q6K => DType::Q6K,
            GgmlType::Q5_1 | GgmlType::Q2K | GgmlType::Q3K => return None,
        })
    }
}

/// One tensor of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    /// Its name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Its dimensions, innermost (contiguous) first, as the file lists them.
    pub dims: Vec<usize>,
    /// Its type.
    pub ggml_type: GgmlType,
    /// Its bytes in the file (inside the data section).
    pub bytes: Range<usize>,
    /// The part of a split model holding it (0 for the first file, and for a model in
    /// one file).
    pub file: usize,
}

/// An opened GGUF file: its metadata and tensor directory, the file memory-mapped.
pub struct Gguf {
    path: PathBuf,
    /// Each part's mapping (one for a model in one file).
    maps: Vec<Bytes>,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<GgufTensor>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A cursor over the file's bytes; every read names what it read when the file ends.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    shown: &'a str,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(checkpoint_error(
                self.shown,
                format!(
                    "{what} ({n} bytes at {}) runs past the file's {} bytes",
                    self.at,
                    self.bytes.len()
                ),
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count that must fit what is left of the file at `each` bytes an item at least.
    fn count(&mut self, each: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) / each.max(1);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| {
                checkpoint_error(
                    self.shown,
                    format!("{what} is {n}, more than the {left} the rest of the file can hold"),
                )
            })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(1, what)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| checkpoint_error(self.shown, format!("{what} is not UTF-8")))
    }

    /// A value of metadata type `ty` for key `key`; an error names the key.
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        let shown = self.shown;
        self.value_of(ty, key, depth).map_err(|e| match e {
            Error::Checkpoint { what, message } if what == shown => Error::Checkpoint {
                what: key.to_string(),
                message: format!("in {shown}: {message}"),
            },
            other => other,
        })
    }

    fn value_of(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue> {
        let int = |b: &[u8], signed: bool| -> i128 {
            let mut a = [0u8; 16];
            a[..b.len()].copy_from_slice(b);
            let v = i128::from_le_bytes(a);
            let bits = 8 * b.len() as u32;
            if signed && bits < 128 && (v >> (bits - 1)) & 1 == 1 {
                v - (1i128 << bits)
            } else {
                v
            }
        };
        Ok(match ty {
            0 | 1 => MetaValue::Int(int(self.take(1, key)?, ty == 1)),
            2 | 3 => MetaValue::Int(int(self.take(2, key)?, ty == 3)),
            4 | 5 => MetaValue::Int(int(self.take(4, key)?, ty == 5)),
            10 | 11 => MetaValue::Int(int(self.take(8, key)?, ty == 11)),
            6 => MetaValue::Float(f64::from(f32::from_bits(self.u32(key)?))),
            12 => MetaValue::Float(f64::from_bits(self.u64(key)?)),
            7 => match self.take(1, key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(checkpoint_error(
                        key,
                        format!("is a bool of byte {b}, not 0 or 1"),
                    ))
                }
            },
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                if depth > 0 {
                    return Err(checkpoint_error(key, "is an array of arrays"));
                }
                let item = self.u32(key)?;
                // Every item is a byte at least (a string's length 8).
                let n = self.count(1, key)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(checkpoint_error(
                    key,
                    format!("has metadata type {other}, which GGUF does not define"),
                ))
            }
        })
    }
}

impl Gguf {
    /// Opens and maps the GGUF file at `path` and reads its header, metadata and tensor
    /// directory. A model split by llama.cpp's `gguf-split` (`name-00001-of-00003.gguf`,
    /// ...: the first part's metadata says `split.count`) is opened from its first part:
    /// the others are found beside it, mapped, and their tensors joined to the directory
    /// ([`GgufTensor::file`] says which part holds each).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file, key or tensor: an unreadable file, bad
    /// magic, a version other than 2 and 3, a count, string or array longer than the
    /// file, a metadata type GGUF does not define, an unknown ggml type, a shape whose
    /// values are not whole blocks, tensor data outside the file, two tensors of one
    /// name, an alignment that is not a power of two; for a split model, a part other
    /// than the first given, a part missing or numbered wrong, a tensor in two parts, or
    /// a tensor count other than `split.tensors.count`.
    ///
    /// Not on wasm32 (no file system in a browser): use [`Gguf::from_bytes`] there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let first = map(&path)?;
        let shown = path.display().to_string();
        let (version, metadata, mut tensors) = Self::parse(&first, &shown)?;
        let mut maps = vec![first];
        let count =
            |m: &BTreeMap<String, MetaValue>, key: &str| m.get(key).and_then(MetaValue::as_count);
        let parts = count(&metadata, "split.count").unwrap_or(1);
        if parts > 1 {
            if count(&metadata, "split.no") != Some(0) {
                return Err(checkpoint_error(
                    &shown,
                    "is not the first part of its split model (split.no is not 0): open the \
                     -00001-of- file",
                ));
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stem = name
                .strip_suffix(&format!("-00001-of-{parts:05}.gguf"))
                .ok_or_else(|| {
                    checkpoint_error(
                        &shown,
                        format!("is the first of {parts} parts but not named *-00001-of-{parts:05}.gguf"),
                    )
                })?;
            for part in 1..parts {
                let other =
                    path.with_file_name(format!("{stem}-{:05}-of-{parts:05}.gguf", part + 1));
                let other_shown = other.display().to_string();
                let m = map(&other)?;
                let (_, meta, more) = Self::parse(&m, &other_shown)?;
                if count(&meta, "split.no") != Some(part)
                    || count(&meta, "split.count") != Some(parts)
                {
                    return Err(checkpoint_error(
                        other_shown,
                        format!(
                            "is not part {} of {parts} (split.no, split.count)",
                            part + 1
                        ),
                    ));
                }
                for t in more {
                    if tensors.iter().any(|u| u.name == t.name) {
                        return Err(checkpoint_error(
                            t.name,
                            "is in two parts of the split model",
                        ));
                    }
                    tensors.push(GgufTensor { file: part, ..t });
                }
                maps.push(m);
            }
            if let Some(want) = count(&metadata, "split.tensors.count") {
                if want != tensors.len() {
                    return Err(checkpoint_error(
                        "split.tensors.count",
                        format!(
                            "is {want}, but the {parts} parts hold {} tensors",
                            tensors.len()
                        ),
                    ));
                }
            }
        }
        Ok(Gguf {
            path,
            maps,
            version,
            metadata,
            tensors,
        })
    }

    /// A GGUF model in one file from its bytes, held rather than mapped (what a page
    /// fetched: wasm32 has no file system; natively too).
    ///
    /// # Errors
    /// As `Gguf::open` (not on wasm32); a part of a split model is refused (open it from its files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let shown = "the GGUF bytes";
        let (version, metadata, tensors) = Self::parse(&bytes, shown)?;
        let parts = metadata.get("split.count").and_then(MetaValue::as_count);
        if parts.unwrap_or(1) > 1 {
            return Err(checkpoint_error(
                shown,
                "are one part of a split model: give a model in one file",
            ));
        }
        Ok(Gguf {
            path: PathBuf::new(),
            maps: vec![Bytes::Held(bytes)],
            version,
            metadata,
            tensors,
        })
    }

    #[allow(clippy::type_complexity)]
    fn parse(
        bytes: &[u8],
        shown: &str,
    ) -> Result<(u32, BTreeMap<String, MetaValue>, Vec<GgufTensor>)> {
        let mut c = Cursor {
            bytes,
            at: 0,
            shown,
        };
        if c.take(4, "the magic")? != b"GGUF" {
            return Err(checkpoint_error(shown, "is not a GGUF file (bad magic)"));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(checkpoint_error(
                shown,
                format!("is GGUF version {version}; the reader takes 2 and 3"),
            ));
        }
        // A tensor info is 24 bytes at least, a key-value pair 13.
        let n_tensors = c.count(24, "the tensor count")?;
        let n_meta = c.count(13, "the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_meta {
            let key = c.string("a metadata key")?;
            let ty = c.u32(&key)?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(checkpoint_error(key, "is in the metadata twice"));
            }
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)? as usize;
            if !(1..=4).contains(&n_dims) {
                return Err(checkpoint_error(
                    name,
                    format!("has {n_dims} dimensions (1 to 4)"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = c.u64(&name)?;
                dims.push(
                    usize::try_from(d)
                        .map_err(|_| checkpoint_error(&name, format!("has a dimension of {d}")))?,
                );
            }
            let code = c.u32(&name)?;
            let ggml_type = GgmlType::from_code(code).ok_or_else(|| {
                checkpoint_error(
                    &name,
                    format!("has ggml type {code}, which the reader does not know"),
                )
            })?;
            let offset = c.u64(&name)?;
            infos.push((name, dims, ggml_type, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v
                .as_count()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| {
                    checkpoint_error("general.alignment", format!("is {v:?}, not a power of two"))
                })?,
        };
        let start = c.at.next_multiple_of(alignment);
        let mut tensors = Vec::with_capacity(infos.len());
        let mut names = std::collections::HashSet::new();
        for (name, dims, ggml_type, offset) in infos {
            let values = dims
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| checkpoint_error(&name, format!("has shape {dims:?}: too large")))?;
            if dims[0] % ggml_type.block_values() != 0 {
                return Err(checkpoint_error(
                    name,
                    format!(
                        "has rows of {} values, not whole {ggml_type:?} blocks of {}",
                        dims[0],
                        ggml_type.block_values()
                    ),
                ));
            }
            let len = (values / ggml_type.block_values())
                .checked_mul(ggml_type.block_bytes())
                .ok_or_else(|| checkpoint_error(&name, "is too large"))?;
            let at = usize::try_from(offset)
                .ok()
                .and_then(|o| start.checked_add(o))
                .filter(|at| at % alignment == 0);
            let range = at
                .and_then(|at| at.checked_add(len).map(|end| at..end))
                .filter(|r| r.end <= bytes.len())
                .ok_or_else(|| {
                    checkpoint_error(
                        &name,
                        format!(
                            "has its {len} bytes at offset {offset} of the data section \
                             (from byte {start}, aligned to {alignment}): outside the file's \
                             {} bytes or unaligned",
                            bytes.len()
                        ),
                    )
                })?;
            if !names.insert(name.clone()) {
                return Err(checkpoint_error(name, "is in the tensor directory twice"));
            }
            tensors.push(GgufTensor {
                name,
                dims,
                ggml_type,
                bytes: range,
                file: 0,
            });
        }
        Ok((version, metadata, tensors))
    }

    /// The file's GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata key and its value.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The tensor directory, in the file's order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// Tensor `name`'s bytes, as the file holds them.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the file has no such tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| -> Error {
                checkpoint_error(name, format!("is not in {}", self.path.display()))
            })?;
        Ok(&self.maps[t.file][t.bytes.clone()])
    }

    /// Tensor `name`'s directory entry.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the file has no such tensor.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| checkpoint_error(name, format!("is not in {}", self.path.display())))
    }

    /// Whether the file holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    /// Tensor `name`'s shape outermost first, as safetensors and PyTorch give it (`[rows,
    /// cols]` for a matrix: the reverse of the file's dimensions).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the file has no such tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.tensor(name)?.dims.iter().rev().copied().collect())
    }

    /// The element type the layers read tensor `name` as.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor: missing, or of a type the kernels do not
    /// decode (Q5_1, Q2_K, Q3_K).
    pub fn dtype(&self, name: &str) -> Result<DType> {
        let t = self.tensor(name)?;
        t.ggml_type.dtype().ok_or_else(|| {
            checkpoint_error(
                name,
                format!(
                    "is of ggml type {:?}, which the loader does not read (it reads F32, F16, \
                     BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K and Q6_K)",
                    t.ggml_type
                ),
            )
        })
    }

    /// Checks that tensor `name` exists with `shape` (outermost first, as
    /// [`Gguf::shape`]) and a type the loader reads, and returns that type.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor.
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<DType> {
        let have = self.shape(name)?;
        if have != shape {
            return Err(checkpoint_error(
                name,
                format!(
                    "has shape {have:?}, the metadata implies {shape:?} ({})",
                    self.path.display()
                ),
            ));
        }
        self.dtype(name)
    }

    /// Tensor `name` as a matrix `[rows, cols]` (a vector is one row), its type, and the
    /// bytes of one row.
    fn matrix(&self, name: &str) -> Result<(&GgufTensor, DType, usize, usize, usize)> {
        let t = self.tensor(name)?;
        let dtype = self.dtype(name)?;
        let (rows, cols) = match t.dims[..] {
            [n] => (1, n),
            [c, r] => (r, c),
            _ => {
                return Err(checkpoint_error(
                    name,
                    format!("is {}-D, not a matrix", t.dims.len()),
                ))
            }
        };
        if !cols.is_multiple_of(dtype.block_values()) {
            return Err(checkpoint_error(
                name,
                format!(
                    "has rows of {cols} values, not whole {dtype} blocks of {}",
                    dtype.block_values()
                ),
            ));
        }
        let row_bytes = dtype.bytes_of(cols);
        if t.bytes.len() != rows * row_bytes {
            return Err(checkpoint_error(
                name,
                format!(
                    "holds {} bytes, its shape and type need {}",
                    t.bytes.len(),
                    rows * row_bytes
                ),
            ));
        }
        Ok((t, dtype, rows, cols, row_bytes))
    }

    /// Rows `rows` of tensor `name` (a matrix `[rows, cols]`, or a vector as one row) as
    /// the file holds them: f32, the 16-bit values of f16/bf16, or whole rows of
    /// quantized blocks ([`HostWeights::Packed`]); reads only those rows' bytes.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor: missing, of a type the loader does not
    /// read, not a matrix, rows out of range.
    pub fn rows(&self, name: &str, rows: Range<usize>) -> Result<HostWeights> {
        let (t, dtype, n_rows, cols, row_bytes) = self.matrix(name)?;
        if rows.start > rows.end || rows.end > n_rows {
            return Err(checkpoint_error(
                name,
                format!("has {n_rows} rows, not {rows:?}"),
            ));
        }
        let at = t.bytes.start + rows.start * row_bytes;
        let span = at..at + rows.len() * row_bytes;
        let mut out = HostWeights::empty(dtype, rows.len() * cols);
        extend(&mut out, &self.maps[t.file][span.clone()]);
        release(&self.maps[t.file], span);
        Ok(out)
    }

    /// Columns `cols` of the matrix `name` as the file holds them (see [`Gguf::rows`]):
    /// each row's byte range. For a quantized type the columns must be whole blocks.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the tensor: as [`Gguf::rows`], columns out of range,
    /// or columns cutting a quantized block.
    pub fn cols(&self, name: &str, cols: Range<usize>) -> Result<HostWeights> {
        let (t, dtype, rows, n, row_bytes) = self.matrix(name)?;
        if cols.start > cols.end || cols.end > n {
            return Err(checkpoint_error(
                name,
                format!("has {n} columns, not {cols:?}"),
            ));
        }
        let block = dtype.block_values();
        if !cols.start.is_multiple_of(block) || !cols.end.is_multiple_of(block) {
            return Err(checkpoint_error(
                name,
                format!("columns {cols:?} cut its {dtype} blocks of {block} values"),
            ));
        }
        let (from, len) = (dtype.bytes_of(cols.start), dtype.bytes_of(cols.len()));
        let mut out = HostWeights::empty(dtype, rows * cols.len());
        for r in 0..rows {
            let at = t.bytes.start + r * row_bytes + from;
            extend(&mut out, &self.maps[t.file][at..at + len]);
        }
        release(&self.maps[t.file], t.bytes.clone());
        Ok(out)
    }

    /// The whole tensor `name` as f32: f16/bf16 widened exactly, quantized blocks decoded
    /// as the gguf package decodes them (norms, biases, positions).
    ///
    /// # Errors
    /// As [`Gguf::rows`].
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let (_, dtype, rows, _, _) = self.matrix(name)?;
        match self.rows(name, 0..rows)? {
            HostWeights::F32(v) => Ok(v),
            HostWeights::Packed(_, bytes) => dtype
                .dequantize(&bytes)
                .map_err(|e| checkpoint_error(name, e.to_string())),
            half => Ok(half.to_f32()),
        }
    }
}
