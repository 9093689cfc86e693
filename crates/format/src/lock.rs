//! One writer per output folder.
//!
//! `saeidx run`, `merge` and `query build` hold [`OutputLock`] on the folder they
//! publish for as long as they write it, so a second writer is refused at once with the
//! holder's process id, instead of both failing later with messages that suggest
//! damage. The lock is `OUT/../.NAME.lock`: an advisory `flock` on that file (released
//! by the kernel when the holder exits, however it exits, so a killed writer's lock is
//! taken over by the next one; over NFS Linux maps it to a POSIX lock) with the
//! holder's process id and host written inside for the message. The file is removed
//! when the lock is released.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Why an output could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{output} is being written by another saeidx process ({holder}); wait for it to finish, or stop it (a killed writer's lock is taken over automatically)"
    )]
    Held {
        /// The output folder.
        output: PathBuf,
        /// Who holds it, as the lock file says (`pid N on HOST`).
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// The exclusive right to write one output folder, until dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
}

/// The lock file of `output`: `.NAME.lock` beside it.
pub fn lock_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    output.with_file_name(format!(".{name}.lock"))
}

impl OutputLock {
    /// Takes the lock of `output` (creating its parent folder if needed), or fails at
    /// once with [`LockError::Held`] if another process holds it.
    pub fn acquire(output: &Path) -> Result<Self, LockError> {
        let path = lock_path(output);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(LockError::Held {
                        output: output.to_path_buf(),
                        holder: if holder.is_empty() {
                            "a process that is starting".into()
                        } else {
                            holder.to_string()
                        },
                    });
                }
                Err(TryLockError::Error(error)) => return Err(io(error)),
            }
            // The previous holder may have removed the file between our open and our
            // lock: then we locked a file nobody else will see; open the name again.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(ours), Ok(named)) => ours.ino() == named.ino() && ours.dev() == named.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let holder = format!("pid {} on {}", std::process::id(), host_name());
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            file.write_all(holder.as_bytes()).map_err(io)?;
            file.flush().map_err(io)?;
            return Ok(Self { path, file });
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so nobody can lock the old file after us.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// This machine's name (for the lock message; outputs may sit on a shared file system).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and we read up to the first NUL.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        "this host".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("indexes/default");
        let first = OutputLock::acquire(&output).unwrap();
        let error = OutputLock::acquire(&output).unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id()))
                && error.contains("indexes/default"),
            "{error}"
        );
        drop(first);
        assert!(!lock_path(&output).exists(), "released locks leave no file");
        let again = OutputLock::acquire(&output).unwrap();
        drop(again);
    }

    #[test]
    fn a_dead_writers_lock_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out");
        // A lock file left by a killed process: its flock went with it.
        std::fs::write(lock_path(&output), "pid 999999 on elsewhere").unwrap();
        let lock = OutputLock::acquire(&output).unwrap();
        let content = std::fs::read_to_string(lock_path(&output)).unwrap();
        assert_eq!(
            content,
            format!("pid {} on {}", std::process::id(), host_name())
        );
        drop(lock);
    }
}
