//! `Index.draft_labels` and `Index.score_labels`: a labelling run of
//! `saeidx_autointerp`, its outcomes as a `pyarrow.Table` (one row per feature) whose
//! schema metadata `saeidx.report` holds the run's totals as JSON.

use std::{collections::HashMap, ffi::CString, path::PathBuf, sync::Arc, time::Duration};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_pyarrow::{IntoPyArrow, Table};
use arrow_schema::{ArrowError, Field, Schema};
use pyo3::{
    exceptions::{PyRuntimeError, PyRuntimeWarning, PyValueError},
    prelude::*,
    types::{PyDict, PyModule},
};
use saeidx_autointerp::{
    AutointerpError, EvidenceOptions, FeatureOutcome, FeatureSelection, LabelReport, LabelRequest,
    LlmSettings, Silent, Task,
};
use saeidx_query::{AnyIndex, registry::ScoreSummary};

use crate::errors::query_error;

/// The Python arguments every labelling run takes.
pub(crate) struct RunArgs<'py> {
    pub(crate) features: Option<Vec<u32>>,
    pub(crate) sample: Option<usize>,
    pub(crate) llm: Option<String>,
    pub(crate) llm_model: Option<String>,
    pub(crate) api_key_env: String,
    pub(crate) concurrency: usize,
    pub(crate) per_prompt: usize,
    pub(crate) seed: u64,
    pub(crate) timeout: f64,
    pub(crate) max_retries: u32,
    pub(crate) evidence: Option<Bound<'py, PyDict>>,
    pub(crate) work_dir: Option<PathBuf>,
    pub(crate) score: bool,
    pub(crate) overwrite_human: bool,
}

/// An argument given, else the environment variable `variable` (as the command line
/// reads it), else `fallback`.
fn given_or_env(given: &Option<String>, variable: &str, fallback: Option<&str>) -> Option<String> {
    given
        .clone()
        .or_else(|| {
            std::env::var(variable)
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .or_else(|| fallback.map(str::to_string))
}

impl RunArgs<'_> {
    /// The library's request for `task`.
    pub(crate) fn request(&self, py: Python<'_>, task: Task) -> PyResult<LabelRequest> {
        let features = match (&self.features, self.sample) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err("give features or sample, not both"));
            }
            (Some(list), None) => FeatureSelection::Listed(list.clone()),
            (None, Some(n)) => FeatureSelection::Sample { n, seed: self.seed },
            (None, None) if task == Task::Score => FeatureSelection::Labelled,
            (None, None) => FeatureSelection::Live,
        };
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(PyValueError::new_err(
                "timeout must be a positive number of seconds",
            ));
        }
        let defaults = LlmSettings::default();
        let url = given_or_env(&self.llm, "SAEIDX_LLM_URL", Some(&defaults.url));
        let model = given_or_env(&self.llm_model, "SAEIDX_LLM_MODEL", None).ok_or_else(|| {
            PyValueError::new_err(
                "llm_model: give the model name the endpoint knows (or set SAEIDX_LLM_MODEL)",
            )
        })?;
        Ok(LabelRequest {
            task,
            features,
            llm: LlmSettings {
                url: url.unwrap_or(defaults.url.clone()),
                model,
                api_key_env: self.api_key_env.clone(),
                timeout: Duration::from_secs_f64(self.timeout),
                max_retries: self.max_retries,
                ..defaults
            },
            evidence: EvidenceOptions {
                seed: self.seed,
                ..evidence(py, self.evidence.as_ref())?
            },
            concurrency: self.concurrency,
            per_prompt: self.per_prompt,
            score: self.score,
            overwrite_human: self.overwrite_human,
            work_dir: self.work_dir.clone(),
            ..LabelRequest::default()
        })
    }
}

/// `{"top": 3, ...}` as evidence options (the others at their defaults).
fn evidence(py: Python<'_>, given: Option<&Bound<'_, PyDict>>) -> PyResult<EvidenceOptions> {
    let Some(given) = given else {
        return Ok(EvidenceOptions::default());
    };
    let text: String = PyModule::import(py, "json")?
        .call_method1("dumps", (given,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| {
        PyValueError::new_err(format!(
            "evidence: {e} (keys: top, bands, per_band, same_token, silent, test, context)"
        ))
    })
}

/// Runs `request` over `index` without the GIL.
pub(crate) fn run(
    py: Python<'_>,
    index: &AnyIndex,
    request: &LabelRequest,
) -> PyResult<LabelReport> {
    py.detach(|| saeidx_autointerp::run(index, request, &Silent))
        .map_err(|error| match error {
            AutointerpError::Invalid(text) => PyValueError::new_err(text),
            AutointerpError::Query(error) => query_error(error),
        })
}

/// Warns (RuntimeWarning) that a run stopped early, as the command line fails.
pub(crate) fn warn_stopped(py: Python<'_>, reason: &str) -> PyResult<()> {
    let text = format!(
        "the labelling run stopped early: {reason}. What was done is saved and its answers are cached: run it again to go on"
    );
    let message = CString::new(text.replace('\0', " "))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &message, 1)
}

/// The outcomes as a table: feature, status, the label's name, description,
/// confidence and origin, its LLM and prompt, detection and fuzzing (balanced accuracy,
/// null without an answered sample) with their answered and failed counts, requests,
/// cached, reason, answer.
pub(crate) fn table<'py>(py: Python<'py>, report: &LabelReport) -> PyResult<Bound<'py, PyAny>> {
    let rows = &report.features;
    let text = |f: &dyn Fn(&FeatureOutcome) -> Option<String>| {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let count = |f: &dyn Fn(&FeatureOutcome) -> u32| {
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(f))) as ArrayRef
    };
    let label_text = |f: fn(&saeidx_query::FeatureLabel) -> Option<String>| {
        text(&move |o: &FeatureOutcome| o.label.as_ref().and_then(f))
    };
    let mut columns: Vec<(&str, bool, ArrayRef)> = vec![
        ("feature", false, count(&|o| o.feature)),
        ("status", false, text(&|o| Some(status(o)))),
        ("name", true, label_text(|l| l.name.clone())),
        ("description", true, label_text(|l| l.description.clone())),
        ("confidence", true, label_text(|l| l.confidence.clone())),
        ("origin", true, label_text(origin)),
        (
            "llm",
            true,
            label_text(|l| l.provenance.as_ref().map(|p| p.llm.clone())),
        ),
        (
            "prompt_version",
            true,
            label_text(|l| l.provenance.as_ref().map(|p| p.prompt_version.clone())),
        ),
    ];
    for (name, pick) in [
        (
            "detection",
            detection as fn(&FeatureOutcome) -> Option<ScoreSummary>,
        ),
        ("fuzzing", fuzzing),
    ] {
        columns.extend(score_columns(rows, name, pick));
    }
    columns.extend([
        ("requests", false, count(&|o| o.requests)),
        ("cached", false, count(&|o| o.cached)),
        ("reason", true, text(&|o| o.reason.clone())),
        ("answer", true, text(&|o| o.answer.clone())),
    ]);
    build(py, columns, report)
}

fn status(outcome: &FeatureOutcome) -> String {
    serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn origin(label: &saeidx_query::FeatureLabel) -> Option<String> {
    Some(match &label.provenance {
        None => "human".into(),
        Some(p) => serde_json::to_value(p.origin).ok()?.as_str()?.to_string(),
    })
}

fn current_scores(outcome: &FeatureOutcome) -> Option<&saeidx_query::registry::LabelScores> {
    let label = outcome.label.as_ref()?;
    label.scores.as_ref().filter(|_| label.scores_current())
}

fn detection(outcome: &FeatureOutcome) -> Option<ScoreSummary> {
    current_scores(outcome)?.detection
}

fn fuzzing(outcome: &FeatureOutcome) -> Option<ScoreSummary> {
    current_scores(outcome)?.fuzzing
}

/// A score's balanced accuracy (null without an answered sample), answered and failed.
fn score_columns<'a>(
    rows: &[FeatureOutcome],
    name: &'a str,
    pick: fn(&FeatureOutcome) -> Option<ScoreSummary>,
) -> Vec<(&'a str, bool, ArrayRef)> {
    let scores: Vec<Option<ScoreSummary>> = rows.iter().map(pick).collect();
    let accuracy: Float64Array = scores
        .iter()
        .map(|s| s.filter(|s| s.answered() > 0).map(|s| s.balanced_accuracy))
        .collect();
    let answered: UInt32Array = scores.iter().map(|s| s.map(|s| s.answered())).collect();
    let failed: UInt32Array = scores.iter().map(|s| s.map(|s| s.failed)).collect();
    let (answered_name, failed_name) = match name {
        "detection" => ("detection_answered", "detection_failed"),
        _ => ("fuzzing_answered", "fuzzing_failed"),
    };
    vec![
        (name, true, Arc::new(accuracy) as ArrayRef),
        (answered_name, true, Arc::new(answered) as ArrayRef),
        (failed_name, true, Arc::new(failed) as ArrayRef),
    ]
}

/// A one-batch table with the report's totals as schema metadata.
fn build<'py>(
    py: Python<'py>,
    columns: Vec<(&str, bool, ArrayRef)>,
    report: &LabelReport,
) -> PyResult<Bound<'py, PyAny>> {
    let totals = LabelReport {
        features: Vec::new(),
        ..report.clone()
    };
    let metadata = HashMap::from([(
        "saeidx.report".to_string(),
        serde_json::to_string(&totals).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
    )]);
    let schema = Arc::new(
        Schema::new(
            columns
                .iter()
                .map(|(name, nullable, array)| {
                    Field::new(*name, array.data_type().clone(), *nullable)
                })
                .collect::<Vec<_>>(),
        )
        .with_metadata(metadata),
    );
    let arrow = |error: ArrowError| PyRuntimeError::new_err(error.to_string());
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, _, array)| array).collect(),
    )
    .map_err(arrow)?;
    Table::try_new(vec![batch], schema)
        .map_err(arrow)?
        .into_pyarrow(py)
}
