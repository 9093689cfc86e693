//! Corpus documents → tokens → windows → batches → the model → hook activations, with
//! each kept token's document and position.
//!
//! This is the front half of both the index job and SAE training:
//!
//! 1. [`TokenizedDocument`]: a document's token ids and which are special tokens;
//! 2. [`Batcher`]: cuts documents into windows ([`WindowPolicy`]) and groups windows
//!    into batches of at most a token budget (padding included);
//! 3. [`extract`]: runs a batch through the model to the hook and returns the
//!    activations of the tokens each window keeps, minus the excluded positions
//!    ([`Exclusions`]: attention-sink window starts, special tokens).
#![deny(missing_docs)]

use std::collections::{BTreeSet, VecDeque};

use mlx_rs::Array;
use saeidx_corpus::{
    tokenizer::TextTokenizer,
    window::{Window, WindowPolicy},
};
use saeidx_model::{ModelError, batch::PaddedBatch, hook::HookPoint, transformer::Transformer};

/// A document's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedDocument {
    /// The document's index in its corpus (its order of appearance).
    pub index: usize,
    /// Token ids.
    pub ids: Vec<u32>,
    /// Whether each token is a special token.
    pub special: Vec<bool>,
}

impl TokenizedDocument {
    /// Tokenizes `text` as document `index`.
    pub fn new(
        index: usize,
        text: &str,
        tokenizer: &TextTokenizer,
    ) -> Result<Self, saeidx_corpus::CorpusError> {
        let tokens = tokenizer.encode(text)?;
        Ok(Self {
            index,
            ids: tokens.ids,
            special: tokens.special,
        })
    }
}

/// One window of one document, ready to batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowJob {
    /// The document's index.
    pub document: usize,
    /// The window's token ids.
    pub ids: Vec<u32>,
    /// Whether each token is special.
    pub special: Vec<bool>,
    /// Where the window sits in its document.
    pub window: Window,
}

/// Groups the windows of documents into batches whose padded size stays within a token
/// budget. Windows keep their order (documents in order, each document's windows in
/// order), so the output order is deterministic.
pub struct Batcher {
    policy: WindowPolicy,
    batch_tokens: usize,
    pending: VecDeque<WindowJob>,
}

impl Batcher {
    /// Batches of at most `batch_tokens` tokens counted as rows × longest row (at least
    /// one window per batch).
    pub fn new(policy: WindowPolicy, batch_tokens: usize) -> Self {
        Self {
            policy,
            batch_tokens: batch_tokens.max(1),
            pending: VecDeque::new(),
        }
    }

    /// Adds a document's windows to the queue.
    pub fn push(&mut self, document: &TokenizedDocument) {
        for window in self.policy.windows(document.ids.len()) {
            self.pending.push_back(WindowJob {
                document: document.index,
                ids: document.ids[window.tokens.clone()].to_vec(),
                special: document.special[window.tokens.clone()].to_vec(),
                window,
            });
        }
    }

    /// Queued tokens (unpadded).
    pub fn queued_tokens(&self) -> usize {
        self.pending.iter().map(|job| job.ids.len()).sum()
    }

    /// The next full batch, or `None` while the queue holds less than a full batch.
    pub fn next_full(&mut self) -> Option<Vec<WindowJob>> {
        self.take_batch(false)
    }

    /// The next batch even if not full (to drain the queue at the end).
    pub fn next_any(&mut self) -> Option<Vec<WindowJob>> {
        self.take_batch(true)
    }

    fn take_batch(&mut self, partial: bool) -> Option<Vec<WindowJob>> {
        let mut rows = 0;
        let mut longest = 0;
        for job in &self.pending {
            let wider = longest.max(job.ids.len());
            if rows > 0 && (rows + 1) * wider > self.batch_tokens {
                return Some(self.pending.drain(..rows).collect());
            }
            rows += 1;
            longest = wider;
        }
        if partial && rows > 0 {
            Some(self.pending.drain(..).collect())
        } else {
            None
        }
    }
}

/// Token positions left out of the activations returned by [`extract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exclusions {
    /// The first position of every window (an attention sink: ~100× the usual norm).
    pub window_start: bool,
    /// Special tokens (BOS, chat markers).
    pub special_tokens: bool,
}

/// The activations of a batch's kept tokens, row-major `[tokens, width]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// Each row's document index.
    pub document: Vec<u32>,
    /// Each row's token position in its document.
    pub position: Vec<u32>,
    /// Each row's token id.
    pub token: Vec<u32>,
    /// Activation values, `width` per row.
    pub values: Vec<f32>,
    /// Activation width.
    pub width: usize,
}

/// Runs `batch` through `model` to `hook` and returns the kept tokens' activations, in
/// batch order (window by window, position by position).
pub fn extract(
    model: &Transformer,
    hook: HookPoint,
    batch: &[WindowJob],
    exclusions: Exclusions,
) -> Result<Extracted, ModelError> {
    let rows: Vec<&[u32]> = batch.iter().map(|job| job.ids.as_slice()).collect();
    let padded = PaddedBatch::new(&rows)?;
    let activations = model.forward(&padded.tokens, &BTreeSet::from([hook]))?;
    let activations: &Array = &activations[&hook];
    let width = activations.shape()[2] as usize;
    let per_row = padded.unpad(activations)?;
    let mut out = Extracted {
        width,
        ..Extracted::default()
    };
    for (job, values) in batch.iter().zip(per_row) {
        let first_kept = job.window.first_kept();
        for offset in first_kept..job.ids.len() {
            let excluded = (exclusions.window_start && offset == 0)
                || (exclusions.special_tokens && job.special[offset]);
            if excluded {
                continue;
            }
            out.document.push(job.document as u32);
            out.position.push((job.window.tokens.start + offset) as u32);
            out.token.push(job.ids[offset]);
            out.values
                .extend_from_slice(&values[offset * width..(offset + 1) * width]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(index: usize, len: usize) -> TokenizedDocument {
        TokenizedDocument {
            index,
            ids: (0..len as u32).collect(),
            special: vec![false; len],
        }
    }

    #[test]
    fn batches_respect_the_token_budget_and_order() {
        let mut batcher = Batcher::new(WindowPolicy::new(4, 1).unwrap(), 8);
        batcher.push(&document(0, 3));
        batcher.push(&document(1, 7));
        // Windows: doc0 [0..3], doc1 [0..4], [3..7].
        assert_eq!(batcher.queued_tokens(), 11);
        let first = batcher.next_full().unwrap();
        assert_eq!(first.len(), 2); // 2 rows × 4 = 8 tokens
        assert_eq!((first[0].document, first[1].document), (0, 1));
        assert!(batcher.next_full().is_none());
        let last = batcher.next_any().unwrap();
        assert_eq!(last[0].window.tokens, 3..7);
        assert_eq!(last[0].window.first_kept(), 1);
        assert!(batcher.next_any().is_none());
    }
}
