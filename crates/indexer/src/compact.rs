//! Compaction: adjacent live segments of a segmented index merged into one.
//!
//! A merged segment keeps every global document number of the segments it replaces
//! (numbers stay stable): its parts are theirs in order, renumbered from 0, hard-linked
//! when they hold no deleted document and rewritten otherwise, a deleted document
//! becoming an empty placeholder row without tokens or activations
//! ([`saeidx_format::purge`]; it stays in the set's deleted ranges). Its query files are
//! built by the research-scale streaming build in bounded memory
//! ([`saeidx_query::BuildOptions::memory`]), its logit effects are linked from the
//! first merged segment that has them, and the new set is published by one atomic
//! rename of `segments.json`. The index answers exactly as before.
//!
//! Old segments are never deleted at once: they become *retired* in the new set
//! ([`RetiredSegment`]) and a later writer ([`clean`], run by compactions and
//! incremental runs) deletes them once they have been retired for the grace period, so
//! a reader that read the previous `segments.json` never finds its segments missing
//! while it opens them (open segments stay readable anyway: their files are mapped).
//! A compaction killed at any point leaves the old set published and readable; the
//! next one deletes what it left (never published, so no reader saw it) and converges.
//!
//! [`TieredPolicy`] chooses what to merge at the end of a nightly run: adjacent
//! segments of the same size tier, as Lucene's `LogMergePolicy` (segments here cover
//! consecutive document numbers, so only neighbours can merge).

use std::{
    collections::BTreeMap,
    fs,
    ops::Range,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use saeidx_format::{
    atomic::StagedDir,
    checksum::sha256_file,
    logits::LOGIT_EFFECTS_PATH,
    manifest::{Counts, FORMAT_NAME, FORMAT_VERSION, FileRecord, Manifest, PartRecord},
    purge,
    segments::{RetiredSegment, SEGMENTS_DIR, SegmentRecord, SegmentSet},
    tables::{Table, TableWriter},
    verify::{self, DocumentColumns, VerifyReport},
};
use serde::{Deserialize, Serialize};

use crate::IndexError;

/// Seconds a retired segment stays on disk by default before a writer deletes it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// Which segments a compaction merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Nothing (the default of `[run] compact`).
    #[default]
    Never,
    /// Adjacent segments of one size tier ([`TieredPolicy`]).
    Tiered,
    /// Every live segment into one (`saeidx compact`).
    All,
}

/// Lucene's log merge policy over adjacent segments: a segment of `t` live tokens is on
/// tier `floor(log_f(t / floor_tokens))` (0 below `floor_tokens · f`), and whenever
/// `merge_factor` (`f`) adjacent segments share a tier they merge into one of the next
/// tier. A nightly append adds a small segment; after `f` nights they merge, after `f²`
/// those merge, so an index of `N` tokens has at most about `f · log_f(N)` segments and
/// each token is rewritten about `log_f(N)` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredPolicy {
    /// Segments merged at once, and the size ratio between tiers.
    pub merge_factor: usize,
    /// Segments below `floor_tokens · merge_factor` tokens all share the lowest tier.
    pub floor_tokens: u64,
}

impl Default for TieredPolicy {
    fn default() -> Self {
        Self {
            merge_factor: 8,
            floor_tokens: 1 << 20,
        }
    }
}

impl TieredPolicy {
    /// The tier of a segment of `tokens` tokens.
    pub fn tier(&self, tokens: u64) -> u32 {
        let factor = self.merge_factor.max(2) as u64;
        let mut size = self.floor_tokens.max(1).saturating_mul(factor);
        let mut tier = 0;
        while tokens >= size {
            tier += 1;
            size = size.saturating_mul(factor);
        }
        tier
    }

    /// The first run of `merge_factor` adjacent segments (of `tokens` tokens each, in
    /// document order) on one tier, if any.
    pub fn next_merge(&self, tokens: &[u64]) -> Option<Range<usize>> {
        let factor = self.merge_factor.max(2);
        let tiers: Vec<u32> = tokens.iter().map(|t| self.tier(*t)).collect();
        (0..tiers.len().saturating_sub(factor - 1))
            .find(|&start| {
                tiers[start..start + factor]
                    .iter()
                    .all(|t| *t == tiers[start])
            })
            .map(|start| start..start + factor)
    }
}

/// How [`compact`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// What to merge.
    pub policy: Policy,
    /// The tiers of [`Policy::Tiered`].
    pub tiers: TieredPolicy,
    /// How the merged segment's query files are built (its memory budget).
    pub query_build: saeidx_query::BuildOptions,
    /// How long retired segments stay on disk before a writer deletes them.
    pub grace: Duration,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            policy: Policy::All,
            tiers: TieredPolicy::default(),
            query_build: saeidx_query::BuildOptions::default(),
            grace: DEFAULT_GRACE,
        }
    }
}

/// One merge a compaction made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Merged {
    /// The segments merged, in document order.
    pub from: Vec<String>,
    /// The new segment.
    pub into: String,
    /// Parts hard-linked as they were.
    pub linked_parts: usize,
    /// Parts rewritten without their deleted documents' text, tokens and activations.
    pub rewritten_parts: usize,
    /// Seconds it took (query-file build included).
    pub seconds: f64,
}

/// What [`compact`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompactSummary {
    /// The index folder.
    pub index: PathBuf,
    /// The merges, in the order they were published.
    pub merges: Vec<Merged>,
    /// Folders deleted under `segments/`: retired past their grace period, or left by
    /// interrupted writers.
    pub removed: Vec<String>,
    /// `segments.json`'s generation after the compaction (`None`: not segmented).
    pub generation: Option<u64>,
    /// Live segments after it.
    pub segments: usize,
}

/// Compacts the segmented index in `dir` by `options.policy`, publishing each merge by
/// one atomic rename of `segments.json` (see the module docs). A folder without
/// `segments.json` is one segment already: nothing to do.
pub fn compact(dir: &Path, options: &CompactOptions) -> Result<CompactSummary, IndexError> {
    let _lock = saeidx_format::lock::OutputLock::acquire(dir)?;
    compact_locked(dir, options)
}

/// [`compact`] for a caller that holds the index's output lock.
pub fn compact_locked(dir: &Path, options: &CompactOptions) -> Result<CompactSummary, IndexError> {
    let mut summary = CompactSummary {
        index: dir.to_path_buf(),
        merges: Vec::new(),
        removed: Vec::new(),
        generation: None,
        segments: 1,
    };
    let Some(mut set) = SegmentSet::read(dir)? else {
        return Ok(summary);
    };
    summary.removed = clean(dir, &mut set, options.grace, &[])?;
    let mut merge = |set: &mut SegmentSet, range| -> Result<(), IndexError> {
        summary.merges.push(merge_range(dir, set, range, options)?);
        summary.removed.extend(clean(dir, set, options.grace, &[])?);
        Ok(())
    };
    match options.policy {
        Policy::Never => {}
        Policy::All => {
            let all = 0..set.segments.len();
            if all.len() > 1 || (all.len() == 1 && purgeable(dir, &set.segments[0])?) {
                merge(&mut set, all)?;
            }
        }
        Policy::Tiered => loop {
            let tokens: Vec<u64> = set.segments.iter().map(|s| s.tokens).collect();
            let Some(range) = options.tiers.next_merge(&tokens) else {
                break;
            };
            merge(&mut set, range)?;
        },
    }
    summary.generation = Some(set.generation);
    summary.segments = set.segments.len();
    Ok(summary)
}

/// Whether a segment has deleted documents whose text and tokens are still in its
/// files (a placeholder left by an earlier compaction holds nothing).
fn purgeable(dir: &Path, record: &SegmentRecord) -> Result<bool, IndexError> {
    if record.deleted.is_empty() {
        return Ok(false);
    }
    let segment_dir = SegmentSet::segment_dir(dir, &record.name);
    let manifest = Manifest::read(&segment_dir)?;
    for part in &manifest.parts {
        if overlaps_deleted(part, record) && holds_deleted(&segment_dir, part, record, &manifest)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `part` holds a document `record` deletes.
fn overlaps_deleted(part: &PartRecord, record: &SegmentRecord) -> bool {
    let docs = u64::from(part.first_doc)..u64::from(part.first_doc) + part.documents;
    record
        .deleted
        .iter()
        .any(|[start, end]| u64::from(*start) < docs.end && docs.start < u64::from(*end))
}

/// Merges `set.segments[range]` into a new segment, publishes the new set (the old
/// segments retired) and returns what was done.
fn merge_range(
    dir: &Path,
    set: &mut SegmentSet,
    range: Range<usize>,
    options: &CompactOptions,
) -> Result<Merged, IndexError> {
    let started = Instant::now();
    let name = format!("compact-{:06}", set.generation + 1);
    let merging: Vec<SegmentRecord> = set.segments[range.clone()].to_vec();
    let destination = SegmentSet::segment_dir(dir, &name);
    let staged = StagedDir::new(&destination)?;
    let written = write_merged(dir, set, &merging, staged.path())?;
    written
        .manifest
        .check_consistency()
        .map_err(|reason| IndexError::Corrupt {
            path: staged.path().to_path_buf(),
            reason,
        })?;
    written.manifest.write(staged.path())?;
    saeidx_query::build_unlocked_with(staged.path(), &options.query_build)?;
    link_logit_effects(dir, &merging, staged.path())?;
    staged.publish()?;
    let mut deleted: Vec<[u32; 2]> = Vec::new();
    for range in merging.iter().flat_map(|record| &record.deleted) {
        match deleted.last_mut() {
            Some(last) if last[1] == range[0] => last[1] = range[1],
            _ => deleted.push(*range),
        }
    }
    let record = SegmentRecord {
        name: name.clone(),
        first_doc: merging[0].first_doc,
        documents: written.manifest.counts.documents,
        tokens: written.manifest.counts.tokens,
        deleted,
    };
    let since = now_seconds();
    set.retired
        .extend(merging.iter().map(|record| RetiredSegment {
            name: record.name.clone(),
            since,
        }));
    set.segments.splice(range, [record]);
    set.publish(dir)?;
    Ok(Merged {
        from: merging.into_iter().map(|r| r.name).collect(),
        into: name,
        linked_parts: written.linked,
        rewritten_parts: written.rewritten,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What [`write_merged`] wrote.
struct Written {
    manifest: Manifest,
    linked: usize,
    rewritten: usize,
}

/// Writes the parts of `merging` (in order, renumbered from 0) into `staged` and
/// returns the merged segment's manifest.
fn write_merged(
    dir: &Path,
    set: &SegmentSet,
    merging: &[SegmentRecord],
    staged: &Path,
) -> Result<Written, IndexError> {
    for table in Table::ALL {
        let table_dir = staged.join(table.dir());
        fs::create_dir_all(&table_dir).map_err(IndexError::io(&table_dir))?;
    }
    let mut written = Written {
        manifest: Manifest::read(&SegmentSet::segment_dir(dir, &merging[0].name))?,
        linked: 0,
        rewritten: 0,
    };
    let mut parts = Vec::new();
    let mut next_doc = u64::from(merging[0].first_doc);
    for record in merging {
        let segment_dir = SegmentSet::segment_dir(dir, &record.name);
        let manifest = Manifest::read(&segment_dir)?;
        set.check_segment(dir, record, &manifest)?;
        if record.doc_range().start != next_doc {
            return Err(IndexError::Corrupt {
                path: dir.join(saeidx_format::segments::SEGMENTS_FILE),
                reason: format!(
                    "documents {next_doc}..{} are in no segment: segments that do not follow each other cannot be merged",
                    record.first_doc
                ),
            });
        }
        next_doc = record.doc_range().end;
        for part in &manifest.parts {
            let number = parts.len() as u32;
            let purges = overlaps_deleted(part, record)
                && holds_deleted(&segment_dir, part, record, &manifest)?;
            parts.push(if purges {
                written.rewritten += 1;
                rewrite_part(&segment_dir, &manifest, part, record, staged, number)?
            } else {
                written.linked += 1;
                link_part(&segment_dir, part, staged, number)?
            });
        }
        // The newest segment's job records the corpus files last read.
        written.manifest.job = manifest.job;
        written.manifest.counts.skipped_records = manifest.counts.skipped_records;
    }
    let skipped = written.manifest.counts.skipped_records;
    written.manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        saeidx_version: env!("CARGO_PKG_VERSION").into(),
        shard: None,
        corpus_parts: parts.len() as u64,
        counts: Counts::of_parts(&parts, skipped),
        parts,
        timings: BTreeMap::new(),
        ..written.manifest
    };
    Ok(written)
}

/// Whether a deleted document of `part` still has tokens (a placeholder an earlier
/// compaction left has none: the part need not be rewritten for it).
fn holds_deleted(
    segment_dir: &Path,
    part: &PartRecord,
    record: &SegmentRecord,
    manifest: &Manifest,
) -> Result<bool, IndexError> {
    if part.tokens == 0 {
        return Ok(false);
    }
    let tables = verify::read_part_with(
        segment_dir,
        part,
        manifest.job.sae.d_sae,
        DocumentColumns::Declared(&manifest.job.corpus.metadata),
        &mut VerifyReport::default(),
    )?;
    for batch in &tables.tokens {
        let kept = purge::rows_without(batch, &|doc| record.is_deleted(doc))
            .map_err(|e| arrow_error(segment_dir, e))?;
        if kept.num_rows() != batch.num_rows() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn arrow_error(path: &Path, error: arrow_schema::ArrowError) -> IndexError {
    IndexError::Corrupt {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Hard-links (or copies) `part`'s files as part `number` of `staged`.
fn link_part(
    segment_dir: &Path,
    part: &PartRecord,
    staged: &Path,
    number: u32,
) -> Result<PartRecord, IndexError> {
    let mut files = Vec::with_capacity(part.files.len());
    for (file, table) in part.files.iter().zip(Table::ALL) {
        let source = segment_dir.join(&file.path);
        let size = fs::metadata(&source)
            .map_err(IndexError::io(&source))?
            .len();
        if size != file.bytes {
            return Err(IndexError::Corrupt {
                path: source,
                reason: format!("{size} bytes, its manifest says {}", file.bytes),
            });
        }
        let path = table.part_path(number);
        crate::append::link_tree(&source, &staged.join(&path))?;
        files.push(FileRecord {
            path,
            ..file.clone()
        });
    }
    Ok(PartRecord {
        part: number,
        files,
        ..part.clone()
    })
}

/// Rewrites `part` as part `number` of `staged` without its deleted documents' text,
/// tokens and activations (each read in full and verified: one part in memory).
fn rewrite_part(
    segment_dir: &Path,
    manifest: &Manifest,
    part: &PartRecord,
    record: &SegmentRecord,
    staged: &Path,
    number: u32,
) -> Result<PartRecord, IndexError> {
    let metadata = &manifest.job.corpus.metadata;
    let tables = verify::read_part_with(
        segment_dir,
        part,
        manifest.job.sae.d_sae,
        DocumentColumns::Declared(metadata),
        &mut VerifyReport::default(),
    )?;
    let deleted = |doc: u32| record.is_deleted(doc);
    let mut files = Vec::with_capacity(3);
    let mut rows = [0u64; 3];
    for (i, (table, batches)) in Table::ALL
        .into_iter()
        .zip([&tables.documents, &tables.tokens, &tables.activations])
        .enumerate()
    {
        let path = staged.join(table.part_path(number));
        let mut writer = match table {
            Table::Documents => TableWriter::create_documents(&path, metadata)?,
            _ => TableWriter::create(table, &path)?,
        };
        for batch in batches {
            let kept = match table {
                Table::Documents => purge::documents_without(batch, &deleted),
                _ => purge::rows_without(batch, &deleted),
            }
            .map_err(|e| arrow_error(&path, e))?;
            writer.write_batch(&kept)?;
        }
        rows[i] = writer.finish()?;
        files.push(FileRecord {
            path: table.part_path(number),
            bytes: fs::metadata(&path).map_err(IndexError::io(&path))?.len(),
            sha256: sha256_file(&path).map_err(IndexError::io(&path))?,
            rows: rows[i],
        });
    }
    Ok(PartRecord {
        part: number,
        first_doc: part.first_doc,
        documents: rows[0],
        tokens: rows[1],
        nonzeros: rows[2],
        files,
    })
}

/// Links the first merged segment's logit effects (the same SAE and model for all)
/// into the new segment.
fn link_logit_effects(
    dir: &Path,
    merging: &[SegmentRecord],
    staged: &Path,
) -> Result<(), IndexError> {
    for record in merging {
        let source = SegmentSet::segment_dir(dir, &record.name).join(LOGIT_EFFECTS_PATH);
        if source.is_file() {
            return crate::append::link_tree(&source, &staged.join(LOGIT_EFFECTS_PATH));
        }
    }
    Ok(())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Deletes, under the index's `segments/` folder, what no reader can need (the caller
/// holds the index's output lock): retired segments retired at least `grace` ago
/// (dropped from `set`, published with its next change), segment folders `set` never
/// named (a compaction killed before it published) and staging folders of killed
/// writers, except the folders `keep` names (an incremental run's own work, which it
/// resumes). Returns the names deleted.
pub fn clean(
    dir: &Path,
    set: &mut SegmentSet,
    grace: Duration,
    keep: &[String],
) -> Result<Vec<String>, IndexError> {
    let root = dir.join(SEGMENTS_DIR);
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let now = now_seconds();
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(IndexError::io(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) || set.segments.iter().any(|s| s.name == name) {
            continue;
        }
        let expired = match set.retired.iter().find(|r| r.name == name) {
            Some(retired) => retired.since.saturating_add(grace.as_secs()) <= now,
            // Never published (a killed compaction's segment or staging folder, a
            // killed append's work folder that no later run resumes).
            None => true,
        };
        if !expired {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(IndexError::io(&path))?;
        } else {
            fs::remove_file(&path).map_err(IndexError::io(&path))?;
        }
        removed.push(name);
    }
    set.retired
        .retain(|retired| root.join(&retired.name).exists());
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiered_policy_merges_runs_of_one_tier() {
        let policy = TieredPolicy {
            merge_factor: 3,
            floor_tokens: 10,
        };
        assert_eq!(
            [0, 29, 30, 89, 90, 269, 270].map(|t| policy.tier(t)),
            [0, 0, 1, 1, 2, 2, 3]
        );
        assert_eq!(policy.next_merge(&[500, 5, 5]), None);
        assert_eq!(policy.next_merge(&[500, 5, 5, 5]), Some(1..4));
        assert_eq!(policy.next_merge(&[500, 40, 40, 50, 5]), Some(1..4));
        assert_eq!(policy.next_merge(&[]), None);
    }
}
