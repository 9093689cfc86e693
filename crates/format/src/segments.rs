//! `segments.json`: an index made of immutable segments.
//!
//! A segmented index folder holds its segments under `segments/NAME/` (each a complete
//! index folder: `manifest.json`, its Parquet parts, its `query/` files) and one small
//! top-level `segments.json` naming the live segments, in document order, with each
//! one's deleted documents and the job they all share. Publishing a new set of segments
//! (an append, a compaction, new deletions) is one atomic rename of `segments.json`
//! ([`SegmentSet::publish`]): a reader sees the old set or the new one, never a mix.
//! Segments are never changed after they are written; a segment no set names any more
//! is garbage a writer may delete.
//!
//! Document numbers are global and stable: a segment's Parquet numbers its documents
//! from its `first_doc` on, segments follow each other in increasing `first_doc`
//! order without overlapping, and a document removed or changed later keeps its number
//! in the set's `deleted` ranges (it is never answered again; a changed document comes
//! back under a new number in a newer segment). A folder with a `manifest.json` and no
//! `segments.json` (every index written before segments) is read as one segment: the
//! folder itself, nothing deleted. Its JSON Schema is
//! `schemas/index/segments.schema.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{JobSpec, Manifest};

/// The file naming an index's live segments.
pub const SEGMENTS_FILE: &str = "segments.json";

/// The folder holding the segments.
pub const SEGMENTS_DIR: &str = "segments";

/// The `format` value of `segments.json`.
pub const SEGMENTS_FORMAT: &str = "saeidx-segments";

/// The `segments.json` version this saeidx writes and reads.
pub const SEGMENTS_VERSION: u32 = 1;

/// One live segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Its folder's name under `segments/` (letters, digits, `-`, `_`, `.`; not
    /// starting with `.`).
    pub name: String,
    /// The global number of its first document.
    pub first_doc: u32,
    /// Its documents (deleted ones included).
    pub documents: u64,
    /// Its tokens (deleted documents' included).
    pub tokens: u64,
    /// Deleted documents: sorted, disjoint, non-empty `[start, end)` ranges of global
    /// document numbers inside the segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<[u32; 2]>,
}

impl SegmentRecord {
    /// The segment's global document numbers.
    pub fn doc_range(&self) -> std::ops::Range<u64> {
        u64::from(self.first_doc)..u64::from(self.first_doc) + self.documents
    }

    /// Whether global document `doc` is deleted.
    pub fn is_deleted(&self, doc: u32) -> bool {
        let at = self.deleted.partition_point(|range| range[1] <= doc);
        self.deleted.get(at).is_some_and(|range| range[0] <= doc)
    }

    /// How many of its documents are deleted.
    pub fn deleted_documents(&self) -> u64 {
        self.deleted
            .iter()
            .map(|range| u64::from(range[1] - range[0]))
            .sum()
    }

    /// Marks global document `doc` deleted (a number outside the segment is ignored).
    pub fn delete(&mut self, doc: u32) {
        if !self.doc_range().contains(&u64::from(doc)) || self.is_deleted(doc) {
            return;
        }
        let at = self.deleted.partition_point(|range| range[0] < doc);
        self.deleted.insert(at, [doc, doc + 1]);
        // Join touching ranges.
        let mut joined: Vec<[u32; 2]> = Vec::with_capacity(self.deleted.len());
        for range in self.deleted.drain(..) {
            match joined.last_mut() {
                Some(last) if last[1] >= range[0] => last[1] = last[1].max(range[1]),
                _ => joined.push(range),
            }
        }
        self.deleted = joined;
    }
}

/// `segments.json`: the live segments of an index and the job they share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSet {
    /// Always [`SEGMENTS_FORMAT`].
    pub format: String,
    /// Always [`SEGMENTS_VERSION`].
    pub format_version: u32,
    /// Raised by one at every publish.
    pub generation: u64,
    /// What every segment's job must equal, except the corpus files read (see
    /// [`same_job`]); stored with `corpus.files` empty.
    pub job: JobSpec,
    /// The live segments, in increasing `first_doc` order.
    pub segments: Vec<SegmentRecord>,
    /// Segments a compaction took out of the set, left on disk for readers that opened
    /// an earlier set until a later writer deletes them (see [`RetiredSegment`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredSegment>,
}

/// A segment no longer in the set whose folder is still on disk: a reader that read an
/// earlier `segments.json` may still be opening it. Writers delete it once `since` is
/// older than their grace period (an open segment's files stay readable after the
/// deletion: they are memory-mapped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredSegment {
    /// Its folder's name under `segments/`.
    pub name: String,
    /// When it left the set, in seconds since the Unix epoch.
    pub since: u64,
}

/// Why `segments.json` could not be read or published.
#[derive(Debug, thiserror::Error)]
pub enum SegmentsError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid segment set.
    #[error(
        "{path} is not a valid segment set: {reason} (restore it from a backup, or rebuild the index with `saeidx run JOB --replace`)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A segment's manifest does not belong to the set.
    #[error("segment {segment} of {dir} does not belong to its index: {reason}")]
    Mismatch {
        /// The index folder.
        dir: PathBuf,
        /// The segment's name.
        segment: String,
        /// What differs.
        reason: String,
    },
    /// A segment's manifest.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// Writing.
    #[error(transparent)]
    Write(#[from] crate::atomic::AtomicWriteError),
}

/// `job` without what may differ between the segments of one index (the corpus files
/// each run read).
pub fn shared_job(job: &JobSpec) -> JobSpec {
    let mut shared = job.clone();
    shared.corpus.files.clear();
    shared
}

/// `Ok` when segments made by `a` and `b` may share an index (equal jobs apart from the
/// corpus files read); else what differs, in words.
pub fn same_job(a: &JobSpec, b: &JobSpec) -> Result<(), String> {
    let (a, b) = (shared_job(a), shared_job(b));
    if a == b {
        return Ok(());
    }
    let mut differ = Vec::new();
    let mut field = |name: &str, same: bool| {
        if !same {
            differ.push(name.to_string());
        }
    };
    field("model", a.model == b.model);
    field("tokenizer", a.tokenizer == b.tokenizer);
    field("SAE", a.sae == b.sae);
    field("hook", a.hook == b.hook);
    field("windowing", a.window == b.window);
    field("batch size", a.batch_tokens == b.batch_tokens);
    field("positions", a.positions == b.positions);
    field("values", a.values == b.values);
    field("corpus settings", a.corpus == b.corpus);
    Err(format!("a different {}", differ.join(", ")))
}

impl SegmentSet {
    /// A set of one segment made by `job`.
    pub fn new(job: &JobSpec) -> Self {
        Self {
            format: SEGMENTS_FORMAT.into(),
            format_version: SEGMENTS_VERSION,
            generation: 0,
            job: shared_job(job),
            segments: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// The folder of segment `name` of the index in `dir`.
    pub fn segment_dir(dir: &Path, name: &str) -> PathBuf {
        dir.join(SEGMENTS_DIR).join(name)
    }

    /// Whether `dir` is a segmented index (it has `segments.json`).
    pub fn is_segmented(dir: &Path) -> bool {
        dir.join(SEGMENTS_FILE).is_file()
    }

    /// Reads and checks `dir/segments.json`; `None` when there is none (a folder of
    /// one segment, or no index).
    pub fn read(dir: &Path) -> Result<Option<Self>, SegmentsError> {
        let path = dir.join(SEGMENTS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SegmentsError::Read { path, source }),
        };
        let invalid = |reason: String| SegmentsError::Invalid {
            path: path.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(SEGMENTS_FORMAT) {
            return Err(invalid(format!(
                "its \"format\" is not {SEGMENTS_FORMAT:?}"
            )));
        }
        if value.get("format_version").and_then(|v| v.as_u64()) != Some(u64::from(SEGMENTS_VERSION))
        {
            return Err(invalid(format!(
                "format_version {} (this saeidx reads {SEGMENTS_VERSION}; use a newer saeidx)",
                value["format_version"]
            )));
        }
        let set: SegmentSet = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        set.check().map_err(invalid)?;
        Ok(Some(set))
    }

    /// Checks names, order and deleted ranges.
    pub fn check(&self) -> Result<(), String> {
        check_records(&self.segments)?;
        for retired in &self.retired {
            if !valid_name(&retired.name) || self.segments.iter().any(|s| s.name == retired.name) {
                return Err(format!(
                    "retired segment {:?} is not a valid name, or still live",
                    retired.name
                ));
            }
        }
        Ok(())
    }

    /// Whether `name` is a live or retired segment of this set.
    pub fn names(&self, name: &str) -> bool {
        self.segments.iter().any(|s| s.name == name) || self.retired.iter().any(|r| r.name == name)
    }

    /// Checks that segment `segment`'s manifest (read from its folder) is the one this
    /// set names: same shared job, same first document and counts.
    pub fn check_segment(
        &self,
        dir: &Path,
        segment: &SegmentRecord,
        manifest: &Manifest,
    ) -> Result<(), SegmentsError> {
        let mismatch = |reason: String| SegmentsError::Mismatch {
            dir: dir.to_path_buf(),
            segment: segment.name.clone(),
            reason,
        };
        same_job(&self.job, &manifest.job).map_err(|why| {
            mismatch(format!(
                "it was made by another job ({why}); an index's segments share model, weights, tokenizer, SAE, hook and windowing"
            ))
        })?;
        let first_doc = manifest
            .parts
            .first()
            .map_or(segment.first_doc, |p| p.first_doc);
        if first_doc != segment.first_doc
            || manifest.counts.documents != segment.documents
            || manifest.counts.tokens != segment.tokens
        {
            return Err(mismatch(format!(
                "segments.json says documents from {} ({} documents, {} tokens), its manifest from {first_doc} ({} documents, {} tokens)",
                segment.first_doc,
                segment.documents,
                segment.tokens,
                manifest.counts.documents,
                manifest.counts.tokens
            )));
        }
        Ok(())
    }

    /// The number the next new document gets (one past the last segment's).
    pub fn next_doc(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.doc_range().end)
    }

    /// Live (not deleted) documents.
    pub fn live_documents(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.documents - s.deleted_documents())
            .sum()
    }

    /// Publishes this set as `dir/segments.json` with the next generation, in one
    /// atomic rename (the segments it names must be complete on disk already).
    pub fn publish(&mut self, dir: &Path) -> Result<(), SegmentsError> {
        self.check().map_err(|reason| SegmentsError::Invalid {
            path: dir.join(SEGMENTS_FILE),
            reason,
        })?;
        self.generation += 1;
        let mut json = serde_json::to_vec_pretty(self).expect("a segment set serializes");
        json.push(b'\n');
        crate::atomic::write_file(&dir.join(SEGMENTS_FILE), &json)?;
        Ok(())
    }
}

/// Letters, digits, `-`, `_`, `.`; not empty, not starting with `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks segment names, document order and deleted ranges.
fn check_records(segments: &[SegmentRecord]) -> Result<(), String> {
    let mut next_doc = 0u64;
    for segment in segments {
        let name = &segment.name;
        if !valid_name(name) {
            return Err(format!("segment name {name:?}"));
        }
        let range = segment.doc_range();
        if range.start < next_doc {
            return Err(format!(
                "segment {name} starts at document {} before the previous one ends ({next_doc})",
                range.start
            ));
        }
        if range.end > u64::from(u32::MAX) {
            return Err(format!("segment {name} numbers documents past u32"));
        }
        next_doc = range.end;
        let mut previous_end = range.start;
        for deleted in &segment.deleted {
            let (start, end) = (u64::from(deleted[0]), u64::from(deleted[1]));
            if start >= end || start < previous_end || end > range.end {
                return Err(format!(
                    "segment {name}: deleted range {deleted:?} is empty, out of order or outside documents {range:?}"
                ));
            }
            previous_end = end;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(first_doc: u32, documents: u64) -> SegmentRecord {
        SegmentRecord {
            name: format!("s{first_doc}"),
            first_doc,
            documents,
            tokens: documents * 3,
            deleted: Vec::new(),
        }
    }

    #[test]
    fn deletions_join_into_sorted_ranges() {
        let mut segment = record(10, 10);
        for doc in [15, 13, 14, 11, 25, 9, 19] {
            segment.delete(doc);
        }
        assert_eq!(segment.deleted, vec![[11, 12], [13, 16], [19, 20]]);
        assert!(segment.is_deleted(14) && segment.is_deleted(19) && !segment.is_deleted(12));
        assert_eq!(segment.deleted_documents(), 5);
    }

    #[test]
    fn overlapping_segments_and_bad_names_are_refused() {
        let mut set = vec![record(0, 5), record(5, 5)];
        assert!(check_records(&set).is_ok());
        set[1].first_doc = 4;
        assert!(
            check_records(&set)
                .unwrap_err()
                .contains("before the previous one ends")
        );
        set[1].first_doc = 5;
        set[1].name = "../x".into();
        assert!(check_records(&set).unwrap_err().contains("segment name"));
        set[1].name = "s5".into();
        set[1].deleted = vec![[3, 4]];
        assert!(check_records(&set).unwrap_err().contains("deleted range"));
    }
}
