//! Why live analysis could not load or run.

use std::path::PathBuf;

/// Why the index's model and SAE could not be loaded for live texts, or a text not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The model could not be found, loaded or run.
    #[error(transparent)]
    Model(#[from] saeidx_model::ModelError),
    /// The SAE could not be loaded or fitted to the model.
    #[error(transparent)]
    Sae(#[from] saeidx_sae::SaeError),
    /// The text could not be tokenized.
    #[error(transparent)]
    Corpus(#[from] saeidx_corpus::CorpusError),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The model found is not the one the index was built with.
    #[error(
        "the {what}'s {detail}: live answers would not be comparable with the index (pass the {what} the index was built with)"
    )]
    Mismatch {
        /// `model` or `SAE`.
        what: &'static str,
        /// What differs.
        detail: &'static str,
    },
    /// The index's SAE is nowhere to be found (the message names every place tried).
    #[error("{0}")]
    SaeNotFound(String),
    /// The manifest's window settings are unusable.
    #[error("the index's window settings: {0}")]
    Window(#[from] saeidx_corpus::window::WindowError),
}

impl LiveError {
    /// An I/O failure on `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
