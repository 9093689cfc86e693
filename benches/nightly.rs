//! A nightly job's cost: the full run over a corpus, then a run with nothing new, then
//! an append of ~1 % new tokens, each through `saeidx run` on the default model and SAE
//! (issue 15: an append of ~1 % costs ~1 % of the full run's model time; a run with
//! nothing new finishes in seconds).
//!
//! The corpus is the first `SAEIDX_BENCH_DOCS` (default 32, the default index's)
//! addresses of the default corpus; the appended document is the next address cut to
//! `SAEIDX_BENCH_APPEND_PERCENT` (default 1) % of the corpus's characters. Printed: each
//! run's wall time (the whole process: model loading, reading, writing, publishing) and
//! its model seconds (`model_s`), the appended share of tokens and of model time.
//!
//! Run: `bash scripts/bench.sh nightly` (needs `scripts/setup.sh`'s default assets).

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, bail};
use saeidx_benches::{env_number, repo_root};
use serde_json::Value;

/// The job: the default job's model, SAE, hook and windowing over `corpus/sotu.jsonl`.
fn job(sae: &Path) -> String {
    format!(
        r#"output = "index"
hook = "blocks.15.hook_resid_post"

[model]
source = "saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"

[sae]
path = {sae:?}

[corpus]
sources = [{{ path = "corpus/sotu.jsonl", id_field = "id" }}]
on_bad_record = "stop"
metadata = [
  {{ field = "year", type = "integer" }},
  {{ field = "president", type = "string" }},
  {{ field = "party", type = "string" }},
]

[run]
part_bytes = 262144
window_length = 256
window_overlap = 32
batch_tokens = 2048
bos = "tokenizer"
query_memory = 1024
"#
    )
}

/// `saeidx run JOB --json`: its summary and wall seconds.
fn run(binary: &Path, dir: &Path) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let output = Command::new(binary)
        .args(["run", "job.toml", "--json"])
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "saeidx run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((serde_json::from_slice(&output.stdout)?, wall))
}

/// A run summary's seconds in the model (a first run reports them in its timings).
fn model_seconds(summary: &Value) -> f64 {
    summary["model_s"]
        .as_f64()
        .or_else(|| summary["timings"]["model_s"].as_f64())
        .unwrap_or(f64::NAN)
}

/// The first `documents` records of the default corpus, and the next one's record cut
/// to `percent` % of their characters (at a space), with a new id.
fn corpus(documents: usize, percent: usize) -> anyhow::Result<(Vec<String>, String)> {
    let path = repo_root().join(".assets/corpora/sotu.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: run scripts/setup.sh", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .take(documents + 1)
        .map(str::to_string)
        .collect();
    if lines.len() <= documents {
        bail!(
            "the default corpus has fewer than {} records",
            documents + 1
        );
    }
    let characters: usize = lines[..documents]
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .map_or(0, |v| v["text"].as_str().map_or(0, |t| t.chars().count()))
        })
        .sum();
    let mut record: Value = serde_json::from_str(&lines[documents])?;
    let full = record["text"].as_str().unwrap_or_default();
    let cut: String = full.chars().take(characters * percent / 100).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    record["text"] = Value::from(cut);
    record["id"] = Value::from("nightly-appended-1");
    Ok((lines[..documents].to_vec(), record.to_string()))
}

fn main() -> anyhow::Result<()> {
    let documents = env_number("SAEIDX_BENCH_DOCS", 32);
    let percent = env_number("SAEIDX_BENCH_APPEND_PERCENT", 1);
    let binary = repo_root().join("target/release/saeidx");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p saeidx-cli -p saeidx-cli-model",
            binary.display()
        );
    }
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let sae = repo_root().join("crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32");
    std::fs::write(dir.join("job.toml"), job(&sae))?;
    std::fs::create_dir_all(dir.join("corpus"))?;
    let (lines, appended) = corpus(documents, percent)?;
    let write = |lines: &[String]| {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join("corpus/sotu.jsonl"), text)
    };
    write(&lines)?;
    let (full, full_wall) = run(&binary, dir)?;
    let tokens = full["counts"]["tokens"].as_u64().unwrap_or(0);
    let (same, same_wall) = run(&binary, dir)?;
    if same["up_to_date"] != true {
        bail!("the second run found work: {same}");
    }
    let mut grown = lines.clone();
    grown.push(appended);
    write(&grown)?;
    let (append, append_wall) = run(&binary, dir)?;
    let after = saeidx_query::AnyIndex::open(&dir.join("index"))?
        .counts()?
        .tokens;
    let appended_tokens = after.saturating_sub(tokens);
    println!(
        "{documents} documents, {tokens} tokens; appended: {}",
        append["changes"]
    );
    println!("| run | wall s | model s |\n|---|---|---|");
    println!("| full | {full_wall:.1} | {:.1} |", model_seconds(&full));
    println!("| nothing new | {same_wall:.1} | 0 |");
    println!(
        "| append ~{percent} % | {append_wall:.1} | {:.2} |",
        model_seconds(&append)
    );
    println!(
        "appended tokens: {appended_tokens} ({:.2} % of the full run's); model time: {:.2} % of the full run's",
        appended_tokens as f64 / tokens as f64 * 100.0,
        model_seconds(&append) / model_seconds(&full) * 100.0
    );
    println!("append summary: {append}");
    Ok(())
}
