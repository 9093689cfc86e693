//! Helpers shared by the end-to-end tests: where the repository, the default assets and
//! the Python reference environment are.
//!
//! The tests run after `scripts/setup.sh --test-tools` (README command (b) does that);
//! when something it makes is missing, they fail with a message saying so.

use std::path::PathBuf;

use saeidx_assets::defaults::{AssetPaths, DEFAULT_MODEL_REPO};
use saeidx_model::hub::{self, HubSettings, ModelFiles, ModelSource};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(relative)
}

/// The default model's files, resolved through the Hugging Face cache, offline.
pub fn default_model() -> ModelFiles {
    let settings = HubSettings {
        offline: true,
        ..HubSettings::from_env()
    };
    let source = ModelSource::Hub {
        repo_id: DEFAULT_MODEL_REPO.to_string(),
        revision: None,
    };
    hub::resolve(&source, &settings).unwrap_or_else(|e| {
        panic!("{e}\nThe default model is made by `bash scripts/setup.sh`; run it first.")
    })
}

/// Where set-up put the default assets (`SAEIDX_ASSETS_DIR`, else `.assets/` in the
/// repository) and the Hugging Face cache.
pub fn asset_paths() -> AssetPaths {
    let assets_dir = std::env::var_os("SAEIDX_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".assets"));
    AssetPaths {
        assets_dir,
        hub_dir: HubSettings::from_env().cache_dir,
    }
}

/// The Python of the reference environment (`.venv`).
pub fn reference_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh --test-tools`",
        python.display()
    );
    python
}
