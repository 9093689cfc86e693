//! Browsing questions, as a feature browser asks them: a document's page (its tokens
//! coloured by one feature, its top features, each token's features) and the index's
//! overview (provenance, counts, the distribution of feature densities, the most and
//! least frequent features, labels, a sample, the documents). Request types have
//! `Default`; the CLI, the API and Python return these answers field for field.

use std::collections::HashMap;

use saeidx_format::manifest::JobSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    QueryError,
    answers::DocRef,
    documents::{DocumentsRequest, MetadataColumnInfo, list_documents},
    index::{Exclusions, FeatureStats, QueryIndex},
    layout::{FLAG_SINK, FLAG_SPECIAL, QueryCounts},
    limits::Limit,
    registry::Registry,
};

/// No token left out: pages show every token.
const EVERY_TOKEN: Exclusions = Exclusions {
    special: false,
    sinks: false,
};

/// The most tokens one document page shows (a window of the query layer's widest
/// context: `2 × 256` tokens, less the one before the page).
pub const MAX_PAGE_TOKENS: u32 = 500;

/// `document`: one page of a document, coloured by a feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DocumentRequest {
    /// The document.
    pub doc: DocRef,
    /// The feature to colour by (`None`: the document's strongest, by max).
    pub feature: Option<u32>,
    /// The page, from 0.
    pub page: u32,
    /// Tokens per page (at most [`MAX_PAGE_TOKENS`]).
    pub page_tokens: u32,
    /// How many of the document's top features to list.
    pub top: usize,
    /// Tokens left out of the top features (they are still shown, marked).
    pub exclusions: Exclusions,
}

impl Default for DocumentRequest {
    fn default() -> Self {
        Self {
            doc: DocRef::Number(0),
            feature: None,
            page: 0,
            page_tokens: 400,
            top: 20,
            exclusions: Exclusions::default(),
        }
    }
}

/// One of a document's top features.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DocumentFeature {
    /// The feature.
    pub feature: u32,
    /// Its largest activation in the document.
    pub max_activation: f32,
    /// The sum of its activations over the document.
    pub sum_activation: f32,
    /// Tokens it is active on.
    pub count: u32,
    /// Where its largest activation is (the first, on ties).
    pub position: u32,
    /// Its label's name, if any.
    pub name: Option<String>,
}

/// One feature active on a token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct TokenActivation {
    /// The feature.
    pub feature: u32,
    /// Its activation.
    pub activation: f32,
}

/// One token of a document page.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DocumentToken {
    /// Position in the document.
    pub position: u32,
    /// Its piece of the text: pieces concatenate to the document's text.
    pub text: String,
    /// The chosen feature's activation on it (0 when inactive).
    pub activation: f32,
    /// A special token (BOS, ...).
    pub special: bool,
    /// An attention sink (the first position of a model window).
    pub sink: bool,
    /// Every feature active on it, strongest first.
    pub features: Vec<TokenActivation>,
}

/// The answer of `document`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DocumentPage {
    /// Document number.
    pub doc: u32,
    /// Its stable id.
    pub id: String,
    /// Its source file.
    pub source: String,
    /// Its tokens.
    pub tokens: u32,
    /// The feature the tokens are coloured by (`None` when no feature fires in it).
    pub feature: Option<u32>,
    /// That feature's largest activation in the document (the colour scale's top).
    pub feature_max: f32,
    /// The page shown, from 0.
    pub page: u32,
    /// Pages of `page_tokens` tokens.
    pub pages: u32,
    /// Tokens per page.
    pub page_tokens: u32,
    /// The page's tokens.
    pub page_content: Vec<DocumentToken>,
    /// The document's strongest features, by max (ties: lower id).
    pub top_features: Vec<DocumentFeature>,
    /// The exclusions the top features were computed with.
    pub exclusions: Exclusions,
}

impl QueryIndex {
    /// One page of a document: its tokens coloured by a feature, each with its features,
    /// and the document's top features.
    pub fn document_page(&self, request: &DocumentRequest) -> Result<DocumentPage, QueryError> {
        Limit::K.check(request.top)?;
        if request.page_tokens == 0 || request.page_tokens > MAX_PAGE_TOKENS {
            return Err(QueryError::Limit {
                what: "tokens per document page (at least 1)",
                asked: request.page_tokens.to_string(),
                max: u64::from(MAX_PAGE_TOKENS),
            });
        }
        let doc = self.resolve(&request.doc)?;
        if let Some(feature) = request.feature {
            self.feature_index(feature)?;
        }
        let (id, source, _) = self.document(doc)?;
        let (id, source) = (id.to_string(), source.to_string());
        let all = self.document_codes(doc, None, EVERY_TOKEN)?;
        let tokens = all.len() as u32;
        let mut ranked = self.document_features(doc, request.exclusions)?;
        let feature = request
            .feature
            .or_else(|| ranked.first().map(|f| f.feature));
        let feature_max = feature.map_or(0.0, |f| {
            all.iter()
                .filter_map(|t| t.features.iter().position(|g| *g == f).map(|i| t.values[i]))
                .fold(0f32, f32::max)
        });
        ranked.truncate(request.top);
        let pages = tokens.div_ceil(request.page_tokens).max(1);
        if request.page >= pages {
            return Err(QueryError::TokenRange {
                doc,
                start: request.page.saturating_mul(request.page_tokens),
                end: request
                    .page
                    .saturating_add(1)
                    .saturating_mul(request.page_tokens),
                tokens,
            });
        }
        let start = request.page * request.page_tokens;
        let end = (start + request.page_tokens).min(tokens);
        Ok(DocumentPage {
            doc,
            id,
            source,
            tokens,
            feature,
            feature_max,
            page: request.page,
            pages,
            page_tokens: request.page_tokens,
            page_content: self.page_tokens(doc, start, end, feature)?,
            top_features: ranked,
            exclusions: request.exclusions,
        })
    }

    /// Every feature active in document `doc` on the tokens `exclusions` keep, by max
    /// then id.
    fn document_features(
        &self,
        doc: u32,
        exclusions: Exclusions,
    ) -> Result<Vec<DocumentFeature>, QueryError> {
        let mut by_feature: HashMap<u32, DocumentFeature> = HashMap::new();
        for token in self.document_codes(doc, None, exclusions)?.iter() {
            for (&feature, &value) in token.features.iter().zip(token.values) {
                let entry = by_feature.entry(feature).or_insert(DocumentFeature {
                    feature,
                    max_activation: value,
                    sum_activation: 0.0,
                    count: 0,
                    position: token.position,
                    name: None,
                });
                if value > entry.max_activation {
                    entry.max_activation = value;
                    entry.position = token.position;
                }
                entry.sum_activation += value;
                entry.count += 1;
            }
        }
        let mut ranked: Vec<DocumentFeature> = by_feature.into_values().collect();
        ranked.sort_by(|a, b| {
            b.max_activation
                .total_cmp(&a.max_activation)
                .then(a.feature.cmp(&b.feature))
        });
        for entry in &mut ranked {
            entry.name = self
                .registry()
                .get(entry.feature)
                .and_then(|label| label.name.clone());
        }
        Ok(ranked)
    }

    /// Positions `start..end` of document `doc` with their pieces of text (the first
    /// piece starting where the previous token ends, so pages concatenate to the text),
    /// `feature`'s activation and every feature's.
    fn page_tokens(
        &self,
        doc: u32,
        start: u32,
        end: u32,
        feature: Option<u32>,
    ) -> Result<Vec<DocumentToken>, QueryError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let context = (MAX_PAGE_TOKENS + 12) / 2;
        let from = start.saturating_sub(1);
        let center = (from + context).min(end - 1);
        let window = self.window(doc, center, context, feature.unwrap_or(0))?;
        let codes = self.document_codes(doc, Some(start..end), EVERY_TOKEN)?;
        let mut out = Vec::with_capacity(codes.len());
        for (token, piece) in codes
            .iter()
            .zip(window.iter().filter(|t| (start..end).contains(&t.position)))
        {
            out.push(DocumentToken {
                position: token.position,
                text: piece.text.clone(),
                activation: if feature.is_some() {
                    piece.activation
                } else {
                    0.0
                },
                special: piece.flags & FLAG_SPECIAL != 0,
                sink: piece.flags & FLAG_SINK != 0,
                features: strongest_first(token.features, token.values),
            });
        }
        Ok(out)
    }
}

/// A token's features with their values, strongest first (ties by feature id): the
/// query files keep each token's codes in feature order.
fn strongest_first(features: &[u32], values: &[f32]) -> Vec<TokenActivation> {
    let mut out: Vec<TokenActivation> = features
        .iter()
        .zip(values)
        .map(|(&feature, &activation)| TokenActivation {
            feature,
            activation,
        })
        .collect();
    out.sort_by(|a, b| {
        b.activation
            .total_cmp(&a.activation)
            .then(a.feature.cmp(&b.feature))
    });
    out
}

/// `overview`: what an index holds, for its home page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OverviewRequest {
    /// Features in each of the most and least frequent lists.
    pub frequent: usize,
    /// Features sampled at random (among live ones).
    pub sample: usize,
    /// The sample's seed.
    pub seed: u64,
    /// Documents listed, from `documents_from`.
    pub documents: usize,
    /// The first document listed.
    pub documents_from: u32,
}

impl Default for OverviewRequest {
    fn default() -> Self {
        Self {
            frequent: 10,
            sample: 10,
            seed: 0,
            documents: 50,
            documents_from: 0,
        }
    }
}

/// Where the index came from.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct IndexProvenance {
    /// The model (repo id or folder).
    pub model: String,
    /// The model's resolved commit, if from the Hub.
    pub model_commit: Option<String>,
    /// The model's `model_type`.
    pub model_type: String,
    /// The hook point.
    pub hook: String,
    /// The SAE.
    pub sae: String,
    /// Its file format and architecture.
    pub sae_architecture: String,
    /// Its per-token activation rule.
    pub sae_rule: String,
    /// The SAE's number of features.
    pub d_sae: usize,
    /// The corpus sources.
    pub corpus: Vec<String>,
    /// The saeidx version that built the index.
    pub saeidx_version: String,
}

/// A feature with how often it fires.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureFrequency {
    /// The feature.
    pub feature: u32,
    /// Counted tokens it is active on.
    pub count: u64,
    /// `count` over the counted tokens.
    pub density: f64,
    /// Its largest activation.
    pub max_activation: f32,
    /// Its label's name, if any.
    pub name: Option<String>,
}

/// The distribution of live features' densities, in equal bins of `log10(density)`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DensityHistogram {
    /// Bin edges, `log10(density)`: bin `i` is `[edges[i], edges[i + 1])` (the last
    /// closed).
    pub log10_edges: Vec<f64>,
    /// Live features per bin.
    pub counts: Vec<u64>,
    /// Features active on no counted token (density 0, off the log scale).
    pub dead: u64,
}

/// A labelled feature.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LabelledFeature {
    /// The feature.
    pub feature: u32,
    /// The label's name.
    pub name: Option<String>,
    /// Its confidence, as written.
    pub confidence: Option<String>,
    /// An LLM's draft no person has reviewed.
    pub draft: bool,
}

/// One document of the overview's list.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DocumentSummary {
    /// Document number.
    pub doc: u32,
    /// Its stable id.
    pub id: String,
    /// Its source file.
    pub source: String,
    /// Its tokens.
    pub tokens: u32,
    /// The start of its text (up to 80 characters).
    pub preview: String,
    /// Its metadata, by column name, as `documents` gives it (empty when the index keeps
    /// no metadata columns).
    pub metadata: Map<String, Value>,
}

/// The answer of `overview`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Overview {
    /// Where the index came from.
    pub provenance: IndexProvenance,
    /// Documents, tokens, counted tokens, nonzeros.
    pub counts: QueryCounts,
    /// Features active on some counted token.
    pub live_features: usize,
    /// Features active on none.
    pub dead_features: usize,
    /// Live features' densities.
    pub density: DensityHistogram,
    /// The most frequent features, most first.
    pub most_frequent: Vec<FeatureFrequency>,
    /// The least frequent live features, least first.
    pub least_frequent: Vec<FeatureFrequency>,
    /// Every labelled feature.
    pub labelled: Vec<LabelledFeature>,
    /// Live features sampled at random.
    pub sampled: Vec<FeatureFrequency>,
    /// The index's document metadata columns, in table order (the job's `[corpus]
    /// metadata`; empty when it keeps none).
    pub metadata_columns: Vec<MetadataColumnInfo>,
    /// Documents from `documents_from`.
    pub documents: Vec<DocumentSummary>,
    /// Whether the index has logit effects.
    pub logit_effects: bool,
}

/// Bins of the density histogram.
const DENSITY_BINS: usize = 24;

impl QueryIndex {
    /// What the index holds: provenance, counts, feature densities, frequent and rare
    /// features, labels, a sample, documents.
    pub fn overview(&self, request: &OverviewRequest) -> Result<Overview, QueryError> {
        check_overview(request)?;
        let (live, dead) = frequencies(self.d_sae(), self.registry(), |feature| {
            self.feature_stats(feature, Exclusions::default())
        })?;
        let sampled = self.sample_features(request.sample, request.seed)?;
        let (metadata_columns, documents) =
            self.document_summaries(request.documents_from, request.documents)?;
        let manifest = self.manifest();
        Ok(OverviewParts {
            provenance: provenance(&manifest.job, &manifest.saeidx_version),
            counts: self.counts()?,
            live,
            dead,
            sampled,
            metadata_columns,
            documents,
            logit_effects: self.logit_effects().is_ok_and(|e| e.is_some()),
        }
        .overview(request, self.registry()))
    }

    /// Documents `from..from + n` with their metadata, and the metadata columns (read
    /// from the Parquet documents table only when the index keeps some).
    fn document_summaries(
        &self,
        from: u32,
        n: usize,
    ) -> Result<(Vec<MetadataColumnInfo>, Vec<DocumentSummary>), QueryError> {
        let end = (u64::from(from) + n as u64).min(u64::from(self.documents())) as u32;
        let from = from.min(end);
        let (columns, mut metadata) = if self.manifest().job.corpus.metadata.is_empty() {
            (Vec::new(), HashMap::new())
        } else {
            let list = list_documents(
                self.dir(),
                &DocumentsRequest {
                    limit: (end - from) as usize,
                    offset: from as usize,
                    ..DocumentsRequest::default()
                },
            )?;
            let metadata = list
                .documents
                .into_iter()
                .map(|entry| (entry.doc, entry.metadata))
                .collect();
            (list.columns, metadata)
        };
        let summaries = (from..end)
            .map(|doc| self.document_summary(doc, doc, metadata.remove(&doc)))
            .collect::<Result<_, QueryError>>()?;
        Ok((columns, summaries))
    }

    /// The overview's line for this index's document `local`, numbered `doc` (its
    /// number in an index of segments), with its `metadata` (none: empty).
    pub(crate) fn document_summary(
        &self,
        local: u32,
        doc: u32,
        metadata: Option<Map<String, Value>>,
    ) -> Result<DocumentSummary, QueryError> {
        let (id, source, text) = self.document(local)?;
        let (_, tokens) = self.doc_tokens(local)?;
        Ok(DocumentSummary {
            doc,
            id: id.to_string(),
            source: source.to_string(),
            tokens,
            preview: text.chars().take(80).collect(),
            metadata: metadata.unwrap_or_default(),
        })
    }
}

/// Checks an overview request's sizes.
pub(crate) fn check_overview(request: &OverviewRequest) -> Result<(), QueryError> {
    Limit::K.check(request.frequent)?;
    Limit::Sample.check(request.sample)?;
    Limit::K.check(request.documents)?;
    Ok(())
}

/// The live features' frequencies (from each feature's statistics with the default
/// exclusions), in id order, and how many features are dead.
pub(crate) fn frequencies(
    d_sae: usize,
    registry: &Registry,
    stats: impl Fn(u32) -> Result<FeatureStats, QueryError>,
) -> Result<(Vec<FeatureFrequency>, usize), QueryError> {
    let mut live = Vec::new();
    let mut dead = 0usize;
    for feature in 0..d_sae as u32 {
        let stats = stats(feature)?;
        if stats.count == 0 {
            dead += 1;
        } else {
            live.push(FeatureFrequency {
                feature,
                count: stats.count,
                density: stats.density,
                max_activation: stats.max_activation,
                name: registry.get(feature).and_then(|l| l.name.clone()),
            });
        }
    }
    Ok((live, dead))
}

/// Where an index made by `job` with saeidx `version` came from.
pub(crate) fn provenance(job: &JobSpec, version: &str) -> IndexProvenance {
    IndexProvenance {
        model: job.model.source.clone(),
        model_commit: job.model.commit.clone(),
        model_type: job.model.model_type.clone(),
        hook: job.hook.clone(),
        sae: job.sae.source.clone(),
        sae_architecture: format!("{} {}", job.sae.format, job.sae.architecture),
        sae_rule: job.sae.rule.clone(),
        d_sae: job.sae.d_sae,
        corpus: job.corpus.sources.clone(),
        saeidx_version: version.to_string(),
    }
}

/// What an overview is made of, whatever the index's shape.
pub(crate) struct OverviewParts {
    pub(crate) provenance: IndexProvenance,
    pub(crate) counts: QueryCounts,
    /// Live features' frequencies, in id order ([`frequencies`]).
    pub(crate) live: Vec<FeatureFrequency>,
    pub(crate) dead: usize,
    /// The sampled live features.
    pub(crate) sampled: Vec<u32>,
    pub(crate) metadata_columns: Vec<MetadataColumnInfo>,
    pub(crate) documents: Vec<DocumentSummary>,
    pub(crate) logit_effects: bool,
}

impl OverviewParts {
    /// The overview `request` asks for, with the labels of `registry`.
    pub(crate) fn overview(self, request: &OverviewRequest, registry: &Registry) -> Overview {
        let live = self.live;
        let density = density_histogram(&live, self.dead as u64);
        let mut by_count = live.clone();
        by_count.sort_by(|a, b| b.count.cmp(&a.count).then(a.feature.cmp(&b.feature)));
        let most_frequent = by_count.iter().take(request.frequent).cloned().collect();
        let least_frequent = by_count
            .iter()
            .rev()
            .take(request.frequent)
            .cloned()
            .collect();
        let sampled = self
            .sampled
            .into_iter()
            .filter_map(|f| live.iter().find(|l| l.feature == f).cloned())
            .collect();
        Overview {
            provenance: self.provenance,
            counts: self.counts,
            live_features: live.len(),
            dead_features: self.dead,
            density,
            most_frequent,
            least_frequent,
            labelled: registry
                .iter()
                .map(|(feature, label)| LabelledFeature {
                    feature,
                    name: label.name.clone(),
                    confidence: label.confidence.clone(),
                    draft: label.is_draft(),
                })
                .collect(),
            sampled,
            metadata_columns: self.metadata_columns,
            documents: self.documents,
            logit_effects: self.logit_effects,
        }
    }
}

/// Live features' densities in [`DENSITY_BINS`] equal bins of `log10(density)` between
/// the smallest and the largest (one bin when they are equal).
fn density_histogram(live: &[FeatureFrequency], dead: u64) -> DensityHistogram {
    let logs: Vec<f64> = live.iter().map(|f| f.density.log10()).collect();
    let (low, high) = logs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if logs.is_empty() {
        return DensityHistogram {
            log10_edges: Vec::new(),
            counts: Vec::new(),
            dead,
        };
    }
    let (low, high) = (low.floor(), high.ceil().max(low.floor() + 1.0));
    let bins = DENSITY_BINS;
    let width = (high - low) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in logs {
        let bin = (((v - low) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    DensityHistogram {
        log10_edges: (0..=bins).map(|i| low + width * i as f64).collect(),
        counts,
        dead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_fall_in_log_bins_between_whole_decades() {
        let f = |feature, density| FeatureFrequency {
            feature,
            count: 1,
            density,
            max_activation: 1.0,
            name: None,
        };
        let histogram = density_histogram(&[f(0, 1e-4), f(1, 2e-2), f(2, 0.5)], 7);
        assert_eq!(histogram.dead, 7);
        assert_eq!(histogram.counts.iter().sum::<u64>(), 3);
        assert_eq!(histogram.log10_edges.first(), Some(&-4.0));
        assert_eq!(histogram.log10_edges.last(), Some(&0.0));
        assert_eq!(histogram.counts[0], 1);
        assert_eq!(histogram.counts[13], 1);
        assert_eq!(histogram.counts[22], 1, "log10(0.5) = -0.30");
        assert!(density_histogram(&[], 3).counts.is_empty());
    }
}
