//! The batch stage: a corpus runs once through the model to the hook and through the
//! SAE, and every token's sparse feature activations land in an index folder.
//!
//! ```text
//! corpus ─► parts ─► tokens (rayon) ─► batches ─► model to hook ─► SAE ─► rows ─► Parquet
//!          [reader thread]             [compute thread: MLX]                [writer thread]
//! ```
//!
//! - [`parts`]: documents are numbered and grouped into parts by text size; parts are
//!   the unit of work, of resumption and of sharding (`--shard i/n`).
//! - [`workdir`]: a run writes into `.NAME.partial/` beside the destination; each part's
//!   files are written under temporary names, flushed and renamed, then recorded. A
//!   killed run resumes from the recorded parts. The finished folder replaces the
//!   destination in one atomic rename.
//! - [`pipeline`]: the three threads above, joined by bounded channels (memory does not
//!   grow with the corpus).
//! - [`logits`]: the end of a run: each feature's logit effects beside the query files.
//! - [`merge`]: shard outputs published together as the segments of one index.
//! - [`compact`]: adjacent segments merged into one (all, or by a tiered policy), in
//!   bounded memory, document numbers kept.
//! - [`append`]: incremental runs: only new and changed documents go through the
//!   model, into a new segment; removed and replaced ones are deleted.
//! - [`job`]: the declarative job file (`pipelines/*.toml`).
#![deny(missing_docs)]

pub mod append;
pub mod compact;
pub mod job;
pub mod logits;
pub mod merge;
pub mod parts;
pub mod pipeline;
pub mod workdir;

use std::path::PathBuf;

/// Why indexing, merging or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] saeidx_corpus::CorpusError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] saeidx_model::ModelError),
    /// The SAE failed.
    #[error(transparent)]
    Sae(#[from] saeidx_sae::SaeError),
    /// A table file could not be written.
    #[error(transparent)]
    Table(#[from] saeidx_format::tables::TableError),
    /// Output could not be published.
    #[error(transparent)]
    Write(#[from] saeidx_format::atomic::AtomicWriteError),
    /// The manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] saeidx_format::manifest::ManifestError),
    /// An index failed verification.
    #[error(transparent)]
    Verify(#[from] saeidx_format::verify::VerifyError),
    /// The index's segment set is wrong.
    #[error(transparent)]
    Segments(#[from] saeidx_format::segments::SegmentsError),
    /// The query files could not be built.
    #[error(transparent)]
    Query(#[from] saeidx_query::QueryError),
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A corpus source on the Hub could not be resolved.
    #[error("job file {path}: {source}")]
    JobSource {
        /// The job file.
        path: PathBuf,
        /// Why the Hub and its cache could not provide the corpus.
        #[source]
        source: saeidx_hub::HubError,
    },
    /// The job file is wrong.
    #[error("job file {path}: {reason}")]
    Job {
        /// The job file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Existing output belongs to a different job.
    #[error(
        "{path} holds output of a different job ({reason}); remove it or choose another output folder"
    )]
    OtherJob {
        /// The folder.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The job's window rule is invalid.
    #[error("invalid window rule ([run] window_length, window_overlap): {0}")]
    Window(#[source] saeidx_corpus::window::WindowError),
    /// The corpus yielded no document, so there is nothing to index.
    #[error(
        "the corpus has no documents to index ({0}); check the job's [corpus] sources (and max_documents), nothing was published"
    )]
    EmptyCorpus(String),
    /// Another process is writing the same output.
    #[error(transparent)]
    Locked(#[from] saeidx_format::lock::LockError),
    /// Shards cannot be merged.
    #[error("cannot merge: {0}")]
    Merge(String),
    /// An index failed verification.
    #[error("{path} failed verification: {reason}")]
    Corrupt {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pipeline thread stopped unexpectedly.
    #[error("the {0} thread stopped unexpectedly")]
    Thread(&'static str),
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
        let path = path.into();
        move |source| IndexError::Io { path, source }
    }
}
