//! The `saeidx` Python module: query a saeidx index from Python.
//!
//! ```python
//! import saeidx
//! idx = saeidx.open("indexes/default")
//! idx.top_texts(1234, top_k=5)                       # [(text, activation, position), ...]
//! idx.top_features("Paris is the capital of France")  # [(feature_id, activation), ...]
//! ```
//!
//! Built by maturin into an abi3 wheel (`crates/python/pyproject.toml`); the wheel
//! loads libmlx.so from the PyPI MLX runtime it depends on. Tested from Python
//! (`crates/python/tests`, run by `scripts/python-test.sh`).

mod args;
mod errors;
mod index;
mod labels;
mod live;
mod tables;

use std::path::PathBuf;

use pyo3::{exceptions::PyFileNotFoundError, prelude::*};

use crate::index::Index;

/// Opens the saeidx index in the folder `path` (made by `saeidx run`, with its query
/// files). Raises FileNotFoundError if there is no such folder, NotAnIndexError if it
/// is not an index, IndexNotBuiltError if its query files are missing and
/// CorruptIndexError if its files are damaged.
#[pyfunction]
fn open(py: Python<'_>, path: PathBuf) -> PyResult<Index> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such index folder",
            path.display()
        )));
    }
    py.detach(|| Index::open(path)).map_err(errors::query_error)
}

/// Query saeidx indexes of SAE feature activations: which texts make a feature fire,
/// which features fire on a text (live through the index's model and SAE), feature
/// statistics, neighbours and labels; answers as Python tuples or pyarrow tables.
#[pymodule]
mod saeidx {
    #[pymodule_export]
    use super::open;
    #[pymodule_export]
    use crate::errors::{
        CorruptIndexError, IndexNotBuiltError, LiveAnalysisError, NotAnIndexError, SaeidxError,
    };
    #[pymodule_export]
    use crate::index::Index;
    use pyo3::prelude::*;

    /// Adds `__version__`, the version of the saeidx that built this module, and sends
    /// saeidx's warnings (e.g. "using the cached snapshot of ... at commit ...") to
    /// standard error, as the command line does (`RUST_LOG` chooses more).
    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Another extension may have installed a subscriber first; then it gets them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        module.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
