//! The `saeidx` command's questions, shared by its two executables.
//!
//! `saeidx` (this package's binary) links no MLX, so a new process answers a question in
//! milliseconds: it runs every command that reads, checks, serves or shares an index.
//! The commands that run a model (`run`, `activations`, `sae`, `model`, `assets`, ...)
//! are `saeidx-model`'s (package `saeidx-cli-model`, installed beside it), which `saeidx`
//! executes with the same arguments; so is a question that needs a model after all (a
//! live text: `top-features --text`, `explain`, `render text`, `serve` with live texts,
//! `query logits` computing missing effects), through [`Models`].
//!
//! Exit status: 0 on success, 2 on error (with a message that says what to do).

use std::{ffi::OsString, path::Path, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use saeidx_format::manifest::Manifest;
use saeidx_query::{AnalyzedText, AnyIndex};

mod query;
mod share;
mod verify;

pub use query::DEFAULT_LOGIT_K;

/// The first line of every `--help` of both executables.
pub const ABOUT: &str = env!("CARGO_PKG_DESCRIPTION");

/// The executable that runs the commands needing a model, beside `saeidx`.
pub const MODEL_BINARY: &str = "saeidx-model";

/// Index SAE feature activations of a corpus once; query them in milliseconds.
#[derive(Parser)]
#[command(name = "saeidx", version, about = ABOUT, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command of `saeidx`: those `saeidx-model` runs, then the questions.
#[derive(Subcommand)]
pub enum Command {
    /// Commands that run a model: passed on to `saeidx-model`.
    #[command(flatten)]
    Model(ModelCommand),
    /// Commands answered from index files.
    #[command(flatten)]
    Index(Box<IndexCommand>),
}

/// The commands that run a model, as `saeidx` lists them; `saeidx-model` parses and runs
/// them (its own definitions carry the same names, aliases and descriptions).
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download, verify and convert the embedded default model and corpus.
    Assets(Forwarded),
    /// Convert a llama.cpp GGUF Llama checkpoint into an MLX checkpoint folder.
    ConvertGguf(Forwarded),
    /// Inspect a model: resolve it, check its weights, tokenize text with it.
    Model(Forwarded),
    /// Run a text through a model up to one hook point; print each token's activation.
    Activations(Forwarded),
    /// Train sparse autoencoders.
    Sae(Forwarded),
    /// Run an index job (pipelines/*.toml): corpus → model → SAE → Parquet index folder.
    #[command(visible_alias = "index")]
    Run(Forwarded),
    /// Publish the shard folders of a sharded job as the segments of one index.
    Merge(Forwarded),
    /// Merge an index's segments into one (bounded memory; numbers and answers kept).
    Compact(Forwarded),
    /// Run a job's shards on a cluster scheduler (Slurm), then merge them.
    Cluster(Forwarded),
}

/// A model command's arguments, untouched: `saeidx-model` parses them (its help included).
#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct Forwarded {
    /// The arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// The commands answered from index files (both executables run them).
#[derive(Subcommand)]
pub enum IndexCommand {
    /// Check an index folder against its manifest (checksums, schemas, counts, rows)
    /// and its query files against their checksums.
    Verify(verify::VerifyArgs),
    /// Which texts make a feature fire most strongly (from the index).
    TopTexts(query::TopTextsArgs),
    /// Which features fire most strongly on a document of the index or on a new text.
    TopFeatures(query::TopFeaturesArgs),
    /// Everything about one feature: statistics, histogram, examples, neighbours, label.
    Feature(query::FeatureArgs),
    /// Contexts where a feature does not fire (anywhere, or on given tokens): its
    /// counter-examples.
    Silent(query::SilentArgs),
    /// The strongest features of a text (live) and the index's top texts for each.
    Explain(query::ExplainArgs),
    /// Random live features with their top examples (feature discovery).
    Sample(query::SampleArgs),
    /// Which feature is which: two SAEs' features matched (decoder cosine, co-activation
    /// on shared tokens, splits), or two runs of one SAE (what changed).
    Compare(query::CompareArgs),
    /// An index's counts, model, SAE and live/dead features.
    Info(query::InfoArgs),
    /// One page of a document: its tokens coloured by a feature, each token's features,
    /// the document's top features (max and sum).
    Document(query::DocumentArgs),
    /// What an index holds: provenance, counts, feature densities, frequent, rare,
    /// labelled and sampled features, documents.
    Overview(query::OverviewArgs),
    /// An index's documents with their metadata, all or those a filter selects.
    Documents(query::DocumentsArgs),
    /// The features of a token (or token sequence) over its occurrences: how often and
    /// how strongly each fires, with example contexts.
    TokenFeatures(query::TokenFeaturesArgs),
    /// Features over-represented in one set of documents relative to another (or to the
    /// rest), per token, both ways, with examples.
    Contrast(query::ContrastArgs),
    /// The query files of an index (`build`).
    #[command(subcommand)]
    Query(query::QueryCommand),
    /// Self-contained HTML pages: features, and texts coloured by features.
    #[command(subcommand)]
    Render(query::RenderCommand),
    /// A local web UI and JSON API over one or more indexes (feature pages, label search and
    /// editing, random features, live texts).
    Serve(query::ServeArgs),
    /// The feature registry stored with an index (labels, mlxterp's sae_features.json).
    #[command(subcommand)]
    Labels(query::LabelsCommand),
    /// Download an index from a Hugging Face Hub dataset repo and verify it.
    Fetch(share::FetchArgs),
    /// Write an index folder with a dataset card, ready to upload to the Hub.
    Publish(share::PublishArgs),
    /// Export an index for other tools (Neuronpedia).
    #[command(subcommand)]
    Export(share::ExportCommand),
}

/// Output options shared by every command.
#[derive(Args, Clone, Copy)]
pub struct Output {
    /// Print one JSON document instead of text (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// A model and SAE other than those an index records (they must be identical to its own).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// A model folder or repo id.
    pub model: Option<String>,
    /// SAE folders.
    pub sae: Vec<PathBuf>,
}

/// Logit effects computed for an index ([`Models::logit_effects`]).
#[derive(Clone, Debug)]
pub struct ComputedLogits {
    /// Where they were written.
    pub path: PathBuf,
    /// Features computed.
    pub features: usize,
    /// Tokens kept at each end.
    pub k: usize,
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// Seconds taken.
    pub seconds: f64,
}

/// What a question needs a model for. `saeidx-model` does it with MLX; `saeidx` hands
/// the whole command to `saeidx-model` instead (so it must come before any output).
pub trait Models {
    /// `text` run live through `index`'s model and SAE (or those `sources` names).
    fn analyze(
        &self,
        index: &AnyIndex,
        text: &str,
        sources: &Sources,
    ) -> anyhow::Result<AnalyzedText>;
    /// Live texts for `saeidx serve`: the model and SAE of the index in `dir`.
    fn live_texts(
        &self,
        manifest: &Manifest,
        dir: &Path,
        sources: Sources,
    ) -> anyhow::Result<Box<dyn saeidx_view::serve::LiveTexts>>;
    /// Computes the logit effects of the index in `dir` (tokens kept at each end: `k`)
    /// and writes them, holding the index's output lock.
    fn logit_effects(
        &self,
        manifest: &Manifest,
        dir: &Path,
        sources: &Sources,
        k: usize,
    ) -> anyhow::Result<ComputedLogits>;
}

/// Runs a command answered from index files.
pub fn run(command: IndexCommand, models: &dyn Models) -> anyhow::Result<()> {
    match command {
        IndexCommand::Verify(args) => verify::verify(args),
        IndexCommand::TopTexts(args) => query::top_texts(args),
        IndexCommand::TopFeatures(args) => query::top_features(args, models),
        IndexCommand::Feature(args) => query::feature(args),
        IndexCommand::Silent(args) => query::silent(args),
        IndexCommand::Explain(args) => query::explain(args, models),
        IndexCommand::Sample(args) => query::sample(args),
        IndexCommand::Compare(args) => query::compare(args),
        IndexCommand::Info(args) => query::info(args),
        IndexCommand::Document(args) => query::document(args),
        IndexCommand::Overview(args) => query::overview(args),
        IndexCommand::Documents(args) => query::documents(args),
        IndexCommand::TokenFeatures(args) => query::token_features(args),
        IndexCommand::Contrast(args) => query::contrast(args),
        IndexCommand::Query(command) => query::query(command, models),
        IndexCommand::Labels(command) => query::labels(command),
        IndexCommand::Render(command) => query::render(command, models),
        IndexCommand::Serve(args) => query::serve(args, models),
        IndexCommand::Fetch(args) => share::fetch(args),
        IndexCommand::Publish(args) => share::publish(args),
        IndexCommand::Export(command) => share::export(command),
    }
}

/// What every executable does first: end quietly on SIGPIPE like other Unix tools
/// (`saeidx ... | head`), and log warnings (`RUST_LOG`) to stderr.
pub fn start() {
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The exit status of a command's result: 0, or 2 with the error's message.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a value (an answer) as pretty JSON on stdout, in the form every front end
/// gives ([`saeidx_query::answers::to_json`]).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&saeidx_query::answers::to_json(value)?)?
    );
    Ok(())
}
