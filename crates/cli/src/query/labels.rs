//! `saeidx labels`: the feature registry stored with the index (mlxterp's
//! `sae_features.json` shape).

use std::path::PathBuf;

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
    /// Set (or with no fields, clear) a feature's label.
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
    /// Export the labels as mlxterp's sae_features.json.
    #[command(after_help = "Example:\n  saeidx labels export sae_features.json")]
    Export {
        /// The file to write.
        file: PathBuf,
        #[command(flatten)]
        index: IndexArg,
    },
}

/// `saeidx labels ...`.
pub fn labels(command: LabelsCommand) -> anyhow::Result<()> {
    match command {
        LabelsCommand::Get {
            feature,
            index,
            output,
        } => {
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
        LabelsCommand::Set {
            feature,
            name,
            description,
            examples,
            confidence,
            notes,
            index,
        } => {
            let mut opened = index.open()?;
            let label = FeatureLabel {
                name,
                description,
                examples,
                confidence,
                notes,
            };
            opened.set_label(feature, label)?;
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
        } => {
            let mut index = index.open()?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let imported = Registry::parse(&bytes, &file, index.d_sae())?;
            let count = index.import_labels(imported, replace)?;
            let path = index.dir().join(saeidx_query::registry::REGISTRY_FILE);
            println!("imported {count} labels into {}", path.display());
            Ok(())
        }
        LabelsCommand::Export { file, index } => {
            let index = index.open()?;
            saeidx_format::atomic::write_file(&file, &index.registry().to_json())?;
            println!(
                "exported {} labels to {}",
                index.registry().len(),
                file.display()
            );
            Ok(())
        }
    }
}
