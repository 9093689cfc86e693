//! "The rest" of an index of segments for contrasts (`B` omitted): every live counted
//! token not in a subset, from the totals each segment stores, never decoding the live
//! index.
//!
//! Per feature, the live count and sum are the segments' stored ones less their deleted
//! rows' ([`super::stats::DeletedRows`]); the counted tokens likewise. The sums are
//! exact, so equal one index's stored sum (added strongest first), under the condition
//! [`super::stats`] states for statistics: every value keeps 11 significant bits, so
//! while a feature's total stays below `2^52` times the lowest bit of its smallest value
//! ([`value_unit`]) every partial sum is exact in f64, whatever the order. When that
//! cannot be shown for some feature, or a segment's query files (format version 2)
//! store no smallest values, the caller decodes the live tokens instead.

use super::SegmentedIndex;
use crate::{QueryError, build::value_unit, index::Exclusions, subset::Profile};

impl SegmentedIndex {
    /// The profile of every live counted token (default exclusions) not in the set `of`
    /// was computed over, from the segments' stored totals less their deleted rows' and
    /// `of`'s; `None` when the stored sums cannot be shown exact (see the module docs).
    /// `max` and `argmax` are left empty.
    pub(super) fn rest_from_stored(&self, of: &Profile) -> Result<Option<Profile>, QueryError> {
        let d_sae = self.d_sae;
        let mut count = vec![0u64; d_sae];
        let mut sum = vec![0.0f64; d_sae];
        let mut total = vec![0.0f64; d_sae];
        let mut unit = vec![f64::INFINITY; d_sae];
        let mut tokens = 0u64;
        for segment in &self.segments {
            let index = &segment.index;
            let features = &index.features;
            let Some(min) = &features.min else {
                return Ok(None);
            };
            let (file, which) = (&features.file, crate::layout::QueryFile::Features);
            let d = d_sae as u64;
            let counts = index.range(file, which, &features.count, 0, d)?;
            let sums = index.range(file, which, &features.sum, 0, d)?;
            let mins = index.range(file, which, min, 0, d)?;
            for f in 0..d_sae {
                if counts[f] > 0 {
                    count[f] += u64::from(counts[f]);
                    sum[f] += sums[f];
                    total[f] += sums[f];
                    unit[f] = unit[f].min(value_unit(mins[f]));
                }
            }
            let deleted = segment.deleted_rows()?;
            tokens += index
                .counted_tokens(Exclusions::default(), None)?
                .saturating_sub(deleted.counted);
            for (&feature, gone) in &deleted.features {
                let f = feature as usize;
                if f < d_sae && !gone.values.is_empty() {
                    let removed: f64 = gone.values.iter().map(|&v| f64::from(v)).sum();
                    count[f] = count[f].saturating_sub(gone.values.len() as u64);
                    sum[f] -= removed;
                }
            }
        }
        // 2^52 leaves room for the rounding of `total` itself (as for statistics).
        if (0..d_sae).any(|f| total[f] > 2f64.powi(52) * unit[f]) {
            return Ok(None);
        }
        Ok(Some(Profile {
            tokens: tokens.saturating_sub(of.tokens),
            count: count
                .iter()
                .zip(&of.count)
                .map(|(all, part)| all.saturating_sub(*part))
                .collect(),
            sum: sum
                .iter()
                .zip(&of.sum)
                .map(|(all, part)| all - part)
                .collect(),
            max: Vec::new(),
            argmax: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use saeidx_format::segments::SegmentSet;
    use saeidx_testkit::synthetic::{SyntheticSpec, split_into_segments, write_synthetic_index};

    use super::*;
    use crate::Restriction;

    /// The rest from the stored totals is taken (not decoded) and equals the decoded
    /// one, for subsets across segments and deleted documents holding values.
    #[test]
    fn the_rest_from_stored_totals_equals_the_decoded_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let d_sae = 12;
        let spec = SyntheticSpec {
            documents: 30,
            tokens_per_document: (0, 12),
            documents_per_part: 10,
            feature_weights: (0..d_sae).map(|f| 1.0 + f as f64).collect(),
            k: 3,
            value_step: 0.125,
            seed: 98,
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
        for listed in [vec![1u32], vec![2, 5, 14, 22], (20..30).collect()] {
            let listed: Vec<u32> = listed
                .into_iter()
                .filter(|d| ![0, 3, 4, 10, 11, 12, 13, 19, 27].contains(d))
                .collect();
            let sets = index
                .live_sets(&Restriction::documents(listed.clone()))
                .unwrap();
            let of = index.profile_of(&sets, Exclusions::default()).unwrap();
            let stored = index.rest_from_stored(&of).unwrap().unwrap();
            let decoded = index.rest_decoded(&of).unwrap();
            assert_eq!(stored.tokens, decoded.tokens, "{listed:?}");
            assert_eq!(stored.count, decoded.count, "{listed:?}");
            assert_eq!(stored.sum, decoded.sum, "{listed:?}");
            assert!(stored.tokens > 0 && stored.count.iter().sum::<u64>() > 0);
        }
    }
}
