//! The questions of [`crate::answers`], answered from an opened index: each checks its
//! request against [`crate::limits`], computes, and is discarded if the files changed
//! meanwhile ([`QueryIndex::check_intact`]).

use crate::{
    QueryError, QueryIndex,
    answers::{
        AnalyzedText, DocRef, Explain, ExplainRequest, ExplainedFeature, FeatureActivation,
        FeatureRequest, Info, InfoRequest, LabelAnswer, PerToken, RankedFeature, Sample,
        SampleRequest, SampledFeature, Subject, TokenFeatures, TopFeatures, TopFeaturesRequest,
        TopTexts, TopTextsRequest,
    },
    index::{Exclusions, FeatureReport, Rank, Scope},
    limits::Limit,
    rank::{FeatureRanking, FeatureScore, TokenCodes, rank_features},
    registry::{FeatureLabel, Registry},
};

/// A token's codes and text, whatever it came from (the index, or a live text).
struct Coded {
    position: u32,
    text: String,
    features: Vec<u32>,
    values: Vec<f32>,
}

impl QueryIndex {
    /// The document number `doc` names.
    pub fn resolve(&self, doc: &DocRef) -> Result<u32, QueryError> {
        match doc {
            DocRef::Number(number) if *number < self.documents() => Ok(*number),
            DocRef::Number(number) => Err(QueryError::UnknownDocument {
                doc: number.to_string(),
                documents: u64::from(self.documents()),
                hint: "; documents are numbered from 0",
            }),
            DocRef::Id(id) => self.document_by_id(id),
        }
    }

    /// The texts where a feature fires most strongly.
    pub fn top_texts(&self, request: &TopTextsRequest) -> Result<TopTexts, QueryError> {
        Limit::K.check(request.k)?;
        Limit::Context.check(request.context)?;
        let within = self.doc_set(&request.restrict)?;
        let tokens = request
            .token
            .as_ref()
            .map(|pattern| self.token_ids(pattern))
            .transpose()?;
        let scope = Scope {
            within: within.as_ref(),
            tokens: tokens.as_ref(),
        };
        let texts = self.answer(self.ranked_texts(
            request.feature,
            request.k,
            request.rank,
            request.context,
            request.exclusions,
            scope,
        ))?;
        Ok(TopTexts {
            feature: request.feature,
            label: self.registry().get(request.feature).cloned(),
            rank: request.rank,
            exclusions: request.exclusions,
            restrict: request.restrict.clone(),
            token: request.token.clone(),
            texts,
        })
    }

    /// A document's strongest features (or those of its positions `request.tokens`).
    pub fn top_features(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        Limit::K.check(request.k)?;
        let (number, of) = self.subject(doc, request)?;
        // Each token's codes go straight into the ranking, as they are decoded.
        let mut ranking = FeatureRanking::new(request.aggregate, self.d_sae());
        self.each_document_token(
            number,
            request.tokens.clone(),
            request.exclusions,
            |position, features, values| ranking.add(position, features, values),
        )?;
        let scores = ranking.best(request.k);
        let answer = ranked(self.registry(), of, scores, request, |position| {
            self.text_of_token(number, position)
        });
        self.answer(answer)
    }

    /// A document's counted tokens, each with its strongest features.
    pub fn per_token(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        Limit::K.check(request.k)?;
        let (number, of) = self.subject(doc, request)?;
        let codes = self.codes_of_document(number, request.tokens.clone(), request.exclusions)?;
        let mut tokens = Vec::with_capacity(codes.len());
        for codes in codes.iter() {
            // Each token's strongest first, ties by feature.
            let mut pairs: Vec<(u32, f32)> = codes
                .features
                .iter()
                .copied()
                .zip(codes.values.iter().copied())
                .collect();
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let (features, values) = pairs.into_iter().unzip();
            tokens.push(Coded {
                position: codes.position,
                text: self.token_text(number, codes.position)?,
                features,
                values,
            });
        }
        self.answer(Ok(per_token_answer(of, &tokens, request)))
    }

    /// A live text's strongest features (the text comes from live analysis).
    pub fn text_top_features(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        text_top_features(self.registry(), self.d_sae(), text, request)
    }

    /// A live text's counted tokens, each with its strongest features.
    pub fn text_per_token(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        text_per_token(text, request)
    }

    /// Everything about one feature: statistics, label, top examples, examples from
    /// activation bands, co-activating neighbours.
    pub fn feature(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
        Limit::Examples.check(request.examples)?;
        Limit::Examples.check(request.per_band)?;
        Limit::Bands.check(request.bands)?;
        Limit::Neighbours.check(request.neighbours)?;
        Limit::Context.check(request.context)?;
        let within = self.doc_set(&request.restrict)?;
        self.answer(self.report(request, within.as_ref()))
    }

    /// Random live features with their statistics and top examples.
    pub fn sample(&self, request: &SampleRequest) -> Result<Sample, QueryError> {
        Limit::Examples.check(request.examples)?;
        Limit::Context.check(request.context)?;
        let within = self.doc_set(&request.restrict)?;
        let picked = match &within {
            None => self.sample_features(request.n, request.seed)?,
            Some(set) => {
                let live = self.answer(self.live_within(set, Exclusions::default()))?;
                self.sample_among(&live, request.n, request.seed)?
            }
        };
        let mut features = Vec::new();
        for feature in picked {
            let exclusions = Exclusions::default();
            let texts = self.answer(self.ranked_texts(
                feature,
                request.examples,
                Rank::Token,
                request.context,
                exclusions,
                Scope::docs(within.as_ref()),
            ))?;
            features.push(SampledFeature {
                feature,
                label: self.registry().get(feature).cloned(),
                stats: self.feature_stats_within(feature, exclusions, within.as_ref())?,
                top_texts: texts,
            });
        }
        Ok(Sample {
            seed: request.seed,
            restrict: request.restrict.clone(),
            features,
        })
    }

    /// What the index holds: provenance, counts, live and dead features, labels.
    pub fn info(&self, request: &InfoRequest) -> Result<Info, QueryError> {
        let job = &self.manifest().job;
        let live = self.live_features()?;
        let dead = self.dead_features()?;
        Ok(Info {
            index: self.dir().display().to_string(),
            model: job.model.source.clone(),
            sae: job.sae.source.clone(),
            hook: job.hook.clone(),
            d_sae: self.d_sae(),
            counts: self.counts()?,
            live_features: live.len(),
            dead_features: dead.len(),
            dead: request.list_dead.then_some(dead),
            labels: self.registry().len(),
        })
    }

    /// A feature's label.
    pub fn label(&self, feature: u32) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        Ok(LabelAnswer {
            feature,
            label: self.registry().get(feature).cloned(),
        })
    }

    /// A person sets (or with an empty label, removes) a feature's label; the registry
    /// is read again from disk (keeping what other writers saved) and saved with the
    /// index, atomically. Only the five text fields are taken: a draft set this way
    /// counts as reviewed ([`Registry::edit`]).
    pub fn set_label(
        &mut self,
        feature: u32,
        label: FeatureLabel,
    ) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        self.update_registry(edit_label(feature, label))?;
        self.label(feature)
    }

    /// A person accepts a feature's LLM draft as it is (in the registry as it is on disk
    /// now); the registry is saved. A feature without an unreviewed draft is an error.
    pub fn accept_label(&mut self, feature: u32) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        self.update_registry(accept_draft(feature))?;
        self.label(feature)
    }

    /// Adds `imported`'s labels (replacing those of the same features; with `replace`,
    /// dropping every other label) and saves the registry. Returns how many were imported.
    pub fn import_labels(
        &mut self,
        imported: Registry,
        replace: bool,
    ) -> Result<usize, QueryError> {
        let count = imported.len();
        self.update_registry(import(imported, replace))?;
        Ok(count)
    }

    /// A live text's strongest features, then where each fires most in the index (the
    /// seed's workflow in one answer).
    pub fn explain(
        &self,
        text: &AnalyzedText,
        request: &ExplainRequest,
    ) -> Result<Explain, QueryError> {
        explain_with(
            text,
            request,
            |ranking| self.text_top_features(text, ranking),
            |top| self.top_texts(top),
        )
    }

    fn check_feature(&self, feature: u32) -> Result<(), QueryError> {
        if (feature as usize) < self.d_sae() {
            Ok(())
        } else {
            Err(QueryError::FeatureOutOfRange {
                feature,
                d_sae: self.d_sae(),
            })
        }
    }

    /// The document `doc` names, and the answer's subject.
    fn subject(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<(u32, Subject), QueryError> {
        let number = self.resolve(doc)?;
        let (id, _, _) = self.document(number)?;
        let of = Subject::Document {
            doc: number,
            id: id.to_string(),
            tokens: request.tokens.as_ref().map(|r| [r.start, r.end]),
        };
        Ok((number, of))
    }
}

/// A live text's tokens that `request` counts (a token range does not apply to texts).
fn text_tokens(
    text: &AnalyzedText,
    request: &TopFeaturesRequest,
) -> Result<Vec<Coded>, QueryError> {
    Limit::K.check(request.k)?;
    if request.tokens.is_some() {
        return Err(QueryError::NotForTexts("tokens"));
    }
    Ok(text
        .tokens
        .iter()
        .filter(|t| !request.exclusions.leaves_out(t.special, t.sink))
        .map(|t| Coded {
            position: t.position,
            text: t.text.clone(),
            features: t.features.clone(),
            values: t.values.clone(),
        })
        .collect())
}

/// Each token's `request.k` strongest features.
fn per_token_answer(of: Subject, tokens: &[Coded], request: &TopFeaturesRequest) -> PerToken {
    PerToken {
        of,
        exclusions: request.exclusions,
        tokens: tokens
            .iter()
            .map(|t| TokenFeatures {
                position: t.position,
                token_text: t.text.clone(),
                features: t
                    .features
                    .iter()
                    .zip(&t.values)
                    .take(request.k)
                    .map(|(&feature, &activation)| FeatureActivation {
                        feature,
                        activation,
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl Rank {
    /// The ranking named `name` (`token`, `document-max`/`doc-max`, `document-sum`/`doc-sum`;
    /// `_` works as `-`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.replace('_', "-").as_str() {
            "token" => Some(Rank::Token),
            "document-max" | "doc-max" => Some(Rank::DocumentMax),
            "document-sum" | "doc-sum" => Some(Rank::DocumentSum),
            _ => None,
        }
    }
}

/// The explain answer of `text`: its features ranked by `rank`, each with the texts
/// `top` finds (the same for one index and an index of segments).
pub(crate) fn explain_with(
    text: &AnalyzedText,
    request: &ExplainRequest,
    rank: impl Fn(&TopFeaturesRequest) -> Result<TopFeatures, QueryError>,
    top: impl Fn(&TopTextsRequest) -> Result<TopTexts, QueryError>,
) -> Result<Explain, QueryError> {
    Limit::Features.check(request.features)?;
    let ranking = TopFeaturesRequest {
        k: request.features,
        exclusions: request.exclusions,
        ..TopFeaturesRequest::default()
    };
    let mut features = Vec::new();
    for ranked in rank(&ranking)?.features {
        let request = TopTextsRequest {
            feature: ranked.feature,
            k: request.texts,
            context: request.context,
            exclusions: request.exclusions,
            ..TopTextsRequest::default()
        };
        features.push(ExplainedFeature {
            feature: ranked.feature,
            activation: ranked.activation,
            position: ranked.position,
            token_text: ranked.token_text,
            label: ranked.label,
            top_texts: top(&request)?.texts,
        });
    }
    Ok(Explain {
        text: text.text.clone(),
        features,
    })
}

/// The top-features answer of `scores`; `text_of` gives a position's token text.
fn ranked(
    registry: &Registry,
    of: Subject,
    scores: Vec<FeatureScore>,
    request: &TopFeaturesRequest,
    text_of: impl Fn(u32) -> Result<String, QueryError>,
) -> Result<TopFeatures, QueryError> {
    let mut features = Vec::with_capacity(scores.len());
    for score in scores {
        features.push(RankedFeature {
            feature: score.feature,
            score: score.score,
            activation: score.max,
            position: score.position,
            doc: None,
            token_text: text_of(score.position)?,
            active_tokens: score.tokens,
            label: registry.get(score.feature).cloned(),
        });
    }
    Ok(TopFeatures {
        of,
        aggregate: request.aggregate,
        exclusions: request.exclusions,
        features,
    })
}

/// A live text's strongest features, labelled from `registry`.
pub(crate) fn text_top_features(
    registry: &Registry,
    d_sae: usize,
    text: &AnalyzedText,
    request: &TopFeaturesRequest,
) -> Result<TopFeatures, QueryError> {
    let tokens = text_tokens(text, request)?;
    let of = Subject::Text {
        text: text.text.clone(),
    };
    let codes = tokens.iter().map(|t| TokenCodes {
        position: t.position,
        features: &t.features,
        values: &t.values,
    });
    let scores = rank_features(codes, request.aggregate, request.k, d_sae);
    ranked(registry, of, scores, request, |position| {
        Ok(tokens
            .iter()
            .find(|t| t.position == position)
            .map(|t| t.text.clone())
            .unwrap_or_default())
    })
}

/// A live text's counted tokens, each with its strongest features.
pub(crate) fn text_per_token(
    text: &AnalyzedText,
    request: &TopFeaturesRequest,
) -> Result<PerToken, QueryError> {
    let tokens = text_tokens(text, request)?;
    let of = Subject::Text {
        text: text.text.clone(),
    };
    Ok(per_token_answer(of, &tokens, request))
}

/// The registry change of a person's label edit ([`Registry::edit`]).
pub(crate) fn edit_label(
    feature: u32,
    label: FeatureLabel,
) -> impl FnOnce(&mut Registry) -> Result<(), QueryError> {
    move |registry| {
        registry.edit(feature, label, &crate::registry::now_utc());
        Ok(())
    }
}

/// The registry change of accepting a feature's draft (an error without one).
pub(crate) fn accept_draft(feature: u32) -> impl FnOnce(&mut Registry) -> Result<(), QueryError> {
    move |registry| {
        if registry.accept(feature, &crate::registry::now_utc()) {
            Ok(())
        } else {
            Err(QueryError::NoDraft { feature })
        }
    }
}

/// The registry change of importing labels (with `replace`, dropping every other).
pub(crate) fn import(
    imported: Registry,
    replace: bool,
) -> impl FnOnce(&mut Registry) -> Result<(), QueryError> {
    move |registry| {
        if replace {
            *registry = Registry::default();
        }
        registry.merge(imported);
        Ok(())
    }
}
