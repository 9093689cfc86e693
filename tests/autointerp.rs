//! `saeidx labels draft` / `score` / `accept` end to end against a real OpenAI-compatible
//! server on loopback: `mlx_lm.server` from the reference environment, serving the
//! default model (SmolLM2-135M-Instruct) at temperature 0, labels two features of the
//! committed version-1 index; the labels land in the registry with their provenance and
//! scores and match the schema; a rerun sends nothing; scoring the drafts is answered
//! from the cache; an accepted draft is a person's label that drafts leave alone. Then,
//! against a slow scripted endpoint, a run killed with `kill -9` loses only the requests
//! in flight.
//!
//! The server serves the default model's weights dequantized to f32 (`mlx_lm convert
//! --dequantize`, seconds), with OpenBLAS preloaded as the benchmarks do: on this CPU
//! MLX's 4-bit matmuls prefill about 7 tokens/s, the f32 copy about 125, which keeps the
//! test to well under a minute. The function is the same model's.

use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use saeidx_testkit::llm::{FakeLlm, sensible};
use saeidx_tests::{default_model, job_fixture::saeidx_ok, reference_python, repo_root};
use serde_json::Value;

/// `mlx_lm.server` on a free loopback port, killed when dropped.
struct MlxServer {
    child: Child,
    url: String,
}

impl MlxServer {
    fn start(model: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(reference_python())
            .args(["-m", "mlx_lm", "server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("LD_PRELOAD", "libopenblas.so.0")
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "mlx_lm.server did not start: {}",
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
        }
    }
}

impl Drop for MlxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The default model's weights dequantized to f32, in `dir`.
fn dequantized_default_model(dir: &Path) -> PathBuf {
    let out = dir.join("SmolLM2-135M-Instruct-f32");
    let status = Command::new(reference_python())
        .args([
            "-m",
            "mlx_lm",
            "convert",
            "--dequantize",
            "--dtype",
            "float32",
        ])
        .arg("--hf-path")
        .arg(&default_model().dir)
        .arg("--mlx-path")
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success() && out.join("model.safetensors").is_file());
    out
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// Small prompts: 3 top examples, 2 bands of 1, 2 silent contexts; 2 test examples and
/// 2 silent ones, scored 2 texts a prompt: 5 requests a feature.
const SMALL: [&str; 16] = [
    "--top",
    "3",
    "--bands",
    "2",
    "--per-band",
    "1",
    "--same-token",
    "1",
    "--silent",
    "1",
    "--test",
    "2",
    "--per-prompt",
    "2",
    "--context",
    "6",
];

fn labels(command: &str, llm: &str, model: &str, index: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["labels", command, "--llm", llm, "--llm-model", model]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(SMALL.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--index".into(),
        index.display().to_string(),
        "--json".into(),
    ]);
    args
}

fn run(args: &[String], cwd: &Path) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    saeidx_ok(&args, cwd)
}

fn statuses(report: &Value) -> Vec<String> {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn mlx_lm_server_drafts_and_scores_labels_and_a_rerun_sends_nothing() {
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    copy_tree(&repo_root().join("tests/fixtures/index-v1"), &index);
    let model = dequantized_default_model(work.path());
    let server = MlxServer::start(&model, &work.path().join("server.log"));
    let model = model.display().to_string();
    let draft = labels(
        "draft",
        &server.url,
        &model,
        &index,
        &["--feature", "199", "--feature", "248"],
    );

    let report = run(&draft, work.path());
    assert_eq!(statuses(&report), ["drafted", "drafted"], "{report:#}");
    let requests = &report["requests"];
    assert_eq!(
        (requests["sent"].as_u64(), requests["cached"].as_u64()),
        (Some(10), Some(0))
    );
    assert!(requests["prompt_tokens"].as_u64().unwrap() > 1000);
    assert_eq!(
        requests["estimated_tokens"], false,
        "mlx_lm.server reports usage"
    );
    let saved: Value =
        serde_json::from_slice(&fs::read(index.join("labels.json")).unwrap()).unwrap();
    check_drafts(&saved, &model);
    validate_labels(&index);

    // A rerun sends nothing: the drafts are for the same requests.
    let again = run(&draft, work.path());
    assert_eq!(statuses(&again), ["unchanged", "unchanged"]);
    assert_eq!(again["requests"]["asked"], 0);
    // Without the registry, every request is answered from the cache.
    fs::remove_file(index.join("labels.json")).unwrap();
    let cached = run(&draft, work.path());
    assert_eq!(statuses(&cached), ["drafted", "drafted"]);
    assert_eq!(
        (
            cached["requests"]["cached"].as_u64(),
            cached["requests"]["sent"].as_u64()
        ),
        (Some(10), Some(0))
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&fs::read(index.join("labels.json")).unwrap()).unwrap()["199"]
            ["description"],
        saved["199"]["description"]
    );

    // Scoring the labels asks what drafting asked: all from the cache.
    let scored = run(
        &labels("score", &server.url, &model, &index, &[]),
        work.path(),
    );
    assert_eq!(statuses(&scored), ["scored", "scored"]);
    assert_eq!(scored["requests"]["sent"], 0);

    // An accepted draft is a person's label: drafting leaves it alone.
    let at = ["--index", index.to_str().unwrap()];
    saeidx_ok(
        &[&["labels", "accept", "199"][..], &at].concat(),
        work.path(),
    );
    let kept = run(&draft, work.path());
    assert_eq!(statuses(&kept), ["kept_human", "unchanged"]);
    drop(server);
}

/// The drafts of features 199 and 248 in `saved` (labels.json): a description, the
/// provenance of `model`, and scores from the same samples for both scorers.
fn check_drafts(saved: &Value, model: &str) {
    for feature in ["199", "248"] {
        let label = &saved[feature];
        assert!(
            !label["description"].as_str().unwrap().is_empty(),
            "{label:#}"
        );
        let provenance = &label["provenance"];
        assert_eq!(provenance["origin"], "drafted");
        assert_eq!(provenance["llm"], model);
        assert_eq!(provenance["prompt_version"], "saeidx-draft-1");
        // Each scorer saw the same samples: up to 2 activating and 2 silent texts
        // (fewer where the feature has few examples), each answered or failed.
        let counted: Vec<u64> = ["detection", "fuzzing"]
            .iter()
            .map(|scorer| {
                let s = &label["scores"][scorer];
                [
                    "true_positives",
                    "true_negatives",
                    "false_positives",
                    "false_negatives",
                    "failed",
                ]
                .iter()
                .map(|k| s[k].as_u64().unwrap())
                .sum()
            })
            .collect();
        assert!(
            counted[0] == counted[1] && (2..=4).contains(&counted[0]),
            "{label:#}"
        );
    }
}

fn validate_labels(index: &Path) {
    let validate = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft202012Validator)
"#;
    let output = Command::new(reference_python())
        .args(["-c", validate])
        .arg(repo_root().join("schemas/index/labels.schema.json"))
        .arg(index.join("labels.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_run_killed_with_kill_9_loses_only_the_requests_in_flight() {
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    copy_tree(&repo_root().join("tests/fixtures/index-v1"), &index);
    let slow = FakeLlm::start(|_, seen| {
        std::thread::sleep(Duration::from_millis(150));
        sensible(seen)
    });
    // 12 live features, 5 requests each, 3 in flight at a time.
    let extra = ["--sample", "12", "--seed", "3", "--concurrency", "3"];
    let args = labels("draft", slow.url(), "fake-model", &index, &extra);
    let mut child = Command::new(saeidx_tests::saeidx_binary())
        .args(&args)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cache = index.join("autointerp/cache");
    let started = Instant::now();
    while cached_requests(&cache).len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no answers cached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let answered = cached_requests(&cache);
    let sent = slow.seen().len();
    assert!(
        sent - answered.len() <= 3,
        "at most the 3 requests in flight are lost: {sent} sent, {} cached",
        answered.len()
    );

    let fresh = FakeLlm::start(|_, seen| sensible(seen));
    let report = run(
        &labels("draft", fresh.url(), "fake-model", &index, &extra),
        work.path(),
    );
    assert!(
        statuses(&report).iter().all(|s| s == "drafted"),
        "{report:#}"
    );
    let requests = &report["requests"];
    assert_eq!(requests["sent"].as_u64(), Some(fresh.seen().len() as u64));
    assert_eq!(requests["cached"].as_u64(), Some(answered.len() as u64));
    assert_eq!(
        requests["asked"].as_u64(),
        Some(fresh.seen().len() as u64 + answered.len() as u64)
    );
    for seen in fresh.seen() {
        assert!(!answered.contains(&seen.body), "asked twice: {}", seen.body);
    }
}

/// The requests whose answers are in the cache (each entry read whole: none is
/// half-written).
fn cached_requests(cache: &Path) -> Vec<Value> {
    walk(cache)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let entry: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
            entry["request"].clone()
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
