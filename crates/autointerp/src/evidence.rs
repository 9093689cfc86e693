//! What an explainer and a scorer see of a feature, taken from the index alone (no
//! model run): examples where it fires, from its top and from every band of its
//! activation distribution, and contexts where it stays silent, including the same
//! words where it does not fire.
//!
//! The split follows delphi's samplers (`delphi/latents/samplers.py`): examples for the
//! explanation from the top and from quantile bands, test examples for scoring from the
//! same bands, and as many non-activating contexts as test examples. Here the two sets
//! are disjoint: each band's evenly spaced picks alternate between them.

use std::collections::HashSet;

use saeidx_query::{AnyIndex, Exclusions, FeatureRequest, QueryError, SilentRequest, TextHit};
use serde::{Deserialize, Serialize};

/// How much of a feature to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceOptions {
    /// Top examples shown to the explainer.
    pub top: usize,
    /// Activation bands below the top.
    pub bands: usize,
    /// Examples from each band shown to the explainer.
    pub per_band: usize,
    /// Silent contexts on the tokens the feature fires on most, shown to the explainer.
    pub same_token: usize,
    /// Silent contexts anywhere, shown to the explainer.
    pub silent: usize,
    /// Activating test examples for scoring, and as many silent contexts.
    pub test: usize,
    /// Tokens of context on each side.
    pub context: u32,
    /// Seed of the choice of silent contexts (and of the scorer's shuffles).
    pub seed: u64,
}

impl Default for EvidenceOptions {
    fn default() -> Self {
        Self {
            top: 6,
            bands: 4,
            per_band: 2,
            same_token: 3,
            silent: 3,
            test: 10,
            context: 10,
            seed: 0,
        }
    }
}

/// One token of an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleToken {
    /// Its piece of the text (pieces concatenate to the window's text).
    pub text: String,
    /// The feature's value on it (0 on tokens answers leave out: special, sinks).
    pub activation: f32,
}

/// A context window of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Document number.
    pub doc: u32,
    /// Position of the centre token.
    pub position: u32,
    /// The centre token's id.
    pub token: u32,
    /// The window's tokens.
    pub tokens: Vec<ExampleToken>,
    /// Index of the centre token in `tokens`.
    pub centre: usize,
}

impl Example {
    /// The largest activation in the window.
    pub fn max(&self) -> f32 {
        self.tokens.iter().map(|t| t.activation).fold(0.0, f32::max)
    }

    /// Tokens with a nonzero activation.
    pub fn active_tokens(&self) -> usize {
        self.tokens.iter().filter(|t| t.activation > 0.0).count()
    }

    /// The centre token's text.
    pub fn centre_text(&self) -> &str {
        self.tokens.get(self.centre).map_or("", |t| t.text.as_str())
    }
}

/// A feature's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEvidence {
    /// The feature.
    pub feature: u32,
    /// Counted tokens it fires on.
    pub count: u64,
    /// Its largest activation.
    pub max: f32,
    /// Examples where it fires, for the explainer: the top, then the bands'.
    pub explain: Vec<Example>,
    /// Silent contexts for the explainer: the same tokens first, then any.
    pub silent: Vec<Example>,
    /// How many of `silent` are centred on tokens it fires on elsewhere.
    pub same_token: usize,
    /// Activating examples for scoring (none shown to the explainer).
    pub test_active: Vec<Example>,
    /// Silent contexts for scoring (none shown to the explainer).
    pub test_silent: Vec<Example>,
}

/// Gathers `feature`'s evidence from the index.
pub fn gather(
    index: &AnyIndex,
    feature: u32,
    options: &EvidenceOptions,
) -> Result<FeatureEvidence, QueryError> {
    let bands = options.bands.max(1);
    let report = index.feature(&FeatureRequest {
        feature,
        examples: options.top,
        bands,
        per_band: options.per_band + options.test.div_ceil(bands),
        neighbours: 0,
        context: 0,
        exclusions: Exclusions::default(),
        restrict: Default::default(),
    })?;
    let mut seen = HashSet::new();
    let mut explain_hits: Vec<&TextHit> = Vec::new();
    let mut test_hits: Vec<&TextHit> = Vec::new();
    for hit in &report.top_texts {
        if seen.insert((hit.doc, hit.position)) {
            explain_hits.push(hit);
        }
    }
    for band in &report.bands {
        let mut taken = 0;
        for (i, hit) in band.examples.iter().enumerate() {
            if !seen.insert((hit.doc, hit.position)) {
                continue;
            }
            if i % 2 == 0 && taken < options.per_band {
                explain_hits.push(hit);
                taken += 1;
            } else {
                test_hits.push(hit);
            }
        }
    }
    test_hits.truncate(options.test);
    let window = |hit: &TextHit| example(index, feature, hit, options.context);
    let explain = explain_hits
        .into_iter()
        .map(window)
        .collect::<Result<Vec<_>, _>>()?;
    let test_active = test_hits
        .into_iter()
        .map(window)
        .collect::<Result<Vec<_>, _>>()?;
    let (silent, same_token, test_silent) = silent_examples(index, feature, &explain, options)?;
    Ok(FeatureEvidence {
        feature,
        count: report.stats.count,
        max: report.stats.max_activation,
        explain,
        silent,
        same_token,
        test_active,
        test_silent,
    })
}

/// Silent contexts: for the explainer (same tokens first), how many of those are on the
/// same tokens, and those for scoring.
fn silent_examples(
    index: &AnyIndex,
    feature: u32,
    explain: &[Example],
    options: &EvidenceOptions,
) -> Result<(Vec<Example>, usize, Vec<Example>), QueryError> {
    let mut ids: Vec<u32> = Vec::new();
    for example in explain {
        if !ids.contains(&example.token) {
            ids.push(example.token);
        }
    }
    let base = SilentRequest {
        feature,
        context: options.context,
        seed: options.seed ^ u64::from(feature),
        ..SilentRequest::default()
    };
    let same = if options.same_token > 0 && !ids.is_empty() {
        let request = SilentRequest {
            n: options.same_token,
            tokens: ids,
            ..base.clone()
        };
        index.silent_contexts(&request)?.contexts
    } else {
        Vec::new()
    };
    let anywhere = index
        .silent_contexts(&SilentRequest {
            n: (options.silent + options.test)
                .min(saeidx_query::limits::Limit::Examples.max() as usize),
            ..base
        })?
        .contexts;
    let mut seen: HashSet<(u32, u32)> = same.iter().map(|h| (h.doc, h.position)).collect();
    let mut anywhere: Vec<&TextHit> = anywhere
        .iter()
        .filter(|h| seen.insert((h.doc, h.position)))
        .collect();
    let test: Vec<&TextHit> = anywhere.split_off(options.silent.min(anywhere.len()));
    let window = |hit: &TextHit| example(index, feature, hit, options.context);
    let mut silent = same.iter().map(window).collect::<Result<Vec<_>, _>>()?;
    let same_token = silent.len();
    for hit in anywhere {
        silent.push(window(hit)?);
    }
    let test_silent = test
        .into_iter()
        .take(options.test)
        .map(window)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((silent, same_token, test_silent))
}

/// `hit`'s window with the feature's value on each counted token.
fn example(
    index: &AnyIndex,
    feature: u32,
    hit: &TextHit,
    context: u32,
) -> Result<Example, QueryError> {
    let window = index.window(hit.doc, hit.position, context, feature)?;
    let centre = window
        .iter()
        .position(|t| t.position == hit.position)
        .unwrap_or(0);
    let tokens = window
        .into_iter()
        .map(|t| ExampleToken {
            activation: if t.flags == 0 { t.activation } else { 0.0 },
            text: t.text,
        })
        .collect();
    Ok(Example {
        doc: hit.doc,
        position: hit.position,
        token: hit.token,
        tokens,
        centre,
    })
}
