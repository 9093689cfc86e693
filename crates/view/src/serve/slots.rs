//! The served indexes: each opened once, reopened when its folder is republished (a
//! new `segments.json` renamed into an index of segments counts: the folder changes).
//! A request holds the opened index for its whole answer, so it sees one segment set.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Mutex, RwLock},
};

use saeidx_query::{AnyIndex, QueryError};

use super::{LiveTexts, ServedIndex};

/// One served index: its name in URLs, folder, the opened index and live analysis.
pub(super) struct Slot {
    /// URL-safe name (`/i/NAME/`).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// The opened index and the folder identity it came from.
    pub opened: RwLock<Opened>,
    /// Live analysis, one text at a time.
    pub live: Option<Mutex<Box<dyn LiveTexts>>>,
}

/// The opened index and what identifies the folder it came from.
pub(super) struct Opened {
    /// The index.
    pub index: AnyIndex,
    folder: (u64, i64),
}

fn folder_identity(dir: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000))
}

/// Opens every index, naming each by its folder.
pub(super) fn open(indexes: Vec<ServedIndex>) -> Result<Vec<Slot>, QueryError> {
    let names = slot_names(&indexes.iter().map(|i| i.dir.as_path()).collect::<Vec<_>>());
    let mut slots = Vec::with_capacity(indexes.len());
    for (served, name) in indexes.into_iter().zip(names) {
        let index = AnyIndex::open(&served.dir)?;
        slots.push(Slot {
            name,
            opened: RwLock::new(Opened {
                index,
                folder: folder_identity(&served.dir).unwrap_or_default(),
            }),
            dir: served.dir,
            live: served.live.map(Mutex::new),
        });
    }
    Ok(slots)
}

impl Slot {
    /// Reopens the index if its folder was replaced since it was opened, or if one of
    /// its files was truncated or rewritten in place under it (`check_intact`).
    pub fn refresh(&self) {
        let identity = folder_identity(&self.dir).unwrap_or_default();
        let (current, intact) = self
            .opened
            .read()
            .map(|o| (o.folder, o.index.check_intact().is_ok()))
            .unwrap_or_default();
        if identity == current && intact {
            self.refresh_labels();
            return;
        }
        match AnyIndex::open(&self.dir) {
            Ok(index) => {
                if let Ok(mut opened) = self.opened.write() {
                    *opened = Opened {
                        index,
                        folder: identity,
                    };
                }
            }
            Err(error) => {
                tracing::warn!("keeping the open index of {}: {error}", self.dir.display())
            }
        }
    }
}

impl Slot {
    /// Reads the label registry again if another writer (a labelling run, the command
    /// line, Python) changed `labels.json` since, so pages and answers show its labels
    /// and the next edit starts from them.
    fn refresh_labels(&self) {
        let changed = self.opened.read().is_ok_and(|o| o.index.registry_changed());
        if !changed {
            return;
        }
        if let Ok(mut opened) = self.opened.write()
            && let Err(error) = opened.index.reload_registry()
        {
            tracing::warn!("keeping the labels read before: {error}");
        }
    }
}

/// URL-safe, distinct names for the served folders (their file names).
fn slot_names(dirs: &[&Path]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for dir in dirs {
        let base: String = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "index".into()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}
