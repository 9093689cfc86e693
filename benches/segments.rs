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
//! with snippets), `top-texts` restricted by a filter (`tokens > 900`), `top-features`
//! of a document and `feature` statistics, over `SAEIDX_BENCH_QUERIES` (default 1,000)
//! random live features or documents, asked through [`AnyIndex`] as every front end
//! asks.
//!
//! Run: `bash scripts/bench.sh segments`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_benches::{env_number, ms, percentiles, repo_root};
use saeidx_format::segments::SegmentSet;
use saeidx_query::{
    AnyIndex, DocRef, Exclusions, Restriction, TopFeaturesRequest, TopTextsRequest, build,
};
use saeidx_testkit::synthetic::{
    SyntheticSpec, split_into_segments, write_synthetic_index_quickly,
};

const SEGMENTS: usize = 10;

/// The one index and its 10-segment copy, written (and cached) under `root`.
fn indexes(root: &Path, tokens: usize) -> anyhow::Result<()> {
    let whole = root.join("one");
    let split = root.join("segmented");
    if split.join("segments.json").is_file() {
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

/// p50/p99 of `ask` over `queries` questions numbered from 0.
fn latency(queries: usize, mut ask: impl FnMut(usize)) -> (Duration, Duration) {
    for i in 0..queries.min(50) {
        ask(i);
    }
    let samples = (0..queries)
        .map(|i| {
            let start = Instant::now();
            ask(i);
            start.elapsed()
        })
        .collect();
    percentiles(samples)
}

/// Each question's latency on both indexes, and the ratios.
fn compare(one: &AnyIndex, segmented: &AnyIndex, queries: usize) -> anyhow::Result<()> {
    let live = one.live_features()?;
    let mut rng = StdRng::seed_from_u64(7);
    let features: Vec<u32> = (0..queries)
        .map(|_| live[rng.random_range(0..live.len())])
        .collect();
    let docs: Vec<u32> = (0..queries)
        .map(|_| rng.random_range(0..one.documents()))
        .collect();
    let restricted = Restriction::filter("tokens > 900");
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
        "{:<28} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "question", "1 seg p50", "1 seg p99", "10 segs p50", "10 segs p99", "p99 ratio"
    );
    for (name, ask) in &questions {
        let (p50, p99) = latency(queries, |i| ask(one, i));
        let (s50, s99) = latency(queries, |i| ask(segmented, i));
        println!(
            "{name:<28} {:>10.3}ms {:>10.3}ms {:>12.3}ms {:>12.3}ms {:>9.2}×",
            ms(p50),
            ms(p99),
            ms(s50),
            ms(s99),
            s99.as_secs_f64() / p99.as_secs_f64()
        );
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
    compare(&one, &segmented, queries)
}
