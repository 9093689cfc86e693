//! Publishing shard outputs together as the segments of one index.
//!
//! Shard `i` of `n` holds a contiguous block of the corpus's parts ([`Shard::parts`])
//! with its own query files: it is a segment. [`publish_shards`] hard-links every shard
//! folder under the index's `segments/` and names them in `segments.json`: no data is
//! copied and nothing is rebuilt, and the index answers exactly as a single-process
//! run's (the same document and token numbers). `saeidx compact` then merges them into
//! one segment whose files equal a single-process run's. Shards of different jobs,
//! missing or duplicate shards, and damaged files are refused.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use saeidx_format::{
    atomic::StagedDir,
    manifest::{Counts, Manifest},
    metadata::describe_columns,
    segments::{SegmentRecord, SegmentSet},
};
use serde::Serialize;

use crate::{IndexError, parts::Shard};

/// The shard folders a sharded run of `destination` wrote (`DEST.shards/I-of-N`), sorted.
pub fn find_shards(destination: &Path) -> Result<Vec<PathBuf>, IndexError> {
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = destination.with_file_name(format!("{name}.shards"));
    let entries = fs::read_dir(&dir).map_err(|e| {
        IndexError::Merge(format!(
            "no shard folder {} ({e}); run the job with --shard i/n first, or name the shard folders",
            dir.display()
        ))
    })?;
    let mut shards: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    shards.sort();
    Ok(shards)
}

/// What [`publish_shards`] published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    /// The index folder.
    pub index: PathBuf,
    /// The shard folders, in shard order.
    pub shards: Vec<PathBuf>,
    /// The segments, named `shard-I-of-N` (shards without documents are left out).
    pub segments: Vec<String>,
    /// The index's totals (the shards' summed).
    pub counts: Counts,
    /// Seconds it took.
    pub seconds: f64,
}

/// Publishes shard folders together as the segments of the index at `destination` (in
/// one atomic rename, replacing what was there; the labels of an index of the same SAE
/// kept): every shard becomes segment `shard-I-of-N`, its files hard-linked (copied only
/// across file systems), nothing rebuilt. Shards of different jobs or splits, missing
/// or duplicate shards are refused with the reason.
pub fn publish_shards(shards: &[PathBuf], destination: &Path) -> Result<Published, IndexError> {
    let started = Instant::now();
    let _lock = saeidx_format::lock::OutputLock::acquire(destination)?;
    let mut manifests: Vec<(PathBuf, Manifest)> = shards
        .iter()
        .map(|dir| Ok((dir.clone(), Manifest::read(dir)?)))
        .collect::<Result<_, IndexError>>()?;
    check_shards(&manifests)?;
    manifests.sort_by_key(|(_, manifest)| manifest.shard.map(|s| s.index));
    check_blocks(&manifests)?;
    let staged = StagedDir::new(destination)?;
    let mut set = SegmentSet::new(&manifests[0].1.job);
    let mut parts = Vec::new();
    for (dir, manifest) in &manifests {
        let (Some(shard), Some(first)) = (manifest.shard, manifest.parts.first()) else {
            continue; // a shard without documents (more shards than parts)
        };
        check_files(dir, manifest)?;
        let name = format!("shard-{}-of-{}", shard.index, shard.count);
        crate::append::link_tree(dir, &SegmentSet::segment_dir(staged.path(), &name))?;
        set.segments.push(SegmentRecord {
            name,
            first_doc: first.first_doc,
            documents: manifest.counts.documents,
            tokens: manifest.counts.tokens,
            deleted: Vec::new(),
        });
        parts.extend(manifest.parts.iter().cloned());
    }
    set.publish(staged.path())?;
    let first = &manifests[0].1;
    crate::workdir::carry_labels(destination, staged.path(), first)?;
    staged.publish()?;
    let counts = Counts::of_parts(&parts, first.counts.skipped_records);
    Ok(Published {
        index: destination.to_path_buf(),
        shards: manifests.into_iter().map(|(dir, _)| dir).collect(),
        segments: set.segments.into_iter().map(|s| s.name).collect(),
        counts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Checks that each shard (sorted by shard number) holds exactly its block of parts
/// ([`Shard::parts`]) with its query files built, so the shards follow each other as
/// segments.
fn check_blocks(manifests: &[(PathBuf, Manifest)]) -> Result<(), IndexError> {
    for (dir, manifest) in manifests {
        let Some(record) = manifest.shard else {
            continue;
        };
        let shard = Shard {
            index: record.index,
            count: record.count,
        };
        let found: Vec<u32> = manifest.parts.iter().map(|p| p.part).collect();
        let expected: Vec<u32> = shard.parts(manifest.corpus_parts as u32).collect();
        if found != expected {
            return Err(IndexError::Merge(format!(
                "{} holds parts {found:?}, not its block {expected:?} of the corpus's {} parts \
                 (a shard written by an older saeidx, which split parts round-robin): run \
                 that shard again",
                dir.display(),
                manifest.corpus_parts
            )));
        }
        let query = dir.join(saeidx_query::layout::QUERY_DIR);
        if !manifest.parts.is_empty() && !query.is_dir() {
            return Err(IndexError::Merge(format!(
                "{} has no query files: build them with `saeidx query build {}`, then publish again",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Checks that a shard's data files have the sizes its manifest records (their
/// checksums were verified when its query files were built from them).
fn check_files(dir: &Path, manifest: &Manifest) -> Result<(), IndexError> {
    for file in manifest.files() {
        let path = dir.join(&file.path);
        let size = fs::metadata(&path).map_err(IndexError::io(&path))?.len();
        if size != file.bytes {
            return Err(IndexError::Corrupt {
                path,
                reason: format!("{size} bytes, the shard's manifest says {}", file.bytes),
            });
        }
    }
    Ok(())
}

/// Checks that the shards are every shard of one job, each once, splitting the corpus
/// the same way; returns the first shard's manifest.
fn check_shards(manifests: &[(PathBuf, Manifest)]) -> Result<&Manifest, IndexError> {
    let Some((first_dir, first)) = manifests.first() else {
        return Err(IndexError::Merge("no shards given".into()));
    };
    let whole =
        |dir: &Path| IndexError::Merge(format!("{} is a whole index, not a shard", dir.display()));
    let first_shard = first.shard.ok_or_else(|| whole(first_dir))?;
    let mut seen = vec![None; first_shard.count as usize];
    for (dir, manifest) in manifests {
        let shard = manifest.shard.ok_or_else(|| whole(dir))?;
        if manifest.job.corpus.metadata != first.job.corpus.metadata {
            return Err(IndexError::Merge(format!(
                "{} keeps other document metadata than {} ({} vs {}); shards of one index \
                 must come from one job file: rerun the odd shards with the same [corpus] \
                 metadata",
                dir.display(),
                first_dir.display(),
                describe_columns(&manifest.job.corpus.metadata),
                describe_columns(&first.job.corpus.metadata),
            )));
        }
        if manifest.job != first.job {
            return Err(IndexError::Merge(format!(
                "{} was made by a different job than {} ({})",
                dir.display(),
                first_dir.display(),
                crate::workdir::describe_difference(&manifest.job, &first.job, None, None)
            )));
        }
        if shard.count != first_shard.count
            || manifest.corpus_parts != first.corpus_parts
            || manifest.counts.skipped_records != first.counts.skipped_records
        {
            return Err(IndexError::Merge(format!(
                "{} splits the corpus differently from {} (shard {}/{} of {} parts vs {}/{} of {})",
                dir.display(),
                first_dir.display(),
                shard.index,
                shard.count,
                manifest.corpus_parts,
                first_shard.index,
                first_shard.count,
                first.corpus_parts
            )));
        }
        if let Some(other) = seen[shard.index as usize].replace(dir.clone()) {
            return Err(IndexError::Merge(format!(
                "shard {}/{} given twice: {} and {}",
                shard.index,
                shard.count,
                other.display(),
                dir.display()
            )));
        }
    }
    if let Some(missing) = seen.iter().position(Option::is_none) {
        return Err(IndexError::Merge(format!(
            "shard {missing}/{} is missing (run it, then merge again)",
            first_shard.count
        )));
    }
    Ok(first)
}
