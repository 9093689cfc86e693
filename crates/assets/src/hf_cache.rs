//! Publishing a local model folder into the Hugging Face hub cache, so hf-hub (and
//! Python's `huggingface_hub`) resolve it by repo id, offline.
//!
//! The layout is the hub cache's own: `models--{org}--{name}/blobs/{sha256}` holds each
//! file once, `snapshots/{commit}/{file}` links to it, and `refs/main` names the commit.
//! A snapshot is assembled under a temporary name and renamed into place, and `refs/main`
//! is written last, so a reader never sees a partial snapshot.

use std::{
    fs,
    path::{Path, PathBuf},
};

use hf_hub::{Repo, RepoType};
use saeidx_format::{atomic, checksum};

use crate::ImportError;

/// A model snapshot in the hub cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSnapshot {
    /// The snapshot's commit id (40 hex digits, derived from the files' hashes).
    pub commit: String,
    /// The folder that holds the snapshot's files.
    pub path: PathBuf,
}

/// The hub cache folder named by `HF_HOME` (`$HF_HOME/hub`), as hf-hub resolves it.
pub fn hub_cache_dir() -> PathBuf {
    hf_hub::Cache::from_env().path().clone()
}

/// Where `repo_id`'s model files live in the hub cache at `hub_dir`.
pub fn repo_dir(hub_dir: &Path, repo_id: &str) -> PathBuf {
    hub_dir.join(Repo::new(repo_id.to_string(), RepoType::Model).folder_name())
}

/// The regular files below `root`, as sorted paths relative to it.
fn list_files(root: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        for entry in fs::read_dir(&dir).map_err(|e| ImportError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImportError::io(&dir, e))?;
            let kind = entry.file_type().map_err(|e| ImportError::io(&dir, e))?;
            let name = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(name);
            } else if kind.is_file() {
                files.push(name);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Copies the files of `folder` into the hub cache as a snapshot of `repo_id` and points
/// `refs/main` at it. Publishing the same content twice reuses the existing snapshot.
pub fn publish_snapshot(
    hub_dir: &Path,
    repo_id: &str,
    folder: &Path,
) -> Result<CachedSnapshot, ImportError> {
    let repo = repo_dir(hub_dir, repo_id);
    let blobs = repo.join("blobs");
    let mut entries = Vec::new();
    for relative in list_files(folder)? {
        let source = folder.join(&relative);
        let digest = checksum::sha256_file(&source).map_err(|e| ImportError::io(&source, e))?;
        let blob = blobs.join(&digest);
        let intact = checksum::sha256_file(&blob).is_ok_and(|actual| actual == digest);
        if !intact {
            atomic::write_file_with(&blob, |out| {
                std::io::copy(&mut fs::File::open(&source)?, out).map(drop)
            })?;
        }
        entries.push((relative, digest));
    }
    let listing: String = entries
        .iter()
        .map(|(path, digest)| format!("{}\0{digest}\n", path.to_string_lossy()))
        .collect();
    let commit = checksum::sha256_hex(listing.as_bytes())[..40].to_string();

    let snapshot = repo.join("snapshots").join(&commit);
    let complete = entries.iter().all(|(relative, digest)| {
        fs::read_link(snapshot.join(relative))
            .is_ok_and(|target| target.file_name() == Some(digest.as_ref()))
    });
    if !complete {
        let staged = atomic::StagedDir::new(&snapshot)?;
        for (relative, digest) in &entries {
            let link = staged.path().join(relative);
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent).map_err(|e| ImportError::io(parent, e))?;
            }
            // Relative links, like the hub cache's, keep the cache relocatable.
            let depth = relative.components().count() + 1;
            let target = PathBuf::from("../".repeat(depth))
                .join("blobs")
                .join(digest);
            std::os::unix::fs::symlink(&target, &link).map_err(|e| ImportError::io(&link, e))?;
        }
        staged.publish()?;
    }
    atomic::write_file(&repo.join("refs").join("main"), commit.as_bytes())?;
    Ok(CachedSnapshot {
        commit,
        path: snapshot,
    })
}

/// Checks that `refs/main` of `repo_id` names a snapshot whose files all resolve to blobs
/// with the content their names promise. Returns the snapshot, or `None` when absent or
/// damaged (the caller then publishes it again).
pub fn verified_snapshot(
    hub_dir: &Path,
    repo_id: &str,
    required_files: &[&str],
) -> Result<Option<CachedSnapshot>, ImportError> {
    let repo = repo_dir(hub_dir, repo_id);
    let Ok(commit) = fs::read_to_string(repo.join("refs").join("main")) else {
        return Ok(None);
    };
    let snapshot = repo.join("snapshots").join(commit.trim());
    for file in required_files {
        let link = snapshot.join(file);
        let Ok(target) = fs::read_link(&link) else {
            return Ok(None);
        };
        let Some(expected) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Ok(None);
        };
        match checksum::sha256_file(&link) {
            Ok(actual) if actual == expected => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(CachedSnapshot {
        commit: commit.trim().to_string(),
        path: snapshot,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_resolves_through_hf_hub_cache() {
        let hub = tempfile::tempdir().unwrap();
        let folder = tempfile::tempdir().unwrap();
        fs::write(folder.path().join("config.json"), "{}").unwrap();
        fs::create_dir(folder.path().join("sub")).unwrap();
        fs::write(folder.path().join("sub/weights.bin"), [1u8, 2, 3]).unwrap();

        let first = publish_snapshot(hub.path(), "org/model", folder.path()).unwrap();
        let again = publish_snapshot(hub.path(), "org/model", folder.path()).unwrap();
        assert_eq!(first, again);

        let cache = hf_hub::Cache::new(hub.path().to_path_buf());
        let repo = cache.repo(Repo::model("org/model".into()));
        let weights = repo.get("sub/weights.bin").expect("hf-hub finds the file");
        assert_eq!(fs::read(weights).unwrap(), [1, 2, 3]);
        assert!(repo.get("missing.json").is_none());

        let verified =
            verified_snapshot(hub.path(), "org/model", &["config.json", "sub/weights.bin"]);
        assert_eq!(verified.unwrap(), Some(first.clone()));

        // A damaged blob fails verification.
        let blob = fs::canonicalize(first.path.join("config.json")).unwrap();
        fs::write(blob, "tampered").unwrap();
        let verified = verified_snapshot(hub.path(), "org/model", &["config.json"]);
        assert_eq!(verified.unwrap(), None);
    }
}
