//! What surviving a query file changed under an open index costs, side by side with
//! the answers it protects, in one run.
//!
//! Every answer checks its files afterwards (`QueryIndex::check_intact`: one `fstat`
//! per file and the SIGBUS mark); this prints that check's time next to a warm
//! `top-texts` (k = 10) and a warm feature report on the same index, with the ratio.
//! Then the index's postings are truncated in place while it is open (as `cp` over a
//! served index does) and the time to refuse a feature report is printed: its reads
//! past the new end are answered with zero pages by the SIGBUS handler instead of
//! killing the process. Before the handler existed, this run ended there with SIGBUS.
//!
//! Run: `bash scripts/bench.sh robustness` (no model or default index needed).

use std::time::{Duration, Instant};

use saeidx_query::{Exclusions, FeatureRequest, QueryIndex, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // 3,000 documents of about 100 tokens, 8 features per token: a 19 MB postings file.
    let spec = SyntheticSpec {
        documents: 3000,
        tokens_per_document: (60, 140),
        documents_per_part: 500,
        feature_weights: (0..2048).map(|f| 1.0 / (1.0 + f as f64)).collect(),
        k: 8,
        value_step: 0.125,
        seed: 5,
    };
    write_synthetic_index(dir.path(), &spec)?;
    saeidx_query::build(dir.path())?;
    let index = QueryIndex::open(dir.path())?;
    index.verify_chunks()?;
    let exclusions = Exclusions::default();
    let live = index.live_features()?;
    let rounds = 20_000;
    let (mut checks, mut texts, mut reports) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let feature = live[(i * 7919) % live.len()];
        let start = Instant::now();
        index.check_intact()?;
        checks.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(index.top_texts(&TopTextsRequest {
            feature,
            exclusions,
            ..TopTextsRequest::default()
        })?);
        texts.push(start.elapsed());
        if i % 20 == 0 {
            let start = Instant::now();
            std::hint::black_box(index.feature(&FeatureRequest {
                feature,
                exclusions,
                ..FeatureRequest::default()
            })?);
            reports.push(start.elapsed());
        }
    }
    let (check, text, report) = (p50(checks), p50(texts), p50(reports));
    println!(
        "check_intact (made by every answer): p50 {:.2} µs; warm top-texts p50 {:.1} µs ({:.1}% of it); warm feature report p50 {:.1} µs ({:.2}% of it)",
        us(check),
        us(text),
        100.0 * check.as_secs_f64() / text.as_secs_f64(),
        us(report),
        100.0 * check.as_secs_f64() / report.as_secs_f64()
    );
    // Truncated in place while open: the last features' postings are past the new end.
    let postings = dir.path().join("query/postings.bin");
    let length = std::fs::metadata(&postings)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&postings)?
        .set_len(4096)?;
    let mut refused = Vec::new();
    for &feature in live.iter().rev().take(200) {
        let start = Instant::now();
        let answer = index.feature(&FeatureRequest {
            feature,
            exclusions,
            ..FeatureRequest::default()
        });
        refused.push(start.elapsed());
        if answer.is_ok() {
            anyhow::bail!("an index whose postings were truncated answered");
        }
    }
    let first = refused[0];
    println!(
        "postings.bin truncated from {length} to 4096 bytes under the open index: the first feature report (reading past the end: SIGBUS answered with zero pages) refused in {:.1} µs, the next 199 in p50 {:.1} µs; the process lives",
        us(first),
        us(p50(refused[1..].to_vec()))
    );
    Ok(())
}
