//! Sharing indexes: an index folder is self-describing (manifest, Parquet, query files,
//! labels), so sharing is moving the folder and proving it arrived intact.
//!
//! - [`hub`]: fetch an index from a Hugging Face Hub dataset repo through the normal
//!   cache (revisions, offline mode) and verify it; publish one as a folder with a
//!   dataset card, ready to upload.
//! - [`neuronpedia`]: write features and activation examples in the jsonl.gz batches
//!   that Neuronpedia imports.

use std::path::PathBuf;

mod contents;
pub mod hub;
pub mod neuronpedia;

/// Why sharing failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The Hub (or its cache) could not provide the files.
    #[error(transparent)]
    Hub(#[from] saeidx_hub::HubError),
    /// The repo (or its folder) holds no index.
    #[error(
        "{repo_id}@{revision} has no index at {folder:?} (no manifest.json there){hint}: give the folder with --path"
    )]
    NoIndex {
        /// The repo.
        repo_id: String,
        /// The revision asked for.
        revision: String,
        /// The folder looked in ("" for the root).
        folder: String,
        /// Folders of the repo that do hold a manifest, if any.
        hint: String,
    },
    /// A file the manifest names is not in the repo.
    #[error(
        "{repo_id}@{commit} is incomplete: {file} is named by its manifest but not in the repo; ask the publisher to upload the whole folder"
    )]
    Incomplete {
        /// The repo.
        repo_id: String,
        /// The commit listed.
        commit: String,
        /// The missing file.
        file: String,
    },
    /// The fetched files do not verify.
    #[error("{what} does not verify: {reason}. Nothing was used; {advice}")]
    NotVerified {
        /// What was checked.
        what: String,
        /// The first problem (a manifest, Parquet or query-file error).
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
        /// What to do.
        advice: String,
    },
    /// The index to publish or export does not verify or open.
    #[error(transparent)]
    Index(#[from] saeidx_format::verify::VerifyError),
    /// The query files could not be opened.
    #[error(transparent)]
    Query(#[from] saeidx_query::QueryError),
    /// Writing output failed.
    #[error(transparent)]
    Write(#[from] saeidx_format::atomic::AtomicWriteError),
    /// A file could not be read or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// An argument that cannot work.
    #[error("{0}")]
    Invalid(String),
}

impl saeidx_hub::HubFailure for ShareError {
    fn hub_error(&self) -> Option<&saeidx_hub::HubError> {
        match self {
            Self::Hub(error) => Some(error),
            _ => None,
        }
    }
}

impl ShareError {
    fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| ShareError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
