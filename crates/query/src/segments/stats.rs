//! Feature statistics of an index of segments from the statistics each segment stores.
//!
//! With the default exclusions and no restriction, a feature's statistics are summed
//! from its segments' stored ones less what their deleted documents hold, never
//! recomputed from the postings:
//!
//! - count, documents and postings: integers, summed, less the deleted rows' (a
//!   document lives in one segment, so documents add up);
//! - max: the largest segment max, a segment's taken from its strongest live posting
//!   when a deleted row held its stored max;
//! - histogram: bins over `(0, P]`, `P` a power of two ([`histogram_bin`]), so a
//!   segment's bins lie whole in the index's bins ([`rebin`]); a segment whose live max
//!   fell a power of two below its stored one (a deleted row held it) bins its live
//!   postings again;
//! - sum: every value keeps 11 significant bits, so a sum whose total stays below
//!   `2^53` times the lowest bit of the smallest value ([`value_unit`]) is exact in f64
//!   in any order, and then equals one index's (added strongest first). When that
//!   cannot be shown (values spanning more than ~40 binary orders of magnitude),
//!   [`SegmentedIndex::summed_stats`] answers `None` and the statistics are recomputed
//!   from the postings, as they are for segments of query format version 2.
//!
//! A segment's deleted rows are read once per opened index (their tokens' codes: few,
//! as deletions are) and kept per feature ([`DeletedRows`]), rather than stored at
//! publish time: nothing in the format changes when documents are deleted, and an
//! index opened before a deletion is published keeps answering from its own set.

use std::collections::{HashMap, HashSet};

use super::{Segment, SegmentedIndex};
use crate::{
    QueryError,
    build::{histogram_bin, histogram_exponent, rebin, value_unit},
    index::{Computed, Exclusions, FeatureStats},
    layout::HISTOGRAM_BINS,
};

/// What a segment's deleted documents hold, for its stored statistics (default
/// exclusions).
#[derive(Default)]
pub(super) struct DeletedRows {
    /// Counted (neither special nor sink) tokens of deleted documents.
    pub(super) counted: u64,
    /// Per feature active on a deleted token.
    pub(super) features: HashMap<u32, DeletedFeature>,
}

/// One feature's part of a segment's deleted rows.
#[derive(Default)]
pub(super) struct DeletedFeature {
    /// Its postings on deleted tokens (excluded tokens too).
    postings: u64,
    /// Its values on counted deleted tokens.
    pub(super) values: Vec<f32>,
    /// Deleted documents it is active in (on a counted token).
    documents: u64,
}

impl DeletedRows {
    /// Reads `segment`'s deleted documents' tokens and codes.
    pub(super) fn of(segment: &Segment) -> Result<Self, QueryError> {
        let index = &segment.index;
        let mask = Exclusions::default().mask();
        let mut rows = Self::default();
        for docs in &segment.deleted_docs {
            for doc in docs.clone() {
                let (first, count) = index.doc_tokens(doc)?;
                let range = first..first + u64::from(count);
                let mut counted = Vec::with_capacity(count as usize);
                index.tokens.scan(range.clone(), |_, entry| {
                    counted.push(entry.flags & mask == 0);
                    Ok(())
                })?;
                rows.counted += counted.iter().filter(|c| **c).count() as u64;
                let mut seen = HashSet::new();
                index
                    .codes
                    .decode(range.clone(), |token, features, values| {
                        let kept = counted[(token - range.start) as usize];
                        for (&feature, &value) in features.iter().zip(values) {
                            let part = rows.features.entry(feature).or_default();
                            part.postings += 1;
                            if kept {
                                part.values.push(value);
                                part.documents += u64::from(seen.insert(feature));
                            }
                        }
                        Ok(())
                    })?;
            }
        }
        Ok(rows)
    }
}

/// One segment's live statistics of a feature, its histogram binned over
/// `(0, 2^binned_over]`.
struct Part {
    live: Computed,
    binned_over: i32,
}

impl Segment {
    /// The deleted rows (read on first use).
    pub(super) fn deleted_rows(&self) -> Result<&DeletedRows, QueryError> {
        if let Some(rows) = self.deleted_rows.get() {
            return Ok(rows);
        }
        let rows = DeletedRows::of(self)?;
        Ok(self.deleted_rows.get_or_init(|| rows))
    }

    /// The stored statistics of `f` less `gone`, the deleted rows' part.
    fn live_part(
        &self,
        f: usize,
        stored: Computed,
        gone: Option<&DeletedFeature>,
    ) -> Result<Part, QueryError> {
        let binned_over = histogram_exponent(stored.max);
        let Some(gone) = gone.filter(|gone| !gone.values.is_empty()) else {
            return Ok(Part {
                live: stored,
                binned_over,
            });
        };
        let mut live = stored;
        let mut removed = 0.0f64;
        for &value in &gone.values {
            live.histogram[histogram_bin(value, live.max)] -= 1;
            removed += f64::from(value);
        }
        live.sum -= removed;
        live.count -= gone.values.len() as u64;
        live.documents -= gone.documents;
        if gone.values.iter().any(|value| *value >= live.max) {
            live.max = self.live_max(f)?;
            let over = histogram_exponent(live.max);
            if over < binned_over {
                // The live max is a power of two lower: bin the live values again.
                live.histogram = vec![0; HISTOGRAM_BINS];
                for (_, value) in self.kept(f, Exclusions::default(), None)? {
                    live.histogram[histogram_bin(value, live.max)] += 1;
                }
                return Ok(Part {
                    live,
                    binned_over: over,
                });
            }
        }
        Ok(Part { live, binned_over })
    }

    /// `f`'s strongest value on a counted live token (0 when none).
    fn live_max(&self, f: usize) -> Result<f32, QueryError> {
        let index = &self.index;
        let mask = Exclusions::default().mask();
        let mut max = 0.0f32;
        index.postings.strongest_within(f, None, |token, value| {
            let counted = index.token_entry(token)?.flags & mask == 0;
            if counted && !self.token_deleted(token) {
                max = value;
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(max.max(0.0))
    }
}

impl SegmentedIndex {
    /// `feature`'s statistics over the live documents with the default exclusions,
    /// summed from the segments' stored statistics (see the module docs); `None` when
    /// they cannot be summed exactly.
    pub(super) fn summed_stats(
        &self,
        feature: u32,
        f: usize,
    ) -> Result<Option<FeatureStats>, QueryError> {
        let mut stored = Vec::with_capacity(self.segments.len());
        let (mut counted, mut postings) = (0u64, 0u64);
        let (mut unit, mut total) = (f64::INFINITY, 0.0f64);
        for segment in &self.segments {
            let index = &segment.index;
            let (Some(stats), Some((min, all))) =
                (index.stored_stats(f)?, index.stored_min_postings(f)?)
            else {
                return Ok(None);
            };
            let deleted = segment.deleted_rows()?;
            let gone = deleted.features.get(&feature);
            counted += index.counted_tokens(Exclusions::default(), None)? - deleted.counted;
            postings += all - gone.map_or(0, |gone| gone.postings);
            if stats.count > 0 {
                unit = unit.min(value_unit(min));
                total += stats.sum;
            }
            stored.push((stats, gone));
        }
        // Every sum below is exact (so in any order) while the total stays below
        // 2^53 units; 2^52 leaves room for the rounding of `total` itself.
        if total > 2f64.powi(52) * unit {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(stored.len());
        for (segment, (stats, gone)) in self.segments.iter().zip(stored) {
            parts.push(segment.live_part(f, stats, gone)?);
        }
        let live = combine(parts);
        Ok(Some(live.stats(
            feature,
            counted,
            postings,
            Exclusions::default(),
        )))
    }
}

/// The segments' live statistics as one index's (each segment's histogram is binned
/// over a range no wider than the index's).
fn combine(parts: Vec<Part>) -> Computed {
    let max = parts.iter().map(|p| p.live.max).fold(0.0f32, f32::max);
    let over = histogram_exponent(max);
    let mut all = Computed {
        count: 0,
        documents: 0,
        max,
        sum: 0.0,
        histogram: vec![0; HISTOGRAM_BINS],
    };
    for part in parts.into_iter().filter(|p| p.live.count > 0) {
        rebin(
            &part.live.histogram,
            part.binned_over,
            &mut all.histogram,
            over,
        );
        all.count += part.live.count;
        all.documents += part.live.documents;
        all.sum += part.live.sum;
    }
    all
}

#[cfg(test)]
mod tests {
    use saeidx_format::segments::SegmentSet;
    use saeidx_testkit::synthetic::{SyntheticSpec, split_into_segments, write_synthetic_index};

    use super::*;

    /// The summed statistics are taken (not recomputed) and equal the recomputed ones,
    /// with deleted documents holding segments' maxima.
    #[test]
    fn summed_statistics_equal_the_recomputed_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d_sae = 12;
        let spec = SyntheticSpec {
            documents: 30,
            tokens_per_document: (0, 12),
            documents_per_part: 10,
            feature_weights: (0..d_sae).map(|f| 1.0 + f as f64).collect(),
            k: 3,
            value_step: 0.125,
            seed: 99,
        };
        let full = tmp.path().join("full");
        write_synthetic_index(&full, &spec).unwrap();
        let dest = tmp.path().join("seg");
        let mut set = split_into_segments(&full, &dest, &[0..1, 1..2, 2..3]).unwrap();
        for segment in &mut set.segments {
            crate::build(&SegmentSet::segment_dir(&dest, &segment.name)).unwrap();
            for doc in [0, 3, 4, 10, 11, 12, 13, 19, 27] {
                segment.delete(doc);
            }
        }
        set.publish(&dest).unwrap();
        let index = SegmentedIndex::open(&dest).unwrap();
        for feature in 0..d_sae as u32 {
            let f = feature as usize;
            let summed = index.summed_stats(feature, f).unwrap();
            let kept = index.kept(f, Exclusions::default(), None).unwrap();
            let recomputed = index
                .stats_of(feature, &kept, Exclusions::default(), None)
                .unwrap();
            assert_eq!(summed, Some(recomputed), "feature {feature}");
        }
    }
}
