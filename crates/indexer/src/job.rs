//! The declarative job file (`pipelines/*.toml`) and loading what it names.
//!
//! ```toml
//! output = "../indexes/default"          # the index folder to publish
//! hook = "blocks.15.hook_resid_post"     # saeidx, SAELens or mlxterp hook name
//!
//! [model]
//! source = "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"  # HF repo id or local folder
//! revision = "main"                      # optional: branch, tag or commit
//!
//! [sae]
//! path = "../crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32"
//! # or: repo = "org/name", subfolder = "layer_15", revision = "main"
//! # or: release = "gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical"
//! #     (a SAELens release id: RELEASE/SAE_ID)
//! # batchtopk_threshold = 0.25         # per-token rule for BatchTopK SAEs
//! # norm_scaling_factor = 1.05         # inputs' scale, for old expected_average_only_in SAEs
//! # allow_mismatch = false              # accept an SAE recorded for another model/hook
//!
//! [corpus]                               # see saeidx_corpus::CorpusSpec
//! sources = [{ path = "../.assets/corpora/sotu.jsonl" }]
//! on_bad_record = "skip"                 # or "stop"
//! metadata = [                           # record fields kept as typed document columns
//!   { field = "year", type = "integer" },  # string, integer, float, bool, timestamp
//!   { field = "party" },                 # type left out: inferred from the corpus
//! ]
//!
//! [run]
//! max_documents = 24                     # optional: only the first N documents
//! part_bytes = 262144                    # text bytes per part (unit of resume/shard)
//! window_length = 256                    # tokens per model window (default: 256, or the
//!                                        # SAE's training context_size when shorter)
//! window_overlap = 32                    # context-only tokens at later windows' start
//! batch_tokens = 2048                    # padded tokens per model batch
//! bos = "tokenizer"                      # or "prepend": put BOS before every document
//!                                        # (default: "prepend" when the SAE was trained
//!                                        # with prepend_bos and the tokenizer adds none)
//! query_memory = 1024                    # MiB the query-file build's sort holds before
//!                                        # it spills sorted runs to disk
//! compact = "tiered"                     # after an incremental run: "never" (default),
//!                                        # "tiered" (the merge policy) or "all"
//! ```
//!
//! Relative paths are relative to the job file's folder. A corpus source may also be a
//! Hugging Face dataset: `path = "hf://datasets/ORG/NAME[@REVISION][/FOLDER]"` (e.g. the
//! `data` folder of Parquet files datasets ship), resolved offline-first through
//! `saeidx-hub` (downloaded when the Hub answers; the cached snapshot under
//! `HF_HUB_OFFLINE=1` or when the Hub cannot answer).

use std::path::{Path, PathBuf};

use saeidx_corpus::{CorpusReader, CorpusSpec, tokenizer::TextTokenizer};
use saeidx_format::{
    checksum::sha256_file,
    manifest::{
        CorpusFileRecord, CorpusRecord, JobSpec, ModelRecord, SaeLocation, SaeRecord,
        TokenizerRecord, WindowRecord,
    },
};
use saeidx_hub::{HubError, HubSettings, Listing, RepoKind, RepoRef};
use saeidx_model::{
    checkpoint::Checkpoint,
    files::{self, ModelFiles, ModelSource},
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    sae::{Sae, TrainedOn},
};
use serde::{Deserialize, Serialize};

use crate::{IndexError, pipeline::DocumentSource};

/// A job file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The index folder to publish.
    pub output: PathBuf,
    /// The hook point.
    pub hook: String,
    /// The model.
    pub model: ModelSpec,
    /// The SAE.
    pub sae: SaeSpec,
    /// The corpus.
    pub corpus: CorpusSpec,
    /// Batching and limits.
    #[serde(default)]
    pub run: RunSpec,
    /// The corpus sources as written in the job file (`hf://` sources with their
    /// resolved commit), for the manifest.
    #[serde(skip)]
    pub source_names: Vec<String>,
}

/// The model a job uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A Hugging Face repo id or a local folder.
    pub source: String,
    /// Branch, tag or commit of a repo.
    pub revision: Option<String>,
}

/// The SAE a job uses: a local folder, a folder of a Hub repo, or a SAELens release id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaeSpec {
    /// A local folder.
    pub path: Option<PathBuf>,
    /// A Hub repo id.
    pub repo: Option<String>,
    /// A SAELens release id, `RELEASE/SAE_ID`.
    pub release: Option<String>,
    /// The folder inside the repo.
    #[serde(default)]
    pub subfolder: String,
    /// Branch, tag or commit of the repo.
    pub revision: Option<String>,
    /// The per-token threshold for BatchTopK SAEs.
    pub batchtopk_threshold: Option<f32>,
    /// The constant an old SAELens `expected_average_only_in` SAE scaled its inputs by.
    pub norm_scaling_factor: Option<f32>,
    /// Use the SAE even if it records another model or hook, or other training contexts.
    #[serde(default)]
    pub allow_mismatch: bool,
}

/// Whether documents get a BOS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BosPolicy {
    /// Exactly what the tokenizer produces (its post-processor may add BOS).
    #[default]
    Tokenizer,
    /// The model's BOS token before every document, unless the tokenizer already put it
    /// there.
    Prepend,
}

/// Batching and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// Index only the first this many documents.
    pub max_documents: Option<u64>,
    /// Text bytes per part.
    pub part_bytes: u64,
    /// Tokens per model window; default [`DEFAULT_WINDOW_LENGTH`], or the SAE's
    /// training `context_size` when shorter.
    pub window_length: Option<usize>,
    /// Context-only tokens at the start of later windows.
    pub window_overlap: usize,
    /// Padded tokens per model batch.
    pub batch_tokens: usize,
    /// BOS policy; default [`BosPolicy::Tokenizer`], or [`BosPolicy::Prepend`] when the
    /// SAE was trained with `prepend_bos` and the tokenizer adds no BOS.
    pub bos: Option<BosPolicy>,
    /// MiB of nonzero activations the query-file build at the end of the run holds in
    /// memory before it spills sorted runs ([`saeidx_query::BuildOptions::memory`]).
    pub query_memory: u64,
    /// What an incremental run compacts when it is done ([`crate::compact::Policy`]).
    pub compact: crate::compact::Policy,
}

/// Tokens per model window when neither the job nor the SAE says otherwise.
pub const DEFAULT_WINDOW_LENGTH: usize = 256;

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            max_documents: None,
            part_bytes: 256 * 1024,
            window_length: None,
            window_overlap: 32,
            batch_tokens: 2048,
            bos: None,
            query_memory: saeidx_query::DEFAULT_BUILD_MEMORY >> 20,
            compact: crate::compact::Policy::Never,
        }
    }
}

impl RunSpec {
    /// The query-file build's options these settings ask for.
    pub fn query_build(&self) -> saeidx_query::BuildOptions {
        saeidx_query::BuildOptions {
            memory: self.query_memory.saturating_mul(1 << 20),
        }
    }
}

impl RunSpec {
    /// Checks the bounds `schemas/job.schema.json` states for `[run]`.
    pub fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("part_bytes", self.part_bytes, "text bytes per part"),
            (
                "query_memory",
                self.query_memory,
                "MiB the query-file build's sort holds",
            ),
            (
                "batch_tokens",
                self.batch_tokens as u64,
                "padded tokens per batch",
            ),
            (
                "max_documents",
                self.max_documents.unwrap_or(1),
                "leave it out to index the whole corpus",
            ),
        ];
        for (key, value, meaning) in at_least_one {
            if value == 0 {
                return Err(format!("[run] {key} must be at least 1 ({meaning})"));
            }
        }
        check_window(
            self.window_length.unwrap_or(DEFAULT_WINDOW_LENGTH),
            self.window_overlap,
        )
    }
}

/// Checks a window length and overlap.
fn check_window(length: usize, overlap: usize) -> Result<(), String> {
    saeidx_corpus::window::WindowPolicy::new(length, overlap)
        .map(|_| ())
        .map_err(|e| format!("[run] window_length and window_overlap: {e}"))
}

impl JobFile {
    /// Reads a job file; relative paths become relative to its folder. Values outside
    /// the bounds of `schemas/job.schema.json` are refused, naming the key.
    pub fn read(path: &Path) -> Result<Self, IndexError> {
        let text = std::fs::read_to_string(path).map_err(IndexError::io(path))?;
        let mut job: JobFile = toml::from_str(&text).map_err(|e| IndexError::Job {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bounds = job.run.check().and_then(|()| {
            if job.corpus.max_document_bytes == 0 {
                Err("[corpus] max_document_bytes must be at least 1".into())
            } else {
                Ok(())
            }
        });
        bounds.map_err(|reason| IndexError::Job {
            path: path.to_path_buf(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        job.output = base.join(&job.output);
        job.source_names =
            resolve_hub_sources(&mut job.corpus, &HubSettings::from_env()).map_err(|source| {
                IndexError::JobSource {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        job.corpus = job.corpus.relative_to(base);
        // Types left out are inferred here, once, so that every reader of the job's
        // corpus (and the manifest) sees the same columns.
        job.corpus.resolve_metadata()?;
        if let Some(sae) = &job.sae.path {
            job.sae.path = Some(base.join(sae));
        }
        let sources = [
            job.sae.path.is_some(),
            job.sae.repo.is_some(),
            job.sae.release.is_some(),
        ];
        if sources.iter().filter(|given| **given).count() != 1 {
            return Err(IndexError::Job {
                path: path.to_path_buf(),
                reason: "[sae] needs exactly one of `path` (a local folder), `repo` (a Hub repo \
                         id) or `release` (a SAELens release id, RELEASE/SAE_ID)"
                    .into(),
            });
        }
        // A local model folder given relatively is relative to the job file too.
        let local = base.join(&job.model.source);
        if !Path::new(&job.model.source).is_absolute() && local.is_dir() {
            job.model.source = local.display().to_string();
        }
        Ok(job)
    }
}

/// The prefix of corpus sources in a Hugging Face dataset repo.
pub const HUB_DATASET_PREFIX: &str = "hf://datasets/";

/// Replaces every `hf://datasets/ORG/NAME[@REVISION][/FOLDER]` source with the local
/// snapshot folder (resolved offline-first: downloading the folder's corpus files when
/// the Hub answers), and returns every source's name for the manifest.
fn resolve_hub_sources(
    corpus: &mut CorpusSpec,
    settings: &HubSettings,
) -> Result<Vec<String>, HubError> {
    let mut names = Vec::with_capacity(corpus.sources.len());
    for source in &mut corpus.sources {
        let text = source.path.to_string_lossy().into_owned();
        let Some(rest) = text.strip_prefix(HUB_DATASET_PREFIX) else {
            names.push(text);
            continue;
        };
        let (repo, folder) = parse_hub_source(rest).ok_or_else(|| HubError::Invalid {
            repo: RepoRef::new(RepoKind::Dataset, rest, None),
            reason: format!(
                "corpus source {text:?}: expected {HUB_DATASET_PREFIX}ORG/NAME[@REVISION][/FOLDER]"
            ),
        })?;
        let snapshot =
            saeidx_hub::resolve(settings, &repo, |listing| download_corpus(listing, &folder))?;
        source.path = snapshot.dir.join(&folder);
        names.push(format!(
            "{HUB_DATASET_PREFIX}{}@{}/{folder}",
            repo.repo_id, snapshot.commit
        ));
    }
    Ok(names)
}

/// `ORG/NAME[@REVISION][/FOLDER]` as a dataset repo and a folder (`""`: its root).
fn parse_hub_source(rest: &str) -> Option<(RepoRef, String)> {
    let mut segments = rest.splitn(3, '/');
    let (org, name_rev, folder) = (
        segments.next().unwrap_or_default(),
        segments.next().unwrap_or_default(),
        segments.next().unwrap_or_default().trim_matches('/'),
    );
    let (name, revision) = name_rev.split_once('@').unwrap_or((name_rev, "main"));
    if org.is_empty() || name.is_empty() || revision.is_empty() {
        return None;
    }
    let repo = RepoRef::new(RepoKind::Dataset, &format!("{org}/{name}"), Some(revision));
    Some((repo, folder.to_string()))
}

/// Downloads the corpus files (by extension) under `folder` of a listed dataset repo.
fn download_corpus(listing: &Listing, folder: &str) -> Result<(), HubError> {
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let wanted: Vec<&String> = listing
        .files
        .iter()
        .filter(|file| {
            file.starts_with(&prefix)
                && saeidx_corpus::SourceFormat::from_extension(Path::new(file)).is_some()
        })
        .collect();
    if wanted.is_empty() {
        return Err(HubError::Invalid {
            repo: listing.repo().clone(),
            reason: format!("no corpus files under {folder:?}"),
        });
    }
    for file in wanted {
        listing.get(file)?;
    }
    Ok(())
}

/// Everything a job needs, loaded: the model up to the hook, tokenizer, SAE, and the
/// [`JobSpec`] that records them.
pub struct LoadedJob {
    /// The job file.
    pub file: JobFile,
    /// The BOS policy in effect (the job's, or the SAE's training one).
    pub bos: BosPolicy,
    /// The hook.
    pub hook: HookPoint,
    /// The model's files.
    pub model_files: ModelFiles,
    /// The model.
    pub model: Transformer,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// The SAE.
    pub sae: Sae,
    /// The provenance and settings recorded in the manifest.
    pub spec: JobSpec,
}

/// Loads the model, tokenizer and SAE a job names, checks they fit together, hashes the
/// corpus files, and returns the job's [`JobSpec`].
pub fn load(file: JobFile, settings: &HubSettings) -> Result<LoadedJob, IndexError> {
    let source = ModelSource::parse(&file.model.source, file.model.revision.clone());
    let model_files = files::resolve(&source, settings)?;
    let checkpoint = Checkpoint::load(model_files.clone())?;
    let config = checkpoint.config.clone();
    let hook = HookPoint::parse(&file.hook, None).map_err(saeidx_model::ModelError::from)?;
    config
        .check_hook(&hook)
        .map_err(saeidx_model::ModelError::from)?;
    let stored_dtype = checkpoint.stored_dtype();
    let storage = WeightStorage::for_default_device();
    let model = Transformer::from_checkpoint(checkpoint, Some(hook.layer), storage)?;
    let tokenizer = TextTokenizer::from_file(&model_files.tokenizer)?;
    let sae_source = sae_source(&file);
    let mut sae = formats::load(
        &sae_source,
        settings,
        LoadOptions {
            batchtopk_threshold: file.sae.batchtopk_threshold,
            norm_scaling_factor: file.sae.norm_scaling_factor,
            ..LoadOptions::default()
        },
    )?;
    let mut applied = formats::prepare(
        &mut sae,
        &config,
        &file.model.source,
        hook,
        file.sae.allow_mismatch,
    )?;
    let (fit, added_ids) = fit_tokens(&file, &sae, &model_files, &tokenizer)?;
    applied.extend(fit.notes.iter().cloned());
    // Recorded so that live analysis finds the SAE again from the index folder,
    // wherever that folder is: by Hub id, or by a path relative to the index.
    let (sae_recorded, sae_location) = match &sae_source {
        SaeSource::Local(dir) => (
            relative_location(dir, &file.output).map_err(IndexError::io(dir))?,
            SaeLocation::Relative,
        ),
        SaeSource::Hub { .. } | SaeSource::Release { .. } => {
            (sae.info.source.clone(), SaeLocation::Hub)
        }
    };
    let spec = JobSpec {
        model: ModelRecord {
            source: file.model.source.clone(),
            revision: file.model.revision.clone(),
            commit: model_files.commit.clone(),
            weights_sha256: model_files.weights_sha256()?,
            stored_dtype,
            compute_dtype: match storage {
                WeightStorage::Float32 => "float32 (weights dequantized at load)".into(),
                WeightStorage::KeepQuantized => "float32 activations, quantized matmul".into(),
            },
            model_type: config.model_type.clone(),
            hidden_size: config.hidden_size(),
            num_layers: config.num_layers(),
            hook_width: Some(config.hook_width(&hook)).filter(|w| *w != config.hidden_size()),
        },
        tokenizer: tokenizer_record(&model_files, added_ids, fit.bos)?,
        sae: SaeRecord {
            source: sae_recorded,
            location: Some(sae_location),
            format: sae.info.format.clone(),
            architecture: sae.info.architecture.clone(),
            sha256: sae.info.sha256.clone(),
            d_in: sae.info.d_in,
            d_sae: sae.info.d_sae,
            rule: serde_json::to_string(&sae.rule).unwrap_or_default(),
            settings: applied,
            norm_scaling_factor: sae.input.scale,
        },
        hook: hook.name(),
        window: WindowRecord {
            length: fit.window_length,
            overlap: file.run.window_overlap,
        },
        batch_tokens: file.run.batch_tokens,
        positions: "every token is encoded; each document's first token (and, without overlap, every window's first token) sits at a model window's first position, an attention sink: tokens.sink marks it".into(),
        values: "float32 rounded to 11 significant bits (half precision's), BYTE_STREAM_SPLIT + zstd".into(),
        corpus: corpus_record(&file)?,
    };
    Ok(LoadedJob {
        file,
        bos: fit.bos,
        hook,
        model_files,
        model,
        tokenizer,
        sae,
        spec,
    })
}

/// Where the job's `[sae]` table says the SAE is.
fn sae_source(file: &JobFile) -> SaeSource {
    match (&file.sae.path, &file.sae.repo, &file.sae.release) {
        (Some(path), _, _) => SaeSource::Local(path.clone()),
        (None, Some(repo), _) => SaeSource::Hub {
            repo_id: repo.clone(),
            subfolder: file.sae.subfolder.clone(),
            revision: file.sae.revision.clone(),
        },
        (None, None, Some(id)) => SaeSource::Release {
            id: id.clone(),
            revision: file.sae.revision.clone(),
        },
        (None, None, None) => unreachable!("JobFile::read requires one"),
    }
}

/// The run's window and BOS policy fitted to the SAE's training (see [`fit_run`]), and
/// the token ids the run adds to every document (a prepended BOS included).
fn fit_tokens(
    file: &JobFile,
    sae: &Sae,
    model_files: &ModelFiles,
    tokenizer: &TextTokenizer,
) -> Result<(RunFit, Vec<u32>), IndexError> {
    let mut added_ids = tokenizer.added_ids()?;
    let bos = bos_id(model_files, tokenizer);
    let fit = fit_run(
        file,
        &sae.info.trained,
        bos.is_some_and(|bos| added_ids.first() == Some(&bos)),
    )?;
    if fit.bos == BosPolicy::Prepend {
        let bos = bos.ok_or_else(|| IndexError::Job {
            path: file.output.clone(),
            reason:
                "bos = \"prepend\", but neither config.json nor the tokenizer names a BOS token"
                    .into(),
        })?;
        if added_ids.first() != Some(&bos) {
            added_ids.insert(0, bos);
        }
    }
    Ok((fit, added_ids))
}

/// The tokenizer as the manifest records it: its hash, the ids added to every document
/// and the policy in words.
fn tokenizer_record(
    model_files: &ModelFiles,
    added_ids: Vec<u32>,
    bos: BosPolicy,
) -> Result<TokenizerRecord, IndexError> {
    let policy = match bos {
        BosPolicy::Tokenizer => format!(
            "the tokenizer's own output: special-token strings in the text become their ids, and it adds {added_ids:?} to every document"
        ),
        BosPolicy::Prepend => format!(
            "the tokenizer's output with BOS {:?} put before every document that does not start with it",
            added_ids.first()
        ),
    };
    Ok(TokenizerRecord {
        sha256: sha256_file(&model_files.tokenizer)
            .map_err(IndexError::io(&model_files.tokenizer))?,
        added_ids,
        policy,
    })
}

/// The corpus as the manifest records it: its sources, each file's size and hash, and
/// the reading settings.
fn corpus_record(file: &JobFile) -> Result<CorpusRecord, IndexError> {
    let corpus_files = file.corpus.files()?;
    Ok(CorpusRecord {
        sources: if file.source_names.len() == file.corpus.sources.len() {
            file.source_names.clone()
        } else {
            file.corpus
                .sources
                .iter()
                .map(|s| s.path.display().to_string())
                .collect()
        },
        files: corpus_files
            .iter()
            .map(|f| CorpusFileRecord {
                name: f.name.clone(),
                format: f.format.to_string(),
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            })
            .collect(),
        bad_records: serde_json::to_value(file.corpus.on_bad_record)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        max_documents: file.run.max_documents,
        part_bytes: file.run.part_bytes,
        metadata: match file.corpus.declared_columns() {
            Some(columns) => columns,
            None => file.corpus.metadata_columns()?,
        },
    })
}

impl LoadedJob {
    /// The pipeline's view of the loaded job.
    pub fn engine(&self) -> crate::pipeline::Engine<'_> {
        crate::pipeline::Engine {
            model: &self.model,
            tokenizer: &self.tokenizer,
            hook: self.hook,
            sae: &self.sae,
            prepend_bos: (self.bos == BosPolicy::Prepend)
                .then(|| self.spec.tokenizer.added_ids.first().copied())
                .flatten(),
        }
    }
}

/// The window length and BOS policy a job runs with, and what the SAE decided.
struct RunFit {
    window_length: usize,
    bos: BosPolicy,
    notes: Vec<String>,
}

/// The job's window length and BOS policy, or, where it leaves them open, the SAE's
/// training ones (`context_size`, `prepend_bos`). A job that contradicts them is
/// refused unless `allow_mismatch`: windows longer than the training contexts reach
/// positions the SAE never saw, and a missing or extra BOS changes every position.
fn fit_run(
    file: &JobFile,
    trained: &TrainedOn,
    tokenizer_adds_bos: bool,
) -> Result<RunFit, IndexError> {
    let refuse = |reason: String| IndexError::Job {
        path: file.output.clone(),
        reason: format!("{reason} (set allow_mismatch = true in [sae] to run anyway)"),
    };
    let allow = file.sae.allow_mismatch;
    let mut notes = Vec::new();
    let window_length = match (file.run.window_length, trained.context_size) {
        (Some(length), Some(context)) if length > context && !allow => {
            return Err(refuse(format!(
                "window_length {length} is longer than the {context}-token contexts the SAE \
                 was trained on: use window_length = {context} or less"
            )));
        }
        (Some(length), _) => length,
        (None, Some(context)) if context < DEFAULT_WINDOW_LENGTH => {
            notes.push(format!(
                "window_length {context}: the SAE's training context_size"
            ));
            context
        }
        (None, _) => DEFAULT_WINDOW_LENGTH,
    };
    check_window(window_length, file.run.window_overlap).map_err(|reason| IndexError::Job {
        path: file.output.clone(),
        reason: format!("{reason} (window_length {window_length} from the SAE's context_size)"),
    })?;
    let bos = match (file.run.bos, trained.prepend_bos) {
        (Some(BosPolicy::Tokenizer), Some(true)) if !tokenizer_adds_bos && !allow => {
            return Err(refuse(
                "the SAE was trained with BOS before every context (prepend_bos) and this \
                 tokenizer adds none: use bos = \"prepend\""
                    .into(),
            ));
        }
        (Some(BosPolicy::Prepend), Some(false)) if !allow => {
            return Err(refuse(
                "the SAE was trained without a BOS token (prepend_bos = false): use bos = \"tokenizer\""
                    .into(),
            ));
        }
        (Some(policy), _) => policy,
        (None, Some(true)) if !tokenizer_adds_bos => {
            notes.push(
                "prepend_bos: BOS put before every document, as in the SAE's training".into(),
            );
            BosPolicy::Prepend
        }
        (None, _) => BosPolicy::Tokenizer,
    };
    Ok(RunFit {
        window_length,
        bos,
        notes,
    })
}

/// The BOS token id: config.json's `bos_token_id`, else the tokenizer's `<s>`-like token.
fn bos_id(files: &ModelFiles, tokenizer: &TextTokenizer) -> Option<u32> {
    let config: serde_json::Value = std::fs::read(&files.config)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())?;
    config
        .get("bos_token_id")
        .and_then(|v| v.as_u64())
        .map(|id| id as u32)
        .or_else(|| {
            ["<|endoftext|>", "<s>", "<|begin_of_text|>"]
                .iter()
                .find_map(|t| tokenizer.id(t))
        })
}

impl DocumentSource for CorpusReader {
    fn skipped(&self) -> u64 {
        CorpusReader::skipped(self).count
    }
}

/// `folder` relative to `index_dir` (`/`-separated), as the manifest records a local
/// SAE: both are made absolute with symbolic links resolved as far as they exist (the
/// index folder usually does not exist yet), so the path holds from the index folder
/// however the job named them and wherever it ran.
pub fn relative_location(folder: &Path, index_dir: &Path) -> std::io::Result<String> {
    let (target, base) = (resolved(folder)?, resolved(index_dir)?);
    let common = target
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["..".into(); base.components().count() - common];
    parts.extend(
        target
            .components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Ok(if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    })
}

/// `path` made absolute: its longest existing ancestor canonicalized, the rest
/// appended with `.` and `..` resolved lexically.
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let mut out = loop {
        match existing.canonicalize() {
            Ok(canonical) => break canonical,
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => break existing.to_path_buf(),
            },
        }
    };
    for name in rest.iter().rev() {
        match Path::new(name).components().next() {
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) | None => {}
            Some(_) => out.push(name),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `minimum` the job schema states for `[run]` and `[corpus]` is enforced:
    /// a value one below it is refused, naming the key.
    #[test]
    fn job_files_below_the_schemas_minimums_are_refused() {
        let schema: serde_json::Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../schemas/job.schema.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let job = |section: &str, line: &str| {
            let (run, corpus) = match section {
                "run" => (line, ""),
                _ => ("", line),
            };
            let text = format!(
                "output = \"out\"\nhook = \"blocks.0.hook_resid_post\"\n[model]\nsource = \"m\"\n\
                 [sae]\npath = \"s\"\n[corpus]\nsources = [{{ path = \"c.jsonl\" }}]\n{corpus}\n[run]\n{run}\n"
            );
            let path = dir.path().join("job.toml");
            std::fs::write(&path, text).unwrap();
            JobFile::read(&path)
        };
        assert!(job("run", "").is_ok());
        let mut checked = 0;
        for section in ["run", "corpus"] {
            let properties = schema["properties"][section]["properties"]
                .as_object()
                .unwrap();
            for (key, property) in properties {
                let Some(minimum) = property["minimum"].as_i64() else {
                    continue;
                };
                if key == "window_overlap" {
                    continue; // bounded by window_length instead, below
                }
                // A one-token window needs no overlap.
                let extra = if key == "window_length" {
                    "\nwindow_overlap = 0"
                } else {
                    ""
                };
                let error = job(section, &format!("{key} = {}{extra}", minimum - 1))
                    .err()
                    .unwrap_or_else(|| panic!("{section}.{key} = {} was accepted", minimum - 1))
                    .to_string();
                assert!(error.contains(key.as_str()), "{error}");
                let at_minimum = job(section, &format!("{key} = {minimum}{extra}"));
                assert!(at_minimum.is_ok(), "{key}: {:?}", at_minimum.err());
                checked += 1;
            }
        }
        assert!(checked >= 5, "{checked} minimums checked");
        let error = job("run", "window_length = 8\nwindow_overlap = 8")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("job.toml") && error.contains("window_overlap"),
            "{error}"
        );
    }

    #[test]
    fn local_saes_are_recorded_relative_to_the_index() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        let sae = root.join("crates/assets/default-sae/sae-8k");
        std::fs::create_dir_all(&sae).unwrap();
        std::fs::create_dir_all(root.join("pipelines")).unwrap();
        // As a job file in pipelines/ names them: `../crates/...`, `../indexes/default`.
        let named = root.join("pipelines/../crates/assets/default-sae/sae-8k");
        let index = root.join("pipelines/../indexes/default");
        assert_eq!(
            relative_location(&named, &index).unwrap(),
            "../../crates/assets/default-sae/sae-8k"
        );
        assert_eq!(
            relative_location(&sae, &root.join("indexes/a/b/c")).unwrap(),
            "../../../../crates/assets/default-sae/sae-8k"
        );
        assert_eq!(
            relative_location(&sae, &root.join("crates/assets/default-sae/sae-8k/index")).unwrap(),
            ".."
        );
        // A symbolic link to the SAE is recorded as the folder it points to.
        std::os::unix::fs::symlink(&sae, root.join("link")).unwrap();
        assert_eq!(
            relative_location(&root.join("link"), &root.join("out/index")).unwrap(),
            "../../crates/assets/default-sae/sae-8k"
        );
    }
}
