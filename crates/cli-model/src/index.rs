//! `saeidx run`, `saeidx merge`, `saeidx compact`: build, combine and compact index
//! folders (`saeidx verify` is the front binary's: it needs no model).

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use saeidx_format::{
    manifest::{MANIFEST_FILE, Manifest},
    segments::SegmentSet,
};
use saeidx_hub::HubSettings;
use saeidx_indexer::{
    append,
    compact::{self, CompactOptions, Policy},
    job::{self, JobFile},
    merge, parts,
    parts::Shard,
    pipeline::{self, Event, RunOptions, RunSummary},
};
use saeidx_sae::logits::LogitOptions;
use serde_json::json;

use saeidx_cli::{Output, print_json};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx run pipelines/default.toml\n  \
    saeidx run pipelines/default.toml --max-documents 0 --output indexes/sotu-all\n  \
    saeidx run pipelines/default.toml --shard 2/4            # one of 4 machines\n  \
    saeidx merge indexes/default                             # then publish the shards\n  \
    saeidx run pipelines/nightly.toml --compact tiered --json  # append, then compact\n\n\
    Rerunning a killed job resumes it; a finished index of the same job is left as is.")]
pub struct RunArgs {
    /// The job file (pipelines/*.toml).
    job: PathBuf,
    /// Index shard i of n (0-based): the i-th of n consecutive blocks of the corpus's
    /// parts, into OUTPUT.shards/i-of-n (a segment: `saeidx merge OUTPUT` publishes them).
    #[arg(long)]
    shard: Option<Shard>,
    /// Override the job's output folder.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Override the job's document limit (0: no limit, the whole corpus).
    #[arg(long)]
    max_documents: Option<u64>,
    /// Replace an existing index of a different job at the output (e.g. yesterday's
    /// corpus). Without it, such an index is an error: nothing is ever appended or mixed.
    #[arg(long)]
    replace: bool,
    /// What an incremental run compacts when it is done: never, tiered (the merge
    /// policy) or all (default: the job's `[run] compact`, else never).
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    compact: Option<Policy>,
    #[command(flatten)]
    output_format: Output,
}

/// A compaction policy's name.
fn parse_policy(name: &str) -> Result<Policy, String> {
    match name {
        "never" => Ok(Policy::Never),
        "tiered" => Ok(Policy::Tiered),
        "all" => Ok(Policy::All),
        _ => Err(format!("{name:?}: expected never, tiered or all")),
    }
}

/// `saeidx run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut file = JobFile::read(&args.job)?;
    if let Some(output) = args.output {
        file.output = output;
    }
    if let Some(limit) = args.max_documents {
        file.run.max_documents = (limit > 0).then_some(limit);
    }
    if let Some(policy) = args.compact {
        file.run.compact = policy;
    }
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    // A shard indexes its block of the corpus's parts: count them first (a quick pass
    // over the texts, no tokenizing).
    let corpus_parts = if shard == Shard::WHOLE {
        None
    } else {
        let reader = file.corpus.reader()?;
        Some(parts::count_parts(
            reader,
            file.run.part_bytes,
            file.run.max_documents,
        )?)
    };
    let query_build = file.run.query_build();
    let reader = file.corpus.reader()?;
    let loaded =
        job::load(file, &HubSettings::from_env()).context("loading the job's model and SAE")?;
    let bar = if args.output_format.json {
        ProgressBar::hidden()
    } else {
        progress_bar(text_bytes(&loaded.file))
    };
    let output = &loaded.file.output;
    // An index of exactly this job (same corpus files) is up to date without a look at
    // its documents; another of the same model, SAE and settings is appended to.
    let up_to_date = !SegmentSet::is_segmented(output)
        && Manifest::read(output).is_ok_and(|m| m.job == loaded.spec);
    if shard == Shard::WHOLE
        && !args.replace
        && !up_to_date
        && append::appends_to(output, &loaded.spec)?
    {
        return run_incremental(&loaded, reader, &bar, args.output_format);
    }
    let mut on_event = progress_events(&bar);
    let summary = pipeline::run(
        &loaded.engine(),
        &loaded.spec,
        reader,
        &loaded.file.output,
        RunOptions {
            shard,
            replace: args.replace,
            first_doc: 0,
            query_build,
            corpus_parts,
        },
        &mut on_event,
    )?;
    bar.finish_and_clear();
    // Every shard computes them too: its folder is a segment, queried as it is.
    let written = saeidx_indexer::logits::write_logit_effects(
        &loaded,
        &summary.destination,
        summary.up_to_date,
        LogitOptions::default(),
    )
    .context("computing the features' logit effects (the index itself is complete)")?;
    if written.is_none() {
        eprintln!(
            "note: no logit effects: this SAE's decoder directions are not in the residual stream"
        );
    }
    report_run(&summary, args.output_format)
}

/// `saeidx run` on an index of the same job: only new and changed documents, into a
/// new segment ([`append`]).
fn run_incremental(
    loaded: &job::LoadedJob,
    reader: impl pipeline::DocumentSource,
    bar: &ProgressBar,
    output: Output,
) -> anyhow::Result<()> {
    let plan_reader = loaded.file.corpus.reader()?;
    let mut on_event = progress_events(bar);
    let summary = append::append(
        &loaded.engine(),
        &loaded.spec,
        plan_reader,
        reader,
        append::AppendTo {
            dir: &loaded.file.output,
            query_build: loaded.file.run.query_build(),
        },
        &mut |changes| {
            if !output.json {
                bar.suspend(|| {
                    println!(
                        "{}: {} new, {} changed, {} removed, {} unchanged documents",
                        loaded.file.output.display(),
                        changes.new,
                        changes.changed,
                        changes.removed,
                        changes.unchanged
                    )
                });
            }
        },
        &mut on_event,
    )?;
    bar.finish_and_clear();
    let run = &loaded.file.run;
    let compaction = compact::compact(
        &loaded.file.output,
        &CompactOptions {
            policy: run.compact,
            query_build: run.query_build(),
            ..CompactOptions::default()
        },
    )?;
    if output.json {
        let mut value = serde_json::to_value(&summary)?;
        value["compaction"] = serde_json::to_value(&compaction)?;
        return print_json(&value);
    }
    match (&summary.segment, summary.generation) {
        (Some(segment), _) => println!(
            "indexed the new and changed documents into segment {segment} ({:.1} s in the model and SAE); the index has {} live documents in {} segments",
            summary.model_s, summary.documents, summary.segments
        ),
        (None, Some(_)) => println!(
            "deleted the removed documents; the index has {} live documents in {} segments",
            summary.documents, summary.segments
        ),
        (None, None) => println!("nothing changed: the index is up to date"),
    }
    print_compaction(&compaction);
    Ok(())
}

/// What a compaction did, in words.
fn print_compaction(summary: &compact::CompactSummary) {
    for merged in &summary.merges {
        println!(
            "compacted {} into segment {} ({} parts linked, {} rewritten without deleted documents) in {:.1} s",
            merged.from.join(", "),
            merged.into,
            merged.linked_parts,
            merged.rewritten_parts,
            merged.seconds
        );
    }
    if !summary.removed.is_empty() {
        println!(
            "deleted segment folders no reader needs any more: {}",
            summary.removed.join(", ")
        );
    }
}

/// Progress-bar updates for a run's events.
fn progress_events(bar: &ProgressBar) -> impl FnMut(Event) + '_ {
    let mut tokens = 0u64;
    let started = std::time::Instant::now();
    move |event| match event {
        Event::Batch {
            tokens: t,
            text_bytes,
            ..
        } => {
            tokens += t;
            let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{tokens} tokens, {rate:.0} tokens/s"));
            bar.inc(text_bytes);
        }
        Event::PartComputed { text_bytes } | Event::PartSkipped { text_bytes } => {
            bar.inc(text_bytes)
        }
        Event::StartedOver { reason } => bar.suspend(|| eprintln!("note: {reason}")),
    }
}

/// Text bytes the job will read (a quick pass over the corpus, for the progress bar's
/// ETA; 0 when the corpus cannot be read, whose error the run itself then reports).
fn text_bytes(file: &JobFile) -> u64 {
    let Ok(reader) = file.corpus.reader() else {
        return 0;
    };
    let limit = file.run.max_documents.unwrap_or(u64::MAX) as usize;
    reader
        .take(limit)
        .map_while(Result::ok)
        .map(|document| document.text.len() as u64)
        .sum()
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    let bar = if total_bytes > 0 {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} of text  ETA {eta}  {msg}",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} of text  {msg}")
                .expect("a valid template"),
        );
        bar
    };
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn report_run(summary: &RunSummary, output: Output) -> anyhow::Result<()> {
    let manifest = &summary.manifest;
    // The shareable data: the Parquet files and the manifest.
    let data_bytes = manifest.data_bytes()
        + std::fs::metadata(summary.destination.join(MANIFEST_FILE)).map_or(0, |m| m.len());
    // The query files derived from it (absent for a shard).
    let query_bytes: u64 = std::fs::read_dir(summary.destination.join("query"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let activation_bytes: u64 = manifest
        .files()
        .filter(|f| f.path.starts_with("activations/"))
        .map(|f| f.bytes)
        .sum();
    let per_nonzero = |bytes: u64| bytes as f64 / manifest.counts.nonzeros.max(1) as f64;
    let wall = manifest.timings.get("wall_s").copied().unwrap_or(0.0);
    if output.json {
        return print_json(&json!({
            "index": summary.destination,
            "up_to_date": summary.up_to_date,
            "computed_parts": summary.computed_parts,
            "resumed_parts": summary.resumed_parts,
            "counts": manifest.counts,
            "bytes": data_bytes,
            "bytes_per_nonzero": per_nonzero(data_bytes),
            "activation_bytes_per_nonzero": per_nonzero(activation_bytes),
            "query_bytes": query_bytes,
            "timings": manifest.timings,
        }));
    }
    if summary.up_to_date {
        println!(
            "{} already holds this job's index (nothing to do)",
            summary.destination.display()
        );
    } else {
        println!(
            "indexed {} documents, {} tokens, {} nonzero activations in {:.1} s ({:.0} tokens/s; {} parts computed, {} resumed)",
            manifest.counts.documents,
            manifest.counts.tokens,
            manifest.counts.nonzeros,
            wall,
            manifest.counts.tokens as f64 / wall.max(1e-9),
            summary.computed_parts,
            summary.resumed_parts
        );
    }
    if manifest.counts.skipped_records > 0 {
        println!(
            "skipped {} bad corpus records",
            manifest.counts.skipped_records
        );
    }
    println!(
        "index: {}  (data {:.1} MB: {:.2} bytes per nonzero, {:.2} in activations; query files {:.1} MB)",
        summary.destination.display(),
        data_bytes as f64 / 1e6,
        per_nonzero(data_bytes),
        per_nonzero(activation_bytes),
        query_bytes as f64 / 1e6
    );
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx merge indexes/default                  # the shards in indexes/default.shards/\n  \
    saeidx merge merged-index shard-a shard-b ...  # shard folders named explicitly\n  \
    saeidx merge indexes/default --compact --memory 512  # then one segment, 512 MiB sort\n\n\
    The shards become the index's segments (hard links: no data copied, nothing rebuilt);\n\
    --compact then merges them into one segment, as `saeidx compact` does.")]
pub struct MergeArgs {
    /// The index folder to publish.
    output: PathBuf,
    /// Shard folders (default: OUTPUT.shards/*).
    shards: Vec<PathBuf>,
    /// Then compact the segments into one (bounded memory: --memory).
    #[arg(long)]
    compact: bool,
    /// MiB of nonzero activations the compaction's query-file build holds in memory
    /// before it spills sorted runs to disk.
    #[arg(long, value_name = "MIB", default_value_t = saeidx_query::DEFAULT_BUILD_MEMORY >> 20)]
    memory: u64,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx merge`.
pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let shards = if args.shards.is_empty() {
        merge::find_shards(&args.output)?
    } else {
        args.shards
    };
    let published = merge::publish_shards(&shards, &args.output)?;
    let compaction = if args.compact {
        let options = CompactOptions {
            policy: Policy::All,
            query_build: saeidx_query::BuildOptions {
                memory: args.memory.saturating_mul(1 << 20),
            },
            ..CompactOptions::default()
        };
        Some(compact::compact(&args.output, &options)?)
    } else {
        None
    };
    if args.output_format.json {
        let mut value = serde_json::to_value(&published)?;
        value["compaction"] = serde_json::to_value(&compaction)?;
        return print_json(&value);
    }
    println!(
        "published {} shards as the segments of {} (hard links, no data copied) in {:.1} s: {} documents, {} tokens, {} nonzero activations",
        published.shards.len(),
        args.output.display(),
        published.seconds,
        published.counts.documents,
        published.counts.tokens,
        published.counts.nonzeros
    );
    if let Some(compaction) = &compaction {
        print_compaction(compaction);
    }
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx compact indexes/default               # every segment into one\n  \
    saeidx compact indexes/default --tiered      # what the tiered merge policy picks\n  \
    saeidx compact indexes/default --memory 512 --json\n\n\
    Document numbers and answers stay the same; deleted documents' text, tokens and\n\
    activations leave the files. Old segments are deleted by a later run or compact once\n\
    --grace has passed (readers that opened them keep reading).")]
pub struct CompactArgs {
    /// The index folder.
    index: PathBuf,
    /// Merge only adjacent segments of one size tier (8 at a time), as `[run] compact =
    /// "tiered"` does after a nightly run; default: every segment into one.
    #[arg(long)]
    tiered: bool,
    /// MiB of nonzero activations the query-file build holds in memory before it
    /// spills sorted runs to disk.
    #[arg(long, value_name = "MIB", default_value_t = saeidx_query::DEFAULT_BUILD_MEMORY >> 20)]
    memory: u64,
    /// Seconds a retired segment stays on disk for readers that opened it before a
    /// writer deletes it.
    #[arg(long, value_name = "SECONDS", default_value_t = compact::DEFAULT_GRACE.as_secs())]
    grace: u64,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx compact`.
pub fn compact(args: CompactArgs) -> anyhow::Result<()> {
    let options = CompactOptions {
        policy: if args.tiered {
            Policy::Tiered
        } else {
            Policy::All
        },
        query_build: saeidx_query::BuildOptions {
            memory: args.memory.saturating_mul(1 << 20),
        },
        grace: Duration::from_secs(args.grace),
        ..CompactOptions::default()
    };
    let summary = compact::compact(&args.index, &options)?;
    if args.output_format.json {
        return print_json(&summary);
    }
    if summary.merges.is_empty() {
        println!(
            "{}: nothing to compact ({} segment(s))",
            args.index.display(),
            summary.segments
        );
    }
    print_compaction(&summary);
    if let Some(generation) = summary.generation {
        println!(
            "{}: {} live segment(s), generation {generation}",
            args.index.display(),
            summary.segments
        );
    }
    Ok(())
}
