//! "The rest" of an index of segments for contrasts (`B` omitted): every live counted
//! token not in a subset, from the totals each segment stores, never decoding the live
//! index.
//!
//! Per feature, the live count and sum and the counted tokens are those of the summed
//! statistics table ([`super::stats::SummedTable`]): the segments' stored ones less
//! their deleted rows', summed once per opened index. The sums are exact under the
//! condition [`super::stats`] states, so equal one index's. When that cannot be shown
//! for some feature, or a segment's query files (format version 2) store no smallest
//! values, the caller decodes the live tokens instead.

use super::SegmentedIndex;
use crate::{QueryError, subset::Profile};

impl SegmentedIndex {
    /// The profile of every live counted token (default exclusions) not in the set `of`
    /// was computed over, from the summed statistics table less `of`; `None` when the
    /// stored sums cannot be shown exact (see the module docs). `max` and `argmax` are
    /// left empty.
    pub(super) fn rest_from_stored(&self, of: &Profile) -> Result<Option<Profile>, QueryError> {
        let Some(table) = self.summed()? else {
            return Ok(None);
        };
        let mut count = Vec::with_capacity(self.d_sae);
        let mut sum = Vec::with_capacity(self.d_sae);
        for (f, (part_count, part_sum)) in of.count.iter().zip(&of.sum).enumerate() {
            let Some((all_count, all_sum)) = table.count_and_sum(f) else {
                return Ok(None);
            };
            count.push(all_count.saturating_sub(*part_count));
            sum.push(all_sum - part_sum);
        }
        Ok(Some(Profile {
            tokens: table.counted().saturating_sub(of.tokens),
            count,
            sum,
            max: Vec::new(),
            argmax: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        Restriction,
        index::Exclusions,
        segments::stats::{FIXTURE_DELETED, three_segments_with_deletions},
    };

    /// The rest from the stored totals is taken (not decoded) and equals the decoded
    /// one, for subsets across segments and deleted documents holding values.
    #[test]
    fn the_rest_from_stored_totals_equals_the_decoded_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let index = three_segments_with_deletions(tmp.path(), 98);
        for listed in [vec![1u32], vec![2, 5, 14, 22], (20..30).collect()] {
            let listed: Vec<u32> = listed
                .into_iter()
                .filter(|d| !FIXTURE_DELETED.contains(d))
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
