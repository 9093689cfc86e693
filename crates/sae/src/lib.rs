//! Sparse autoencoders (SAEs) for saeidx.
//!
//! - [`formats`]: the SAE files researchers bring (mlxterp, SAELens, sparsify, Gemma
//!   Scope), local or from the Hub, and fitting them to a model;
//! - [`logits`]: each feature's top and bottom output tokens through the model's
//!   unembedding (logit effects);
//! - [`releases`]: published SAEs by SAELens release id;
//! - [`sae`]: one SAE in a format-independent form, and its per-token encoding into
//!   sparse `(feature, value)` codes;
//! - [`train`]: training a TopK SAE on activations streamed from a model over a corpus.
#![deny(missing_docs)]

pub mod formats;
pub mod logits;
pub mod releases;
pub mod sae;
pub mod train;

use std::path::PathBuf;

/// Why an SAE could not be loaded, checked, trained or run; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The SAE's files are inconsistent or malformed.
    #[error("invalid SAE: {0}")]
    Invalid(String),
    /// The SAE is valid but of a kind saeidx does not run.
    #[error("unsupported SAE: {0}")]
    Unsupported(String),
    /// Activations of the wrong width.
    #[error(
        "the SAE reads activations of width {expected}, got width {got}: it belongs to another model or hook"
    )]
    WidthMismatch {
        /// The SAE's input width.
        expected: usize,
        /// The activations' width.
        got: usize,
    },
    /// The SAE was trained on another model or hook than the one it is used with.
    #[error("{0} (to use it anyway, set `allow_mismatch = true` in the job's [sae] table)")]
    Mismatch(String),
    /// Publishing output failed.
    #[error(transparent)]
    Write(#[from] saeidx_format::atomic::AtomicWriteError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] saeidx_model::ModelError),
    /// The Hugging Face Hub and its cache could not provide the SAE.
    #[error(transparent)]
    Hub(#[from] saeidx_hub::HubError),
    /// Reading or tokenizing the corpus failed.
    #[error(transparent)]
    Corpus(#[from] saeidx_corpus::CorpusError),
    /// MLX failed while computing (for example, out of memory: lower the batch size).
    #[error("MLX computation failed: {0}")]
    Compute(#[from] mlx_rs::error::Exception),
}

impl From<saeidx_tensors::TensorError> for SaeError {
    fn from(error: saeidx_tensors::TensorError) -> Self {
        match error {
            saeidx_tensors::TensorError::Io { path, source } => Self::Io { path, source },
            invalid @ saeidx_tensors::TensorError::Invalid { .. } => {
                Self::Invalid(invalid.to_string())
            }
        }
    }
}

impl saeidx_hub::HubFailure for SaeError {
    fn hub_error(&self) -> Option<&saeidx_hub::HubError> {
        match self {
            Self::Hub(error) => Some(error),
            Self::Model(error) => saeidx_hub::HubFailure::hub_error(error),
            _ => None,
        }
    }
}
