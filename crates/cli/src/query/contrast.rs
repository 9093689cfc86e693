//! `saeidx contrast`: features over-represented in one set of documents relative to
//! another (or to the rest of the index), both ways.

use clap::Args;
use saeidx_query::{Contrast, ContrastFeature, ContrastRequest, Restriction, limits::Limit};

use super::{ExclusionArgs, IndexArg, doc_ref, within};
use crate::{Output, print_json};

/// `saeidx contrast`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx contrast --a \"party = 'Federalist'\" --b \"party = 'Democratic-Republican'\"\n  saeidx contrast --a \"year < 1800\"                 # against every other document\n  saeidx contrast --a-docs 3,4 --b-docs 7,8 --k 20 --json\n\n\
     Score: the log-odds ratio of firing per token with an informative Dirichlet prior\n\
     (Monroe et al. 2008), divided by its standard error (z); rare features shrink towards\n\
     zero instead of topping the list by chance."
)]
pub struct ContrastArgs {
    /// Set A: the documents this filter selects.
    #[arg(long = "a", value_name = "FILTER")]
    a: Option<String>,
    /// Set A: these documents (numbers or ids, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "DOCS")]
    a_docs: Vec<String>,
    /// Set B: the documents this filter selects (without B: every document not in A).
    #[arg(long = "b", value_name = "FILTER")]
    b: Option<String>,
    /// Set B: these documents.
    #[arg(long, value_delimiter = ',', value_name = "DOCS")]
    b_docs: Vec<String>,
    #[arg(long, default_value_t = ContrastRequest::default().k, value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("Features per direction"))]
    k: usize,
    #[arg(long, default_value_t = ContrastRequest::default().examples, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Example texts per feature"))]
    examples: usize,
    #[arg(long, default_value_t = ContrastRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
    /// The prior's strength, in pseudo-tokens (larger: rare features shrink more).
    #[arg(long, default_value_t = ContrastRequest::default().prior)]
    prior: f64,
    /// Leave out features firing on fewer tokens of A and B together.
    #[arg(long, default_value_t = ContrastRequest::default().min_count)]
    min_count: u64,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    output: Output,
}

fn restriction(filter: Option<String>, docs: &[String]) -> Restriction {
    Restriction {
        filter,
        docs: (!docs.is_empty()).then(|| docs.iter().map(|d| doc_ref(d)).collect()),
    }
}

/// `saeidx contrast`.
pub fn contrast(args: ContrastArgs) -> anyhow::Result<()> {
    let a = restriction(args.a, &args.a_docs);
    if a.is_all() {
        anyhow::bail!("say which documents A is: --a FILTER and/or --a-docs D,...");
    }
    let b = restriction(args.b, &args.b_docs);
    let index = args.index.open()?;
    let answer = index.contrast(&ContrastRequest {
        a,
        b: (!b.is_all()).then_some(b),
        k: args.k,
        examples: args.examples,
        context: args.context,
        exclusions: args.exclusions.exclusions(),
        prior: args.prior,
        min_count: args.min_count,
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print(&answer);
    Ok(())
}

fn print(answer: &Contrast) {
    println!(
        "A: {} documents, {} tokens; B: {} documents, {} tokens (prior {}, min count {})",
        answer.documents_a,
        answer.tokens_a,
        answer.documents_b,
        answer.tokens_b,
        answer.prior,
        answer.min_count
    );
    for (title, features) in [
        ("more in A", &answer.a_over_b),
        ("more in B", &answer.b_over_a),
    ] {
        println!("\n{title}:");
        for feature in features {
            print_feature(feature);
        }
    }
}

fn print_feature(f: &ContrastFeature) {
    println!(
        "  feature {:>6}  z {:>6.1}  log-odds {:>5.2}  A {} ({:.3}%)  B {} ({:.3}%){}",
        f.feature,
        f.z,
        f.log_odds,
        f.count_a,
        100.0 * f.rate_a,
        f.count_b,
        100.0 * f.rate_b,
        f.label
            .as_ref()
            .and_then(|l| l.name.as_ref())
            .map(|name| format!("  [{name}]"))
            .unwrap_or_default()
    );
    for hit in &f.examples {
        println!("      {:.3}  {}", hit.activation, hit.snippet.marked());
    }
}
