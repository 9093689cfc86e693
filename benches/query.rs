//! Query latency: saeidx's memory-mapped query index vs DuckDB over the same Parquet,
//! in one run, on an index of at least 5 million tokens.
//!
//! The index is synthetic (no model runs): 5,000 documents of 800–1,200 tokens, 32
//! active features per token drawn with the default SAE's measured feature frequencies
//! (its per-feature activation counts on the default index, dead features included), so
//! postings lengths have the real skew. It is written through the same Parquet writer
//! and query builder as a real run and cached in `target/bench-data/` between runs.
//!
//! Printed: warm p50/p99 of `top-texts` (k = 10, per token, sinks and special tokens
//! left out, with snippets) and `top-features` of a document (k = 10, max) in-process;
//! cold start (a new `saeidx top-texts` process to its JSON answer); DuckDB's p50/p99
//! for the same questions over the same Parquet (warm connection, no exclusions, no
//! snippets: less work than saeidx does); the ratios; and the index's size per nonzero.
//! Targets: warm p99 < 1 ms, ≥ 100× faster than DuckDB, cold < 50 ms.
//!
//! Run: `bash scripts/bench.sh query` (needs the default index: `bash scripts/demo.sh`).
//! `SAEIDX_BENCH_TOKENS=5000000` and `SAEIDX_BENCH_QUERIES=2000` change the size.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use saeidx_benches::{reference_python, repo_root};
use saeidx_query::{DocRef, Exclusions, QueryIndex, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The default SAE's activation count per feature on the default index.
fn default_frequencies() -> anyhow::Result<Vec<f64>> {
    let dir = repo_root().join("indexes/default");
    let index = QueryIndex::open(&dir)
        .with_context(|| format!("{}: run `bash scripts/demo.sh` first", dir.display()))?;
    (0..index.d_sae() as u32)
        .map(|f| Ok(index.feature_stats(f, Exclusions::default())?.count as f64))
        .collect()
}

/// The cached synthetic index (built on first use).
fn synthetic_index(tokens: usize) -> anyhow::Result<PathBuf> {
    let documents = tokens / 1000;
    let dir = repo_root().join(format!("target/bench-data/query-{documents}docs"));
    if QueryIndex::open(&dir).is_ok() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (800, 1200),
        documents_per_part: 200,
        feature_weights: default_frequencies()?,
        k: 32,
        value_step: 0.37,
        seed: 2026,
    };
    eprintln!(
        "writing a synthetic index of {documents} documents into {}",
        dir.display()
    );
    let started = Instant::now();
    write_synthetic_index(&dir, &spec)?;
    eprintln!(
        "  Parquet written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let summary = saeidx_query::build(&dir)?;
    eprintln!(
        "  query files built in {:.0} s ({:.1} GB)",
        started.elapsed().as_secs_f64(),
        summary.bytes as f64 / 1e9
    );
    Ok(dir)
}

/// DuckDB's p50/p99 (ms) for top-texts of `features` and top-features of `docs`.
fn duckdb(dir: &Path, features: &[u32], docs: &[u32]) -> anyhow::Result<serde_json::Value> {
    let script = r#"
import duckdb, json, sys, time
root, features, docs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("set enable_progress_bar = false")
con.execute(f"create view act as select * from read_parquet('{root}/activations/*.parquet')")
def timed(sql, values):
    con.execute(sql, [values[0]]).fetchall()  # warm-up
    out = []
    for value in values:
        start = time.perf_counter()
        con.execute(sql, [value]).fetchall()
        out.append((time.perf_counter() - start) * 1e3)
    out.sort()
    return {"p50": out[len(out) // 2], "p99": out[min(len(out) - 1, round(0.99 * (len(out) - 1)))]}
texts = timed("select doc, position, value from act where feature = ? order by value desc, doc, position limit 10", features)
feats = timed("select feature, max(value) m from act where doc = ? group by feature order by m desc, feature limit 10", docs)
print(json.dumps({"top_texts": texts, "top_features": feats}))
"#;
    let output = Command::new(reference_python()?)
        .args(["-c", script])
        .arg(dir)
        .arg(serde_json::to_string(features)?)
        .arg(serde_json::to_string(docs)?)
        .output()?;
    if !output.status.success() {
        bail!("duckdb: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("duckdb printed {stdout:?}"))
}

#[expect(
    clippy::too_many_lines,
    reason = "rewritten with the v2 query files (issue 14)"
)]
fn main() -> anyhow::Result<()> {
    let tokens = env_number("SAEIDX_BENCH_TOKENS", 5_000_000);
    let queries = env_number("SAEIDX_BENCH_QUERIES", 2000);
    let binary = repo_root().join("target/release/saeidx");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p saeidx-cli",
            binary.display()
        );
    }
    let dir = synthetic_index(tokens)?;
    let index = QueryIndex::open(&dir)?;
    let counts = index.query_manifest().counts;
    let live = index.live_features()?;
    // Features and documents to ask about: spread over the live features (frequent and
    // rare alike) and the documents.
    let features: Vec<u32> = (0..queries)
        .map(|i| live[(i * 7919) % live.len()])
        .collect();
    let docs: Vec<u32> = (0..queries)
        .map(|i| ((i * 104_729) % counts.documents as usize) as u32)
        .collect();
    let exclusions = Exclusions::default();
    // Warm: touch every file once, then time each query.
    index.verify_chunks()?;
    let mut text_times = Vec::with_capacity(queries);
    for &feature in &features {
        let start = Instant::now();
        let hits = index.top_texts(&TopTextsRequest {
            feature,
            exclusions,
            ..TopTextsRequest::default()
        })?;
        text_times.push(start.elapsed());
        std::hint::black_box(hits);
    }
    let mut feature_times = Vec::with_capacity(queries);
    for &doc in &docs {
        let start = Instant::now();
        let ranked = index.top_features(
            &DocRef::Number(doc),
            &TopFeaturesRequest {
                exclusions,
                ..TopFeaturesRequest::default()
            },
        )?;
        feature_times.push(start.elapsed());
        std::hint::black_box(ranked);
    }
    // Cold: a new process per answer.
    let mut cold_times = Vec::new();
    for &feature in features.iter().take(30) {
        let start = Instant::now();
        let output = Command::new(&binary)
            .args([
                "top-texts",
                "--json",
                "--k",
                "10",
                "--feature",
                &feature.to_string(),
                "--index",
            ])
            .arg(&dir)
            .output()?;
        cold_times.push(start.elapsed());
        if !output.status.success() {
            bail!("saeidx: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let peer_queries = 20.min(queries);
    let duck = duckdb(&dir, &features[..peer_queries], &docs[..peer_queries])?;
    let (texts50, texts99) = percentiles(text_times);
    let (features50, features99) = percentiles(feature_times);
    let (cold50, cold99) = percentiles(cold_times);
    let duck_ms = |question: &str, q: &str| duck[question][q].as_f64().unwrap_or(f64::NAN);
    let parquet_bytes: u64 = index.manifest().data_bytes();
    let query_bytes: u64 = index.query_manifest().files.iter().map(|f| f.bytes).sum();
    println!(
        "index: {} documents, {} tokens, {} nonzeros (synthetic, default SAE's feature frequencies); Parquet {:.2} B/nonzero, query files {:.2} B/nonzero",
        counts.documents,
        counts.tokens,
        counts.nonzeros,
        parquet_bytes as f64 / counts.nonzeros as f64,
        query_bytes as f64 / counts.nonzeros as f64
    );
    println!(
        "| question | saeidx warm p50 | saeidx warm p99 | DuckDB p50 | DuckDB p99 | p50 ratio | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, key, p50, p99) in [
        ("top-texts (k=10)", "top_texts", texts50, texts99),
        (
            "top-features of a document (k=10)",
            "top_features",
            features50,
            features99,
        ),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.1} ms | {:.1} ms | {:.0}× | {:.0}× |",
            ms(p50),
            ms(p99),
            duck_ms(key, "p50"),
            duck_ms(key, "p99"),
            duck_ms(key, "p50") / ms(p50),
            duck_ms(key, "p99") / ms(p99)
        );
    }
    println!(
        "cold start (new saeidx process → top-texts JSON): p50 {:.1} ms, p99 {:.1} ms",
        ms(cold50),
        ms(cold99)
    );
    Ok(())
}
