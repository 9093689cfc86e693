//! A corpus grown over three nightly runs (new documents each night, one changed, one
//! removed) answers like one run over the final corpus; a killed append leaves the old
//! set queryable and resumes to the same index.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use saeidx_query::{
    DocRef, Exclusions, Rank, SegmentedIndex, Subject, TextHit, TopFeaturesRequest, TopTextsRequest,
};
use saeidx_tests::{
    job_fixture::{Setup, saeidx_ok},
    saeidx_binary,
};
use serde_json::Value;

/// The fixture corpus's JSONL lines.
fn lines(setup: &Setup) -> Vec<Value> {
    fs::read_to_string(setup.path().join("corpus/addresses.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn write_corpus(setup: &Setup, docs: &[Value]) {
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    fs::write(setup.path().join("corpus/addresses.jsonl"), text).unwrap();
}

fn run(setup: &Setup, extra: &[&str]) -> Value {
    let job = setup.job();
    let mut args = vec!["run", job.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    saeidx_ok(&args, setup.path())
}

/// A top-texts answer's hits as comparable rows, in answer order with ties (equal
/// scores) sorted by document id and position: ties follow document order, and an
/// appended index orders its documents by when they came.
fn canonical(hits: &[TextHit]) -> Vec<(u32, u32, String, u32, u32, String)> {
    let mut rows: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                h.score.to_bits(),
                h.activation.to_bits(),
                h.id.clone(),
                h.position,
                h.token,
                h.snippet.marked(),
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        f32::from_bits(b.0)
            .total_cmp(&f32::from_bits(a.0))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    rows
}

fn same_answers(grown: &SegmentedIndex, fresh: &SegmentedIndex, ids: &BTreeSet<String>) {
    assert_eq!(grown.counts().unwrap(), fresh.counts().unwrap());
    assert_eq!(
        grown.live_features().unwrap(),
        fresh.live_features().unwrap()
    );
    for feature in 0..grown.d_sae() as u32 {
        for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
            let request = TopTextsRequest {
                feature,
                k: 10_000,
                rank,
                context: 3,
                ..TopTextsRequest::default()
            };
            let (a, b) = (
                grown.top_texts(&request).unwrap(),
                fresh.top_texts(&request).unwrap(),
            );
            assert_eq!(canonical(&a.texts), canonical(&b.texts), "{request:?}");
            assert_eq!(a.label, b.label);
        }
        for exclusions in [
            Exclusions::default(),
            Exclusions {
                special: false,
                sinks: false,
            },
        ] {
            assert_eq!(
                grown.feature_stats(feature, exclusions).unwrap(),
                fresh.feature_stats(feature, exclusions).unwrap()
            );
            assert_eq!(
                grown.neighbours(feature, 1000, exclusions).unwrap(),
                fresh.neighbours(feature, 1000, exclusions).unwrap()
            );
        }
    }
    for id in ids {
        let doc = DocRef::Id(id.clone());
        let request = TopFeaturesRequest::default();
        let (mut a, mut b) = (
            grown.top_features(&doc, &request).unwrap(),
            fresh.top_features(&doc, &request).unwrap(),
        );
        for of in [&mut a.of, &mut b.of] {
            if let Subject::Document { doc, .. } = of {
                *doc = 0;
            }
        }
        assert_eq!(a, b, "{id}");
    }
    for seed in 0..3 {
        let request = saeidx_query::SampleRequest {
            n: 8,
            seed,
            examples: 3,
            context: 2,
            ..saeidx_query::SampleRequest::default()
        };
        let (a, b) = (
            grown.sample(&request).unwrap(),
            fresh.sample(&request).unwrap(),
        );
        for (a, b) in a.features.iter().zip(&b.features) {
            assert_eq!(
                (a.feature, &a.stats, &a.label),
                (b.feature, &b.stats, &b.label)
            );
            let scores = |hits: &[TextHit]| hits.iter().map(|h| h.score).collect::<Vec<_>>();
            assert_eq!(scores(&a.top_texts), scores(&b.top_texts));
        }
        assert_eq!(a.features.len(), b.features.len());
    }
}

fn live_ids(index: &SegmentedIndex) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    index
        .each_live_document(|_, id, _| {
            ids.insert(id.to_string());
        })
        .unwrap();
    ids
}

#[test]
fn three_nights_answer_like_one_run() {
    let setup = Setup::create();
    let all = lines(&setup);
    let index = setup.path().join("out/index");
    // Night 1: the first 20 documents (and the notes).
    write_corpus(&setup, &all[..20]);
    let first = run(&setup, &[]);
    let documents = first["counts"]["documents"].as_u64().unwrap();
    fs::write(
        index.join("labels.json"),
        r#"{"7": {"name": "kept label"}}"#,
    )
    .unwrap();
    // Nothing changed: nothing is computed.
    let same = run(&setup, &[]);
    assert_eq!(same["up_to_date"], true, "{same:#}");
    // Night 2: 6 new documents, doc-3 changed, doc-5 removed.
    let mut night2: Vec<Value> = all[..26].to_vec();
    night2[3]["text"] = Value::from("A changed third document about the union.");
    night2.remove(5);
    write_corpus(&setup, &night2);
    let second = run(&setup, &[]);
    assert_eq!(
        second["changes"],
        serde_json::json!({"new": 6, "changed": 1, "removed": 1, "unchanged": documents - 2}),
        "{second:#}"
    );
    assert_eq!(second["segments"], 2);
    // The same corpus again: found unchanged, nothing computed or published.
    let again = run(&setup, &[]);
    assert_eq!(again["changes"]["unchanged"], documents + 5);
    assert_eq!(again["segment"], Value::Null);
    assert_eq!(again["generation"], Value::Null);
    // Night 3: the rest, and doc-3 changed again.
    let mut night3 = night2.clone();
    night3.extend_from_slice(&all[26..]);
    night3[3]["text"] = Value::from("The third document, changed once more.");
    write_corpus(&setup, &night3);
    let third = run(&setup, &[]);
    assert_eq!(third["changes"]["new"], 10, "{third:#}");
    assert_eq!(third["changes"]["changed"], 1);
    assert_eq!(third["segments"], 3);

    // From scratch over the final corpus.
    run(&setup, &["--output", "out/fresh"]);
    let grown = SegmentedIndex::open(&index).unwrap();
    let fresh_dir = setup.path().join("out/fresh");
    fs::write(
        fresh_dir.join("labels.json"),
        r#"{"7": {"name": "kept label"}}"#,
    )
    .unwrap();
    let fresh = SegmentedIndex::open(&fresh_dir).unwrap();
    let ids = live_ids(&fresh);
    assert_eq!(live_ids(&grown), ids);
    assert!(!ids.contains("doc-5"));
    same_answers(&grown, &fresh, &ids);
    assert_eq!(
        grown.label(7).unwrap().label.unwrap().name.as_deref(),
        Some("kept label")
    );
    // --replace starts over: one segment again, the labels kept.
    let replaced = run(&setup, &["--replace"]);
    assert_eq!(replaced["up_to_date"], false);
    assert!(!index.join("segments.json").exists());
    assert!(index.join("labels.json").exists());
}

/// Runs `saeidx run JOB` and kills it with SIGKILL after `after`.
fn killed_run(setup: &Setup, after: Duration) {
    let mut child = Command::new(saeidx_binary())
        .args(["run", setup.job().to_str().unwrap(), "--json"])
        .current_dir(setup.path())
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_killed_append_keeps_the_old_set_and_resumes() {
    let setup = Setup::create();
    let all = lines(&setup);
    let index = setup.path().join("out/index");
    write_corpus(&setup, &all[..12]);
    run(&setup, &[]);
    let before = SegmentedIndex::open(&index).unwrap();
    let request = TopTextsRequest {
        feature: 3,
        k: 50,
        ..TopTextsRequest::default()
    };
    let old = before.top_texts(&request).unwrap();
    drop(before);
    let mut grown = all[..30].to_vec();
    grown[2]["text"] = Value::from("Changed.");
    write_corpus(&setup, &grown);
    // Killed at points from early (planning) to late (building, publishing): after
    // each, the index answers from the old set or the complete new one.
    for millis in [150, 600, 1200, 2500] {
        killed_run(&setup, Duration::from_millis(millis));
        let now = SegmentedIndex::open(&index).unwrap();
        let generation = now.segment_set().map_or(0, |set| set.generation);
        if generation == 0 {
            assert_eq!(now.top_texts(&request).unwrap(), old);
        } else {
            assert_eq!(now.segments().count(), 2);
        }
    }
    let finished = run(&setup, &[]);
    let resumed = SegmentedIndex::open(&index).unwrap();
    // An uninterrupted append of the same change into a copy of the old index.
    write_corpus(&setup, &all[..12]);
    run(&setup, &["--output", "out/clean"]);
    write_corpus(&setup, &grown);
    run(&setup, &["--output", "out/clean"]);
    let clean = SegmentedIndex::open(&setup.path().join("out/clean")).unwrap();
    let ids = live_ids(&clean);
    assert_eq!(live_ids(&resumed), ids, "{finished:#}");
    same_answers(&resumed, &clean, &ids);
    // Exactly, not only up to ties: both appended the same documents in the same order.
    assert_eq!(
        resumed.top_texts(&request).unwrap().texts,
        clean.top_texts(&request).unwrap().texts
    );
    assert!(!Path::new(&setup.path().join("out/index/segments/.seg-000001.partial")).exists());
}
