//! Ranking features over a text's tokens: the one function behind `top-features`, for a
//! document of the index and for a text run live through the model.

use serde::Serialize;

/// One token's active features (any order), as the SAE produced them.
#[derive(Debug, Clone, Copy)]
pub struct TokenCodes<'a> {
    /// Position of the token in its text.
    pub position: u32,
    /// Active feature ids.
    pub features: &'a [u32],
    /// Their activations, parallel to `features`.
    pub values: &'a [f32],
}

/// Tokens' codes decoded from an index, held together (one allocation per column).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedCodes {
    positions: Vec<u32>,
    ends: Vec<usize>,
    features: Vec<u32>,
    values: Vec<f32>,
}

impl DecodedCodes {
    /// Adds a token at `position` with its codes.
    pub fn push(&mut self, position: u32, features: &[u32], values: &[f32]) {
        self.positions.push(position);
        self.features.extend_from_slice(features);
        self.values.extend_from_slice(values);
        self.ends.push(self.features.len());
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The tokens, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = TokenCodes<'_>> + '_ {
        (0..self.positions.len()).map(|i| {
            let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
            let end = self.ends[i];
            TokenCodes {
                position: self.positions[i],
                features: &self.features[start..end],
                values: &self.values[start..end],
            }
        })
    }
}

/// How a feature's activations over a text's tokens become one score.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The largest activation on any token (mlxterp's `get_top_features_for_text`).
    #[default]
    Max,
    /// The sum over tokens.
    Sum,
}

/// A feature's score over a text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FeatureScore {
    /// Feature id.
    pub feature: u32,
    /// The aggregate ([`Aggregate`]) over the text's tokens.
    pub score: f32,
    /// Its largest activation.
    pub max: f32,
    /// The position of that largest activation (the first, on ties).
    pub position: u32,
    /// On how many tokens it is active.
    pub tokens: u32,
}

/// The `k` best features over `tokens` by `aggregate`, best first (ties: lower feature
/// id first). `d_sae` bounds the feature ids; larger ids are ignored by the caller's
/// contract (the index checks them when it is built).
pub fn rank_features<'a>(
    tokens: impl IntoIterator<Item = TokenCodes<'a>>,
    aggregate: Aggregate,
    k: usize,
    d_sae: usize,
) -> Vec<FeatureScore> {
    let mut ranking = FeatureRanking::new(aggregate, d_sae);
    for token in tokens {
        ranking.add(token.position, token.features, token.values);
    }
    ranking.best(k)
}

/// Features' scores over a text's tokens, added one token at a time (in position
/// order: sums add in that order). Each feature seen has one entry; a dense table of
/// u32 (4 bytes per SAE feature) finds it.
pub(crate) struct FeatureRanking {
    aggregate: Aggregate,
    /// Per feature: its entry in `scores`, or `u32::MAX` if not seen.
    slot: Vec<u32>,
    scores: Vec<FeatureScore>,
}

impl FeatureRanking {
    /// An empty ranking of features below `d_sae`.
    pub(crate) fn new(aggregate: Aggregate, d_sae: usize) -> Self {
        Self {
            aggregate,
            slot: vec![u32::MAX; d_sae],
            scores: Vec::new(),
        }
    }

    /// Adds a token at `position` with its active `features` and their `values`.
    #[inline]
    pub(crate) fn add(&mut self, position: u32, features: &[u32], values: &[f32]) {
        for (&feature, &value) in features.iter().zip(values) {
            let Some(slot) = self.slot.get_mut(feature as usize) else {
                continue;
            };
            let Some(score) = self.scores.get_mut(*slot as usize) else {
                *slot = self.scores.len() as u32;
                self.scores.push(FeatureScore {
                    feature,
                    score: value,
                    max: value,
                    position,
                    tokens: 1,
                });
                continue;
            };
            score.tokens += 1;
            match self.aggregate {
                Aggregate::Max => score.score = score.score.max(value),
                Aggregate::Sum => score.score += value,
            }
            if value > score.max {
                score.max = value;
                score.position = position;
            }
        }
    }

    /// The `k` best, best first (ties: lower feature id first): a selection, then a
    /// sort of the `k` selected only.
    pub(crate) fn best(mut self, k: usize) -> Vec<FeatureScore> {
        let order = |a: &FeatureScore, b: &FeatureScore| {
            b.score.total_cmp(&a.score).then(a.feature.cmp(&b.feature))
        };
        if k == 0 {
            return Vec::new();
        }
        if self.scores.len() > k {
            self.scores.select_nth_unstable_by(k - 1, order);
            self.scores.truncate(k);
        }
        self.scores.sort_unstable_by(order);
        self.scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_sum_rank_over_tokens() {
        let tokens = [
            TokenCodes {
                position: 1,
                features: &[3, 5],
                values: &[1.0, 4.0],
            },
            TokenCodes {
                position: 2,
                features: &[3, 7],
                values: &[3.5, 0.5],
            },
        ];
        let max = rank_features(tokens, Aggregate::Max, 10, 8);
        assert_eq!(
            max.iter().map(|s| (s.feature, s.score)).collect::<Vec<_>>(),
            [(5, 4.0), (3, 3.5), (7, 0.5)]
        );
        assert_eq!((max[1].position, max[1].tokens), (2, 2));
        let sum = rank_features(tokens, Aggregate::Sum, 1, 8);
        assert_eq!((sum[0].feature, sum[0].score), (3, 4.5));
    }
}
