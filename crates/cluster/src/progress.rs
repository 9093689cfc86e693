//! How far the shards got, read from disk.

use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use saeidx_format::manifest::Manifest;
use saeidx_indexer::{parts::Shard, pipeline::shard_destination, workdir::work_path};

use crate::{SlurmError, sibling};

/// The shards' progress as found on disk.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The merged index exists.
    pub merged: bool,
    /// Shards whose folder is finished.
    pub finished: Vec<u32>,
    /// The other shards, with the parts their work folder recorded (they resume there).
    pub unfinished: BTreeMap<u32, usize>,
}

/// Which shards are finished (a published shard folder) and how far the others got.
pub(crate) fn of(output: &Path, shards: u32) -> Result<Progress, SlurmError> {
    let shard_dir = sibling(output, "shards");
    let mut others: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir(&shard_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let count = name
            .split_once("-of-")
            .and_then(|(_, count)| count.parse::<u32>().ok());
        if let Some(count) = count
            && count != shards
            && Manifest::read(&entry.path()).is_ok()
        {
            others.entry(count).or_default().push(name);
        }
    }
    if let Some((found, names)) = others.into_iter().next() {
        return Err(SlurmError::OtherSplit {
            dir: shard_dir,
            found,
            names: names.join(", "),
        });
    }
    let mut finished = Vec::new();
    let mut unfinished = BTreeMap::new();
    for index in 0..shards {
        let folder = shard_destination(
            output,
            Shard {
                index,
                count: shards,
            },
        );
        let done = Manifest::read(&folder).is_ok_and(|manifest| {
            manifest
                .shard
                .is_some_and(|s| (s.index, s.count) == (index, shards))
        });
        if done {
            finished.push(index);
        } else {
            // Part records are `part-NNNNN.json` (a record being written has a temporary name).
            let recorded = fs::read_dir(work_path(&folder).join("parts"))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
                        .count()
                })
                .unwrap_or(0);
            unfinished.insert(index, recorded);
        }
    }
    Ok(Progress {
        merged: Manifest::read(output).is_ok()
            || saeidx_format::segments::SegmentSet::is_segmented(output),
        finished,
        unfinished,
    })
}

/// Slurm's array syntax for sorted indices: runs become ranges (`0-3,5,7-8`).
pub fn array_spec(indices: &[u32]) -> String {
    let mut spec = String::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        while i + 1 < indices.len() && indices[i + 1] == indices[i] + 1 {
            i += 1;
        }
        if !spec.is_empty() {
            spec.push(',');
        }
        match indices[i] {
            end if end == start => write!(spec, "{start}"),
            end => write!(spec, "{start}-{end}"),
        }
        .expect("writing to a String");
        i += 1;
    }
    spec
}
