//! Questions over a set of documents as a whole: the features of a subset (every
//! counted token of its documents, ranked as `top_features` ranks a document's), and the
//! per-feature profile of a subset that `sample` and `contrast` are computed from.

use std::ops::Range;

use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    QueryError, QueryIndex,
    answers::{RankedFeature, TopFeaturesRequest},
    index::Exclusions,
    layout::QueryFile,
    limits::Limit,
    rank::Aggregate,
    registry::FeatureLabel,
    restrict::{DocSet, Restriction},
};

/// Tokens decoded at a time when a subset is scanned.
const SCAN_CHUNK: u64 = 1 << 16;

/// Every feature's activity over some tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Profile {
    /// Tokens counted.
    pub(crate) tokens: u64,
    /// Per feature: tokens it is active on.
    pub(crate) count: Vec<u64>,
    /// Per feature: the sum of its activations.
    pub(crate) sum: Vec<f64>,
    /// Per feature: its largest activation.
    pub(crate) max: Vec<f32>,
    /// Per feature: the global token of that largest activation (the first, on ties).
    pub(crate) argmax: Vec<u64>,
}

impl Profile {
    /// No tokens yet, for `d_sae` features.
    pub(crate) fn empty(d_sae: usize) -> Self {
        Self {
            tokens: 0,
            count: vec![0; d_sae],
            sum: vec![0.0; d_sae],
            max: vec![0.0; d_sae],
            argmax: vec![0; d_sae],
        }
    }

    /// The `k` strongest features by `aggregate`, best first (ties: lower id first).
    pub(crate) fn ranked(&self, aggregate: Aggregate, k: usize) -> Vec<(u32, f32)> {
        let mut ranked: Vec<(u32, f32)> = (0u32..)
            .zip(&self.count)
            .filter(|(_, count)| **count > 0)
            .map(|(feature, _)| {
                let f = feature as usize;
                let score = match aggregate {
                    Aggregate::Max => self.max[f],
                    Aggregate::Sum => self.sum[f] as f32,
                };
                (feature, score)
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }

    /// Feature `feature` of [`Profile::ranked`] as an answer, its strongest token at
    /// document `doc`, `position`, with text `token_text`.
    pub(crate) fn feature(
        &self,
        (feature, score): (u32, f32),
        (doc, position, token_text): (u32, u32, String),
        label: Option<FeatureLabel>,
    ) -> RankedFeature {
        let f = feature as usize;
        RankedFeature {
            feature,
            score,
            activation: self.max[f],
            position,
            doc: Some(doc),
            token_text,
            active_tokens: u32::try_from(self.count[f]).unwrap_or(u32::MAX),
            label,
        }
    }
}

/// The answer of `subset_features`: the features of a set of documents.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SubsetFeatures {
    /// The documents.
    pub restrict: Restriction,
    /// How many documents that is.
    pub documents: u64,
    /// Their counted tokens.
    pub tokens: u64,
    /// How scores were aggregated over the tokens.
    pub aggregate: Aggregate,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// The features, best first (ties: lower id first); `doc` and `position` say where
    /// each one's largest activation is.
    pub features: Vec<RankedFeature>,
}

impl QueryIndex {
    /// Calls `each(token, features, values)` for every token of `ranges` that
    /// `exclusions` leave in, in token order.
    pub(crate) fn scan_counted(
        &self,
        ranges: &[Range<u64>],
        exclusions: Exclusions,
        mut each: impl FnMut(u64, &[u32], &[f32]),
    ) -> Result<(), QueryError> {
        let mask = exclusions.mask();
        let mut kept = Vec::new();
        for range in ranges {
            let mut start = range.start;
            while start < range.end {
                let span = start..(start + SCAN_CHUNK).min(range.end);
                kept.clear();
                self.tokens.scan(span.clone(), |_, entry| {
                    kept.push(entry.flags & mask == 0);
                    Ok(())
                })?;
                self.codes.decode(span.clone(), |token, features, values| {
                    if kept[(token - span.start) as usize] {
                        each(token, features, values);
                    }
                    Ok(())
                })?;
                start = span.end;
            }
        }
        Ok(())
    }

    /// The profile of the counted tokens of `set`.
    pub(crate) fn profile(
        &self,
        set: &DocSet,
        exclusions: Exclusions,
    ) -> Result<Profile, QueryError> {
        let mut profile = Profile::empty(self.d_sae());
        self.add_to_profile(&mut profile, set, exclusions, 0)?;
        Ok(profile)
    }

    /// Adds the counted tokens of `set` to `profile`, after the tokens it holds (so a
    /// profile over several indexes in order sums as one index over all their tokens);
    /// `first_token` is added to this index's token numbers in `argmax`.
    pub(crate) fn add_to_profile(
        &self,
        profile: &mut Profile,
        set: &DocSet,
        exclusions: Exclusions,
        first_token: u64,
    ) -> Result<(), QueryError> {
        let d_sae = profile.count.len();
        // `each` sees every counted token, with codes or without.
        self.scan_counted(set.token_ranges(), exclusions, |token, features, values| {
            profile.tokens += 1;
            for (&feature, &value) in features.iter().zip(values) {
                let f = feature as usize;
                if f >= d_sae {
                    continue;
                }
                profile.count[f] += 1;
                profile.sum[f] += f64::from(value);
                if profile.count[f] == 1 || value > profile.max[f] {
                    profile.max[f] = value;
                    profile.argmax[f] = first_token + token;
                }
            }
        })
    }

    /// The profile of every counted token *not* in the set `of` was computed over, with
    /// the default exclusions: the stored per-feature totals of `features.arrow` less
    /// `of`'s, so the rest of the index is never decoded. `max` and `argmax` are left
    /// empty (only counts and sums are known).
    pub(crate) fn rest_profile(&self, of: &Profile) -> Result<Profile, QueryError> {
        let d_sae = self.d_sae() as u64;
        let file = &self.features.file;
        let which = QueryFile::Features;
        let counts = self.range(file, which, &self.features.count, 0, d_sae)?;
        let sums = self.range(file, which, &self.features.sum, 0, d_sae)?;
        let total = self.counted_tokens(Exclusions::default(), None)?;
        let less = |all: u64, part: u64, what: &str| {
            all.checked_sub(part).ok_or_else(|| {
                self.corrupt(
                    which,
                    format!("{what}: {all} in all, fewer than the {part} of a subset"),
                )
            })
        };
        let count = (0u32..)
            .zip(counts.iter().zip(&of.count))
            .map(|(f, (all, part))| less(u64::from(*all), *part, &format!("feature {f}'s count")))
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(Profile {
            tokens: less(total, of.tokens, "counted tokens")?,
            count,
            sum: sums
                .iter()
                .zip(&of.sum)
                .map(|(all, part)| all - part)
                .collect(),
            max: Vec::new(),
            argmax: Vec::new(),
        })
    }

    /// Features active on some counted token of `set`, in increasing id order.
    pub(crate) fn live_within(
        &self,
        set: &DocSet,
        exclusions: Exclusions,
    ) -> Result<Vec<u32>, QueryError> {
        let profile = self.profile(set, exclusions)?;
        Ok((0u32..)
            .zip(&profile.count)
            .filter(|(_, count)| **count > 0)
            .map(|(feature, _)| feature)
            .collect())
    }

    /// The strongest features over every counted token of the documents `restrict`
    /// selects (all documents when it restricts nothing), ranked by `request.aggregate`
    /// as [`QueryIndex::top_features`] ranks one document's (`request.tokens` does not
    /// apply to a set).
    pub fn subset_features(
        &self,
        restrict: &Restriction,
        request: &TopFeaturesRequest,
    ) -> Result<SubsetFeatures, QueryError> {
        Limit::K.check(request.k)?;
        if request.tokens.is_some() {
            return Err(QueryError::NotForTexts("tokens"));
        }
        let set = match self.doc_set(restrict)? {
            Some(set) => set,
            None => self.doc_set_of(0..self.documents())?,
        };
        let profile = self.answer(self.profile(&set, request.exclusions))?;
        let mut features = Vec::new();
        for ranked in profile.ranked(request.aggregate, request.k) {
            let (doc, position) = self.token_doc(profile.argmax[ranked.0 as usize])?;
            let at = (doc, position, self.token_text(doc, position)?);
            let label = self.registry().get(ranked.0).cloned();
            features.push(profile.feature(ranked, at, label));
        }
        self.answer(Ok(SubsetFeatures {
            restrict: restrict.clone(),
            documents: set.len() as u64,
            tokens: profile.tokens,
            aggregate: request.aggregate,
            exclusions: request.exclusions,
            features,
        }))
    }
}
