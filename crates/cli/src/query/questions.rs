//! The questions: `top-texts`, `top-features`, `feature`, `silent`, `explain`, `sample`,
//! `info`, and `query build`.

use std::{ops::Range, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use saeidx_query::{
    DocRef, ExplainRequest, FeatureRequest, InfoRequest, SampleRequest, SilentRequest,
    TopFeaturesRequest, TopTextsRequest, limits::Limit,
};

use super::{
    AggregateArg, ExclusionArgs, IndexArg, RankArg, RestrictArgs, analyze, parse_range, print,
    within,
};
use crate::{Models, Output, Sources, print_json};

/// `saeidx top-texts`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx top-texts --feature 1234\n  saeidx top-texts --feature 1234 --k 20 --rank doc-max --context 12 --json\n  saeidx top-texts --feature 1234 --where \"year >= 1900 and party = 'Democratic'\"\n  saeidx top-texts --feature 1234 --docs 3,17,sotu-1863\n  saeidx top-texts --feature 1234 --token \" Senate\"   # its strongest hits on that token"
)]
pub struct TopTextsArgs {
    /// The feature.
    #[arg(long)]
    feature: u32,
    #[arg(long, default_value_t = TopTextsRequest::default().k, value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("How many texts"))]
    k: usize,
    /// Rank tokens, or documents by their max or sum.
    #[arg(long, value_enum, default_value = "token")]
    rank: RankArg,
    #[arg(long, default_value_t = TopTextsRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of the hit"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    restrict: RestrictArgs,
    /// Only hits on this token.
    #[command(flatten)]
    token: super::tokens::TokenArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx top-features`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx top-features --doc 3\n  saeidx top-features --doc-id sotu-1863 --tokens 10..40 --per-token\n  saeidx top-features --text \"Paris is the capital of France\" --k 5 --json\n  saeidx top-features --where \"year < 1800\" --aggregate sum   # over every token of those documents"
)]
pub struct TopFeaturesArgs {
    /// A document of the index, by number.
    #[arg(long, group = "what")]
    doc: Option<u32>,
    /// A document of the index, by its id.
    #[arg(long, group = "what")]
    doc_id: Option<String>,
    /// A text, run live through the index's model and SAE.
    #[arg(long, group = "what")]
    text: Option<String>,
    /// Only these token positions (START..END, START <= END) of the document.
    #[arg(long, value_parser = parse_range)]
    tokens: Option<Range<u32>>,
    #[arg(long, default_value_t = TopFeaturesRequest::default().k, value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("How many features"))]
    k: usize,
    /// Score per text by the max or the sum over tokens.
    #[arg(long, value_enum, default_value = "max")]
    aggregate: AggregateArg,
    /// List each token's top features instead.
    #[arg(long)]
    per_token: bool,
    /// For --text: a model folder or repo other than the recorded one (it must be
    /// identical to the index's).
    #[arg(long)]
    model: Option<String>,
    /// For --text: the SAE folder, if not where the manifest records it (e.g. a fetched
    /// index of a local SAE); it must be identical to the index's.
    #[arg(long)]
    sae: Option<PathBuf>,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    /// Instead of one document: every token of a set of documents.
    #[command(flatten)]
    restrict: RestrictArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx feature`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx feature 1234\n  saeidx feature 1234 --examples 3 --bands 4 --neighbours 5 --json\n  saeidx feature 1234 --where \"party = 'Whig'\"   # statistics, examples and neighbours in those documents"
)]
pub struct FeatureArgs {
    /// The feature.
    feature: u32,
    #[arg(long, default_value_t = FeatureRequest::default().examples, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top examples"))]
    examples: usize,
    #[arg(long, default_value_t = FeatureRequest::default().bands, value_parser = within::<usize>(Limit::Bands),
        help = Limit::Bands.help("Activation bands (quantiles of the feature's activations) to sample from"))]
    bands: usize,
    #[arg(long, default_value_t = FeatureRequest::default().per_band, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Examples per activation band"))]
    per_band: usize,
    #[arg(long, default_value_t = FeatureRequest::default().neighbours, value_parser = within::<usize>(Limit::Neighbours),
        help = Limit::Neighbours.help("Co-activating features to list"))]
    neighbours: usize,
    #[arg(long, default_value_t = FeatureRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    restrict: RestrictArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx silent`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx silent 1234 --n 5\n  saeidx silent 1234 --token 6342 --token 3245 --context 6 --json   # the same words where it does not fire"
)]
pub struct SilentArgs {
    /// The feature.
    feature: u32,
    #[arg(long, default_value_t = SilentRequest::default().n, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("How many contexts"))]
    n: usize,
    /// Centre the contexts on this token id (repeatable, most wanted first; e.g. the
    /// `token` of the feature's top texts); without it, contexts come from anywhere.
    #[arg(long = "token")]
    tokens: Vec<u32>,
    #[arg(long, default_value_t = SilentRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens on each side of the centre (the whole window is silent)"))]
    context: u32,
    /// Random seed (the same seed gives the same contexts).
    #[arg(long, default_value_t = SilentRequest::default().seed)]
    seed: u64,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx explain`.
#[derive(Args)]
#[command(
    after_help = "Example:\n  saeidx explain \"The Senate and House of Representatives shall make appropriations\" --features 3 --texts 3"
)]
pub struct ExplainArgs {
    /// The text to analyse (run live through the index's model and SAE).
    text: String,
    #[arg(long, default_value_t = ExplainRequest::default().features, value_parser = within::<usize>(Limit::Features),
        help = Limit::Features.help("How many of its strongest features to explain"))]
    features: usize,
    #[arg(long, default_value_t = ExplainRequest::default().texts, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top texts of the index per feature"))]
    texts: usize,
    #[arg(long, default_value_t = ExplainRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of a text's hit"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx sample`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx sample --n 10\n  saeidx sample --n 50 --seed 7 --examples 3 --json"
)]
pub struct SampleArgs {
    #[arg(long, default_value_t = SampleRequest::default().n, value_parser = within::<usize>(Limit::Sample),
        help = Limit::Sample.help("How many live features"))]
    n: usize,
    /// Random seed (the same seed gives the same features).
    #[arg(long, default_value_t = SampleRequest::default().seed)]
    seed: u64,
    #[arg(long, default_value_t = SampleRequest::default().examples, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top examples per feature"))]
    examples: usize,
    #[arg(long, default_value_t = SampleRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    restrict: RestrictArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx info`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx info\n  saeidx info --index indexes/default --dead --json"
)]
pub struct InfoArgs {
    /// List the dead features (never active on a counted token).
    #[arg(long)]
    dead: bool,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    output: Output,
}

/// `saeidx query ...`.
#[derive(Subcommand)]
pub enum QueryCommand {
    /// Build (or rebuild) the query files of an index folder from its Parquet (for a
    /// Parquet-only folder someone shared; `saeidx run` and `merge` build them).
    #[command(
        after_help = "Examples:\n  saeidx query build indexes/default\n  saeidx query build indexes/big --memory 512"
    )]
    Build {
        /// The index folder.
        index: PathBuf,
        /// MiB of activations the build's external sort holds in memory before it
        /// spills sorted runs to disk (peak memory does not grow with the corpus).
        #[arg(long, value_name = "MIB", default_value_t = saeidx_query::DEFAULT_BUILD_MEMORY >> 20)]
        memory: u64,
        #[command(flatten)]
        output: Output,
    },
    /// Compute an index's logit effects (each feature's top and bottom output tokens
    /// through the model's unembedding) when it has none, or show a feature's.
    #[command(
        after_help = "Examples:\n  saeidx query logits indexes/default\n  saeidx query logits indexes/default --feature 4482 --json\n  saeidx query logits indexes/default --rebuild --k 20"
    )]
    Logits(super::logits::LogitsArgs),
}

/// `saeidx top-texts`.
pub fn top_texts(args: TopTextsArgs) -> anyhow::Result<()> {
    let request = TopTextsRequest {
        feature: args.feature,
        k: args.k,
        rank: args.rank.into(),
        context: args.context,
        exclusions: args.exclusions.exclusions(),
        restrict: args.restrict.restriction(),
        token: args.token.one()?,
    };
    let answer = args.index.open()?.top_texts(&request)?;
    if args.output.json {
        return print_json(&answer);
    }
    print::top_texts(&answer);
    Ok(())
}

/// `saeidx top-features`.
pub fn top_features(args: TopFeaturesArgs, models: &dyn Models) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let request = TopFeaturesRequest {
        k: args.k,
        aggregate: args.aggregate.into(),
        tokens: args.tokens.clone(),
        exclusions: args.exclusions.exclusions(),
    };
    if let Some(text) = &args.text {
        if args.tokens.is_some() {
            bail!("--tokens applies to --doc and --doc-id, not --text");
        }
        let sources = Sources {
            model: args.model.clone(),
            sae: args.sae.iter().cloned().collect(),
        };
        let analyzed = analyze(&index, text, &sources, models)?;
        if args.per_token {
            return print::per_token(&index.text_per_token(&analyzed, &request)?, args.output);
        }
        return print::top_features(&index.text_top_features(&analyzed, &request)?, args.output);
    }
    let doc = match (&args.doc, &args.doc_id) {
        (Some(doc), _) => DocRef::Number(*doc),
        (None, Some(id)) => DocRef::Id(id.clone()),
        (None, None) => {
            let restrict = args.restrict.restriction();
            if restrict.is_all() {
                bail!(
                    "say which text: --doc N, --doc-id ID, --text \"...\", or a set of documents with --where or --docs"
                );
            }
            if args.per_token {
                bail!("--per-token applies to one document or text, not a set");
            }
            let answer = index.subset_features(&restrict, &request)?;
            return print::subset_features(&answer, args.output);
        }
    };
    if args.per_token {
        return print::per_token(&index.per_token(&doc, &request)?, args.output);
    }
    print::top_features(&index.top_features(&doc, &request)?, args.output)
}

/// `saeidx explain`: the seed's whole workflow in one command — the strongest features
/// of a text (live), then what makes each of them fire in the index.
pub fn explain(args: ExplainArgs, models: &dyn Models) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let analyzed = analyze(&index, &args.text, &Sources::default(), models)?;
    let answer = index.explain(
        &analyzed,
        &ExplainRequest {
            features: args.features,
            texts: args.texts,
            context: args.context,
            exclusions: args.exclusions.exclusions(),
        },
    )?;
    if args.output.json {
        return print_json(&answer);
    }
    print::explain(&answer);
    Ok(())
}

/// `saeidx feature`.
pub fn feature(args: FeatureArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let report = saeidx_compare::feature_report(
        &index,
        &FeatureRequest {
            feature: args.feature,
            examples: args.examples,
            bands: args.bands,
            per_band: args.per_band,
            neighbours: args.neighbours,
            context: args.context,
            exclusions: args.exclusions.exclusions(),
            restrict: args.restrict.restriction(),
        },
    )?;
    if args.output.json {
        return print_json(&report);
    }
    print::report(&report);
    Ok(())
}

/// `saeidx silent`: contexts where a feature fires on no counted token.
pub fn silent(args: SilentArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let answer = index.silent_contexts(&SilentRequest {
        feature: args.feature,
        n: args.n,
        context: args.context,
        tokens: args.tokens,
        seed: args.seed,
        exclusions: args.exclusions.exclusions(),
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print::silent(&answer);
    Ok(())
}

/// `saeidx sample`.
pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let answer = index.sample(&SampleRequest {
        n: args.n,
        seed: args.seed,
        examples: args.examples,
        context: args.context,
        restrict: args.restrict.restriction(),
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print::sample(&answer);
    Ok(())
}

/// `saeidx info`.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let request = InfoRequest {
        list_dead: args.dead,
    };
    let answer = args.index.open()?.info(&request)?;
    if args.output.json {
        return print_json(&answer);
    }
    print::info(&answer);
    Ok(())
}

/// `saeidx query ...`.
pub fn query(command: QueryCommand, models: &dyn Models) -> anyhow::Result<()> {
    match command {
        QueryCommand::Build {
            index,
            memory,
            output,
        } => {
            let options = saeidx_query::BuildOptions {
                memory: memory.saturating_mul(1 << 20),
            };
            let summary = saeidx_query::build_with(&index, &options)
                .with_context(|| format!("building the query files of {}", index.display()))?;
            if output.json {
                return print_json(&summary);
            }
            println!(
                "built {} ({:.1} MB, {:.1} bytes per nonzero) in {:.1} s",
                summary.dir.display(),
                summary.bytes as f64 / 1e6,
                summary.bytes as f64 / summary.counts.nonzeros.max(1) as f64,
                summary.seconds
            );
            Ok(())
        }
        QueryCommand::Logits(args) => super::logits::logits(args, models),
    }
}
