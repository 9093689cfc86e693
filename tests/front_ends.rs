//! One answer, four front ends: every question asked of one index through the library,
//! the command line (`--json`), the web server's JSON API and the Python package gives
//! the same value, field for field; and every answer validates against its JSON Schema
//! in `schemas/answers/`. Labels drafted by an LLM (a scripted endpoint on loopback) are
//! one of those answers; a labelling run itself, which the web server does not start,
//! gives the same answer through the library, the command line and Python.
//!
//! Python is the installed package of `scripts/python-test.sh` (`.venv-py`), which
//! `scripts/test.sh` runs before the Rust tests.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use saeidx_autointerp::{
    EvidenceOptions, FeatureSelection, LabelRequest, LlmSettings, Silent, Task,
};
use saeidx_compare::CompareRequest;
use saeidx_hub::HubSettings;
use saeidx_live::{LiveAnalyzer, LiveSources};
use saeidx_query::{
    Aggregate, ContrastRequest, DocRef, DocumentRequest, ExplainRequest, FeatureRequest,
    InfoRequest, OverviewRequest, QueryIndex, Rank, Restriction, SampleRequest, SilentRequest,
    TokenFeaturesRequest, TokenPattern, TopFeaturesRequest, TopTextsRequest, answers::to_json,
};
use saeidx_testkit::llm::{FakeLlm, sensible};
use saeidx_tests::{
    job_fixture::{Setup, random_sae_seeded, saeidx_ok},
    reference_python, repo_root, saeidx_binary,
};
use serde_json::Value;

const TEXT: &str = "The Senate shall make appropriations for the navy.\nParis, in France.";

/// The features and document the questions are about.
#[derive(Clone, Copy)]
struct Subjects {
    /// A feature with a person's label.
    feature: u32,
    /// A feature with an LLM's draft.
    drafted: u32,
    /// A document.
    doc: u32,
    /// A token `feature` is silent around somewhere.
    token: u32,
}

/// The questions about `subjects`, by name: (CLI arguments, API path, Python
/// expression).
#[expect(
    clippy::too_many_lines,
    reason = "a table: one entry per question and front end"
)]
fn questions(subjects: Subjects) -> Vec<(&'static str, Vec<String>, String, String)> {
    let Subjects {
        feature,
        drafted,
        doc,
        token,
    } = subjects;
    let f = feature.to_string();
    let g = drafted.to_string();
    let t = token.to_string();
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
            "label",
            strings(&["labels", "get", &g]),
            format!("/api/labels/{g}"),
            format!("idx.label({g})"),
        ),
        (
            "silent",
            strings(&[
                "silent",
                &f,
                "--n",
                "4",
                "--context",
                "3",
                "--token",
                &t,
                "--seed",
                "2",
            ]),
            format!("/api/silent/{f}?n=4&context=3&token={t}&seed=2"),
            format!("idx.silent_contexts({f}, 4, context=3, tokens=[{t}], seed=2)"),
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
        (
            "top_texts_where",
            strings(&[
                "top-texts",
                "--feature",
                &f,
                "--k",
                "4",
                "--context",
                "3",
                "--where",
                "doc >= 1",
                "--token-id",
                &t,
            ]),
            format!("/api/top-texts?feature={f}&k=4&context=3&where=doc%20%3E%3D%201&token_id={t}"),
            format!("idx.top_texts_answer({f}, 4, context=3, where='doc >= 1', token={t})"),
        ),
        (
            "token_features",
            strings(&[
                "token-features",
                "--token-id",
                &t,
                "--k",
                "5",
                "--examples",
                "1",
                "--context",
                "3",
            ]),
            format!("/api/token-features?token_id={t}&k=5&examples=1&context=3"),
            format!("idx.token_features({t}, top_k=5, examples=1, context=3)"),
        ),
        (
            "contrast",
            strings(&[
                "contrast",
                "--a",
                "doc < 2",
                "--k",
                "3",
                "--examples",
                "1",
                "--context",
                "3",
            ]),
            "/api/contrast?a=doc%20%3C%202&k=3&examples=1&context=3".into(),
            "idx.contrast('doc < 2', top_k=3, examples=1, context=3)".into(),
        ),
        (
            "document",
            strings(&[
                "document",
                &d,
                "--feature",
                &f,
                "--page",
                "1",
                "--page-tokens",
                "20",
                "--top",
                "4",
            ]),
            format!("/api/document/{d}?f={f}&page=1&page_tokens=20&top=4"),
            format!("idx.document_page({d}, feature={f}, page=1, page_tokens=20, top=4)"),
        ),
        (
            "overview",
            strings(&[
                "overview",
                "--frequent",
                "3",
                "--sample",
                "2",
                "--seed",
                "1",
                "--docs",
                "4",
                "--docs-from",
                "1",
            ]),
            "/api/overview?frequent=3&sample=2&seed=1&docs=4&docs_from=1".into(),
            "idx.overview(frequent=3, sample=2, seed=1, docs=4, docs_from=1)".into(),
        ),
    ]
}

/// The library's answers to the same questions.
#[expect(clippy::too_many_lines, reason = "a table: one answer per question")]
fn library(index: &QueryIndex, subjects: Subjects) -> Vec<Value> {
    let Subjects {
        feature,
        drafted,
        doc,
        token,
    } = subjects;
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
            &saeidx_compare::feature_report(
                &saeidx_query::AnyIndex::open(index.dir()).unwrap(),
                &FeatureRequest {
                    feature,
                    examples: 3,
                    bands: 2,
                    per_band: 2,
                    neighbours: 4,
                    context: 3,
                    ..FeatureRequest::default()
                },
            )
            .unwrap(),
        )),
        json(to_json(
            &index
                .sample(&SampleRequest {
                    n: 3,
                    seed: 7,
                    examples: 2,
                    context: 3,
                    restrict: Default::default(),
                })
                .unwrap(),
        )),
        json(to_json(&index.info(&InfoRequest::default()).unwrap())),
        json(to_json(&index.label(feature).unwrap())),
        json(to_json(&index.label(drafted).unwrap())),
        json(to_json(
            &index
                .silent_contexts(&SilentRequest {
                    feature,
                    n: 4,
                    context: 3,
                    tokens: vec![token],
                    seed: 2,
                    ..SilentRequest::default()
                })
                .unwrap(),
        )),
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
        json(to_json(
            &index
                .top_texts(&TopTextsRequest {
                    feature,
                    k: 4,
                    context: 3,
                    restrict: Restriction::filter("doc >= 1"),
                    token: Some(TokenPattern::Id(token)),
                    ..TopTextsRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .token_features(&TokenFeaturesRequest {
                    tokens: vec![TokenPattern::Id(token)],
                    k: 5,
                    examples: 1,
                    context: 3,
                    ..TokenFeaturesRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .contrast(&ContrastRequest {
                    a: Restriction::filter("doc < 2"),
                    k: 3,
                    examples: 1,
                    context: 3,
                    ..ContrastRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .document_page(&DocumentRequest {
                    doc: DocRef::Number(doc),
                    feature: Some(feature),
                    page: 1,
                    page_tokens: 20,
                    top: 4,
                    ..DocumentRequest::default()
                })
                .unwrap(),
        )),
        json(to_json(
            &index
                .overview(&OverviewRequest {
                    frequent: 3,
                    sample: 2,
                    seed: 1,
                    documents: 4,
                    documents_from: 1,
                })
                .unwrap(),
        )),
    ]
}

/// `saeidx serve` on the index (a free port); killed when dropped.
struct Server(Child, String);

impl Server {
    fn start(index: &Path, cwd: &Path) -> Self {
        Self::serving(&[index], cwd)
    }

    /// Serves several indexes (the first at `/`, each at `/i/NAME/`).
    fn serving(indexes: &[&Path], cwd: &Path) -> Self {
        let mut child = Command::new(saeidx_binary())
            .arg("serve")
            .args(indexes)
            .args(["--port", "0"])
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
        "silent" => "silent",
        "top_texts_where" => "top-texts",
        "token_features" => "token-features",
        "contrast" => "contrast",
        "document" => "document",
        "overview" => "overview",
        _ => "explain",
    }
}

/// Small labelling runs: 5 requests a feature (a draft, two detection and two fuzzing
/// prompts).
const EVIDENCE: [&str; 18] = [
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
    "--context",
    "4",
    "--per-prompt",
    "2",
    "--concurrency",
    "2",
];

/// `saeidx labels draft|score ... --json` against `llm`, on `index`.
fn cli_label_run(task: &str, llm: &str, features: &[u32], index: &Path, cwd: &Path) -> Value {
    let mut args: Vec<String> = ["labels", task, "--llm", llm, "--llm-model", "fake-model"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(EVIDENCE.iter().map(|s| s.to_string()));
    for feature in features {
        args.extend(["--feature".into(), feature.to_string()]);
    }
    args.extend([
        "--index".into(),
        index.display().to_string(),
        "--json".into(),
    ]);
    saeidx_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), cwd)
}

/// The library's request of [`cli_label_run`].
fn label_request(task: Task, llm: &str, features: &[u32]) -> LabelRequest {
    LabelRequest {
        task,
        features: FeatureSelection::Listed(features.to_vec()),
        llm: LlmSettings {
            url: llm.into(),
            model: "fake-model".into(),
            ..LlmSettings::default()
        },
        evidence: EvidenceOptions {
            top: 3,
            bands: 2,
            per_band: 1,
            same_token: 1,
            silent: 1,
            test: 2,
            context: 4,
            seed: 0,
        },
        per_prompt: 2,
        concurrency: 2,
        ..LabelRequest::default()
    }
}

/// A labelling answer without what differs from run to run: times, dates, paths.
fn comparable(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for key in [
                "seconds",
                "features_per_minute",
                "registry",
                "cache",
                "drafted_at",
                "scored_at",
            ] {
                map.remove(key);
            }
            for item in map.values_mut() {
                *item = comparable(item.take());
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = comparable(item.take());
            }
        }
        _ => {}
    }
    value
}

/// A copy of the index folder `from` (its query files and labels included) at `to`.
fn copy_index(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_index(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Drafting then scoring labels of `features` (the first labelled by a person) gives the
/// same answers through the library, the command
/// line and Python (each on its own copy of the index), valid against their schema.
fn labelling_runs_agree(index_dir: &Path, features: &[u32], cwd: &Path) -> Vec<(String, Value)> {
    let llm = FakeLlm::start(|_, seen| sensible(seen));
    let copies: Vec<_> = ["library", "cli", "python"]
        .iter()
        .map(|name| {
            let copy = cwd.join(format!("labelled-{name}"));
            copy_index(index_dir, &copy);
            copy
        })
        .collect();
    let mut answers = Vec::new();
    for task in [Task::Draft, Task::Score] {
        let name = if task == Task::Draft {
            "draft"
        } else {
            "score"
        };
        let index = saeidx_query::AnyIndex::open(&copies[0]).unwrap();
        let report =
            saeidx_autointerp::run(&index, &label_request(task, llm.url(), features), &Silent)
                .unwrap();
        let from_library = to_json(&report).unwrap();
        let from_cli = cli_label_run(name, llm.url(), features, &copies[1], cwd);
        let listed = features
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let call = format!(
            "idx.{name}_labels_answer([{listed}], llm={:?}, llm_model='fake-model', \
             evidence=dict(top=3, bands=2, per_band=1, same_token=1, silent=1, test=2, \
             context=4), per_prompt=2, concurrency=2)",
            llm.url()
        );
        let from_python = python(&copies[2], &[call]).remove(0);
        assert_eq!(
            comparable(from_library.clone()),
            comparable(from_cli.clone()),
            "labels {name}: library vs CLI"
        );
        assert_eq!(
            comparable(from_library.clone()),
            comparable(from_python),
            "labels {name}: library vs Python"
        );
        answers.push(("label-run".to_string(), from_cli));
    }
    let statuses = |answer: &Value| -> Vec<String> {
        answer["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["status"].as_str().unwrap().to_string())
            .collect()
    };
    // A person's label is kept; both are scored.
    assert_eq!(statuses(&answers[0].1), ["kept_human", "drafted"]);
    assert_eq!(statuses(&answers[1].1), ["scored"; 2]);
    answers
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
            "2",
            "--index",
            index_arg,
            "--json",
        ],
        setup.path(),
    );
    let feature = top["features"][0]["feature"].as_u64().unwrap() as u32;
    let drafted = top["features"][1]["feature"].as_u64().unwrap() as u32;
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
    let mut checked = labelling_runs_agree(&index_dir, &[feature, drafted], setup.path());
    let llm = FakeLlm::start(|_, seen| sensible(seen));
    cli_label_run("draft", llm.url(), &[drafted], &index_dir, setup.path());
    let index = QueryIndex::open(&index_dir).unwrap();
    // A token with a context where the feature is silent (at least that one is found).
    let token = index
        .silent_contexts(&SilentRequest {
            feature,
            n: 1,
            context: 3,
            ..SilentRequest::default()
        })
        .unwrap()
        .contexts[0]
        .token;
    // The longest document (the corpus has an empty one).
    let doc = (0..index.documents())
        .max_by_key(|&d| index.document(d).unwrap().2.len())
        .unwrap();
    let subjects = Subjects {
        feature,
        drafted,
        doc,
        token,
    };
    let asked = questions(subjects);
    let from_library = library(&index, subjects);
    let server = Server::start(&index_dir, setup.path());
    let expressions: Vec<String> = asked.iter().map(|q| q.3.clone()).collect();
    let from_python = python(&index_dir, &expressions);
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
    let draft = &from_library[8]["label"];
    assert_eq!(draft["provenance"]["origin"], "drafted");
    assert_eq!(draft["provenance"]["llm"], "fake-model");
    assert_eq!(draft["scores"]["detection"]["balanced_accuracy"], 0.5);
    let silent = from_library[9]["contexts"].as_array().unwrap();
    assert!(!silent.is_empty() && silent.iter().all(|hit| hit["token"] == token));
    checked.push(comparison_agrees(&setup, &index_dir));
    validate("every answer", &checked);
}

/// `compare` of the index with an index of the same documents made with a second,
/// differently seeded random SAE gives the same answer through the library, the
/// command line, the API and Python.
fn comparison_agrees(setup: &Setup, index_a: &Path) -> (String, Value) {
    let cwd = setup.path();
    random_sae_seeded(&cwd.join("sae-b"), 64, 4);
    let job = setup.write_job("job-b.toml", "sae-b", "");
    let index_b = cwd.join("out/index-b");
    let (a_arg, b_arg) = (index_a.to_str().unwrap(), index_b.to_str().unwrap());
    saeidx_ok(
        &["run", job.to_str().unwrap(), "--output", b_arg, "--json"],
        cwd,
    );
    let (a, b) = (
        saeidx_query::AnyIndex::open(index_a).unwrap(),
        saeidx_query::AnyIndex::open(&index_b).unwrap(),
    );
    let request = CompareRequest {
        candidates: 3,
        min_score: 0.2,
        examples: 2,
        context: 2,
        ..CompareRequest::default()
    };
    let from_library =
        to_json(&saeidx_compare::compare_recorded(&a, &b, &request).unwrap()).unwrap();
    let from_cli = saeidx_ok(
        &[
            "compare",
            a_arg,
            b_arg,
            "--candidates",
            "3",
            "--min-score",
            "0.2",
            "--examples",
            "2",
            "--context",
            "2",
            "--json",
        ],
        cwd,
    );
    let server = Server::serving(&[index_a, &index_b], cwd);
    let from_api =
        server.get("/api/compare?with=index-b&candidates=3&min_score=0.2&examples=2&context=2");
    let from_python = python(
        index_a,
        &[format!(
            "idx.compare(saeidx.open({b_arg:?}), candidates=3, min_score=0.2, examples=2, \
             context=2)"
        )],
    )
    .remove(0);
    assert_eq!(from_library["kind"], "saes");
    assert_eq!(
        from_library["matched_by"], "coactivation",
        "the same tokens"
    );
    assert!(
        from_library["matched"].as_u64().unwrap() > 0,
        "{from_library}"
    );
    assert_eq!(from_library, from_cli, "compare: library vs CLI");
    assert_eq!(from_library, from_api, "compare: library vs API");
    assert_eq!(from_library, from_python, "compare: library vs Python");
    ("compare".to_string(), from_cli)
}
