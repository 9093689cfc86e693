//! Text to tokens: the one tokenization path of saeidx.
//!
//! [`tokenizer::TextTokenizer`] wraps a Hugging Face `tokenizer.json` and returns token
//! ids together with each token's byte span in the original text, so answers can show
//! the exact text a token came from.
#![deny(missing_docs)]

pub mod tokenizer;
pub mod window;

use std::path::PathBuf;

/// Why text could not be read or tokenized.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The tokenizer file could not be loaded.
    #[error("cannot load tokenizer {path}: {reason}")]
    Tokenizer {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Encoding a text failed.
    #[error("cannot tokenize text: {0}")]
    Encode(String),
}
