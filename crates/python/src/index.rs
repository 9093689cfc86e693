//! `saeidx.Index`: an opened index and its questions.
//!
//! Each question has an `*_answer` form (or a plain name where there is no mlxterp form)
//! that returns the query library's answer type as Python objects, field for field what
//! `saeidx ... --json` prints and the web server's API returns; the mlxterp-shaped
//! forms (`top_texts`, `top_features`) return tuples, and `*_table` forms return
//! pyarrow tables. Every question releases the GIL.

use std::{
    path::PathBuf,
    sync::{RwLock, RwLockReadGuard},
};

use pyo3::{
    exceptions::{PyRuntimeError, PyValueError},
    prelude::*,
    types::PyDict,
};
use saeidx_autointerp::{LabelReport, Task};
use saeidx_query::{
    AnalyzedText, AnyIndex, ContrastRequest, DocRef, DocumentRequest, ExplainRequest, FeatureLabel,
    FeatureRequest, InfoRequest, LabelAnswer, Neighbour, OverviewRequest, QueryError, Restriction,
    SampleRequest, SilentRequest, TokenFeaturesRequest, TokenPattern, TopFeatures,
    TopFeaturesRequest, TopTexts, TopTextsRequest,
};

use crate::{
    args::{self, DocArg, count, exclusions, small, to_python},
    errors::{LiveAnalysisError, query_error},
    labels,
    live::Live,
    tables::{self, Hit},
};

/// An opened saeidx index (see `saeidx.open`).
///
/// Queries read the memory-mapped query files and never need the model; a text given
/// to `top_features(text=...)` or `explain` runs live through the model and SAE the
/// index was built with (loaded on first use and kept). Queries share the index under a
/// read lock; re-reading the label registry takes the write lock for a moment.
#[pyclass(module = "saeidx", frozen)]
pub struct Index {
    index: RwLock<AnyIndex>,
    live: Live,
}

/// The characters of `text` before byte `byte` (a character boundary).
fn chars_before(text: &str, byte: usize) -> u32 {
    text.get(..byte)
        .map_or(0, |head| head.chars().count() as u32)
}

impl Index {
    /// Opens the index in `path`.
    pub(crate) fn open(path: PathBuf) -> Result<Self, QueryError> {
        Ok(Self {
            index: RwLock::new(AnyIndex::open(&path)?),
            live: Live::default(),
        })
    }

    /// The index, for reading (never held across another call that takes it).
    fn read(&self) -> PyResult<RwLockReadGuard<'_, AnyIndex>> {
        self.index
            .read()
            .map_err(|_| PyRuntimeError::new_err("the index is unusable after a panic"))
    }

    /// Reads the label registry again from the index folder (after a labelling run, or
    /// an edit by another process such as `saeidx serve`), so every answer shows it.
    fn reload_labels(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut index = self
                .index
                .write()
                .map_err(|_| PyRuntimeError::new_err("the index is unusable after a panic"))?;
            index.reload_registry().map(|_| ()).map_err(query_error)
        })
    }

    /// A person's change to the registry (`change`), made on the registry as it is on
    /// disk now and saved by it.
    fn write_label(
        &self,
        py: Python<'_>,
        change: impl FnOnce(&mut AnyIndex) -> Result<LabelAnswer, QueryError> + Send,
    ) -> PyResult<LabelAnswer> {
        py.detach(|| {
            let mut index = self
                .index
                .write()
                .map_err(|_| PyRuntimeError::new_err("the index is unusable after a panic"))?;
            index.reload_registry().map_err(query_error)?;
            change(&mut index).map_err(query_error)
        })
    }

    /// A labelling run (the GIL released; queries from other threads go on), then the
    /// registry read again so every answer shows its labels.
    fn label_run(
        &self,
        py: Python<'_>,
        args: &labels::RunArgs<'_>,
        task: Task,
    ) -> PyResult<LabelReport> {
        let request = args.request(py, task)?;
        let report = {
            let guard = self.read()?;
            labels::run(py, &guard, &request)?
        };
        self.reload_labels(py)?;
        if let Some(reason) = &report.stopped {
            labels::warn_stopped(py, reason)?;
        }
        Ok(report)
    }

    /// A feature id argument, checked against the SAE's width.
    fn feature_id(&self, feature: i64) -> PyResult<u32> {
        let d_sae = self.read()?.d_sae();
        u32::try_from(feature)
            .ok()
            .filter(|&f| (f as usize) < d_sae)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "feature {feature} does not exist: this index's SAE has {d_sae} features (0..{d_sae})"
                ))
            })
    }

    /// Feature id arguments, each checked.
    fn feature_list(&self, features: Option<Vec<i64>>) -> PyResult<Option<Vec<u32>>> {
        features
            .map(|list| list.into_iter().map(|f| self.feature_id(f)).collect())
            .transpose()
    }

    /// `text` run live through the index's model and SAE.
    fn analyze(&self, py: Python<'_>, text: String) -> PyResult<AnalyzedText> {
        let guard = self.read()?;
        let index = &*guard;
        let (manifest, dir) = index.model_source().ok_or_else(|| {
            LiveAnalysisError::new_err(
                "the index has no segments, so no model and SAE to analyze a text with",
            )
        })?;
        py.detach(|| self.live.analyze(manifest, dir, &text))
            .map_err(|error| LiveAnalysisError::new_err(error.to_string()))
    }

    /// The `top_texts` answer.
    fn texts(&self, py: Python<'_>, request: &TopTextsRequest) -> PyResult<TopTexts> {
        let guard = self.read()?;
        let index = &*guard;
        py.detach(|| index.top_texts(request)).map_err(query_error)
    }

    /// The hits of `top_texts`, each with the whole document (`whole`) or its snippet.
    fn hits(&self, py: Python<'_>, request: &TopTextsRequest, whole: bool) -> PyResult<Vec<Hit>> {
        let answer = self.texts(py, request)?;
        let guard = self.read()?;
        let index = &*guard;
        py.detach(|| -> Result<Vec<Hit>, QueryError> {
            let mut hits = Vec::with_capacity(answer.texts.len());
            for hit in answer.texts {
                let (text, start, end) = if whole {
                    let span = index.token_span(hit.doc, hit.position)?;
                    let (_, _, text) = index.document(hit.doc)?;
                    (text.to_string(), span.start, span.end)
                } else {
                    let s = &hit.snippet;
                    (s.text.clone(), s.hit_start, s.hit_end)
                };
                hits.push(Hit {
                    hit_start: chars_before(&text, start),
                    hit_end: chars_before(&text, end),
                    text,
                    hit,
                });
            }
            Ok(hits)
        })
        .map_err(query_error)
    }

    /// The `top_features` answer, of a text (run live) or of an indexed document.
    fn features(
        &self,
        py: Python<'_>,
        text: Option<String>,
        doc: Option<DocArg>,
        request: &TopFeaturesRequest,
    ) -> PyResult<TopFeatures> {
        match (text, doc) {
            (Some(_), None) if request.tokens.is_some() => {
                Err(query_error(QueryError::NotForTexts("tokens")))
            }
            (Some(text), None) => {
                let analyzed = self.analyze(py, text)?;
                let guard = self.read()?;
                let index = &*guard;
                py.detach(|| index.text_top_features(&analyzed, request))
                    .map_err(query_error)
            }
            (None, Some(doc)) => {
                let doc = doc.to_ref()?;
                let guard = self.read()?;
                let index = &*guard;
                py.detach(|| index.top_features(&doc, request))
                    .map_err(query_error)
            }
            _ => Err(PyValueError::new_err(
                "give exactly one of text (run live) or doc (an indexed document's number or id)",
            )),
        }
    }

    /// The neighbours of `neighbours`.
    fn neighbour_list(
        &self,
        py: Python<'_>,
        feature_id: i64,
        top_k: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<Neighbour>> {
        let feature = self.feature_id(feature_id)?;
        let k = count(top_k, "top_k")?;
        saeidx_query::limits::Limit::Neighbours
            .check(k)
            .map_err(query_error)?;
        let exclusions = exclusions(include_special, include_sinks);
        let guard = self.read()?;
        let index = &*guard;
        py.detach(|| index.neighbours(feature, k, exclusions))
            .map_err(query_error)
    }
}

/// The request of `top_texts` and its forms.
#[allow(clippy::too_many_arguments)]
fn texts_request(
    feature: u32,
    top_k: i64,
    rank: &str,
    context: i64,
    include_special: bool,
    include_sinks: bool,
    restrict: Restriction,
    token: Option<TokenPattern>,
) -> PyResult<TopTextsRequest> {
    Ok(TopTextsRequest {
        feature,
        k: count(top_k, "top_k")?,
        rank: args::rank(rank)?,
        context: small(context, "context")?,
        exclusions: exclusions(include_special, include_sinks),
        restrict,
        token,
    })
}

/// One token or a sequence of them.
#[derive(FromPyObject)]
enum TokensArg {
    One(TokenArg),
    Many(Vec<TokenArg>),
}

/// A token: its text (a str) or its id (an int).
#[derive(FromPyObject)]
enum TokenArg {
    Id(i64),
    Text(String),
}

impl TokenArg {
    fn pattern(self) -> PyResult<TokenPattern> {
        match self {
            TokenArg::Text(text) => Ok(TokenPattern::Text(text)),
            TokenArg::Id(id) => u32::try_from(id)
                .map(TokenPattern::Id)
                .map_err(|_| PyValueError::new_err(format!("token id {id} is not a token id"))),
        }
    }
}

/// `token=` (text or id) or `token_regex=`, at most one.
fn token_pattern(
    token: Option<TokenArg>,
    token_regex: Option<String>,
) -> PyResult<Option<TokenPattern>> {
    match (token, token_regex) {
        (Some(_), Some(_)) => Err(PyValueError::new_err(
            "give token= (a text or an id) or token_regex=, not both",
        )),
        (Some(token), None) => token.pattern().map(Some),
        (None, regex) => Ok(regex.map(TokenPattern::Regex)),
    }
}

/// The documents a question looks at: `where` (a filter over document metadata) and
/// `docs` (numbers or ids); neither: all.
fn restriction(filter: Option<String>, docs: Option<Vec<DocArg>>) -> PyResult<Restriction> {
    Ok(Restriction {
        filter,
        docs: docs
            .map(|docs| {
                docs.iter()
                    .map(DocArg::to_ref)
                    .collect::<PyResult<Vec<_>>>()
            })
            .transpose()?,
    })
}

/// The request of `top_features` and its forms.
fn features_request(
    top_k: i64,
    aggregate: &str,
    tokens: Option<(i64, i64)>,
    include_special: bool,
    include_sinks: bool,
) -> PyResult<TopFeaturesRequest> {
    Ok(TopFeaturesRequest {
        k: count(top_k, "top_k")?,
        aggregate: args::aggregate(aggregate)?,
        tokens: args::positions(tokens)?,
        exclusions: exclusions(include_special, include_sinks),
    })
}

#[pymethods]
impl Index {
    /// The index folder.
    #[getter]
    fn path(&self) -> PyResult<PathBuf> {
        Ok(self.read()?.dir().to_path_buf())
    }

    /// The SAE's number of features (feature ids are 0..d_sae).
    #[getter]
    fn d_sae(&self) -> PyResult<usize> {
        Ok(self.read()?.d_sae())
    }

    /// What the index holds (`saeidx info --json`): index, model, sae, hook, d_sae,
    /// counts, live_features, dead_features, dead (None), labels.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self.read()?;
        let index = &*guard;
        let info = py
            .detach(|| index.info(&InfoRequest::default()))
            .map_err(query_error)?;
        to_python(py, &info)
    }

    /// The number of documents.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.read()?.documents() as usize)
    }

    /// `saeidx.Index("FOLDER": N documents, F features)`.
    fn __repr__(&self) -> PyResult<String> {
        let index = self.read()?;
        Ok(format!(
            "saeidx.Index({:?}: {} documents, {} features)",
            index.dir().display().to_string(),
            index.documents(),
            index.d_sae()
        ))
    }

    /// The texts where a feature fires most strongly, as (text, activation,
    /// token_position) tuples, strongest first (mlxterp's get_top_texts_for_feature).
    ///
    /// rank: "document_max" (default: each document once, by its strongest token, as
    /// mlxterp ranks texts), "token" (each token on its own) or "document_sum" (documents
    /// by the sum of their activations; the tuple still has the strongest token).
    /// context: None (default) gives the whole document's text, as mlxterp does; a
    /// number gives that many tokens of context on each side of the token instead.
    /// Special tokens and attention sinks are left out unless included.
    #[pyo3(signature = (feature_id, top_k = 10, *, rank = "document_max", context = None, include_special = false, include_sinks = false, r#where = None, docs = None, token = None, token_regex = None))]
    #[allow(clippy::too_many_arguments)]
    fn top_texts(
        &self,
        py: Python<'_>,
        feature_id: i64,
        top_k: i64,
        rank: &str,
        context: Option<i64>,
        include_special: bool,
        include_sinks: bool,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
        token: Option<TokenArg>,
        token_regex: Option<String>,
    ) -> PyResult<Vec<(String, f64, u32)>> {
        let feature = self.feature_id(feature_id)?;
        let request = texts_request(
            feature,
            top_k,
            rank,
            context.unwrap_or(0),
            include_special,
            include_sinks,
            restriction(r#where, docs)?,
            token_pattern(token, token_regex)?,
        )?;
        let hits = self.hits(py, &request, context.is_none())?;
        Ok(hits
            .into_iter()
            .map(|h| (h.text, f64::from(h.hit.activation), h.hit.position))
            .collect())
    }

    /// top_texts as a pyarrow.Table with one row per text: the answer's fields (doc, id,
    /// source, position, token, activation, score) and text, hit_start, hit_end (the
    /// token's characters in text: the whole document, or the snippet with context).
    #[pyo3(signature = (feature_id, top_k = 10, *, rank = "document_max", context = None, include_special = false, include_sinks = false, r#where = None, docs = None, token = None, token_regex = None))]
    #[allow(clippy::too_many_arguments)]
    fn top_texts_table<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        top_k: i64,
        rank: &str,
        context: Option<i64>,
        include_special: bool,
        include_sinks: bool,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
        token: Option<TokenArg>,
        token_regex: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        let request = texts_request(
            feature,
            top_k,
            rank,
            context.unwrap_or(0),
            include_special,
            include_sinks,
            restriction(r#where, docs)?,
            token_pattern(token, token_regex)?,
        )?;
        let hits = self.hits(py, &request, context.is_none())?;
        tables::hits(py, &hits)
    }

    /// The top_texts answer as `saeidx top-texts --json` prints it (feature, label, rank,
    /// exclusions, texts with snippets of `context` tokens each side).
    #[pyo3(signature = (feature_id, top_k = 10, *, rank = "token", context = 8, include_special = false, include_sinks = false, r#where = None, docs = None, token = None, token_regex = None))]
    #[allow(clippy::too_many_arguments)]
    fn top_texts_answer<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        top_k: i64,
        rank: &str,
        context: i64,
        include_special: bool,
        include_sinks: bool,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
        token: Option<TokenArg>,
        token_regex: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        let request = texts_request(
            feature,
            top_k,
            rank,
            context,
            include_special,
            include_sinks,
            restriction(r#where, docs)?,
            token_pattern(token, token_regex)?,
        )?;
        to_python(py, &self.texts(py, &request)?)
    }

    /// The features that fire most strongly on a text, as (feature_id, activation)
    /// tuples, strongest first (mlxterp's get_top_features_for_text).
    ///
    /// Give either text, which runs live through the model and SAE the index was built
    /// with (checked by SHA-256; loaded on first use), or doc, a document of the index
    /// by number or id (optionally only its token positions tokens=(start, end)).
    /// aggregate: "max" (default, mlxterp's rule: the largest activation on any token)
    /// or "sum" (over the tokens). Special tokens and attention sinks are left out
    /// unless included.
    #[pyo3(signature = (text = None, *, doc = None, top_k = 10, aggregate = "max", tokens = None, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn top_features(
        &self,
        py: Python<'_>,
        text: Option<String>,
        doc: Option<DocArg>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<(u32, f64)>> {
        let request = features_request(top_k, aggregate, tokens, include_special, include_sinks)?;
        let answer = self.features(py, text, doc, &request)?;
        Ok(answer
            .features
            .iter()
            .map(|f| (f.feature, f64::from(f.score)))
            .collect())
    }

    /// top_features as a pyarrow.Table with one row per feature, the answer's fields:
    /// feature, score (the aggregate), activation (the largest), position (of it),
    /// token_text, active_tokens, label (its name, or null).
    #[pyo3(signature = (text = None, *, doc = None, top_k = 10, aggregate = "max", tokens = None, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn top_features_table<'py>(
        &self,
        py: Python<'py>,
        text: Option<String>,
        doc: Option<DocArg>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = features_request(top_k, aggregate, tokens, include_special, include_sinks)?;
        let answer = self.features(py, text, doc, &request)?;
        tables::features(py, &answer.features)
    }

    /// The top_features answer as `saeidx top-features --json` prints it; with
    /// per_token=True each counted token's strongest features instead (`--per-token`).
    #[pyo3(signature = (text = None, *, doc = None, top_k = 10, aggregate = "max", tokens = None, per_token = false, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn top_features_answer<'py>(
        &self,
        py: Python<'py>,
        text: Option<String>,
        doc: Option<DocArg>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        per_token: bool,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = features_request(top_k, aggregate, tokens, include_special, include_sinks)?;
        if !per_token {
            return to_python(py, &self.features(py, text, doc, &request)?);
        }
        let answer = match (text, doc) {
            (Some(_), None) if request.tokens.is_some() => {
                return Err(query_error(QueryError::NotForTexts("tokens")));
            }
            (Some(text), None) => {
                let analyzed = self.analyze(py, text)?;
                let guard = self.read()?;
                let index = &*guard;
                py.detach(|| index.text_per_token(&analyzed, &request))
            }
            (None, Some(doc)) => {
                let doc: DocRef = doc.to_ref()?;
                let guard = self.read()?;
                let index = &*guard;
                py.detach(|| index.per_token(&doc, &request))
            }
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of text (run live) or doc (an indexed document's number or id)",
                ));
            }
        };
        to_python(py, &answer.map_err(query_error)?)
    }

    /// Everything about a feature, as `saeidx feature --json` prints it: stats, label,
    /// top_texts, bands (examples across its activation distribution), neighbours.
    #[pyo3(signature = (feature_id, *, examples = 5, bands = 4, per_band = 5, neighbours = 10, context = 8, include_special = false, include_sinks = false, r#where = None, docs = None))]
    #[allow(clippy::too_many_arguments)]
    fn feature<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        examples: i64,
        bands: i64,
        per_band: i64,
        neighbours: i64,
        context: i64,
        include_special: bool,
        include_sinks: bool,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = FeatureRequest {
            feature: self.feature_id(feature_id)?,
            examples: count(examples, "examples")?,
            bands: count(bands, "bands")?,
            per_band: count(per_band, "per_band")?,
            neighbours: count(neighbours, "neighbours")?,
            context: small(context, "context")?,
            exclusions: exclusions(include_special, include_sinks),
            restrict: restriction(r#where, docs)?,
        };
        let guard = self.read()?;
        let index = &*guard;
        let report = py
            .detach(|| saeidx_compare::feature_report(index, &request))
            .map_err(query_error)?;
        to_python(py, &report)
    }

    /// This index's features compared with `other`'s, as `saeidx compare A B --json`
    /// prints it: two SAEs feature by feature (kind "saes": candidates by decoder cosine
    /// and co-activation, a one-to-one matching, features without counterpart, splits),
    /// or two runs of one SAE (kind "runs": what changed). `by` is "auto", "decoder" or
    /// "coactivation"; `sae_a` / `sae_b` are folders tried first for each SAE's files;
    /// `parquet` also writes the full matching there.
    #[pyo3(signature = (other, *, candidates = 5, by = "auto", min_score = 0.5, examples = 10, context = 8, sae_a = None, sae_b = None, parquet = None, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn compare<'py>(
        &self,
        py: Python<'py>,
        other: &Index,
        candidates: i64,
        by: &str,
        min_score: f64,
        examples: i64,
        context: i64,
        sae_a: Option<PathBuf>,
        sae_b: Option<PathBuf>,
        parquet: Option<PathBuf>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = saeidx_compare::CompareRequest {
            candidates: count(candidates, "candidates")?,
            by: match by {
                "auto" => saeidx_compare::MatchBy::Auto,
                "decoder" => saeidx_compare::MatchBy::Decoder,
                "coactivation" => saeidx_compare::MatchBy::Coactivation,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "by={other:?}: use \"auto\", \"decoder\" or \"coactivation\""
                    )));
                }
            },
            min_score,
            examples: count(examples, "examples")?,
            context: small(context, "context")?,
            exclusions: exclusions(include_special, include_sinks),
            ..saeidx_compare::CompareRequest::default()
        };
        let folders = saeidx_compare::SaeFolders {
            a: sae_a.into_iter().collect(),
            b: sae_b.into_iter().collect(),
        };
        let (a, b) = (self.read()?, other.read()?);
        let (a, b) = (&*a, &*b);
        let answer = py
            .detach(|| {
                let hub = saeidx_hub::HubSettings::from_env();
                let answer = saeidx_compare::compare(a, b, &folders, &hub, &request)?;
                if let Some(path) = &parquet {
                    saeidx_compare::table::write_parquet(&answer, path)?;
                }
                Ok(answer)
            })
            .map_err(crate::errors::compare_error)?;
        to_python(py, &answer)
    }

    /// A feature's statistics over the index's counted tokens (the `stats` of a feature
    /// report): feature, count, density, documents, max_activation, mean_activation
    /// (where active), histogram (20 equal bins over (0, histogram_max], the smallest
    /// power of two at least max_activation), histogram_max, postings, exclusions.
    #[pyo3(signature = (feature_id, *, include_special = false, include_sinks = false))]
    fn feature_stats<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        let exclusions = exclusions(include_special, include_sinks);
        let guard = self.read()?;
        let index = &*guard;
        let stats = py
            .detach(|| index.feature_stats(feature, exclusions))
            .map_err(query_error)?;
        to_python(py, &stats)
    }

    /// The features that fire on the same tokens as a feature, as (feature_id, jaccard)
    /// tuples, most similar first (Jaccard similarity of their sets of counted tokens).
    #[pyo3(signature = (feature_id, top_k = 10, *, include_special = false, include_sinks = false))]
    fn neighbours(
        &self,
        py: Python<'_>,
        feature_id: i64,
        top_k: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<(u32, f64)>> {
        let neighbours =
            self.neighbour_list(py, feature_id, top_k, include_special, include_sinks)?;
        Ok(neighbours.iter().map(|n| (n.feature, n.jaccard)).collect())
    }

    /// neighbours as a pyarrow.Table: feature, jaccard, together (tokens where both
    /// fire), count (tokens where the neighbour fires).
    #[pyo3(signature = (feature_id, top_k = 10, *, include_special = false, include_sinks = false))]
    fn neighbours_table<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        top_k: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let neighbours =
            self.neighbour_list(py, feature_id, top_k, include_special, include_sinks)?;
        tables::neighbours(py, &neighbours)
    }

    /// The strongest features over every counted token of a set of documents (`where`,
    /// a filter over their metadata, and/or `docs`), as `saeidx top-features --where
    /// ... --json` prints them.
    #[pyo3(signature = (*, r#where = None, docs = None, top_k = 10, aggregate = "max", include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn subset_features<'py>(
        &self,
        py: Python<'py>,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
        top_k: i64,
        aggregate: &str,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = features_request(top_k, aggregate, None, include_special, include_sinks)?;
        let restrict = restriction(r#where, docs)?;
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.subset_features(&restrict, &request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// The features of a token (a str: its text, an int: its id) or of a token sequence
    /// (a list of them; the features of its last token) over every occurrence, as
    /// `saeidx token-features --json` prints them; token_regex= matches token texts.
    #[pyo3(signature = (tokens = None, *, token_regex = None, top_k = 20, examples = 2, context = 8, include_special = false, include_sinks = false, r#where = None, docs = None))]
    #[allow(clippy::too_many_arguments)]
    fn token_features<'py>(
        &self,
        py: Python<'py>,
        tokens: Option<TokensArg>,
        token_regex: Option<String>,
        top_k: i64,
        examples: i64,
        context: i64,
        include_special: bool,
        include_sinks: bool,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut patterns = match tokens {
            None => Vec::new(),
            Some(TokensArg::One(token)) => vec![token.pattern()?],
            Some(TokensArg::Many(tokens)) => tokens
                .into_iter()
                .map(TokenArg::pattern)
                .collect::<PyResult<_>>()?,
        };
        patterns.extend(token_regex.map(TokenPattern::Regex));
        let request = TokenFeaturesRequest {
            tokens: patterns,
            k: count(top_k, "top_k")?,
            examples: count(examples, "examples")?,
            context: small(context, "context")?,
            exclusions: exclusions(include_special, include_sinks),
            restrict: restriction(r#where, docs)?,
        };
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.token_features(&request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// Features over-represented in documents A relative to B (or to the rest of the
    /// index when B is not given), per token, both ways, as `saeidx contrast --json`
    /// prints them: a and b are filters over document metadata, a_docs and b_docs
    /// document lists. The score is a log-odds ratio with an informative Dirichlet
    /// prior of `prior` pseudo-tokens, over its standard error.
    #[pyo3(signature = (a = None, b = None, *, a_docs = None, b_docs = None, top_k = 10, examples = 2, context = 8, prior = 100.0, min_count = 5, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn contrast<'py>(
        &self,
        py: Python<'py>,
        a: Option<String>,
        b: Option<String>,
        a_docs: Option<Vec<DocArg>>,
        b_docs: Option<Vec<DocArg>>,
        top_k: i64,
        examples: i64,
        context: i64,
        prior: f64,
        min_count: u64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let b = restriction(b, b_docs)?;
        let request = ContrastRequest {
            a: restriction(a, a_docs)?,
            b: (!b.is_all()).then_some(b),
            k: count(top_k, "top_k")?,
            examples: count(examples, "examples")?,
            context: small(context, "context")?,
            exclusions: exclusions(include_special, include_sinks),
            prior,
            min_count,
        };
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.contrast(&request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// Random live features with their statistics and top examples, as `saeidx sample
    /// --json` prints them (the same seed gives the same features).
    #[pyo3(signature = (n = 10, *, seed = 0, examples = 3, context = 8, r#where = None, docs = None))]
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: i64,
        seed: u64,
        examples: i64,
        context: i64,
        r#where: Option<String>,
        docs: Option<Vec<DocArg>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = SampleRequest {
            n: count(n, "n")?,
            seed,
            examples: count(examples, "examples")?,
            context: small(context, "context")?,
            restrict: restriction(r#where, docs)?,
        };
        let guard = self.read()?;
        let index = &*guard;
        let sample = py.detach(|| index.sample(&request)).map_err(query_error)?;
        to_python(py, &sample)
    }

    /// A text's strongest features (run live), then each one's top texts in the index,
    /// as `saeidx explain --json` prints it.
    #[pyo3(signature = (text, *, features = 5, texts = 3, context = 8, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        text: String,
        features: i64,
        texts: i64,
        context: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = ExplainRequest {
            features: count(features, "features")?,
            texts: count(texts, "texts")?,
            context: small(context, "context")?,
            exclusions: exclusions(include_special, include_sinks),
        };
        let analyzed = self.analyze(py, text)?;
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.explain(&analyzed, &request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// A feature's label, as `GET /api/labels/F` answers: {"feature": F, "label": None or
    /// {name, description, examples, confidence, notes}} (mlxterp's sae_features.json
    /// fields; a drafted label adds provenance and scores). The registry is read again
    /// first, so labels drafted or edited since (here or by `saeidx serve`) show, in this
    /// answer and in every later one.
    fn label<'py>(&self, py: Python<'py>, feature_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        self.reload_labels(py)?;
        let answer = self.read()?.label(feature).map_err(query_error)?;
        to_python(py, &answer)
    }

    /// A person sets (or with no fields, removes) a feature's label, saved atomically
    /// into the index's labels.json (as `saeidx labels set` and the web UI do); a draft
    /// set this way counts as reviewed: accepted if its text is unchanged, else edited.
    #[pyo3(signature = (feature_id, *, name = None, description = None, examples = None, confidence = None, notes = None))]
    #[allow(clippy::too_many_arguments)]
    fn set_label<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        name: Option<String>,
        description: Option<String>,
        examples: Option<Vec<String>>,
        confidence: Option<String>,
        notes: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        let label = FeatureLabel {
            name,
            description,
            examples: examples.unwrap_or_default(),
            confidence,
            notes,
            ..FeatureLabel::default()
        };
        let answer = self.write_label(py, |index| index.set_label(feature, label))?;
        to_python(py, &answer)
    }

    /// A person accepts a feature's LLM draft as it is (`saeidx labels accept`); a
    /// feature without an unreviewed draft raises ValueError.
    fn accept_label<'py>(&self, py: Python<'py>, feature_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let feature = self.feature_id(feature_id)?;
        let answer = self.write_label(py, |index| index.accept_label(feature))?;
        to_python(py, &answer)
    }

    /// Contexts where a feature fires on no counted token, as `saeidx silent --json`
    /// prints them: anywhere in the index, or centred on the token ids `tokens` (e.g.
    /// the `token` of its top texts: the same words where it does not fire).
    #[pyo3(signature = (feature_id, n = 10, *, context = 8, tokens = None, seed = 0, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn silent_contexts<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        n: i64,
        context: i64,
        tokens: Option<Vec<i64>>,
        seed: u64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = SilentRequest {
            feature: self.feature_id(feature_id)?,
            n: count(n, "n")?,
            context: small(context, "context")?,
            tokens: tokens
                .unwrap_or_default()
                .into_iter()
                .map(|t| small(t, "token"))
                .collect::<PyResult<_>>()?,
            seed,
            exclusions: exclusions(include_special, include_sinks),
        };
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.silent_contexts(&request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// Drafts labels with an LLM from the index's examples and scores them, as `saeidx
    /// labels draft` does; returns a pyarrow.Table, one row per feature (see
    /// draft_labels_answer for the arguments and the stub for the columns). The run's
    /// totals are the table's schema metadata "saeidx.report" (JSON).
    #[pyo3(signature = (features = None, *, llm_model = None, llm = None, sample = None, seed = 0, api_key_env = "OPENAI_API_KEY", concurrency = 4, score = true, overwrite_human = false, per_prompt = 5, timeout = 120.0, max_retries = 5, evidence = None, work_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn draft_labels<'py>(
        &self,
        py: Python<'py>,
        features: Option<Vec<i64>>,
        llm_model: Option<String>,
        llm: Option<String>,
        sample: Option<i64>,
        seed: u64,
        api_key_env: &str,
        concurrency: i64,
        score: bool,
        overwrite_human: bool,
        per_prompt: i64,
        timeout: f64,
        max_retries: u32,
        evidence: Option<Bound<'py, PyDict>>,
        work_dir: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = labels::RunArgs {
            features: self.feature_list(features)?,
            sample: sample.map(|n| count(n, "sample")).transpose()?,
            llm,
            llm_model,
            api_key_env: api_key_env.to_string(),
            concurrency: count(concurrency, "concurrency")?,
            per_prompt: count(per_prompt, "per_prompt")?,
            seed,
            timeout,
            max_retries,
            evidence,
            work_dir,
            score,
            overwrite_human,
        };
        let report = self.label_run(py, &args, Task::Draft)?;
        labels::table(py, &report)
    }

    /// Drafts labels with an LLM (any OpenAI-compatible endpoint) from the index's
    /// examples and scores them, as `saeidx labels draft --json` answers. features:
    /// ids (default: every live feature), or sample=N live ones at random (seed).
    /// llm: the endpoint's base URL (default $SAEIDX_LLM_URL, else
    /// http://127.0.0.1:8080/v1); llm_model: the name it knows (default
    /// $SAEIDX_LLM_MODEL); the API key is read from the variable api_key_env and never
    /// written. Answers are cached in INDEX/autointerp (or work_dir), so a rerun sends
    /// only what is new; a person's label is kept unless overwrite_human. evidence:
    /// {"top", "bands", "per_band", "same_token", "silent", "test", "context"}.
    #[pyo3(signature = (features = None, *, llm_model = None, llm = None, sample = None, seed = 0, api_key_env = "OPENAI_API_KEY", concurrency = 4, score = true, overwrite_human = false, per_prompt = 5, timeout = 120.0, max_retries = 5, evidence = None, work_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn draft_labels_answer<'py>(
        &self,
        py: Python<'py>,
        features: Option<Vec<i64>>,
        llm_model: Option<String>,
        llm: Option<String>,
        sample: Option<i64>,
        seed: u64,
        api_key_env: &str,
        concurrency: i64,
        score: bool,
        overwrite_human: bool,
        per_prompt: i64,
        timeout: f64,
        max_retries: u32,
        evidence: Option<Bound<'py, PyDict>>,
        work_dir: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = labels::RunArgs {
            features: self.feature_list(features)?,
            sample: sample.map(|n| count(n, "sample")).transpose()?,
            llm,
            llm_model,
            api_key_env: api_key_env.to_string(),
            concurrency: count(concurrency, "concurrency")?,
            per_prompt: count(per_prompt, "per_prompt")?,
            seed,
            timeout,
            max_retries,
            evidence,
            work_dir,
            score,
            overwrite_human,
        };
        let report = self.label_run(py, &args, Task::Draft)?;
        to_python(py, &report)
    }

    /// Scores labels (a person's or drafted) against the index with an LLM, as `saeidx
    /// labels score` does (delphi's detection and fuzzing); returns the same table as
    /// draft_labels. features: ids (default: every labelled feature), or sample=N.
    #[pyo3(signature = (features = None, *, llm_model = None, llm = None, sample = None, seed = 0, api_key_env = "OPENAI_API_KEY", concurrency = 4, per_prompt = 5, timeout = 120.0, max_retries = 5, evidence = None, work_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn score_labels<'py>(
        &self,
        py: Python<'py>,
        features: Option<Vec<i64>>,
        llm_model: Option<String>,
        llm: Option<String>,
        sample: Option<i64>,
        seed: u64,
        api_key_env: &str,
        concurrency: i64,
        per_prompt: i64,
        timeout: f64,
        max_retries: u32,
        evidence: Option<Bound<'py, PyDict>>,
        work_dir: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = labels::RunArgs {
            features: self.feature_list(features)?,
            sample: sample.map(|n| count(n, "sample")).transpose()?,
            llm,
            llm_model,
            api_key_env: api_key_env.to_string(),
            concurrency: count(concurrency, "concurrency")?,
            per_prompt: count(per_prompt, "per_prompt")?,
            seed,
            timeout,
            max_retries,
            evidence,
            work_dir,
            score: true,
            overwrite_human: false,
        };
        let report = self.label_run(py, &args, Task::Score)?;
        labels::table(py, &report)
    }

    /// Scores labels against the index, as `saeidx labels score --json` answers (the
    /// arguments of score_labels).
    #[pyo3(signature = (features = None, *, llm_model = None, llm = None, sample = None, seed = 0, api_key_env = "OPENAI_API_KEY", concurrency = 4, per_prompt = 5, timeout = 120.0, max_retries = 5, evidence = None, work_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn score_labels_answer<'py>(
        &self,
        py: Python<'py>,
        features: Option<Vec<i64>>,
        llm_model: Option<String>,
        llm: Option<String>,
        sample: Option<i64>,
        seed: u64,
        api_key_env: &str,
        concurrency: i64,
        per_prompt: i64,
        timeout: f64,
        max_retries: u32,
        evidence: Option<Bound<'py, PyDict>>,
        work_dir: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = labels::RunArgs {
            features: self.feature_list(features)?,
            sample: sample.map(|n| count(n, "sample")).transpose()?,
            llm,
            llm_model,
            api_key_env: api_key_env.to_string(),
            concurrency: count(concurrency, "concurrency")?,
            per_prompt: count(per_prompt, "per_prompt")?,
            seed,
            timeout,
            max_retries,
            evidence,
            work_dir,
            score: true,
            overwrite_human: false,
        };
        let report = self.label_run(py, &args, Task::Score)?;
        to_python(py, &report)
    }
    /// A document of the index, by number or id: doc (its number), id, source, text.
    fn document<'py>(&self, py: Python<'py>, doc: DocArg) -> PyResult<Bound<'py, PyDict>> {
        let guard = self.read()?;
        let index = &*guard;
        let doc = doc.to_ref()?;
        let (number, id, source, text) = py
            .detach(|| -> Result<_, QueryError> {
                let number = index.resolve(&doc)?;
                let (id, source, text) = index.document(number)?;
                Ok((number, id.to_string(), source.to_string(), text.to_string()))
            })
            .map_err(query_error)?;
        let out = PyDict::new(py);
        out.set_item("doc", number)?;
        out.set_item("id", id)?;
        out.set_item("source", source)?;
        out.set_item("text", text)?;
        Ok(out)
    }

    /// One page of a document, as `saeidx document --json` prints it: its tokens
    /// coloured by `feature` (default: the document's strongest), each token's features,
    /// and the document's top features (max and sum).
    #[pyo3(signature = (doc, *, feature = None, page = 0, page_tokens = 400, top = 20, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn document_page<'py>(
        &self,
        py: Python<'py>,
        doc: DocArg,
        feature: Option<i64>,
        page: i64,
        page_tokens: i64,
        top: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = DocumentRequest {
            doc: doc.to_ref()?,
            feature: feature.map(|f| self.feature_id(f)).transpose()?,
            page: small(page, "page")?,
            page_tokens: small(page_tokens, "page_tokens")?,
            top: count(top, "top")?,
            exclusions: exclusions(include_special, include_sinks),
        };
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.document_page(&request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }

    /// What the index holds, as `saeidx overview --json` prints it: provenance, counts,
    /// feature densities (log10 bins, dead features), the most and least frequent
    /// features, labelled and sampled features, documents.
    #[pyo3(signature = (*, frequent = 10, sample = 10, seed = 0, docs = 50, docs_from = 0))]
    fn overview<'py>(
        &self,
        py: Python<'py>,
        frequent: i64,
        sample: i64,
        seed: u64,
        docs: i64,
        docs_from: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = OverviewRequest {
            frequent: count(frequent, "frequent")?,
            sample: count(sample, "sample")?,
            seed,
            documents: count(docs, "docs")?,
            documents_from: small(docs_from, "docs_from")?,
        };
        let guard = self.read()?;
        let index = &*guard;
        let answer = py
            .detach(|| index.overview(&request))
            .map_err(query_error)?;
        to_python(py, &answer)
    }
}
