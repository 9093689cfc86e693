//! Restricted, token-conditioned and contrast questions: saeidx vs DuckDB over the same
//! Parquet, in one run.
//!
//! The index is synthetic (no model runs): documents of 800–1,200 tokens with random
//! metadata (`saeidx_testkit::filters::random_columns`: `year`, `party`, ...), 32 active
//! features per token drawn from a Zipf law over 8,192 features, token ids uniform over
//! 1,000 ids; cached in `target/bench-data/` between runs.
//!
//! Printed: warm p50/p99 of `top-texts` (k = 10, per token, with snippets) restricted by
//! a metadata filter (`party = 'a'`: about one document in nine), of `top-texts` on one
//! token id, and the time of `contrast` (that filter against the rest of the index,
//! every token decoded once); DuckDB's p50/p99 for the same questions over the same
//! Parquet (a join with the documents or tokens table, no snippets), and the ratios.
//! Targets: filtered and token-conditioned top-texts p99 ≤ 10 ms, contrast over the
//! whole index ≤ 1 s.
//!
//! Run: `cargo bench -p saeidx-benches --bench restricted`; `SAEIDX_BENCH_TOKENS`
//! (default 5,000,000) and `SAEIDX_BENCH_QUERIES` (default 300) change the size.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};
use saeidx_benches::{env_number, ms, percentiles, reference_python, repo_root};
use saeidx_query::{
    ContrastRequest, QueryIndex, Restriction, TokenPattern, TopTextsRequest, build,
    layout::QUERY_FORMAT_VERSION,
};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index_with_metadata};

const FILTER: &str = "party = 'a'";

/// The cached synthetic index with metadata and query files.
fn synthetic_index(tokens: usize) -> anyhow::Result<PathBuf> {
    let documents = tokens / 1000;
    let dir = repo_root().join(format!("target/bench-data/restricted-{documents}docs"));
    if dir.join("query/manifest.json").is_file() {
        let current = QueryIndex::open(&dir)
            .is_ok_and(|index| index.query_manifest().format_version == QUERY_FORMAT_VERSION);
        if !current {
            // Cached with query files of an older format (an older `occurrences.bin`, or
            // none): rebuild them, so the run measures this format.
            build(&dir)?;
        }
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (800, 1200),
        documents_per_part: 200,
        feature_weights: (0..8192).map(|f| 1.0 / (1.0 + f as f64)).collect(),
        k: 32,
        value_step: 0.37,
        seed: 2026,
    };
    let started = Instant::now();
    write_synthetic_index_with_metadata(&dir, &spec)?;
    build(&dir)?;
    eprintln!(
        "wrote and built {} in {:.0} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// DuckDB's p50/p99 (ms) for the filtered and token-conditioned top-texts, and the
/// contrast's counts (seconds).
fn duckdb(dir: &Path, features: &[u32], tokens: &[u32]) -> anyhow::Result<serde_json::Value> {
    let script = r#"
import duckdb, json, sys, time
root, features, tokens, flt = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
con = duckdb.connect()
con.execute("set enable_progress_bar = false")
con.execute(f"create view act as select * from read_parquet('{root}/activations/*.parquet')")
con.execute(f"create view docs as select * from read_parquet('{root}/documents/*.parquet')")
con.execute(f"create view tok as select * from read_parquet('{root}/tokens/*.parquet')")
def timed(sql, values):
    con.execute(sql, values[0]).fetchall()
    out = []
    for v in values:
        start = time.perf_counter()
        con.execute(sql, v).fetchall()
        out.append((time.perf_counter() - start) * 1e3)
    out.sort()
    return {"p50": out[len(out) // 2], "p99": out[min(len(out) - 1, round(0.99 * (len(out) - 1)))]}
filtered = timed(f"select a.doc, a.position, a.value from act a join (select doc from docs where {flt}) d on a.doc = d.doc join tok t on t.doc = a.doc and t.position = a.position where a.feature = ? and not t.special and not t.sink order by a.value desc, a.doc, a.position limit 10", [[f] for f in features])
on_token = timed("select a.doc, a.position, a.value from act a join tok t on t.doc = a.doc and t.position = a.position where a.feature = ? and t.token = ? and not t.special and not t.sink order by a.value desc, a.doc, a.position limit 10", [[f, t] for f, t in zip(features, tokens)])
start = time.perf_counter()
con.execute(f"select a.feature, count(*) filter (where d.doc is not null), count(*) filter (where d.doc is null) from act a join tok t on t.doc = a.doc and t.position = a.position left join (select doc from docs where {flt}) d on a.doc = d.doc where not t.special and not t.sink group by a.feature").fetchall()
contrast = time.perf_counter() - start
print(json.dumps({"filtered": filtered, "on_token": on_token, "contrast_s": contrast}))
"#;
    let output = Command::new(reference_python()?)
        .args(["-c", script])
        .arg(dir)
        .arg(serde_json::to_string(features)?)
        .arg(serde_json::to_string(tokens)?)
        .arg(FILTER)
        .output()?;
    if !output.status.success() {
        bail!("duckdb: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("duckdb printed {stdout:?}"))
}

fn main() -> anyhow::Result<()> {
    let tokens = env_number("SAEIDX_BENCH_TOKENS", 5_000_000);
    let queries = env_number("SAEIDX_BENCH_QUERIES", 300);
    let dir = synthetic_index(tokens)?;
    let index = QueryIndex::open(&dir)?;
    index.verify_chunks()?;
    let live = index.live_features()?;
    let features: Vec<u32> = (0..queries)
        .map(|i| live[(i * 7919) % live.len()])
        .collect();
    let token_ids: Vec<u32> = (0..queries)
        .map(|i| 100 + ((i * 389) % 1000) as u32)
        .collect();
    let restrict = Restriction::filter(FILTER);
    // First use reads the documents table and the vocabulary: timed apart.
    let started = Instant::now();
    let selected = index.doc_set(&restrict)?.map_or(0, |set| set.len());
    let first_filter = started.elapsed();
    let started = Instant::now();
    index.top_texts(&TopTextsRequest {
        token: Some(TokenPattern::Id(token_ids[0])),
        ..TopTextsRequest::default()
    })?;
    let first_token = started.elapsed();
    let (mut filtered, mut on_token) = (Vec::new(), Vec::new());
    for (&feature, &token) in features.iter().zip(&token_ids) {
        let start = Instant::now();
        std::hint::black_box(index.top_texts(&TopTextsRequest {
            feature,
            restrict: restrict.clone(),
            ..TopTextsRequest::default()
        })?);
        filtered.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(index.top_texts(&TopTextsRequest {
            feature,
            token: Some(TokenPattern::Id(token)),
            ..TopTextsRequest::default()
        })?);
        on_token.push(start.elapsed());
    }
    let started = Instant::now();
    let contrast = index.contrast(&ContrastRequest {
        a: restrict.clone(),
        ..ContrastRequest::default()
    })?;
    let contrast_s = started.elapsed().as_secs_f64();
    let peer = 20.min(queries);
    let duck = duckdb(&dir, &features[..peer], &token_ids[..peer])?;
    let counts = index.query_manifest().counts;
    println!(
        "index: {} documents ({selected} where {FILTER}), {} tokens, {} nonzeros (synthetic)",
        counts.documents, counts.tokens, counts.nonzeros
    );
    let occurrences = index
        .query_manifest()
        .files
        .iter()
        .find(|file| file.name == "occurrences.bin")
        .map_or(0, |file| file.bytes);
    println!(
        "occurrences.bin: {occurrences} bytes ({:.2} per token)",
        occurrences as f64 / counts.tokens.max(1) as f64
    );
    println!(
        "first use: filter resolved in {:.1} ms, first token question in {:.1} ms",
        first_filter.as_secs_f64() * 1e3,
        first_token.as_secs_f64() * 1e3
    );
    println!("| question | saeidx p50 | saeidx p99 | DuckDB p50 / p99 | p50 ratio |");
    println!("|---|---|---|---|---|");
    for (name, times, key) in [
        ("top-texts --where", filtered, "filtered"),
        ("top-texts --token-id", on_token, "on_token"),
    ] {
        let (p50, p99) = percentiles(times);
        let (p50, p99) = (ms(p50), ms(p99));
        let (d50, d99) = (
            duck[key]["p50"].as_f64().unwrap_or(f64::NAN),
            duck[key]["p99"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "| {name} | {p50:.3} ms | {p99:.3} ms | {d50:.1} / {d99:.1} ms | {:.0}x |",
            d50 / p50
        );
    }
    let duck_contrast = duck["contrast_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "| contrast (A: {FILTER}, B: the rest; {} + {} tokens) | {contrast_s:.3} s | | {duck_contrast:.2} s (counts only) | {:.1}x |",
        contrast.tokens_a,
        contrast.tokens_b,
        duck_contrast / contrast_s
    );
    Ok(())
}
