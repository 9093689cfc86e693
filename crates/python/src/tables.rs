//! Answers as `pyarrow.Table`s: built with arrow-rs and handed to pyarrow through the
//! Arrow C data interface (arrow-pyarrow), without copying through Python objects.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_pyarrow::{IntoPyArrow, Table};
use arrow_schema::{ArrowError, Field, Schema};
use pyo3::{Bound, PyAny, PyResult, Python, exceptions::PyRuntimeError};
use saeidx_query::{Neighbour, RankedFeature};

/// One top text as Python's tables and tuples show it: the snippet's text, or the whole
/// document's, with the token's character offsets in it.
pub(crate) struct Hit {
    pub(crate) hit: saeidx_query::TextHit,
    pub(crate) text: String,
    pub(crate) hit_start: u32,
    pub(crate) hit_end: u32,
}

/// A one-batch `pyarrow.Table` of `columns` (name, nullable, values).
fn table<'py>(
    py: Python<'py>,
    columns: Vec<(&str, bool, ArrayRef)>,
) -> PyResult<Bound<'py, PyAny>> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, nullable, array)| Field::new(*name, array.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    ));
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

/// Top texts: one row per hit (see `Index.top_texts_table`).
pub(crate) fn hits<'py>(py: Python<'py>, hits: &[Hit]) -> PyResult<Bound<'py, PyAny>> {
    let u32s = |f: fn(&Hit) -> u32| {
        Arc::new(UInt32Array::from_iter_values(hits.iter().map(f))) as ArrayRef
    };
    let f32s = |f: fn(&Hit) -> f32| {
        Arc::new(Float32Array::from_iter_values(hits.iter().map(f))) as ArrayRef
    };
    let strings = |f: fn(&Hit) -> &str| {
        Arc::new(StringArray::from_iter_values(hits.iter().map(f))) as ArrayRef
    };
    table(
        py,
        vec![
            ("doc", false, u32s(|h| h.hit.doc)),
            ("id", false, strings(|h| &h.hit.id)),
            ("source", false, strings(|h| &h.hit.source)),
            ("position", false, u32s(|h| h.hit.position)),
            ("token", false, u32s(|h| h.hit.token)),
            ("activation", false, f32s(|h| h.hit.activation)),
            ("score", false, f32s(|h| h.hit.score)),
            ("text", false, strings(|h| &h.text)),
            ("hit_start", false, u32s(|h| h.hit_start)),
            ("hit_end", false, u32s(|h| h.hit_end)),
        ],
    )
}

/// Top features: one row per feature, the fields of the answer's features (see
/// `Index.top_features_table`).
pub(crate) fn features<'py>(
    py: Python<'py>,
    features: &[RankedFeature],
) -> PyResult<Bound<'py, PyAny>> {
    let u32s = |f: fn(&RankedFeature) -> u32| {
        Arc::new(UInt32Array::from_iter_values(features.iter().map(f))) as ArrayRef
    };
    let f32s = |f: fn(&RankedFeature) -> f32| {
        Arc::new(Float32Array::from_iter_values(features.iter().map(f))) as ArrayRef
    };
    let texts = StringArray::from_iter_values(features.iter().map(|f| f.token_text.as_str()));
    let labels: StringArray = features
        .iter()
        .map(|f| f.label.as_ref().and_then(|label| label.name.as_deref()))
        .collect();
    table(
        py,
        vec![
            ("feature", false, u32s(|f| f.feature)),
            ("score", false, f32s(|f| f.score)),
            ("activation", false, f32s(|f| f.activation)),
            ("position", false, u32s(|f| f.position)),
            ("token_text", false, Arc::new(texts) as ArrayRef),
            ("active_tokens", false, u32s(|f| f.active_tokens)),
            ("label", true, Arc::new(labels) as ArrayRef),
        ],
    )
}

/// Neighbours: one row per co-activating feature (see `Index.neighbours_table`).
pub(crate) fn neighbours<'py>(
    py: Python<'py>,
    neighbours: &[Neighbour],
) -> PyResult<Bound<'py, PyAny>> {
    table(
        py,
        vec![
            (
                "feature",
                false,
                Arc::new(UInt32Array::from_iter_values(
                    neighbours.iter().map(|n| n.feature),
                )) as ArrayRef,
            ),
            (
                "jaccard",
                false,
                Arc::new(Float64Array::from_iter_values(
                    neighbours.iter().map(|n| n.jaccard),
                )) as ArrayRef,
            ),
            (
                "together",
                false,
                Arc::new(UInt64Array::from_iter_values(
                    neighbours.iter().map(|n| n.together),
                )) as ArrayRef,
            ),
            (
                "count",
                false,
                Arc::new(UInt64Array::from_iter_values(
                    neighbours.iter().map(|n| n.count),
                )) as ArrayRef,
            ),
        ],
    )
}
