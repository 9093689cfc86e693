//! The Hugging Face Hub for saeidx: the standard cache, and repos resolved offline-first.
//!
//! Every front end that loads something by repo id (a model, an SAE, a dataset corpus, a
//! shared index) goes through [`resolve`], which behaves like Python's
//! `huggingface_hub`:
//!
//! - the cache lives under `HF_HOME` (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`),
//!   `HF_ENDPOINT` names the server, `HF_TOKEN` (or `$HF_HOME/token`) authenticates;
//! - `HF_HUB_OFFLINE=1` resolves from the cache alone;
//! - when the Hub is unreachable (DNS, connection, timeout) or answers 5xx, or refuses a
//!   repo (401, 403, 404) whose snapshot is cached, the cached snapshot of the requested
//!   revision is used, with a one-line warning naming the commit;
//! - repos that saeidx placed in the cache itself (the embedded default model, written by
//!   `saeidx assets prepare`) always resolve from the cache, never from the network;
//! - without a cached copy the error says exactly what to run.
//!
//! This crate never links MLX: querying and sharing indexes must not need it.
//!
//! ```no_run
//! use saeidx_hub::{HubSettings, RepoKind, RepoRef, resolve};
//!
//! let settings = HubSettings::from_env();
//! let repo = RepoRef::new(RepoKind::Model, "org/name", None);
//! let snapshot = resolve(&settings, &repo, |listing| {
//!     listing.get("config.json")?;
//!     Ok::<(), saeidx_hub::HubError>(())
//! })?;
//! println!("{} at {}", snapshot.commit, snapshot.dir.display());
//! # Ok::<(), saeidx_hub::HubError>(())
//! ```
#![deny(missing_docs)]

pub mod cache;
mod error;
mod online;
mod resolve;
mod settings;

pub use error::{FailedRequest, HubError, HubFailure, NotCached, NotCachedBecause, RequestFailure};
pub use online::Listing;
pub use resolve::{Origin, Snapshot, resolve};
pub use settings::HubSettings;

/// What a Hub repo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repo (`models--org--name` in the cache).
    Model,
    /// A dataset repo (`datasets--org--name`).
    Dataset,
}

impl RepoKind {
    fn repo_type(self) -> hf_hub::RepoType {
        match self {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
        }
    }

    /// The word the Hub's tools use for it (`huggingface-cli download --repo-type`).
    pub fn name(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }
}

/// A repo at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// Model or dataset.
    pub kind: RepoKind,
    /// `org/name`.
    pub repo_id: String,
    /// Branch, tag or commit.
    pub revision: String,
}

impl RepoRef {
    /// `repo_id` at `revision` (`None`: `main`).
    pub fn new(kind: RepoKind, repo_id: &str, revision: Option<&str>) -> Self {
        Self {
            kind,
            repo_id: repo_id.to_string(),
            revision: revision.unwrap_or("main").to_string(),
        }
    }

    /// Whether the revision is a full commit id (immutable).
    pub fn is_commit(&self) -> bool {
        is_commit(&self.revision)
    }

    fn hf_repo(&self, revision: &str) -> hf_hub::Repo {
        hf_hub::Repo::with_revision(
            self.repo_id.clone(),
            self.kind.repo_type(),
            revision.to_string(),
        )
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repo_id, self.revision)
    }
}

/// Whether `revision` is a full 40-hex-digit commit id.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}
