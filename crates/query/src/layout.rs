//! The `query/` folder of an index: its files, the Arrow schemas of the two that are
//! Arrow IPC, and its manifest (described for other tools in `schemas/index/query/`;
//! the block files in `crates/query/FORMAT.md`).
//!
//! | file | one entry per | contents |
//! | --- | --- | --- |
//! | `documents.arrow` | document | `id` utf8, `source` utf8, `text` large binary (UTF-8), `first_token` u64, `tokens` u32 |
//! | `tokens.bin` | token (global number, corpus order) | bit-packed records: token id, byte start, byte length, flags |
//! | `codes.bin` | nonzero activation, token-major | groups of 8 tokens: per token its count, Rice-coded feature gaps, bit-packed values |
//! | `postings.bin` | nonzero activation, feature-major | blocks of 128 postings in token order: Rice-coded token gaps, bit-packed values, each block's largest value |
//! | `features.arrow` | SAE feature | `postings` u32, `count` u32, `documents` u32, `max` f32, `sum` f64, `histogram` binary (LEB128 bins up to the last used), `min` f32 |
//! | `occurrences.bin` (optional) | token, grouped by token id | which ids occur; per id that occurs: its distinct texts, then its tokens ascending (Rice-coded gaps), each with where its codes start in `codes.bin` and its flags (once per id where all the same) |
//!
//! A token's document is the one whose `first_token..first_token + tokens` holds it,
//! its position the distance from `first_token`. Values are stored exactly: the
//! Parquet keeps 11 significant bits (f16 precision), and a value is stored as its
//! 19 high f32 bits. Answers order a feature's postings by value descending, then
//! token, and a token's codes by value descending, then feature. `flags` bit 0 marks
//! a special token, bit 1 an attention sink (the first position of a document or model
//! window). The statistics (`count`, `documents`, `max`, `sum`, `histogram`) leave out
//! special and sink tokens; the histogram has [`HISTOGRAM_BINS`] equal bins over
//! `(0, 2^⌈log2 max⌉]` (see [`histogram_bin`](crate::build::histogram_bin)), and `sum`
//! adds the values strongest first.
//!
//! Text is stored as binary so that opening the file does not validate the whole
//! corpus's UTF-8; each document is checked when it is read.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// The folder inside an index that holds the query files.
pub const QUERY_DIR: &str = "query";
/// The query manifest's file name inside [`QUERY_DIR`].
pub const QUERY_MANIFEST: &str = "manifest.json";
/// The `format` of a query manifest.
pub const QUERY_FORMAT: &str = "saeidx-query";
/// The query format version this saeidx writes.
pub const QUERY_FORMAT_VERSION: u32 = 6;
/// The oldest query format version this saeidx reads: version 2 has no `min` column
/// and bins its histograms over `(0, max]`, so its histograms are recomputed from the
/// postings when asked (rebuild with `saeidx query build` to store them again).
pub const OLDEST_QUERY_FORMAT_VERSION: u32 = 2;
/// The first query format version whose `occurrences.bin` this saeidx reads: version
/// 3's (fixed-width records) is left unread, its folder read as one built before the
/// file (rebuild with `saeidx query build` to read it again).
pub const OCCURRENCES_FORMAT_VERSION: u32 = 4;
/// The first query format version whose `features.arrow` stores each histogram packed
/// (LEB128 bins up to the last used, a binary column) and no `first_posting` column
/// (the sum of the `postings` before it); versions before it are read as they were.
pub const PACKED_FEATURES_VERSION: u32 = 5;
/// Bytes per checksummed chunk of a query file.
pub const CHUNK_BYTES: u64 = 1 << 20;
/// Bins of each feature's activation histogram.
pub const HISTOGRAM_BINS: usize = 20;

/// `flags` bit of a special token (BOS, EOS, ...).
pub const FLAG_SPECIAL: u8 = 1;
/// `flags` bit of an attention-sink position (first of a document or window).
pub const FLAG_SINK: u8 = 2;

/// One of the query files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFile {
    /// Documents and their texts.
    Documents,
    /// Per-token metadata.
    Tokens,
    /// Token-major codes.
    Codes,
    /// Feature-major postings.
    Postings,
    /// Per-feature offsets and statistics.
    Features,
    /// Every token id's texts and occurrences (optional: folders built before it, or
    /// with token ids past [`MAX_OCCURRENCE_IDS`], lack it).
    Occurrences,
}

/// Token ids `occurrences.bin` can describe (one directory entry each): a build whose
/// tokens have larger ids leaves the file out.
pub const MAX_OCCURRENCE_IDS: u64 = 1 << 24;

impl QueryFile {
    /// Every query file, in manifest order (the last, [`QueryFile::Occurrences`], may
    /// be absent).
    pub const ALL: [QueryFile; 6] = [
        QueryFile::Documents,
        QueryFile::Tokens,
        QueryFile::Codes,
        QueryFile::Postings,
        QueryFile::Features,
        QueryFile::Occurrences,
    ];

    /// The query files every folder has.
    pub const REQUIRED: usize = 5;

    /// The file name inside [`QUERY_DIR`].
    pub fn name(self) -> &'static str {
        match self {
            QueryFile::Documents => "documents.arrow",
            QueryFile::Tokens => "tokens.bin",
            QueryFile::Codes => "codes.bin",
            QueryFile::Postings => "postings.bin",
            QueryFile::Features => "features.arrow",
            QueryFile::Occurrences => "occurrences.bin",
        }
    }

    /// Whether the file is Arrow IPC (the others are block files).
    pub fn is_arrow(self) -> bool {
        matches!(self, QueryFile::Documents | QueryFile::Features)
    }

    /// The file's Arrow schema (empty for a block file).
    pub fn schema(self) -> SchemaRef {
        self.schema_of(QUERY_FORMAT_VERSION)
    }

    /// The file's Arrow schema in query format `version` (empty for a block file).
    pub fn schema_of(self, version: u32) -> SchemaRef {
        let u32_field = |name: &str| Field::new(name, DataType::UInt32, false);
        let fields = match self {
            QueryFile::Documents => vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("text", DataType::LargeBinary, false),
                Field::new("first_token", DataType::UInt64, false),
                u32_field("tokens"),
            ],
            QueryFile::Tokens | QueryFile::Codes | QueryFile::Postings | QueryFile::Occurrences => {
                Vec::new()
            }
            QueryFile::Features => {
                let packed = version >= PACKED_FEATURES_VERSION;
                let histogram = if packed {
                    DataType::Binary
                } else {
                    DataType::FixedSizeList(
                        Arc::new(Field::new("item", DataType::UInt32, false)),
                        HISTOGRAM_BINS as i32,
                    )
                };
                (!packed)
                    .then(|| Field::new("first_posting", DataType::UInt64, false))
                    .into_iter()
                    .chain([
                        u32_field("postings"),
                        u32_field("count"),
                        u32_field("documents"),
                        Field::new("max", DataType::Float32, false),
                        Field::new("sum", DataType::Float64, false),
                        Field::new("histogram", histogram, false),
                    ])
                    .chain((version >= 3).then(|| Field::new("min", DataType::Float32, false)))
                    .collect()
            }
        };
        Arc::new(Schema::new(fields))
    }
}

/// One query file as the query manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFileRecord {
    /// File name inside `query/`.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows: of its single record batch (Arrow), or entries (block files).
    pub rows: u64,
    /// xxh3-64 (hex) of each [`CHUNK_BYTES`] chunk, in order.
    pub chunks_xxh3: Vec<String>,
}

/// Totals the query files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueryCounts {
    /// Documents.
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
    /// Tokens that are neither special nor sinks (the statistics' denominator).
    pub content_tokens: u64,
    /// Nonzero activations.
    pub nonzeros: u64,
    /// SAE features.
    pub features: u64,
}

/// `query/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryManifest {
    /// Always [`QUERY_FORMAT`].
    pub format: String,
    /// [`QUERY_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The saeidx version that built the files.
    pub saeidx_version: String,
    /// SHA-256 over the index's job fingerprint and every Parquet file's SHA-256: the
    /// exact data these files were built from.
    pub index_data_sha256: String,
    /// Totals.
    pub counts: QueryCounts,
    /// Bytes per checksummed chunk.
    pub chunk_bytes: u64,
    /// The files, in [`QueryFile::ALL`] order (the last optional).
    pub files: Vec<QueryFileRecord>,
}

/// The SHA-256 that ties query files to the index data they were built from.
pub fn index_data_sha256(manifest: &saeidx_format::manifest::Manifest) -> String {
    let mut parts = vec![manifest.job.fingerprint()];
    for part in &manifest.parts {
        for file in &part.files {
            parts.push(format!("{} {}", file.path, file.sha256));
        }
    }
    saeidx_format::checksum::sha256_hex(parts.join("\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_folder_describes_these_files() {
        for file in QueryFile::ALL.into_iter().filter(|file| file.is_arrow()) {
            let stem = file.name().trim_end_matches(".arrow");
            let path = format!(
                "{}/../../schemas/index/query/{stem}.arrow.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let described: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let fields: Vec<(String, String, bool)> = described["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap().to_string(),
                        f["type"].as_str().unwrap().to_string(),
                        f["nullable"].as_bool().unwrap(),
                    )
                })
                .collect();
            let actual: Vec<(String, String, bool)> = file
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
                .collect();
            assert_eq!(fields, actual, "{path}");
        }
    }
}
