//! The index job end to end against its own compute: `saeidx run` on the default job
//! (model, SAE, corpus) vs the same batches through model and SAE alone, in one run.
//!
//! For two corpus sizes (the first `SMALL` and `LARGE` addresses of the default corpus)
//! it prints tokens/s of the whole pipeline (corpus reading, tokenizing, model, SAE,
//! Parquet writing, checksums, publishing) and of the compute alone, the pipeline's
//! overhead (target ≤ 10 %), bytes per nonzero activation (Parquet + manifest, and the
//! activations Parquet alone; targets ≤ 4 and ≤ 3), and the run's peak RSS, which must
//! not grow with the corpus.
//!
//! Run: `bash scripts/bench.sh index` (needs `scripts/setup.sh`'s default assets).
//! `SAEIDX_BENCH_DOCS=8,24` changes the two sizes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};
use mlx_rs::Array;
use saeidx_activations::{Batcher, Exclusions, TokenizedDocument, extract};
use saeidx_benches::repo_root;
use saeidx_corpus::window::WindowPolicy;
use saeidx_hub::HubSettings;
use saeidx_indexer::job::{self, JobFile};

fn main() -> anyhow::Result<()> {
    let sizes: Vec<u64> = std::env::var("SAEIDX_BENCH_DOCS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 24]);
    let binary = repo_root().join("target/release/saeidx");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p saeidx-cli -p saeidx-cli-model",
            binary.display()
        );
    }
    let job_path = repo_root().join("pipelines/default.toml");
    let scratch = tempfile::tempdir()?;
    println!(
        "| documents | tokens | pipeline tokens/s | compute-alone tokens/s | overhead | bytes/nonzero (Parquet + manifest) | bytes/nonzero (activations) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for documents in sizes {
        let output = scratch.path().join(format!("index-{documents}"));
        let (summary, peak_rss) = run_pipeline(&binary, &job_path, &output, documents)?;
        let tokens = summary["counts"]["tokens"].as_u64().unwrap_or(0);
        let wall = summary["timings"]["wall_s"].as_f64().unwrap_or(f64::NAN);
        let compute = compute_alone(&job_path, documents)?;
        let overhead = (wall - compute) / compute * 100.0;
        println!(
            "| {documents} | {tokens} | {:.0} | {:.0} | {overhead:+.1} % | {:.2} | {:.2} | {:.0} MiB |",
            tokens as f64 / wall,
            tokens as f64 / compute,
            summary["bytes_per_nonzero"].as_f64().unwrap_or(f64::NAN),
            summary["activation_bytes_per_nonzero"]
                .as_f64()
                .unwrap_or(f64::NAN),
            peak_rss as f64 / 1024.0,
        );
    }
    println!(
        "\npipeline = `saeidx run` wall time without model loading (manifest timings.wall_s);\n\
         compute alone = the same windows and batches through model and SAE in this process,\n\
         tokenized beforehand; peak RSS = the whole `saeidx run` process (getrusage)."
    );
    Ok(())
}

/// Runs `saeidx run` on the first `documents` documents; returns its JSON summary and
/// peak RSS in KiB.
fn run_pipeline(
    binary: &Path,
    job: &Path,
    output: &Path,
    documents: u64,
) -> anyhow::Result<(serde_json::Value, i64)> {
    let child = Command::new(binary)
        .args([
            "run",
            "--json",
            "--max-documents",
            &documents.to_string(),
            "--output",
        ])
        .arg(output)
        .arg(job)
        .env("HF_HUB_OFFLINE", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.context("stdout")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("saeidx run failed (status {status})");
    }
    Ok((serde_json::from_str(&text)?, usage.ru_maxrss))
}

/// Seconds for the job's first `documents` documents through model and SAE only.
fn compute_alone(job_path: &Path, documents: u64) -> anyhow::Result<f64> {
    let mut file = JobFile::read(job_path)?;
    file.run.max_documents = Some(documents);
    file.output = PathBuf::from("unused");
    let loaded = job::load(file, &HubSettings::from_env())?;
    let window = WindowPolicy::new(loaded.spec.window.length, loaded.spec.window.overlap)?;
    let texts: Vec<String> = loaded
        .file
        .corpus
        .reader()?
        .take(documents as usize)
        .map(|d| d.map(|d| d.text))
        .collect::<Result<_, _>>()?;
    let tokenized: Vec<TokenizedDocument> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| TokenizedDocument::new(i, text, &loaded.tokenizer))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut batcher = Batcher::new(window, loaded.file.run.batch_tokens);
    for document in &tokenized {
        batcher.push(document);
    }
    let all = Exclusions {
        window_start: false,
        special_tokens: false,
    };
    let mut nonzeros = 0;
    while let Some(batch) = batcher.next_any() {
        let extracted = extract(&loaded.model, loaded.hook, &batch, all)?;
        let n = extracted.document.len() as i32;
        let x = Array::from_slice(&extracted.values, &[n, extracted.width as i32]);
        nonzeros += loaded.sae.encode(&x)?.nonzeros();
    }
    std::hint::black_box(nonzeros);
    Ok(started.elapsed().as_secs_f64())
}
