//! Full consistency of the query files, for `saeidx verify`.
//!
//! Chunk checksums prove that the bytes are the ones the builder wrote; this proves
//! that they describe one index. Every row is checked against the others and against
//! the query manifest: documents' token ranges tile the tokens, every token's byte span
//! lies inside its document's text, codes are valid and distinct per token, postings are
//! in token order with their blocks' largest values and are the codes regrouped by
//! feature (compared as multisets by summed 64-bit fingerprints), and every stored
//! statistic (count, documents, max, sum, histogram, min) equals its recomputation from the
//! postings. Reading answers lazily checks only what each answer touches; this checks
//! everything once, in time linear in the index.

use std::path::Path;

use saeidx_format::{
    segments::SegmentSet,
    verify::{VerifyReport, verify},
};
use serde::Serialize;

use crate::{
    QueryError, QueryIndex,
    build::{histogram_bin, version_2_histogram_bin},
    layout::{FLAG_SINK, FLAG_SPECIAL, HISTOGRAM_BINS, QUERY_DIR, QUERY_MANIFEST, QueryFile},
};

/// Verifies the query files of the index in `index_dir` completely (every chunk, then
/// every row; see [`QueryIndex::verify_all`]) and returns their bytes, or `None` for a
/// Parquet-only index (no `query/` folder at all, as `saeidx publish --data-only`
/// writes). A `query/` folder without its manifest is an error, never a pass.
pub fn verify_query_files(index_dir: &Path) -> Result<Option<u64>, QueryError> {
    let query_dir = index_dir.join(QUERY_DIR);
    if std::fs::symlink_metadata(&query_dir).is_err() {
        return Ok(None);
    }
    let manifest = query_dir.join(QUERY_MANIFEST);
    if !manifest.is_file() {
        return Err(QueryError::corrupt(
            manifest,
            "missing: the query files are incomplete (rebuild them with `saeidx query build`, or remove the query folder to keep the Parquet only)",
        ));
    }
    QueryIndex::open(index_dir)?.verify_all().map(Some)
}

/// What `saeidx verify` of an index of segments covered ([`verify_segments`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SegmentsVerified {
    /// The live segments' names, in document order.
    pub segments: Vec<String>,
    /// Their Parquet data, summed.
    pub checked: VerifyReport,
    /// Their query files' bytes, summed.
    pub query_bytes: u64,
}

/// Verifies every live segment of the index of segments in `dir` (`set`, its
/// `segments.json`) completely: its Parquet data and manifest
/// ([`saeidx_format::verify::verify`]), the manifest against `set`, and its query files
/// ([`verify_query_files`], which every segment must have). The first problem found is
/// the error.
pub fn verify_segments(dir: &Path, set: &SegmentSet) -> Result<SegmentsVerified, QueryError> {
    let mut verified = SegmentsVerified::default();
    for record in &set.segments {
        let segment = SegmentSet::segment_dir(dir, &record.name);
        let (manifest, report) = verify(&segment)?;
        set.check_segment(dir, record, &manifest)?;
        verified.query_bytes +=
            verify_query_files(&segment)?.ok_or(QueryError::NotBuilt { dir: segment })?;
        let total = &mut verified.checked;
        total.files += report.files;
        total.bytes += report.bytes;
        total.documents += report.documents;
        total.tokens += report.tokens;
        total.nonzeros += report.nonzeros;
        verified.segments.push(record.name.clone());
    }
    Ok(verified)
}

impl QueryIndex {
    /// Checks every row of every query file (their chunks must have been verified).
    pub(crate) fn check_consistency(&self) -> Result<(), QueryError> {
        let flags = self.check_documents_and_tokens()?;
        let tally = self.check_codes()?;
        self.check_postings(&tally)?;
        self.check_statistics(&flags)?;
        self.check_occurrences()
    }

    /// Checks `occurrences.bin`, when the folder has it, against `tokens.bin` and
    /// `codes.bin`: every token listed once, under its id with its flags, its codes
    /// where the file says they start, and each id's texts those of its tokens.
    fn check_occurrences(&self) -> Result<(), QueryError> {
        let Some(file) = &self.occurrences else {
            return Ok(());
        };
        let fail = |reason: String| self.corrupt(QueryFile::Occurrences, reason);
        let scanned = self.scan_vocabulary()?;
        let ids = scanned.keys().max().map_or(0, |id| u64::from(*id) + 1);
        if file.ids() != ids {
            return Err(fail(format!(
                "{} token ids where the tokens have {ids}",
                file.ids()
            )));
        }
        let mut listed = 0u64;
        for id in 0..ids as u32 {
            let expected = scanned.get(&id).map_or(&[][..], Vec::as_slice);
            if file.texts(id)? != expected {
                return Err(fail(format!("token id {id}'s texts are not its tokens'")));
            }
            file.each(id, |token, offset, flags| {
                listed += 1;
                let entry = self.token_entry(token)?;
                if entry.token != id || entry.flags != flags {
                    return Err(fail(format!(
                        "token {token} is listed under id {id} with flags {flags}"
                    )));
                }
                self.check_codes_at(token, offset)?;
                Ok(true)
            })?;
        }
        if listed != self.tokens.tokens() {
            return Err(fail(format!(
                "{listed} occurrences of {} tokens",
                self.tokens.tokens()
            )));
        }
        Ok(())
    }

    /// Checks that global token `token`'s codes start at bit `offset` of its group.
    fn check_codes_at(&self, token: u64, offset: u64) -> Result<(), QueryError> {
        let found = self.codes.features_at(token, offset)?;
        let mut scratch = Vec::new();
        self.codes.decode(token..token + 1, |_, features, values| {
            let last = features.last().zip(values.last());
            let value = match last {
                Some((feature, _)) => self.codes.value_at(token, offset, *feature, &mut scratch)?,
                None => None,
            };
            if found != features || value != last.map(|(_, value)| *value) {
                return Err(self.corrupt(
                    QueryFile::Occurrences,
                    format!("token {token}'s codes do not start at bit {offset} of its group"),
                ));
            }
            Ok(())
        })
    }

    /// Checks that documents tile the tokens and every token's bytes lie in its text;
    /// returns every token's flags.
    fn check_documents_and_tokens(&self) -> Result<Vec<u8>, QueryError> {
        let d = &self.documents;
        let fail = |reason: String| self.corrupt(QueryFile::Tokens, reason);
        let mut flags = Vec::with_capacity(self.tokens.tokens() as usize);
        let mut next = 0u64;
        for doc in 0..self.documents() {
            let i = doc as usize;
            let (first, count) = (d.first_token[i], d.tokens[i]);
            if first != next {
                return Err(self.corrupt(
                    QueryFile::Documents,
                    format!("document {doc} starts at token {first}, not {next}"),
                ));
            }
            next = first.saturating_add(u64::from(count));
            if next > self.tokens.tokens() {
                return Err(fail(format!("document {doc} runs past the last token")));
            }
            let (_, _, text) = self.document_texts(doc)?;
            self.tokens.scan(first..next, |token, entry| {
                if entry.start > entry.end || entry.end as usize > text.len() {
                    return Err(fail(format!(
                        "token {token}'s bytes {}..{} are outside its {}-byte text",
                        entry.start,
                        entry.end,
                        text.len()
                    )));
                }
                if entry.flags & !(FLAG_SPECIAL | FLAG_SINK) != 0 {
                    return Err(fail(format!(
                        "token {token} has unknown flags {:#x}",
                        entry.flags
                    )));
                }
                flags.push(entry.flags);
                Ok(())
            })?;
        }
        if next != self.tokens.tokens() {
            return Err(self.corrupt(
                QueryFile::Documents,
                format!("documents cover {next} tokens of {}", self.tokens.tokens()),
            ));
        }
        Ok(flags)
    }

    /// Checks each token's codes; returns, per feature, how many codes it has and a
    /// fingerprint of its (token, value) pairs.
    fn check_codes(&self) -> Result<Vec<(u64, u64)>, QueryError> {
        let fail = |reason: String| self.corrupt(QueryFile::Codes, reason);
        let mut tally = vec![(0u64, 0u64); self.d_sae()];
        let mut total = 0u64;
        self.codes
            .decode(0..self.tokens.tokens(), |token, features, values| {
                for (i, (&feature, &value)) in features.iter().zip(values).enumerate() {
                    if !(value.is_finite() && value > 0.0) {
                        return Err(fail(format!("token {token}: value {value}")));
                    }
                    if i > 0 && features[i - 1] >= feature {
                        return Err(fail(format!("token {token}: feature {feature} twice")));
                    }
                    let entry = &mut tally[feature as usize];
                    entry.0 += 1;
                    entry.1 = entry.1.wrapping_add(fingerprint(token, value));
                }
                total += features.len() as u64;
                Ok(())
            })?;
        if total != self.codes.nonzeros() {
            return Err(fail(format!(
                "the tokens' codes are {total} of {} recorded",
                self.codes.nonzeros()
            )));
        }
        Ok(tally)
    }

    /// Checks that the postings are the codes regrouped by feature, in token order,
    /// each block with its largest value.
    fn check_postings(&self, tally: &[(u64, u64)]) -> Result<(), QueryError> {
        let f = &self.features;
        let fail = |reason: String| self.corrupt(QueryFile::Postings, reason);
        let mut next = 0u64;
        let mut block_postings = Vec::new();
        for (feature, &(codes, print)) in tally.iter().enumerate() {
            let first = f
                .first_posting
                .as_ref()
                .map_or(next, |first| first[feature]);
            if first != next || u64::from(f.postings[feature]) != codes {
                return Err(self.corrupt(
                    QueryFile::Features,
                    format!(
                        "feature {feature}: postings {first}+{} where its codes give {next}+{codes}",
                        f.postings[feature]
                    ),
                ));
            }
            next += codes;
            let mut found = 0u64;
            let mut previous: Option<u64> = None;
            for block in self.postings.blocks_of(feature) {
                block_postings.clear();
                self.postings
                    .decode_block(feature, block, &mut block_postings)?;
                let max = block_postings
                    .iter()
                    .map(|(_, v)| *v)
                    .fold(0.0f32, f32::max);
                if max.to_bits() != self.postings.block_max(block)?.to_bits() {
                    return Err(fail(format!(
                        "block {block}: its largest value is not {max}"
                    )));
                }
                for &(token, value) in &block_postings {
                    if previous.is_some_and(|before| before >= token) {
                        return Err(fail(format!(
                            "feature {feature}: postings out of token order"
                        )));
                    }
                    previous = Some(token);
                    found = found.wrapping_add(fingerprint(token, value));
                }
            }
            self.postings.check_order(feature)?;
            if found != print {
                return Err(fail(format!(
                    "feature {feature}: its postings are not the codes of its tokens"
                )));
            }
        }
        Ok(())
    }

    /// Recomputes every feature's stored statistics from its postings, as the builder
    /// does, and requires them to be equal.
    fn check_statistics(&self, flags: &[u8]) -> Result<(), QueryError> {
        let f = &self.features;
        let mut seen_by = vec![u32::MAX; self.documents() as usize];
        for feature in 0..self.d_sae() {
            let content: Vec<(u64, f32)> = self
                .feature_postings(feature)?
                .into_iter()
                .filter(|(token, _)| flags.get(*token as usize) == Some(&0))
                .collect();
            let max = content.iter().map(|(_, v)| *v).fold(0.0f32, f32::max);
            let min = content.iter().map(|(_, v)| *v).reduce(f32::min);
            let bin = if f.min.is_some() {
                histogram_bin
            } else {
                version_2_histogram_bin
            };
            let mut histogram = [0u32; HISTOGRAM_BINS];
            let (mut sum, mut documents) = (0.0f64, 0u32);
            for &(token, value) in &content {
                sum += f64::from(value);
                histogram[bin(value, max)] += 1;
                let doc = self.token_doc(token)?.0 as usize;
                if seen_by[doc] != feature as u32 {
                    seen_by[doc] = feature as u32;
                    documents += 1;
                }
            }
            let stored = self.stored_histogram(feature)?;
            let same = u64::from(f.count[feature]) == content.len() as u64
                && f.documents[feature] == documents
                && f.max[feature].to_bits() == max.to_bits()
                && f.sum[feature].to_bits() == sum.to_bits()
                && stored[..] == histogram[..]
                && f.min.as_ref().is_none_or(|stored| {
                    stored[feature].to_bits() == min.unwrap_or(0.0).max(0.0).to_bits()
                });
            if !same {
                return Err(self.corrupt(
                    QueryFile::Features,
                    format!(
                        "feature {feature}'s statistics differ from its postings (count {} vs {}, documents {} vs {documents}, max {} vs {max}, sum {} vs {sum})",
                        f.count[feature],
                        content.len(),
                        f.documents[feature],
                        f.max[feature],
                        f.sum[feature]
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A 64-bit fingerprint of one (token, value) pair; sums of fingerprints compare the
/// codes of a feature with its postings as multisets.
fn fingerprint(token: u64, value: f32) -> u64 {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&token.to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_bits().to_le_bytes());
    twox_hash::XxHash3_64::oneshot(&bytes)
}
