//! `saeidx labels draft`, `labels score` and `labels accept`: parse, call
//! `saeidx_autointerp`, show progress and print the report.

use std::{ops::Range, path::PathBuf, time::Duration};

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use saeidx_autointerp::{
    EvidenceOptions, FeatureOutcome, FeatureSelection, LabelReport, LabelRequest, LlmSettings,
    Progress, RequestStats, Status, Task,
};
use saeidx_query::limits::Limit;

use super::{IndexArg, within};
use crate::{Output, print_json};

/// Which features, and the LLM.
#[derive(Args)]
pub struct RunArgs {
    /// A feature (repeatable).
    #[arg(long = "feature")]
    features: Vec<u32>,
    /// A range of features, START..END (END excluded).
    #[arg(long = "features", value_parser = parse_range)]
    ranges: Vec<Range<u32>>,
    /// N live features at random (with --seed).
    #[arg(long, value_parser = within::<usize>(Limit::Sample))]
    sample: Option<usize>,
    /// Every live feature (draft) or every labelled one (score).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    output: Output,
}

/// The LLM endpoint and what to show it.
#[derive(Args)]
struct LlmArgs {
    /// The OpenAI-compatible endpoint (base URL up to /v1, or the full
    /// .../chat/completions URL).
    #[arg(
        long,
        env = "SAEIDX_LLM_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    llm: String,
    /// The model name the endpoint knows (recorded with each label).
    #[arg(long, env = "SAEIDX_LLM_MODEL")]
    llm_model: String,
    /// The environment variable holding the API key (never printed or written).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    api_key_env: String,
    /// Features (and requests) in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Retries of a request that failed in a way that may pass (429, 5xx, no answer).
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// Texts per scoring prompt.
    #[arg(long, default_value_t = 5)]
    per_prompt: usize,
    /// Top examples shown to the explainer.
    #[arg(long, default_value_t = 6)]
    top: usize,
    /// Activation bands below the top.
    #[arg(long, default_value_t = 4)]
    bands: usize,
    /// Examples from each band shown to the explainer.
    #[arg(long, default_value_t = 2)]
    per_band: usize,
    /// Contexts where the feature's top tokens do not fire, shown to the explainer.
    #[arg(long, default_value_t = 3)]
    same_token: usize,
    /// Other contexts where it does not fire, shown to the explainer.
    #[arg(long, default_value_t = 3)]
    silent: usize,
    /// Activating test examples for scoring (and as many silent contexts).
    #[arg(long, default_value_t = 10)]
    test: usize,
    /// Tokens of context on each side of an example.
    #[arg(long, default_value_t = 10, value_parser = within::<u32>(Limit::Context))]
    context: u32,
    /// Seed of the random choices (features sampled, silent contexts, shuffles).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The work folder holding the answer cache (default: INDEX/autointerp).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// `labels draft` only.
#[derive(Args)]
pub struct DraftArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Draft only; do not score the drafts.
    #[arg(long)]
    no_score: bool,
    /// Replace labels a person wrote, accepted or edited.
    #[arg(long)]
    overwrite_human: bool,
}

fn parse_range(text: &str) -> Result<Range<u32>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not START..END"))?;
    let number = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    let (start, end) = (number(start)?, number(end)?);
    if start > end {
        return Err(saeidx_query::QueryError::ReversedRange { start, end }.to_string());
    }
    Ok(start..end)
}

impl RunArgs {
    fn selection(&self, task: Task) -> anyhow::Result<FeatureSelection> {
        let mut listed = self.features.clone();
        for range in &self.ranges {
            listed.extend(range.clone());
        }
        let chosen = [!listed.is_empty(), self.sample.is_some(), self.all];
        if chosen.iter().filter(|c| **c).count() > 1 {
            bail!("choose one of --feature/--features, --sample and --all");
        }
        Ok(match (self.sample, self.all, task) {
            (Some(n), _, _) => FeatureSelection::Sample {
                n,
                seed: self.llm.seed,
            },
            (None, true, Task::Draft) => FeatureSelection::Live,
            (None, _, Task::Score) if listed.is_empty() => FeatureSelection::Labelled,
            _ if !listed.is_empty() => FeatureSelection::Listed(listed),
            _ => bail!("say which features: --feature F, --features A..B, --sample N or --all"),
        })
    }

    fn request(&self, task: Task) -> anyhow::Result<LabelRequest> {
        let a = &self.llm;
        Ok(LabelRequest {
            task,
            features: self.selection(task)?,
            llm: LlmSettings {
                url: a.llm.clone(),
                model: a.llm_model.clone(),
                api_key_env: a.api_key_env.clone(),
                timeout: Duration::from_secs(a.timeout),
                max_retries: a.max_retries,
                ..LlmSettings::default()
            },
            evidence: EvidenceOptions {
                top: a.top,
                bands: a.bands,
                per_band: a.per_band,
                same_token: a.same_token,
                silent: a.silent,
                test: a.test,
                context: a.context,
                seed: a.seed,
            },
            concurrency: a.concurrency,
            per_prompt: a.per_prompt,
            work_dir: a.work_dir.clone(),
            ..LabelRequest::default()
        })
    }
}

/// `saeidx labels draft`.
pub fn draft(args: DraftArgs) -> anyhow::Result<()> {
    let request = LabelRequest {
        score: !args.no_score,
        overwrite_human: args.overwrite_human,
        ..args.run.request(Task::Draft)?
    };
    execute(&args.run, &request)
}

/// `saeidx labels score`.
pub fn score(args: RunArgs) -> anyhow::Result<()> {
    let request = args.request(Task::Score)?;
    execute(&args, &request)
}

fn execute(args: &RunArgs, request: &LabelRequest) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let bar = Bar::new();
    let report = saeidx_autointerp::run(&index, request, &bar)?;
    bar.0.finish_and_clear();
    if args.output.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    if let Some(reason) = &report.stopped {
        bail!(
            "the run stopped early: {reason}. What was done is saved and its answers are cached: run the same command again to go on"
        );
    }
    Ok(())
}

/// The progress bar (on stderr), with the requests sent and cached.
struct Bar(ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} features, ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self(bar)
    }
}

impl Progress for Bar {
    fn begin(&self, features: usize) {
        self.0.set_length(features as u64);
    }

    fn done(&self, _outcome: &FeatureOutcome, requests: &RequestStats) {
        self.0.set_message(format!(
            "(requests: {} sent, {} cached, {} failed)",
            requests.sent, requests.cached, requests.failed
        ));
        self.0.inc(1);
    }
}

fn print_report(report: &LabelReport) {
    for outcome in &report.features {
        print_outcome(outcome);
    }
    let r = &report.requests;
    println!(
        "{} features in {:.1} s ({:.1} labelled per minute) with {} (prompts {}, {})",
        report.features.len(),
        report.seconds,
        report.features_per_minute,
        report.llm,
        report.draft_prompt_version,
        report.score_prompt_version
    );
    println!(
        "requests: {} asked, {} sent, {} from the cache ({:.0} %), {} failed, {} retries; tokens sent: {} prompt + {} generated{}; saved by the cache: {} + {}",
        r.asked,
        r.sent,
        r.cached,
        100.0 * r.cache_share(),
        r.failed,
        r.retries,
        r.prompt_tokens,
        r.completion_tokens,
        if r.estimated_tokens {
            " (some estimated)"
        } else {
            ""
        },
        r.cached_prompt_tokens,
        r.cached_completion_tokens
    );
    println!(
        "labels: {}; cache: {}",
        report.registry.display(),
        report.cache.display()
    );
}

fn print_outcome(outcome: &FeatureOutcome) {
    let status = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!("feature {} {status}", outcome.feature);
    if let Some(label) = &outcome.label
        && matches!(
            outcome.status,
            Status::Drafted | Status::Unchanged | Status::Scored | Status::KeptHuman
        )
    {
        line.push_str(&format!(": {}", label.explanation().unwrap_or_default()));
        if let Some(scores) = label.scores.as_ref().filter(|_| label.scores_current()) {
            let show = |s: &Option<saeidx_query::registry::ScoreSummary>| match s {
                Some(s) if s.answered() > 0 => format!("{:.2}", s.balanced_accuracy),
                Some(s) => format!("no usable answer for {} texts", s.failed),
                None => "-".to_string(),
            };
            line.push_str(&format!(
                " [detection {}, fuzzing {}, confidence {}]",
                show(&scores.detection),
                show(&scores.fuzzing),
                label.confidence.as_deref().unwrap_or("-")
            ));
        }
    }
    if let Some(reason) = &outcome.reason {
        line.push_str(&format!(" ({reason})"));
    }
    if let Some(answer) = &outcome.answer {
        line.push_str(&format!(" answer: {answer:?}"));
    }
    println!("{line}");
}

/// `saeidx labels accept F...`: a person accepts drafts as they are.
pub fn accept(features: &[u32], index: &IndexArg) -> anyhow::Result<()> {
    let mut opened = index.open()?;
    for &feature in features {
        opened.accept_label(feature)?;
    }
    println!(
        "accepted {} drafts in {}",
        features.len(),
        opened
            .dir()
            .join(saeidx_query::registry::REGISTRY_FILE)
            .display()
    );
    Ok(())
}
