//! The web server under load: `saeidx serve` (the release binary, as users run it) over a
//! synthetic index, driven over loopback by the load generator of `saeidx-testkit`, side by
//! side with the same questions answered in-process by the library (the HTTP overhead is
//! the ratio).
//!
//! Cases: JSON API answers (top texts of a feature, top features of a document) from 2,
//! 4, 8 and 32 keep-alive clients and from 32 clients that connect per request; feature
//! reports (statistics, examples, bands and neighbours: far more work per answer); a
//! browser-like client (one keep-alive connection, one request after another, feature
//! pages and API) and one JSON API client. Printed: answers/s, p50 and p99, errors. Goals (issue 20): ≥ 2,000 answers/s at
//! p99 ≤ 5 ms for the JSON API, p50 ≤ 2 ms for the browser-like client.
//!
//! Run: `bash scripts/bench.sh serve`. `SAEIDX_BENCH_BUDGET` sets the seconds per case
//! (default 3); `SAEIDX_BENCH_TOKENS` the index size (default 500,000 tokens).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use saeidx_benches::{env_number, repo_root};
use saeidx_query::{DocRef, QueryIndex, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::load::{LoadReport, LoadSpec, run};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

/// A cached synthetic index of about `tokens` tokens (32 features per token).
fn synthetic_index(tokens: usize) -> anyhow::Result<PathBuf> {
    let documents = (tokens / 1000).max(10);
    let dir = repo_root().join(format!("target/bench-data/serve-{documents}docs"));
    if QueryIndex::open(&dir).is_ok() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (800, 1200),
        documents_per_part: 100,
        // Densities from 0.1 % to 1.3 % of tokens (the default SAE's median feature is
        // near 0.2 %): feature reports, whose neighbours cost grows with density, stay
        // comparable between runs.
        feature_weights: (0..8192).map(|f| 1.0 + (f % 13) as f64).collect(),
        k: 32,
        value_step: 0.37,
        seed: 2026,
    };
    write_synthetic_index(&dir, &spec)?;
    saeidx_query::build(&dir)?;
    Ok(dir)
}

/// `saeidx serve --no-live` on a free port; killed when dropped.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(index: &std::path::Path) -> anyhow::Result<Self> {
        let binary = repo_root().join("target/release/saeidx");
        let mut child = Command::new(&binary)
            .args(["serve", "--no-live", "--port", "0", "--threads", "4"])
            .arg(index)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("{}: build it with cargo build --release", binary.display())
            })?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .context("the server's address")?
            .parse()?;
        Ok(Self { child, address })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn row(case: &str, report: &LoadReport) {
    println!(
        "| {case} | {:.0} | {:.2} ms | {:.2} ms | {} |",
        report.per_second(),
        report.quantile(0.5).as_secs_f64() * 1e3,
        report.quantile(0.99).as_secs_f64() * 1e3,
        report.errors
    );
}

/// The JSON API's top-texts and top-features questions in-process: the median time per
/// answer.
fn in_process(index: &QueryIndex, features: &[u32], docs: &[u32]) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for (&feature, &doc) in features.iter().zip(docs) {
        let started = Instant::now();
        index.top_texts(&TopTextsRequest {
            feature,
            ..TopTextsRequest::default()
        })?;
        times.push(started.elapsed());
        let started = Instant::now();
        index.top_features(&DocRef::Number(doc), &TopFeaturesRequest::default())?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let budget = Duration::from_secs(env_number("SAEIDX_BENCH_BUDGET", 3) as u64);
    let dir = synthetic_index(env_number("SAEIDX_BENCH_TOKENS", 500_000))?;
    let index = QueryIndex::open(&dir)?;
    let features: Vec<u32> = (0..64).map(|i| i * 97 % 8192).collect();
    let docs: Vec<u32> = (0..64).map(|i| i * 7 % index.documents()).collect();
    let mut api = Vec::new();
    for (&feature, &doc) in features.iter().zip(&docs) {
        api.push(format!("/api/top-texts?feature={feature}&k=10"));
        api.push(format!("/api/top-features?doc={doc}&k=10"));
    }
    let reports: Vec<String> = features
        .iter()
        .map(|f| format!("/api/feature/{f}"))
        .collect();
    let mut browser = api.clone();
    browser.extend(features.iter().map(|f| format!("/feature/{f}")));
    let server = Server::start(&dir)?;
    let spec = |clients, keep_alive, paths: &Vec<String>| LoadSpec {
        clients,
        duration: budget,
        keep_alive,
        paths: paths.clone(),
    };
    println!(
        "index: {} documents, {} tokens; server: saeidx serve --threads 4 on {}",
        index.documents(),
        index.query_manifest().counts.tokens,
        server.address
    );
    println!("| case | answers/s | p50 | p99 | errors |\n|---|---|---|---|---|");
    for clients in [2, 4] {
        row(
            &format!("JSON API, {clients} keep-alive clients"),
            &run(server.address, &spec(clients, true, &api)),
        );
    }
    row(
        "JSON API, 8 keep-alive clients",
        &run(server.address, &spec(8, true, &api)),
    );
    row(
        "JSON API, 32 keep-alive clients",
        &run(server.address, &spec(32, true, &api)),
    );
    row(
        "JSON API, 32 clients, new connection each",
        &run(server.address, &spec(32, false, &api)),
    );
    row(
        "feature reports (/api/feature/F), 8 keep-alive clients",
        &run(server.address, &spec(8, true, &reports)),
    );
    row(
        "browser-like: 1 keep-alive client, pages + API",
        &run(server.address, &spec(1, true, &browser)),
    );
    let single = run(server.address, &spec(1, true, &api));
    row("JSON API, 1 keep-alive client", &single);
    let library = in_process(&index, &features, &docs)?;
    let http = single.quantile(0.5);
    println!(
        "in-process library: p50 {:.3} ms per answer; over HTTP (one client, p50): {:.3} ms ({:.1}x)",
        library.as_secs_f64() * 1e3,
        http.as_secs_f64() * 1e3,
        http.as_secs_f64() / library.as_secs_f64().max(1e-9)
    );
    Ok(())
}
