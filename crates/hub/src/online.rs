//! A repo listed on the Hub at one commit, whose files download pinned to that commit.

use std::path::PathBuf;

use hf_hub::api::{RepoInfo, sync::ApiBuilder};

use crate::{
    HubError, HubSettings, RepoRef,
    cache::{self, CachedSnapshot},
    error::RequestFailure,
};

/// A repo listed on the Hub: the commit its revision names now, and its files.
pub struct Listing {
    repo: RepoRef,
    api: hf_hub::api::sync::ApiRepo,
    endpoint: String,
    cache_dir: PathBuf,
    /// The commit the listing came from.
    pub commit: String,
    /// Every file in the repo at that commit (paths relative to its root).
    pub files: Vec<String>,
}

impl Listing {
    /// Lists `repo` on the Hub (needs the network; honours `settings.timeout`).
    pub(crate) fn open(settings: &HubSettings, repo: &RepoRef) -> Result<Self, HubError> {
        let failed = |failure| HubError::request(repo, "listing", &settings.endpoint, failure);
        let api = ApiBuilder::new()
            .with_endpoint(settings.endpoint.clone())
            .with_cache_dir(settings.cache_dir.clone())
            .with_token(settings.token.clone())
            .with_progress(true)
            .build()
            .map_err(|e| failed(RequestFailure::from_api(e)))?;
        let response = api
            .repo(repo.hf_repo(&repo.revision))
            .info_request()
            .timeout(settings.timeout)
            .call()
            .map_err(|e| failed(RequestFailure::from_ureq(e)))?;
        let info: RepoInfo = response.into_json().map_err(|e| HubError::Invalid {
            repo: repo.clone(),
            reason: format!("the Hub's listing is not what hf-hub reads: {e}"),
        })?;
        if !info.sha.bytes().all(|b| b.is_ascii_alphanumeric()) || info.sha.is_empty() {
            return Err(HubError::Invalid {
                repo: repo.clone(),
                reason: format!("the Hub named an invalid commit {:?}", info.sha),
            });
        }
        Ok(Self {
            repo: repo.clone(),
            api: api.repo(repo.hf_repo(&info.sha)),
            endpoint: settings.endpoint.clone(),
            cache_dir: settings.cache_dir.clone(),
            commit: info.sha,
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// The repo and revision listed.
    pub fn repo(&self) -> &RepoRef {
        &self.repo
    }

    /// Whether the repo holds `file`.
    pub fn has(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }

    /// Downloads one file (or finds it in the cache) and returns its local path.
    pub fn get(&self, file: &str) -> Result<PathBuf, HubError> {
        tracing::debug!("fetching {file} of {}@{}", self.repo.repo_id, self.commit);
        self.api.get(file).map_err(|e| {
            HubError::request(
                &self.repo,
                file,
                &self.endpoint,
                RequestFailure::from_api(e),
            )
        })
    }

    /// The snapshot folder the files land in.
    pub fn snapshot(&self) -> CachedSnapshot {
        CachedSnapshot {
            commit: self.commit.clone(),
            path: cache::repo_dir(&self.cache_dir, self.repo.kind, &self.repo.repo_id)
                .join("snapshots")
                .join(&self.commit),
        }
    }

    /// Records that the listed revision names this commit (call it once the files are
    /// downloaded), so that an offline lookup of the revision finds the snapshot.
    pub(crate) fn remember(&self) -> Result<(), HubError> {
        cache::remember(&self.cache_dir, &self.repo, &self.commit)
    }
}
