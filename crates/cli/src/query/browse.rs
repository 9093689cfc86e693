//! `saeidx document` and `saeidx overview`: the browsing answers of the web UI's
//! document page and home page, as text or (`--json`) as the answer types.

use clap::Args;
use saeidx_query::{DocRef, DocumentPage, DocumentRequest, Overview, OverviewRequest};

use super::{ExclusionArgs, IndexArg};
use crate::{Output, print_json};

/// `saeidx document`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx document 3\n  saeidx document sotu-1863 --feature 4482 --page 1 --json"
)]
pub struct DocumentArgs {
    /// The document: its number, or its id.
    doc: String,
    /// The feature to colour by (default: the document's strongest).
    #[arg(long)]
    feature: Option<u32>,
    /// The page, from 0.
    #[arg(long, default_value_t = DocumentRequest::default().page)]
    page: u32,
    /// Tokens per page (at most 500).
    #[arg(long, default_value_t = DocumentRequest::default().page_tokens)]
    page_tokens: u32,
    /// How many of the document's top features to list.
    #[arg(long, default_value_t = DocumentRequest::default().top)]
    top: usize,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx overview`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx overview\n  saeidx overview --frequent 20 --docs 10 --json"
)]
pub struct OverviewArgs {
    /// Features in the most and least frequent lists.
    #[arg(long, default_value_t = OverviewRequest::default().frequent)]
    frequent: usize,
    /// Live features sampled at random.
    #[arg(long, default_value_t = OverviewRequest::default().sample)]
    sample: usize,
    /// The sample's seed.
    #[arg(long, default_value_t = OverviewRequest::default().seed)]
    seed: u64,
    /// Documents listed.
    #[arg(long, default_value_t = OverviewRequest::default().documents)]
    docs: usize,
    /// The first document listed.
    #[arg(long, default_value_t = OverviewRequest::default().documents_from)]
    docs_from: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    output: Output,
}

/// `saeidx document`.
pub fn document(args: DocumentArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let doc = args
        .doc
        .parse()
        .map(DocRef::Number)
        .unwrap_or(DocRef::Id(args.doc.clone()));
    let answer = index.document_page(&DocumentRequest {
        doc,
        feature: args.feature,
        page: args.page,
        page_tokens: args.page_tokens,
        top: args.top,
        exclusions: args.exclusions.exclusions(),
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print_document(&answer);
    Ok(())
}

fn print_document(answer: &DocumentPage) {
    println!(
        "document {} ({}, {}): {} tokens, page {} of {}",
        answer.doc,
        answer.id,
        answer.source,
        answer.tokens,
        answer.page + 1,
        answer.pages
    );
    println!("  top features (max, sum, tokens):");
    for f in &answer.top_features {
        println!(
            "    feature {:>6}  {:>8.3} {:>9.2} {:>5}  {}",
            f.feature,
            f.max_activation,
            f.sum_activation,
            f.count,
            f.name.as_deref().unwrap_or("")
        );
    }
    let Some(feature) = answer.feature else {
        println!("  no feature fires in it");
        return;
    };
    println!(
        "  the page's text, tokens where feature {feature} fires marked [[token|activation]]:"
    );
    let text: String = answer
        .page_content
        .iter()
        .map(|t| {
            if t.activation > 0.0 {
                format!("[[{}|{:.2}]]", t.text, t.activation)
            } else {
                t.text.clone()
            }
        })
        .collect();
    println!("{text}");
}

/// `saeidx overview`.
pub fn overview(args: OverviewArgs) -> anyhow::Result<()> {
    let index = args.index.open()?;
    let answer = index.overview(&OverviewRequest {
        frequent: args.frequent,
        sample: args.sample,
        seed: args.seed,
        documents: args.docs,
        documents_from: args.docs_from,
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print_overview(&answer);
    Ok(())
}

fn print_overview(answer: &Overview) {
    let p = &answer.provenance;
    let c = &answer.counts;
    println!(
        "{} at {}; SAE {} ({}, {} features)",
        p.model, p.hook, p.sae, p.sae_architecture, p.d_sae
    );
    println!(
        "{} documents, {} tokens ({} counted), {} nonzeros; {} live and {} dead features",
        c.documents,
        c.tokens,
        c.content_tokens,
        c.nonzeros,
        answer.live_features,
        answer.dead_features
    );
    println!("feature densities (log10 bins):");
    let d = &answer.density;
    for (i, count) in d.counts.iter().enumerate() {
        println!(
            "  1e{:>6.2} – 1e{:>6.2}  {:>6}  {}",
            d.log10_edges[i],
            d.log10_edges[i + 1],
            count,
            "#".repeat((*count as usize).min(60))
        );
    }
    for (title, list) in [
        ("most frequent", &answer.most_frequent),
        ("least frequent (live)", &answer.least_frequent),
        ("sampled", &answer.sampled),
    ] {
        println!("{title}:");
        for f in list {
            println!(
                "  feature {:>6}  {:>8} tokens  density {:.2e}  max {:.3}  {}",
                f.feature,
                f.count,
                f.density,
                f.max_activation,
                f.name.as_deref().unwrap_or("")
            );
        }
    }
    println!("labelled: {}", answer.labelled.len());
    for l in &answer.labelled {
        println!(
            "  feature {:>6}  {}  {}{}",
            l.feature,
            l.name.as_deref().unwrap_or(""),
            l.confidence.as_deref().unwrap_or(""),
            if l.draft { " (draft)" } else { "" }
        );
    }
    println!("documents:");
    for doc in &answer.documents {
        let metadata: String = answer
            .metadata_columns
            .iter()
            .map(|c| match doc.metadata.get(&c.name) {
                Some(serde_json::Value::String(s)) => format!("  {}={s}", c.name),
                Some(value) => format!("  {}={value}", c.name),
                None => format!("  {}=null", c.name),
            })
            .collect();
        println!(
            "  {:>5}  {}{metadata}  {} tokens  {}",
            doc.doc,
            doc.id,
            doc.tokens,
            doc.preview.replace('\n', " ")
        );
    }
}
