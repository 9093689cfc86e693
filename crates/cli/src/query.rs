//! The query commands: `top-texts`, `top-features`, `explain`, `feature`, `sample`,
//! `info`, `query build` and `labels`.

use std::{ops::Range, path::PathBuf, str::FromStr};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use saeidx_hub::HubSettings;
use saeidx_indexer::live::LiveSources;
use saeidx_query::{
    Aggregate, Exclusions, FeatureLabel, FeatureReport, FeatureScore, QueryIndex, Rank, Registry,
    TextHit, TokenCodes, limits::Limit, rank_features,
};
use serde_json::json;

use crate::{Output, print_json};

/// Which index to query.
#[derive(Args, Clone)]
pub struct IndexArg {
    /// The index folder.
    #[arg(long, env = "SAEIDX_INDEX", default_value = "indexes/default")]
    index: PathBuf,
}

/// A value parser for a size bounded by `limit`: the query library's own check, so
/// the command refuses exactly what the library (and the web server) would.
fn within<T>(limit: Limit) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + TryInto<u64> + Copy,
    T::Err: std::fmt::Display,
{
    move |text: &str| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|e| format!("{text:?} is not a count: {e}"))?;
        limit.check(value).map_err(|e| e.to_string())
    }
}

impl IndexArg {
    /// Opens the index.
    pub(crate) fn open(&self) -> anyhow::Result<QueryIndex> {
        QueryIndex::open(&self.index).with_context(|| format!("opening {}", self.index.display()))
    }
}

/// Which tokens count (special tokens and attention sinks are left out by default).
#[derive(Args, Clone, Copy)]
pub struct ExclusionArgs {
    /// Count special tokens (BOS, ...) too.
    #[arg(long)]
    include_special: bool,
    /// Count attention-sink positions (the first token of each document or window) too.
    #[arg(long)]
    include_sinks: bool,
}

impl ExclusionArgs {
    fn exclusions(self) -> Exclusions {
        Exclusions {
            special: !self.include_special,
            sinks: !self.include_sinks,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RankArg {
    /// Each token on its own.
    Token,
    /// Documents by their largest activation.
    DocMax,
    /// Documents by the sum of their activations.
    DocSum,
}

#[derive(Clone, Copy, ValueEnum)]
enum AggregateArg {
    /// The largest activation over the tokens (mlxterp's rule).
    Max,
    /// The sum over the tokens.
    Sum,
}

impl From<AggregateArg> for Aggregate {
    fn from(value: AggregateArg) -> Self {
        match value {
            AggregateArg::Max => Aggregate::Max,
            AggregateArg::Sum => Aggregate::Sum,
        }
    }
}

/// `saeidx top-texts`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx top-texts --feature 1234\n  saeidx top-texts --feature 1234 --k 20 --rank doc-max --context 12 --json"
)]
pub struct TopTextsArgs {
    /// The feature.
    #[arg(long)]
    feature: u32,
    #[arg(long, default_value_t = 10, value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("How many texts"))]
    k: usize,
    /// Rank tokens, or documents by their max or sum.
    #[arg(long, value_enum, default_value = "token")]
    rank: RankArg,
    #[arg(long, default_value_t = 8, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of the hit"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx top-features`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx top-features --doc 3\n  saeidx top-features --doc-id sotu-1863 --tokens 10..40 --per-token\n  saeidx top-features --text \"Paris is the capital of France\" --k 5 --json"
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
    #[arg(long, default_value_t = 10, value_parser = within::<usize>(Limit::K),
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
    #[command(flatten)]
    output: Output,
}

/// `saeidx feature`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx feature 1234\n  saeidx feature 1234 --examples 3 --bands 4 --neighbours 5 --json"
)]
pub struct FeatureArgs {
    /// The feature.
    feature: u32,
    #[arg(long, default_value_t = 5, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top examples, and examples per activation band"))]
    examples: usize,
    #[arg(long, default_value_t = 5, value_parser = within::<usize>(Limit::Bands),
        help = Limit::Bands.help("Activation bands (quantiles of the feature's activations) to sample from"))]
    bands: usize,
    #[arg(long, default_value_t = 10, value_parser = within::<usize>(Limit::Neighbours),
        help = Limit::Neighbours.help("Co-activating features to list"))]
    neighbours: usize,
    #[arg(long, default_value_t = 8, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
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
    #[arg(long, default_value_t = 3, value_parser = within::<usize>(Limit::Features),
        help = Limit::Features.help("How many of its strongest features to explain"))]
    features: usize,
    #[arg(long, default_value_t = 5, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top texts of the index per feature"))]
    texts: usize,
    #[arg(long, default_value_t = 8, value_parser = within::<u32>(Limit::Context),
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
    #[arg(long, default_value_t = 10, value_parser = within::<usize>(Limit::Sample),
        help = Limit::Sample.help("How many live features"))]
    n: usize,
    /// Random seed (the same seed gives the same features).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 3, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top examples per feature"))]
    examples: usize,
    #[arg(long, default_value_t = 8, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
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
    #[command(after_help = "Example:\n  saeidx query build indexes/default")]
    Build {
        /// The index folder.
        index: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

/// `saeidx labels ...`: the feature registry stored with the index.
#[derive(Subcommand)]
pub enum LabelsCommand {
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

fn label_text(label: Option<&FeatureLabel>) -> String {
    label
        .and_then(|l| l.name.clone().or(l.description.clone()))
        .map(|name| format!("  \"{name}\""))
        .unwrap_or_default()
}

fn print_hits(hits: &[TextHit]) {
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>3}. [{:.3}] {} (doc {}, position {}): {}",
            i + 1,
            hit.score,
            hit.id,
            hit.doc,
            hit.position,
            hit.snippet.marked()
        );
    }
}

/// `saeidx top-texts`.
pub fn top_texts(args: TopTextsArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let rank = match args.rank {
        RankArg::Token => Rank::Token,
        RankArg::DocMax => Rank::DocumentMax,
        RankArg::DocSum => Rank::DocumentSum,
    };
    let hits = index.top_texts(
        args.feature,
        args.k,
        rank,
        args.context,
        args.exclusions.exclusions(),
    )?;
    if args.output.json {
        return print_json(&json!({
            "feature": args.feature,
            "label": index.registry().get(args.feature),
            "rank": rank,
            "texts": hits,
        }));
    }
    println!(
        "feature {}{}: top {} texts by {}",
        args.feature,
        label_text(index.registry().get(args.feature)),
        hits.len(),
        match rank {
            Rank::Token => "token activation",
            Rank::DocumentMax => "document max",
            Rank::DocumentSum => "document sum",
        }
    );
    print_hits(&hits);
    Ok(())
}

/// One token of the text `top-features` ranks: (position, its text, features, values).
type TextToken = (u32, String, Vec<u32>, Vec<f32>);

/// Runs `text` through the index's model and SAE (or those `sources` names); the
/// tokens `exclusions` keep.
fn live_tokens(
    index: &QueryIndex,
    text: &str,
    sources: &LiveSources,
    exclusions: Exclusions,
) -> anyhow::Result<Vec<TextToken>> {
    let live = saeidx_indexer::live::LiveAnalyzer::for_index(
        index.manifest(),
        index.dir(),
        sources,
        &HubSettings::from_env(),
    )
    .context("loading the index's model and SAE for the live text")?;
    Ok(live
        .analyze(text)?
        .into_iter()
        .filter(|t| !exclusions.leaves_out(t.special, t.sink))
        .map(|t| {
            let piece = text.get(t.span.clone()).unwrap_or_default().to_string();
            (t.position, piece, t.features, t.values)
        })
        .collect())
}

/// `saeidx top-features`.
pub fn top_features(args: TopFeaturesArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let exclusions = args.exclusions.exclusions();
    let aggregate = Aggregate::from(args.aggregate);
    let (what, tokens): (serde_json::Value, Vec<TextToken>) = if let Some(text) = &args.text {
        if args.tokens.is_some() {
            bail!("--tokens applies to --doc and --doc-id, not --text");
        }
        let sources = LiveSources {
            model: args.model.clone(),
            sae: args.sae.iter().cloned().collect(),
        };
        let kept = live_tokens(&index, text, &sources, exclusions)?;
        (json!({"text": text}), kept)
    } else {
        let doc = match (&args.doc, &args.doc_id) {
            (Some(doc), _) => *doc,
            (None, Some(id)) => index.document_by_id(id)?,
            (None, None) => bail!("say which text: --doc N, --doc-id ID or --text \"...\""),
        };
        let (id, _, _) = index.document(doc)?;
        let what =
            json!({"doc": doc, "id": id, "tokens": args.tokens.as_ref().map(|r| [r.start, r.end])});
        let mut tokens = Vec::new();
        for codes in index.document_codes(doc, args.tokens.clone(), exclusions)? {
            tokens.push((
                codes.position,
                index.token_text(doc, codes.position)?,
                codes.features.to_vec(),
                codes.values.to_vec(),
            ));
        }
        (what, tokens)
    };
    if args.per_token {
        let rows: Vec<serde_json::Value> = tokens
            .iter()
            .map(|(position, piece, features, values)| {
                let top: Vec<serde_json::Value> = features
                    .iter()
                    .zip(values)
                    .take(args.k)
                    .map(|(f, v)| json!({"feature": f, "activation": v}))
                    .collect();
                json!({"position": position, "token": piece, "features": top})
            })
            .collect();
        if args.output.json {
            return print_json(&json!({"of": what, "exclusions": exclusions, "tokens": rows}));
        }
        for (position, piece, features, values) in &tokens {
            let top: Vec<String> = features
                .iter()
                .zip(values)
                .take(args.k)
                .map(|(f, v)| format!("{f}:{v:.2}"))
                .collect();
            println!(
                "{position:>5} {:<16} {}",
                format!("{piece:?}"),
                top.join(" ")
            );
        }
        return Ok(());
    }
    let ranked: Vec<FeatureScore> = rank_features(
        tokens
            .iter()
            .map(|(position, _, features, values)| TokenCodes {
                position: *position,
                features,
                values,
            }),
        aggregate,
        args.k,
        index.d_sae(),
    );
    if args.output.json {
        let features: Vec<serde_json::Value> = ranked
            .iter()
            .map(|s| {
                json!({
                    "feature": s.feature, "score": s.score, "max": s.max,
                    "position": s.position, "tokens": s.tokens,
                    "label": index.registry().get(s.feature),
                })
            })
            .collect();
        return print_json(&json!({
            "of": what, "aggregate": aggregate, "exclusions": exclusions, "features": features,
        }));
    }
    for (i, score) in ranked.iter().enumerate() {
        let piece = tokens
            .iter()
            .find(|t| t.0 == score.position)
            .map(|t| t.1.as_str())
            .unwrap_or_default();
        println!(
            "{:>3}. feature {:>6}  {:.3}  (max at {} {:?}, active on {} tokens){}",
            i + 1,
            score.feature,
            score.score,
            score.position,
            piece,
            score.tokens,
            label_text(index.registry().get(score.feature))
        );
    }
    Ok(())
}

/// `saeidx explain`: the seed's whole workflow in one command — the strongest features
/// of a text (live), then what makes each of them fire in the index.
pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let exclusions = args.exclusions.exclusions();
    let tokens = live_tokens(&index, &args.text, &LiveSources::default(), exclusions)?;
    let ranked = rank_features(
        tokens
            .iter()
            .map(|(position, _, features, values)| TokenCodes {
                position: *position,
                features,
                values,
            }),
        Aggregate::Max,
        args.features,
        index.d_sae(),
    );
    let mut explained = Vec::new();
    for score in &ranked {
        let texts = index.top_texts(
            score.feature,
            args.texts,
            Rank::Token,
            args.context,
            exclusions,
        )?;
        let piece = tokens
            .iter()
            .find(|t| t.0 == score.position)
            .map(|t| t.1.clone())
            .unwrap_or_default();
        explained.push((score, piece, texts));
    }
    if args.output.json {
        let features: Vec<serde_json::Value> = explained
            .iter()
            .map(|(score, piece, texts)| {
                json!({
                    "feature": score.feature, "activation": score.max, "position": score.position,
                    "token": piece, "label": index.registry().get(score.feature), "top_texts": texts,
                })
            })
            .collect();
        return print_json(&json!({"text": args.text, "features": features}));
    }
    println!("{:?}\n", args.text);
    for (score, piece, texts) in &explained {
        println!(
            "feature {} ({:.3} on {:?}){}: fires most on",
            score.feature,
            score.max,
            piece,
            label_text(index.registry().get(score.feature))
        );
        print_hits(texts);
        println!();
    }
    Ok(())
}

fn print_report(report: &FeatureReport) {
    let s = &report.stats;
    println!(
        "feature {}{}\n  active on {} tokens (density {:.5}) in {} documents; max {:.3}, mean {:.3}; {} postings with excluded tokens",
        s.feature,
        label_text(report.label.as_ref()),
        s.count,
        s.density,
        s.documents,
        s.max,
        s.mean,
        s.postings
    );
    if let Some(label) = &report.label {
        for (key, value) in [
            ("description", &label.description),
            ("confidence", &label.confidence),
            ("notes", &label.notes),
        ] {
            if let Some(value) = value {
                println!("  {key}: {value}");
            }
        }
    }
    let peak = s.histogram.iter().copied().max().unwrap_or(0).max(1);
    println!("  histogram over (0, {:.3}]:", s.max);
    for (bin, count) in s.histogram.iter().enumerate() {
        let width = s.max / s.histogram.len() as f32;
        println!(
            "    {:>8.3} {:>8} {}",
            width * (bin + 1) as f32,
            count,
            "#".repeat((*count as usize * 40).div_ceil(peak as usize))
        );
    }
    println!("  top examples:");
    print_hits(&report.top);
    for band in &report.quantiles {
        println!(
            "  band {:.0}–{:.0}% from the top (activations {:.3}..{:.3}):",
            band.from * 100.0,
            band.to * 100.0,
            band.min,
            band.max
        );
        print_hits(&band.examples);
    }
    println!("  neighbours (Jaccard over tokens):");
    for n in &report.neighbours {
        println!(
            "    feature {:>6}  {:.3}  ({} tokens together; it fires on {})",
            n.feature, n.jaccard, n.together, n.count
        );
    }
}

/// `saeidx feature`.
pub fn feature(args: FeatureArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let report = index.feature(
        args.feature,
        args.examples,
        args.bands,
        args.neighbours,
        args.context,
        args.exclusions.exclusions(),
    )?;
    if args.output.json {
        return print_json(&report);
    }
    print_report(&report);
    Ok(())
}

/// `saeidx sample`.
pub fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let exclusions = Exclusions::default();
    let mut sampled = Vec::new();
    for feature in index.sample(args.n, args.seed)? {
        let stats = index.feature_stats(feature, exclusions)?;
        let top = index.top_texts(
            feature,
            args.examples,
            Rank::Token,
            args.context,
            exclusions,
        )?;
        sampled.push((feature, stats, top));
    }
    if args.output.json {
        let features: Vec<serde_json::Value> = sampled
            .iter()
            .map(|(feature, stats, top)| {
                json!({"feature": feature, "label": index.registry().get(*feature), "stats": stats, "top": top})
            })
            .collect();
        return print_json(&json!({"seed": args.seed, "features": features}));
    }
    for (feature, stats, top) in &sampled {
        println!(
            "feature {feature}{}: {} tokens, max {:.3}",
            label_text(index.registry().get(*feature)),
            stats.count,
            stats.max
        );
        print_hits(top);
    }
    Ok(())
}

/// `saeidx info`.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let live = index.live_features()?;
    let dead = index.dead_features()?;
    let manifest = index.manifest();
    let counts = index.counts()?;
    if args.output.json {
        return print_json(&json!({
            "index": index.dir(),
            "model": manifest.job.model.source,
            "sae": manifest.job.sae.source,
            "hook": manifest.job.hook,
            "counts": counts,
            "live_features": live.len(),
            "dead_features": if args.dead { json!(dead) } else { json!(dead.len()) },
            "labels": index.registry().len(),
        }));
    }
    println!(
        "{}: {} documents, {} tokens ({} counted), {} nonzero activations\nmodel {}  SAE {}  hook {}\n{} of {} features live, {} dead; {} labelled",
        index.dir().display(),
        counts.documents,
        counts.tokens,
        counts.content_tokens,
        counts.nonzeros,
        manifest.job.model.source,
        manifest.job.sae.source,
        manifest.job.hook,
        live.len(),
        index.d_sae(),
        dead.len(),
        index.registry().len()
    );
    if args.dead {
        let ids: Vec<String> = dead.iter().map(u32::to_string).collect();
        println!("dead: {}", ids.join(" "));
    }
    Ok(())
}

/// `saeidx query ...`.
pub fn query(command: QueryCommand) -> anyhow::Result<()> {
    match command {
        QueryCommand::Build { index, output } => {
            let summary = saeidx_query::build(&index)
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
    }
}

/// `saeidx labels ...`.
pub fn labels(command: LabelsCommand) -> anyhow::Result<()> {
    match command {
        LabelsCommand::Set {
            feature,
            name,
            description,
            examples,
            confidence,
            notes,
            index,
        } => {
            let mut index = index.open()?;
            if feature as usize >= index.d_sae() {
                return Err(saeidx_query::QueryError::FeatureOutOfRange {
                    feature,
                    d_sae: index.d_sae(),
                }
                .into());
            }
            let mut registry = index.registry().clone();
            registry.set(
                feature,
                FeatureLabel {
                    name,
                    description,
                    examples,
                    confidence,
                    notes,
                },
            );
            let path = index.save_registry(registry)?;
            println!("saved {}", path.display());
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
            let count = imported.len();
            let mut registry = if replace {
                Registry::default()
            } else {
                index.registry().clone()
            };
            registry.merge(imported);
            let path = index.save_registry(registry)?;
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

/// Each live token's piece of `text`: from the previous token's end to its own, so the
/// pieces concatenate to the text (gaps kept, shared UTF-8 characters shown once).
fn text_pieces(text: &str, tokens: &[saeidx_indexer::live::LiveToken]) -> Vec<String> {
    let mut cursor = 0;
    tokens
        .iter()
        .map(|t| {
            let end = t.span.end.max(cursor);
            let piece = text.get(cursor..end).unwrap_or_default().to_string();
            cursor = end;
            piece
        })
        .collect()
}

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
pub fn render(command: RenderCommand) -> anyhow::Result<()> {
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
                let report = index.feature(
                    feature,
                    examples,
                    bands,
                    neighbours,
                    context,
                    Exclusions::default(),
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
            let live = saeidx_indexer::live::LiveAnalyzer::for_index(
                index.manifest(),
                index.dir(),
                &LiveSources::default(),
                &HubSettings::from_env(),
            )
            .context("loading the index's model and SAE for the live text")?;
            let analyzed = live.analyze(&text)?;
            let exclusions = Exclusions::default();
            let features = if features.is_empty() {
                let kept: Vec<_> = analyzed
                    .iter()
                    .filter(|t| !exclusions.leaves_out(t.special, t.sink))
                    .collect();
                rank_features(
                    kept.iter().map(|t| TokenCodes {
                        position: t.position,
                        features: &t.features,
                        values: &t.values,
                    }),
                    Aggregate::Max,
                    5,
                    index.d_sae(),
                )
                .iter()
                .map(|s| s.feature)
                .collect()
            } else {
                features
            };
            let pieces = text_pieces(&text, &analyzed);
            let tokens: Vec<saeidx_view::TextToken> = analyzed
                .iter()
                .zip(pieces)
                .map(|(t, piece)| saeidx_view::TextToken {
                    text: piece,
                    values: saeidx_view::chosen_values(&t.features, &t.values, &features),
                    skipped: exclusions.leaves_out(t.special, t.sink),
                })
                .collect();
            let html = saeidx_view::render_text(index.registry(), &text, &features, &tokens);
            saeidx_format::atomic::write_file(&out, html.as_bytes())?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// `saeidx serve`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx serve                                   # indexes/default on http://127.0.0.1:8080/\n  \
    saeidx serve indexes/default indexes/sotu-all  # two indexes: /i/default/, /i/sotu-all/\n  \
    saeidx serve --port 9000 --no-live             # without loading the model\n  \
    saeidx serve --listen 0.0.0.0 --allow-host box.lan  # reachable from other machines\n\n\
Pages: / (search, random feature, text box), /feature/F (label form), /search?q=,\n\
/random, /text?q=. JSON: /api/indexes, /api/info, /api/feature/F,\n\
/api/top-texts?feature=F&k=K, /api/top-features?doc=D&k=K, POST /api/labels/F.\n\
Each index is also under /i/NAME/ (NAME: its folder name).\n\n\
Limits: request heads of 16 KiB, bodies of 64 KiB (413 beyond), answers within\n\
--timeout seconds (503 beyond), --max-connections open connections, idle connections\n\
closed after 30 s. Requests naming another Host are refused (421), and writes from\n\
other sites (Origin, Sec-Fetch-Site) too (403).")]
pub struct ServeArgs {
    /// Index folders to serve (default: --index).
    indexes: Vec<PathBuf>,
    /// Address to listen on: loopback by default, since the UI edits labels. Another
    /// address makes the server reachable from other machines (with a warning).
    #[arg(long, visible_alias = "bind", default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// Port (0: any free port, printed when serving starts).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Answers computed at once; more requests wait their turn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Open connections at most (further clients wait in the listen queue).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Seconds an answer may take before the client gets 503.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Another host name this server answers to (for --listen on a named machine).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Serve without loading the models and SAEs (no live texts).
    #[arg(long)]
    no_live: bool,
    /// An SAE folder for live texts, for indexes whose SAE is not where their manifest
    /// records it (repeatable; each index uses the one identical to its own).
    #[arg(long = "sae")]
    saes: Vec<PathBuf>,
    #[command(flatten)]
    index: IndexArg,
}

/// Live texts for the server: the index's model and SAE on their own thread.
struct ServerLive {
    worker: saeidx_indexer::live::LiveWorker,
}

impl saeidx_view::serve::LiveTexts for ServerLive {
    fn analyze(&mut self, text: &str) -> Result<Vec<saeidx_view::serve::LiveToken>, String> {
        let analyzed = self
            .worker
            .analyze(text.to_string())
            .map_err(|e| e.to_string())?;
        let exclusions = Exclusions::default();
        let pieces = text_pieces(text, &analyzed);
        Ok(analyzed
            .into_iter()
            .zip(pieces)
            .map(|(t, piece)| saeidx_view::serve::LiveToken {
                text: piece,
                skipped: exclusions.leaves_out(t.special, t.sink),
                features: t.features,
                values: t.values,
            })
            .collect())
    }
}

/// `saeidx serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let dirs = if args.indexes.is_empty() {
        vec![args.index.index.clone()]
    } else {
        args.indexes.clone()
    };
    let mut served = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let index = QueryIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let live: Option<Box<dyn saeidx_view::serve::LiveTexts>> = if args.no_live {
            None
        } else {
            let started = saeidx_indexer::live::LiveWorker::start(
                index.manifest().clone(),
                dir.clone(),
                LiveSources {
                    model: None,
                    sae: args.saes.clone(),
                },
                HubSettings::from_env(),
            );
            match started {
                Ok(worker) => Some(Box::new(ServerLive { worker })),
                Err(error) => {
                    eprintln!(
                        "warning: live texts (/text) are off for {}: {error}",
                        dir.display()
                    );
                    None
                }
            }
        };
        served.push(saeidx_view::serve::ServedIndex { dir, live });
    }
    let listener = std::net::TcpListener::bind((args.listen, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.listen, args.port))?;
    // With --port 0 the system picks a free port; the line says which.
    let listening = listener.local_addr()?;
    if !saeidx_view::serve::is_loopback(args.listen) {
        eprintln!(
            "warning: listening on {listening}: other machines can read these indexes and \
             edit their labels"
        );
    }
    let names: Vec<String> = served.iter().map(|s| s.dir.display().to_string()).collect();
    println!(
        "serving {} on http://{listening}/ (Ctrl-C to stop)",
        names.join(", ")
    );
    let options = saeidx_view::serve::ServeOptions {
        threads: usize::from(args.threads),
        max_connections: args.max_connections as usize,
        request_timeout: std::time::Duration::from_secs(args.timeout),
        allowed_hosts: args.allow_hosts,
        ..Default::default()
    };
    saeidx_view::serve::serve(listener, served, options)?;
    Ok(())
}
