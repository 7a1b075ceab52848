//! Text in and out (feature `tokenizer`): the `tokenizer.json` a Hugging Face checkpoint
//! keeps beside its weights, read with Hugging Face's own `tokenizers` crate.

use std::path::Path;

use super::checkpoint_error;
use crate::error::Result;

/// A checkpoint's tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl Tokenizer {
    /// The `tokenizer.json` in `dir`, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the file when it is there
    /// but unreadable.
    pub fn beside(dir: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = dir.as_ref().join("tokenizer.json");
        if !path.exists() {
            return Ok(None);
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| checkpoint_error(path.display().to_string(), e.to_string()))?;
        Ok(Some(Tokenizer { inner }))
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
            .map_err(|e| checkpoint_error("tokenizer.json", e.to_string()))?;
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
            .map_err(|e| checkpoint_error("tokenizer.json", e.to_string()))
    }
}
