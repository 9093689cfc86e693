//! `query/logit_effects.bin`: each feature's direct effect on the model's output logits,
//! the top and bottom `k` tokens of `W_dec[f] · W_U` (see `saeidx_sae::logits` for how
//! they are computed, and `schemas/index/logit-effects.schema.json`).
//!
//! Layout, little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `SAEIDXLE` |
//! | 4 | format version (`1`) |
//! | 4 | `h`, length of the header |
//! | `h` | header, JSON ([`LogitEffectsHeader`]) |
//! | `d_sae · k · 16` | per feature: top ids `[k]` u32, top values `[k]` f32, bottom ids `[k]` u32, bottom values `[k]` f32 |
//! | 4 | `n`, tokens in the token table |
//! | `n · 8` | per token, in increasing id order: its id u32 and the end of its text u32 |
//! | … | the tokens' texts, UTF-8, back to back |
//! | 32 | SHA-256 of every byte before it |
//!
//! [`LogitEffects::read`] checks all of it (magic, version, checksum, sizes, ids below
//! the vocabulary, every listed id in the token table, UTF-8) before anything is used.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::{AtomicWriteError, write_file};

/// The file's name inside an index's `query/` folder.
pub const LOGIT_EFFECTS_FILE: &str = "logit_effects.bin";
/// The file's path relative to an index folder.
pub const LOGIT_EFFECTS_PATH: &str = "query/logit_effects.bin";
/// The magic bytes the file starts with.
pub const LOGIT_EFFECTS_MAGIC: &[u8; 8] = b"SAEIDXLE";
/// The format version this build writes and reads.
pub const LOGIT_EFFECTS_VERSION: u32 = 1;

/// What produced a logit effects file: the SAE, the model and how its unembedding was
/// applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitEffectsHeader {
    /// Features (the SAE's `d_sae`).
    pub d_sae: u32,
    /// Tokens kept at each end.
    pub k: u32,
    /// The model's vocabulary.
    pub vocab_size: u32,
    /// SHA-256 of the SAE's files (the index manifest's `job.sae.sha256`).
    pub sae_sha256: String,
    /// The model (repo id or folder), as the index records it.
    pub model: String,
    /// SHA-256 of the model's weights.
    pub model_weights_sha256: String,
    /// The unembedding matrix used (`lm_head`, or the tied token embedding).
    pub unembedding: String,
    /// How the final norm entered (its weight multiplied in, or none).
    pub final_norm: String,
    /// How the decoder rows were mapped back to the model's activation space.
    pub direction: String,
}

/// One end of a feature's effects as read: `(token, token text, value)`, strongest first.
pub type EffectList<'a> = Vec<(u32, &'a str, f32)>;

/// One feature's effects: `(token, value)` pairs, strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureEffects {
    /// The `k` tokens with the largest values, largest first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
    /// The `k` tokens with the smallest values, smallest first (lower id first on ties).
    pub bottom: Vec<(u32, f32)>,
}

/// Why a logit effects file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogitEffectsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged or not a logit effects file.
    #[error("{path} is damaged ({reason}): rebuild it with `saeidx query logits INDEX --rebuild`")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The effects given to the writer are inconsistent.
    #[error("cannot write logit effects: {0}")]
    Invalid(String),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// A validated logit effects file, held in memory.
#[derive(Debug, Clone)]
pub struct LogitEffects {
    header: LogitEffectsHeader,
    /// Per feature, `4k` words: top ids, top values, bottom ids, bottom values.
    rows: Vec<u32>,
    /// Token ids, increasing.
    token_ids: Vec<u32>,
    /// Token texts, in `token_ids` order.
    token_texts: Vec<String>,
}

impl LogitEffects {
    /// Writes `effects` (one entry per feature, each with `header.k` tokens at both ends,
    /// fewer only when the vocabulary is smaller) and the texts of the tokens they name,
    /// atomically.
    pub fn write(
        path: &Path,
        header: &LogitEffectsHeader,
        effects: &[FeatureEffects],
        token_texts: &BTreeMap<u32, String>,
    ) -> Result<(), LogitEffectsError> {
        let invalid = |reason: String| Err(LogitEffectsError::Invalid(reason));
        if effects.len() != header.d_sae as usize {
            return invalid(format!(
                "{} features, the header says {}",
                effects.len(),
                header.d_sae
            ));
        }
        let k = header.k as usize;
        let mut bytes = LOGIT_EFFECTS_MAGIC.to_vec();
        bytes.extend(LOGIT_EFFECTS_VERSION.to_le_bytes());
        let json = serde_json::to_vec(header).expect("the header serializes");
        bytes.extend((json.len() as u32).to_le_bytes());
        bytes.extend(json);
        for (feature, entry) in effects.iter().enumerate() {
            for list in [&entry.top, &entry.bottom] {
                if list.len() != k {
                    return invalid(format!(
                        "feature {feature} has {} tokens, not {k}",
                        list.len()
                    ));
                }
                if let Some((token, _)) = list.iter().find(|(t, _)| !token_texts.contains_key(t)) {
                    return invalid(format!("token {token} has no text"));
                }
                bytes.extend(list.iter().flat_map(|(token, _)| token.to_le_bytes()));
                bytes.extend(list.iter().flat_map(|(_, value)| value.to_le_bytes()));
            }
        }
        bytes.extend((token_texts.len() as u32).to_le_bytes());
        let mut end = 0u32;
        for (token, text) in token_texts {
            end += text.len() as u32;
            bytes.extend(token.to_le_bytes());
            bytes.extend(end.to_le_bytes());
        }
        for text in token_texts.values() {
            bytes.extend(text.as_bytes());
        }
        let digest = Sha256::digest(&bytes);
        bytes.extend(digest);
        Ok(write_file(path, &bytes)?)
    }

    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> Result<Self, LogitEffectsError> {
        let bytes = std::fs::read(path).map_err(|source| LogitEffectsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes).map_err(|reason| LogitEffectsError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Checks and decodes the bytes of a file.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 16 + 32 || &bytes[..8] != LOGIT_EFFECTS_MAGIC {
            return Err("not a saeidx logit effects file (no SAEIDXLE magic)".into());
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err("checksum mismatch".into());
        }
        let mut reader = Reader { bytes: body, at: 8 };
        let version = reader.u32()?;
        if version != LOGIT_EFFECTS_VERSION {
            return Err(format!(
                "format version {version}, this saeidx reads {LOGIT_EFFECTS_VERSION}"
            ));
        }
        let header_len = reader.u32()? as usize;
        let header: LogitEffectsHeader =
            serde_json::from_slice(reader.take(header_len)?).map_err(|e| format!("header: {e}"))?;
        let words = (header.d_sae as usize)
            .checked_mul(header.k as usize * 4)
            .ok_or("sizes overflow")?;
        let rows: Vec<u32> = reader.words(words)?;
        let tokens = reader.u32()? as usize;
        let table = reader.words(tokens.checked_mul(2).ok_or("sizes overflow")?)?;
        let (token_ids, ends): (Vec<u32>, Vec<u32>) =
            table.chunks(2).map(|pair| (pair[0], pair[1])).unzip();
        let texts = &body[reader.at..];
        let token_texts = split_texts(texts, &ends)?;
        if token_ids.windows(2).any(|w| w[0] >= w[1])
            || token_ids.last().is_some_and(|&id| id >= header.vocab_size)
        {
            return Err("token table ids are not increasing below the vocabulary".into());
        }
        let effects = Self {
            header,
            rows,
            token_ids,
            token_texts,
        };
        effects.check_rows()?;
        Ok(effects)
    }

    /// Every listed token is in the token table.
    fn check_rows(&self) -> Result<(), String> {
        let k = self.header.k as usize;
        for (row, words) in self.rows.chunks(4 * k.max(1)).enumerate() {
            let ids = words[..k].iter().chain(&words[2 * k..3 * k]);
            if let Some(bad) = ids
                .copied()
                .find(|id| self.token_ids.binary_search(id).is_err())
            {
                return Err(format!("feature {row} names token {bad}, not in the table"));
            }
        }
        Ok(())
    }

    /// What produced the file.
    pub fn header(&self) -> &LogitEffectsHeader {
        &self.header
    }

    /// Feature `feature`'s effects as `(token, token text, value)`, top then bottom;
    /// `None` past `d_sae`.
    pub fn feature(&self, feature: u32) -> Option<(EffectList<'_>, EffectList<'_>)> {
        let k = self.header.k as usize;
        if feature >= self.header.d_sae {
            return None;
        }
        let words = &self.rows[feature as usize * 4 * k..(feature as usize + 1) * 4 * k];
        let list = |ids: &[u32], values: &[u32]| {
            ids.iter()
                .zip(values)
                .map(|(&id, &bits)| (id, self.text(id), f32::from_bits(bits)))
                .collect()
        };
        Some((
            list(&words[..k], &words[k..2 * k]),
            list(&words[2 * k..3 * k], &words[3 * k..]),
        ))
    }

    /// The text of token `id` (checked at read to be in the table).
    fn text(&self, id: u32) -> &str {
        self.token_ids
            .binary_search(&id)
            .map(|i| self.token_texts[i].as_str())
            .unwrap_or("")
    }
}

/// Splits the texts blob at `ends`, checking that they are increasing, cover it exactly
/// and cut it into UTF-8 strings.
fn split_texts(texts: &[u8], ends: &[u32]) -> Result<Vec<String>, String> {
    let mut start = 0usize;
    let mut out = Vec::with_capacity(ends.len());
    for &end in ends {
        let end = end as usize;
        let piece = texts
            .get(start..end)
            .ok_or("token text offsets are outside the file")?;
        out.push(
            std::str::from_utf8(piece)
                .map_err(|_| "a token text is not UTF-8")?
                .to_string(),
        );
        start = end;
    }
    if start != texts.len() {
        return Err(format!(
            "{} bytes after the token texts",
            texts.len() - start
        ));
    }
    Ok(out)
}

/// Bounds-checked little-endian reading.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("sizes overflow")?;
        let piece = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| format!("truncated: {n} bytes wanted at {}", self.at))?;
        self.at = end;
        Ok(piece)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn words(&mut self, n: usize) -> Result<Vec<u32>, String> {
        let bytes = self.take(n.checked_mul(4).ok_or("sizes overflow")?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(d_sae: u32, k: u32) -> LogitEffectsHeader {
        LogitEffectsHeader {
            d_sae,
            k,
            vocab_size: 100,
            sae_sha256: "ab".repeat(32),
            model: "org/model".into(),
            model_weights_sha256: "cd".repeat(32),
            unembedding: "lm_head".into(),
            final_norm: "model.norm (RMSNorm): weight multiplied in".into(),
            direction: "W_dec rows".into(),
        }
    }

    fn sample(dir: &Path) -> std::path::PathBuf {
        let effects = vec![
            FeatureEffects {
                top: vec![(7, 2.5), (3, 1.0)],
                bottom: vec![(99, -4.0), (3, -1.0)],
            },
            FeatureEffects {
                top: vec![(1, 0.5), (2, 0.25)],
                bottom: vec![(7, -0.5), (1, -0.25)],
            },
        ];
        let texts: BTreeMap<u32, String> =
            [(1, " a"), (2, "é"), (3, ""), (7, " vacant"), (99, "\n")]
                .into_iter()
                .map(|(id, text)| (id, text.to_string()))
                .collect();
        let path = dir.join(LOGIT_EFFECTS_FILE);
        LogitEffects::write(&path, &header(2, 2), &effects, &texts).unwrap();
        path
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let read = LogitEffects::read(&sample(dir.path())).unwrap();
        assert_eq!(read.header(), &header(2, 2));
        let (top, bottom) = read.feature(0).unwrap();
        assert_eq!(top, vec![(7, " vacant", 2.5), (3, "", 1.0)]);
        assert_eq!(bottom, vec![(99, "\n", -4.0), (3, "", -1.0)]);
        let (top, _) = read.feature(1).unwrap();
        assert_eq!(top[1], (2, "é", 0.25));
        assert!(read.feature(2).is_none());
    }

    #[test]
    fn every_damaged_byte_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x41;
            assert!(LogitEffects::parse(&damaged).is_err(), "byte {i}");
        }
        for len in [0, 10, 47, bytes.len() - 1] {
            assert!(LogitEffects::parse(&bytes[..len]).is_err(), "length {len}");
        }
    }

    /// Well-formed files (checksum recomputed) with inconsistent contents are refused.
    #[test]
    fn inconsistent_contents_are_errors() {
        let resealed = |mut body: Vec<u8>| {
            let digest = Sha256::digest(&body);
            body.extend(digest);
            body
        };
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(sample(dir.path())).unwrap();
        let body = bytes[..bytes.len() - 32].to_vec();
        // The version.
        let mut wrong = body.clone();
        wrong[8] = 9;
        let error = LogitEffects::parse(&resealed(wrong)).unwrap_err();
        assert!(error.contains("version 9"), "{error}");
        // A trailing byte after the texts.
        let mut longer = body.clone();
        longer.push(b'x');
        let error = LogitEffects::parse(&resealed(longer)).unwrap_err();
        assert!(error.contains("after the token texts"), "{error}");
        // A feature naming a token outside the table: the first top id of feature 0.
        let header_len = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
        let mut unknown = body.clone();
        unknown[16 + header_len] = 50;
        let error = LogitEffects::parse(&resealed(unknown)).unwrap_err();
        assert!(error.contains("names token 50"), "{error}");
    }

    #[test]
    fn the_writer_refuses_inconsistent_effects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGIT_EFFECTS_FILE);
        let short = vec![FeatureEffects {
            top: vec![(1, 1.0)],
            bottom: vec![(1, 1.0), (1, 1.0)],
        }];
        let texts = BTreeMap::from([(1, "a".to_string())]);
        let error = LogitEffects::write(&path, &header(1, 2), &short, &texts).unwrap_err();
        assert!(error.to_string().contains("1 tokens, not 2"), "{error}");
        assert!(!path.exists());
    }
}
