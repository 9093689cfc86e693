//! `saeidx assets ...` and `saeidx convert-gguf`.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use saeidx_assets::{
    defaults::{self, AssetPaths, Outcome},
    gguf,
};
use serde_json::json;

use saeidx_cli::{Output, print_json};

use crate::AssetsDir;

#[derive(Subcommand)]
pub enum AssetsCommand {
    /// Make sure the default model's GGUF, the converted model (HF cache) and the corpus
    /// exist and are intact; fetch, verify and convert whatever is missing. Safe to run
    /// repeatedly.
    #[command(
        after_help = "Example:\n  saeidx assets prepare\n  HF_HOME=/data/hf saeidx assets prepare --json"
    )]
    Prepare {
        #[command(flatten)]
        dir: AssetsDir,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The GGUF file (a Llama-family model with a byte-level BPE tokenizer).
    gguf: PathBuf,
    /// The folder to create (replaced atomically if it exists).
    out: PathBuf,
    #[command(flatten)]
    output: Output,
}

fn spinner(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn run(command: AssetsCommand) -> anyhow::Result<()> {
    match command {
        AssetsCommand::Prepare { dir, output } => {
            let paths = AssetPaths {
                assets_dir: dir.assets_dir,
                hub_dir: saeidx_hub::HubSettings::from_env().cache_dir,
            };
            let bar = spinner(!output.json);
            let prepared = defaults::prepare(&paths, &|step| bar.set_message(step.to_string()))
                .context("preparing the default assets")?;
            bar.finish_and_clear();
            let describe = |outcome: &Outcome| match outcome {
                Outcome::Cached => "cached",
                Outcome::Prepared => "prepared",
            };
            if output.json {
                print_json(&json!({
                    "gguf": {
                        "path": prepared.gguf,
                        "status": describe(&prepared.gguf_outcome),
                    },
                    "model": {
                        "repo_id": defaults::DEFAULT_MODEL_REPO,
                        "commit": prepared.model.commit,
                        "path": prepared.model.path,
                        "status": describe(&prepared.model_outcome),
                    },
                    "corpus": {
                        "path": prepared.corpus,
                        "status": describe(&prepared.corpus_outcome),
                    },
                }))
            } else {
                println!(
                    "gguf    {} ({})",
                    prepared.gguf.display(),
                    describe(&prepared.gguf_outcome)
                );
                println!(
                    "model   {} ({}) {}",
                    defaults::DEFAULT_MODEL_REPO,
                    describe(&prepared.model_outcome),
                    prepared.model.path.display()
                );
                println!(
                    "corpus  {} ({})",
                    prepared.corpus.display(),
                    describe(&prepared.corpus_outcome)
                );
                Ok(())
            }
        }
    }
}

pub fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let bar = spinner(!args.output.json);
    bar.set_message(format!("converting {}", args.gguf.display()));
    let staged = saeidx_format::atomic::StagedDir::new(&args.out)?;
    let summary = gguf::convert(&args.gguf, staged.path())
        .with_context(|| format!("converting {}", args.gguf.display()))?;
    let out = staged.publish()?;
    bar.finish_and_clear();
    let hp = &summary.hyperparameters;
    if args.output.json {
        print_json(&json!({
            "out": out,
            "tensors": summary.tensors,
            "vocab_size": summary.vocab_size,
            "layers": hp.num_layers,
            "hidden_size": hp.hidden_size,
            "tied_embeddings": summary.tied_embeddings,
            "quantized_bits": summary.quantized_bits,
        }))
    } else {
        println!(
            "wrote {} ({} tensors, {} layers, hidden {}, vocab {})",
            out.display(),
            summary.tensors,
            hp.num_layers,
            hp.hidden_size,
            summary.vocab_size
        );
        Ok(())
    }
}
