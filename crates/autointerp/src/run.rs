//! A labelling run: features drafted and/or scored, `concurrency` at a time, every
//! answer cached as it arrives, the registry saved as results come in.
//!
//! Each worker thread takes the next feature, gathers its evidence from the index, and
//! asks its requests one after the other (so at most `concurrency` requests are in
//! flight). Results go to the calling thread, which applies them to the registry read
//! fresh from disk (so a label a person saves meanwhile in the web UI is kept, and
//! protected from the draft) and saves it atomically every few seconds and at the end.
//! A feature whose request still fails after its retries is reported as failed; after
//! `max_failed_in_a_row` such features, or at once on a refusal no retry can fix (a
//! wrong model name or key), the run stops and reports the rest as not attempted.
//! Nothing is lost: a rerun sends only what the cache lacks.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use saeidx_query::{
    AnyIndex, FeatureLabel, Registry,
    limits::Limit,
    registry::{LabelScores, Origin, Provenance, now_utc},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AutointerpError,
    cache::{AnswerCache, CACHE_DIR},
    evidence::{EvidenceOptions, FeatureEvidence, gather},
    gateway::{AskFailed, Gateway, RequestStats},
    llm::{ChatRequest, LlmClient, LlmSettings},
    prompts::{
        DRAFT_PROMPT_VERSION, MARK_FRACTION, SCORE_PROMPT_VERSION, Scorer, draft_messages, marked,
        parse_draft, parse_predictions, score_max_tokens, score_messages,
    },
    scoring::{Prediction, batches, detection_samples, fuzzing_samples, summarize},
};

/// The work folder of an index (`INDEX/autointerp`), holding the answer cache.
pub use saeidx_query::registry::WORK_DIR;

/// Draft labels, or score the labels there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Draft labels (and score them unless `score` is off).
    #[default]
    Draft,
    /// Score existing labels, a person's or drafted.
    Score,
}

/// Which features.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSelection {
    /// These features.
    Listed(Vec<u32>),
    /// `n` live features at random (seeded).
    Sample {
        /// How many.
        n: usize,
        /// The seed.
        seed: u64,
    },
    /// Every feature active on a counted token.
    #[default]
    Live,
    /// Every labelled feature.
    Labelled,
}

/// A labelling run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelRequest {
    /// Draft or score.
    pub task: Task,
    /// Which features.
    pub features: FeatureSelection,
    /// The LLM.
    pub llm: LlmSettings,
    /// What the LLM sees of each feature.
    pub evidence: EvidenceOptions,
    /// Features (hence requests) in flight at once.
    pub concurrency: usize,
    /// Texts per scoring prompt (delphi's default: 5).
    pub per_prompt: usize,
    /// The most tokens a draft may take.
    pub draft_max_tokens: u32,
    /// Whether a draft run also scores its drafts.
    pub score: bool,
    /// Whether drafts may replace labels a person wrote, accepted or edited.
    pub overwrite_human: bool,
    /// Features failing in a row before the run stops.
    pub max_failed_in_a_row: usize,
    /// The work folder (default `INDEX/autointerp`); the cache is its `cache/`.
    pub work_dir: Option<PathBuf>,
}

impl Default for LabelRequest {
    fn default() -> Self {
        Self {
            task: Task::Draft,
            features: FeatureSelection::Live,
            llm: LlmSettings::default(),
            evidence: EvidenceOptions::default(),
            concurrency: 4,
            per_prompt: 5,
            draft_max_tokens: 120,
            score: true,
            overwrite_human: false,
            max_failed_in_a_row: 3,
            work_dir: None,
        }
    }
}

/// What happened to a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A new draft is in the registry.
    Drafted,
    /// Its draft is for the same evidence, LLM and prompt: left as it is.
    Unchanged,
    /// A person's label is there (not replaced without `overwrite_human`).
    KeptHuman,
    /// Its label was scored.
    Scored,
    /// The label changed while it was scored: the scores were not recorded.
    Stale,
    /// The LLM's draft could not be read (its answer is in the report and the cache).
    Unparseable,
    /// A request failed after its retries.
    Failed,
    /// Nothing to do (never fires; no label to score).
    Skipped,
    /// The run stopped before it.
    NotAttempted,
}

/// One feature's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureOutcome {
    /// The feature.
    pub feature: u32,
    /// What happened.
    pub status: Status,
    /// Its label as the registry now holds it.
    pub label: Option<FeatureLabel>,
    /// Why it was skipped, failed or not read.
    pub reason: Option<String>,
    /// The LLM's answer, when it could not be read.
    pub answer: Option<String>,
    /// Requests it needed.
    pub requests: u32,
    /// Of those, answered from the cache.
    pub cached: u32,
}

/// What a run did: the answer of `saeidx labels draft|score --json` and of Python's
/// `draft_labels_answer` / `score_labels_answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelReport {
    /// Draft or score.
    pub task: Task,
    /// The LLM (model name).
    pub llm: String,
    /// The endpoint.
    pub endpoint: String,
    /// The drafting prompt's version.
    pub draft_prompt_version: String,
    /// The scoring prompts' version.
    pub score_prompt_version: String,
    /// Each feature's outcome, in the order asked.
    pub features: Vec<FeatureOutcome>,
    /// Requests and tokens.
    pub requests: RequestStats,
    /// Wall time.
    pub seconds: f64,
    /// Features done (not skipped, failed or not attempted) per minute.
    pub features_per_minute: f64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// The registry file.
    pub registry: PathBuf,
    /// The answer cache.
    pub cache: PathBuf,
}

/// Progress of a run, for a front end's progress bar.
pub trait Progress: Sync {
    /// The run starts with `features` features.
    fn begin(&self, _features: usize) {}
    /// A feature is done.
    fn done(&self, _outcome: &FeatureOutcome, _requests: &RequestStats) {}
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {}

/// The features `selection` names in `index`, whose labels are `registry`.
pub fn select(
    index: &AnyIndex,
    registry: &Registry,
    selection: &FeatureSelection,
) -> Result<Vec<u32>, AutointerpError> {
    Ok(match selection {
        FeatureSelection::Listed(features) => {
            for &feature in features {
                if feature as usize >= index.d_sae() {
                    return Err(saeidx_query::QueryError::FeatureOutOfRange {
                        feature,
                        d_sae: index.d_sae(),
                    }
                    .into());
                }
            }
            features.clone()
        }
        FeatureSelection::Sample { n, seed } => index.sample_features(*n, *seed)?,
        FeatureSelection::Live => index.live_features()?,
        FeatureSelection::Labelled => registry.iter().map(|(f, _)| f).collect(),
    })
}

/// Runs `request` over `index`: the labels are read from the index's `labels.json`
/// as it is now, and drafts and scores are saved into it; `index`'s own copy of the
/// registry is not updated (see [`AnyIndex::reload_registry`]).
pub fn run(
    index: &AnyIndex,
    request: &LabelRequest,
    progress: &dyn Progress,
) -> Result<LabelReport, AutointerpError> {
    check(request)?;
    let labels = Registry::load(index.dir(), index.d_sae())?;
    let features = select(index, &labels, &request.features)?;
    let work = request
        .work_dir
        .clone()
        .unwrap_or_else(|| index.dir().join(WORK_DIR));
    let cache = AnswerCache::new(&work.join(CACHE_DIR));
    let gateway = Gateway::new(LlmClient::new(request.llm.clone()), cache.clone());
    let started = Instant::now();
    progress.begin(features.len());
    let shared = Shared {
        index,
        labels: &labels,
        request,
        gateway: &gateway,
    };
    let (outcomes, stopped) = work_through(&shared, &features, progress)?;
    let seconds = started.elapsed().as_secs_f64();
    let done = outcomes
        .iter()
        .filter(|o| {
            !matches!(
                o.status,
                Status::Failed | Status::Skipped | Status::NotAttempted
            )
        })
        .count();
    Ok(LabelReport {
        task: request.task,
        llm: request.llm.model.clone(),
        endpoint: request.llm.endpoint(),
        draft_prompt_version: DRAFT_PROMPT_VERSION.into(),
        score_prompt_version: SCORE_PROMPT_VERSION.into(),
        features: outcomes,
        requests: gateway.stats(),
        seconds,
        features_per_minute: done as f64 * 60.0 / seconds.max(1e-9),
        stopped,
        registry: index.dir().join(saeidx_query::registry::REGISTRY_FILE),
        cache: cache.dir().to_path_buf(),
    })
}

/// The most requests a run keeps in flight (one worker thread each).
pub const MAX_CONCURRENCY: usize = 256;

fn check(request: &LabelRequest) -> Result<(), AutointerpError> {
    let invalid = |what: &str| Err(AutointerpError::Invalid(what.to_string()));
    if request.llm.model.trim().is_empty() {
        return invalid("no LLM model name: give the name the endpoint knows (--llm-model)");
    }
    if request.concurrency == 0 || request.per_prompt == 0 {
        return invalid("concurrency and texts per prompt must be at least 1");
    }
    if request.concurrency > MAX_CONCURRENCY {
        return invalid(&format!(
            "concurrency {} is past {MAX_CONCURRENCY} (each request in flight is a thread)",
            request.concurrency
        ));
    }
    let e = &request.evidence;
    Limit::Examples.check(e.top + e.bands * e.per_band + e.same_token + e.silent + e.test)?;
    Limit::Bands.check(e.bands)?;
    Limit::Context.check(e.context)?;
    Ok(())
}

/// A worker's result for a feature, before the registry decides.
struct Worked {
    slot: usize,
    outcome: FeatureOutcome,
    draft: Option<FeatureLabel>,
    scores: Option<LabelScores>,
    fatal: bool,
}

/// What every worker reads.
struct Shared<'a> {
    index: &'a AnyIndex,
    /// The labels when the run started.
    labels: &'a Registry,
    request: &'a LabelRequest,
    gateway: &'a Gateway,
}

/// When the run stops: failed features in a row, counted by the workers as they finish
/// (so no worker starts a feature after the one that stopped the run).
#[derive(Default)]
struct Stopper {
    stop: AtomicBool,
    failed_in_a_row: AtomicUsize,
    reason: std::sync::Mutex<Option<String>>,
}

impl Stopper {
    fn note(&self, worked: &Worked, max_in_a_row: usize) {
        if worked.outcome.status != Status::Failed {
            self.failed_in_a_row.store(0, Ordering::SeqCst);
            return;
        }
        let in_a_row = self.failed_in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
        let last = worked.outcome.reason.clone().unwrap_or_default();
        let reason = if worked.fatal {
            format!("the endpoint refused a request: {last}")
        } else if in_a_row >= max_in_a_row {
            format!("{in_a_row} features in a row failed; the last: {last}")
        } else {
            return;
        };
        if let Ok(mut slot) = self.reason.lock() {
            slot.get_or_insert(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Works through `features` with `request.concurrency` threads, applying results to
/// the registry as they come; returns the outcomes in order and why it stopped early.
fn work_through(
    shared: &Shared,
    features: &[u32],
    progress: &dyn Progress,
) -> Result<(Vec<FeatureOutcome>, Option<String>), AutointerpError> {
    let next = AtomicUsize::new(0);
    let stopper = Stopper::default();
    let (sender, receiver) = mpsc::channel::<Worked>();
    let mut ledger = Ledger::new(shared.index, shared.request, features);
    let workers = shared.request.concurrency.min(features.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let (next, stopper) = (&next, &stopper);
            scope.spawn(move || {
                loop {
                    let slot = next.fetch_add(1, Ordering::SeqCst);
                    if slot >= features.len() || stopper.stopped() {
                        break;
                    }
                    let worked = work(shared, slot, features[slot]);
                    stopper.note(&worked, shared.request.max_failed_in_a_row);
                    if sender.send(worked).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        ledger.collect(&receiver, shared.gateway, progress)
    })?;
    let reason = stopper.reason.lock().ok().and_then(|r| r.clone());
    Ok(ledger.finish(reason))
}

/// Results as they come, the registry they go into, and when it was last saved.
struct Ledger<'a> {
    index: &'a AnyIndex,
    request: &'a LabelRequest,
    outcomes: Vec<Option<FeatureOutcome>>,
    features: &'a [u32],
    pending: Vec<Worked>,
}

impl<'a> Ledger<'a> {
    fn new(index: &'a AnyIndex, request: &'a LabelRequest, features: &'a [u32]) -> Self {
        Self {
            index,
            request,
            outcomes: vec![None; features.len()],
            features,
            pending: Vec::new(),
        }
    }

    /// Receives results until the workers are done, saving every 5 seconds.
    fn collect(
        &mut self,
        receiver: &mpsc::Receiver<Worked>,
        gateway: &Gateway,
        progress: &dyn Progress,
    ) -> Result<(), AutointerpError> {
        let mut saved = Instant::now();
        loop {
            match receiver.recv_timeout(Duration::from_millis(500)) {
                Ok(worked) => {
                    progress.done(&worked.outcome, &gateway.stats());
                    self.pending.push(worked);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if saved.elapsed() >= Duration::from_secs(5) && !self.pending.is_empty() {
                self.save()?;
                saved = Instant::now();
            }
        }
        self.save()
    }

    /// Applies pending results to the registry as it is on disk now, and saves it
    /// (under the registry's lock: a person's edit meanwhile is kept).
    fn save(&mut self) -> Result<(), AutointerpError> {
        let pending = std::mem::take(&mut self.pending);
        let overwrite_human = self.request.overwrite_human;
        let outcomes = &mut self.outcomes;
        Registry::update(self.index.dir(), self.index.d_sae(), |registry| {
            for worked in pending {
                let slot = worked.slot;
                outcomes[slot] = Some(apply(registry, worked, overwrite_human));
            }
            Ok::<_, AutointerpError>(())
        })?;
        Ok(())
    }

    fn finish(self, stopped: Option<String>) -> (Vec<FeatureOutcome>, Option<String>) {
        let outcomes = self
            .outcomes
            .into_iter()
            .zip(self.features)
            .map(|(outcome, &feature)| {
                outcome.unwrap_or(FeatureOutcome {
                    feature,
                    status: Status::NotAttempted,
                    label: None,
                    reason: stopped.clone(),
                    answer: None,
                    requests: 0,
                    cached: 0,
                })
            })
            .collect();
        (outcomes, stopped)
    }
}

/// Puts a result into `registry` under its rules; returns the final outcome.
fn apply(registry: &mut Registry, worked: Worked, overwrite_human: bool) -> FeatureOutcome {
    let mut outcome = worked.outcome;
    let feature = outcome.feature;
    if let Some(draft) = worked.draft
        && !registry.propose_draft(feature, draft, overwrite_human)
    {
        outcome.status = Status::KeptHuman;
        outcome.label = registry.get(feature).cloned();
        return outcome;
    }
    if let Some(scores) = worked.scores
        && !registry.set_scores(feature, scores)
    {
        outcome.status = Status::Stale;
    }
    if matches!(outcome.status, Status::Drafted | Status::Scored) {
        outcome.label = registry.get(feature).cloned();
    }
    outcome
}

/// One feature's work: evidence, draft, scores.
fn work(shared: &Shared, slot: usize, feature: u32) -> Worked {
    let mut job = Job {
        request: shared.request,
        gateway: shared.gateway,
        outcome: FeatureOutcome {
            feature,
            status: Status::Skipped,
            label: None,
            reason: None,
            answer: None,
            requests: 0,
            cached: 0,
        },
        fatal: false,
    };
    let (draft, scores) = match job.run(shared.index, shared.labels) {
        Ok(done) => done,
        Err(failure) => {
            job.outcome.status = Status::Failed;
            job.outcome.reason = Some(failure.to_string());
            (None, None)
        }
    };
    Worked {
        slot,
        outcome: job.outcome,
        draft,
        scores,
        fatal: job.fatal,
    }
}

/// Why a feature's work stopped.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Ask(#[from] crate::llm::LlmError),
    #[error(transparent)]
    Query(#[from] saeidx_query::QueryError),
}

struct Job<'a> {
    request: &'a LabelRequest,
    gateway: &'a Gateway,
    outcome: FeatureOutcome,
    fatal: bool,
}

type Done = (Option<FeatureLabel>, Option<LabelScores>);

impl Job<'_> {
    fn run(&mut self, index: &AnyIndex, labels: &Registry) -> Result<Done, JobError> {
        let feature = self.outcome.feature;
        let existing = labels.get(feature);
        let drafting = self.request.task == Task::Draft;
        if drafting && existing.is_some_and(|l| !l.is_draft()) && !self.request.overwrite_human {
            self.outcome.status = Status::KeptHuman;
            self.outcome.label = existing.cloned();
            return Ok((None, None));
        }
        if !drafting && existing.and_then(FeatureLabel::explanation).is_none() {
            self.outcome.reason = Some("no label to score".into());
            return Ok((None, None));
        }
        let evidence = gather(index, feature, &self.request.evidence)?;
        if evidence.explain.is_empty() {
            self.outcome.reason = Some("it never fires on a counted token".into());
            return Ok((None, None));
        }
        if !drafting {
            let label = existing.cloned().unwrap_or_default();
            let scores = self.score(&evidence, &label)?;
            self.outcome.status = Status::Scored;
            self.outcome.label = Some(label);
            return Ok((None, scores));
        }
        self.draft(&evidence, existing)
    }

    /// Drafts (unless the existing draft is for the same request) and scores the draft.
    fn draft(
        &mut self,
        evidence: &FeatureEvidence,
        existing: Option<&FeatureLabel>,
    ) -> Result<Done, JobError> {
        let chat = ChatRequest {
            model: self.gateway.model().to_string(),
            messages: draft_messages(evidence),
            temperature: self.request.llm.temperature,
            max_tokens: self.request.draft_max_tokens,
        };
        let key = AnswerCache::key(&chat);
        // Scores are wanted only where there is something to score them on.
        let scorable = !evidence.test_active.is_empty() && !evidence.test_silent.is_empty();
        let same = existing.filter(|l| {
            l.provenance
                .as_ref()
                .is_some_and(|p| p.request_sha256 == key)
                && (!self.request.score || !scorable || l.scores_current())
        });
        if let Some(label) = same {
            self.outcome.status = Status::Unchanged;
            self.outcome.label = Some(label.clone());
            return Ok((None, None));
        }
        let answer = self.ask(&chat)?.answer.content;
        let Some(text) = parse_draft(&answer) else {
            self.outcome.status = Status::Unparseable;
            self.outcome.reason =
                Some("the answer has no [EXPLANATION]: line with text after it".into());
            self.outcome.answer = Some(answer);
            return Ok((None, None));
        };
        let label = FeatureLabel {
            name: Some(text.name),
            description: Some(text.description),
            examples: evidence
                .explain
                .iter()
                .take(3)
                .map(|e| marked(e, MARK_FRACTION))
                .collect(),
            provenance: Some(Provenance {
                origin: Origin::Drafted,
                llm: self.gateway.model().to_string(),
                prompt_version: DRAFT_PROMPT_VERSION.into(),
                drafted_at: now_utc(),
                request_sha256: key,
                reviewed_at: None,
            }),
            ..FeatureLabel::default()
        };
        let scores = if self.request.score {
            self.score(evidence, &label)?
        } else {
            None
        };
        self.outcome.status = Status::Drafted;
        self.outcome.label = Some(label.clone());
        Ok((Some(label), scores))
    }

    /// Detection and fuzzing of `label` (`None` without test examples).
    fn score(
        &mut self,
        evidence: &FeatureEvidence,
        label: &FeatureLabel,
    ) -> Result<Option<LabelScores>, JobError> {
        let Some(explanation) = label.explanation() else {
            return Ok(None);
        };
        if evidence.test_active.is_empty() || evidence.test_silent.is_empty() {
            self.outcome.reason = Some("too few examples to score".into());
            return Ok(None);
        }
        let seed = self.request.evidence.seed ^ u64::from(evidence.feature);
        let detection = self.classify(
            Scorer::Detection,
            &explanation,
            detection_samples(evidence),
            seed,
        )?;
        let fuzzing = self.classify(
            Scorer::Fuzzing,
            &explanation,
            fuzzing_samples(evidence, seed),
            seed,
        )?;
        Ok(Some(LabelScores {
            explanation,
            llm: self.gateway.model().to_string(),
            prompt_version: SCORE_PROMPT_VERSION.into(),
            scored_at: now_utc(),
            detection: Some(summarize(&detection)),
            fuzzing: Some(summarize(&fuzzing)),
        }))
    }

    /// Asks `scorer` about `samples`, `per_prompt` at a time.
    fn classify(
        &mut self,
        scorer: Scorer,
        explanation: &str,
        samples: Vec<crate::scoring::Sample>,
        seed: u64,
    ) -> Result<Vec<Prediction>, JobError> {
        let mut predictions = Vec::with_capacity(samples.len());
        for batch in batches(samples, self.request.per_prompt, seed) {
            let texts: Vec<String> = batch.iter().map(|s| s.text.clone()).collect();
            let chat = ChatRequest {
                model: self.gateway.model().to_string(),
                messages: score_messages(scorer, explanation, &texts),
                temperature: self.request.llm.temperature,
                max_tokens: score_max_tokens(texts.len()),
            };
            let answer = self.ask(&chat)?.answer.content;
            let parsed = parse_predictions(&answer, batch.len());
            for (i, sample) in batch.iter().enumerate() {
                predictions.push(Prediction {
                    activating: sample.activating,
                    predicted: parsed.as_ref().map(|p| p[i]),
                });
            }
        }
        Ok(predictions)
    }

    fn ask(&mut self, chat: &ChatRequest) -> Result<crate::gateway::Asked, JobError> {
        self.outcome.requests += 1;
        match self.gateway.ask(chat) {
            Ok(asked) => {
                self.outcome.cached += u32::from(asked.cached);
                Ok(asked)
            }
            Err(AskFailed { error, fatal }) => {
                self.fatal = fatal;
                Err(error.into())
            }
        }
    }
}
