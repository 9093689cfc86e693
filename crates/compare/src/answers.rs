//! The request and answer types of `compare`, for every front end (serde + JSON Schema).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use saeidx_query::{Exclusions, TextHit};

/// What the one-to-one matching scores pairs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MatchBy {
    /// Co-activation (Pearson's r over the shared tokens) when the indexes share their
    /// tokens, else decoder cosine.
    #[default]
    Auto,
    /// Cosine of the decoder directions.
    Decoder,
    /// Pearson's r of the activations over the shared tokens.
    Coactivation,
}

/// `compare`: two indexes' features side by side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CompareRequest {
    /// Best matches kept per feature of A by each measure (decoder cosine,
    /// co-activation); a feature's candidates are their union.
    pub candidates: usize,
    /// What the one-to-one matching scores by.
    pub by: MatchBy,
    /// A pair scoring below this is no match (a feature of A without one has no
    /// counterpart).
    pub min_score: f64,
    /// A feature of B belongs to a split of `a` when at least this fraction of its
    /// tokens are `a`'s.
    pub split_containment: f64,
    /// A split is reported when the union of its features has at least this Jaccard
    /// similarity with `a`…
    pub split_min_jaccard: f64,
    /// …and beats the best single feature of B by at least this much.
    pub split_gain: f64,
    /// Top examples compared per feature across runs of one SAE.
    pub examples: usize,
    /// Tokens of context on each side of an example.
    pub context: u32,
    /// Tokens left out.
    pub exclusions: Exclusions,
}

impl Default for CompareRequest {
    fn default() -> Self {
        Self {
            candidates: 5,
            by: MatchBy::Auto,
            min_score: 0.5,
            split_containment: 0.7,
            split_min_jaccard: 0.5,
            split_gain: 0.1,
            examples: 10,
            context: 8,
            exclusions: Exclusions::default(),
        }
    }
}

/// One index of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Side {
    /// The index folder.
    pub index: String,
    /// Its SAE's source, as recorded.
    pub sae: String,
    /// Its SAE's SHA-256.
    pub sae_sha256: String,
    /// Its SAE's width.
    pub d_sae: usize,
    /// The hook point.
    pub hook: String,
    /// The model.
    pub model: String,
    /// Documents.
    pub documents: u32,
    /// Counted tokens (the density's denominator).
    pub tokens: u64,
}

/// A feature of B as a candidate match for a feature of A.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Candidate {
    /// Feature of B.
    pub feature: u32,
    /// Cosine of the two decoder directions.
    pub decoder_cosine: f32,
    /// Pearson's r of their activations over the shared tokens (`null` without shared
    /// tokens, or when either never fires there).
    pub pearson: Option<f64>,
    /// Jaccard similarity of their token sets (`null` without shared tokens).
    pub jaccard: Option<f64>,
    /// Shared tokens where both fire (`null` without shared tokens).
    pub together: Option<u64>,
    /// The score the matching used.
    pub score: Option<f64>,
}

/// A feature of A with its candidates in B and its match.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureMatch {
    /// Feature of A.
    pub feature: u32,
    /// Tokens it fires on (shared tokens only; `null` without them).
    pub count: Option<u64>,
    /// Its one-to-one match in B, if any.
    pub matched: Option<u32>,
    /// The match's score.
    pub score: Option<f64>,
    /// Candidates, best score first.
    pub candidates: Vec<Candidate>,
}

/// A feature of A whose tokens a group of B's features share out between them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Split {
    /// Feature of A.
    pub feature: u32,
    /// The features of B it splits into, most of each one's tokens being `feature`'s.
    pub into: Vec<u32>,
    /// Jaccard similarity of the union of their token sets with `feature`'s.
    pub union_jaccard: f64,
    /// The best Jaccard similarity of one feature of B with `feature`.
    pub best_single_jaccard: f64,
    /// Fraction of `feature`'s tokens where some feature of the group fires.
    pub coverage: f64,
}

/// How the matched pairs' scores are distributed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ScoreDistribution {
    /// Matched pairs in each of 10 equal bins over [0, 1] (the last includes 1).
    pub histogram: Vec<u64>,
    /// The 10th, 25th, 50th, 75th and 90th percentile of the matched scores.
    pub percentiles: Vec<f64>,
    /// The mean matched score.
    pub mean: f64,
}

/// The answer of `compare` for two different SAEs.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SaeComparison {
    /// Index A.
    pub a: Side,
    /// Index B.
    pub b: Side,
    /// The counted tokens both hold, or why they share none (`shared_tokens_absent`).
    pub shared_tokens: Option<u64>,
    /// Why the indexes do not share tokens, when they do not.
    pub shared_tokens_absent: Option<String>,
    /// What the matching scored pairs by (never `auto`).
    pub matched_by: MatchBy,
    /// The request.
    pub request: CompareRequest,
    /// How the one-to-one matching was made.
    pub matching: String,
    /// Matched pairs.
    pub matched: u64,
    /// Features of A without a counterpart (live features only when co-activation is
    /// known).
    pub unmatched_a: Vec<u32>,
    /// Features of B no feature of A matched.
    pub unmatched_b: Vec<u32>,
    /// Features of A that never fire on the shared tokens (`[]` without them).
    pub dead_a: Vec<u32>,
    /// The distribution of the matched scores.
    pub scores: ScoreDistribution,
    /// Features of A that split into several of B.
    pub splits: Vec<Split>,
    /// Every feature of A.
    pub features: Vec<FeatureMatch>,
}

/// One feature's statistics in each run.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureChange {
    /// Feature id.
    pub feature: u32,
    /// Tokens it fires on in A and in B.
    pub count: [u64; 2],
    /// Density in A and B.
    pub density: [f64; 2],
    /// Largest activation in A and B.
    pub max_activation: [f32; 2],
    /// Mean activation where active in A and B.
    pub mean_activation: [f32; 2],
    /// B's density minus A's.
    pub density_change: f64,
    /// B's top examples that are not among A's (by document id and position).
    pub new_examples: Vec<TextHit>,
}

/// The answer of `compare` for two runs of one SAE (equal SAE SHA-256).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RunComparison {
    /// Index A (the earlier run).
    pub a: Side,
    /// Index B.
    pub b: Side,
    /// The request.
    pub request: CompareRequest,
    /// Features that fire in B but not in A.
    pub appeared: Vec<u32>,
    /// Features that fire in A but not in B.
    pub vanished: Vec<u32>,
    /// Features whose statistics or top examples differ, largest density change first.
    pub changed: Vec<FeatureChange>,
    /// Features whose statistics and top examples are the same in both.
    pub unchanged: u64,
}

/// The answer of `compare`: two SAEs, or two runs of one SAE.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Comparison {
    /// Different SAEs: matches, features without counterpart, splits.
    Saes(SaeComparison),
    /// One SAE (equal SHA-256), two runs: what changed.
    Runs(RunComparison),
}
