//! The tokenizer a GGUF file carries in its metadata (`tokenizer.ggml.*`, as llama.cpp's
//! `convert_hf_to_gguf.py` writes it), rebuilt as the Hugging Face `tokenizer.json` the
//! checkpoint it came from holds, and read with Hugging Face's `tokenizers` crate.
//!
//! Two models:
//! - `gpt2`: byte-level BPE (`tokenizer.ggml.tokens`, `.merges`, `.token_type`), the
//!   pre-tokenizer chosen by `tokenizer.ggml.pre` as the tokenizer.json of that family
//!   writes it: `gpt2`, `gpt-2`, `phi-2` (GPT-2's byte-level regex); `llama3`,
//!   `llama-v3`, `llama-bpe` (Llama 3's split regex, merges ignored for a word in the
//!   vocabulary); `qwen2`, `deepseek-r1-qwen` (Qwen2's regex, NFC); `smollm`,
//!   `starcoder` (single digits, then GPT-2's regex); `default` or no key (no family's:
//!   llama.cpp's fallback, its four regexes in turn).
//! - `llama`: SentencePiece BPE with byte fallback (`<0x00>`..`<0xFF>`) as transformers'
//!   Llama converter writes it: the merges derived from `tokenizer.ggml.scores` (every
//!   split of a piece into two pieces of the vocabulary, ordered by the piece's score;
//!   `tokenizer.ggml.merges` instead when the file has them), `▁` for spaces and, with
//!   `tokenizer.ggml.add_space_prefix` (default true), one prepended.
//!
//! Tokens of type CONTROL and UNKNOWN, and the bos, eos and unknown tokens, become special
//! added tokens (matched whole, skipped when decoding); USER_DEFINED tokens added tokens
//! that are kept when decoding. Every token is also in the model's vocabulary (Llama 3's
//! tokenizer.json keeps its added tokens out of it; the ids are the same). The
//! post-processor adds bos / eos as `tokenizer.ggml.add_bos_token` / `add_eos_token` say
//! (llama.cpp's defaults when they are absent: bos for `llama` and Llama 3's
//! pre-tokenizer).

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use super::checkpoint_error;
use super::gguf::{Gguf, MetaValue};
use crate::error::Result;

/// llama.cpp's token types (`llama_token_type`).
const TYPE_UNKNOWN: i128 = 2;
const TYPE_CONTROL: i128 = 3;
const TYPE_USER_DEFINED: i128 = 4;

/// Llama 3's split regex, as its tokenizer.json writes it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (Llama 3's with single digits), as its tokenizer.json writes it.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's regexes for `tokenizer.ggml.pre` `default` (and a file without the key).
const DEFAULT_REGEXES: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// The `tokenizer.ggml.pre` values this reader knows, for the error naming an unknown one.
const KNOWN_PRE: &str = "default, gpt2, gpt-2, phi-2, llama3, llama-v3, llama-bpe, qwen2, \
                         deepseek-r1-qwen, smollm, starcoder";

/// What a GGUF file's metadata says of its tokenizer.
pub(super) struct Converted {
    /// The tokenizer, as its tokenizer.json would build it.
    pub inner: tokenizers::Tokenizer,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// The text of the bos token.
    pub bos_token: Option<String>,
    /// The text of the eos token.
    pub eos_token: Option<String>,
    /// `eos_token_id`, then `eot_token_id` and `eom_token_id` when present.
    pub eos_ids: Vec<u32>,
}

fn missing(key: &str) -> crate::error::Error {
    checkpoint_error(key, "is not in the GGUF metadata")
}

/// The items of array `key`, when it is there.
fn array<'a>(gguf: &'a Gguf, key: &str) -> Result<Option<&'a [MetaValue]>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(MetaValue::Array(items)) => Ok(Some(items)),
        Some(v) => Err(checkpoint_error(key, format!("is {v:?}, not an array"))),
    }
}

/// The strings of array `key`, when it is there.
fn strings<'a>(gguf: &'a Gguf, key: &str) -> Result<Option<Vec<&'a str>>> {
    let Some(items) = array(gguf, key)? else {
        return Ok(None);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| checkpoint_error(key, format!("item {i} is {v:?}, not a string")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The numbers of array `key`, one per token, when it is there.
fn per_token<T>(
    gguf: &Gguf,
    key: &str,
    n: usize,
    what: &str,
    f: impl Fn(&MetaValue) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(items) = array(gguf, key)? else {
        return Ok(None);
    };
    if items.len() != n {
        return Err(checkpoint_error(
            key,
            format!(
                "has {} items for the {n} tokens of tokenizer.ggml.tokens",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            f(v).ok_or_else(|| checkpoint_error(key, format!("item {i} is {v:?}, not {what}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// String value `key`, when it is there.
fn text<'a>(gguf: &'a Gguf, key: &str) -> Result<Option<&'a str>> {
    gguf.get(key)
        .map(|v| {
            v.as_str()
                .ok_or_else(|| checkpoint_error(key, format!("is {v:?}, not a string")))
        })
        .transpose()
}

/// Boolean value `key`, when it is there.
fn flag(gguf: &Gguf, key: &str) -> Result<Option<bool>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(MetaValue::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(checkpoint_error(key, format!("is {v:?}, not a bool"))),
    }
}

/// Token id `key`, when it is there: an id of the `n` tokens.
fn id(gguf: &Gguf, key: &str, n: usize) -> Result<Option<u32>> {
    let Some(v) = gguf.get(key) else {
        return Ok(None);
    };
    v.as_count()
        .filter(|&i| i < n)
        .and_then(|i| u32::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| {
            checkpoint_error(
                key,
                format!("is {v:?}, not an id of the {n} tokens of tokenizer.ggml.tokens"),
            )
        })
}

/// The pre-tokenizer, normalizer and `ignore_merges` of the byte-level BPE whose
/// `tokenizer.ggml.pre` is `pre`, as its family's tokenizer.json has them; and whether
/// llama.cpp adds bos by default.
fn byte_level_parts(pre: &str) -> Result<(Json, Json, bool, bool)> {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    let split = |regex: &str| {
        json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
               "invert": false})
    };
    Ok(match pre {
        "gpt2" | "gpt-2" | "phi-2" => (byte_level(true), Json::Null, false, false),
        // No family's tokenizer.json: llama.cpp's fallback for files without a known
        // pre-tokenizer, its regexes applied in turn.
        "default" => {
            let mut splits: Vec<Json> = DEFAULT_REGEXES.iter().map(|r| split(r)).collect();
            splits.push(byte_level(false));
            (
                json!({"type": "Sequence", "pretokenizers": splits}),
                Json::Null,
                false,
                false,
            )
        }
        "llama3" | "llama-v3" | "llama-bpe" => (
            json!({"type": "Sequence",
                   "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]}),
            Json::Null,
            true,
            true,
        ),
        "qwen2" | "deepseek-r1-qwen" => (
            json!({"type": "Sequence",
                   "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]}),
            json!({"type": "NFC"}),
            false,
            false,
        ),
        "smollm" | "starcoder" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            Json::Null,
            false,
            false,
        ),
        other => {
            return Err(checkpoint_error(
                "tokenizer.ggml.pre",
                format!(
                    "is \"{other}\", a pre-tokenizer this reader does not know (it knows \
                     {KNOWN_PRE})"
                ),
            ))
        }
    })
}

/// The merges transformers' Llama converter derives from a SentencePiece model's pieces
/// and scores (`generate_merges(vocab, vocab_scores)`): every split of a piece into two
/// pieces of the vocabulary (ordered by their ids), all ordered by the piece's score,
/// then the left and right lengths in characters, highest first, ties in vocabulary order.
fn merges_from_scores(
    tokens: &[&str],
    scores: &[f32],
    vocab: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    // Python's float order: -0.0 equals 0.0; a NaN score (never written) sorts last.
    let key = |s: f32| {
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s + 0.0
        }
    };
    let mut merges: Vec<(&str, &str, f32, usize, usize)> = Vec::new();
    for (i, &piece) in tokens.iter().enumerate() {
        if vocab.get(piece) != u32::try_from(i).ok().as_ref() {
            continue; // a duplicate: Python's dict holds it once.
        }
        let mut local: Vec<(u32, u32, &str, &str)> = Vec::new();
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&a), Some(&b)) = (vocab.get(l), vocab.get(r)) {
                local.push((a, b, l, r));
            }
        }
        local.sort_by_key(|&(a, b, _, _)| (a, b));
        merges.extend(
            local
                .into_iter()
                .map(|(_, _, l, r)| (l, r, key(scores[i]), l.chars().count(), r.chars().count())),
        );
    }
    // Stable, so equal keys keep their order, as Python's sorted(..., reverse=True).
    merges.sort_by(|x, y| y.2.total_cmp(&x.2).then(y.3.cmp(&x.3)).then(y.4.cmp(&x.4)));
    merges
        .into_iter()
        .map(|(l, r, ..)| (l.to_owned(), r.to_owned()))
        .collect()
}

/// The merges of `tokenizer.ggml.merges`, each "left right" (split at the first space
/// after the first byte, as llama.cpp does).
fn merges_from_metadata(list: &[&str]) -> Result<Vec<(String, String)>> {
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            m.char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(at, _)| (m[..at].to_owned(), m[at + 1..].to_owned()))
                .filter(|(_, r)| !r.is_empty())
                .ok_or_else(|| {
                    checkpoint_error(
                        "tokenizer.ggml.merges",
                        format!("item {i} is {m:?}, not two tokens split by a space"),
                    )
                })
        })
        .collect()
}

/// A template processor adding `bos` before and `eos` after each sequence.
fn post_processor(bos: Option<(&str, u32)>, eos: Option<(&str, u32)>) -> Json {
    if bos.is_none() && eos.is_none() {
        return Json::Null;
    }
    let special = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    let one = |seq: &str, type_id: u32| {
        let mut v = Vec::new();
        v.extend(bos.map(|(t, _)| special(t, type_id)));
        v.push(sequence(seq, type_id));
        v.extend(eos.map(|(t, _)| special(t, type_id)));
        v
    };
    let single = one("A", 0);
    let mut pair = one("A", 0);
    pair.extend(one("B", 1));
    let mut tokens = Map::new();
    for (t, i) in bos.into_iter().chain(eos) {
        tokens.insert(t.to_owned(), json!({"id": t, "ids": [i], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair,
           "special_tokens": tokens})
}

/// The tokenizer of `gguf`'s metadata (see the module's docs).
pub(super) fn convert(gguf: &Gguf) -> Result<Converted> {
    let (json, what, c) = parts(gguf)?;
    let bytes = serde_json::to_vec(&json)
        .map_err(|e| checkpoint_error("tokenizer.ggml.tokens", e.to_string()))?;
    let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
        checkpoint_error(
            what,
            format!("does not make a tokenizer with tokenizer.ggml.tokens: {e}"),
        )
    })?;
    Ok(Converted { inner, ..c })
}

/// The tokenizer.json of `gguf`'s metadata, the key to blame when `tokenizers` refuses
/// it, and the rest of what the metadata says (its tokenizer a placeholder).
fn parts(gguf: &Gguf) -> Result<(Json, &'static str, Converted)> {
    let model =
        text(gguf, "tokenizer.ggml.model")?.ok_or_else(|| missing("tokenizer.ggml.model"))?;
    if model != "gpt2" && model != "llama" {
        return Err(checkpoint_error(
            "tokenizer.ggml.model",
            format!(
                "is \"{model}\", a tokenizer this reader does not build (it builds \"gpt2\", \
                 byte-level BPE, and \"llama\", SentencePiece BPE)"
            ),
        ));
    }
    let tokens =
        strings(gguf, "tokenizer.ggml.tokens")?.ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
    let n = tokens.len();
    if n == 0 || u32::try_from(n).is_err() {
        return Err(checkpoint_error(
            "tokenizer.ggml.tokens",
            format!("has {n} tokens"),
        ));
    }
    let types = per_token(
        gguf,
        "tokenizer.ggml.token_type",
        n,
        "an integer",
        |v| match v {
            MetaValue::Int(t) => Some(*t),
            _ => None,
        },
    )?;
    let spm = model == "llama";
    // llama.cpp's defaults for a SentencePiece vocabulary without the keys.
    let default_id = |i: u32| (spm && (i as usize) < n).then_some(i);
    let bos = id(gguf, "tokenizer.ggml.bos_token_id", n)?.or(default_id(1));
    let eos = id(gguf, "tokenizer.ggml.eos_token_id", n)?.or(default_id(2));
    let unk = id(gguf, "tokenizer.ggml.unknown_token_id", n)?.or(default_id(0));
    id(gguf, "tokenizer.ggml.padding_token_id", n)?;
    let eot = id(gguf, "tokenizer.ggml.eot_token_id", n)?;
    let eom = id(gguf, "tokenizer.ggml.eom_token_id", n)?;
    let token = |i: Option<u32>| i.map(|i| tokens[i as usize]);

    let mut vocab: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, &t) in tokens.iter().enumerate() {
        vocab.entry(t).or_insert(i as u32);
    }
    let given_merges = strings(gguf, "tokenizer.ggml.merges")?;

    let (model_json, normalizer, pre_tokenizer, decoder, default_bos) = if spm {
        let merges = match &given_merges {
            Some(list) => merges_from_metadata(list)?,
            None => {
                let scores = per_token(gguf, "tokenizer.ggml.scores", n, "a number", |v| {
                    v.as_f64().map(|x| x as f32)
                })?
                .ok_or_else(|| missing("tokenizer.ggml.scores"))?;
                merges_from_scores(&tokens, &scores, &vocab)
            }
        };
        let prefix = flag(gguf, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
        let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
        let normalizer = if prefix {
            json!({"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u{2581}"}, replace]})
        } else {
            replace
        };
        let mut decoders = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if prefix {
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        let model = json!({"type": "BPE", "dropout": null, "unk_token": token(unk),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges});
        (
            model,
            normalizer,
            Json::Null,
            json!({"type": "Sequence", "decoders": decoders}),
            true,
        )
    } else {
        let pre = text(gguf, "tokenizer.ggml.pre")?.unwrap_or("default");
        let (pre_tokenizer, normalizer, ignore_merges, default_bos) = byte_level_parts(pre)?;
        let list = given_merges.ok_or_else(|| missing("tokenizer.ggml.merges"))?;
        let merges = merges_from_metadata(&list)?;
        let model = json!({"type": "BPE", "dropout": null, "unk_token": token(unk),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": ignore_merges, "vocab": vocab,
            "merges": merges});
        let decoder = json!({"type": "ByteLevel", "add_prefix_space": true,
                             "trim_offsets": true, "use_regex": true});
        (model, normalizer, pre_tokenizer, decoder, default_bos)
    };

    // The token `key` asks for (absent: `default`); an error when the key asks for one
    // the metadata does not name, none when only the default would have added it.
    let added_by = |key: &str, default: bool, i: Option<u32>| -> Result<Option<(&str, u32)>> {
        match (flag(gguf, key)?, i) {
            (Some(false), _) | (None, None) => Ok(None),
            (None, Some(i)) => Ok(default.then(|| (tokens[i as usize], i))),
            (Some(true), Some(i)) => Ok(Some((tokens[i as usize], i))),
            (Some(true), None) => Err(checkpoint_error(
                key,
                "is true, but the metadata names no such token (tokenizer.ggml.*_token_id)",
            )),
        }
    };
    let post = post_processor(
        added_by("tokenizer.ggml.add_bos_token", default_bos, bos)?,
        added_by("tokenizer.ggml.add_eos_token", false, eos)?,
    );

    // Added tokens: CONTROL and UNKNOWN tokens and the named special ones special,
    // USER_DEFINED ones not; all matched in the raw text, whole.
    let named: Vec<u32> = [bos, eos, unk, eot, eom].into_iter().flatten().collect();
    let mut added = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let ty = types.as_ref().map(|types| types[i]);
        let special =
            named.contains(&(i as u32)) || ty == Some(TYPE_CONTROL) || ty == Some(TYPE_UNKNOWN);
        if t.is_empty() || !(special || ty == Some(TYPE_USER_DEFINED)) {
            continue;
        }
        added.push(
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": special}),
        );
    }

    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": decoder,
        "model": model_json,
    });
    let what = if spm {
        "tokenizer.ggml.scores"
    } else {
        "tokenizer.ggml.merges"
    };
    let mut eos_ids = Vec::new();
    for i in [eos, eot, eom].into_iter().flatten() {
        if !eos_ids.contains(&i) {
            eos_ids.push(i);
        }
    }
    let rest = Converted {
        inner: tokenizers::Tokenizer::new(tokenizers::models::bpe::BPE::default()),
        chat_template: text(gguf, "tokenizer.chat_template")?.map(str::to_owned),
        bos_token: token(bos).map(str::to_owned),
        eos_token: token(eos).map(str::to_owned),
        eos_ids,
    };
    Ok((json, what, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gguf/tokenizer")
            .join(name)
    }

    /// The tokenizer.json built from the GGUF metadata is the fixture's tokenizer.json
    /// (which the Python `tokenizers` wrote): the same vocabulary, the same merges in the
    /// same order (for SentencePiece, derived from the scores), the same added tokens,
    /// normalizer and pre-tokenizer.
    #[test]
    fn built_tokenizer_json_is_the_checkpoints() {
        for name in ["bpe", "spm"] {
            let gguf = Gguf::open(fixture(&format!("{name}.gguf"))).unwrap();
            let (built, _, _) = parts(&gguf).unwrap();
            let text = std::fs::read_to_string(fixture(&format!("{name}.tokenizer.json")));
            let want: Json = serde_json::from_str(&text.unwrap()).unwrap();
            // Llama 3 keeps its added tokens out of the model's vocabulary; the GGUF
            // tokens array (and so the built vocabulary) has them, with the same ids.
            let mut vocab = built["model"]["vocab"].as_object().unwrap().clone();
            for a in want["added_tokens"].as_array().unwrap() {
                let content = a["content"].as_str().unwrap();
                if want["model"]["vocab"].get(content).is_none() {
                    assert_eq!(vocab.remove(content).as_ref(), Some(&a["id"]), "{name}");
                }
            }
            assert!(
                Json::Object(vocab) == want["model"]["vocab"],
                "{name}: vocab"
            );
            let merges = |v: &Json| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|m| match m {
                        Json::String(s) => s.clone(),
                        pair => format!(
                            "{} {}",
                            pair[0].as_str().unwrap(),
                            pair[1].as_str().unwrap()
                        ),
                    })
                    .collect()
            };
            let (got, expected) = (
                merges(&built["model"]["merges"]),
                merges(&want["model"]["merges"]),
            );
            assert_eq!(got.len(), expected.len(), "{name}: merges");
            for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g, w, "{name}: merge {i}");
            }
            for key in ["ignore_merges", "byte_fallback", "fuse_unk", "unk_token"] {
                assert_eq!(built["model"][key], want["model"][key], "{name}: {key}");
            }
            for key in ["added_tokens", "normalizer", "pre_tokenizer"] {
                assert_eq!(built[key], want[key], "{name}: {key}");
            }
        }
    }

    #[test]
    fn merges_from_scores_order_as_transformers() {
        // "ab" (score -1) splits one way; "abc" (score -2) two ways, ordered by the
        // lengths (longer left first); "bc" (score -1, later) after "ab".
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [-5.0, -5.0, -5.0, -1.0, -1.0, -2.0];
        let vocab: HashMap<&str, u32> = tokens.iter().zip(0..).map(|(&t, i)| (t, i)).collect();
        let merges = merges_from_scores(&tokens, &scores, &vocab);
        let want = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|&(l, r)| (l.to_owned(), r.to_owned()))
            .collect();
        assert_eq!(merges, want);
    }

    #[test]
    fn merges_split_at_the_first_space_after_the_first_byte() {
        let merges = merges_from_metadata(&["a b", "Ġ t", "  x"]).unwrap();
        assert_eq!(merges[0], ("a".to_owned(), "b".to_owned()));
        assert_eq!(merges[1], ("Ġ".to_owned(), "t".to_owned()));
        assert_eq!(merges[2], (" ".to_owned(), "x".to_owned()));
        for bad in ["ab", "a ", ""] {
            let e = merges_from_metadata(&[bad]).unwrap_err();
            assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
        }
    }
}
