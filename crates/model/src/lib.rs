//! Language models for saeidx: find them, load them, check them, run them to a hook.
//!
//! - [`files`]: resolve a model from a local folder or a Hugging Face repo (offline-first
//!   through `saeidx-hub`: `HF_HOME`, `HF_TOKEN`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`),
//!   recording the commit;
//! - [`config`]: `config.json`, including MLX's `quantization` entry;
//! - [`families`]: each supported family (Llama, Mistral, GPT-2, GPT-NeoX/Pythia,
//!   Gemma 2 and 3, Qwen 2 and 3, Phi-3, OLMo 2) reads its config into an
//!   [`architecture::Architecture`] and places its published tensors;
//! - [`checkpoint`]: load the safetensors weights (Hugging Face or MLX layout) and check
//!   every parameter against the architecture;
//! - [`transformer`]: the forward pass of every family up to the deepest hook;
//! - [`unembedding`]: the output projection and final norm weight alone (logit effects).
//!
//! ```no_run
//! use saeidx_model::{checkpoint::Checkpoint, files};
//!
//! let source = files::ModelSource::parse("saeidx-default/SmolLM2-135M-Instruct-mlx-4bit", None);
//! let files = files::resolve(&source, &saeidx_hub::HubSettings::from_env())?;
//! let checkpoint = Checkpoint::load(files)?;
//! println!("{} parameters", checkpoint.summary().parameters);
//! # Ok::<(), saeidx_model::ModelError>(())
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod architecture;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod families;
pub mod files;
pub mod hook;
pub mod transformer;
pub mod unembedding;

/// Why a model could not be found or loaded; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A file is present but malformed.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required file is absent.
    #[error("model {model} has no {file}: {hint}")]
    MissingFile {
        /// The model asked for.
        model: String,
        /// The missing file.
        file: String,
        /// What to do about it.
        hint: String,
    },
    /// The Hugging Face Hub and its cache could not provide the model.
    #[error(transparent)]
    Hub(#[from] saeidx_hub::HubError),
    /// The weights do not match the config.
    #[error("the weights of {model} do not match its config.json: {reason}")]
    WeightsMismatch {
        /// The model.
        model: String,
        /// What does not match.
        reason: String,
    },
    /// The model is valid but not of a supported kind.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// A hook point that does not exist in this model.
    #[error(transparent)]
    Hook(#[from] hook::HookError),
    /// MLX failed while computing (for example, out of memory: lower the batch size).
    #[error("MLX computation failed: {0}")]
    Compute(#[from] mlx_rs::error::Exception),
}

impl saeidx_hub::HubFailure for ModelError {
    fn hub_error(&self) -> Option<&saeidx_hub::HubError> {
        match self {
            Self::Hub(error) => Some(error),
            _ => None,
        }
    }
}

impl ModelError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
