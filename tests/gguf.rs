//! GGUF files as the reader sees them: a file this test writes byte by byte (every
//! metadata type, plain and quantized tensors) reads back key for key and byte for byte;
//! malformed files (each field bent, and the file cut at every length) end in
//! `Error::Checkpoint` naming the file, key or tensor, never a panic or an allocation
//! sized by a count the file gives.

use std::path::PathBuf;

use wgpu_tp::load::{GgmlType, Gguf, MetaValue};
use wgpu_tp::Error;

/// A GGUF file under construction, written as llama.cpp's `gguf` package writes one.
struct Writer {
    version: u32,
    alignment: usize,
    meta: Vec<u8>,
    n_meta: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    fn new(version: u32) -> Self {
        Writer {
            version,
            alignment: 32,
            meta: Vec::new(),
            n_meta: 0,
            infos: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
        }
    }

    /// A key with its type code and the value's bytes.
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        string(&mut self.meta, key);
        self.meta.extend(ty.to_le_bytes());
        self.meta.extend(value);
        self.n_meta += 1;
        self
    }

    /// A tensor of `dims` (innermost first) and ggml type code `code`, its bytes next in
    /// the data section (aligned).
    fn tensor(&mut self, name: &str, dims: &[u64], code: u32, bytes: &[u8]) -> &mut Self {
        let at = self.data.len().next_multiple_of(self.alignment);
        self.data.resize(at, 0);
        string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(code.to_le_bytes());
        self.infos.extend((at as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_meta.to_le_bytes());
        out.extend(&self.meta);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}

fn file(test: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-tp-{}-gguf", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn error(test: &str, bytes: &[u8]) -> (String, String) {
    match Gguf::open(file(test, bytes)) {
        Err(Error::Checkpoint { what, message }) => (what, message),
        other => panic!("{test}: expected a checkpoint error, got {other:?}"),
    }
}

/// The sample file: every metadata type, an f32, a Q8_0 and a Q4_K tensor.
fn sample(version: u32) -> (Writer, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut w = Writer::new(version);
    let mut tokens = Vec::new();
    tokens.extend(3u64.to_le_bytes());
    for t in ["<s>", "héllo", "🦀"] {
        string(&mut tokens, t);
    }
    let mut name = Vec::new();
    string(&mut name, "tiny");
    w.kv("general.architecture", 8, &name)
        .kv("llama.block_count", 4, &2u32.to_le_bytes())
        .kv("u8", 0, &[200])
        .kv("i8", 1, &[0xfe])
        .kv("u16", 2, &60000u16.to_le_bytes())
        .kv("i16", 3, &(-300i16).to_le_bytes())
        .kv("i32", 5, &(-70000i32).to_le_bytes())
        .kv("f32", 6, &1.5f32.to_le_bytes())
        .kv("bool", 7, &[1])
        .kv("u64", 10, &(1u64 << 40).to_le_bytes())
        .kv("i64", 11, &(-5i64).to_le_bytes())
        .kv("f64", 12, &0.1f64.to_le_bytes())
        .kv(
            "tokenizer.ggml.tokens",
            9,
            &[&8u32.to_le_bytes()[..], &tokens].concat(),
        );
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    // Q8_0 [64, 2]: 2 blocks a row, 34 bytes a block.
    let q8: Vec<u8> = (0..4 * 34).map(|i| i as u8).collect();
    // Q4_K [256]: one super-block of 144 bytes.
    let q4k: Vec<u8> = (0..144).map(|i| (i * 7) as u8).collect();
    w.tensor("token_embd.weight", &[4, 2], 0, &f32s)
        .tensor("blk.0.attn_q.weight", &[64, 2], 8, &q8)
        .tensor("blk.0.ffn_down.weight", &[256], 12, &q4k);
    (w, f32s, q8, q4k)
}

#[test]
fn a_written_file_reads_back_key_for_key_and_byte_for_byte() {
    for version in [2, 3] {
        let (w, f32s, q8, q4k) = sample(version);
        let g = Gguf::open(file(&format!("sample-v{version}"), &w.bytes())).unwrap();
        assert_eq!(g.version(), version);
        let get = |k: &str| g.get(k).unwrap_or_else(|| panic!("{k}")).clone();
        assert_eq!(get("general.architecture").as_str(), Some("tiny"));
        assert_eq!(get("llama.block_count").as_count(), Some(2));
        for (k, v) in [
            ("u8", 200i128),
            ("i8", -2),
            ("u16", 60000),
            ("i16", -300),
            ("i32", -70000),
            ("u64", 1 << 40),
            ("i64", -5),
        ] {
            assert_eq!(get(k), MetaValue::Int(v), "{k}");
        }
        assert_eq!(get("f32"), MetaValue::Float(1.5));
        assert_eq!(get("f64"), MetaValue::Float(0.1));
        assert_eq!(get("bool"), MetaValue::Bool(true));
        assert_eq!(
            get("tokenizer.ggml.tokens"),
            MetaValue::Array(
                ["<s>", "héllo", "🦀"]
                    .map(|s| MetaValue::Str(s.into()))
                    .to_vec()
            )
        );
        assert_eq!(g.metadata().len(), 13);
        let t = g.tensors();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].dims.clone(), t[0].ggml_type),
            (vec![4, 2], GgmlType::F32)
        );
        assert_eq!(
            (t[1].dims.clone(), t[1].ggml_type),
            (vec![64, 2], GgmlType::Q8_0)
        );
        assert_eq!(
            (t[2].dims.clone(), t[2].ggml_type),
            (vec![256], GgmlType::Q4K)
        );
        assert_eq!(g.tensor_bytes("token_embd.weight").unwrap(), &f32s[..]);
        assert_eq!(g.tensor_bytes("blk.0.attn_q.weight").unwrap(), &q8[..]);
        assert_eq!(g.tensor_bytes("blk.0.ffn_down.weight").unwrap(), &q4k[..]);
        assert!(t.iter().all(|t| t.bytes.start % 32 == 0));
        assert!(matches!(
            g.tensor_bytes("output.weight"),
            Err(Error::Checkpoint { what, .. }) if what == "output.weight"
        ));
    }
    // Another alignment, given by general.alignment.
    let (mut w, ..) = sample(3);
    w.alignment = 64;
    w.data.clear();
    w.infos.clear();
    w.n_tensors = 0;
    w.kv("general.alignment", 4, &64u32.to_le_bytes());
    w.tensor("t", &[32], 8, &[9; 34]);
    let g = Gguf::open(file("aligned-64", &w.bytes())).unwrap();
    assert_eq!(g.tensors()[0].bytes.start % 64, 0);
    assert_eq!(g.tensor_bytes("t").unwrap(), &[9; 34]);
}

#[test]
fn malformed_files_are_refused_naming_what_is_wrong() {
    let good = sample(3).0.bytes();
    let bent = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    for (test, bytes, what, says) in [
        ("magic", bent(0, b"GGUG"), "", "bad magic"),
        ("version-1", bent(4, &1u32.to_le_bytes()), "", "version 1"),
        ("version-4", bent(4, &4u32.to_le_bytes()), "", "version 4"),
        (
            "tensor-count",
            bent(8, &u64::MAX.to_le_bytes()),
            "",
            "tensor count",
        ),
        (
            "meta-count",
            bent(16, &(1u64 << 40).to_le_bytes()),
            "",
            "metadata count",
        ),
        // The first key's length.
        (
            "key-length",
            bent(24, &(1u64 << 50).to_le_bytes()),
            "",
            "metadata key",
        ),
    ] {
        let (w, m) = error(test, &bytes);
        assert!(w.ends_with(".gguf") || w == what, "{test}: {w}");
        assert!(m.contains(says), "{test}: {m}");
    }
    // Bent values, written whole.
    let one = |test: &str, f: &dyn Fn(&mut Writer), what: &str, says: &str| {
        let mut w = Writer::new(3);
        f(&mut w);
        let (got, m) = error(test, &w.bytes());
        assert!(got == what || got.ends_with(what), "{test}: {got}: {m}");
        assert!(m.contains(says), "{test}: {m}");
    };
    one(
        "meta-type",
        &|w| {
            w.kv("odd", 13, &[0; 8]);
        },
        "odd",
        "metadata type 13",
    );
    one(
        "bool-byte",
        &|w| {
            w.kv("flag", 7, &[2]);
        },
        "flag",
        "byte 2",
    );
    one(
        "array-count",
        &|w| {
            w.kv(
                "list",
                9,
                &[&4u32.to_le_bytes()[..], &u64::MAX.to_le_bytes()].concat(),
            );
        },
        "list",
        "more than",
    );
    one(
        "array-of-arrays",
        &|w| {
            w.kv(
                "nest",
                9,
                &[&9u32.to_le_bytes()[..], &1u64.to_le_bytes()].concat(),
            );
        },
        "nest",
        "array of arrays",
    );
    one(
        "twice",
        &|w| {
            w.kv("k", 4, &[0; 4]).kv("k", 4, &[0; 4]);
        },
        "k",
        "twice",
    );
    one(
        "alignment",
        &|w| {
            w.kv("general.alignment", 4, &3u32.to_le_bytes());
        },
        "general.alignment",
        "power of two",
    );
    one(
        "ggml-type",
        &|w| {
            w.tensor("t", &[4], 99, &[0; 16]);
        },
        "t",
        "ggml type 99",
    );
    one(
        "dims",
        &|w| {
            w.tensor("t", &[1, 1, 1, 1, 1], 0, &[0; 4]);
        },
        "t",
        "5 dimensions",
    );
    one(
        "whole-blocks",
        &|w| {
            w.tensor("t", &[33], 8, &[0; 34]);
        },
        "t",
        "whole Q8_0 blocks",
    );
    one(
        "outside",
        &|w| {
            w.tensor("t", &[64], 0, &[0; 16]);
        },
        "t",
        "outside the file",
    );
    one(
        "huge-shape",
        &|w| {
            w.tensor("t", &[1 << 40, 1 << 40], 0, &[]);
        },
        "t",
        "too large",
    );
    one(
        "same-name",
        &|w| {
            w.tensor("t", &[1], 0, &[0; 4])
                .tensor("t", &[1], 0, &[0; 4]);
        },
        "t",
        "twice",
    );
    // Cut at every length: an error each time, never a panic.
    for len in 0..good.len() {
        let cut = &good[..len];
        let path = file("cut", cut);
        assert!(
            matches!(Gguf::open(&path), Err(Error::Checkpoint { .. })),
            "cut at {len} of {}",
            good.len()
        );
    }
}

/// A file llama.cpp's own `gguf` package wrote (`scripts/make_gguf_fixtures.py`): every key
/// and value, and every tensor's shape, type, place and bytes as its `GGUFReader` read them.
#[test]
fn a_file_from_llama_cpps_gguf_package_reads_as_its_reader_reads_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("header.json")).unwrap()).unwrap();
    let g = Gguf::open(dir.join("header.gguf")).unwrap();
    assert_eq!(g.version(), 3);
    let json = |v: &MetaValue| -> serde_json::Value {
        fn go(v: &MetaValue) -> serde_json::Value {
            match v {
                MetaValue::Int(n) => serde_json::json!(*n as i64),
                MetaValue::Float(x) => serde_json::json!(*x),
                MetaValue::Bool(b) => serde_json::json!(*b),
                MetaValue::Str(s) => serde_json::json!(s),
                MetaValue::Array(items) => items.iter().map(go).collect(),
                other => panic!("{other:?}"),
            }
        }
        go(v)
    };
    for (key, value) in want["metadata"].as_object().unwrap() {
        let ours = g.get(key).unwrap_or_else(|| panic!("{key} missing"));
        // The f32 value 0.25 is exact; every other number is an integer or an f64.
        assert_eq!(&json(ours), value, "{key}");
    }
    let tensors = want["tensors"].as_array().unwrap();
    assert_eq!(g.tensors().len(), tensors.len());
    for (t, w) in g.tensors().iter().zip(tensors) {
        assert_eq!(t.name, w["name"].as_str().unwrap());
        let dims: Vec<usize> = w["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        // Its reader pads a one-row shape to 2 dimensions; the file lists what was written.
        assert_eq!(
            t.dims
                .iter()
                .chain(std::iter::repeat(&1))
                .take(dims.len())
                .copied()
                .collect::<Vec<_>>(),
            dims,
            "{}",
            t.name
        );
        assert_eq!(
            format!("{:?}", t.ggml_type).replace("K", "_K"),
            w["type"].as_str().unwrap()
        );
        assert_eq!(
            t.bytes.start as u64,
            w["offset"].as_u64().unwrap(),
            "{}",
            t.name
        );
        let hex: String = g
            .tensor_bytes(&t.name)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, w["hex"].as_str().unwrap(), "{}", t.name);
    }
}

#[test]
fn a_synthetic_gguf_llama_reads_back_as_written() {
    use wgpu_tp::reference::{write_synthetic_llama_gguf, SyntheticLlama};
    use wgpu_tp::DType;
    let m = SyntheticLlama {
        vocab: 40,
        hidden: 256,
        intermediate: 512,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        positions: 64,
    };
    let dir = std::env::temp_dir().join(format!("wgpu-tp-synthetic-gguf-{}", std::process::id()));
    let path = dir.join("model.gguf");
    let size = write_synthetic_llama_gguf(&path, &m, 3, DType::Q4K, DType::Q6K).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let g = wgpu_tp::load::Gguf::open(&path).unwrap();
    assert_eq!(g.tensors().len(), 1 + 9 * 2 + 2);
    assert_eq!(
        g.get("llama.block_count").and_then(|v| v.as_count()),
        Some(2)
    );
    let q = g
        .tensors()
        .iter()
        .find(|t| t.name == "blk.1.attn_q.weight")
        .unwrap();
    assert_eq!(q.dims, vec![256, 256]);
    assert_eq!(q.bytes.len(), 256 * 144);
    let values = DType::Q4K
        .dequantize(g.tensor_bytes("blk.1.attn_q.weight").unwrap())
        .unwrap();
    // Random weights of modest size: finite, not all zero, each scale d, dmin under 2^-10
    // (exponents up to 2^-11, mantissas under 2), so |d sc q - dmin m| <= 2^-10 * 63 * 15 < 1.
    assert!(values.iter().all(|v| v.is_finite() && v.abs() < 1.0));
    assert!(values.iter().any(|v| *v != 0.0));
    // Not whole blocks.
    let bad = SyntheticLlama { hidden: 128, ..m };
    assert!(write_synthetic_llama_gguf(&path, &bad, 3, DType::Q4K, DType::Q6K).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
