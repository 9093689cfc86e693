//! On-disk conventions shared by every saeidx writer and reader.
//!
//! - [`atomic`]: output is never half-written: files and folders are written under a
//!   temporary name in the destination's folder, flushed to disk, then renamed.
//! - [`checksum`]: the one content hash (SHA-256, lowercase hex) used for manifests,
//!   asset pins and cache blobs.
#![deny(missing_docs)]

pub mod atomic;
pub mod checksum;
