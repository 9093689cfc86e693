//! The questions an index answers, as types: one request type (with `Default`) and one
//! answer type per question. The command line's `--json`, the web server's JSON API and
//! the Python package return these answers field for field; their JSON Schemas are in
//! `schemas/answers/` (generated from these types and checked by a test).
//!
//! One naming scheme throughout: `feature` is a feature id, `doc` a document's number and
//! `id` its stable id, `position` a token's position in its document, `token` a token id
//! and `token_text` its piece of the text; `activation` is one feature's value on one
//! token, `max_activation`, `mean_activation` and `min_activation` summarise a feature's
//! activations, and `score` is what a ranking sorted by.

use std::ops::Range;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    by_token::TokenPattern,
    index::{Exclusions, FeatureReport, FeatureStats, Rank, TextHit},
    layout::QueryCounts,
    rank::Aggregate,
    registry::FeatureLabel,
    restrict::Restriction,
};

/// A document of the index: its number, or its stable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DocRef {
    /// The document's number (from 0).
    Number(u32),
    /// The document's stable id (from the corpus).
    Id(String),
}

impl std::fmt::Display for DocRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocRef::Number(doc) => write!(f, "{doc}"),
            DocRef::Id(id) => write!(f, "{id:?}"),
        }
    }
}

/// `top_texts`: the texts where a feature fires most strongly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TopTextsRequest {
    /// The feature.
    pub feature: u32,
    /// How many texts.
    pub k: usize,
    /// Per token, or per document by its max or sum.
    pub rank: Rank,
    /// Tokens of context on each side of the hit.
    pub context: u32,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// Only texts of these documents (default: all).
    pub restrict: Restriction,
    /// Only hits on this token (by text, id or regex; default: any token).
    pub token: Option<TokenPattern>,
}

impl Default for TopTextsRequest {
    fn default() -> Self {
        Self {
            feature: 0,
            k: 10,
            rank: Rank::Token,
            context: 8,
            exclusions: Exclusions::default(),
            restrict: Restriction::default(),
            token: None,
        }
    }
}

/// The answer of `top_texts`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TopTexts {
    /// The feature.
    pub feature: u32,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
    /// How the texts are ranked.
    pub rank: Rank,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// The documents the texts were taken from.
    pub restrict: Restriction,
    /// The token the hits are on, if one was asked for.
    pub token: Option<TokenPattern>,
    /// The texts, best first.
    pub texts: Vec<TextHit>,
}

/// `top_features` and `per_token`: a document's (or a text's) strongest features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TopFeaturesRequest {
    /// How many features (per token, for `per_token`).
    pub k: usize,
    /// How a feature's activations over the tokens become its score.
    pub aggregate: Aggregate,
    /// Only these positions of a document (`None`: all).
    pub tokens: Option<Range<u32>>,
    /// Tokens left out.
    pub exclusions: Exclusions,
}

impl Default for TopFeaturesRequest {
    fn default() -> Self {
        Self {
            k: 10,
            aggregate: Aggregate::Max,
            tokens: None,
            exclusions: Exclusions::default(),
        }
    }
}

/// What a `top_features` or `per_token` answer is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Subject {
    /// A document of the index.
    Document {
        /// Its number.
        doc: u32,
        /// Its stable id.
        id: String,
        /// The positions asked for (`[start, end)`), if not all.
        tokens: Option<[u32; 2]>,
    },
    /// A text run live through the index's model and SAE.
    Text {
        /// The text.
        text: String,
    },
}

/// One feature of a `top_features` answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RankedFeature {
    /// The feature.
    pub feature: u32,
    /// What the ranking sorted by (its max or sum over the tokens).
    pub score: f32,
    /// Its largest activation.
    pub activation: f32,
    /// The position of that activation (the first, on ties).
    pub position: u32,
    /// The document of that position, for an answer over several documents
    /// (`subset_features`); absent for one document or text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<u32>,
    /// The text of the token there.
    pub token_text: String,
    /// How many of the tokens it is active on.
    pub active_tokens: u32,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
}

/// The answer of `top_features`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TopFeatures {
    /// The document or text.
    pub of: Subject,
    /// How scores were aggregated.
    pub aggregate: Aggregate,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// The features, best first (ties: lower id first).
    pub features: Vec<RankedFeature>,
}

/// One feature's activation on one token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct FeatureActivation {
    /// The feature.
    pub feature: u32,
    /// Its activation.
    pub activation: f32,
}

/// One token of a `per_token` answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TokenFeatures {
    /// Its position.
    pub position: u32,
    /// Its text.
    pub token_text: String,
    /// Its strongest features (at most `k`), strongest first.
    pub features: Vec<FeatureActivation>,
}

/// The answer of `per_token`: each counted token's strongest features.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PerToken {
    /// The document or text.
    pub of: Subject,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// The tokens, in order.
    pub tokens: Vec<TokenFeatures>,
}

/// `feature`: everything about one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FeatureRequest {
    /// The feature.
    pub feature: u32,
    /// Top examples.
    pub examples: usize,
    /// Activation bands (quantiles from the top).
    pub bands: usize,
    /// Examples from each band.
    pub per_band: usize,
    /// Co-activating neighbours.
    pub neighbours: usize,
    /// Tokens of context on each side of an example.
    pub context: u32,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// Only these documents: statistics, examples, bands and neighbours all count
    /// their tokens alone (default: all).
    pub restrict: Restriction,
}

impl Default for FeatureRequest {
    fn default() -> Self {
        Self {
            feature: 0,
            examples: 5,
            bands: 4,
            per_band: 5,
            neighbours: 10,
            context: 8,
            exclusions: Exclusions::default(),
            restrict: Restriction::default(),
        }
    }
}

/// `sample`: random live features with their top examples (feature discovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SampleRequest {
    /// How many features.
    pub n: usize,
    /// The random seed (the same seed gives the same features).
    pub seed: u64,
    /// Top examples per feature.
    pub examples: usize,
    /// Tokens of context on each side of an example.
    pub context: u32,
    /// Only features live in these documents, with statistics and examples from them
    /// (default: all).
    pub restrict: Restriction,
}

impl Default for SampleRequest {
    fn default() -> Self {
        Self {
            n: 10,
            seed: 0,
            examples: 3,
            context: 8,
            restrict: Restriction::default(),
        }
    }
}

/// One feature of a `sample` answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SampledFeature {
    /// The feature.
    pub feature: u32,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
    /// Its statistics.
    pub stats: FeatureStats,
    /// Its strongest examples.
    pub top_texts: Vec<TextHit>,
}

/// The answer of `sample`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Sample {
    /// The seed used.
    pub seed: u64,
    /// The documents the features were sampled from.
    pub restrict: Restriction,
    /// The features, in increasing id order.
    pub features: Vec<SampledFeature>,
}

/// `info`: what the index holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InfoRequest {
    /// List the dead features' ids (else only count them).
    pub list_dead: bool,
}

/// The answer of `info`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Info {
    /// The index folder.
    pub index: String,
    /// The model (repo id or folder).
    pub model: String,
    /// The SAE.
    pub sae: String,
    /// The hook point.
    pub hook: String,
    /// The SAE's number of features.
    pub d_sae: usize,
    /// Documents, tokens, counted tokens, nonzeros.
    pub counts: QueryCounts,
    /// Features active on some counted token.
    pub live_features: usize,
    /// Features never active on a counted token.
    pub dead_features: usize,
    /// Their ids, when asked for.
    pub dead: Option<Vec<u32>>,
    /// Labelled features.
    pub labels: usize,
}

/// The answer of `label`, `set_label` and `accept_label`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LabelAnswer {
    /// The feature.
    pub feature: u32,
    /// Its label (`None`: not labelled).
    pub label: Option<FeatureLabel>,
}

/// `explain`: a text's strongest features (live), then each one's top texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ExplainRequest {
    /// How many of the text's features.
    pub features: usize,
    /// Top texts per feature.
    pub texts: usize,
    /// Tokens of context on each side of a top text.
    pub context: u32,
    /// Tokens left out.
    pub exclusions: Exclusions,
}

impl Default for ExplainRequest {
    fn default() -> Self {
        Self {
            features: 5,
            texts: 3,
            context: 8,
            exclusions: Exclusions::default(),
        }
    }
}

/// One feature of an `explain` answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ExplainedFeature {
    /// The feature.
    pub feature: u32,
    /// Its largest activation on the text.
    pub activation: f32,
    /// Where.
    pub position: u32,
    /// The text of the token there.
    pub token_text: String,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
    /// Where it fires most in the index.
    pub top_texts: Vec<TextHit>,
}

/// The answer of `explain`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Explain {
    /// The text.
    pub text: String,
    /// Its strongest features, strongest first.
    pub features: Vec<ExplainedFeature>,
}

/// One token of a text run live through the index's model and SAE (what live analysis
/// produces; the query layer ranks it like the index's own tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzedToken {
    /// Position in the text's tokens.
    pub position: u32,
    /// Its piece of the text (the pieces concatenate to the text).
    pub text: String,
    /// Active features, strongest first.
    pub features: Vec<u32>,
    /// Their activations.
    pub values: Vec<f32>,
    /// A special token (BOS, ...).
    pub special: bool,
    /// An attention sink (the first position of the text or of a model window).
    pub sink: bool,
}

/// A text run live, token by token.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzedText {
    /// The text.
    pub text: String,
    /// Its tokens.
    pub tokens: Vec<AnalyzedToken>,
}

/// An answer as a JSON value, the one form every front end prints: activations (stored
/// as `f32`) become the `f64` of the same value, so a JSON reader, which parses numbers
/// into doubles, gets exactly the stored value (`3.927734375`, not the shorter `f32`
/// spelling `3.9277344`, which parses to another double).
pub fn to_json<T: Serialize>(answer: &T) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(answer)
}

/// Every answer type, by the name of its schema file (for `schemas/answers/`).
pub fn answer_schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("top-texts", schemars::schema_for!(TopTexts)),
        ("top-features", schemars::schema_for!(TopFeatures)),
        ("per-token", schemars::schema_for!(PerToken)),
        ("feature", schemars::schema_for!(FeatureReport)),
        ("sample", schemars::schema_for!(Sample)),
        ("info", schemars::schema_for!(Info)),
        ("label", schemars::schema_for!(LabelAnswer)),
        ("explain", schemars::schema_for!(Explain)),
        (
            "silent",
            schemars::schema_for!(crate::silent::SilentContexts),
        ),
        (
            "document",
            schemars::schema_for!(crate::browse::DocumentPage),
        ),
        ("overview", schemars::schema_for!(crate::browse::Overview)),
        (
            "documents",
            schemars::schema_for!(crate::documents::DocumentList),
        ),
        ("contrast", schemars::schema_for!(crate::contrast::Contrast)),
        (
            "token-features",
            schemars::schema_for!(crate::by_token::TokenFeatureProfile),
        ),
        (
            "subset-features",
            schemars::schema_for!(crate::subset::SubsetFeatures),
        ),
    ]
}
