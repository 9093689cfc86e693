//! `saeidx compare INDEX_A INDEX_B`: two SAEs feature by feature, or two runs of one SAE.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use saeidx_compare::{
    CompareRequest, Comparison, MatchBy, RunComparison, SaeComparison, SaeFolders,
    table::write_parquet,
};
use saeidx_hub::HubSettings;
use saeidx_query::{AnyIndex, limits::Limit};

use super::{ExclusionArgs, within};
use crate::{Output, print_json};

/// `saeidx compare`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx compare indexes/default indexes/seed-2\n  \
    saeidx compare indexes/default indexes/seed-2 --by decoder --parquet matching.parquet\n  \
    saeidx compare indexes/nightly-1 indexes/nightly-2 --json   # one SAE: what changed\n\n\
    Two SAEs (different SHA-256): each feature of A's best matches in B by decoder cosine \
    and, when both indexes hold the same documents, by co-activation on the same tokens \
    (Pearson's r, Jaccard); a greedy one-to-one matching; features without counterpart; \
    features of A that split into several of B. One SAE (equal SHA-256), two runs: each \
    feature's change in density, max and mean, the top examples new in B, and the features \
    that appeared or vanished."
)]
pub struct CompareArgs {
    /// Index A.
    index_a: PathBuf,
    /// Index B.
    index_b: PathBuf,
    #[arg(long, default_value_t = CompareRequest::default().candidates, value_parser = within::<usize>(Limit::Neighbours),
        help = Limit::Neighbours.help("Best matches kept per feature of A by each measure"))]
    candidates: usize,
    /// What the one-to-one matching scores pairs by.
    #[arg(long, value_enum, default_value_t = ByArg::Auto)]
    by: ByArg,
    /// Pairs scoring below this are no match.
    #[arg(long, default_value_t = CompareRequest::default().min_score)]
    min_score: f64,
    #[arg(long, default_value_t = CompareRequest::default().examples, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Top examples compared per feature across runs"))]
    examples: usize,
    #[arg(long, default_value_t = CompareRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context each side of an example"))]
    context: u32,
    /// A folder holding A's SAE, tried before the place its manifest records.
    #[arg(long)]
    sae_a: Vec<PathBuf>,
    /// A folder holding B's SAE, tried before the place its manifest records.
    #[arg(long)]
    sae_b: Vec<PathBuf>,
    /// Also write the full matching (one row per feature of A and candidate; for two
    /// runs, one row per changed feature) as Parquet.
    #[arg(long)]
    parquet: Option<PathBuf>,
    /// Matched pairs (and splits, changed features) to print.
    #[arg(long, default_value_t = 20)]
    show: usize,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
enum ByArg {
    /// Co-activation when the indexes share their tokens, else decoder cosine.
    Auto,
    /// Cosine of the decoder directions.
    Decoder,
    /// Pearson's r over the shared tokens.
    Coactivation,
}

/// `saeidx compare`.
pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let open =
        |dir: &PathBuf| AnyIndex::open(dir).with_context(|| format!("opening {}", dir.display()));
    let (a, b) = (open(&args.index_a)?, open(&args.index_b)?);
    let request = CompareRequest {
        candidates: args.candidates,
        by: match args.by {
            ByArg::Auto => MatchBy::Auto,
            ByArg::Decoder => MatchBy::Decoder,
            ByArg::Coactivation => MatchBy::Coactivation,
        },
        min_score: args.min_score,
        examples: args.examples,
        context: args.context,
        exclusions: args.exclusions.exclusions(),
        ..CompareRequest::default()
    };
    let folders = SaeFolders {
        a: args.sae_a,
        b: args.sae_b,
    };
    let answer = saeidx_compare::compare(&a, &b, &folders, &HubSettings::from_env(), &request)?;
    if let Some(path) = &args.parquet {
        write_parquet(&answer, path)?;
        if !args.output.json {
            println!("wrote {}", path.display());
        }
    }
    if args.output.json {
        return print_json(&answer);
    }
    match &answer {
        Comparison::Saes(saes) => print_saes(saes, args.show),
        Comparison::Runs(runs) => print_runs(runs, args.show),
    }
    Ok(())
}

fn print_saes(c: &SaeComparison, show: usize) {
    println!(
        "A: {} ({} features, SAE {})\nB: {} ({} features, SAE {})",
        c.a.index, c.a.d_sae, c.a.sae, c.b.index, c.b.d_sae, c.b.sae
    );
    match (c.shared_tokens, &c.shared_tokens_absent) {
        (Some(n), _) => println!("shared tokens: {n}"),
        (None, Some(why)) => println!("no shared tokens ({why}): decoder cosine only"),
        (None, None) => {}
    }
    println!(
        "matched by {:?}: {} pairs; {} features of A without counterpart, {} of B; {} dead in A",
        c.matched_by,
        c.matched,
        c.unmatched_a.len(),
        c.unmatched_b.len(),
        c.dead_a.len()
    );
    println!("matched scores (10 bins over 0..1):");
    let peak = c.scores.histogram.iter().copied().max().unwrap_or(0).max(1);
    for (bin, count) in c.scores.histogram.iter().enumerate() {
        println!(
            "  {:.1}–{:.1} {:>7} {}",
            bin as f64 / 10.0,
            (bin + 1) as f64 / 10.0,
            count,
            "#".repeat((*count as usize * 40).div_ceil(peak as usize))
        );
    }
    let p = &c.scores.percentiles;
    if p.len() == 5 {
        println!(
            "  mean {:.3}; p10 {:.3} p25 {:.3} p50 {:.3} p75 {:.3} p90 {:.3}",
            c.scores.mean, p[0], p[1], p[2], p[3], p[4]
        );
    }
    let mut pairs: Vec<_> = c.features.iter().filter(|f| f.matched.is_some()).collect();
    pairs.sort_by(|x, y| y.score.unwrap_or(0.0).total_cmp(&x.score.unwrap_or(0.0)));
    println!("best matches (A -> B, score, decoder cosine, Pearson, Jaccard):");
    for f in pairs.iter().take(show) {
        let Some(m) = f.candidates.iter().find(|c| Some(c.feature) == f.matched) else {
            continue;
        };
        println!(
            "  {:>6} -> {:<6} {:.3}  cos {:.3}  r {}  J {}",
            f.feature,
            m.feature,
            f.score.unwrap_or(0.0),
            m.decoder_cosine,
            optional(m.pearson),
            optional(m.jaccard)
        );
    }
    println!("splits ({}):", c.splits.len());
    for s in c.splits.iter().take(show) {
        println!(
            "  {:>6} -> {:?}  union Jaccard {:.3} (best single {:.3}), covers {:.1}%",
            s.feature,
            s.into,
            s.union_jaccard,
            s.best_single_jaccard,
            s.coverage * 100.0
        );
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn print_runs(c: &RunComparison, show: usize) {
    println!(
        "one SAE ({}), two runs:\nA: {} ({} documents, {} tokens)\nB: {} ({} documents, {} tokens)",
        c.a.sae, c.a.index, c.a.documents, c.a.tokens, c.b.index, c.b.documents, c.b.tokens
    );
    println!(
        "{} features changed, {} unchanged; appeared: {:?}; vanished: {:?}",
        c.changed.len(),
        c.unchanged,
        c.appeared,
        c.vanished
    );
    println!("largest density changes (feature: density A -> B, max, mean, new top examples):");
    for f in c.changed.iter().take(show) {
        println!(
            "  {:>6}: {:.5} -> {:.5}  max {:.3} -> {:.3}  mean {:.3} -> {:.3}  {} new",
            f.feature,
            f.density[0],
            f.density[1],
            f.max_activation[0],
            f.max_activation[1],
            f.mean_activation[0],
            f.mean_activation[1],
            f.new_examples.len()
        );
        for hit in f.new_examples.iter().take(2) {
            println!("      {:.3}  {}", hit.activation, hit.snippet.marked());
        }
    }
}
