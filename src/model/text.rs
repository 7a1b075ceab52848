//! Text as tokens come (feature `tokenizer`): [`TextStream`], the detokenizer of
//! streaming, with stop strings.

use crate::error::Result;
use crate::load::Tokenizer;

/// Text as tokens come (the detokenizer of streaming): [`TextStream::push`] returns the
/// text that is now certain, never half a UTF-8 character (a piece whose decoding ends in
/// U+FFFD waits for the next token), and holds back text that may be the start of a stop
/// string. At a stop string the stream stops: the text before it is the last given, the
/// stop string itself is not.
#[derive(Debug)]
pub struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// The ids from `prefix` give context to the decoding of those from `read`.
    prefix: usize,
    read: usize,
    /// Decoded, not yet given (the possible start of a stop string).
    pending: String,
    /// Everything given.
    text: String,
    stops: Vec<String>,
    stopped: bool,
}

impl<'a> TextStream<'a> {
    /// A stream over `tokenizer`'s text.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        TextStream {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
            pending: String::new(),
            text: String::new(),
            stops: Vec::new(),
            stopped: false,
        }
    }

    /// Stops at any of `stops` (empty strings are ignored).
    #[must_use]
    pub fn stop_strings<S: AsRef<str>>(mut self, stops: &[S]) -> Self {
        self.stops = stops
            .iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        self
    }

    /// True once a stop string came.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// All the text given so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the next token; returns the text now certain (often empty). After a stop
    /// string, returns nothing more.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the tokenizer fails.
    pub fn push(&mut self, id: u32) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        self.ids.push(id);
        // Decoding from a little before the new ids keeps the spaces a tokenizer puts
        // between words (what transformers' and TGI's streamers do).
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(new) = now.get(before.len()..) {
                self.pending.push_str(new);
                self.prefix = self.read;
                self.read = self.ids.len();
            }
        }
        Ok(self.release(false))
    }

    /// The text held back at the end (a possible start of a stop string, or an
    /// unfinished character's replacement), once no token follows.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the tokenizer fails.
    pub fn finish(&mut self) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..])?;
        if let Some(new) = now.get(before.len()..) {
            self.pending.push_str(new);
        }
        self.read = self.ids.len();
        self.prefix = self.read;
        Ok(self.release(true))
    }

    /// Gives the pending text up to a stop string, or up to the longest end of it that
    /// starts a stop string (all of it when `all`).
    fn release(&mut self, all: bool) -> String {
        // A stop string in the given text's last characters plus the pending ones.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.text.len().saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let window = format!("{}{}", &self.text[from..], self.pending);
        let found = self
            .stops
            .iter()
            .filter_map(|s| window.find(s.as_str()))
            .min();
        if let Some(at) = found {
            // Only the pending part before the stop string is new.
            let given = self.text.len() - from;
            let out = window[given.min(at)..at].to_owned();
            self.text.push_str(&out);
            self.pending.clear();
            self.stopped = true;
            return out;
        }
        let keep = if all {
            0
        } else {
            // The longest end of the window that starts a stop string, within pending.
            (1..=self.pending.len())
                .rev()
                .filter(|&n| self.pending.is_char_boundary(self.pending.len() - n))
                .find(|&n| {
                    let end = &window[window.len() - n..];
                    self.stops.iter().any(|s| s.starts_with(end))
                })
                .unwrap_or(0)
        };
        let cut = self.pending.len() - keep;
        let out: String = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        self.text.push_str(&out);
        out
    }
}
