//! Live analysis: a text that is not in an index goes through the same tokenizer
//! policy, windows, model, hook and SAE that built the index, so its codes compare with
//! the index's own (`top-features --text`, and rendering texts).

use std::path::{Path, PathBuf};

use mlx_rs::Array;
use saeidx_activations::{Batcher, Exclusions, TokenizedDocument, extract};
use saeidx_corpus::{tokenizer::TextTokenizer, window::WindowPolicy};
use saeidx_format::{
    manifest::{Manifest, SaeLocation, SaeRecord},
    tables::round_to_half_precision,
};
use saeidx_hub::HubSettings;
use saeidx_model::{
    checkpoint::Checkpoint,
    files::{self, ModelSource},
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    sae::Sae,
};

use crate::{
    IndexError,
    pipeline::{encode_document, sink_positions},
};

/// One token of a live text with its codes.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveToken {
    /// Position in the text's tokens.
    pub position: u32,
    /// Token id.
    pub token: u32,
    /// Byte range of the token in the text.
    pub span: std::ops::Range<usize>,
    /// A special token (BOS, ...).
    pub special: bool,
    /// An attention-sink position (the first of a model window).
    pub sink: bool,
    /// Active features, strongest first (values rounded as the index stores them).
    pub features: Vec<u32>,
    /// Their values.
    pub values: Vec<f32>,
}

/// `text`'s live tokens as the query layer ranks them ([`saeidx_query::AnalyzedText`]):
/// each token's piece runs from the end of the previous piece to the end of the token, so
/// the pieces concatenate to the text (a character split over two tokens shows once).
pub fn analyzed_text(text: &str, tokens: Vec<LiveToken>) -> saeidx_query::AnalyzedText {
    let mut cursor = 0;
    let tokens = tokens
        .into_iter()
        .map(|t| {
            let end = t.span.end.max(cursor);
            let piece = text.get(cursor..end).unwrap_or_default().to_string();
            cursor = end;
            saeidx_query::AnalyzedToken {
                position: t.position,
                text: piece,
                features: t.features,
                values: t.values,
                special: t.special,
                sink: t.sink,
            }
        })
        .collect();
    saeidx_query::AnalyzedText {
        text: text.to_string(),
        tokens,
    }
}

/// The model and SAE an index was built with, loaded for live texts.
pub struct LiveAnalyzer {
    model: Transformer,
    tokenizer: TextTokenizer,
    hook: HookPoint,
    sae: Sae,
    window: WindowPolicy,
    batch_tokens: usize,
    prepend_bos: Option<u32>,
}

/// Where live analysis looks for an index's model and SAE besides (for the SAE:
/// before) the places its manifest records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSources {
    /// A model folder or repo to use instead of the recorded one (it must be identical).
    pub model: Option<String>,
    /// SAE folders to try first; the one whose SHA-256 is the index's is used (for an
    /// index whose SAE is not where it was recorded, e.g. a fetched index of a local SAE).
    pub sae: Vec<PathBuf>,
}

/// Where the SAE recorded in the manifest of the index in `index_dir` lives: on the Hub
/// (`org/repo[/subfolder]@commit`, or a SAELens release id resolved to one,
/// `RELEASE/SAE_ID = org/repo/folder@commit`), or a folder relative to the index folder.
/// Indexes written before the location was recorded name a local folder as the job did
/// (relative to where it ran) or a Hub source.
fn recorded_sae(record: &SaeRecord, index_dir: &Path) -> SaeSource {
    let hub = |source: &str| {
        let commit = |resolved: &str| {
            resolved
                .rsplit_once('@')
                .map(|(_, commit)| commit.to_string())
        };
        if let Some((id, resolved)) = source.split_once(" = ") {
            return SaeSource::Release {
                id: id.to_string(),
                revision: commit(resolved),
            };
        }
        match source.rsplit_once('@') {
            Some((location, commit)) => SaeSource::parse(location, Some(commit.to_string())),
            None => SaeSource::parse(source, None),
        }
    };
    match record.location {
        Some(SaeLocation::Hub) => hub(&record.source),
        Some(SaeLocation::Relative) => SaeSource::Local(index_dir.join(&record.source)),
        None if Path::new(&record.source).is_dir() => SaeSource::parse(&record.source, None),
        None => hub(&record.source),
    }
}

/// Loads the SAE of the index in `index_dir`: the first of `given`, then the recorded
/// location, whose SHA-256 is the one recorded. The error names every place tried and
/// what to pass.
fn load_index_sae(
    record: &SaeRecord,
    index_dir: &Path,
    given: &[PathBuf],
    settings: &HubSettings,
) -> Result<Sae, IndexError> {
    let cached = settings.cache_only();
    let mut tried = Vec::new();
    let candidates = given
        .iter()
        .map(|path| SaeSource::Local(path.clone()))
        .chain([recorded_sae(record, index_dir)]);
    let options = LoadOptions {
        norm_scaling_factor: record.norm_scaling_factor,
        ..LoadOptions::default()
    };
    for source in candidates {
        // The cache first (a recorded commit never changes), then the Hub.
        let loaded =
            formats::load(&source, &cached, options.clone()).or_else(|error| match &source {
                SaeSource::Hub { .. } | SaeSource::Release { .. } => {
                    formats::load(&source, settings, options.clone())
                }
                SaeSource::Local(_) => Err(error),
            });
        match loaded {
            Ok(sae) if sae.info.sha256 == record.sha256 => return Ok(sae),
            Ok(_) => tried.push(format!(
                "{source} holds a different SAE (its SHA-256 differs)"
            )),
            Err(error) => tried.push(format!("{source}: {error}")),
        }
    }
    let recorded = match record.location {
        Some(SaeLocation::Relative) => {
            format!("recorded as {} relative to the index folder", record.source)
        }
        _ => format!("recorded as {}", record.source),
    };
    Err(IndexError::LiveSae(format!(
        "the index's SAE ({} {}, {} features, SHA-256 {}; {recorded}) was not found: {}. \
         Pass the folder that holds it: --sae FOLDER",
        record.format,
        record.architecture,
        record.d_sae,
        record.sha256,
        tried.join("; ")
    )))
}

impl LiveAnalyzer {
    /// Loads the model and SAE that the manifest of the index in `index_dir` records
    /// (or those `sources` names) and checks that they are byte for byte the ones the
    /// index was built with: weights SHA-256, tokenizer SHA-256, SAE SHA-256.
    pub fn for_index(
        manifest: &Manifest,
        index_dir: &Path,
        sources: &LiveSources,
        settings: &HubSettings,
    ) -> Result<Self, IndexError> {
        let model = sources.model.as_deref();
        let job = &manifest.job;
        let mismatch = |what: &str, detail: String| IndexError::Job {
            path: PathBuf::from(what),
            reason: format!(
                "{detail}: live answers would not be comparable with the index (pass the {what} the index was built with)"
            ),
        };
        // Where to look, in order: the recorded commit in the local cache (immutable, so
        // no network is needed, as huggingface_hub does for commit revisions), the
        // recorded revision in the cache (another machine's cache may name the same
        // weights by another commit), then the Hub. The weights' SHA-256 decides.
        let name = model.unwrap_or(&job.model.source);
        let cached = settings.cache_only();
        let recorded = if model.is_some() {
            vec![None]
        } else {
            vec![job.model.commit.clone(), job.model.revision.clone()]
        };
        let mut found = None;
        for revision in &recorded {
            if let Ok(files) = files::resolve(&ModelSource::parse(name, revision.clone()), &cached)
            {
                found = Some(files);
                break;
            }
        }
        let files = match found {
            Some(files) => files,
            None => {
                let revision = recorded.last().cloned().flatten();
                files::resolve(&ModelSource::parse(name, revision), settings)?
            }
        };
        if files.weights_sha256()? != job.model.weights_sha256 {
            return Err(mismatch(
                "model",
                "its weights differ from the index's".into(),
            ));
        }
        let tokenizer_sha = saeidx_format::checksum::sha256_file(&files.tokenizer)
            .map_err(IndexError::io(&files.tokenizer))?;
        if tokenizer_sha != job.tokenizer.sha256 {
            return Err(mismatch(
                "model",
                "its tokenizer differs from the index's".into(),
            ));
        }
        let hook = HookPoint::parse(&job.hook, None).map_err(saeidx_model::ModelError::from)?;
        let checkpoint = Checkpoint::load(files.clone())?;
        let config = checkpoint.config.clone();
        let model = Transformer::from_checkpoint(
            checkpoint,
            Some(hook.layer),
            WeightStorage::for_default_device(),
        )?;
        let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
        let mut sae = load_index_sae(&job.sae, index_dir, &sources.sae, settings)?;
        // The same fitting to the model as the index job (e.g. centring the inputs of an
        // SAE trained on a TransformerLens-processed model); the checks passed then.
        formats::prepare(&mut sae, &config, name, hook, true)?;
        let own_added = tokenizer.added_ids()?;
        let prepend_bos = job
            .tokenizer
            .added_ids
            .first()
            .copied()
            .filter(|first| own_added.first() != Some(first));
        let window = WindowPolicy::new(job.window.length, job.window.overlap).map_err(|e| {
            IndexError::Job {
                path: PathBuf::from("manifest.json"),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            model,
            tokenizer,
            hook,
            sae,
            window,
            batch_tokens: job.batch_tokens,
            prepend_bos,
        })
    }

    /// The SAE's number of features.
    pub fn d_sae(&self) -> usize {
        self.sae.info.d_sae
    }

    /// Runs `text` through the model and SAE, as the query layer ranks it.
    pub fn analyze_text(&self, text: &str) -> Result<saeidx_query::AnalyzedText, IndexError> {
        Ok(analyzed_text(text, self.analyze(text)?))
    }

    /// Runs `text` through the model and SAE exactly as the index job runs a document.
    pub fn analyze(&self, text: &str) -> Result<Vec<LiveToken>, IndexError> {
        let tokens = encode_document(&self.tokenizer, text, self.prepend_bos)?;
        let sinks = sink_positions(self.window, tokens.ids.len());
        let mut out: Vec<LiveToken> = tokens
            .ids
            .iter()
            .zip(&tokens.spans)
            .zip(&tokens.special)
            .enumerate()
            .map(|(position, ((id, span), special))| LiveToken {
                position: position as u32,
                token: *id,
                span: span.clone(),
                special: *special,
                sink: sinks.contains(&position),
                features: Vec::new(),
                values: Vec::new(),
            })
            .collect();
        let document = TokenizedDocument {
            index: 0,
            ids: tokens.ids,
            special: tokens.special,
        };
        let mut batcher = Batcher::new(self.window, self.batch_tokens);
        batcher.push(&document);
        while let Some(batch) = batcher.next_any() {
            let extracted = extract(
                &self.model,
                self.hook,
                &batch,
                Exclusions {
                    window_start: false,
                    special_tokens: false,
                },
            )?;
            let n = extracted.position.len();
            if n == 0 {
                continue;
            }
            let x = Array::from_slice(&extracted.values, &[n as i32, extracted.width as i32]);
            let codes = self.sae.encode(&x)?;
            for t in 0..n {
                let mut active: Vec<(u32, f32)> = codes
                    .token(t)
                    .map(|(feature, value)| (feature, round_to_half_precision(value)))
                    .collect();
                active.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let token = &mut out[extracted.position[t] as usize];
                (token.features, token.values) = active.into_iter().unzip();
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, location: Option<SaeLocation>) -> SaeRecord {
        SaeRecord {
            source: source.into(),
            location,
            format: "mlxterp".into(),
            architecture: "SAE".into(),
            sha256: "0".repeat(64),
            d_in: 8,
            d_sae: 16,
            rule: String::new(),
            settings: Vec::new(),
            norm_scaling_factor: None,
        }
    }

    #[test]
    fn recorded_sae_sources_parse() {
        let index = Path::new("/data/indexes/default");
        let hub = Some(SaeLocation::Hub);
        assert_eq!(
            recorded_sae(&record("org/repo/layer_15/width_16k@abc123", hub), index),
            SaeSource::Hub {
                repo_id: "org/repo".into(),
                subfolder: "layer_15/width_16k".into(),
                revision: Some("abc123".into()),
            }
        );
        assert_eq!(
            recorded_sae(
                &record(
                    "gpt2-small-res-jb/blocks.8.hook_resid_pre = jbloom/x/blocks.8@abc",
                    hub
                ),
                index
            ),
            SaeSource::Release {
                id: "gpt2-small-res-jb/blocks.8.hook_resid_pre".into(),
                revision: Some("abc".into()),
            }
        );
        assert_eq!(
            recorded_sae(&record("org/repo@abc", None), index),
            SaeSource::Hub {
                repo_id: "org/repo".into(),
                subfolder: String::new(),
                revision: Some("abc".into()),
            }
        );
        assert_eq!(
            recorded_sae(&record("../../saes/x", Some(SaeLocation::Relative)), index),
            SaeSource::Local(index.join("../../saes/x"))
        );
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().to_str().unwrap();
        assert_eq!(
            recorded_sae(&record(local, None), index),
            SaeSource::Local(local.into())
        );
    }

    #[test]
    fn a_missing_sae_says_what_to_pass() {
        let index = tempfile::tempdir().unwrap();
        let recorded = record("../gone/sae", Some(SaeLocation::Relative));
        let settings = HubSettings {
            offline: true,
            ..HubSettings::from_env()
        };
        let error = load_index_sae(&recorded, index.path(), &[], &settings)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("--sae FOLDER")
                && error.contains("../gone/sae relative to the index folder")
                && error.contains(&"0".repeat(64))
                && error.contains("16 features"),
            "{error}"
        );
    }
}

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
    pub fn analyze_text(&self, text: &str) -> Result<saeidx_query::AnalyzedText, LiveWorkerError> {
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
