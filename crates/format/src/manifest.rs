//! `manifest.json`: what an index holds and exactly what produced it.
//!
//! The manifest is the index's table of contents and provenance: the model (repo id,
//! resolved commit, weights hash, dtype), tokenizer, SAE (source, hash, architecture,
//! encoding rule), hook, the token policies (special tokens, windows), the corpus files
//! with their hashes, counts, every data file with its size and checksum, and timings.
//! Its JSON Schema is `schemas/manifest.schema.json`.
//!
//! [`Manifest::job`] is everything that determines the index's content; two runs with
//! equal [`JobSpec`]s produce identical data files, which is what resuming, sharding
//! and merging rely on.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::checksum::sha256_hex;

/// The `format` value of every saeidx index manifest.
pub const FORMAT_NAME: &str = "saeidx-index";

/// The index format version this saeidx writes. A reader accepts exactly the versions
/// it knows (see README, "Format versions").
pub const FORMAT_VERSION: u32 = 1;

/// The model that produced the activations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Hugging Face repo id, or the local folder as given.
    pub source: String,
    /// Requested revision (branch, tag or commit), if any.
    pub revision: Option<String>,
    /// The resolved commit; `None` for a local folder.
    pub commit: Option<String>,
    /// SHA-256 of the weights (see `ModelFiles::weights_sha256`).
    pub weights_sha256: String,
    /// How the weights are stored on disk (e.g. `"mlx-affine-4bit"`, `"bfloat16"`).
    pub stored_dtype: String,
    /// The dtype the forward pass computes in.
    pub compute_dtype: String,
    /// The model's `model_type` from config.json.
    pub model_type: String,
    /// Hidden size (the SAE's input width at residual hooks).
    pub hidden_size: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// The width of the hook's activations when it is not `hidden_size` (all heads'
    /// width at `attn.hook_z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_width: Option<usize>,
}

/// The tokenizer and the special-token policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerRecord {
    /// SHA-256 of `tokenizer.json`.
    pub sha256: String,
    /// Token ids the tokenizer adds to every text by itself (e.g. BOS); the model sees
    /// exactly these plus the text's own tokens.
    pub added_ids: Vec<u32>,
    /// The policy in words.
    pub policy: String,
}

/// How [`SaeRecord::source`] names the SAE, so that live analysis finds it again
/// wherever the index folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaeLocation {
    /// `source` is `org/repo[/subfolder]@commit` on the Hugging Face Hub.
    Hub,
    /// `source` is the SAE's folder relative to the index folder (`/`-separated; for an
    /// index of segments, its top folder, which every segment's manifest shares).
    Relative,
}

/// The SAE and its encoding rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeRecord {
    /// Where it was loaded from: `org/repo[/subfolder]@commit`, or a local folder
    /// (relative to the index folder; see `location`).
    pub source: String,
    /// How `source` names the SAE. Absent in indexes written before saeidx recorded
    /// it: `source` is then a Hub source or the folder as the job named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<SaeLocation>,
    /// Its file format (`mlxterp`, `saelens`, `sparsify`, `gemma-scope`).
    pub format: String,
    /// Architecture (`topk`, `jumprelu`, ...).
    pub architecture: String,
    /// SHA-256 over its files.
    pub sha256: String,
    /// Input width.
    pub d_in: usize,
    /// Number of features.
    pub d_sae: usize,
    /// The per-token activation rule, in words (k, thresholds, ties).
    pub rule: String,
    /// Settings of the SAE that changed how activations were computed or encoded, in
    /// words (e.g. inputs centred per token for a TransformerLens-processed model, BOS
    /// prepended because the SAE was trained with it); absent when none applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// The constant inputs were scaled by (SAELens `expected_average_only_in`), when one
    /// was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_scaling_factor: Option<f32>,
}

impl SaeRecord {
    /// The local folder the SAE was recorded in, for the index whose folder is
    /// `index_dir` (for an index of segments, its top folder, the one with
    /// `segments.json`, never a segment's): `source` joined to `index_dir` when it is
    /// relative to the index, `source` itself when an index written before the location
    /// was recorded names an existing folder; `None` for a Hub source.
    pub fn local_folder(&self, index_dir: &Path) -> Option<PathBuf> {
        match self.location {
            Some(SaeLocation::Relative) => Some(index_dir.join(&self.source)),
            None if Path::new(&self.source).is_dir() => Some(PathBuf::from(&self.source)),
            _ => None,
        }
    }
}

/// How documents are cut into model windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// Tokens per window.
    pub length: usize,
    /// Context-only tokens at the start of each later window.
    pub overlap: usize,
}

/// One corpus file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusFileRecord {
    /// Path relative to its source root (as recorded in `documents.source`).
    pub name: String,
    /// `text`, `jsonl` or `parquet`.
    pub format: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256.
    pub sha256: String,
}

/// The corpus and how it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusRecord {
    /// The sources as the job gave them.
    pub sources: Vec<String>,
    /// Every file read, in reading order.
    pub files: Vec<CorpusFileRecord>,
    /// What happens to a bad record: `stop` or `skip`.
    pub bad_records: String,
    /// Only the first this many documents were indexed, if set.
    pub max_documents: Option<u64>,
    /// Documents go into parts of at least this many bytes of text.
    pub part_bytes: u64,
    /// The metadata columns kept from the corpus records, in the `documents/` table after
    /// its fixed columns (see [`crate::metadata`]). Empty (and absent from the JSON) when
    /// the job keeps none, as in indexes written before saeidx kept metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<crate::metadata::MetadataColumn>,
}

/// Everything that determines an index's data: equal specs give identical files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The model.
    pub model: ModelRecord,
    /// The tokenizer.
    pub tokenizer: TokenizerRecord,
    /// The SAE.
    pub sae: SaeRecord,
    /// The hook point (saeidx's canonical name, e.g. `blocks.15.hook_resid_post`).
    pub hook: String,
    /// The windowing rule.
    pub window: WindowRecord,
    /// Padded tokens per model batch (batches never cross parts).
    pub batch_tokens: usize,
    /// Which positions carry activations (every token is encoded; the first position of
    /// each document is an attention sink, flagged for queries to skip).
    pub positions: String,
    /// How activation values are stored.
    pub values: String,
    /// The corpus.
    pub corpus: CorpusRecord,
}

impl JobSpec {
    /// A short content hash of the spec (hex SHA-256 of its JSON).
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("a job spec serializes");
        sha256_hex(&json)
    }
}

/// A data file of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the index folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256.
    pub sha256: String,
    /// Rows.
    pub rows: u64,
}

impl FileRecord {
    /// Whether the file under `root` has the recorded size and SHA-256.
    pub fn matches(&self, root: &Path) -> bool {
        let path = root.join(&self.path);
        std::fs::metadata(&path).is_ok_and(|m| m.len() == self.bytes)
            && crate::checksum::sha256_file(&path).is_ok_and(|digest| digest == self.sha256)
    }
}

/// One part: consecutive documents, one file per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Part number.
    pub part: u32,
    /// The first document's number.
    pub first_doc: u32,
    /// Documents in the part.
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
    /// Nonzero activations.
    pub nonzeros: u64,
    /// Its files (documents, tokens, activations).
    pub files: Vec<FileRecord>,
}

/// Totals over an index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents.
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
    /// Nonzero activations.
    pub nonzeros: u64,
    /// Parts.
    pub parts: u64,
    /// Bad corpus records skipped.
    pub skipped_records: u64,
}

impl Counts {
    /// The totals of `parts`, with `skipped_records` bad corpus records.
    pub fn of_parts(parts: &[PartRecord], skipped_records: u64) -> Self {
        let mut counts = Counts {
            skipped_records,
            ..Counts::default()
        };
        for part in parts {
            counts.documents += part.documents;
            counts.tokens += part.tokens;
            counts.nonzeros += part.nonzeros;
            counts.parts += 1;
        }
        counts
    }
}

/// Which shard of a sharded job a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// This shard (0-based).
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

/// The index's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The saeidx version that wrote it.
    pub saeidx_version: String,
    /// What produced the data.
    pub job: JobSpec,
    /// `None` for a whole index; the shard for one shard's output.
    pub shard: Option<ShardRecord>,
    /// Parts the whole corpus makes (a shard holds some of them).
    pub corpus_parts: u64,
    /// Totals.
    pub counts: Counts,
    /// Every part, in part order.
    pub parts: Vec<PartRecord>,
    /// Wall-clock seconds by stage (not part of the data: differs between runs).
    pub timings: BTreeMap<String, f64>,
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Missing or unreadable.
    #[error("cannot read {path}: {source} (is this an index folder?)")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Not a manifest of this format.
    #[error("{path} is not a valid saeidx index manifest: {reason}")]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A format version this saeidx does not read.
    #[error(
        "{path} has index format version {found} (written by saeidx {writer}); this saeidx reads version {FORMAT_VERSION}: {}",
        version_advice(*found, writer)
    )]
    Version {
        /// The manifest path.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The saeidx version that wrote it.
        writer: String,
    },
}

/// What to do about an index of another format version (README, "Format versions").
fn version_advice(found: u32, writer: &str) -> String {
    if found > FORMAT_VERSION {
        format!("it is newer than this saeidx; upgrade saeidx to {writer} or later")
    } else {
        format!(
            "rebuild it with this saeidx (`saeidx run` on the same job), or read it with saeidx {writer}"
        )
    }
}

/// The manifest's file name in an index folder.
pub const MANIFEST_FILE: &str = "manifest.json";

impl Manifest {
    /// Reads and checks `dir/manifest.json` (format name and version, part numbering,
    /// counts adding up); data files are checked by `verify`.
    pub fn read(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| ManifestError::Invalid {
            path: path.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(invalid(format!("its \"format\" is not {FORMAT_NAME:?}")));
        }
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| invalid("no format_version".into()))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(ManifestError::Version {
                path: path.clone(),
                found: version as u32,
                writer: value
                    .get("saeidx_version")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string(),
            });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        manifest.check_consistency().map_err(invalid)?;
        Ok(manifest)
    }

    /// Checks that parts are in order, the counts are their sums and the metadata
    /// columns are a valid declaration.
    pub fn check_consistency(&self) -> Result<(), String> {
        crate::metadata::check_columns(&self.job.corpus.metadata)?;
        for pair in self.parts.windows(2) {
            if pair[0].part >= pair[1].part {
                return Err(format!(
                    "parts out of order: {} before {}",
                    pair[0].part, pair[1].part
                ));
            }
        }
        for part in &self.parts {
            if part.files.len() != crate::tables::Table::ALL.len() {
                return Err(format!(
                    "part {} lists {} files",
                    part.part,
                    part.files.len()
                ));
            }
            for (file, table) in part.files.iter().zip(crate::tables::Table::ALL) {
                if file.path != table.part_path(part.part) {
                    return Err(format!(
                        "part {} lists {} where {} belongs",
                        part.part,
                        file.path,
                        table.part_path(part.part)
                    ));
                }
            }
        }
        let sum = Counts::of_parts(&self.parts, self.counts.skipped_records);
        if sum != self.counts {
            return Err(format!(
                "the counts {:?} are not the sums of the parts {:?}",
                self.counts, sum
            ));
        }
        Ok(())
    }

    /// Writes the manifest into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), crate::atomic::AtomicWriteError> {
        let mut json = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        json.push(b'\n');
        crate::atomic::write_file(&dir.join(MANIFEST_FILE), &json)
    }

    /// Every data file, in part and table order.
    pub fn files(&self) -> impl Iterator<Item = &FileRecord> {
        self.parts.iter().flat_map(|part| part.files.iter())
    }

    /// Total bytes of the data files.
    pub fn data_bytes(&self) -> u64 {
        self.files().map(|file| file.bytes).sum()
    }
}
