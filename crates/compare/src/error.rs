//! Why a comparison could not be made.

use std::path::PathBuf;

use saeidx_query::QueryError;

/// Why a comparison or a decoder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// An index could not be read.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The SAE file an index records was not found where it was recorded.
    #[error(
        "the SAE of {index} ({format}, {d_sae} features, SHA-256 {sha256}) was not found: \
         {tried}. Pass the folder that holds it (--sae-a / --sae-b, or SAEIDX_SAE)"
    )]
    SaeNotFound {
        /// The index folder.
        index: PathBuf,
        /// The SAE's format, as recorded.
        format: String,
        /// Its width, as recorded.
        d_sae: usize,
        /// Its recorded SHA-256.
        sha256: String,
        /// Every place tried, and why it did not do.
        tried: String,
    },
    /// An SAE file is not what its format says.
    #[error("{path}: {reason}")]
    BadSae {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The two SAEs do not read the same activations (their input widths differ).
    #[error(
        "the SAEs read activations of different widths ({a} and {b}): decoder directions \
         of different spaces cannot be compared"
    )]
    WidthMismatch {
        /// Input width of A's SAE.
        a: usize,
        /// Input width of B's SAE.
        b: usize,
    },
    /// The indexes do not hold the same tokens where that was required.
    #[error("{0}")]
    NotSameTokens(String),
    /// A request was out of range.
    #[error("{0}")]
    Request(String),
    /// Writing the Parquet output failed.
    #[error("writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl CompareError {
    pub(crate) fn bad(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::BadSae {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl From<saeidx_tensors::TensorError> for CompareError {
    fn from(error: saeidx_tensors::TensorError) -> Self {
        match error {
            saeidx_tensors::TensorError::Io { path, source } => Self::Io { path, source },
            saeidx_tensors::TensorError::Invalid { path, reason } => Self::BadSae { path, reason },
        }
    }
}
