//! Finding a model's files: a local folder, or a Hugging Face repo through hf-hub.
//!
//! Hub lookups follow the ecosystem's conventions: the cache lives under `HF_HOME`
//! (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`), `HF_ENDPOINT` names the server,
//! `HF_TOKEN` (or `$HF_HOME/token`) authenticates, and `HF_HUB_OFFLINE=1` resolves from
//! the cache alone. The resolved commit is recorded so an index can say exactly which
//! weights produced it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use hf_hub::{Repo, RepoType, api::sync::ApiBuilder};
use saeidx_format::checksum::{sha256_file, sha256_hex};
use serde::Deserialize;

use crate::ModelError;

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder with `config.json`, safetensors weights and `tokenizer.json`.
    Local(PathBuf),
    /// A Hugging Face model repo, at a branch, tag or commit (default `main`).
    Hub {
        /// `org/name`.
        repo_id: String,
        /// Branch, tag or commit; `None` means `main`.
        revision: Option<String>,
    },
}

impl ModelSource {
    /// An existing folder is local; anything else is a hub repo id.
    pub fn parse(spec: &str, revision: Option<String>) -> Self {
        let path = Path::new(spec);
        if path.is_dir() {
            Self::Local(path.to_path_buf())
        } else {
            Self::Hub {
                repo_id: spec.to_string(),
                revision,
            }
        }
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Hub {
                repo_id,
                revision: Some(revision),
            } => write!(f, "{repo_id}@{revision}"),
            Self::Hub { repo_id, .. } => write!(f, "{repo_id}"),
        }
    }
}

/// How to reach the hub, read from the standard environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// `$HF_HOME/hub`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE`: resolve from the cache only.
    pub offline: bool,
    /// `HF_TOKEN`, else the token file in `HF_HOME`.
    pub token: Option<String>,
}

impl HubSettings {
    /// Reads `HF_HOME`, `HF_HUB_OFFLINE` and `HF_TOKEN` (`HF_ENDPOINT` is read by hf-hub).
    pub fn from_env() -> Self {
        let cache = hf_hub::Cache::from_env();
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .or_else(|| cache.token());
        Self {
            cache_dir: cache.path().clone(),
            offline,
            token,
        }
    }
}

/// The files of a resolved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// Where the model was asked for.
    pub source: ModelSource,
    /// The folder holding the files (a hub snapshot, or the local folder).
    pub dir: PathBuf,
    /// The hub commit the files belong to; `None` for a local folder.
    pub commit: Option<String>,
    /// `config.json`.
    pub config: PathBuf,
    /// The safetensors files, in shard order.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// A content hash of the weights, for manifests: the SHA-256 of the single weights
    /// file (for a hub file, the name of its cache blob), or for sharded weights the
    /// SHA-256 of `"{shard name} {shard sha256}\n"` lines in shard order.
    pub fn weights_sha256(&self) -> Result<String, ModelError> {
        let digests = self
            .weights
            .iter()
            .map(|path| {
                sha256_file(path)
                    .map(|digest| (path, digest))
                    .map_err(|e| ModelError::io(path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let [(_, digest)] = digests.as_slice() {
            return Ok(digest.clone());
        }
        let listing: String = digests
            .iter()
            .map(|(path, digest)| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                format!("{name} {digest}\n")
            })
            .collect();
        Ok(sha256_hex(listing.as_bytes()))
    }
}

/// The files a model folder needs besides its weights.
const SMALL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

#[derive(Deserialize)]
struct WeightsIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The shard files named by a `model.safetensors.index.json`, in first-use order.
fn shards_from_index(index: &Path) -> Result<Vec<String>, ModelError> {
    let text = fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let index: WeightsIndex = serde_json::from_str(&text).map_err(|e| ModelError::Invalid {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut shards: Vec<String> = index.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Resolves a model's files, downloading what is missing unless offline.
pub fn resolve(source: &ModelSource, settings: &HubSettings) -> Result<ModelFiles, ModelError> {
    match source {
        ModelSource::Local(dir) => files_in_folder(source, dir, None),
        ModelSource::Hub { repo_id, revision } => {
            let revision = revision.clone().unwrap_or_else(|| "main".to_string());
            if settings.offline {
                let snapshot = cached_snapshot(&settings.cache_dir, repo_id, &revision)?;
                let commit = snapshot
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned());
                files_in_folder(source, &snapshot, commit)
            } else {
                download(source, repo_id, &revision, settings)
            }
        }
    }
}

/// A folder's model files.
fn files_in_folder(
    source: &ModelSource,
    dir: &Path,
    commit: Option<String>,
) -> Result<ModelFiles, ModelError> {
    let require = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::MissingFile {
                model: source.to_string(),
                file: name.to_string(),
                hint: match source {
                    ModelSource::Local(_) => "the folder must hold a complete checkpoint".into(),
                    ModelSource::Hub { .. } => {
                        "the cached snapshot is incomplete; run once without HF_HUB_OFFLINE".into()
                    }
                },
            })
        }
    };
    let weights = if dir.join(WEIGHTS_INDEX).is_file() {
        shards_from_index(&dir.join(WEIGHTS_INDEX))?
            .iter()
            .map(|shard| require(shard))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![require(SINGLE_WEIGHTS)?]
    };
    Ok(ModelFiles {
        source: source.clone(),
        dir: dir.to_path_buf(),
        commit,
        config: require("config.json")?,
        weights,
        tokenizer: require("tokenizer.json")?,
    })
}

/// What a Hub repo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repo (`models--org--name` in the cache).
    Model,
    /// A dataset repo (`datasets--org--name`).
    Dataset,
}

impl RepoKind {
    fn repo_type(self) -> RepoType {
        match self {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        }
    }
}

/// The snapshot folder of model repo `repo_id` at `revision` in the hub cache (offline
/// lookup).
pub fn cached_snapshot(
    cache_dir: &Path,
    repo_id: &str,
    revision: &str,
) -> Result<PathBuf, ModelError> {
    cached_snapshot_of(cache_dir, RepoKind::Model, repo_id, revision)
}

/// The snapshot folder of a `kind` repo at `revision` in the hub cache (offline lookup).
pub fn cached_snapshot_of(
    cache_dir: &Path,
    kind: RepoKind,
    repo_id: &str,
    revision: &str,
) -> Result<PathBuf, ModelError> {
    let repo = repo_cache_dir(cache_dir, kind, repo_id);
    let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        let reference = repo.join("refs").join(revision);
        fs::read_to_string(&reference)
            .map(|commit| commit.trim().to_string())
            .map_err(|_| ModelError::NotCached {
                repo_id: repo_id.to_string(),
                revision: revision.to_string(),
                cache_dir: cache_dir.to_path_buf(),
            })?
    };
    let snapshot = repo.join("snapshots").join(&commit);
    if snapshot.is_dir() {
        Ok(snapshot)
    } else {
        Err(ModelError::NotCached {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            cache_dir: cache_dir.to_path_buf(),
        })
    }
}

/// A hub repo listed at one commit, whose files download pinned to that commit.
pub struct HubRepo {
    repo_id: String,
    repo: hf_hub::api::sync::ApiRepo,
    /// The commit the listing came from.
    pub commit: String,
    /// Every file in the repo at that commit (paths relative to its root).
    pub files: Vec<String>,
    snapshot: PathBuf,
}

impl HubRepo {
    /// Lists model repo `repo_id` at `revision` (branch, tag or commit); needs the network.
    pub fn open(repo_id: &str, revision: &str, settings: &HubSettings) -> Result<Self, ModelError> {
        Self::open_kind(RepoKind::Model, repo_id, revision, settings)
    }

    /// Lists a `kind` repo at `revision`; needs the network.
    pub fn open_kind(
        kind: RepoKind,
        repo_id: &str,
        revision: &str,
        settings: &HubSettings,
    ) -> Result<Self, ModelError> {
        let hub_error = |e: hf_hub::api::sync::ApiError| ModelError::Hub {
            repo_id: repo_id.to_string(),
            reason: e.to_string(),
        };
        let api = ApiBuilder::from_env()
            .with_cache_dir(settings.cache_dir.clone())
            .with_token(settings.token.clone())
            .build()
            .map_err(hub_error)?;
        let listing = api
            .repo(Repo::with_revision(
                repo_id.to_string(),
                kind.repo_type(),
                revision.to_string(),
            ))
            .info()
            .map_err(hub_error)?;
        let snapshot = repo_cache_dir(&settings.cache_dir, kind, repo_id)
            .join("snapshots")
            .join(&listing.sha);
        Ok(Self {
            repo_id: repo_id.to_string(),
            repo: api.repo(Repo::with_revision(
                repo_id.to_string(),
                kind.repo_type(),
                listing.sha.clone(),
            )),
            commit: listing.sha,
            files: listing.siblings.into_iter().map(|s| s.rfilename).collect(),
            snapshot,
        })
    }

    /// Downloads one file (or finds it in the cache) and returns its local path.
    pub fn get(&self, file: &str) -> Result<PathBuf, ModelError> {
        self.repo.get(file).map_err(|e| ModelError::Hub {
            repo_id: self.repo_id.clone(),
            reason: format!("{file}: {e}"),
        })
    }

    /// The local snapshot folder the files land in.
    pub fn snapshot(&self) -> &Path {
        &self.snapshot
    }

    /// Records in the cache that `revision` (a branch or tag) names this listing's
    /// commit, so that an offline lookup of `revision` finds the snapshot. Call it once
    /// the files are downloaded; a commit needs no record.
    pub fn remember(&self, revision: &str) -> Result<(), ModelError> {
        if revision == self.commit {
            return Ok(());
        }
        let Some(repo) = self.snapshot.parent().and_then(Path::parent) else {
            return Ok(());
        };
        let reference = repo.join("refs").join(revision);
        saeidx_format::atomic::write_file(&reference, self.commit.as_bytes()).map_err(|e| {
            ModelError::Io {
                path: e.path,
                source: e.source,
            }
        })
    }
}

/// Where `repo_id`'s files live in the hub cache.
fn repo_cache_dir(cache_dir: &Path, kind: RepoKind, repo_id: &str) -> PathBuf {
    cache_dir.join(Repo::new(repo_id.to_string(), kind.repo_type()).folder_name())
}

/// Downloads (or reuses from the cache) the model files of a hub repo at `revision`.
fn download(
    source: &ModelSource,
    repo_id: &str,
    revision: &str,
    settings: &HubSettings,
) -> Result<ModelFiles, ModelError> {
    let repo = HubRepo::open(repo_id, revision, settings)?;
    let has = |name: &str| repo.files.iter().any(|file| file == name);
    for name in SMALL_FILES.iter().filter(|name| has(name)) {
        repo.get(name)?;
    }
    if has(WEIGHTS_INDEX) {
        for shard in shards_from_index(&repo.get(WEIGHTS_INDEX)?)? {
            repo.get(&shard)?;
        }
    } else {
        repo.get(SINGLE_WEIGHTS)?;
    }
    repo.remember(revision)?;
    files_in_folder(source, repo.snapshot(), Some(repo.commit.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a snapshot the way the hub cache lays it out, and returns the hub folder.
    fn fake_cache(files: &[&str], commit: &str) -> tempfile::TempDir {
        let hub = tempfile::tempdir().unwrap();
        let repo = hub.path().join("models--org--tiny");
        let snapshot = repo.join("snapshots").join(commit);
        fs::create_dir_all(&snapshot).unwrap();
        for file in files {
            fs::write(snapshot.join(file), "{}").unwrap();
        }
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::write(repo.join("refs/main"), commit).unwrap();
        hub
    }

    fn offline(hub: &Path) -> HubSettings {
        HubSettings {
            cache_dir: hub.to_path_buf(),
            offline: true,
            token: None,
        }
    }

    fn hub_source(revision: Option<&str>) -> ModelSource {
        ModelSource::Hub {
            repo_id: "org/tiny".into(),
            revision: revision.map(String::from),
        }
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn offline_resolves_branch_and_commit() {
        let hub = fake_cache(
            &["config.json", "model.safetensors", "tokenizer.json"],
            COMMIT,
        );
        for revision in [None, Some("main"), Some(COMMIT)] {
            let files = resolve(&hub_source(revision), &offline(hub.path())).unwrap();
            assert_eq!(files.commit.as_deref(), Some(COMMIT));
            assert_eq!(files.weights, [files.dir.join("model.safetensors")]);
            assert!(files.tokenizer.ends_with("tokenizer.json"));
        }
    }

    #[test]
    fn offline_reports_what_is_missing() {
        let hub = fake_cache(&["config.json", "tokenizer.json"], COMMIT);
        let error = resolve(&hub_source(None), &offline(hub.path())).unwrap_err();
        assert!(
            matches!(&error, ModelError::MissingFile { file, .. } if file == "model.safetensors"),
            "{error}"
        );
        let error = resolve(&hub_source(Some("v2")), &offline(hub.path())).unwrap_err();
        assert!(matches!(error, ModelError::NotCached { .. }), "{error}");
        assert!(error.to_string().contains("HF_HUB_OFFLINE"));
    }

    #[test]
    fn sharded_weights_follow_the_index() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "config.json",
            "tokenizer.json",
            "a.safetensors",
            "b.safetensors",
        ] {
            fs::write(dir.path().join(file), "{}").unwrap();
        }
        fs::write(
            dir.path().join(WEIGHTS_INDEX),
            r#"{"metadata": {}, "weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}"#,
        )
        .unwrap();
        let source = ModelSource::parse(dir.path().to_str().unwrap(), None);
        assert!(matches!(source, ModelSource::Local(_)));
        let files = resolve(&source, &HubSettings::from_env()).unwrap();
        assert_eq!(
            files.weights,
            [
                dir.path().join("a.safetensors"),
                dir.path().join("b.safetensors")
            ]
        );
        assert_eq!(files.commit, None);
        let shard_digest = sha256_hex(b"{}");
        let listing = format!("a.safetensors {shard_digest}\nb.safetensors {shard_digest}\n");
        assert_eq!(
            files.weights_sha256().unwrap(),
            sha256_hex(listing.as_bytes())
        );
    }
}
