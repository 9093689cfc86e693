//! `saeidx documents`: an index's documents with their metadata, optionally filtered.

use anyhow::Context;
use clap::Args;
use saeidx_query::{DocumentList, DocumentsRequest, limits::Limit, list_documents};

use super::{IndexArg, within};
use crate::{Output, print_json};

/// `saeidx documents`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx documents --where \"year >= 1900 and party = 'Democratic'\"\n  \
     saeidx documents --where \"party in ('Whig', 'Federalist') or president is null\" --json\n  \
     saeidx documents --index indexes/sotu-all --limit 20 --offset 40\n\n\
     A filter compares the columns doc, id, source, tokens and the index's metadata columns\n\
     (saeidx info lists them) with = != < <= > >=, in (...), not in (...), is [not] null,\n\
     combined with and, or, not and parentheses; strings in 'single quotes'. Nulls follow\n\
     SQL: a comparison with a missing value is never true."
)]
pub struct DocumentsArgs {
    /// Only the documents this filter selects (see below).
    #[arg(long = "where", value_name = "FILTER")]
    filter: Option<String>,
    #[arg(
        long,
        default_value_t = DocumentsRequest::default().limit,
        value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("How many documents to list")
    )]
    limit: usize,
    /// How many matching documents to pass over first.
    #[arg(long, default_value_t = DocumentsRequest::default().offset)]
    offset: usize,
    /// Include each document's text.
    #[arg(long)]
    text: bool,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    output: Output,
}

/// `saeidx documents`.
pub fn documents(args: DocumentsArgs) -> anyhow::Result<()> {
    let request = DocumentsRequest {
        filter: args.filter,
        limit: args.limit,
        offset: args.offset,
        text: args.text,
    };
    let answer = list_documents(&args.index.index, &request)
        .with_context(|| format!("listing the documents of {}", args.index.index.display()))?;
    if args.output.json {
        return print_json(&answer);
    }
    print(&answer);
    Ok(())
}

/// The list as a table for people: number, id, tokens, then each metadata column.
fn print(answer: &DocumentList) {
    let columns: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    println!(
        "{} of {} documents{}",
        answer.matched,
        answer.documents_total,
        answer
            .filter
            .as_ref()
            .map(|f| format!(" where {f}"))
            .unwrap_or_default()
    );
    let mut header = vec!["doc", "id", "tokens"];
    header.extend(&columns);
    println!("{}", header.join("\t"));
    for document in &answer.documents {
        let mut row = vec![
            document.doc.to_string(),
            document.id.clone(),
            document.tokens.to_string(),
        ];
        for column in &columns {
            row.push(match document.metadata.get(*column) {
                None | Some(serde_json::Value::Null) => "-".into(),
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            });
        }
        println!("{}", row.join("\t"));
        if let Some(text) = &document.text {
            println!("{text}\n");
        }
    }
    let shown = answer.documents.len() as u64;
    if shown > 0 && shown < answer.matched {
        println!("({shown} shown; --limit and --offset page through the rest)");
    }
}
