//! `saeidx.Index`: an opened index and its questions.

use std::{ops::Range, path::PathBuf};

use pyo3::{exceptions::PyValueError, prelude::*, types::PyDict};
use saeidx_query::{
    Aggregate, Exclusions, FeatureScore, Neighbour, QueryError, QueryIndex, Rank, TokenCodes,
    rank_features,
};

use crate::{
    errors::{LiveAnalysisError, query_error},
    live::Live,
    tables,
};

/// An opened saeidx index (see `saeidx.open`).
///
/// Queries read the memory-mapped query files and never need the model; a text given
/// to `top_features(text=...)` runs live through the model and SAE the index was built
/// with (loaded on first use and kept). Every query releases the GIL.
#[pyclass(module = "saeidx", frozen)]
pub struct Index {
    index: QueryIndex,
    live: Live,
}

/// One top text as Python sees it (offsets count characters of `text`).
pub(crate) struct Hit {
    pub(crate) doc: u32,
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) position: u32,
    pub(crate) token: u32,
    pub(crate) activation: f32,
    pub(crate) score: f32,
    pub(crate) text: String,
    pub(crate) hit_start: u32,
    pub(crate) hit_end: u32,
}

/// A document: its number in the index, or its id.
#[derive(FromPyObject)]
enum DocRef {
    Number(i64),
    Id(String),
}

/// The characters of `text` before byte `byte` (a character boundary).
fn chars_before(text: &str, byte: usize) -> u32 {
    text.get(..byte)
        .map_or(0, |head| head.chars().count() as u32)
}

/// A non-negative count argument.
fn count(value: i64, name: &str) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be 0 or more, not {value}")))
}

/// The tokens an answer counts.
fn exclusions(include_special: bool, include_sinks: bool) -> Exclusions {
    Exclusions {
        special: !include_special,
        sinks: !include_sinks,
    }
}

fn parse_rank(rank: &str) -> PyResult<Rank> {
    match rank {
        "token" => Ok(Rank::Token),
        "document_max" => Ok(Rank::DocumentMax),
        "document_sum" => Ok(Rank::DocumentSum),
        other => Err(PyValueError::new_err(format!(
            "rank {other:?} is not one of \"token\", \"document_max\", \"document_sum\""
        ))),
    }
}

fn parse_aggregate(aggregate: &str) -> PyResult<Aggregate> {
    match aggregate {
        "max" => Ok(Aggregate::Max),
        "sum" => Ok(Aggregate::Sum),
        other => Err(PyValueError::new_err(format!(
            "aggregate {other:?} is not one of \"max\", \"sum\""
        ))),
    }
}

impl Index {
    /// Opens the index in `path`.
    pub(crate) fn open(path: PathBuf) -> Result<Self, QueryError> {
        Ok(Self {
            index: QueryIndex::open(&path)?,
            live: Live::default(),
        })
    }

    /// A feature id argument, checked against the SAE's width.
    fn feature_id(&self, feature: i64) -> PyResult<u32> {
        let d_sae = self.index.d_sae();
        u32::try_from(feature)
            .ok()
            .filter(|&f| (f as usize) < d_sae)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "feature {feature} does not exist: this index's SAE has {d_sae} features (0..{d_sae})"
                ))
            })
    }

    /// The document number a `doc` argument names.
    fn doc_number(&self, doc: DocRef) -> Result<u32, QueryError> {
        match doc {
            DocRef::Number(number) => {
                u32::try_from(number).map_err(|_| QueryError::UnknownDocument {
                    doc: number.to_string(),
                    documents: u64::from(self.index.documents()),
                    hint: "; documents are numbered from 0",
                })
            }
            DocRef::Id(id) => self.index.document_by_id(&id),
        }
    }

    /// The hits of `top_texts`, each with the whole document (`context` None) or a
    /// snippet of `context` tokens each side.
    #[allow(clippy::too_many_arguments)]
    fn hits(
        &self,
        py: Python<'_>,
        feature_id: i64,
        top_k: i64,
        rank: &str,
        context: Option<i64>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<Hit>> {
        let feature = self.feature_id(feature_id)?;
        let k = count(top_k, "top_k")?;
        let rank = parse_rank(rank)?;
        let context = context
            .map(|c| count(c, "context").map(|c| u32::try_from(c).unwrap_or(u32::MAX)))
            .transpose()?;
        let exclusions = exclusions(include_special, include_sinks);
        let index = &self.index;
        py.detach(|| -> Result<Vec<Hit>, QueryError> {
            let found = index.top_texts(feature, k, rank, context.unwrap_or(0), exclusions)?;
            let mut hits = Vec::with_capacity(found.len());
            for hit in found {
                let (text, start, end) = match context {
                    Some(_) => (hit.snippet.text, hit.snippet.hit_start, hit.snippet.hit_end),
                    None => {
                        let span = index.token_span(hit.doc, hit.position)?;
                        let (_, _, text) = index.document(hit.doc)?;
                        (text.to_string(), span.start, span.end)
                    }
                };
                hits.push(Hit {
                    doc: hit.doc,
                    id: hit.id,
                    source: hit.source,
                    position: hit.position,
                    token: hit.token,
                    activation: hit.activation,
                    score: hit.score,
                    hit_start: chars_before(&text, start),
                    hit_end: chars_before(&text, end),
                    text,
                });
            }
            Ok(hits)
        })
        .map_err(query_error)
    }

    /// The ranked features of `top_features`.
    #[allow(clippy::too_many_arguments)]
    fn scores(
        &self,
        py: Python<'_>,
        text: Option<String>,
        doc: Option<DocRef>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<FeatureScore>> {
        let k = count(top_k, "top_k")?;
        saeidx_query::limits::Limit::K
            .check(k)
            .map_err(query_error)?;
        let aggregate = parse_aggregate(aggregate)?;
        let exclusions = exclusions(include_special, include_sinks);
        let index = &self.index;
        match (text, doc) {
            (Some(text), None) => {
                if tokens.is_some() {
                    return Err(PyValueError::new_err(
                        "tokens selects positions of an indexed document (doc=...), not of a text",
                    ));
                }
                let live = &self.live;
                let analyzed = py
                    .detach(|| live.analyze(index.manifest(), index.dir(), text))
                    .map_err(|error| LiveAnalysisError::new_err(error.to_string()))?;
                let kept = analyzed
                    .iter()
                    .filter(|t| !exclusions.leaves_out(t.special, t.sink))
                    .map(|t| TokenCodes {
                        position: t.position,
                        features: &t.features,
                        values: &t.values,
                    });
                Ok(rank_features(kept, aggregate, k, index.d_sae()))
            }
            (None, Some(doc)) => {
                let range = tokens
                    .map(|(start, end)| -> PyResult<Range<u32>> {
                        let position = |p: i64| {
                            u32::try_from(p).map_err(|_| {
                                PyValueError::new_err(format!(
                                    "token position {p} is not in 0..{}",
                                    u32::MAX
                                ))
                            })
                        };
                        Ok(position(start)?..position(end)?)
                    })
                    .transpose()?;
                py.detach(|| {
                    let doc = self.doc_number(doc)?;
                    index.top_features(doc, range, aggregate, k, exclusions)
                })
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
        let exclusions = exclusions(include_special, include_sinks);
        let index = &self.index;
        py.detach(|| index.neighbours(feature, k, exclusions))
            .map_err(query_error)
    }
}

#[pymethods]
impl Index {
    /// The index folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.index.dir().to_path_buf()
    }

    /// The SAE's number of features (feature ids are 0..d_sae).
    #[getter]
    fn d_sae(&self) -> usize {
        self.index.d_sae()
    }

    /// What the index holds: its folder, model, SAE, hook, counts, live and dead
    /// features, labels.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let index = &self.index;
        let (live, dead, counts) = py
            .detach(|| {
                Ok::<_, QueryError>((
                    index.live_features()?,
                    index.dead_features()?,
                    index.counts()?,
                ))
            })
            .map_err(query_error)?;
        let job = &index.manifest().job;
        let info = PyDict::new(py);
        info.set_item("path", index.dir())?;
        info.set_item("model", &job.model.source)?;
        info.set_item("model_commit", &job.model.commit)?;
        info.set_item("sae", &job.sae.source)?;
        info.set_item("hook", &job.hook)?;
        info.set_item("d_sae", index.d_sae())?;
        info.set_item("documents", counts.documents)?;
        info.set_item("tokens", counts.tokens)?;
        info.set_item("content_tokens", counts.content_tokens)?;
        info.set_item("nonzeros", counts.nonzeros)?;
        info.set_item("live_features", live.len())?;
        info.set_item("dead_features", dead.len())?;
        info.set_item("labels", index.registry().len())?;
        Ok(info)
    }

    /// The number of documents.
    fn __len__(&self) -> usize {
        self.index.documents() as usize
    }

    /// `saeidx.Index("FOLDER": N documents, F features)`.
    fn __repr__(&self) -> String {
        format!(
            "saeidx.Index({:?}: {} documents, {} features)",
            self.index.dir().display().to_string(),
            self.index.documents(),
            self.index.d_sae()
        )
    }

    /// The texts where a feature fires most strongly, as (text, activation,
    /// token_position) tuples, strongest first (mlxterp's get_top_texts_for_feature).
    ///
    /// rank: "document_max" (default: each document once, by its strongest token, as
    /// mlxterp ranks texts), "token" (each token on its own) or "document_sum" (documents
    /// by the sum of their activations; the tuple still has the strongest token).
    /// context: None (default) gives the whole document's text, as mlxterp does; a
    /// number gives that many tokens of context on each side of the token instead.
    /// activation is the feature's activation on the token at token_position (the
    /// token's position in its document). Special tokens and attention sinks are left
    /// out unless included.
    #[pyo3(signature = (feature_id, top_k = 10, *, rank = "document_max", context = None, include_special = false, include_sinks = false))]
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
    ) -> PyResult<Vec<(String, f64, u32)>> {
        let hits = self.hits(
            py,
            feature_id,
            top_k,
            rank,
            context,
            include_special,
            include_sinks,
        )?;
        Ok(hits
            .into_iter()
            .map(|hit| (hit.text, f64::from(hit.activation), hit.position))
            .collect())
    }

    /// top_texts as a pyarrow.Table with one row per text: doc, id, source, position,
    /// token (id), activation, score (the ranking value: the activation, or the
    /// document's sum), text, hit_start and hit_end (the token's characters in text).
    #[pyo3(signature = (feature_id, top_k = 10, *, rank = "document_max", context = None, include_special = false, include_sinks = false))]
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let hits = self.hits(
            py,
            feature_id,
            top_k,
            rank,
            context,
            include_special,
            include_sinks,
        )?;
        tables::hits(py, &hits)
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
        doc: Option<DocRef>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Vec<(u32, f64)>> {
        let scores = self.scores(
            py,
            text,
            doc,
            top_k,
            aggregate,
            tokens,
            include_special,
            include_sinks,
        )?;
        Ok(scores
            .iter()
            .map(|s| (s.feature, f64::from(s.score)))
            .collect())
    }

    /// top_features as a pyarrow.Table with one row per feature: feature, score (the
    /// aggregate), max, position (of the max), tokens (active on how many), label (its
    /// name in the index's labels, or null).
    #[pyo3(signature = (text = None, *, doc = None, top_k = 10, aggregate = "max", tokens = None, include_special = false, include_sinks = false))]
    #[allow(clippy::too_many_arguments)]
    fn top_features_table<'py>(
        &self,
        py: Python<'py>,
        text: Option<String>,
        doc: Option<DocRef>,
        top_k: i64,
        aggregate: &str,
        tokens: Option<(i64, i64)>,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let scores = self.scores(
            py,
            text,
            doc,
            top_k,
            aggregate,
            tokens,
            include_special,
            include_sinks,
        )?;
        tables::features(py, &scores, self.index.registry())
    }

    /// A feature's statistics over the index's counted tokens: count, density,
    /// documents, max, mean (where active), histogram (counts in 20 equal bins over
    /// (0, max]) and postings (tokens it is active on, excluded ones too).
    #[pyo3(signature = (feature_id, *, include_special = false, include_sinks = false))]
    fn feature_stats<'py>(
        &self,
        py: Python<'py>,
        feature_id: i64,
        include_special: bool,
        include_sinks: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let feature = self.feature_id(feature_id)?;
        let exclusions = exclusions(include_special, include_sinks);
        let index = &self.index;
        let stats = py
            .detach(|| index.feature_stats(feature, exclusions))
            .map_err(query_error)?;
        let out = PyDict::new(py);
        out.set_item("feature", stats.feature)?;
        out.set_item("count", stats.count)?;
        out.set_item("density", stats.density)?;
        out.set_item("documents", stats.documents)?;
        out.set_item("max", f64::from(stats.max))?;
        out.set_item("mean", f64::from(stats.mean))?;
        out.set_item("histogram", stats.histogram)?;
        out.set_item("postings", stats.postings)?;
        Ok(out)
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

    /// A feature's label from the index's registry (mlxterp's sae_features.json
    /// fields: name, description, examples, confidence, notes), or None.
    fn label<'py>(&self, py: Python<'py>, feature_id: i64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let feature = self.feature_id(feature_id)?;
        let Some(label) = self.index.registry().get(feature) else {
            return Ok(None);
        };
        let out = PyDict::new(py);
        out.set_item("name", &label.name)?;
        out.set_item("description", &label.description)?;
        out.set_item("examples", &label.examples)?;
        out.set_item("confidence", &label.confidence)?;
        out.set_item("notes", &label.notes)?;
        Ok(Some(out))
    }

    /// A document of the index, by number or id: doc (its number), id, source, text.
    fn document<'py>(&self, py: Python<'py>, doc: DocRef) -> PyResult<Bound<'py, PyDict>> {
        let index = &self.index;
        let (number, id, source, text) = py
            .detach(|| -> Result<_, QueryError> {
                let number = self.doc_number(doc)?;
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
}
