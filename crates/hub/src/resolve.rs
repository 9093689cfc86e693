//! Offline-first resolution of a repo to a snapshot folder in the cache.

use std::path::PathBuf;

use crate::{
    HubError, HubFailure, HubSettings, Listing, RepoRef,
    cache::{self, CachedSnapshot},
    error::{NotCachedBecause, RequestFailure},
};

/// A repo resolved to a folder of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot folder (its files are relative to it, as in the repo).
    pub dir: PathBuf,
    /// The commit the files belong to.
    pub commit: String,
    /// Where the answer came from.
    pub origin: Origin,
}

/// Where a [`Snapshot`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Listed on the Hub now; missing files downloaded.
    Hub,
    /// The cache, because `HF_HUB_OFFLINE` is set.
    Offline,
    /// The cache, because saeidx placed the repo there itself.
    Placed,
    /// The cache, because the Hub could not provide it (the warning's reason).
    Fallback(RequestFailure),
}

impl Snapshot {
    fn cached(found: CachedSnapshot, origin: Origin) -> Self {
        Self {
            dir: found.path,
            commit: found.commit,
            origin,
        }
    }
}

/// Resolves `repo` to a snapshot folder, offline-first.
///
/// - Repos saeidx placed in the cache, and every repo under `HF_HUB_OFFLINE`, resolve
///   from the cache alone.
/// - Otherwise the repo is listed on the Hub and `download` fetches what the caller needs
///   through the [`Listing`]; then the revision is recorded in the cache.
/// - When listing or downloading fails because the Hub is unreachable, fails (5xx) or
///   refuses (401/403/404), the cached snapshot of the requested revision is used, with
///   a one-line warning naming its commit (what `huggingface_hub` does).
/// - With no cached snapshot, the error says what to run.
///
/// The snapshot may lack files the caller needs (a cache filled for another purpose);
/// callers check for them and say so.
pub fn resolve<E>(
    settings: &HubSettings,
    repo: &RepoRef,
    download: impl FnOnce(&Listing) -> Result<(), E>,
) -> Result<Snapshot, E>
where
    E: From<HubError> + HubFailure,
{
    if cache::is_placed(&settings.cache_dir, repo) {
        return from_cache(
            settings,
            repo,
            NotCachedBecause::PlacedLocally,
            Origin::Placed,
        );
    }
    if settings.offline {
        return from_cache(settings, repo, NotCachedBecause::Offline, Origin::Offline);
    }
    let online = Listing::open(settings, repo)
        .map_err(E::from)
        .and_then(|listing| {
            download(&listing)?;
            listing.remember()?;
            Ok(Snapshot {
                dir: listing.snapshot().path,
                commit: listing.commit.clone(),
                origin: Origin::Hub,
            })
        });
    let error = match online {
        Ok(snapshot) => return Ok(snapshot),
        Err(error) => error,
    };
    let failure = match error.hub_error() {
        Some(HubError::Request(request)) if request.failure.allows_cache() => {
            request.failure.clone()
        }
        _ => return Err(error),
    };
    let Some(found) = cache::lookup(&settings.cache_dir, repo) else {
        return Err(E::from(HubError::not_cached(
            repo,
            &settings.cache_dir,
            NotCachedBecause::Hub(failure),
        )));
    };
    tracing::warn!(
        "{failure}; using the cached snapshot of {} at commit {}",
        repo,
        found.commit
    );
    Ok(Snapshot::cached(found, Origin::Fallback(failure)))
}

/// The cached snapshot of `repo`, or the error saying why only the cache was asked.
fn from_cache<E: From<HubError>>(
    settings: &HubSettings,
    repo: &RepoRef,
    because: NotCachedBecause,
    origin: Origin,
) -> Result<Snapshot, E> {
    match cache::lookup(&settings.cache_dir, repo) {
        Some(found) => Ok(Snapshot::cached(found, origin)),
        None => Err(E::from(HubError::not_cached(
            repo,
            &settings.cache_dir,
            because,
        ))),
    }
}
