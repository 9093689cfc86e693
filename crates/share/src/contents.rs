//! What an index folder holds, verified: one index (`manifest.json`), or an index of
//! segments (`segments.json` naming live segments, each a complete index folder under
//! `segments/NAME/`). `segments.json` is read once, so a copy or an upload holds exactly
//! the set it named (segments are immutable; a set published meanwhile is not mixed in).

use std::{fs, path::Path};

use saeidx_format::{
    manifest::{MANIFEST_FILE, Manifest},
    segments::{SEGMENTS_DIR, SEGMENTS_FILE, SegmentSet},
    verify::{VerifyReport, verify},
};
use saeidx_query::layout::QUERY_DIR;

use crate::ShareError;

/// The feature registry's file name in an index folder.
pub(crate) const LABELS_FILE: &str = "labels.json";

/// A verified index folder.
pub(crate) struct Verified {
    /// The index's manifest; for an index of segments, its first segment's with the
    /// set's shared job (what produced every segment).
    pub manifest: Manifest,
    /// What verification checked (every segment's files together).
    pub report: VerifyReport,
    /// Query-file bytes checked (`None`: no query files).
    pub query_bytes: Option<u64>,
    /// `segments.json` as read, for an index of segments.
    pub set: Option<SegmentSet>,
    /// Each index folder within: its path prefix (`""` or `segments/NAME/`) and manifest.
    pub indexes: Vec<(String, Manifest)>,
}

/// Verifies an index folder completely: manifest, every Parquet file (checksums, rows,
/// schema) and, when present, every query-file chunk; for an index of segments, every
/// live segment, each checked against `segments.json`.
pub(crate) fn verify_all(dir: &Path, what: &str, advice: &str) -> Result<Verified, ShareError> {
    let failed = |reason: Box<dyn std::error::Error + Send + Sync>| ShareError::NotVerified {
        what: what.to_string(),
        reason,
        advice: advice.to_string(),
    };
    let Some(set) = SegmentSet::read(dir).map_err(|e| failed(e.into()))? else {
        let (manifest, report) = verify(dir).map_err(|e| failed(e.into()))?;
        let query_bytes = saeidx_query::verify_query_files(dir).map_err(|e| failed(e.into()))?;
        return Ok(Verified {
            indexes: vec![(String::new(), manifest.clone())],
            manifest,
            report,
            query_bytes,
            set: None,
        });
    };
    let mut report = VerifyReport::default();
    let mut query_bytes = None;
    let mut indexes = Vec::with_capacity(set.segments.len());
    for record in &set.segments {
        let segment = SegmentSet::segment_dir(dir, &record.name);
        let (manifest, part) = verify(&segment).map_err(|e| failed(e.into()))?;
        set.check_segment(dir, record, &manifest)
            .map_err(|e| failed(e.into()))?;
        let bytes = saeidx_query::verify_query_files(&segment).map_err(|e| failed(e.into()))?;
        if let Some(bytes) = bytes {
            query_bytes = Some(query_bytes.unwrap_or(0) + bytes);
        }
        report.files += part.files;
        report.bytes += part.bytes;
        report.documents += part.documents;
        report.tokens += part.tokens;
        report.nonzeros += part.nonzeros;
        indexes.push((format!("{SEGMENTS_DIR}/{}/", record.name), manifest));
    }
    let Some((_, first)) = indexes.first() else {
        return Err(failed("segments.json names no segment".into()));
    };
    let mut manifest = first.clone();
    manifest.job = set.job.clone();
    Ok(Verified {
        manifest,
        report,
        query_bytes,
        set: Some(set),
        indexes,
    })
}

impl Verified {
    /// Every file of the index in `dir`, relative to it: each index folder's manifest,
    /// the data files it names and its query files, then the labels when present
    /// (`segments.json` is not listed: it is written from [`Verified::set`]).
    pub(crate) fn files(&self, dir: &Path) -> Vec<String> {
        let mut files = Vec::new();
        for (prefix, manifest) in &self.indexes {
            files.push(format!("{prefix}{MANIFEST_FILE}"));
            files.extend(
                manifest
                    .parts
                    .iter()
                    .flat_map(|part| part.files.iter().map(|f| format!("{prefix}{}", f.path))),
            );
            if let Ok(entries) = fs::read_dir(dir.join(prefix).join(QUERY_DIR)) {
                let mut query: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| format!("{prefix}{QUERY_DIR}/{}", e.file_name().to_string_lossy()))
                    .collect();
                query.sort();
                files.extend(query);
            }
        }
        if dir.join(LABELS_FILE).is_file() {
            files.push(LABELS_FILE.to_string());
        }
        files
    }

    /// `segments.json` as read, to write with a copy (`None` for one index).
    pub(crate) fn segments_json(&self) -> Option<(&'static str, String)> {
        self.set.as_ref().map(|set| {
            let mut json = serde_json::to_string_pretty(set).unwrap_or_default();
            json.push('\n');
            (SEGMENTS_FILE, json)
        })
    }
}
