//! Live texts: the index's model and SAE, loaded on first use on a thread of their own
//! ([`LiveWorker`]: MLX's streams and the model's arrays stay on the thread that loaded
//! them); callers on any Python thread wait for it with the GIL released.

use std::{
    path::Path,
    sync::{Mutex, PoisonError},
};

use saeidx_format::manifest::Manifest;
use saeidx_hub::HubSettings;
use saeidx_live::{LiveSources, LiveWorker, LiveWorkerError};
use saeidx_query::AnalyzedText;

/// The live analyzer of one index, started on first use.
#[derive(Default)]
pub(crate) struct Live {
    worker: Mutex<Option<LiveWorker>>,
}

impl Live {
    /// Runs `text` through the model and SAE that `manifest` (of the index in
    /// `index_dir`) records, loading them on the first call (a failed load, or a worker
    /// that stopped, is retried on the next call).
    pub(crate) fn analyze(
        &self,
        manifest: &Manifest,
        index_dir: &Path,
        text: &str,
    ) -> Result<AnalyzedText, LiveWorkerError> {
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if !worker.as_ref().is_some_and(LiveWorker::is_running) {
            *worker = Some(LiveWorker::start(
                manifest.clone(),
                index_dir.to_path_buf(),
                LiveSources::default(),
                HubSettings::from_env(),
            )?);
        }
        worker
            .as_ref()
            .ok_or(LiveWorkerError::Stopped)?
            .analyze_text(text)
    }
}
