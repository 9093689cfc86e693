//! Labelling runs against a scripted endpoint (`saeidx_testkit::llm`): each failure a
//! server can show — a refused connection, HTTP 500, 429 with `Retry-After`, a body
//! that is not a chat completion, an answer that does not parse, a refusal — gives a
//! clear outcome and loses nothing (a rerun sends only what has no answer yet). The
//! registry's rules hold through a run, and the API key reaches the server and nothing
//! else. The happy path against a real server is `tests/autointerp.rs`.

use std::{path::Path, time::Duration};

use saeidx_autointerp::{
    EvidenceOptions, FeatureSelection, LabelRequest, LlmSettings, Silent, Status, Task, run,
};
use saeidx_query::{AnyIndex, FeatureLabel, Registry, build};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_testkit::{
    hub::closed_endpoint,
    llm::{FakeLlm, Reply, sensible},
};

fn index() -> (tempfile::TempDir, AnyIndex) {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 8,
        tokens_per_document: (40, 80),
        documents_per_part: 4,
        feature_weights: vec![3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5],
        k: 2,
        value_step: 0.25,
        seed: 5,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let index = AnyIndex::open(dir.path()).unwrap();
    (dir, index)
}

/// Five requests per feature: a draft, two detection and two fuzzing prompts.
fn request(url: &str, features: &[u32]) -> LabelRequest {
    LabelRequest {
        features: FeatureSelection::Listed(features.to_vec()),
        llm: LlmSettings {
            url: url.into(),
            model: "fake-model".into(),
            api_key_env: "SAEIDX_TEST_LLM_KEY".into(),
            timeout: Duration::from_secs(10),
            max_retries: 2,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..LlmSettings::default()
        },
        evidence: EvidenceOptions {
            top: 3,
            bands: 2,
            per_band: 1,
            same_token: 1,
            silent: 1,
            test: 2,
            context: 2,
            seed: 1,
        },
        concurrency: 1,
        per_prompt: 2,
        ..LabelRequest::default()
    }
}

fn cached_answers(dir: &Path) -> usize {
    let cache = dir.join("autointerp/cache");
    std::fs::read_dir(&cache)
        .map(|d| {
            d.map(|e| std::fs::read_dir(e.unwrap().path()).unwrap().count())
                .sum()
        })
        .unwrap_or(0)
}

fn registry(dir: &Path) -> Registry {
    Registry::load(dir, 8).unwrap()
}

#[test]
fn a_refused_connection_fails_the_features_and_stops_the_run() {
    let (dir, index) = index();
    let url = format!("{}/v1", closed_endpoint());
    let report = run(
        &index,
        &LabelRequest {
            max_failed_in_a_row: 2,
            ..request(&url, &[0, 1, 2])
        },
        &Silent,
    )
    .unwrap();
    let statuses: Vec<Status> = report.features.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [Status::Failed, Status::Failed, Status::NotAttempted]
    );
    let reason = report.features[0].reason.clone().unwrap();
    assert!(
        reason.contains("could not reach the LLM endpoint")
            && reason.contains("is the server running"),
        "{reason}"
    );
    assert!(
        report
            .stopped
            .unwrap()
            .contains("2 features in a row failed")
    );
    assert_eq!((report.requests.failed, report.requests.retries), (2, 4));
    assert!(registry(dir.path()).is_empty() && cached_answers(dir.path()) == 0);
}

#[test]
fn server_errors_are_retried_then_reported_and_a_rerun_sends_only_the_rest() {
    let (dir, index) = index();
    // Seven good answers, then HTTP 500 for ever: feature 0 is done, feature 1 fails
    // at its second detection prompt.
    let failing = FakeLlm::start(|n, seen| {
        if n < 7 {
            sensible(seen)
        } else {
            Reply::Status(500, None)
        }
    });
    let report = run(&index, &request(failing.url(), &[0, 1]), &Silent).unwrap();
    assert_eq!(report.features[0].status, Status::Drafted);
    assert_eq!(report.features[1].status, Status::Failed);
    let reason = report.features[1].reason.clone().unwrap();
    assert!(reason.contains("answered HTTP 500"), "{reason}");
    assert_eq!(
        failing.seen().len(),
        7 + 3,
        "the failing request and its 2 retries"
    );
    assert!(report.stopped.is_none());
    assert_eq!(cached_answers(dir.path()), 7);
    let saved = registry(dir.path());
    assert!(saved.get(0).unwrap().is_draft() && saved.get(1).is_none());

    let healthy = FakeLlm::start(|_, seen| sensible(seen));
    let rerun = run(&index, &request(healthy.url(), &[0, 1]), &Silent).unwrap();
    assert_eq!(rerun.features[0].status, Status::Unchanged);
    assert_eq!(rerun.features[1].status, Status::Drafted);
    assert_eq!(healthy.seen().len(), 3, "only what had no answer");
    assert_eq!((rerun.requests.asked, rerun.requests.cached), (5, 2));
    let label = registry(dir.path()).get(1).cloned().unwrap();
    assert_eq!(label.name.as_deref(), Some("test_feature"));
    let scores = label.scores.unwrap();
    // Every answer says 1: chance, whatever the samples.
    assert_eq!(scores.detection.unwrap().balanced_accuracy, 0.5);
    assert_eq!(scores.fuzzing.unwrap().true_positives, 2);
}

#[test]
fn rate_limits_are_waited_out() {
    let (dir, index) = index();
    let fake = FakeLlm::start(|n, seen| {
        if n == 0 {
            Reply::Status(429, Some(0))
        } else {
            sensible(seen)
        }
    });
    let report = run(&index, &request(fake.url(), &[2]), &Silent).unwrap();
    assert_eq!(report.features[0].status, Status::Drafted);
    assert_eq!((report.requests.retries, report.requests.sent), (1, 5));
    assert!(registry(dir.path()).get(2).unwrap().scores.is_some());
}

#[test]
fn a_body_that_is_not_a_chat_completion_is_a_clear_failure() {
    let (dir, index) = index();
    let fake = FakeLlm::start(|_, _| Reply::Raw("{\"choices\": oops".into()));
    let report = run(&index, &request(fake.url(), &[0]), &Silent).unwrap();
    let outcome = &report.features[0];
    assert_eq!(outcome.status, Status::Failed);
    let reason = outcome.reason.clone().unwrap();
    assert!(
        reason.contains("not a chat completion") && reason.contains("oops"),
        "{reason}"
    );
    assert_eq!(fake.seen().len(), 3);
    assert!(registry(dir.path()).is_empty() && cached_answers(dir.path()) == 0);
}

#[test]
fn an_answer_without_a_label_is_reported_and_never_asked_again() {
    let (dir, index) = index();
    let fake = FakeLlm::start(|_, _| Reply::Chat("I think it is about many things.".into()));
    for _ in 0..2 {
        let report = run(&index, &request(fake.url(), &[1]), &Silent).unwrap();
        let outcome = &report.features[0];
        assert_eq!(outcome.status, Status::Unparseable);
        assert_eq!(
            outcome.answer.as_deref(),
            Some("I think it is about many things.")
        );
        assert!(outcome.reason.clone().unwrap().contains("[EXPLANATION]:"));
    }
    assert_eq!(
        fake.seen().len(),
        1,
        "the second run read the cached answer"
    );
    assert!(registry(dir.path()).is_empty());
}

#[test]
fn a_refusal_stops_the_run_at_once() {
    let (dir, index) = index();
    let fake = FakeLlm::start(|_, _| Reply::Status(404, None));
    let report = run(&index, &request(fake.url(), &[0, 1]), &Silent).unwrap();
    assert_eq!(report.features[0].status, Status::Failed);
    assert_eq!(report.features[1].status, Status::NotAttempted);
    let reason = report.features[0].reason.clone().unwrap();
    assert!(
        reason.contains("HTTP 404") && reason.contains("--llm-model"),
        "{reason}"
    );
    assert!(report.stopped.unwrap().contains("refused"));
    assert_eq!(fake.seen().len(), 1, "a refusal is not retried");
    assert!(registry(dir.path()).is_empty());
}

const TEST_KEY: &str = "sk-test-secret-1234";

#[test]
fn the_api_key_reaches_the_server_and_nothing_else() {
    if std::env::var("SAEIDX_TEST_LLM_KEY").as_deref() != Ok(TEST_KEY) {
        // This test again, alone in a child process with the key in its environment
        // (setting a variable here would race the other tests' threads).
        let name = "the_api_key_reaches_the_server_and_nothing_else";
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads", "1"])
            .env("SAEIDX_TEST_LLM_KEY", TEST_KEY)
            .status()
            .unwrap();
        assert!(status.success(), "the child run of {name} failed");
        return;
    }
    let (dir, index) = index();
    let fake = FakeLlm::start(|_, seen| sensible(seen));
    let report = run(&index, &request(fake.url(), &[0, 3]), &Silent).unwrap();
    assert!(report.features.iter().all(|o| o.status == Status::Drafted));
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.authorization == Some(format!("Bearer {TEST_KEY}")))
    );
    assert!(!serde_json::to_string(&report).unwrap().contains("sk-test"));
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sk-test"),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_persons_labels_are_kept_and_scored_like_drafts() {
    let (dir, mut index) = index();
    let mut labels = Registry::default();
    labels.set(
        0,
        FeatureLabel {
            name: Some("mine".into()),
            description: Some("what I saw".into()),
            ..FeatureLabel::default()
        },
    );
    labels.save(dir.path()).unwrap();
    index.reload_registry().unwrap();
    let fake = FakeLlm::start(|_, seen| sensible(seen));
    let drafting = LabelRequest {
        concurrency: 2,
        ..request(fake.url(), &[0, 1, 2])
    };
    let report = run(&index, &drafting, &Silent).unwrap();
    let statuses: Vec<Status> = report.features.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [Status::KeptHuman, Status::Drafted, Status::Drafted]
    );
    assert_eq!(report.features[0].requests, 0);
    assert_eq!(
        registry(dir.path()).get(0).unwrap().name.as_deref(),
        Some("mine")
    );

    index.reload_registry().unwrap();
    let scoring = LabelRequest {
        task: Task::Score,
        features: FeatureSelection::Labelled,
        ..request(fake.url(), &[])
    };
    let report = run(&index, &scoring, &Silent).unwrap();
    assert!(report.features.iter().all(|o| o.status == Status::Scored));
    let mine = registry(dir.path()).get(0).cloned().unwrap();
    assert!(mine.scores_current() && mine.provenance.is_none());
    assert_eq!(mine.confidence.as_deref(), Some("low"), "set: it had none");
    // The drafts' scores were cached when they were drafted: scoring sent nothing new.
    assert_eq!(report.requests.cached, 8);

    let overwrite = LabelRequest {
        overwrite_human: true,
        ..request(fake.url(), &[0])
    };
    index.reload_registry().unwrap();
    let report = run(&index, &overwrite, &Silent).unwrap();
    assert_eq!(report.features[0].status, Status::Drafted);
    assert!(registry(dir.path()).get(0).unwrap().is_draft());
}

#[test]
fn a_draft_with_nothing_to_score_it_on_is_left_alone_by_a_rerun() {
    let (dir, index) = index();
    let fake = FakeLlm::start(|_, seen| sensible(seen));
    let mut unscorable = request(fake.url(), &[3]);
    unscorable.evidence.test = 0;
    let report = run(&index, &unscorable, &Silent).unwrap();
    let outcome = &report.features[0];
    assert_eq!(outcome.status, Status::Drafted);
    assert_eq!(outcome.reason.as_deref(), Some("too few examples to score"));
    assert_eq!(fake.seen().len(), 1, "the draft only");
    assert!(registry(dir.path()).get(3).unwrap().scores.is_none());
    let rerun = run(&index, &unscorable, &Silent).unwrap();
    assert_eq!(rerun.features[0].status, Status::Unchanged);
    assert_eq!(rerun.requests.asked, 0);
}
