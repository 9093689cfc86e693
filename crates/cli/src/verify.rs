//! `saeidx verify`: checks an index folder (or each segment of one) against its
//! manifest, and its query files against their checksums.

use std::path::PathBuf;

use clap::Args;
use saeidx_format::{manifest::Manifest, segments::SegmentSet, verify as index_verify};
use serde_json::json;

use crate::{Output, print_json};

/// `saeidx verify` of a segmented index: every segment's Parquet and query files, and
/// each segment's manifest against `segments.json` ([`saeidx_query::verify_segments`]).
fn verify_segments(args: &VerifyArgs, set: &SegmentSet) -> anyhow::Result<()> {
    let verified = saeidx_query::verify_segments(&args.index, set)?;
    let (total, query_bytes) = (&verified.checked, verified.query_bytes);
    let names = &verified.segments;
    if args.output_format.json {
        return print_json(&json!({
            "index": args.index,
            "ok": true,
            "generation": set.generation,
            "segments": names,
            "checked": total,
            "query_bytes": query_bytes,
            "model": set.job.model.source,
            "sae": set.job.sae.source,
            "hook": set.job.hook,
        }));
    }
    println!(
        "{} is intact: {} segments ({}), generation {}: {} files ({:.1} MB), {} documents ({} live), {} tokens, {} nonzero activations checked; query files intact ({:.1} MB)",
        args.index.display(),
        names.len(),
        names.join(", "),
        set.generation,
        total.files,
        total.bytes as f64 / 1e6,
        total.documents,
        set.live_documents(),
        total.tokens,
        total.nonzeros,
        query_bytes as f64 / 1e6
    );
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Example:\n  saeidx verify indexes/default")]
pub struct VerifyArgs {
    /// The index folder.
    index: PathBuf,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx verify`.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    if let Some(set) = SegmentSet::read(&args.index)? {
        return verify_segments(&args, &set);
    }
    let (manifest, report): (Manifest, _) = index_verify::verify(&args.index)?;
    // The query files, when present, are checked chunk by chunk and row by row.
    let query_bytes = saeidx_query::verify_query_files(&args.index)?;
    if args.output_format.json {
        return print_json(&json!({
            "index": args.index,
            "ok": true,
            "checked": report,
            "query_bytes": query_bytes,
            "model": manifest.job.model.source,
            "sae": manifest.job.sae.source,
            "hook": manifest.job.hook,
        }));
    }
    println!(
        "{} is intact: {} files ({:.1} MB), {} documents, {} tokens, {} nonzero activations checked\nmodel {} @ {}  SAE {} ({} features)  hook {}",
        args.index.display(),
        report.files,
        report.bytes as f64 / 1e6,
        report.documents,
        report.tokens,
        report.nonzeros,
        manifest.job.model.source,
        manifest.job.model.commit.as_deref().unwrap_or("local"),
        manifest.job.sae.source,
        manifest.job.sae.d_sae,
        manifest.job.hook
    );
    match query_bytes {
        Some(bytes) => println!("query files intact ({:.1} MB)", bytes as f64 / 1e6),
        None => println!(
            "no query files: run `saeidx query build {}` to query it",
            args.index.display()
        ),
    }
    Ok(())
}
