//! `saeidx query logits`: an index's logit effects, computed from its SAE and its
//! model's unembedding when missing (or with `--rebuild`), then checked by reading them
//! back; with `--feature`, one feature's.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use saeidx_query::QueryIndex;

use super::print;
use crate::{Models, Output, Sources, print_json};

/// Tokens kept at each end by default (`saeidx_sae::logits::LogitOptions`'s default,
/// which `saeidx-model` checks).
pub const DEFAULT_LOGIT_K: u64 = 10;

/// `saeidx query logits`.
#[derive(Args)]
pub struct LogitsArgs {
    /// The index folder.
    index: PathBuf,
    /// Show this feature's logit effects (computing the index's first if it has none).
    #[arg(long)]
    feature: Option<u32>,
    /// Tokens kept at each end (top and bottom) when computing.
    #[arg(long, default_value_t = DEFAULT_LOGIT_K, value_parser = clap::value_parser!(u64).range(1..=1000))]
    k: u64,
    /// Compute them again even if the index has them.
    #[arg(long)]
    rebuild: bool,
    /// A model folder or repo other than the recorded one (it must be identical to the
    /// index's).
    #[arg(long)]
    model: Option<String>,
    /// The SAE folder, if not where the manifest records it; it must be identical to
    /// the index's.
    #[arg(long)]
    sae: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// `saeidx query logits`.
pub fn logits(args: LogitsArgs, models: &dyn Models) -> anyhow::Result<()> {
    let open = || {
        QueryIndex::open(&args.index).with_context(|| format!("opening {}", args.index.display()))
    };
    let index = open()?;
    let present = !args.rebuild && index.logit_effects().is_ok_and(|e| e.is_some());
    let built = if present {
        None
    } else {
        let sources = Sources {
            model: args.model.clone(),
            sae: args.sae.iter().cloned().collect(),
        };
        Some(
            models
                .logit_effects(index.manifest(), index.dir(), &sources, args.k as usize)
                .context("computing the index's logit effects")?,
        )
    };
    // Read back through the query layer: what every front end will read.
    let index = open()?;
    let effects = index
        .logit_effects()?
        .context("the logit effects file is missing after it was written")?;
    if let Some(feature) = args.feature {
        let logits = index.feature_logits(feature)?;
        if args.output.json {
            return print_json(&logits);
        }
        if let Some(logits) = &logits {
            println!("feature {feature}: {}", logits.method);
            print::logits(logits);
        }
        return Ok(());
    }
    let header = effects.header();
    if args.output.json {
        return print_json(&serde_json::json!({
            "path": index.dir().join(saeidx_format::logits::LOGIT_EFFECTS_PATH),
            "computed": built.is_some(),
            "seconds": built.as_ref().map(|b| b.seconds),
            "features": header.d_sae,
            "k": header.k,
            "vocab_size": header.vocab_size,
            "unembedding": header.unembedding,
            "final_norm": header.final_norm,
            "direction": header.direction,
        }));
    }
    match &built {
        Some(built) => println!(
            "computed the logit effects of {} features (top and bottom {} of {} tokens) in {:.1} s: {}",
            built.features,
            built.k,
            built.vocab_size,
            built.seconds,
            built.path.display()
        ),
        None => println!(
            "{} already has logit effects ({} features, k = {}); --rebuild computes them again",
            args.index.display(),
            header.d_sae,
            header.k
        ),
    }
    println!(
        "  unembedding: {}\n  final norm: {}\n  direction: {}",
        header.unembedding, header.final_norm, header.direction
    );
    Ok(())
}
