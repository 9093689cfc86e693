//! A live analyzer on a thread of its own.

use std::path::PathBuf;

use saeidx_format::manifest::Manifest;
use saeidx_hub::HubSettings;
use saeidx_query::AnalyzedText;

use crate::{LiveAnalyzer, LiveSources, LiveToken, analyzed_text};

/// Why a live text sent to a [`LiveWorker`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum LiveWorkerError {
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

/// A text for the worker and where its answer goes.
type WorkerRequest = (
    String,
    std::sync::mpsc::Sender<Result<Vec<LiveToken>, LiveWorkerError>>,
);

/// A [`LiveAnalyzer`] on a thread of its own, for callers on any thread (a web
/// server's workers, Python threads). MLX keeps its default stream per thread and the
/// model's arrays belong to the thread that loaded them, so the analyzer is loaded and
/// used on one thread; [`LiveWorker::analyze`] hands it a text and waits. Dropping the
/// worker ends the thread, which frees the model there.
pub struct LiveWorker {
    requests: Option<std::sync::mpsc::Sender<WorkerRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An error's message followed by its causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl LiveWorker {
    /// Starts the thread and waits until it has loaded the model and SAE that the
    /// manifest of the index in `index_dir` records, or `sources` names
    /// ([`LiveAnalyzer::for_index`]).
    pub fn start(
        manifest: Manifest,
        index_dir: PathBuf,
        sources: LiveSources,
        settings: HubSettings,
    ) -> Result<Self, LiveWorkerError> {
        let (requests, queue) = std::sync::mpsc::channel::<WorkerRequest>();
        let (loaded, load_result) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("saeidx-live".into())
            .spawn(move || {
                let analyzer =
                    match LiveAnalyzer::for_index(&manifest, &index_dir, &sources, &settings) {
                        Ok(analyzer) => {
                            let _ = loaded.send(Ok(()));
                            analyzer
                        }
                        Err(error) => {
                            let _ = loaded.send(Err(LiveWorkerError::Load(with_causes(&error))));
                            return;
                        }
                    };
                for (text, reply) in queue {
                    let answer = analyzer
                        .analyze(&text)
                        .map_err(|error| LiveWorkerError::Analyze(with_causes(&error)));
                    let _ = reply.send(answer);
                }
            })
            .map_err(|error| LiveWorkerError::Load(format!("cannot start a thread: {error}")))?;
        let failed = match load_result.recv() {
            Ok(Ok(())) => {
                return Ok(Self {
                    requests: Some(requests),
                    thread: Some(thread),
                });
            }
            Ok(Err(error)) => error,
            Err(_) => LiveWorkerError::Stopped,
        };
        let _ = thread.join();
        Err(failed)
    }

    /// Runs `text` on the worker's thread and returns its tokens.
    pub fn analyze(&self, text: String) -> Result<Vec<LiveToken>, LiveWorkerError> {
        let requests = self.requests.as_ref().ok_or(LiveWorkerError::Stopped)?;
        let (reply, answer) = std::sync::mpsc::channel();
        requests
            .send((text, reply))
            .map_err(|_| LiveWorkerError::Stopped)?;
        answer.recv().map_err(|_| LiveWorkerError::Stopped)?
    }

    /// Runs `text` on the worker's thread, as the query layer ranks it.
    pub fn analyze_text(&self, text: &str) -> Result<AnalyzedText, LiveWorkerError> {
        Ok(analyzed_text(text, self.analyze(text.to_string())?))
    }

    /// Whether the thread still runs (false after a panic there).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop; it frees the model on its thread.
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            // A panic there was already reported when it happened.
            let _ = thread.join();
        }
    }
}
