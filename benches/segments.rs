//! Query latency over an index of 10 segments vs the same rows as one index, in one
//! run (issue 15's goal: p99 within 1.5×).
//!
//! The index is synthetic (no model runs): `SAEIDX_BENCH_TOKENS` tokens (default
//! 1,000,000) in 1,000 documents, 32 active features per token drawn from a Zipf law
//! over 8,192 features, written in 10 parts. The one index is that folder; the segmented
//! one is the same parts split into 10 segments (`split_into_segments`, hard links),
//! each with its own query files. Both are cached in `target/bench-data/`.
//!
//! Printed, for both and their ratio: warm p50/p99 of `top-texts` (k = 10, per token,
//! with snippets), `top-texts` restricted by a filter (`tokens >` the mean document's
//! tokens: about half the documents), `top-features`
//! of a document and `feature` statistics, over `SAEIDX_BENCH_QUERIES` (default 1,000)
//! random live features or documents, asked through [`AnyIndex`] as every front end
//! asks: wall-clock time, and the asking thread's CPU time (which time spent waiting
//! for a core on a loaded machine does not inflate). The two indexes are asked in turn,
//! question by question, so a burst of load falls on both alike.
//!
//! Run: `bash scripts/bench.sh segments`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_benches::{env_number, ms, percentiles, repo_root, thread_cpu};
use saeidx_format::segments::SegmentSet;
use saeidx_query::{
    AnyIndex, DocRef, Exclusions, QueryIndex, Restriction, TopFeaturesRequest, TopTextsRequest,
    build, layout::QUERY_FORMAT_VERSION,
};
use saeidx_testkit::synthetic::{
    SyntheticSpec, split_into_segments, write_synthetic_index_quickly,
};

const SEGMENTS: usize = 10;

/// The one index and its 10-segment copy, written (and cached) under `root`; a cache
/// of older query files is written again.
fn indexes(root: &Path, tokens: usize) -> anyhow::Result<()> {
    let whole = root.join("one");
    let split = root.join("segmented");
    let current = QueryIndex::open(&whole)
        .is_ok_and(|index| index.query_manifest().format_version == QUERY_FORMAT_VERSION);
    if current && split.join("segments.json").is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(root);
    let documents = 1000;
    let per_document = tokens / documents;
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (per_document * 9 / 10, per_document * 11 / 10),
        documents_per_part: documents / SEGMENTS,
        feature_weights: (0..8192).map(|f| 1.0 / (1.0 + f as f64)).collect(),
        k: 32,
        value_step: 0.05,
        seed: 15,
    };
    println!("writing a synthetic index of ~{tokens} tokens in {SEGMENTS} parts");
    write_synthetic_index_quickly(&whole, &spec)?;
    build(&whole)?;
    let groups: Vec<_> = (0..SEGMENTS).map(|i| i..i + 1).collect();
    let set = split_into_segments(&whole, &split, &groups)?;
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&split, &segment.name))?;
    }
    Ok(())
}

/// Wall-clock and thread CPU p50/p99 of one index's answers.
struct Latency {
    wall: (Duration, Duration),
    cpu: (Duration, Duration),
}

/// The latencies of `ask` on the one index (`false`) and the segmented one (`true`)
/// over `queries` questions numbered from 0, asked of both in turn.
fn latency(queries: usize, ask: impl Fn(bool, usize)) -> [Latency; 2] {
    for i in 0..queries.min(50) {
        ask(false, i);
        ask(true, i);
    }
    let mut wall = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for i in 0..queries {
        for (which, segmented) in [false, true].into_iter().enumerate() {
            let (start, cpu_start) = (Instant::now(), thread_cpu());
            ask(segmented, i);
            wall[which].push(start.elapsed());
            cpu[which].push(thread_cpu() - cpu_start);
        }
    }
    let [wall_one, wall_seg] = wall;
    let [cpu_one, cpu_seg] = cpu;
    [
        Latency {
            wall: percentiles(wall_one),
            cpu: percentiles(cpu_one),
        },
        Latency {
            wall: percentiles(wall_seg),
            cpu: percentiles(cpu_seg),
        },
    ]
}

/// Each question's latency on both indexes, and the ratios.
fn compare(
    one: &AnyIndex,
    segmented: &AnyIndex,
    queries: usize,
    mean_tokens: u64,
) -> anyhow::Result<()> {
    let live = one.live_features()?;
    let mut rng = StdRng::seed_from_u64(7);
    let features: Vec<u32> = (0..queries)
        .map(|_| live[rng.random_range(0..live.len())])
        .collect();
    let docs: Vec<u32> = (0..queries)
        .map(|_| rng.random_range(0..one.documents()))
        .collect();
    let restricted = Restriction::filter(format!("tokens > {mean_tokens}"));
    type Question<'a> = Box<dyn Fn(&AnyIndex, usize) + 'a>;
    let questions: Vec<(&str, Question<'_>)> = vec![
        (
            "top-texts k=10",
            Box::new(|index, i| {
                let request = TopTextsRequest {
                    feature: features[i],
                    k: 10,
                    ..TopTextsRequest::default()
                };
                index.top_texts(&request).expect("top-texts");
            }),
        ),
        (
            "top-texts k=10 --where",
            Box::new(|index, i| {
                let request = TopTextsRequest {
                    feature: features[i],
                    k: 10,
                    restrict: restricted.clone(),
                    ..TopTextsRequest::default()
                };
                index.top_texts(&request).expect("top-texts --where");
            }),
        ),
        (
            "top-features of a document",
            Box::new(|index, i| {
                let request = TopFeaturesRequest {
                    k: 10,
                    ..TopFeaturesRequest::default()
                };
                index
                    .top_features(&DocRef::Number(docs[i]), &request)
                    .expect("top-features");
            }),
        ),
        (
            "feature statistics",
            Box::new(|index, i| {
                index
                    .feature_stats(features[i], Exclusions::default())
                    .expect("statistics");
            }),
        ),
    ];
    println!(
        "{:<28} {:>5} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "question", "time", "1 seg p50", "1 seg p99", "10 segs p50", "10 segs p99", "p99 ratio"
    );
    for (name, ask) in &questions {
        let [one_seg, ten] = latency(queries, |seg, i| ask(if seg { segmented } else { one }, i));
        let kinds = [
            ("wall", one_seg.wall, ten.wall),
            ("cpu", one_seg.cpu, ten.cpu),
        ];
        for (kind, (p50, p99), (s50, s99)) in kinds {
            println!(
                "{name:<28} {kind:>5} {:>8.3}ms {:>8.3}ms {:>10.3}ms {:>10.3}ms {:>9.2}×",
                ms(p50),
                ms(p99),
                ms(s50),
                ms(s99),
                s99.as_secs_f64() / p99.as_secs_f64()
            );
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let tokens = env_number("SAEIDX_BENCH_TOKENS", 1_000_000);
    let queries = env_number("SAEIDX_BENCH_QUERIES", 1000);
    let root = repo_root().join(format!("target/bench-data/segments-{tokens}"));
    indexes(&root, tokens)?;
    let one = AnyIndex::open(&root.join("one"))?;
    let segmented = AnyIndex::open(&root.join("segmented"))?;
    assert_eq!(segmented.segment_count(), SEGMENTS);
    let counts = one.counts()?;
    println!(
        "{} documents, {} tokens, {} nonzeros; {queries} questions of each kind",
        counts.documents, counts.tokens, counts.nonzeros
    );
    compare(&one, &segmented, queries, counts.tokens / counts.documents)
}
