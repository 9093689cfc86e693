//! `saeidx labels`: the feature registry stored with the index (mlxterp's
//! `sae_features.json` shape).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use saeidx_query::{FeatureLabel, Registry};

use super::IndexArg;
use crate::{Output, print_json};

/// `saeidx labels ...`: the feature registry stored with the index.
#[derive(Subcommand)]
pub enum LabelsCommand {
    /// A feature's label (the answer `GET /api/labels/F` gives).
    #[command(after_help = "Example:\n  saeidx labels get 1234 --json")]
    Get {
        /// The feature.
        feature: u32,
        #[command(flatten)]
        index: IndexArg,
        #[command(flatten)]
        output: Output,
    },
    /// Set (or with no fields, clear) a feature's label, as a person: a draft set this
    /// way counts as reviewed (accepted when its text is unchanged, edited otherwise).
    #[command(
        after_help = "Example:\n  saeidx labels set 1234 --name geographic_locations --description \"city and country names\" --confidence high"
    )]
    Set {
        /// The feature.
        feature: u32,
        /// A short name.
        #[arg(long)]
        name: Option<String>,
        /// What it responds to.
        #[arg(long)]
        description: Option<String>,
        /// Example texts (repeatable).
        #[arg(long = "example")]
        examples: Vec<String>,
        /// How sure you are (high, medium, low).
        #[arg(long)]
        confidence: Option<String>,
        /// Anything else.
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        index: IndexArg,
    },
    /// Import labels from mlxterp's sae_features.json (merged; --replace drops the
    /// existing ones).
    #[command(after_help = "Example:\n  saeidx labels import sae_features.json")]
    Import {
        /// The file.
        file: PathBuf,
        /// Replace the registry instead of merging into it.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        index: IndexArg,
    },
    /// Draft labels with an LLM from the index's examples (and score them), over any
    /// OpenAI-compatible endpoint; answers are cached in INDEX/autointerp, so a rerun
    /// sends only what is new. A label a person wrote, accepted or edited is kept.
    #[command(after_help = "Examples:\n  \
        mlx_lm.server --model saeidx-default/SmolLM2-135M-Instruct-mlx-4bit --port 8080 &\n  \
        saeidx labels draft --features 0..100 --llm http://127.0.0.1:8080/v1 \\\n      \
        --llm-model saeidx-default/SmolLM2-135M-Instruct-mlx-4bit --concurrency 1 --timeout 600\n  \
        OPENAI_API_KEY=sk-... saeidx labels draft --all --llm https://api.openai.com/v1 \\\n      \
        --llm-model gpt-4o-mini --concurrency 16")]
    Draft(super::drafts::DraftArgs),
    /// Score labels (a person's or drafted) against the index: delphi's detection and
    /// fuzzing, as balanced accuracy; sets the confidence of drafts.
    #[command(after_help = "Examples:\n  \
        saeidx labels score --llm https://api.openai.com/v1 --llm-model gpt-4o-mini   # every labelled feature\n  \
        saeidx labels score --feature 1234 --llm-model NAME")]
    Score(super::drafts::RunArgs),
    /// Accept drafts as they are (they then count as a person's labels).
    #[command(after_help = "Example:\n  saeidx labels accept 790 1197")]
    Accept {
        /// The features.
        #[arg(required = true)]
        features: Vec<u32>,
        #[command(flatten)]
        index: IndexArg,
    },
    /// Export the labels as mlxterp's sae_features.json (its five keys; --provenance
    /// keeps drafted labels' provenance and scores, as labels.json holds them).
    #[command(after_help = "Example:\n  saeidx labels export sae_features.json")]
    Export {
        /// The file to write.
        file: PathBuf,
        /// Keep each label's provenance and scores (for another saeidx index).
        #[arg(long)]
        provenance: bool,
        #[command(flatten)]
        index: IndexArg,
    },
}

/// `saeidx labels ...`.
pub fn labels(command: LabelsCommand) -> anyhow::Result<()> {
    match command {
        LabelsCommand::Draft(args) => super::drafts::draft(args),
        LabelsCommand::Score(args) => super::drafts::score(args),
        LabelsCommand::Accept { features, index } => super::drafts::accept(&features, &index),
        LabelsCommand::Get {
            feature,
            index,
            output,
        } => get(feature, &index, output),
        LabelsCommand::Set {
            feature,
            name,
            description,
            examples,
            confidence,
            notes,
            index,
        } => {
            let label = FeatureLabel {
                name,
                description,
                examples,
                confidence,
                notes,
                ..FeatureLabel::default()
            };
            index.open()?.set_label(feature, label)?;
            println!(
                "saved {}",
                index
                    .index
                    .join(saeidx_query::registry::REGISTRY_FILE)
                    .display()
            );
            Ok(())
        }
        LabelsCommand::Import {
            file,
            replace,
            index,
        } => import(&file, replace, &index),
        LabelsCommand::Export {
            file,
            provenance,
            index,
        } => export(&file, provenance, &index),
    }
}

/// `saeidx labels get F`.
fn get(feature: u32, index: &IndexArg, output: Output) -> anyhow::Result<()> {
    let answer = index.open()?.label(feature)?;
    if output.json {
        return print_json(&answer);
    }
    match &answer.label {
        Some(label) => println!("feature {feature}: {}", serde_json::to_string(label)?),
        None => println!("feature {feature} has no label"),
    }
    Ok(())
}

/// `saeidx labels import FILE`.
fn import(file: &Path, replace: bool, index: &IndexArg) -> anyhow::Result<()> {
    let mut index = index.open()?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let imported = Registry::parse(&bytes, file, index.d_sae())?;
    let count = index.import_labels(imported, replace)?;
    let path = index.dir().join(saeidx_query::registry::REGISTRY_FILE);
    println!("imported {count} labels into {}", path.display());
    Ok(())
}

/// `saeidx labels export FILE`: mlxterp's five keys, or with `provenance` the labels as
/// `labels.json` holds them.
fn export(file: &Path, provenance: bool, index: &IndexArg) -> anyhow::Result<()> {
    let index = index.open()?;
    let registry = index.registry();
    let bytes = if provenance {
        registry.to_json()
    } else {
        registry.to_mlxterp_json()
    };
    saeidx_format::atomic::write_file(file, &bytes)?;
    println!("exported {} labels to {}", registry.len(), file.display());
    Ok(())
}
