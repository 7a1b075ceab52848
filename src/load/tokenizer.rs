//! Text in and out (feature `tokenizer`): the `tokenizer.json` a Hugging Face checkpoint
//! keeps beside its weights, read with Hugging Face's own `tokenizers` crate; the chat
//! template and special tokens of its `tokenizer_config.json` (rendered with minijinja);
//! and the end-of-sequence ids of `generation_config.json` (else `config.json`). Or the
//! tokenizer a GGUF file's metadata describes ([`Tokenizer::from_gguf`]). On wasm32 (no
//! file system) the same files come as bytes the page fetched ([`Tokenizer::from_bytes`]).

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use serde_json::Value as Json;

use super::checkpoint_error;
use super::gguf::Gguf;
use crate::error::{Error, Result};

/// A checkpoint's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `tokenizer_config.json`'s `chat_template`, when there is one.
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    /// Where it was read from, for errors: `tokenizer.json` or `GGUF tokenizer metadata`.
    source: &'static str,
}

/// A JSON file of `dir`, or `None` when it is not there.
#[cfg(not(target_arch = "wasm32"))]
fn read_json(dir: &Path, name: &str) -> Result<Option<Json>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let what = path.display().to_string();
    let text =
        std::fs::read_to_string(&path).map_err(|e| checkpoint_error(&what, e.to_string()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| checkpoint_error(what, e.to_string()))
}

/// A special token of `tokenizer_config.json`: a string, or an added token's
/// `{"content": ...}`.
fn token_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The end-of-sequence ids of `dir` (see [`Tokenizer::eos_token_ids`]).
#[cfg(not(target_arch = "wasm32"))]
fn eos_token_ids(dir: impl AsRef<Path>) -> Result<Vec<u32>> {
    let dir = dir.as_ref();
    eos_ids_of(|name| read_json(dir, name))
}

/// The end-of-sequence ids of the JSON files `read` gives by name: `eos_token_id` of
/// `generation_config.json`, else of `config.json`.
fn eos_ids_of(mut read: impl FnMut(&str) -> Result<Option<Json>>) -> Result<Vec<u32>> {
    for name in ["generation_config.json", "config.json"] {
        let Some(json) = read(name)? else {
            continue;
        };
        let bad = || checkpoint_error(name, "eos_token_id: not an id or a list of ids");
        let id = |v: &Json| {
            v.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(bad)
        };
        match json.get("eos_token_id") {
            None | Some(Json::Null) => continue,
            Some(Json::Array(list)) => return list.iter().map(id).collect(),
            Some(v) => return Ok(vec![id(v)?]),
        }
    }
    Ok(Vec::new())
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl Tokenizer {
    /// The `tokenizer.json` in `dir`, or `None` when there is none; with the chat
    /// template and special tokens of `tokenizer_config.json` and the end-of-sequence ids
    /// ([`Tokenizer::eos_token_ids`]) when those files are there.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the file when one is there
    /// but unreadable.
    ///
    /// Not on wasm32 (no file system in a browser): use [`Tokenizer::from_bytes`] there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn beside(dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Ok(None);
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| checkpoint_error(path.display().to_string(), e.to_string()))?;
        let config = read_json(dir, "tokenizer_config.json")?.unwrap_or(Json::Null);
        Self::with_config(inner, &config, eos_token_ids(dir)?).map(Some)
    }

    /// The tokenizer of the files a checkpoint keeps beside its weights, given as bytes
    /// (what a page fetched: wasm32 has no file system; natively too), each by its file
    /// name: `tokenizer.json` (required), and when the app has them
    /// `tokenizer_config.json`, `generation_config.json` and `config.json`, read as
    /// `Tokenizer::beside` (not on wasm32) reads them from a folder.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the file: no
    /// `tokenizer.json`, or a file that does not parse.
    pub fn from_bytes(files: &[(&str, &[u8])]) -> Result<Self> {
        let get = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
        let json = |name: &str| -> Result<Option<Json>> {
            get(name)
                .map(|b| {
                    serde_json::from_slice(b).map_err(|e| checkpoint_error(name, e.to_string()))
                })
                .transpose()
        };
        let bytes = get("tokenizer.json")
            .ok_or_else(|| checkpoint_error("tokenizer.json", "was not given"))?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| checkpoint_error("tokenizer.json", e.to_string()))?;
        let config = json("tokenizer_config.json")?.unwrap_or(Json::Null);
        Self::with_config(inner, &config, eos_ids_of(json)?)
    }

    /// `inner` with the chat template and special tokens of `config` (the parsed
    /// `tokenizer_config.json`, or null) and the end-of-sequence ids `eos_ids`.
    fn with_config(inner: tokenizers::Tokenizer, config: &Json, eos_ids: Vec<u32>) -> Result<Self> {
        let chat_template = match config.get("chat_template") {
            None | Some(Json::Null) => None,
            Some(Json::String(t)) => Some(t.clone()),
            // A list of named templates: the one named "default".
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str)
                .map(str::to_owned),
            Some(_) => {
                return Err(checkpoint_error(
                    "tokenizer_config.json",
                    "chat_template: not a string or a list of named templates",
                ))
            }
        };
        Ok(Tokenizer {
            inner,
            chat_template,
            bos_token: config.get("bos_token").and_then(token_text),
            eos_token: config.get("eos_token").and_then(token_text),
            eos_ids,
            source: "tokenizer.json",
        })
    }

    /// The tokenizer described by a GGUF file's metadata (`tokenizer.ggml.*`, as llama.cpp
    /// writes it), built as the checkpoint's `tokenizer.json` would build it: the same
    /// ids for the same text. With the chat template of `tokenizer.chat_template`, the
    /// bos and eos tokens of `tokenizer.ggml.bos_token_id` / `eos_token_id`, and the
    /// end-of-sequence ids `eos_token_id`, `eot_token_id`, `eom_token_id` (those present).
    ///
    /// `tokenizer.ggml.model` `gpt2` is byte-level BPE, its pre-tokenizer chosen by
    /// `tokenizer.ggml.pre`: `gpt2`, `gpt-2`, `phi-2` (GPT-2), `llama3`, `llama-v3`,
    /// `llama-bpe` (Llama 3), `qwen2`, `deepseek-r1-qwen` (Qwen2), `smollm`, `starcoder`
    /// (single digits, then GPT-2's), `default` or none (llama.cpp's fallback regexes).
    /// `llama` is SentencePiece BPE with byte fallback (Llama 2, Mistral, TinyLlama), its
    /// merges derived from `tokenizer.ggml.scores` as transformers' Llama converter
    /// derives them (or read from `tokenizer.ggml.merges` when the file has them).
    /// CONTROL and UNKNOWN tokens and the bos, eos and unknown tokens are special tokens,
    /// matched whole in the text and skipped when decoding; USER_DEFINED tokens are
    /// matched whole and kept. bos / eos are added as `tokenizer.ggml.add_bos_token` /
    /// `add_eos_token` say (absent: bos for `llama` and Llama 3, as llama.cpp does, when
    /// the metadata names one).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the key: no `tokenizer.ggml.model` or one other than
    /// `gpt2` and `llama` (`bert`, `t5`, `rwkv`, ...), an unknown `tokenizer.ggml.pre`, no
    /// tokens, no merges for `gpt2` (no scores for `llama`), a malformed merge, an array
    /// whose length is not the vocabulary's, a special token id out of range, a value of
    /// the wrong type.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let c = super::gguf_tokenizer::convert(gguf)?;
        Ok(Tokenizer {
            inner: c.inner,
            chat_template: c.chat_template,
            bos_token: c.bos_token,
            eos_token: c.eos_token,
            eos_ids: c.eos_ids,
            source: "GGUF tokenizer metadata",
        })
    }

    /// The end-of-sequence ids of the folder (or GGUF file) it was read from.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The end-of-sequence ids of a checkpoint folder `dir`: `eos_token_id` (an integer
    /// or a list) of `generation_config.json`, else of `config.json`; empty when neither
    /// says.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the file when it is
    /// unreadable or its `eos_token_id` is not an id or a list of ids.
    ///
    /// Not on wasm32 (no file system in a browser).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn eos_token_ids(dir: impl AsRef<Path>) -> Result<Vec<u32>> {
        eos_token_ids(dir)
    }

    /// The chat template, when `tokenizer_config.json` (or the GGUF metadata) has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The chat template rendered for `messages`, (role, content) pairs, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`: Jinja
    /// with `trim_blocks` and `lstrip_blocks`, the variables `messages`, `bos_token`,
    /// `eos_token`, `add_generation_prompt`, the function `raise_exception` and Python's
    /// string methods.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a chat template; [`Error::Checkpoint`] when the
    /// template does not parse or fails (its `raise_exception` included).
    pub fn apply_chat_template(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            Error::invalid(
                "tokenizer.apply_chat_template",
                "the tokenizer has no chat_template (tokenizer_config.json)",
            )
        })?;
        let what = if self.source == "tokenizer.json" {
            "tokenizer_config.json chat_template"
        } else {
            "tokenizer.chat_template"
        };
        let fail = |e: minijinja::Error| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            checkpoint_error(what, message)
        };
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(fail)?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<minijinja::Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|&(role, content)| {
                minijinja::Value::from_pairs([("role", role), ("content", content)])
            })
            .collect();
        let text = |t: &Option<String>| minijinja::Value::from(t.clone().unwrap_or_default());
        let context = minijinja::Value::from_pairs([
            ("messages", minijinja::Value::from(messages)),
            ("bos_token", text(&self.bos_token)),
            ("eos_token", text(&self.eos_token)),
            (
                "add_generation_prompt",
                minijinja::Value::from(add_generation_prompt),
            ),
        ]);
        env.render_str(template, context).map_err(fail)
    }

    /// The token ids of the chat template rendered for `messages`, encoded without
    /// adding special tokens (the template writes them), as transformers'
    /// `apply_chat_template(messages, tokenize=True, ...)`.
    ///
    /// # Errors
    /// As [`Tokenizer::apply_chat_template`] and the encoding.
    pub fn encode_chat(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        let e = self
            .inner
            .encode(text, false)
            .map_err(|e| checkpoint_error(self.source, e.to_string()))?;
        Ok(e.get_ids().to_vec())
    }

    /// The token ids of `text`, with the special tokens the tokenizer's post-processor adds
    /// (Llama's BOS), as `tokenizer(text)` gives them in transformers.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e = self
            .inner
            .encode(text, true)
            .map_err(|e| checkpoint_error(self.source, e.to_string()))?;
        Ok(e.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens skipped).
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the tokenizer fails (an id
    /// it does not know, ...).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| checkpoint_error(self.source, e.to_string()))
    }
}
