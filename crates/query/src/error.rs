//! The query layer's errors: each says what is wrong and what to do.

use std::path::PathBuf;

/// A failure to build, open or query an index.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The index's Parquet data or manifest failed verification.
    #[error(transparent)]
    Index(#[from] saeidx_format::verify::VerifyError),
    /// The index's `segments.json`, or a segment it names, is wrong.
    #[error(transparent)]
    Segments(#[from] saeidx_format::segments::SegmentsError),
    /// The index has no query files yet.
    #[error(
        "{dir} has no query files (no {dir}/query/manifest.json): run `saeidx query build {dir}` once"
    )]
    NotBuilt {
        /// The index folder.
        dir: PathBuf,
    },
    /// A query file is damaged, truncated or does not belong to this index.
    #[error(
        "{path} is damaged or does not belong to this index: {reason} (rebuild it with `saeidx query build`, or fetch the index again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The query files were written by a saeidx with another query format.
    #[error(
        "{path} has query format version {found}; this saeidx reads version {expected} (rebuild with `saeidx query build`)"
    )]
    Version {
        /// The query manifest.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this saeidx reads.
        expected: u32,
    },
    /// The logit effects file is damaged.
    #[error(transparent)]
    LogitEffects(#[from] saeidx_format::logits::LogitEffectsError),
    /// The logit effects file belongs to another SAE or model than the index's.
    #[error(
        "{path} was computed for another {what} than this index's: rebuild it with `saeidx query logits INDEX --rebuild`"
    )]
    StaleLogitEffects {
        /// The file.
        path: PathBuf,
        /// `SAE` or `model`.
        what: &'static str,
    },
    /// A feature id past the SAE's width.
    #[error("feature {feature} does not exist: this index's SAE has {d_sae} features (0..{d_sae})")]
    FeatureOutOfRange {
        /// The id asked for.
        feature: u32,
        /// The SAE's width.
        d_sae: usize,
    },
    /// A document that is not in the index.
    #[error("document {doc} is not in this index (it holds {documents} documents{hint})")]
    UnknownDocument {
        /// The document asked for (number or id).
        doc: String,
        /// Documents in the index.
        documents: u64,
        /// How to find one.
        hint: &'static str,
    },
    /// A token range outside the document.
    #[error("tokens {start}..{end} are outside document {doc}, which has {tokens} tokens")]
    TokenRange {
        /// The document number.
        doc: u32,
        /// Requested start.
        start: u32,
        /// Requested end.
        end: u32,
        /// The document's tokens.
        tokens: u32,
    },
    /// A token range whose start is past its end.
    #[error("tokens {start}..{end}: the range is reversed (write START..END with START <= END)")]
    ReversedRange {
        /// Requested start.
        start: u32,
        /// Requested end.
        end: u32,
    },
    /// An option that applies to documents of the index, asked of a live text.
    #[error("{0} selects positions of an indexed document, not of a text")]
    NotForTexts(&'static str),
    /// A question asks for more than saeidx answers at once ([`crate::limits`]).
    #[error("{asked} {what} is more than one question may ask for (at most {max}): ask for fewer")]
    Limit {
        /// What was asked for.
        what: &'static str,
        /// How many.
        asked: String,
        /// The limit.
        max: u64,
    },
    /// A query file changed on disk while the index was open (truncated, or rewritten in
    /// place instead of replaced by an atomic rename): answers computed from it are
    /// discarded.
    #[error(
        "{path} changed on disk while the index was open ({reason}); the answer was discarded: open the index again (publish indexes with `saeidx run`, `merge` or `fetch`, which replace folders atomically, never by copying over a served index)"
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// Another process is writing the index.
    #[error(transparent)]
    Locked(#[from] saeidx_format::lock::LockError),
    /// A filter that does not parse, or does not fit the index's columns.
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
    /// A contrast that cannot be computed as asked.
    #[error("invalid contrast: {0}")]
    Contrast(String),
    /// A token pattern that cannot be used.
    #[error(
        "invalid token pattern {pattern:?}: {reason} (give a token's text, its id, or a regular expression over token texts)"
    )]
    TokenPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// The Parquet documents table could not be read.
    #[error(transparent)]
    Documents(#[from] saeidx_format::metadata::ReadDocumentsError),
    /// A person asked to accept a draft where there is none.
    #[error(
        "feature {feature} has no draft to accept (no label, or one a person wrote or reviewed): draft one with `saeidx labels draft`, or set the label"
    )]
    NoDraft {
        /// The feature.
        feature: u32,
    },
    /// The feature registry is unusable.
    #[error("feature registry {path}: {reason}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Writing an Arrow file failed.
    #[error("writing {path}: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// An activation value with more significant bits than the query files store.
    #[error(
        "activation value {value} has more than 11 significant bits: query files store the f16-precision values saeidx writes to the Parquet (rewrite the index with this saeidx)"
    )]
    Precision {
        /// The value.
        value: f32,
    },
    /// An index too large for this query format.
    #[error("{what} exceeds this query format's limit of {limit}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

impl QueryError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| QueryError::Io { path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        QueryError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<saeidx_format::atomic::AtomicWriteError> for QueryError {
    fn from(error: saeidx_format::atomic::AtomicWriteError) -> Self {
        QueryError::Io {
            path: error.path,
            source: error.source,
        }
    }
}
