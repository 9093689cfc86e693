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
//! cold start (a new `saeidx top-texts` process to its JSON answer, beside the same from
//! `saeidx-model`, which links MLX as `saeidx` once did; and what it is made of: a new
//! process that only prints its version, and an in-process fresh open plus first
//! answer); DuckDB's p50/p99
//! for the same questions over the same Parquet (warm connection, no exclusions, no
//! snippets: less work than saeidx does); the ratios; and the index's size per nonzero.
//! Targets: warm p99 < 1 ms, ≥ 100× faster than DuckDB, cold < 50 ms.
//!
//! Run: `bash scripts/bench.sh query` (needs the default index: `bash scripts/demo.sh`).
//! `SAEIDX_BENCH_TOKENS=5000000` (a comma-separated list measures several sizes in one
//! run, e.g. `5000000,31250000` for 160M and 1B nonzeros) and `SAEIDX_BENCH_QUERIES=2000`
//! change the size; `SAEIDX_BENCH_MEMORY` (MiB) the build's budget. DuckDB's sorted
//! database is loaded up to `SAEIDX_BENCH_SORTED_MAX=200000000` nonzeros (past that its
//! load alone takes longer than this whole benchmark on 2 cores) and DuckDB over the
//! Parquet answers 20 questions of each kind (3 past 500M nonzeros, each a full scan).
//! `SAEIDX_BENCH_DUCKDB_MEMORY` (e.g. `8GB`) sets DuckDB's `memory_limit` (default: DuckDB's
//! own, 80% of RAM), for machines shared with other work.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use saeidx_benches::{env_number, ms, percentiles, reference_python, repo_root, thread_cpu};
use saeidx_query::{DocRef, Exclusions, QueryIndex, Rank, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index_quickly};

/// The default SAE's activation count per feature on the default index (or in the JSON
/// array of counts `SAEIDX_BENCH_FREQUENCIES` names, counted from a default run's
/// activations Parquet), or (without either) a Zipf law over 8,192 features, said so in
/// the output.
fn feature_frequencies() -> anyhow::Result<(Vec<f64>, &'static str)> {
    if let Ok(path) = std::env::var("SAEIDX_BENCH_FREQUENCIES") {
        let counts: Vec<f64> = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{path}: a JSON array of counts per feature"))?;
        return Ok((
            counts,
            "the default SAE's feature frequencies (counted from SAEIDX_BENCH_FREQUENCIES)",
        ));
    }
    let dir = repo_root().join("indexes/default");
    let Ok(index) = QueryIndex::open(&dir) else {
        let zipf = (0..8192).map(|f| 1.0 / (1.0 + f as f64)).collect();
        return Ok((
            zipf,
            "Zipf feature frequencies over 8,192 features (no indexes/default: `bash scripts/demo.sh` makes it)",
        ));
    };
    let counts = (0..index.d_sae() as u32)
        .map(|f| Ok(index.feature_stats(f, Exclusions::default())?.count as f64))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok((counts, "the default SAE's feature frequencies"))
}

/// The cached synthetic index's Parquet (written on first use); returns its folder and
/// how its feature frequencies were drawn.
fn synthetic_index(tokens: usize) -> anyhow::Result<(PathBuf, &'static str)> {
    let documents = tokens / 1000;
    let dir = repo_root().join(format!("target/bench-data/query-alias-{documents}docs"));
    let (weights, shape) = feature_frequencies()?;
    if dir.join("manifest.json").is_file() {
        return Ok((dir, shape));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (800, 1200),
        documents_per_part: 200,
        feature_weights: weights,
        k: 32,
        value_step: 0.37,
        seed: 2026,
    };
    eprintln!(
        "writing a synthetic index of {documents} documents into {}",
        dir.display()
    );
    let started = Instant::now();
    write_synthetic_index_quickly(&dir, &spec)?;
    eprintln!(
        "  Parquet written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((dir, shape))
}

/// Builds the query files with `saeidx query build --memory MIB` in a child process:
/// wall seconds, the child's own peak RSS (bytes) and runs spilled.
fn timed_build(binary: &Path, dir: &Path, memory_mib: usize) -> anyhow::Result<(f64, u64, u64)> {
    use std::io::Read;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args([
            "query",
            "build",
            "--json",
            "--memory",
            &memory_mib.to_string(),
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: wait4 reaps our own child and writes into the zeroed structs it is given.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut usage) != pid {
            bail!("waiting for saeidx query build failed");
        }
        (status, usage)
    };
    let seconds = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("saeidx query build: {stderr}");
    }
    let summary: serde_json::Value = serde_json::from_str(&stdout)?;
    let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Ok((seconds, peak, summary["spilled_runs"].as_u64().unwrap_or(0)))
}

/// DuckDB's p50/p99 (ms) for top-texts of `features` and top-features of `docs`.
fn duckdb(
    dir: &Path,
    features: &[u32],
    docs: &[u32],
    sorted: bool,
) -> anyhow::Result<serde_json::Value> {
    let script = r#"
import duckdb, json, os, sys, time
root, features, docs, db = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
sorted_db, memory_limit = sys.argv[5] == "1", sys.argv[6]
def run(con):
    con.execute("set enable_progress_bar = false")
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    return (timed(con, "select doc, position, value from act where feature = ? order by value desc, doc, position limit 10", features),
            timed(con, "select feature, max(value) m from act where doc = ? group by feature order by m desc, feature limit 10", docs))
def timed(con, sql, values):
    con.execute(sql, [values[0]]).fetchall()  # warm-up
    out = []
    for value in values:
        start = time.perf_counter()
        con.execute(sql, [value]).fetchall()
        out.append((time.perf_counter() - start) * 1e3)
    out.sort()
    return {"p50": out[len(out) // 2], "p99": out[min(len(out) - 1, round(0.99 * (len(out) - 1)))]}
con = duckdb.connect()
con.execute(f"create view act as select * from read_parquet('{root}/activations/*.parquet')")
texts, feats = run(con)
if not sorted_db:
    print(json.dumps({"top_texts": texts, "top_features": feats}))
    sys.exit(0)
# A user's best effort: a persistent database, activations sorted by feature, loaded once.
started = time.perf_counter()
fresh = not os.path.exists(db)
sorted_con = duckdb.connect(db)
if fresh:
    if memory_limit:
        sorted_con.execute(f"set memory_limit = '{memory_limit}'")
    sorted_con.execute(f"create table act as select * from read_parquet('{root}/activations/*.parquet') order by feature, value desc, doc, position")
    sorted_con.execute("checkpoint")
load = time.perf_counter() - started
sorted_texts, sorted_feats = run(sorted_con)
print(json.dumps({"top_texts": texts, "top_features": feats, "sorted_top_texts": sorted_texts, "sorted_top_features": sorted_feats, "sorted_load_s": load if fresh else None, "sorted_db_bytes": os.path.getsize(db)}))
"#;
    let output = Command::new(reference_python()?)
        .args(["-c", script])
        .arg(dir)
        .arg(serde_json::to_string(features)?)
        .arg(serde_json::to_string(docs)?)
        .arg(dir.with_extension("duckdb"))
        .arg(if sorted { "1" } else { "0" })
        .arg(std::env::var("SAEIDX_BENCH_DUCKDB_MEMORY").unwrap_or_default())
        .output()?;
    if !output.status.success() {
        bail!("duckdb: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("duckdb printed {stdout:?}"))
}

/// Warm in-process latencies of each question, in the order asked, and the CPU time
/// the asking thread spent on each (on a shared machine the wall time also counts the
/// time other processes held the core).
struct Warm {
    texts: Vec<Duration>,
    doc_max: Vec<Duration>,
    features: Vec<Duration>,
    cpu: Vec<Duration>,
}

fn warm(index: &QueryIndex, features: &[u32], docs: &[u32]) -> anyhow::Result<Warm> {
    let exclusions = Exclusions::default();
    // Warm: touch every file once, then time each query.
    index.verify_chunks()?;
    let mut warm = Warm {
        texts: Vec::new(),
        doc_max: Vec::new(),
        features: Vec::new(),
        cpu: Vec::new(),
    };
    for (rank, times) in [
        (Rank::Token, &mut warm.texts),
        (Rank::DocumentMax, &mut warm.doc_max),
    ] {
        for &feature in features {
            let (start, cpu) = (Instant::now(), thread_cpu());
            let hits = index.top_texts(&TopTextsRequest {
                feature,
                rank,
                exclusions,
                ..TopTextsRequest::default()
            })?;
            times.push(start.elapsed());
            warm.cpu.push(thread_cpu() - cpu);
            std::hint::black_box(hits);
        }
    }
    for &doc in docs {
        let (start, cpu) = (Instant::now(), thread_cpu());
        let ranked = index.top_features(
            &DocRef::Number(doc),
            &TopFeaturesRequest {
                exclusions,
                ..TopFeaturesRequest::default()
            },
        )?;
        warm.features.push(start.elapsed());
        warm.cpu.push(thread_cpu() - cpu);
        std::hint::black_box(ranked);
    }
    Ok(warm)
}

/// A new `top-texts` process per answer, of each binary in turn (so that both see the
/// same load): `saeidx`, and `saeidx-model`, which answers it too but links MLX, as
/// `saeidx` did before it handed the model commands over.
fn cold(binaries: &[&Path], dir: &Path, features: &[u32]) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut times = vec![Vec::new(); binaries.len()];
    for &feature in features.iter().take(30) {
        for (binary, times) in binaries.iter().zip(&mut times) {
            let start = Instant::now();
            let output = Command::new(binary)
                .args(["top-texts", "--json", "--k", "10", "--feature"])
                .arg(feature.to_string())
                .arg("--index")
                .arg(dir)
                .output()?;
            times.push(start.elapsed());
            if !output.status.success() {
                bail!(
                    "{}: {}",
                    binary.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    Ok(times)
}

/// What a cold start is made of: a new process that only prints its version (loading
/// the binary and its shared libraries), and in this process a fresh
/// `QueryIndex::open` and its first top-texts answer (the files in the page cache, no
/// chunk verified yet).
fn cold_parts(
    binary: &Path,
    dir: &Path,
    features: &[u32],
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut process, mut open) = (Vec::new(), Vec::new());
    for &feature in features.iter().take(30) {
        let start = Instant::now();
        let status = Command::new(binary)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()?;
        process.push(start.elapsed());
        if !status.success() {
            bail!("{} --version failed", binary.display());
        }
        let start = Instant::now();
        let index = QueryIndex::open(dir)?;
        let hits = index.top_texts(&TopTextsRequest {
            feature,
            ..TopTextsRequest::default()
        })?;
        open.push(start.elapsed());
        std::hint::black_box(hits);
    }
    Ok((process, open))
}

/// Bytes per nonzero of each query file, of all of them, and of the whole folder.
fn sizes(index: &QueryIndex, dir: &Path) -> anyhow::Result<String> {
    let nonzeros = index.query_manifest().counts.nonzeros.max(1) as f64;
    let mut parts = Vec::new();
    let mut query = 0;
    for file in &index.query_manifest().files {
        parts.push(format!("{} {:.2}", file.name, file.bytes as f64 / nonzeros));
        query += file.bytes;
    }
    let folder = folder_bytes(dir)?;
    Ok(format!(
        "query files {:.2} B/nonzero ({}); Parquet {:.2}; whole folder {:.2}",
        query as f64 / nonzeros,
        parts.join(", "),
        index.manifest().data_bytes() as f64 / nonzeros,
        folder as f64 / nonzeros
    ))
}

fn folder_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("SAEIDX_BENCH_TOKENS")
        .unwrap_or_else(|_| "5000000".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .context("SAEIDX_BENCH_TOKENS: token counts separated by commas")?;
    let binary = repo_root().join("target/release/saeidx");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p saeidx-cli -p saeidx-cli-model",
            binary.display()
        );
    }
    for tokens in sizes {
        bench(&binary, tokens)?;
    }
    Ok(())
}

/// Writes (or reuses) the synthetic index of `tokens` tokens, builds its query files and
/// prints every figure.
fn bench(binary: &Path, tokens: usize) -> anyhow::Result<()> {
    let queries = env_number("SAEIDX_BENCH_QUERIES", 2000);
    let memory = env_number("SAEIDX_BENCH_MEMORY", 1024);
    let (dir, shape) = synthetic_index(tokens)?;
    let (build_s, build_rss, runs) = timed_build(binary, &dir, memory)?;
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
    println!(
        "index: {} documents, {} tokens, {} nonzeros (synthetic, {shape})",
        counts.documents, counts.tokens, counts.nonzeros
    );
    println!("{}", sizes(&index, &dir)?);
    println!(
        "build (saeidx query build --memory {memory}): {build_s:.1} s, peak RSS {:.0} MiB, {runs} sorted runs spilled",
        build_rss as f64 / f64::from(1 << 20)
    );
    let warm = warm(&index, &features, &docs)?;
    for (name, times) in [
        ("top-texts per token", &warm.texts),
        ("top-texts doc-max", &warm.doc_max),
        ("top-features", &warm.features),
    ] {
        let (p50, p99) = percentiles(times.clone());
        println!("warm {name}: p50 {:.3} ms, p99 {:.3} ms", ms(p50), ms(p99));
    }
    let model_binary = binary.with_file_name("saeidx-model");
    let cold = cold(&[binary, &model_binary], &dir, &features)?;
    let (process, open) = cold_parts(binary, &dir, &features)?;
    let (model_process, _) = cold_parts(&model_binary, &dir, &features)?;
    let full_scans = if counts.nonzeros > 500_000_000 { 3 } else { 20 };
    let peer_queries = full_scans.min(queries);
    let sorted = counts.nonzeros <= env_number("SAEIDX_BENCH_SORTED_MAX", 200_000_000) as u64;
    let duck = duckdb(
        &dir,
        &features[..peer_queries],
        &docs[..peer_queries],
        sorted,
    )?;
    table(&warm, &duck);
    let [(cold50, cold99), (model50, model99)] = [0, 1].map(|i| percentiles(cold[i].clone()));
    println!(
        "cold start (new saeidx process → top-texts JSON): p50 {:.1} ms, p99 {:.1} ms; \
         the same from saeidx-model (links MLX, as saeidx did before): p50 {:.1} ms, p99 {:.1} ms \
         ({:.1}× at p50)",
        ms(cold50),
        ms(cold99),
        ms(model50),
        ms(model99),
        model50.as_secs_f64() / cold50.as_secs_f64()
    );
    let ((process50, _), (open50, open99)) = (percentiles(process), percentiles(open));
    let (model_process50, _) = percentiles(model_process);
    println!(
        "  of which: a new process printing its version p50 {:.1} ms (saeidx-model: {:.1} ms); in-process open + first top-texts p50 {:.2} ms, p99 {:.2} ms",
        ms(process50),
        ms(model_process50),
        ms(open50),
        ms(open99)
    );
    if sorted {
        println!(
            "DuckDB sorted database: {:.2} B/nonzero, loaded once in {}",
            duck["sorted_db_bytes"].as_f64().unwrap_or(f64::NAN) / counts.nonzeros.max(1) as f64,
            duck["sorted_load_s"]
                .as_f64()
                .map_or("an earlier run".to_string(), |s| format!("{s:.0} s"))
        );
    } else {
        println!(
            "DuckDB sorted database: not loaded (over SAEIDX_BENCH_SORTED_MAX nonzeros); DuckDB over the Parquet: {peer_queries} questions of each kind"
        );
    }
    Ok(())
}

/// The latency table: saeidx warm, DuckDB over the Parquet, DuckDB's sorted database.
fn table(warm: &Warm, duck: &serde_json::Value) {
    let duck_ms = |question: &str, q: &str| duck[question][q].as_f64().unwrap_or(f64::NAN);
    let n = warm.texts.len();
    let cpu = |range: std::ops::Range<usize>| percentiles(warm.cpu[range].to_vec());
    for (name, (cpu50, cpu99)) in [
        ("top-texts (k=10, per token)", cpu(0..n)),
        ("top-texts (k=10, doc-max)", cpu(n..2 * n)),
        (
            "top-features of a ~1,000-token document (k=10)",
            cpu(2 * n..warm.cpu.len()),
        ),
    ] {
        println!(
            "  {name}: thread CPU time p50 {:.3} ms, p99 {:.3} ms",
            ms(cpu50),
            ms(cpu99)
        );
    }
    println!(
        "| question | saeidx warm p50 | saeidx warm p99 | DuckDB Parquet p50 / p99 | DuckDB sorted db p50 / p99 | p50 ratio (Parquet, sorted) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, key, times) in [
        ("top-texts (k=10, per token)", "top_texts", &warm.texts),
        ("top-texts (k=10, doc-max)", "top_texts", &warm.doc_max),
        (
            "top-features of a ~1,000-token document (k=10)",
            "top_features",
            &warm.features,
        ),
    ] {
        let (p50, p99) = percentiles(times.clone());
        let sorted = format!("sorted_{key}");
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.0}×, {:.0}× |",
            ms(p50),
            ms(p99),
            duck_ms(key, "p50"),
            duck_ms(key, "p99"),
            duck_ms(&sorted, "p50"),
            duck_ms(&sorted, "p99"),
            duck_ms(key, "p50") / ms(p50),
            duck_ms(&sorted, "p50") / ms(p50),
        );
    }
}
