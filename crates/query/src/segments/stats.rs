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
//!   cannot be shown (values spanning more than ~40 binary orders of magnitude), the
//!   feature's row of [`SummedTable`] is `None` and its statistics are recomputed from
//!   the postings, as they are for segments of query format version 2.
//!
//! Every feature's sums are computed once per opened index, on the first question that
//! needs them, into a [`SummedTable`]: answering from it reads no file, so a question
//! costs the same over any number of segments.
//!
//! A segment's deleted rows are read once per opened index (their tokens' codes: few,
//! as deletions are) and kept per feature ([`DeletedRows`]), rather than stored at
//! publish time: nothing in the format changes when documents are deleted, and an
//! index opened before a deletion is published keeps answering from its own set.

use std::collections::{HashMap, HashSet};

use super::{Segment, SegmentedIndex};
use crate::{
    QueryError, QueryIndex,
    build::{histogram_bin, histogram_exponent, rebin, value_unit},
    index::{Computed, Exclusions, FeatureStats},
    layout::{HISTOGRAM_BINS, QueryFile},
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

/// Every feature's live statistics with the default exclusions, summed once from the
/// segments' stored ones (on the first question that needs them: an opened index's
/// segments and deletions never change), so that a question reads no file: 128 bytes
/// per feature (16 MiB for 131,072 features).
pub(super) struct SummedTable {
    /// Counted live tokens.
    counted: u64,
    /// Per feature; `None` where the sum cannot be shown exact (see the module docs).
    rows: Vec<Option<Summed>>,
}

/// One feature's summed statistics.
#[derive(Clone, Copy)]
struct Summed {
    count: u64,
    documents: u64,
    postings: u64,
    max: f32,
    sum: f64,
    histogram: [u32; HISTOGRAM_BINS],
}

impl SummedTable {
    /// Counted live tokens (default exclusions).
    pub(super) fn counted(&self) -> u64 {
        self.counted
    }

    /// `feature`'s live count and sum, `None` when its sum cannot be shown exact.
    pub(super) fn count_and_sum(&self, feature: usize) -> Option<(u64, f64)> {
        let row = self.rows.get(feature)?.as_ref()?;
        Some((row.count, row.sum))
    }

    /// `feature`'s statistics, `None` when they must be recomputed from the postings.
    pub(super) fn stats(&self, feature: u32) -> Option<FeatureStats> {
        let row = self.rows.get(feature as usize)?.as_ref()?;
        let computed = Computed {
            count: row.count,
            documents: row.documents,
            max: row.max,
            sum: row.sum,
            histogram: row.histogram.to_vec(),
        };
        Some(computed.stats(feature, self.counted, row.postings, Exclusions::default()))
    }
}

/// One segment's statistics of a feature (stored, or live), its histogram binned over
/// `(0, 2^binned_over]`.
#[derive(Clone, Copy)]
struct Part {
    count: u64,
    documents: u64,
    max: f32,
    sum: f64,
    histogram: [u32; HISTOGRAM_BINS],
    binned_over: i32,
}

/// A segment's stored statistics, every feature's (their chunks verified).
struct Stored<'a> {
    count: &'a [u32],
    documents: &'a [u32],
    max: &'a [f32],
    sum: &'a [f64],
    /// The segment's index (histograms are read from it: stored packed or fixed).
    index: &'a QueryIndex,
    min: &'a [f32],
    postings: &'a [u32],
    /// What the segment's deleted documents hold.
    deleted: &'a DeletedRows,
}

/// `values[..rows]` of the features file, its chunks verified.
fn column<'a, T>(
    index: &'a QueryIndex,
    values: &'a [T],
    rows: usize,
) -> Result<&'a [T], QueryError> {
    let file = &index.features.file;
    index.range(file, QueryFile::Features, values, 0, rows as u64)
}

impl<'a> Stored<'a> {
    /// `segment`'s stored statistics of `d_sae` features; `None` for query files of
    /// format version 2 (their histograms are binned otherwise).
    fn of(segment: &'a Segment, d_sae: usize) -> Result<Option<Self>, QueryError> {
        let index = &segment.index;
        let features = &index.features;
        let Some(min) = &features.min else {
            return Ok(None);
        };
        Ok(Some(Self {
            count: column(index, &features.count, d_sae)?,
            documents: column(index, &features.documents, d_sae)?,
            max: column(index, &features.max, d_sae)?,
            sum: column(index, &features.sum, d_sae)?,
            index,
            min: column(index, min, d_sae)?,
            postings: column(index, &features.postings, d_sae)?,
            deleted: segment.deleted_rows()?,
        }))
    }

    /// Feature `f`'s stored statistics.
    fn part(&self, f: usize) -> Result<Part, QueryError> {
        let mut histogram = [0; HISTOGRAM_BINS];
        histogram.copy_from_slice(&self.index.stored_histogram(f)?);
        Ok(Part {
            count: u64::from(self.count[f]),
            documents: u64::from(self.documents[f]),
            max: self.max[f],
            sum: self.sum[f],
            histogram,
            binned_over: histogram_exponent(self.max[f]),
        })
    }

    /// What the deleted documents hold of `feature`.
    fn gone(&self, feature: u32) -> Option<&'a DeletedFeature> {
        if self.deleted.features.is_empty() {
            return None;
        }
        self.deleted.features.get(&feature)
    }
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

    /// `stored`, the stored statistics of `f`, less `gone`, the deleted rows' part.
    fn live_part(
        &self,
        f: usize,
        stored: Part,
        gone: Option<&DeletedFeature>,
    ) -> Result<Part, QueryError> {
        let Some(gone) = gone.filter(|gone| !gone.values.is_empty()) else {
            return Ok(stored);
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
            if over < live.binned_over {
                // The live max is a power of two lower: bin the live values again.
                live.histogram = [0; HISTOGRAM_BINS];
                for (_, value) in self.kept(f, Exclusions::default(), None)? {
                    live.histogram[histogram_bin(value, live.max)] += 1;
                }
                live.binned_over = over;
            }
        }
        Ok(live)
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
    /// Every feature's statistics over the live documents with the default exclusions,
    /// summed from the segments' stored statistics (see the module docs; built on first
    /// use); `None` for segments of query format version 2.
    pub(super) fn summed(&self) -> Result<Option<&SummedTable>, QueryError> {
        if let Some(table) = self.summed.get() {
            return Ok(table.as_ref());
        }
        let table = self.sum_stats()?;
        Ok(self.summed.get_or_init(|| table).as_ref())
    }

    fn sum_stats(&self) -> Result<Option<SummedTable>, QueryError> {
        let mut stored = Vec::with_capacity(self.segments.len());
        let mut counted = 0u64;
        for segment in &self.segments {
            let Some(columns) = Stored::of(segment, self.d_sae)? else {
                return Ok(None);
            };
            let all = segment.index.counted_tokens(Exclusions::default(), None)?;
            counted += all.saturating_sub(columns.deleted.counted);
            stored.push(columns);
        }
        let mut parts = Vec::with_capacity(stored.len());
        let rows = (0..self.d_sae)
            .map(|f| self.summed_row(f, &stored, &mut parts))
            .collect::<Result<_, _>>()?;
        Ok(Some(SummedTable { counted, rows }))
    }

    /// Feature `f`'s row of the table, `None` when its sum cannot be shown exact.
    fn summed_row(
        &self,
        f: usize,
        stored: &[Stored<'_>],
        parts: &mut Vec<Part>,
    ) -> Result<Option<Summed>, QueryError> {
        let feature = f as u32;
        let (mut unit, mut total, mut postings) = (f64::INFINITY, 0.0f64, 0u64);
        for columns in stored {
            let gone = columns.gone(feature).map_or(0, |gone| gone.postings);
            postings += u64::from(columns.postings[f]).saturating_sub(gone);
            if columns.count[f] > 0 {
                unit = unit.min(value_unit(columns.min[f]));
                total += columns.sum[f];
            }
        }
        // Every sum below is exact (so in any order) while the total stays below
        // 2^53 units; 2^52 leaves room for the rounding of `total` itself.
        if total > 2f64.powi(52) * unit {
            return Ok(None);
        }
        parts.clear();
        for (segment, columns) in self.segments.iter().zip(stored) {
            parts.push(segment.live_part(f, columns.part(f)?, columns.gone(feature))?);
        }
        Ok(Some(combine(parts, postings)))
    }
}

/// The segments' live statistics of a feature as one index's (each segment's histogram
/// is binned over a range no wider than the index's), with its `postings`.
fn combine(parts: &[Part], postings: u64) -> Summed {
    let max = parts.iter().map(|p| p.max).fold(0.0f32, f32::max);
    let over = histogram_exponent(max);
    let mut all = Summed {
        count: 0,
        documents: 0,
        postings,
        max,
        sum: 0.0,
        histogram: [0; HISTOGRAM_BINS],
    };
    for part in parts.iter().filter(|p| p.count > 0) {
        rebin(&part.histogram, part.binned_over, &mut all.histogram, over);
        all.count += part.count;
        all.documents += part.documents;
        all.sum += part.sum;
    }
    all
}

/// The features of [`three_segments_with_deletions`]'s index.
#[cfg(test)]
pub(super) const FIXTURE_D_SAE: usize = 12;

/// The documents [`three_segments_with_deletions`] deletes (from every segment).
#[cfg(test)]
pub(super) const FIXTURE_DELETED: [u32; 9] = [0, 3, 4, 10, 11, 12, 13, 19, 27];

/// A synthetic index of 30 documents in `dir`, split into three segments with query
/// files, [`FIXTURE_DELETED`] deleted, opened.
#[cfg(test)]
pub(super) fn three_segments_with_deletions(dir: &std::path::Path, seed: u64) -> SegmentedIndex {
    use saeidx_format::segments::SegmentSet;
    use saeidx_testkit::synthetic::{SyntheticSpec, split_into_segments, write_synthetic_index};

    let spec = SyntheticSpec {
        documents: 30,
        tokens_per_document: (0, 12),
        documents_per_part: 10,
        feature_weights: (0..FIXTURE_D_SAE).map(|f| 1.0 + f as f64).collect(),
        k: 3,
        value_step: 0.125,
        seed,
    };
    let full = dir.join("full");
    write_synthetic_index(&full, &spec).unwrap();
    let dest = dir.join("seg");
    let mut set = split_into_segments(&full, &dest, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &mut set.segments {
        crate::build(&SegmentSet::segment_dir(&dest, &segment.name)).unwrap();
        for doc in FIXTURE_DELETED {
            segment.delete(doc);
        }
    }
    set.publish(&dest).unwrap();
    SegmentedIndex::open(&dest).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summed statistics are taken (not recomputed) and equal the recomputed ones,
    /// with deleted documents holding segments' maxima.
    #[test]
    fn summed_statistics_equal_the_recomputed_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let index = three_segments_with_deletions(tmp.path(), 99);
        for feature in 0..FIXTURE_D_SAE as u32 {
            let f = feature as usize;
            let summed = index.summed().unwrap().unwrap().stats(feature);
            let kept = index.kept(f, Exclusions::default(), None).unwrap();
            let recomputed = index
                .stats_of(feature, &kept, Exclusions::default(), None)
                .unwrap();
            assert_eq!(summed, Some(recomputed), "feature {feature}");
        }
    }
}
