//! Why a repo could not be resolved; every message says what to do.

use std::path::PathBuf;

use saeidx_format::atomic::AtomicWriteError;

use crate::RepoRef;

/// The namespace of the repos saeidx makes itself (`saeidx assets prepare`); they do not
/// exist on the Hub.
pub(crate) const LOCAL_NAMESPACE: &str = "saeidx-default/";

/// Why a repo could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A cache file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Writing into the cache failed (a full disk shows up here).
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// A request to the Hub failed, and no cached copy could stand in for it.
    #[error(transparent)]
    Request(Box<FailedRequest>),
    /// The repo is needed and not in the cache, and the Hub cannot provide it now.
    #[error(transparent)]
    NotCached(Box<NotCached>),
    /// The Hub answered something this client cannot read.
    #[error("{repo}: {reason}")]
    Invalid {
        /// The repo and revision.
        repo: RepoRef,
        /// What is wrong.
        reason: String,
    },
}

/// A failed request to the Hub.
#[derive(Debug, thiserror::Error)]
#[error("{what} of {repo} from {endpoint}: {failure}")]
pub struct FailedRequest {
    /// The repo and revision.
    pub repo: RepoRef,
    /// The listing, or the file asked for.
    pub what: String,
    /// The server asked.
    pub endpoint: String,
    /// What went wrong.
    pub failure: RequestFailure,
}

/// A repo that is needed, not cached, and that the Hub cannot provide now.
#[derive(Debug, thiserror::Error)]
#[error("{repo} is not in the Hugging Face cache at {}: {because} {}", cache_dir.display(), advice(repo, because))]
pub struct NotCached {
    /// The repo and revision.
    pub repo: RepoRef,
    /// The cache searched.
    pub cache_dir: PathBuf,
    /// Why the Hub was not (or could not be) asked.
    pub because: NotCachedBecause,
}

/// Why a request to the Hub failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    /// No answer: DNS, connection refused, timeout, a broken connection.
    #[error("the Hub could not be reached ({0})")]
    Unreachable(String),
    /// The server failed (HTTP 5xx).
    #[error("the Hub failed (HTTP {status}{})", detail(reason))]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's message, if any.
        reason: String,
    },
    /// The server refused: 401/403 (gated or private: set `HF_TOKEN`), 404 (no such
    /// repo, revision or file).
    #[error("the Hub refused (HTTP {status}{}){}", detail(reason), refusal_hint(*status))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's message, if any.
        reason: String,
    },
    /// Anything else (a malformed URL, TLS, an unexpected status).
    #[error("{0}")]
    Other(String),
}

/// Why a repo was looked up in the cache alone and not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCachedBecause {
    /// `HF_HUB_OFFLINE` is set.
    #[error("HF_HUB_OFFLINE is set.")]
    Offline,
    /// saeidx places this repo in the cache itself; it is not on the Hub.
    #[error("saeidx places this repo in the cache itself (it is not on the Hub).")]
    PlacedLocally,
    /// The Hub could not provide it.
    #[error("{0}.")]
    Hub(RequestFailure),
}

impl RequestFailure {
    /// Whether a cached snapshot may stand in for the answer (as `huggingface_hub` does):
    /// the Hub was unreachable, failed, or refused a repo that may be cached.
    pub fn allows_cache(&self) -> bool {
        !matches!(self, RequestFailure::Other(_))
    }

    /// Classifies a failed request made through hf-hub.
    pub(crate) fn from_api(error: hf_hub::api::sync::ApiError) -> Self {
        use hf_hub::api::sync::ApiError;
        match error {
            ApiError::RequestError(error) => Self::from_ureq(*error),
            ApiError::IoError(error) => Self::Unreachable(error.to_string()),
            ApiError::TooManyRetries(error) => Self::from_api(*error),
            other => Self::Other(other.to_string()),
        }
    }

    /// Classifies a failed ureq request.
    pub(crate) fn from_ureq(error: ureq::Error) -> Self {
        use ureq::ErrorKind;
        match error {
            ureq::Error::Status(status, response) => {
                let reason = response
                    .header("x-error-message")
                    .map(str::to_string)
                    .unwrap_or_default();
                match status {
                    500..=599 => Self::Server { status, reason },
                    401 | 403 | 404 => Self::Refused { status, reason },
                    _ => Self::Other(format!("HTTP {status}{}", detail(&reason))),
                }
            }
            ureq::Error::Transport(transport) => match transport.kind() {
                ErrorKind::Dns
                | ErrorKind::ConnectionFailed
                | ErrorKind::Io
                | ErrorKind::ProxyConnect
                | ErrorKind::BadStatus
                | ErrorKind::BadHeader => Self::Unreachable(transport.to_string()),
                _ => Self::Other(transport.to_string()),
            },
        }
    }
}

impl HubError {
    /// Whether a cached snapshot may stand in for what failed.
    pub fn allows_cache(&self) -> bool {
        matches!(self, HubError::Request(request) if request.failure.allows_cache())
    }

    /// A failed request.
    pub(crate) fn request(
        repo: &RepoRef,
        what: &str,
        endpoint: &str,
        failure: RequestFailure,
    ) -> Self {
        Self::Request(Box::new(FailedRequest {
            repo: repo.clone(),
            what: what.to_string(),
            endpoint: endpoint.to_string(),
            failure,
        }))
    }

    /// A repo not in the cache.
    pub(crate) fn not_cached(
        repo: &RepoRef,
        cache_dir: &std::path::Path,
        because: NotCachedBecause,
    ) -> Self {
        Self::NotCached(Box::new(NotCached {
            repo: repo.clone(),
            cache_dir: cache_dir.to_path_buf(),
            because,
        }))
    }
}

/// Errors of callers that wrap a [`HubError`], so that [`crate::resolve`] can fall back to
/// the cache when a download made inside its closure fails for a Hub reason.
pub trait HubFailure {
    /// The Hub error inside, if this is one.
    fn hub_error(&self) -> Option<&HubError>;
}

impl HubFailure for HubError {
    fn hub_error(&self) -> Option<&HubError> {
        Some(self)
    }
}

fn detail(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

fn refusal_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "; for a gated or private repo, set HF_TOKEN (or run `huggingface-cli login`)",
        404 => "; check the repo id and revision",
        _ => "",
    }
}

/// What to run when a repo is needed and not cached.
fn advice(repo: &RepoRef, because: &NotCachedBecause) -> String {
    if repo.repo_id.starts_with(LOCAL_NAMESPACE) {
        return "It is saeidx's embedded default: run `saeidx assets prepare` (or \
                `bash scripts/setup.sh`) with the same HF_HOME."
            .into();
    }
    let download = format!(
        "`huggingface-cli download --repo-type {} {} --revision {}`",
        repo.kind.name(),
        repo.repo_id,
        repo.revision
    );
    match because {
        NotCachedBecause::Offline => format!(
            "Unset HF_HUB_OFFLINE to download it, or set HF_HOME to a cache that holds it \
             (fill one on a machine with internet: {download})."
        ),
        _ => format!(
            "Download it where the Hub is reachable ({download}) into a cache this machine \
             shares (HF_HOME), or copy that cache's folder here."
        ),
    }
}
