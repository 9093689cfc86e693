//! The folder a run writes into, and how it resumes and publishes.
//!
//! A run for destination `out/NAME` works in `out/.NAME.partial/`:
//!
//! ```text
//! .NAME.partial/
//!   job.json                     the JobSpec and shard this folder belongs to
//!   parts/part-00003.json        a finished part's record (counts, files, checksums)
//!   documents/part-00003.parquet tokens/part-00003.parquet activations/part-00003.parquet
//!   */.tmp-part-00004.parquet    the part being written (deleted on resume)
//! ```
//!
//! A part's files are written under temporary names, flushed, renamed, and only then is
//! its record written (atomically). On resume, a part counts as done only if its record
//! exists and its files still match the record's sizes and checksums; everything else
//! is redone. Publishing writes `manifest.json`, removes the bookkeeping
//! (`job.json`, `parts/`) and replaces the destination in one atomic rename.
//!
//! A work folder of a different job (another job file, or this one before its corpus
//! was corrected after a bad record stopped it) is of no use to this run and never
//! mixed into it: it is deleted and the run starts over, saying so. This is safe
//! because a run holds its output's lock ([`saeidx_format::lock`]) while it uses the
//! work folder, so no other run can be writing it.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use saeidx_format::{
    atomic,
    checksum::sha256_file,
    manifest::{FileRecord, JobSpec, Manifest, PartRecord, ShardRecord},
    tables::Table,
};
use serde::{Deserialize, Serialize};

use crate::IndexError;

const JOB_FILE: &str = "job.json";
const PARTS_DIR: &str = "parts";

/// What a work folder belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WorkJob {
    fingerprint: String,
    shard: Option<ShardRecord>,
    job: JobSpec,
}

/// A run's work folder.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    destination: PathBuf,
    started_over: Option<String>,
}

impl WorkDir {
    /// The work folder for `destination`, created or resumed for `job`/`shard`. A folder
    /// left by a different job is deleted and started afresh (never mixed in); see
    /// [`WorkDir::started_over`]. The caller holds the destination's output lock.
    pub fn open(
        destination: &Path,
        job: &JobSpec,
        shard: Option<ShardRecord>,
    ) -> Result<Self, IndexError> {
        let path = work_path(destination);
        let wanted = WorkJob {
            fingerprint: job.fingerprint(),
            shard,
            job: job.clone(),
        };
        let job_file = path.join(JOB_FILE);
        let mut started_over = None;
        let found: Option<Result<WorkJob, String>> = match fs::read(&job_file) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(e.to_string())),
        };
        if let Some(found) = found {
            let other = match found {
                Ok(found) if found.fingerprint == wanted.fingerprint && found.shard == shard => {
                    None
                }
                Ok(found) => Some(describe_difference(&found.job, job, found.shard, shard)),
                Err(e) => Some(format!("an unreadable job.json: {e}")),
            };
            if let Some(reason) = other {
                fs::remove_dir_all(&path).map_err(IndexError::io(&path))?;
                started_over = Some(format!(
                    "{} held the unfinished work of a different job ({reason}); it was deleted and this run starts over",
                    path.display()
                ));
            }
        }
        if !job_file.exists() {
            fs::create_dir_all(&path).map_err(IndexError::io(&path))?;
            let json = serde_json::to_vec_pretty(&wanted).expect("a job serializes");
            atomic::write_file(&job_file, &json)?;
        }
        for dir in Table::ALL.map(Table::dir).into_iter().chain([PARTS_DIR]) {
            let dir = path.join(dir);
            fs::create_dir_all(&dir).map_err(IndexError::io(&dir))?;
        }
        remove_interrupted_writes(&path)?;
        Ok(Self {
            path,
            destination: destination.to_path_buf(),
            started_over,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the folder of a different job was deleted when this one was opened, if it was.
    pub fn started_over(&self) -> Option<&str> {
        self.started_over.as_deref()
    }

    /// Deletes the work folder (a run that has nothing to publish).
    pub fn discard(self) -> Result<(), IndexError> {
        fs::remove_dir_all(&self.path).map_err(IndexError::io(&self.path))
    }

    /// Parts already done, checked against their files; parts whose files do not match
    /// their record are forgotten (and will be redone).
    pub fn completed_parts(&self) -> Result<BTreeMap<u32, PartRecord>, IndexError> {
        let dir = self.path.join(PARTS_DIR);
        let mut done = BTreeMap::new();
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(IndexError::io(&dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        for record_path in names {
            let record: Option<PartRecord> = fs::read(&record_path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            let intact = match &record {
                Some(record) => record.files.iter().all(|file| file.matches(&self.path)),
                None => false,
            };
            match record {
                Some(record) if intact => {
                    done.insert(record.part, record);
                }
                _ => {
                    tracing::warn!(
                        "{} does not match its files; the part will be redone",
                        record_path.display()
                    );
                    fs::remove_file(&record_path).map_err(IndexError::io(&record_path))?;
                }
            }
        }
        Ok(done)
    }

    /// Temporary and final paths of `table`'s file for `part`.
    pub fn part_file(&self, table: Table, part: u32) -> (PathBuf, PathBuf) {
        let relative = table.part_path(part);
        let final_path = self.path.join(&relative);
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = final_path.with_file_name(format!("{}{name}", atomic::TEMP_PREFIX));
        (temp, final_path)
    }

    /// Moves a part's flushed temporary files into place and records the part.
    pub fn complete_part(
        &self,
        part: u32,
        first_doc: u32,
        rows: [u64; 3],
        documents: u64,
    ) -> Result<PartRecord, IndexError> {
        let mut files = Vec::with_capacity(3);
        for (table, rows) in Table::ALL.into_iter().zip(rows) {
            let (temp, final_path) = self.part_file(table, part);
            fs::rename(&temp, &final_path).map_err(IndexError::io(&final_path))?;
            let bytes = fs::metadata(&final_path)
                .map_err(IndexError::io(&final_path))?
                .len();
            files.push(FileRecord {
                path: table.part_path(part),
                bytes,
                sha256: sha256_file(&final_path).map_err(IndexError::io(&final_path))?,
                rows,
            });
        }
        for table in Table::ALL {
            atomic::sync_dir(&self.path.join(table.dir()))?;
        }
        let record = PartRecord {
            part,
            first_doc,
            documents,
            tokens: rows[1],
            nonzeros: rows[2],
            files,
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
        atomic::write_file(
            &self
                .path
                .join(PARTS_DIR)
                .join(format!("part-{part:05}.json")),
            &json,
        )?;
        Ok(record)
    }

    /// Writes the manifest, builds the query files with `query_build` (a shard's too: it
    /// is a segment of its index), removes the bookkeeping and publishes the folder at
    /// the destination (replacing what was there in one atomic rename).
    pub fn publish(
        self,
        manifest: &Manifest,
        query_build: &saeidx_query::BuildOptions,
    ) -> Result<PathBuf, IndexError> {
        manifest.write(&self.path)?;
        saeidx_query::build_unlocked_with(&self.path, query_build)?;
        fs::remove_file(self.path.join(JOB_FILE)).map_err(IndexError::io(&self.path))?;
        let parts = self.path.join(PARTS_DIR);
        fs::remove_dir_all(&parts).map_err(IndexError::io(&parts))?;
        carry_labels(&self.destination, &self.path, manifest)?;
        atomic::replace_dir(&self.path, &self.destination)?;
        Ok(self.destination)
    }
}

/// Keeps the labels researchers gave the features of the index being replaced: when
/// `destination` holds an index of the same SAE (same SHA-256, so the same features)
/// with a label registry and the new folder `staged` has none, the registry is copied
/// into it before the swap, and the labelling work folder (`autointerp/`: the LLM's
/// cached answers, which the old folder's removal would lose) is moved along, so a
/// nightly `saeidx labels draft` after the nightly rebuild asks only about what is new.
pub fn carry_labels(
    destination: &Path,
    staged: &Path,
    manifest: &Manifest,
) -> Result<(), IndexError> {
    // The old index's SAE: its manifest's, or its segment set's (an appended index).
    let same_sae = || {
        let sae = &manifest.job.sae.sha256;
        Manifest::read(destination).is_ok_and(|old| old.job.sae.sha256 == *sae)
            || saeidx_format::segments::SegmentSet::read(destination)
                .is_ok_and(|set| set.is_some_and(|set| set.job.sae.sha256 == *sae))
    };
    let old_labels = destination.join(saeidx_query::registry::REGISTRY_FILE);
    let new_labels = staged.join(saeidx_query::registry::REGISTRY_FILE);
    if old_labels.is_file() && !new_labels.exists() && same_sae() {
        let bytes = fs::read(&old_labels).map_err(IndexError::io(&old_labels))?;
        atomic::write_file(&new_labels, &bytes)?;
    }
    let old_work = destination.join(saeidx_query::registry::WORK_DIR);
    let new_work = staged.join(saeidx_query::registry::WORK_DIR);
    if old_work.is_dir() && !new_work.exists() && same_sae() {
        fs::rename(&old_work, &new_work).map_err(IndexError::io(&old_work))?;
    }
    Ok(())
}

/// Deletes what killed runs left half-written under `dir` (temporary names: a table
/// file, the manifest, the query files' staging folder), so that a resumed run
/// publishes exactly the index's files.
fn remove_interrupted_writes(dir: &Path) -> Result<(), IndexError> {
    for entry in fs::read_dir(dir).map_err(IndexError::io(dir))? {
        let path = entry.map_err(IndexError::io(dir))?.path();
        let interrupted = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(atomic::TEMP_PREFIX));
        if path.is_dir() {
            if interrupted {
                fs::remove_dir_all(&path).map_err(IndexError::io(&path))?;
            } else {
                remove_interrupted_writes(&path)?;
            }
        } else if interrupted {
            fs::remove_file(&path).map_err(IndexError::io(&path))?;
        }
    }
    Ok(())
}

/// `dir/.NAME.partial` for `dir/NAME`.
pub fn work_path(destination: &Path) -> PathBuf {
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    destination.with_file_name(format!(".{name}.partial"))
}

/// Names the first top-level difference between two jobs, for error messages.
pub fn describe_difference(
    found: &JobSpec,
    wanted: &JobSpec,
    found_shard: Option<ShardRecord>,
    wanted_shard: Option<ShardRecord>,
) -> String {
    if found_shard != wanted_shard {
        return format!("shard {found_shard:?}, not {wanted_shard:?}");
    }
    let (a, b) = (
        serde_json::to_value(found).unwrap_or_default(),
        serde_json::to_value(wanted).unwrap_or_default(),
    );
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (key, value) in a {
            if b.get(key) != Some(value) {
                return format!("its {key} differs");
            }
        }
    }
    "its job differs".into()
}
