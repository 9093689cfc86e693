//! Text to tokens: corpus documents, the one tokenization path of saeidx, and the
//! windows the model sees.
//!
//! [`sources::CorpusSpec`] names a corpus (plain-text, JSONL and Parquet files or folders
//! of them) and [`sources::CorpusReader`] reads its documents in one deterministic order
//! with stable ids. [`tokenizer::TextTokenizer`] wraps a Hugging Face `tokenizer.json` and
//! returns token ids together with each token's byte span in the original text, so
//! answers can show the exact text a token came from.
#![deny(missing_docs)]

pub mod documents;
pub mod sources;
pub mod tokenizer;
pub mod window;

use std::path::PathBuf;

pub use documents::Document;
pub use sources::{
    BadRecord, BadRecordPolicy, CorpusFile, CorpusReader, CorpusSpec, JsonlDocuments, JsonlFields,
    MetadataSpec, RecordLocation, SkippedRecords, SourceFormat, SourceSpec,
};

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
    /// A corpus file could not be read (an I/O or decoding failure, not one bad record).
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Read {
        /// The file.
        path: PathBuf,
        /// The line (from 1), when the problem is in one line.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The corpus spec itself is unusable (no sources, a missing path, an unknown
    /// extension, an unreadable folder); the reason says what to change.
    #[error("corpus source {}: {reason}", path.display())]
    Source {
        /// The path as the spec names it (or the file inside a folder).
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A Parquet file lacks the text column.
    #[error(
        "{} has no column {column:?} (its columns: {}); set text_field to the column that holds the text",
        path.display(),
        if columns.is_empty() { "none".to_string() } else { columns.join(", ") }
    )]
    MissingColumn {
        /// The Parquet file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The file's top-level columns, in schema order.
        columns: Vec<String>,
    },
    /// The metadata declaration cannot be used (a bad name, a field in no record, types
    /// that cannot be inferred); the reason says what to change.
    #[error("[corpus] metadata: {reason}")]
    Metadata {
        /// What is wrong and what to do.
        reason: String,
    },
    /// One record is unusable and the policy is [`BadRecordPolicy::Stop`].
    #[error("{0}")]
    BadRecord(Box<BadRecord>),
}
