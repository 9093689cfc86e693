//! Finding a model's files: a local folder, or a Hugging Face repo resolved
//! offline-first through [`saeidx_hub`] (the cache under `HF_HOME`, `HF_ENDPOINT`,
//! `HF_TOKEN`, `HF_HUB_OFFLINE`; the cached snapshot when the Hub cannot answer). The
//! resolved commit is recorded so an index can say exactly which weights produced it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use saeidx_format::checksum::{sha256_file, sha256_hex};
use saeidx_hub::{HubSettings, Listing, Origin, RepoKind, RepoRef};
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

/// The files of a resolved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// Where the model was asked for.
    pub source: ModelSource,
    /// The folder holding the files (a hub snapshot, or the local folder).
    pub dir: PathBuf,
    /// The hub commit the files belong to; `None` for a local folder.
    pub commit: Option<String>,
    /// Where a hub snapshot came from (the Hub, or the cache and why); `None` for a local
    /// folder.
    pub origin: Option<Origin>,
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

/// Resolves a model's files: a local folder as it is; a hub repo offline-first
/// (see [`saeidx_hub::resolve`]), downloading what is missing when the Hub answers.
pub fn resolve(source: &ModelSource, settings: &HubSettings) -> Result<ModelFiles, ModelError> {
    match source {
        ModelSource::Local(dir) => files_in_folder(source, dir, None),
        ModelSource::Hub { repo_id, revision } => {
            let repo = RepoRef::new(RepoKind::Model, repo_id, revision.as_deref());
            let snapshot = saeidx_hub::resolve(settings, &repo, download)?;
            let mut files = files_in_folder(source, &snapshot.dir, Some(snapshot.commit))?;
            files.origin = Some(snapshot.origin);
            Ok(files)
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
                    ModelSource::Hub { .. } => "the cached snapshot is incomplete: run once \
                        where the Hub is reachable, without HF_HUB_OFFLINE"
                        .into(),
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
        origin: None,
        config: require("config.json")?,
        weights,
        tokenizer: require("tokenizer.json")?,
    })
}

/// Downloads the model files of a listed repo (those already cached are reused).
fn download(repo: &Listing) -> Result<(), ModelError> {
    for name in SMALL_FILES.iter().filter(|name| repo.has(name)) {
        repo.get(name)?;
    }
    if repo.has(WEIGHTS_INDEX) {
        for shard in shards_from_index(&repo.get(WEIGHTS_INDEX)?)? {
            repo.get(&shard)?;
        }
    } else {
        repo.get(SINGLE_WEIGHTS)?;
    }
    Ok(())
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
            ..HubSettings::from_env()
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
        assert!(
            matches!(error, ModelError::Hub(saeidx_hub::HubError::NotCached(_))),
            "{error}"
        );
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
