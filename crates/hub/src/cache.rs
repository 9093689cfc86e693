//! The Hugging Face cache's layout, as `huggingface_hub` and hf-hub write it:
//! `{models,datasets}--{org}--{name}/blobs/{hash}` holds each file once,
//! `snapshots/{commit}/{file}` links to it, and `refs/{revision}` names a commit.
//!
//! saeidx also places snapshots it makes itself (the embedded default model) with
//! [`place_snapshot`]; such repos carry a marker file and always resolve from the cache.

use std::{
    fs,
    path::{Path, PathBuf},
};

use saeidx_format::{atomic, checksum};

use crate::{HubError, RepoKind, RepoRef, error::LOCAL_NAMESPACE};

/// The marker file in a repo's cache folder saying saeidx placed it (not the Hub).
pub const PLACED_MARKER: &str = "saeidx-placed.json";

/// A snapshot folder in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSnapshot {
    /// The snapshot's commit id.
    pub commit: String,
    /// The folder that holds the snapshot's files.
    pub path: PathBuf,
}

/// Where a repo's files live in the cache at `cache_dir`.
pub fn repo_dir(cache_dir: &Path, kind: RepoKind, repo_id: &str) -> PathBuf {
    cache_dir.join(hf_hub::Repo::new(repo_id.to_string(), kind.repo_type()).folder_name())
}

/// The snapshot `repo.revision` names in the cache: a commit's folder, or the commit a
/// branch or tag was last recorded at. `None` when absent.
pub fn lookup(cache_dir: &Path, repo: &RepoRef) -> Option<CachedSnapshot> {
    let dir = repo_dir(cache_dir, repo.kind, &repo.repo_id);
    let commit = if repo.is_commit() {
        repo.revision.clone()
    } else {
        let reference = fs::read_to_string(dir.join("refs").join(&repo.revision)).ok()?;
        reference.trim().to_string()
    };
    // A ref names a folder: anything but a plain name (a damaged or hostile ref) is absent.
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let path = dir.join("snapshots").join(&commit);
    path.is_dir().then_some(CachedSnapshot { commit, path })
}

/// Records that `repo.revision` (a branch or tag) names `commit`, so that a later lookup
/// of the revision finds the snapshot (hf-hub records only the commit itself when a
/// download is pinned to it). A commit revision needs no record.
pub fn remember(cache_dir: &Path, repo: &RepoRef, commit: &str) -> Result<(), HubError> {
    if repo.revision == commit {
        return Ok(());
    }
    let reference = repo_dir(cache_dir, repo.kind, &repo.repo_id)
        .join("refs")
        .join(&repo.revision);
    atomic::write_file(&reference, commit.as_bytes())?;
    Ok(())
}

/// Whether saeidx placed this repo in the cache itself: it carries the marker, or it is
/// in saeidx's own namespace (which does not exist on the Hub).
pub fn is_placed(cache_dir: &Path, repo: &RepoRef) -> bool {
    repo.repo_id.starts_with(LOCAL_NAMESPACE)
        || repo_dir(cache_dir, repo.kind, &repo.repo_id)
            .join(PLACED_MARKER)
            .is_file()
}

/// The regular files below `root`, as sorted paths relative to it.
fn list_files(root: &Path) -> Result<Vec<PathBuf>, HubError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubError::Io { path, source }
    };
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let kind = entry.file_type().map_err(io(&dir))?;
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

/// Copies the files of `folder` into the cache as a snapshot of model repo `repo_id`,
/// points `refs/main` at it and marks the repo as placed by saeidx (so it always
/// resolves from the cache). The commit id is derived from the files' hashes, so placing
/// the same content twice reuses the snapshot. The snapshot is assembled under a
/// temporary name and renamed into place, and `refs/main` is written last: a reader never
/// sees a partial snapshot.
pub fn place_snapshot(
    cache_dir: &Path,
    repo_id: &str,
    folder: &Path,
) -> Result<CachedSnapshot, HubError> {
    let repo = repo_dir(cache_dir, RepoKind::Model, repo_id);
    let mut entries = Vec::new();
    for relative in list_files(folder)? {
        let source = folder.join(&relative);
        entries.push((relative, store_blob(&repo.join("blobs"), &source)?));
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
        link_snapshot(&snapshot, &entries)?;
    }
    mark_placed(&repo)?;
    atomic::write_file(&repo.join("refs").join("main"), commit.as_bytes())?;
    Ok(CachedSnapshot {
        commit,
        path: snapshot,
    })
}

/// Stores `source` as a blob named by its SHA-256 (unless an intact one exists).
fn store_blob(blobs: &Path, source: &Path) -> Result<String, HubError> {
    let digest = checksum::sha256_file(source).map_err(|source_error| HubError::Io {
        path: source.to_path_buf(),
        source: source_error,
    })?;
    let blob = blobs.join(&digest);
    let intact = checksum::sha256_file(&blob).is_ok_and(|actual| actual == digest);
    if !intact {
        atomic::write_file_with(&blob, |out| {
            std::io::copy(&mut fs::File::open(source)?, out).map(drop)
        })?;
    }
    Ok(digest)
}

/// Writes a snapshot folder of relative links to blobs, atomically.
fn link_snapshot(snapshot: &Path, entries: &[(PathBuf, String)]) -> Result<(), HubError> {
    let staged = atomic::StagedDir::new(snapshot)?;
    for (relative, digest) in entries {
        let link = staged.path().join(relative);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HubError::Io { path, source }
        };
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // Relative links, like the hub cache's, keep the cache relocatable.
        let depth = relative.components().count() + 1;
        let target = PathBuf::from("../".repeat(depth))
            .join("blobs")
            .join(digest);
        std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
    }
    staged.publish()?;
    Ok(())
}

/// Writes the marker saying saeidx placed the repo (idempotent).
fn mark_placed(repo: &Path) -> Result<(), HubError> {
    let marker = repo.join(PLACED_MARKER);
    if !marker.is_file() {
        let text = concat!(
            "{\"placed_by\": \"saeidx\", \"note\": \"made locally (saeidx assets prepare); ",
            "not on the Hugging Face Hub: saeidx resolves it from this cache only\"}\n"
        );
        atomic::write_file(&marker, text.as_bytes())?;
    }
    Ok(())
}

/// Checks that `refs/main` of placed model repo `repo_id` names a snapshot whose
/// `required_files` all resolve to blobs with the content their names promise, and
/// marks the repo as placed. Returns the snapshot, or `None` when absent or damaged
/// (the caller then places it again).
pub fn verified_placed_snapshot(
    cache_dir: &Path,
    repo_id: &str,
    required_files: &[&str],
) -> Result<Option<CachedSnapshot>, HubError> {
    let repo = RepoRef::new(RepoKind::Model, repo_id, None);
    let Some(snapshot) = lookup(cache_dir, &repo) else {
        return Ok(None);
    };
    for file in required_files {
        let link = snapshot.path.join(file);
        let Ok(target) = fs::read_link(&link) else {
            return Ok(None);
        };
        let Some(expected) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Ok(None);
        };
        if !checksum::sha256_file(&link).is_ok_and(|actual| actual == expected) {
            return Ok(None);
        }
    }
    mark_placed(&repo_dir(cache_dir, RepoKind::Model, repo_id))?;
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_snapshots_resolve_through_the_cache_layout() {
        let hub = tempfile::tempdir().unwrap();
        let folder = tempfile::tempdir().unwrap();
        fs::write(folder.path().join("config.json"), "{}").unwrap();
        fs::create_dir(folder.path().join("sub")).unwrap();
        fs::write(folder.path().join("sub/weights.bin"), [1u8, 2, 3]).unwrap();

        let first = place_snapshot(hub.path(), "org/model", folder.path()).unwrap();
        let again = place_snapshot(hub.path(), "org/model", folder.path()).unwrap();
        assert_eq!(first, again);
        let repo = RepoRef::new(RepoKind::Model, "org/model", None);
        assert!(is_placed(hub.path(), &repo));
        assert_eq!(lookup(hub.path(), &repo), Some(first.clone()));

        // hf-hub's own cache reader finds the files too.
        let cache = hf_hub::Cache::new(hub.path().to_path_buf());
        let files = cache.repo(hf_hub::Repo::model("org/model".into()));
        let weights = files.get("sub/weights.bin").expect("hf-hub finds the file");
        assert_eq!(fs::read(weights).unwrap(), [1, 2, 3]);
        assert!(files.get("missing.json").is_none());

        let verified =
            verified_placed_snapshot(hub.path(), "org/model", &["config.json", "sub/weights.bin"]);
        assert_eq!(verified.unwrap(), Some(first.clone()));

        // A damaged blob fails verification.
        let blob = fs::canonicalize(first.path.join("config.json")).unwrap();
        fs::write(blob, "tampered").unwrap();
        let verified = verified_placed_snapshot(hub.path(), "org/model", &["config.json"]);
        assert_eq!(verified.unwrap(), None);
    }

    #[test]
    fn lookups_follow_refs_and_commits() {
        let hub = tempfile::tempdir().unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let dir = repo_dir(hub.path(), RepoKind::Dataset, "org/data");
        fs::create_dir_all(dir.join("snapshots").join(commit)).unwrap();
        let by_branch = RepoRef::new(RepoKind::Dataset, "org/data", Some("v1"));
        assert_eq!(lookup(hub.path(), &by_branch), None);
        remember(hub.path(), &by_branch, commit).unwrap();
        let found = lookup(hub.path(), &by_branch).unwrap();
        assert_eq!(found.commit, commit);
        let by_commit = RepoRef::new(RepoKind::Dataset, "org/data", Some(commit));
        assert_eq!(lookup(hub.path(), &by_commit), Some(found));
        assert!(!is_placed(hub.path(), &by_commit));
        // The model repo of the same name is another folder.
        let model = RepoRef::new(RepoKind::Model, "org/data", Some(commit));
        assert_eq!(lookup(hub.path(), &model), None);
    }
}
