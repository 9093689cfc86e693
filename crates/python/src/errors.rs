//! saeidx's errors as Python exceptions: saeidx's own classes (all subclasses of
//! [`SaeidxError`]) for problems with an index or its model, Python's built-in ones for
//! bad arguments (`ValueError`) and missing files (`FileNotFoundError`, `OSError`).

use std::io::ErrorKind;

use pyo3::{
    PyErr,
    exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError},
};
use saeidx_format::{manifest::ManifestError, verify::VerifyError};
use saeidx_query::QueryError;

pyo3::create_exception!(
    saeidx,
    SaeidxError,
    PyException,
    "Base class of saeidx's own errors."
);
pyo3::create_exception!(
    saeidx,
    NotAnIndexError,
    SaeidxError,
    "The path is not a saeidx index folder (it has no manifest.json)."
);
pyo3::create_exception!(
    saeidx,
    IndexNotBuiltError,
    SaeidxError,
    "The index has no query files yet: run `saeidx query build DIR` once."
);
pyo3::create_exception!(
    saeidx,
    CorruptIndexError,
    SaeidxError,
    "The index's files are damaged, do not belong together, or have a format version this saeidx does not read."
);
pyo3::create_exception!(
    saeidx,
    LiveAnalysisError,
    SaeidxError,
    "A text could not run through the index's model and SAE: they could not be loaded, differ from the ones the index was built with, or failed."
);

/// An error's message followed by its causes that add something (`a: b: c`).
pub(crate) fn message(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The Python exception for a failure of the query layer.
pub(crate) fn query_error(error: QueryError) -> PyErr {
    let text = message(&error);
    match &error {
        QueryError::FeatureOutOfRange { .. }
        | QueryError::UnknownDocument { .. }
        | QueryError::TokenRange { .. }
        | QueryError::ReversedRange { .. }
        | QueryError::NotForTexts(_)
        | QueryError::NoDraft { .. }
        | QueryError::Filter(_)
        | QueryError::TokenPattern { .. }
        | QueryError::Contrast(_)
        | QueryError::Limit { .. } => PyValueError::new_err(text),
        QueryError::NotBuilt { .. } => IndexNotBuiltError::new_err(text),
        QueryError::Index(VerifyError::Manifest(ManifestError::Read { source, .. }))
            if matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::NotADirectory
            ) =>
        {
            NotAnIndexError::new_err(text)
        }
        QueryError::Index(_)
        | QueryError::Segments(_)
        | QueryError::Corrupt { .. }
        | QueryError::Version { .. }
        | QueryError::Changed { .. }
        | QueryError::LogitEffects(_)
        | QueryError::StaleLogitEffects { .. }
        | QueryError::Documents(_)
        | QueryError::Registry { .. } => CorruptIndexError::new_err(text),
        QueryError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(text)
        }
        QueryError::Io { .. } => PyOSError::new_err(text),
        QueryError::Arrow { .. }
        | QueryError::TooLarge { .. }
        | QueryError::Precision { .. }
        | QueryError::Locked(_) => SaeidxError::new_err(text),
    }
}

/// A comparison's error as a Python exception: the query layer's as [`query_error`],
/// a bad request as `ValueError`, an SAE file not found as `FileNotFoundError`,
/// anything else as saeidx's own error.
pub(crate) fn compare_error(error: saeidx_compare::CompareError) -> PyErr {
    use saeidx_compare::CompareError;
    match error {
        CompareError::Query(error) => query_error(error),
        CompareError::Request(_) => PyValueError::new_err(error.to_string()),
        CompareError::SaeNotFound { .. } => PyFileNotFoundError::new_err(error.to_string()),
        _ => SaeidxError::new_err(error.to_string()),
    }
}
