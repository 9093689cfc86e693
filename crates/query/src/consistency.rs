//! Full consistency of the query files, for `saeidx verify`.
//!
//! Chunk checksums prove that the bytes are the ones the builder wrote; this proves
//! that they describe one index. Every row is checked against the others and against
//! the query manifest: documents' token ranges tile the tokens, every token sits at its
//! document's position with a byte span inside the text, codes are sorted, valid and
//! distinct per token, postings are exactly the codes regrouped by feature, and every
//! stored statistic (count, documents, max, sum, histogram) equals its recomputation
//! from the postings. Reading answers lazily checks only what each answer touches;
//! this checks everything once, in time linear in the index (codes per token times
//! nonzeros for the postings-to-codes match).

use std::path::Path;

use crate::{
    QueryError, QueryIndex,
    build::histogram_bin,
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

impl QueryIndex {
    /// Checks every row of every query file (their chunks must have been verified).
    pub(crate) fn check_consistency(&self) -> Result<(), QueryError> {
        self.check_documents_and_tokens()?;
        let tally = self.check_codes()?;
        self.check_postings(&tally)?;
        self.check_statistics()
    }

    fn check_documents_and_tokens(&self) -> Result<(), QueryError> {
        let (d, t) = (&self.documents, &self.tokens);
        let fail = |reason: String| self.corrupt(QueryFile::Tokens, reason);
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
            let (_, _, text) = self.document_texts(doc)?;
            for position in 0..count {
                let token = usize::try_from(first + u64::from(position))
                    .ok()
                    .filter(|token| *token < t.doc.len())
                    .ok_or_else(|| fail(format!("document {doc} runs past the last token")))?;
                if t.doc[token] != doc || t.position[token] != position {
                    return Err(fail(format!(
                        "token {token} is (document {}, position {}), not ({doc}, {position})",
                        t.doc[token], t.position[token]
                    )));
                }
                if t.start[token] > t.end[token] || t.end[token] as usize > text.len() {
                    return Err(fail(format!(
                        "token {token}'s bytes {}..{} are outside its {}-byte text",
                        t.start[token],
                        t.end[token],
                        text.len()
                    )));
                }
                if t.flags[token] & !(FLAG_SPECIAL | FLAG_SINK) != 0 {
                    return Err(fail(format!(
                        "token {token} has unknown flags {:#x}",
                        t.flags[token]
                    )));
                }
            }
        }
        if next != t.doc.len() as u64 {
            return Err(self.corrupt(
                QueryFile::Documents,
                format!("documents cover {next} tokens of {}", t.doc.len()),
            ));
        }
        Ok(())
    }

    /// Checks each token's codes; returns how many codes each feature has.
    fn check_codes(&self) -> Result<Vec<u64>, QueryError> {
        let (t, c) = (&self.tokens, &self.codes);
        let nonzeros = c.key.len() as u64;
        let fail = |reason: String| self.corrupt(QueryFile::Codes, reason);
        let mut tally = vec![0u64; self.d_sae()];
        let mut previous_end = 0u64;
        for token in 0..t.first_code.len() {
            let start = t.first_code[token];
            if start != previous_end {
                return Err(self.corrupt(
                    QueryFile::Tokens,
                    format!("token {token}'s codes start at {start}, not {previous_end}"),
                ));
            }
            let end = t.first_code.get(token + 1).copied().unwrap_or(nonzeros);
            previous_end = end;
            let (features, values) = self.token_codes(token)?;
            for (i, (&feature, &value)) in features.iter().zip(values).enumerate() {
                if !(value.is_finite() && value > 0.0) {
                    return Err(fail(format!("token {token}: value {value}")));
                }
                if let Some((&before, &before_value)) = i
                    .checked_sub(1)
                    .and_then(|j| features.get(j).zip(values.get(j)))
                {
                    let ordered =
                        before_value > value || (before_value == value && before < feature);
                    if !ordered {
                        return Err(fail(format!(
                            "token {token}: codes out of order (strongest first, then by feature)"
                        )));
                    }
                }
                if features[..i].contains(&feature) {
                    return Err(fail(format!("token {token}: feature {feature} twice")));
                }
                tally[feature as usize] += 1;
            }
        }
        if previous_end != nonzeros {
            return Err(fail(format!(
                "the tokens' codes end at {previous_end} of {nonzeros} rows"
            )));
        }
        Ok(tally)
    }

    /// Checks that the postings are the codes regrouped by feature, strongest first.
    fn check_postings(&self, tally: &[u64]) -> Result<(), QueryError> {
        let (f, p) = (&self.features, &self.postings);
        let fail = |reason: String| self.corrupt(QueryFile::Postings, reason);
        let mut next = 0u64;
        for (feature, &codes) in tally.iter().enumerate() {
            if f.first_posting[feature] != next || u64::from(f.postings[feature]) != codes {
                return Err(self.corrupt(
                    QueryFile::Features,
                    format!(
                        "feature {feature}: postings {}+{} where its codes give {next}+{codes}",
                        f.first_posting[feature], f.postings[feature]
                    ),
                ));
            }
            next += codes;
            let (tokens, values) = self.feature_postings(feature)?;
            for (i, (&token, &value)) in tokens.iter().zip(values).enumerate() {
                if i > 0 {
                    let (before, before_value) = (tokens[i - 1], values[i - 1]);
                    let ordered = before_value > value || (before_value == value && before < token);
                    if !ordered {
                        return Err(fail(format!(
                            "feature {feature}: postings out of order (strongest first, then by token)"
                        )));
                    }
                }
                let (features, codes) = self.token_codes(token as usize)?;
                let found = features
                    .iter()
                    .zip(codes)
                    .any(|(&other, &code)| other as usize == feature && code == value);
                if !found {
                    return Err(fail(format!(
                        "feature {feature}: token {token} with {value} is not among that token's codes"
                    )));
                }
            }
        }
        if next != p.key.len() as u64 {
            return Err(fail(format!("{next} postings of {} rows", p.key.len())));
        }
        Ok(())
    }

    /// Recomputes every feature's stored statistics from its postings, as the builder
    /// does, and requires them to be equal.
    fn check_statistics(&self) -> Result<(), QueryError> {
        let (f, t) = (&self.features, &self.tokens);
        let mut seen_by = vec![u32::MAX; self.documents() as usize];
        for feature in 0..self.d_sae() {
            let (tokens, values) = self.feature_postings(feature)?;
            let content: Vec<(u32, f32)> = tokens
                .iter()
                .zip(values)
                .filter(|(token, _)| t.flags[**token as usize] == 0)
                .map(|(token, value)| (*token, *value))
                .collect();
            let max = content.iter().map(|(_, v)| *v).fold(0.0f32, f32::max);
            let mut histogram = [0u32; HISTOGRAM_BINS];
            let (mut sum, mut documents) = (0.0f64, 0u32);
            for &(token, value) in &content {
                sum += f64::from(value);
                histogram[histogram_bin(value, max)] += 1;
                let doc = t.doc[token as usize] as usize;
                if seen_by[doc] != feature as u32 {
                    seen_by[doc] = feature as u32;
                    documents += 1;
                }
            }
            let stored = &f.histogram[feature * HISTOGRAM_BINS..(feature + 1) * HISTOGRAM_BINS];
            let same = u64::from(f.count[feature]) == content.len() as u64
                && f.documents[feature] == documents
                && f.max[feature].to_bits() == max.to_bits()
                && f.sum[feature].to_bits() == sum.to_bits()
                && stored == histogram;
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
