//! Combining shard outputs into one index.
//!
//! Shard `i` of `n` holds the parts `p` with `p mod n = i` (see [`crate::parts`]). The
//! merged index lists every part once, in order, with the same files, so its data files
//! are byte-identical to a single-process run and its manifest differs only in
//! `timings`. Shards of different jobs, missing or duplicate shards, and damaged files
//! are refused.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use saeidx_format::{
    atomic::StagedDir,
    manifest::{Counts, Manifest, PartRecord},
    metadata::describe_columns,
    tables::Table,
};

use crate::IndexError;

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

/// Merges shard folders into `destination` (published atomically), building its query
/// files with `query_build`, and returns the merged manifest.
pub fn merge(
    shards: &[PathBuf],
    destination: &Path,
    query_build: &saeidx_query::BuildOptions,
) -> Result<Manifest, IndexError> {
    let started = Instant::now();
    let _lock = saeidx_format::lock::OutputLock::acquire(destination)?;
    let manifests: Vec<(PathBuf, Manifest)> = shards
        .iter()
        .map(|dir| Ok((dir.clone(), Manifest::read(dir)?)))
        .collect::<Result<_, IndexError>>()?;
    let first = check_shards(&manifests)?;
    let staged = StagedDir::new(destination)?;
    let (parts, mut timings) = link_parts(&manifests, staged.path())?;
    let numbers: Vec<u32> = parts.keys().copied().collect();
    if numbers != (0..first.corpus_parts as u32).collect::<Vec<_>>() {
        return Err(IndexError::Merge(format!(
            "the shards hold parts {numbers:?}, not every part 0..{}",
            first.corpus_parts
        )));
    }
    let parts: Vec<PartRecord> = parts.into_values().collect();
    let counts = Counts::of_parts(&parts, first.counts.skipped_records);
    timings.insert("merge_s".into(), started.elapsed().as_secs_f64());
    let manifest = Manifest {
        shard: None,
        counts,
        parts,
        timings,
        ..first.clone()
    };
    manifest.check_consistency().map_err(IndexError::Merge)?;
    manifest.write(staged.path())?;
    saeidx_query::build_unlocked_with(staged.path(), query_build)?;
    crate::workdir::carry_labels(destination, staged.path(), &manifest)?;
    staged.publish()?;
    Ok(manifest)
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

/// Seconds per stage, as the manifest records them.
type Timings = BTreeMap<String, f64>;

/// Links (or copies) every shard's part files into `staged`, checking each against its
/// shard's manifest; returns the parts by number and the shards' summed timings.
fn link_parts(
    manifests: &[(PathBuf, Manifest)],
    staged: &Path,
) -> Result<(BTreeMap<u32, PartRecord>, Timings), IndexError> {
    for table in Table::ALL {
        let dir = staged.join(table.dir());
        fs::create_dir_all(&dir).map_err(IndexError::io(&dir))?;
    }
    let mut parts: BTreeMap<u32, PartRecord> = BTreeMap::new();
    let mut timings = Timings::new();
    for (dir, manifest) in manifests {
        for part in &manifest.parts {
            for file in &part.files {
                if !file.matches(dir) {
                    return Err(IndexError::Corrupt {
                        path: dir.join(&file.path),
                        reason: "size or checksum differs from the shard's manifest".into(),
                    });
                }
                let target = staged.join(&file.path);
                let source = dir.join(&file.path);
                if fs::hard_link(&source, &target).is_err() {
                    fs::copy(&source, &target).map_err(IndexError::io(&target))?;
                }
            }
            parts.insert(part.part, part.clone());
        }
        for (stage, seconds) in &manifest.timings {
            *timings.entry(format!("shards_{stage}")).or_default() += seconds;
        }
    }
    Ok((parts, timings))
}
