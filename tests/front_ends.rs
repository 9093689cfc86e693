//! One answer, four front ends: every question asked of one index through the library,
//! the command line (`--json`), the web server's JSON API and the Python package gives
//! the same value, field for field; and every answer validates against its JSON Schema
//! in `schemas/answers/`.
//!
//! Python is the installed package of `scripts/python-test.sh` (`.venv-py`), which
//! `scripts/test.sh` runs before the Rust tests.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use saeidx_hub::HubSettings;
use saeidx_live::{LiveAnalyzer, LiveSources};
use saeidx_query::{
    Aggregate, DocRef, ExplainRequest, FeatureRequest, InfoRequest, QueryIndex, Rank,
    SampleRequest, TopFeaturesRequest, TopTextsRequest, answers::to_json,
};
use saeidx_tests::{
    job_fixture::{Setup, saeidx_ok},
    reference_python, repo_root, saeidx_binary,
};
use serde_json::Value;

const TEXT: &str = "The Senate shall make appropriations for the navy.\nParis, in France.";

/// The questions about `feature` and document `doc`, by name: (CLI arguments, API path,
/// Python expression).
#[expect(
    clippy::too_many_lines,
    reason = "a table: one entry per question and front end"
)]
fn questions(feature: u32, doc: u32) -> Vec<(&'static str, Vec<String>, String, String)> {
    let f = feature.to_string();
    let d = doc.to_string();
    let q = "q=The%20Senate%20shall%20make%20appropriations%20for%20the%20navy.%0AParis%2C%20in%20France.";
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        (
            "top_texts",
            strings(&[
                "top-texts",
                "--feature",
                &f,
                "--k",
                "5",
                "--rank",
                "doc-max",
                "--context",
                "4",
            ]),
            format!("/api/top-texts?feature={f}&k=5&rank=document-max&context=4"),
            format!("idx.top_texts_answer({f}, 5, rank='document_max', context=4)"),
        ),
        (
            "top_features",
            strings(&[
                "top-features",
                "--doc",
                &d,
                "--k",
                "6",
                "--aggregate",
                "sum",
                "--tokens",
                "2..40",
            ]),
            format!("/api/top-features?doc={d}&k=6&aggregate=sum&tokens=2..40"),
            format!("idx.top_features_answer(doc={d}, top_k=6, aggregate='sum', tokens=(2, 40))"),
        ),
        (
            "per_token",
            strings(&["top-features", "--doc", &d, "--k", "3", "--per-token"]),
            format!("/api/top-features?doc={d}&k=3&per_token=1"),
            format!("idx.top_features_answer(doc={d}, top_k=3, per_token=True)"),
        ),
        (
            "text_features",
            strings(&["top-features", "--text", TEXT, "--k", "5"]),
            format!("/api/text?{q}&k=5"),
            "idx.top_features_answer(TEXT, top_k=5)".into(),
        ),
        (
            "feature",
            strings(&[
                "feature",
                &f,
                "--examples",
                "3",
                "--bands",
                "2",
                "--per-band",
                "2",
                "--neighbours",
                "4",
                "--context",
                "3",
            ]),
            format!("/api/feature/{f}?examples=3&bands=2&per_band=2&neighbours=4&context=3"),
            format!("idx.feature({f}, examples=3, bands=2, per_band=2, neighbours=4, context=3)"),
        ),
        (
            "sample",
            strings(&[
                "sample",
                "--n",
                "3",
                "--seed",
                "7",
                "--examples",
                "2",
                "--context",
                "3",
            ]),
            "/api/sample?n=3&seed=7&examples=2&context=3".into(),
            "idx.sample(3, seed=7, examples=2, context=3)".into(),
        ),
        (
            "info",
            strings(&["info"]),
            "/api/info".into(),
            "idx.info".into(),
        ),
        (
            "label",
            strings(&["labels", "get", &f]),
            format!("/api/labels/{f}"),
            format!("idx.label({f})"),
        ),
        (
            "explain",
            strings(&[
                "explain",
                TEXT,
                "--features",
                "2",
                "--texts",
                "2",
                "--context",
                "3",
            ]),
            format!("/api/explain?{q}&features=2&texts=2&context=3"),
            "idx.explain(TEXT, features=2, texts=2, context=3)".into(),
        ),
    ]
}

/// The library's answers to the same questions.
fn library(index: &QueryIndex, feature: u32, doc: u32) -> Vec<Value> {
    let live = LiveAnalyzer::for_index(
        index.manifest(),
        index.dir(),
        &LiveSources::default(),
        &HubSettings::from_env(),
    )
    .unwrap();
    let text = live.analyze_text(TEXT).unwrap();
    let json = |value: Result<Value, serde_json::Error>| value.unwrap();
    vec![
        json(to_json(
            &index
                .top_texts(&TopTextsRequest {
                    feature,
                    k: 5,
                    rank: Rank::DocumentMax,
                    context: 4,
                    ..TopTextsRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .top_features(
                    &DocRef::Number(doc),
                    &TopFeaturesRequest {
                        k: 6,
                        aggregate: Aggregate::Sum,
                        tokens: Some(2..40),
                        ..TopFeaturesRequest::default()
                    },
                )
                .unwrap(),
        )),
        json(to_json(
            &index
                .per_token(
                    &DocRef::Number(doc),
                    &TopFeaturesRequest {
                        k: 3,
                        ..TopFeaturesRequest::default()
                    },
                )
                .unwrap(),
        )),
        json(to_json(
            &index
                .text_top_features(
                    &text,
                    &TopFeaturesRequest {
                        k: 5,
                        ..TopFeaturesRequest::default()
                    },
                )
                .unwrap(),
        )),
        json(to_json(
            &index
                .feature(&FeatureRequest {
                    feature,
                    examples: 3,
                    bands: 2,
                    per_band: 2,
                    neighbours: 4,
                    context: 3,
                    ..FeatureRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .sample(&SampleRequest {
                    n: 3,
                    seed: 7,
                    examples: 2,
                    context: 3,
                })
                .unwrap(),
        )),
        json(to_json(&index.info(&InfoRequest::default()).unwrap())),
        json(to_json(&index.label(feature).unwrap())),
        json(to_json(
            &index
                .explain(
                    &text,
                    &ExplainRequest {
                        features: 2,
                        texts: 2,
                        context: 3,
                        ..ExplainRequest::default()
                    },
                )
                .unwrap(),
        )),
    ]
}

/// `saeidx serve` on the index (a free port); killed when dropped.
struct Server(Child, String);

impl Server {
    fn start(index: &Path, cwd: &Path) -> Self {
        let mut child = Command::new(saeidx_binary())
            .args(["serve", index.to_str().unwrap(), "--port", "0"])
            .current_dir(cwd)
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let site = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Self(child, site)
    }

    fn get(&self, path: &str) -> Value {
        let body = ureq::get(&format!("{}{path}", self.1))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python package's answers (the package `scripts/python-test.sh` installed).
fn python(index: &Path, expressions: &[String]) -> Vec<Value> {
    let venv = repo_root().join(".venv-py/bin/python");
    assert!(
        venv.is_file(),
        "{} is missing: run `bash scripts/python-test.sh` (scripts/test.sh runs it first)",
        venv.display()
    );
    let script = format!(
        "import json, sys, saeidx\nidx = saeidx.open(sys.argv[1])\nTEXT = {TEXT:?}\nprint(json.dumps([{}]))",
        expressions.join(", ")
    );
    let output = Command::new(venv)
        .args(["-c", &script])
        .arg(index)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Validates `answer` against `schemas/answers/{name}.schema.json` (Python jsonschema).
fn validate(name: &str, answers: &[(String, Value)]) {
    let script = r#"
import json, sys, jsonschema
root, answers = sys.argv[1], json.load(sys.stdin)
for name, answer in answers:
    schema = json.load(open(f"{root}/schemas/answers/{name}.schema.json"))
    jsonschema.validate(answer, schema)
print(len(answers))
"#;
    let mut child = Command::new(reference_python())
        .args(["-c", script])
        .arg(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), answers).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The schema file of a question's answer.
fn schema_of(question: &str) -> &'static str {
    match question {
        "top_texts" => "top-texts",
        "top_features" | "text_features" => "top-features",
        "per_token" => "per-token",
        "feature" => "feature",
        "sample" => "sample",
        "info" => "info",
        "label" => "label",
        _ => "explain",
    }
}

#[test]
fn every_front_end_gives_the_same_answer() {
    let setup = Setup::create();
    saeidx_ok(
        &["run", setup.job().to_str().unwrap(), "--json"],
        setup.path(),
    );
    let index_dir = setup.path().join("out/index");
    let index_arg = index_dir.to_str().unwrap();
    let top = saeidx_ok(
        &[
            "top-features",
            "--doc",
            "0",
            "--k",
            "1",
            "--index",
            index_arg,
            "--json",
        ],
        setup.path(),
    );
    let feature = top["features"][0]["feature"].as_u64().unwrap() as u32;
    saeidx_ok(
        &[
            "labels",
            "set",
            &feature.to_string(),
            "--name",
            "senate words",
            "--confidence",
            "low",
            "--index",
            index_arg,
        ],
        setup.path(),
    );
    let index = QueryIndex::open(&index_dir).unwrap();
    // The longest document (the corpus has an empty one).
    let doc = (0..index.documents())
        .max_by_key(|&d| index.document(d).unwrap().2.len())
        .unwrap();
    let asked = questions(feature, doc);
    let from_library = library(&index, feature, doc);
    let server = Server::start(&index_dir, setup.path());
    let expressions: Vec<String> = asked.iter().map(|q| q.3.clone()).collect();
    let from_python = python(&index_dir, &expressions);
    let mut checked = Vec::new();
    for (i, (name, cli, api, _)) in asked.iter().enumerate() {
        let mut args: Vec<&str> = cli.iter().map(String::as_str).collect();
        args.extend(["--index", index_arg, "--json"]);
        let from_cli = saeidx_ok(&args, setup.path());
        let from_api = server.get(api);
        assert_eq!(from_library[i], from_cli, "{name}: library vs CLI");
        assert_eq!(from_library[i], from_api, "{name}: library vs API");
        assert_eq!(from_library[i], from_python[i], "{name}: library vs Python");
        checked.push((schema_of(name).to_string(), from_cli));
    }
    assert_eq!(from_library[7]["label"]["name"], "senate words");
    validate("every answer", &checked);
}
