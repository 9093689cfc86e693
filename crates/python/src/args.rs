//! Python arguments into the query library's requests, and its answers into Python
//! objects (the answer types' JSON, so a Python dict has the fields `saeidx ... --json`
//! prints and the web server's API returns).

use std::ops::Range;

use pyo3::{exceptions::PyValueError, prelude::*, types::PyModule};
use saeidx_query::{Aggregate, DocRef, Exclusions, Rank};
use serde::Serialize;

/// A document: its number in the index, or its id.
#[derive(FromPyObject)]
pub(crate) enum DocArg {
    Number(i64),
    Id(String),
}

impl DocArg {
    /// The library's document reference.
    pub(crate) fn to_ref(&self) -> PyResult<DocRef> {
        match self {
            DocArg::Number(number) => u32::try_from(*number).map(DocRef::Number).map_err(|_| {
                PyValueError::new_err(format!(
                    "document {number} is not in this index; documents are numbered from 0"
                ))
            }),
            DocArg::Id(id) => Ok(DocRef::Id(id.clone())),
        }
    }
}

/// A non-negative count argument.
pub(crate) fn count(value: i64, name: &str) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be 0 or more, not {value}")))
}

/// A non-negative token position or context size (sizes past the query library's limits
/// are refused there, with the limit named).
pub(crate) fn small(value: i64, name: &str) -> PyResult<u32> {
    if value < 0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be 0 or more, not {value}"
        )));
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

/// The tokens an answer counts.
pub(crate) fn exclusions(include_special: bool, include_sinks: bool) -> Exclusions {
    Exclusions {
        special: !include_special,
        sinks: !include_sinks,
    }
}

/// `"token"`, `"document_max"`, `"document_sum"` (or with `-`).
pub(crate) fn rank(name: &str) -> PyResult<Rank> {
    Rank::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "rank {name:?} is not one of \"token\", \"document_max\", \"document_sum\""
        ))
    })
}

/// `"max"` or `"sum"`.
pub(crate) fn aggregate(name: &str) -> PyResult<Aggregate> {
    match name {
        "max" => Ok(Aggregate::Max),
        "sum" => Ok(Aggregate::Sum),
        other => Err(PyValueError::new_err(format!(
            "aggregate {other:?} is not one of \"max\", \"sum\""
        ))),
    }
}

/// A `(start, end)` pair of token positions.
pub(crate) fn positions(tokens: Option<(i64, i64)>) -> PyResult<Option<Range<u32>>> {
    tokens
        .map(|(start, end)| Ok(small(start, "token position")?..small(end, "token position")?))
        .transpose()
}

/// An answer as Python objects: its JSON, read by Python's `json` module (dicts, lists,
/// strings, ints, floats; the same values the command line's `--json` prints).
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    answer: &impl Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    let text = saeidx_query::answers::to_json(answer)
        .and_then(|value| serde_json::to_string(&value))
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    PyModule::import(py, "json")?.call_method1("loads", (text,))
}
