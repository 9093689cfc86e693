//! Text to tokens: corpus documents, the one tokenization path of saeidx, and the
//! windows the model sees.
//!
//! [`tokenizer::TextTokenizer`] wraps a Hugging Face `tokenizer.json` and returns token
//! ids together with each token's byte span in the original text, so answers can show
//! the exact text a token came from.
#![deny(missing_docs)]

pub mod documents;
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
    /// A corpus file could not be read, or a line of it is malformed.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Read {
        /// The file.
        path: PathBuf,
        /// The line (from 1), when the problem is in one line.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}
