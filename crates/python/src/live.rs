//! Live texts: the index's model and SAE, loaded on first use, run on a thread of their
//! own.
//!
//! MLX keeps its default stream per thread, and the model's weights are arrays of the
//! thread that loaded them, so the analyzer is created and used on one worker thread
//! whichever Python thread asks; callers wait for its answer with the GIL released.

use std::{
    sync::{Mutex, PoisonError, mpsc},
    thread::JoinHandle,
};

use saeidx_format::manifest::Manifest;
use saeidx_indexer::live::{LiveAnalyzer, LiveToken};
use saeidx_model::hub::HubSettings;

use crate::errors;

/// Why a live text got no answer (the message, with its causes).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    /// The model or SAE could not be loaded or are not the index's.
    #[error("loading the index's model and SAE for live texts: {0}")]
    Load(String),
    /// Running the text failed.
    #[error("running the text through the index's model and SAE: {0}")]
    Analyze(String),
    /// The worker thread is gone (it panicked; the panic was printed).
    #[error("the live analysis thread stopped unexpectedly")]
    Stopped,
}

/// A text to analyse, and where its answer goes.
type Request = (String, mpsc::Sender<Result<Vec<LiveToken>, LiveError>>);

/// The worker thread, once its analyzer is loaded.
struct Worker {
    requests: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

/// The live analyzer of one index, started on first use.
#[derive(Default)]
pub(crate) struct Live {
    worker: Mutex<Option<Worker>>,
}

impl Live {
    /// Runs `text` through the model and SAE that `manifest` records, loading them on
    /// the first call (a failed load is retried on the next call).
    pub(crate) fn analyze(
        &self,
        manifest: &Manifest,
        text: String,
    ) -> Result<Vec<LiveToken>, LiveError> {
        let requests = {
            let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
            if worker
                .as_ref()
                .is_none_or(|worker| worker.thread.is_finished())
            {
                *worker = Some(start(manifest.clone())?);
            }
            worker
                .as_ref()
                .map(|worker| worker.requests.clone())
                .ok_or(LiveError::Stopped)?
        };
        let (reply, answer) = mpsc::channel();
        requests
            .send((text, reply))
            .map_err(|_| LiveError::Stopped)?;
        answer.recv().map_err(|_| LiveError::Stopped)?
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Worker { requests, thread }) = worker {
            // Closing the queue ends the worker's loop; it frees the model on its thread.
            drop(requests);
            // A panic there was already reported when it happened.
            let _ = thread.join();
        }
    }
}

/// Starts the worker thread and waits until it has loaded the analyzer.
fn start(manifest: Manifest) -> Result<Worker, LiveError> {
    let (requests, queue) = mpsc::channel::<Request>();
    let (loaded, load_result) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("saeidx-live".into())
        .spawn(move || {
            let analyzer =
                match LiveAnalyzer::for_index(&manifest, None, None, &HubSettings::from_env()) {
                    Ok(analyzer) => {
                        let _ = loaded.send(Ok(()));
                        analyzer
                    }
                    Err(error) => {
                        let _ = loaded.send(Err(LiveError::Load(errors::message(&error))));
                        return;
                    }
                };
            for (text, reply) in queue {
                let answer = analyzer
                    .analyze(&text)
                    .map_err(|error| LiveError::Analyze(errors::message(&error)));
                let _ = reply.send(answer);
            }
        })
        .map_err(|error| LiveError::Load(format!("cannot start a thread: {error}")))?;
    match load_result.recv() {
        Ok(Ok(())) => Ok(Worker { requests, thread }),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(LiveError::Stopped)
        }
    }
}
