//! `saeidx-model`: the `saeidx` commands that run a model (MLX), which `saeidx` executes
//! with the same arguments (so its messages and help read `saeidx`). It parses every
//! `saeidx` command and answers the questions too, with live texts (the library's
//! [`Models`]), so that `saeidx` can hand it a whole question that turns out to need a
//! model. Exit status: 0 on success, 2 on error (with a message that says what to do).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use saeidx_assets::defaults::DEFAULT_MODEL_REPO;
use saeidx_cli::{ComputedLogits, IndexCommand, Models, Sources};
use saeidx_format::manifest::Manifest;
use saeidx_hub::HubSettings;
use saeidx_live::{LiveAnalyzer, LiveSources, LiveWorker, build_logit_effects};
use saeidx_model::files::{self, ModelFiles, ModelSource};
use saeidx_query::{AnalyzedText, AnyIndex};
use saeidx_sae::logits::LogitOptions;

mod activations;
mod assets;
mod cluster;
mod index;
mod model;
mod sae;

/// Index SAE feature activations of a corpus once; query them in milliseconds.
#[derive(Parser)]
#[command(name = "saeidx", version, about = saeidx_cli::ABOUT, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every `saeidx` command, in the order `saeidx --help` lists them.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Model(Box<ModelCommand>),
    #[command(flatten)]
    Index(Box<IndexCommand>),
}

/// The commands that run a model (named, aliased and described as in
/// `saeidx_cli::ModelCommand`, which `saeidx --help` lists; a test compares them).
#[derive(Subcommand)]
enum ModelCommand {
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
    saeidx_cli::start();
    let result = match Cli::parse().command {
        Command::Model(command) => run(*command),
        Command::Index(command) => saeidx_cli::run(*command, &Live),
    };
    saeidx_cli::exit(result)
}

/// Runs a command that runs a model.
fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Assets(command) => assets::run(command),
        ModelCommand::ConvertGguf(args) => assets::convert(args),
        ModelCommand::Model(command) => model::run(command),
        ModelCommand::Activations(args) => activations::run(args),
        ModelCommand::Sae(command) => sae::run(command),
        ModelCommand::Run(args) => index::run(args),
        ModelCommand::Merge(args) => index::merge(args),
        ModelCommand::Compact(args) => index::compact(args),
        ModelCommand::Cluster(command) => cluster::run(command),
    }
}

/// The live side of the questions: the index's model and SAE, loaded with MLX.
struct Live;

fn live_sources(sources: &Sources) -> LiveSources {
    LiveSources {
        model: sources.model.clone(),
        sae: sources.sae.clone(),
    }
}

/// Live texts for the server: the index's model and SAE on their own thread.
struct ServerLive {
    worker: LiveWorker,
}

impl saeidx_view::serve::LiveTexts for ServerLive {
    fn analyze(&mut self, text: &str) -> Result<AnalyzedText, String> {
        self.worker.analyze_text(text).map_err(|e| e.to_string())
    }
}

impl Models for Live {
    fn analyze(
        &self,
        index: &AnyIndex,
        text: &str,
        sources: &Sources,
    ) -> anyhow::Result<AnalyzedText> {
        let (manifest, dir) = index
            .model_source()
            .context("the index has no segments, so no model and SAE to analyze a text with")?;
        let live = LiveAnalyzer::for_index(
            manifest,
            dir,
            &live_sources(sources),
            &HubSettings::from_env(),
        )
        .context("loading the index's model and SAE for the live text")?;
        Ok(live.analyze_text(text)?)
    }

    fn live_texts(
        &self,
        manifest: &Manifest,
        dir: &Path,
        sources: Sources,
    ) -> anyhow::Result<Box<dyn saeidx_view::serve::LiveTexts>> {
        let worker = LiveWorker::start(
            manifest.clone(),
            dir.to_path_buf(),
            live_sources(&sources),
            HubSettings::from_env(),
        )?;
        Ok(Box::new(ServerLive { worker }))
    }

    fn logit_effects(
        &self,
        manifest: &Manifest,
        dir: &Path,
        sources: &Sources,
        k: usize,
    ) -> anyhow::Result<ComputedLogits> {
        let options = LogitOptions {
            k,
            ..LogitOptions::default()
        };
        let _lock = saeidx_format::lock::OutputLock::acquire(dir)?;
        let built = build_logit_effects(
            manifest,
            dir,
            &live_sources(sources),
            &HubSettings::from_env(),
            options,
        )?;
        Ok(ComputedLogits {
            path: built.path,
            features: built.features,
            k: built.k,
            vocab_size: built.vocab_size,
            seconds: built.seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn both_executables_list_the_same_commands() {
        let mut ours = Cli::command();
        let mut front = saeidx_cli::Cli::command();
        assert_eq!(
            ours.render_help().to_string(),
            front.render_help().to_string()
        );
        let front_model = saeidx_cli::Cli::command();
        for command in ModelCommand::augment_subcommands(clap::Command::new("x")).get_subcommands()
        {
            let listed = front_model
                .find_subcommand(command.get_name())
                .expect("saeidx lists every command saeidx-model runs");
            assert!(
                listed.is_disable_help_flag_set(),
                "{} is forwarded",
                command.get_name()
            );
        }
    }

    #[test]
    fn the_default_logit_k_is_the_libraries() {
        assert_eq!(
            saeidx_cli::DEFAULT_LOGIT_K,
            LogitOptions::default().k as u64
        );
    }
}
