//! `saeidx render`: self-contained HTML pages of features and of texts run live.

use std::path::PathBuf;

use clap::Subcommand;
use saeidx_query::{FeatureRequest, TopFeaturesRequest, limits::Limit};

use super::{IndexArg, analyze, within};
use crate::{Models, Sources};

/// `saeidx render ...`: self-contained HTML pages.
#[derive(Subcommand)]
pub enum RenderCommand {
    /// Feature pages (statistics, histogram, coloured examples, neighbour links) into a
    /// folder, one `feature-F.html` each.
    #[command(after_help = "Example:\n  saeidx render feature 4536 5383 --out pages/")]
    Feature {
        /// The features.
        #[arg(required = true)]
        features: Vec<u32>,
        /// The folder to write into.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5, value_parser = within::<usize>(Limit::Examples),
            help = Limit::Examples.help("Top examples, and examples per activation band"))]
        examples: usize,
        #[arg(long, default_value_t = 4, value_parser = within::<usize>(Limit::Bands),
            help = Limit::Bands.help("Activation bands to sample from"))]
        bands: usize,
        #[arg(long, default_value_t = 10, value_parser = within::<usize>(Limit::Neighbours),
            help = Limit::Neighbours.help("Neighbours to link"))]
        neighbours: usize,
        #[arg(long, default_value_t = 10, value_parser = within::<u32>(Limit::Context),
            help = Limit::Context.help("Tokens of context on each side of an example"))]
        context: u32,
        #[command(flatten)]
        index: IndexArg,
    },
    /// A text run live through the index's model and SAE, its tokens coloured by each
    /// chosen feature (default: its strongest five).
    #[command(
        after_help = "Example:\n  saeidx render text \"Paris is the capital of France\" --feature 4536 --feature 5383 --out text.html"
    )]
    Text {
        /// The text.
        text: String,
        /// Features to colour by (repeatable).
        #[arg(long = "feature")]
        features: Vec<u32>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        index: IndexArg,
    },
}

/// `saeidx render ...`.
pub fn render(command: RenderCommand, models: &dyn Models) -> anyhow::Result<()> {
    match command {
        RenderCommand::Feature {
            features,
            out,
            examples,
            bands,
            neighbours,
            context,
            index,
        } => {
            let index = index.open()?;
            for feature in features {
                let report = saeidx_compare::feature_report(
                    &index,
                    &FeatureRequest {
                        feature,
                        examples,
                        bands,
                        per_band: examples,
                        neighbours,
                        context,
                        ..FeatureRequest::default()
                    },
                )?;
                let html = saeidx_view::render_feature(&index, &report, context)?;
                let path = out.join(saeidx_view::feature_file(feature));
                saeidx_format::atomic::write_file(&path, html.as_bytes())?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        RenderCommand::Text {
            text,
            features,
            out,
            index,
        } => {
            let index = index.open()?;
            let analyzed = analyze(&index, &text, &Sources::default(), models)?;
            let request = TopFeaturesRequest {
                k: 5,
                ..TopFeaturesRequest::default()
            };
            let features = if features.is_empty() {
                let ranked = index.text_top_features(&analyzed, &request)?;
                ranked.features.iter().map(|f| f.feature).collect()
            } else {
                features
            };
            let tokens = saeidx_view::text_tokens(&analyzed, &features, request.exclusions);
            let html = saeidx_view::render_text(index.registry(), &text, &features, &tokens);
            saeidx_format::atomic::write_file(&out, html.as_bytes())?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
