//! Generation as a stream of tokens: the prompt in one forward, then one token at a time
//! from the cache, chosen by a [`Sampler`], ending after `max_new` tokens or at a stop
//! id. An app shows each token as it comes, and stops by dropping the stream.

use super::{Cache, Sampler, Sampling, Transformer};
use crate::error::{Error, Result};

/// The new tokens of one generation, one forward each ([`Transformer::stream`]).
///
/// Each item is the next token, or the error that ended the stream. A stop id
/// ([`TokenStream::stop_ids`]) is yielded, then the stream ends, as transformers keeps
/// the end-of-sequence token in `generate`'s output.
#[derive(Debug)]
pub struct TokenStream<'a> {
    model: &'a Transformer,
    cache: Cache,
    sampler: Sampler,
    /// What the next forward takes: the prompt, then the last token.
    feed: Vec<u32>,
    produced: usize,
    max_new: usize,
    stop_ids: Vec<u32>,
    done: bool,
}

impl TokenStream<'_> {
    /// Ends the stream after any of `ids` (a model's end-of-sequence ids).
    #[must_use]
    pub fn stop_ids(mut self, ids: &[u32]) -> Self {
        self.stop_ids = ids.to_vec();
        self
    }

    /// The tokens generated so far.
    pub fn produced(&self) -> usize {
        self.produced
    }

    async fn next_async(&mut self) -> Option<Result<u32>> {
        if self.done || self.produced == self.max_new {
            return None;
        }
        let feed = std::mem::take(&mut self.feed);
        let next = self
            .model
            .next_token_with_async(&feed, &mut self.cache, &mut self.sampler)
            .await;
        match next {
            Ok(t) => {
                self.produced += 1;
                self.feed = vec![t];
                self.done = self.stop_ids.contains(&t);
                Some(Ok(t))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// The next token ([`Iterator::next`] for apps on an executor).
    pub async fn next_token_async(&mut self) -> Option<Result<u32>> {
        self.next_async().await
    }
}

/// Blocking; not on wasm32 (nothing may block a page's thread): use
/// [`TokenStream::next_token_async`] there.
#[cfg(not(target_arch = "wasm32"))]
impl Iterator for TokenStream<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        crate::rank::block_on(self.next_async())
    }
}

impl Transformer {
    /// A stream of up to `max_new` new tokens after `prompt`, chosen by `sampling` (see
    /// [`Sampling`]); its cache holds the prompt and the new tokens.
    ///
    /// ```no_run
    /// # fn run(model: &wgpu_tp::model::Transformer) -> wgpu_tp::Result<()> {
    /// use wgpu_tp::model::Sampling;
    /// let sampling = Sampling::default().temperature(0.7).top_k(50).seed(1);
    /// for token in model.stream(&[1, 17, 42], 32, sampling)?.stop_ids(&[2]) {
    ///     print!("{} ", token?);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Sampling::validate`]; [`Error::InvalidArgument`] for an empty prompt or more
    /// positions than the model has; the cache's allocation errors. Each item carries the
    /// errors of [`Transformer::next_token_with_async`].
    pub fn stream(
        &self,
        prompt: &[u32],
        max_new: usize,
        sampling: Sampling,
    ) -> Result<TokenStream<'_>> {
        let op = "transformer.stream";
        let sampler = Sampler::new(sampling)?;
        if prompt.is_empty() {
            return Err(Error::invalid(op, "an empty prompt"));
        }
        let most = self.config.max_positions;
        // The last new token is returned, never fed back: it takes no position.
        let positions = prompt
            .len()
            .checked_add(max_new.saturating_sub(1))
            .filter(|&n| n <= most)
            .ok_or_else(|| {
                Error::invalid(
                    op,
                    format!(
                        "{} prompt tokens and {max_new} new ones: more positions than the \
                         model's {most}",
                        prompt.len()
                    ),
                )
            })?;
        Ok(TokenStream {
            model: self,
            cache: self.new_cache(positions)?,
            sampler,
            feed: prompt.to_vec(),
            produced: 0,
            max_new,
            stop_ids: Vec::new(),
            done: false,
        })
    }

    /// The tokens of [`Transformer::stream`], collected: up to `max_new`, ending with a
    /// stop id when one came.
    ///
    /// Blocking; not on wasm32 (nothing may block a page's thread): await
    /// [`TokenStream::next_token_async`] there.
    ///
    /// # Errors
    /// As [`Transformer::stream`] and its items.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_with(
        &self,
        prompt: &[u32],
        max_new: usize,
        sampling: Sampling,
        stop_ids: &[u32],
    ) -> Result<Vec<u32>> {
        self.stream(prompt, max_new, sampling)?
            .stop_ids(stop_ids)
            .collect()
    }
}
