//! On-disk conventions shared by every saeidx writer and reader.
//!
//! - [`atomic`]: output is never half-written: files and folders are written under a
//!   temporary name in the destination's folder, flushed to disk, then renamed.
//! - [`lock`]: one writer per output folder (a second is refused with the holder's
//!   process id).
//! - [`checksum`]: the one content hash (SHA-256, lowercase hex) used for manifests,
//!   asset pins and cache blobs.
//! - [`metadata`]: typed document metadata columns (the job's declaration, record
//!   values, the `documents/` table's extra columns) and reading that table back.
//! - [`manifest`]: an index's `manifest.json` (provenance, counts, files, checksums).
//! - [`tables`]: the index's Parquet tables (documents, tokens, activations): schemas,
//!   encodings and the part writer.
//! - [`purge`]: deleted documents taken out of a part's rows (a compaction keeps each
//!   one's number as an empty placeholder).
//! - [`segments`]: `segments.json`, the live segments of a segmented index and their
//!   deleted documents, published by one atomic rename.
//! - [`verify`]: an index folder checked against its manifest, row by row.
//! - [`logits`]: `query/logit_effects.bin`, each feature's top and bottom output tokens.
#![deny(missing_docs)]

pub mod atomic;
pub mod checksum;
pub mod lock;
pub mod logits;
pub mod manifest;
pub mod metadata;
pub mod purge;
pub mod segments;
pub mod tables;
pub mod verify;
