//! Atomic publication of files and folders.
//!
//! A reader sees either the previous content or the complete new content under the
//! final name, never a partial write: content goes to a temporary name in the same
//! folder (same file system), is flushed with `fsync`, then renamed into place, and the
//! parent folder is flushed so the rename itself survives a crash.

use std::{
    fs::{self, File, Permissions},
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// The name prefix of files and folders being written; one left behind was
/// interrupted (a killed process) and can be deleted.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Published files are readable by everyone: an index is meant to be shared.
const FILE_MODE: u32 = 0o644;
/// Published folders, likewise.
const DIR_MODE: u32 = 0o755;

/// Failure to publish output, with the path involved.
#[derive(Debug, thiserror::Error)]
#[error("could not write {path}: {source}")]
pub struct AtomicWriteError {
    /// The destination (or the temporary path) being written.
    pub path: PathBuf,
    /// The underlying I/O failure (a full disk shows up here).
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError + '_ {
    move |source| AtomicWriteError {
        path: path.to_path_buf(),
        source,
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Flushes a folder's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), AtomicWriteError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Writes `path` atomically with whatever `fill` writes into the temporary file.
///
/// On any error the temporary file is removed and `path` is left untouched.
pub fn write_file_with<F>(path: &Path, fill: F) -> Result<(), AtomicWriteError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let parent = parent_of(path);
    fs::create_dir_all(parent).map_err(at(parent))?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(Permissions::from_mode(FILE_MODE))
        .tempfile_in(parent)
        .map_err(at(parent))?;
    fill(temp.as_file_mut()).map_err(at(temp.path()))?;
    temp.as_file_mut().flush().map_err(at(path))?;
    temp.as_file().sync_all().map_err(at(path))?;
    temp.persist(path).map_err(|e| AtomicWriteError {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(parent)
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_file_with(path, |file| file.write_all(bytes))
}

/// A folder being assembled under a temporary name beside its final location.
///
/// Fill [`StagedDir::path`], then call [`StagedDir::publish`]. Dropped without
/// publishing (an error, a panic), the temporary folder is deleted.
#[derive(Debug)]
pub struct StagedDir {
    temp: tempfile::TempDir,
    destination: PathBuf,
}

impl StagedDir {
    /// Starts a folder that will be published at `destination`. Something other than
    /// a folder at `destination` is an error here, before anything is written.
    pub fn new(destination: &Path) -> Result<Self, AtomicWriteError> {
        refuse_non_folder(destination)?;
        let parent = parent_of(destination);
        fs::create_dir_all(parent).map_err(at(parent))?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(Permissions::from_mode(DIR_MODE))
            .tempdir_in(parent)
            .map_err(at(parent))?;
        Ok(Self {
            temp,
            destination: destination.to_path_buf(),
        })
    }

    /// Where to write the folder's content until it is published.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Flushes every file in the folder, then renames it to its destination.
    ///
    /// An existing destination is swapped with the new folder in one atomic rename
    /// (see [`replace_dir`]), so readers always find a complete folder at the name.
    pub fn publish(self) -> Result<PathBuf, AtomicWriteError> {
        let staged = self.temp.keep();
        if let Err(error) = replace_dir(&staged, &self.destination) {
            let _ = fs::remove_dir_all(&staged);
            return Err(error);
        }
        Ok(self.destination)
    }
}

/// Publishes the complete folder `staged` at `destination` (same file system): every
/// file is flushed to disk, then `staged` is renamed into place. An existing
/// destination is exchanged with `staged` in a single `renameat2(RENAME_EXCHANGE)`, so
/// at every moment the name holds either the whole old folder or the whole new one
/// (a reader that already opened old files keeps reading them); the old folder is then
/// deleted.
pub fn replace_dir(staged: &Path, destination: &Path) -> Result<(), AtomicWriteError> {
    refuse_non_folder(destination)?;
    sync_tree(staged)?;
    let parent = parent_of(destination).to_path_buf();
    if destination.exists() {
        exchange(staged, destination)?;
        sync_dir(&parent)?;
        fs::remove_dir_all(staged).map_err(at(staged))?;
    } else {
        fs::rename(staged, destination).map_err(at(destination))?;
        sync_dir(&parent)?;
    }
    Ok(())
}

/// An error if `destination` exists and is not a folder (a file would be swapped into
/// the staging name and the folder published over it).
fn refuse_non_folder(destination: &Path) -> Result<(), AtomicWriteError> {
    match fs::symlink_metadata(destination) {
        Ok(meta) if !meta.is_dir() => Err(at(destination)(io::Error::other(
            "it exists and is not a folder: move or remove it, then try again",
        ))),
        _ => Ok(()),
    }
}

/// Atomically swaps two paths (Linux `renameat2(RENAME_EXCHANGE)`, macOS
/// `renamex_np(RENAME_SWAP)`).
fn exchange(a: &Path, b: &Path) -> Result<(), AtomicWriteError> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| at(path)(io::Error::other("path contains a NUL byte")))
    };
    let (ca, cb) = (c_path(a)?, c_path(b)?);
    // SAFETY: both pointers are valid NUL-terminated strings for the call's duration.
    #[cfg(target_os = "linux")]
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    // SAFETY: as above.
    #[cfg(target_os = "macos")]
    let result = unsafe { libc::renamex_np(ca.as_ptr(), cb.as_ptr(), libc::RENAME_SWAP) };
    if result == 0 {
        Ok(())
    } else {
        Err(at(b)(io::Error::last_os_error()))
    }
}

/// `fsync`s every regular file and folder below `root` (symbolic links are skipped).
fn sync_tree(root: &Path) -> Result<(), AtomicWriteError> {
    for entry in fs::read_dir(root).map_err(at(root))? {
        let entry = entry.map_err(at(root))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(at(&path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(at(&path))?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.txt");
        write_file(&path, b"first").unwrap();
        write_file(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_leaves_old_content_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.txt");
        write_file(&path, b"old").unwrap();
        let err = write_file_with(&path, |file| {
            file.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn staged_dir_publishes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("out");
        for round in ["one", "two"] {
            let staged = StagedDir::new(&destination).unwrap();
            fs::create_dir(staged.path().join("sub")).unwrap();
            fs::write(staged.path().join("sub/file"), round).unwrap();
            staged.publish().unwrap();
            assert_eq!(
                fs::read_to_string(destination.join("sub/file")).unwrap(),
                round
            );
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_where_the_folder_belongs_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("query");
        fs::write(&destination, "not a folder").unwrap();
        let error = StagedDir::new(&destination).unwrap_err().to_string();
        assert!(error.contains("is not a folder"), "{error}");
        let staged = dir.path().join("staged");
        fs::create_dir(&staged).unwrap();
        assert!(replace_dir(&staged, &destination).is_err());
        assert_eq!(fs::read(&destination).unwrap(), b"not a folder");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "nothing else left behind: {names:?}");
    }

    #[test]
    fn dropped_staged_dir_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let staged = StagedDir::new(&dir.path().join("out")).unwrap();
            fs::write(staged.path().join("file"), "x").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
