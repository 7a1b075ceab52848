//! `Tokenizer::from_gguf` against Hugging Face's `tokenizers` (Python): two tokenizers
//! trained by scripts/make_gguf_tokenizer_fixtures.py, a byte-level BPE as Llama 3's
//! (`gpt2`, pre `llama-bpe`) and a SentencePiece BPE with byte fallback as Llama 2's
//! (`llama`), the first also under GPT-2's, Qwen2's, SmolLM's and llama.cpp's default
//! pre-tokenizers, each
//! written as the GGUF metadata llama.cpp's converter writes; every text of the
//! reference encodes to the ids `tokenizers` gives for the tokenizer.json (with and
//! without bos) and decodes back to its text; the special tokens, end-of-sequence ids and
//! chat template are the metadata's. Malformed metadata ends in
//! `Error::Checkpoint` naming the key.

use std::path::PathBuf;

use serde_json::Value as Json;
use wgpu_tp::load::{Gguf, Tokenizer};
use wgpu_tp::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/tokenizer")
        .join(name)
}

fn reference(name: &str) -> Json {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

fn tokenizer(name: &str) -> Tokenizer {
    let gguf = Gguf::open(fixture(name)).unwrap();
    Tokenizer::from_gguf(&gguf).unwrap()
}

/// Every reference case: the ids with bos and the text decoded back; the ids without
/// special tokens (the chat path encodes without them) through the chat template text.
fn check(gguf: &str, reference_file: &str) {
    let t = tokenizer(gguf);
    let r = reference(reference_file);
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() > 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = t.encode(text).unwrap();
        assert_eq!(got, want, "{gguf}: ids of {text:?}");
        let decoded = t.decode(&got).unwrap();
        assert_eq!(
            decoded,
            case["decoded"].as_str().unwrap(),
            "{gguf}: decode of {text:?}"
        );
        let plain = ids(&case["ids_no_special"]);
        assert_eq!(
            t.decode(&plain).unwrap(),
            case["decoded_no_special"].as_str().unwrap(),
            "{gguf}: decode of {text:?} without bos"
        );
    }
    // The encoding without special tokens: the chat path (`encode_chat`) takes it.
    let messages: Vec<(String, String)> = r["chat"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let messages: Vec<(&str, &str)> = messages
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect();
    for render in r["chat"]["renders"].as_array().unwrap() {
        let gen = render["add_generation_prompt"].as_bool().unwrap();
        let text = t.apply_chat_template(&messages, gen).unwrap();
        assert_eq!(
            text,
            render["text"].as_str().unwrap(),
            "{gguf}: chat template"
        );
        assert_eq!(t.encode_chat(&messages, gen).unwrap(), ids(&render["ids"]));
    }
    assert_eq!(
        t.eos_ids(),
        ids(&r["eos_ids"]).as_slice(),
        "{gguf}: eos ids"
    );
    let bos = r["bos_id"].as_u64().unwrap() as u32;
    let add_bos = r["add_bos"].as_bool().unwrap();
    let empty = if add_bos { vec![bos] } else { vec![] };
    assert_eq!(t.encode("").unwrap(), empty, "{gguf}: bos alone");
    assert!(t.chat_template().is_some());
}

#[test]
fn byte_level_bpe_matches_tokenizers() {
    check("bpe.gguf", "bpe.reference.json");
}

/// The same vocabulary under GPT-2's, Qwen2's (NFC) and SmolLM's pre-tokenizers, and
/// llama.cpp's `default` regexes.
#[test]
fn other_pre_tokenizers_match_tokenizers() {
    for pre in ["gpt2", "qwen2", "smollm", "default"] {
        check(
            &format!("bpe_{pre}.gguf"),
            &format!("bpe_{pre}.reference.json"),
        );
    }
}

#[test]
fn sentencepiece_bpe_matches_tokenizers() {
    check("spm.gguf", "spm.reference.json");
}

#[test]
fn special_tokens_are_matched_whole_and_skipped() {
    let t = tokenizer("bpe.gguf");
    let r = reference("bpe.reference.json");
    let eot = ids(&r["eos_ids"])[1];
    let got = t.encode("a<|eot_id|>b").unwrap();
    assert!(got.contains(&eot), "{got:?}");
    assert_eq!(t.decode(&got).unwrap(), "ab");
    // The user-defined token is matched whole and kept.
    let got = t.encode("x<tool_call>y").unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(t.decode(&got).unwrap(), "x<tool_call>y");

    let t = tokenizer("spm.gguf");
    let got = t.encode("</s>").unwrap();
    assert_eq!(got, vec![1, 2]);
    // Bytes outside the vocabulary fall back to <0xAB> tokens (3 + byte).
    let got = t.encode("ж").unwrap();
    assert!(got.ends_with(&[3 + 0xD0, 3 + 0xB6]), "{got:?}");
    assert_eq!(t.decode(&got).unwrap(), "ж");
}

fn error_key(name: &str) -> (String, String) {
    let gguf = Gguf::open(fixture(name)).unwrap();
    match Tokenizer::from_gguf(&gguf) {
        Err(Error::Checkpoint { what, message }) => (what, message),
        Err(e) => panic!("{name}: {e}"),
        Ok(_) => panic!("{name}: accepted"),
    }
}

#[test]
fn malformed_metadata_is_refused_naming_the_key() {
    let (what, message) = error_key("bad_model.gguf");
    assert_eq!(what, "tokenizer.ggml.model");
    assert!(message.contains("bert"), "{message}");
    let (what, _) = error_key("bad_no_model.gguf");
    assert_eq!(what, "tokenizer.ggml.model");
    let (what, _) = error_key("bad_no_tokens.gguf");
    assert_eq!(what, "tokenizer.ggml.tokens");
    let (what, message) = error_key("bad_pre.gguf");
    assert_eq!(what, "tokenizer.ggml.pre");
    assert!(message.contains("mystery-pre"), "{message}");
    let (what, _) = error_key("bad_no_merges.gguf");
    assert_eq!(what, "tokenizer.ggml.merges");
    let (what, _) = error_key("bad_bos.gguf");
    assert_eq!(what, "tokenizer.ggml.bos_token_id");
    let (what, message) = error_key("bad_types.gguf");
    assert_eq!(what, "tokenizer.ggml.token_type");
    assert!(message.contains("items"), "{message}");
    let (what, message) = error_key("bad_merge.gguf");
    assert_eq!(what, "tokenizer.ggml.merges");
    assert!(message.contains("notatoken"), "{message}");
    let (what, _) = error_key("bad_add_bos.gguf");
    assert_eq!(what, "tokenizer.ggml.add_bos_token");
    let (what, _) = error_key("bad_no_scores.gguf");
    assert_eq!(what, "tokenizer.ggml.scores");
}
