//! `saeidx`: index which SAE features fire on which tokens of a corpus, once, and answer
//! questions about them in milliseconds.
//!
//! The binary is thin: it parses arguments, shows progress and prints; every behaviour
//! is a library call. Exit status: 0 on success, 2 on error (with a message that says
//! what to do).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use saeidx_assets::defaults::DEFAULT_MODEL_REPO;
use saeidx_hub::HubSettings;
use saeidx_model::files::{self, ModelFiles, ModelSource};

mod activations;
mod assets;
mod cluster;
mod index;
mod model;
mod query;
mod sae;
mod share;

/// Index SAE feature activations of a corpus once; query them in milliseconds.
#[derive(Parser)]
#[command(name = "saeidx", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download, verify and convert the embedded default model and corpus.
    #[command(subcommand)]
    Assets(assets::AssetsCommand),
    /// Convert a llama.cpp GGUF Llama checkpoint into an MLX checkpoint folder.
    #[command(
        after_help = "Example:\n  saeidx convert-gguf SmolLM2-135M-Instruct.Q4_1.gguf ./smollm2-mlx"
    )]
    ConvertGguf(assets::ConvertArgs),
    /// Inspect a model: resolve it, check its weights, tokenize text with it.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Run a text through a model up to one hook point; print each token's activation.
    Activations(activations::ActivationsArgs),
    /// Train sparse autoencoders.
    #[command(subcommand)]
    Sae(sae::SaeCommand),
    /// Run an index job (pipelines/*.toml): corpus → model → SAE → Parquet index folder.
    #[command(visible_alias = "index")]
    Run(index::RunArgs),
    /// Publish the shard folders of a sharded job as the segments of one index.
    Merge(index::MergeArgs),
    /// Merge an index's segments into one (bounded memory; numbers and answers kept).
    Compact(index::CompactArgs),
    /// Run a job's shards on a cluster scheduler (Slurm), then merge them.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Check an index folder against its manifest (checksums, schemas, counts, rows)
    /// and its query files against their checksums.
    Verify(index::VerifyArgs),
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
struct Output {
    /// Print one JSON document instead of text (for scripts).
    #[arg(long)]
    json: bool,
}

/// Which model: a local folder or a Hugging Face repo id, and a revision.
#[derive(Args, Clone)]
struct ModelArgs {
    /// A local model folder or a Hugging Face repo id (default: the embedded model).
    #[arg(long, default_value = DEFAULT_MODEL_REPO)]
    model: String,
    /// Branch, tag or commit of a hub repo.
    #[arg(long)]
    revision: Option<String>,
}

impl ModelArgs {
    /// Finds the model's files, offline-first (`HF_HOME`, `HF_TOKEN`, `HF_ENDPOINT`,
    /// `HF_HUB_OFFLINE`).
    fn resolve(&self) -> anyhow::Result<ModelFiles> {
        let source = ModelSource::parse(&self.model, self.revision.clone());
        files::resolve(&source, &HubSettings::from_env())
            .with_context(|| format!("resolving model {source}"))
    }
}

/// The repository-local asset folder (`--assets-dir`, `SAEIDX_ASSETS_DIR`, `.assets`).
#[derive(Args, Clone)]
struct AssetsDir {
    /// Folder for downloaded and converted default assets.
    #[arg(long, env = "SAEIDX_ASSETS_DIR", default_value = ".assets")]
    assets_dir: PathBuf,
}

impl AssetsDir {
    /// The embedded default corpus in this asset folder.
    fn default_corpus(&self) -> PathBuf {
        saeidx_assets::defaults::AssetPaths {
            assets_dir: self.assets_dir.clone(),
            hub_dir: HubSettings::from_env().cache_dir,
        }
        .corpus()
    }
}

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader goes away (`saeidx ... | head`):
    // end quietly on SIGPIPE instead of panicking on a failed print.
    // SAFETY: called first thing, before any other thread exists.
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Assets(command) => assets::run(command),
        Command::ConvertGguf(args) => assets::convert(args),
        Command::Model(command) => model::run(command),
        Command::Activations(args) => activations::run(args),
        Command::Sae(command) => sae::run(command),
        Command::Run(args) => index::run(args),
        Command::Merge(args) => index::merge(args),
        Command::Compact(args) => index::compact(args),
        Command::Cluster(command) => cluster::run(command),
        Command::Verify(args) => index::verify(args),
        Command::TopTexts(args) => query::top_texts(args),
        Command::TopFeatures(args) => query::top_features(args),
        Command::Feature(args) => query::feature(args),
        Command::Silent(args) => query::silent(args),
        Command::Explain(args) => query::explain(args),
        Command::Sample(args) => query::sample(args),
        Command::Compare(args) => query::compare(args),
        Command::Info(args) => query::info(args),
        Command::Document(args) => query::document(args),
        Command::Overview(args) => query::overview(args),
        Command::Documents(args) => query::documents(args),
        Command::TokenFeatures(args) => query::token_features(args),
        Command::Contrast(args) => query::contrast(args),
        Command::Query(command) => query::query(command),
        Command::Labels(command) => query::labels(command),
        Command::Render(command) => query::render(command),
        Command::Serve(args) => query::serve(args),
        Command::Fetch(args) => share::fetch(args),
        Command::Publish(args) => share::publish(args),
        Command::Export(command) => share::export(command),
    };
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
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&saeidx_query::answers::to_json(value)?)?
    );
    Ok(())
}
