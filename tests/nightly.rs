//! A corpus grown over three nightly runs (new documents each night, one changed, one
//! removed) answers like one run over the final corpus (live texts too, with the SAE
//! recorded relative to the index folder); a killed append leaves the old
//! set queryable and resumes to the same index.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use saeidx_query::{SegmentedIndex, TopTextsRequest};
use saeidx_tests::{
    job_fixture::{Setup, saeidx_ok},
    saeidx_binary,
    segment_answers::{live_ids, same_answers},
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

/// Rewrites the job to run one model window per batch. A window padded into a batch
/// with longer ones goes through kernels of other shapes, whose float sums can differ in
/// the last bit; the grown and the fresh index batch their windows differently, so only
/// with one window per batch can they be compared bit for bit.
fn one_window_per_batch(setup: &Setup) {
    let job = fs::read_to_string(setup.job()).unwrap();
    assert!(job.contains("batch_tokens = 512"), "{job}");
    fs::write(
        setup.job(),
        job.replace("batch_tokens = 512", "batch_tokens = 64"),
    )
    .unwrap();
}

#[test]
fn three_nights_answer_like_one_run() {
    let setup = Setup::create();
    one_window_per_batch(&setup);
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
    live_answers_alike(&setup, &index, &fresh_dir);
    let ids = live_ids(&fresh);
    assert_eq!(live_ids(&grown), ids);
    assert!(!ids.contains("doc-5"));
    let removed = all[5]["text"].as_str().unwrap();
    compacted_answers_the_same(&setup, &grown, (&ids, removed));
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

/// A live text's features and a feature's decoder neighbours over the index of segments
/// `grown` equal those over `fresh`: both find the SAE the job recorded relative to the
/// index folder (for `grown`, its top folder, not a segment's).
fn live_answers_alike(setup: &Setup, grown: &Path, fresh: &Path) {
    let ask = |index: &Path, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--index", index.to_str().unwrap(), "--json"]);
        saeidx_ok(&all, setup.path())
    };
    let text = "The union of the states, and a more perfect constitution.";
    let question = ["top-features", "--text", text, "--k", "5"];
    let live = ask(grown, &question);
    assert_eq!(
        live["features"].as_array().map(Vec::len),
        Some(5),
        "{live:#}"
    );
    assert_eq!(live, ask(fresh, &question));
    let feature = live["features"][0]["feature"].as_u64().unwrap().to_string();
    let page = ["feature", feature.as_str(), "--neighbours", "4"];
    let neighbours = |index| ask(index, &page)["decoder_neighbours"].clone();
    assert_eq!(neighbours(grown).as_array().map(Vec::len), Some(4));
    assert_eq!(neighbours(grown), neighbours(fresh));
}

/// `saeidx compact` of the grown index: one segment answering exactly as before (the
/// same document numbers), labels kept, the removed document's text gone from the
/// files; the old segments deleted by a later compaction after the grace period.
fn compacted_answers_the_same(
    setup: &Setup,
    grown: &SegmentedIndex,
    (ids, removed_text): (&BTreeSet<String>, &str),
) {
    let index = setup.path().join("out/index");
    let request = TopTextsRequest {
        feature: 3,
        k: 200,
        ..TopTextsRequest::default()
    };
    let before = grown.top_texts(&request).unwrap();
    let compacted = saeidx_ok(
        &["compact", index.to_str().unwrap(), "--json"],
        setup.path(),
    );
    let merge = &compacted["merges"][0];
    assert_eq!(merge["from"].as_array().unwrap().len(), 3, "{compacted:#}");
    assert!(
        merge["rewritten_parts"].as_u64().unwrap() >= 2,
        "{compacted:#}"
    );
    // The old set's reader still answers (its files stay mapped).
    assert_eq!(grown.top_texts(&request).unwrap(), before);
    let one = SegmentedIndex::open(&index).unwrap();
    assert_eq!(one.segments().count(), 1);
    assert_eq!(one.top_texts(&request).unwrap(), before);
    same_answers(&one, grown, ids);
    assert_eq!(
        one.label(7).unwrap().label.unwrap().name.as_deref(),
        Some("kept label")
    );
    let segment = index.join("segments").join(merge["into"].as_str().unwrap());
    let texts = saeidx_tests::index_rows::documents(&segment);
    assert!(texts.iter().all(|(_, text)| text != removed_text));
    saeidx_ok(&["verify", index.to_str().unwrap(), "--json"], setup.path());
    // Nothing more to merge; the retired segments stay until their grace period ends.
    let again = saeidx_ok(
        &["compact", index.to_str().unwrap(), "--json"],
        setup.path(),
    );
    assert_eq!(again["merges"], serde_json::json!([]));
    assert_eq!(again["removed"], serde_json::json!([]));
    let retired: Vec<String> = merge["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_string())
        .collect();
    assert!(
        retired
            .iter()
            .all(|name| index.join("segments").join(name).is_dir())
    );
    let cleaned = saeidx_ok(
        &["compact", index.to_str().unwrap(), "--grace", "0", "--json"],
        setup.path(),
    );
    assert_eq!(cleaned["removed"], serde_json::json!(retired));
    assert!(
        retired
            .iter()
            .all(|name| !index.join("segments").join(name).exists())
    );
    // Readers that held the retired segments open still answer.
    same_answers(&SegmentedIndex::open(&index).unwrap(), grown, ids);
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

#[test]
fn a_killed_compaction_keeps_the_old_set_and_converges() {
    let setup = Setup::create();
    let all = lines(&setup);
    let index = setup.path().join("out/index");
    write_corpus(&setup, &all[..20]);
    run(&setup, &[]);
    let mut grown = all[..30].to_vec();
    grown[2]["text"] = Value::from("Changed.");
    grown.remove(7);
    write_corpus(&setup, &grown);
    run(&setup, &[]);
    // The index before any compaction, to compare with.
    let copy = setup.path().join("out/before");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&index)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let reference = SegmentedIndex::open(&copy).unwrap();
    let ids = live_ids(&reference);
    let request = TopTextsRequest {
        feature: 3,
        k: 50,
        ..TopTextsRequest::default()
    };
    let old = SegmentedIndex::open(&index)
        .unwrap()
        .top_texts(&request)
        .unwrap();
    // Killed from early (cleaning, reading) to late (building, publishing): the index
    // answers the same throughout, from the old set or the compacted one.
    for millis in [20, 80, 200, 400] {
        let mut child = Command::new(saeidx_binary())
            .args(["compact", index.to_str().unwrap(), "--json"])
            .current_dir(setup.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(millis));
        let _ = child.kill();
        let _ = child.wait();
        let now = SegmentedIndex::open(&index).unwrap();
        assert_eq!(
            now.top_texts(&request).unwrap(),
            old,
            "killed after {millis} ms"
        );
    }
    saeidx_ok(
        &["compact", index.to_str().unwrap(), "--json"],
        setup.path(),
    );
    let compacted = SegmentedIndex::open(&index).unwrap();
    assert_eq!(compacted.segments().count(), 1);
    assert_eq!(compacted.top_texts(&request).unwrap(), old);
    same_answers(&compacted, &reference, &ids);
    // What the killed runs left is gone: only the live and retired segments remain.
    let set = compacted.segment_set().unwrap();
    for entry in fs::read_dir(index.join("segments")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(set.names(&name), "{name} left behind");
    }
    // A nightly run that compacts when it is done (`[run] compact`, here overridden).
    write_corpus(&setup, &all);
    let night = run(&setup, &["--compact", "all"]);
    assert_eq!(night["segments"], 2, "{night:#}");
    let merged = &night["compaction"];
    assert_eq!(merged["segments"], 1, "{night:#}");
    assert_eq!(merged["merges"][0]["from"].as_array().unwrap().len(), 2);
}

/// A nightly job with `[run] compact = "tiered"`: eight nights of small appends (one
/// document changed, one removed on the way) leave eight tier-0 segments, which the
/// merge policy merges into one at the end of the eighth night; a ninth adds a segment
/// again. Afterwards every answer equals a from-scratch run's over the final corpus.
#[test]
fn tiered_compaction_over_eight_nights_answers_like_one_run() {
    let setup = Setup::create();
    let job = fs::read_to_string(setup.job()).unwrap();
    assert!(job.contains("batch_tokens = 512"), "{job}");
    // One window per batch (see `one_window_per_batch`), and the merge policy.
    fs::write(
        setup.job(),
        job.replace(
            "batch_tokens = 512",
            "batch_tokens = 64\ncompact = \"tiered\"",
        ),
    )
    .unwrap();
    let all = lines(&setup);
    let index = setup.path().join("out/index");
    let mut corpus: Vec<Value> = all[..12].to_vec();
    write_corpus(&setup, &corpus);
    run(&setup, &[]);
    let mut added = 12;
    for night in 2..=8 {
        corpus.extend_from_slice(&all[added..added + 3]);
        added += 3;
        if night == 4 {
            corpus[3]["text"] = Value::from("The third document, changed on the fourth night.");
        }
        if night == 6 {
            corpus.remove(5);
        }
        write_corpus(&setup, &corpus);
        let summary = run(&setup, &[]);
        assert_eq!(summary["segments"], night, "night {night}: {summary:#}");
        let compaction = &summary["compaction"];
        if night < 8 {
            assert_eq!(compaction["merges"], serde_json::json!([]), "{summary:#}");
            assert_eq!(compaction["segments"], night, "{summary:#}");
        } else {
            // Eight neighbouring segments on tier 0: merged into one.
            assert_eq!(compaction["segments"], 1, "{summary:#}");
            let merges = compaction["merges"].as_array().unwrap();
            assert_eq!(merges.len(), 1, "{summary:#}");
            assert_eq!(merges[0]["from"].as_array().unwrap().len(), 8);
        }
    }
    assert_eq!(SegmentedIndex::open(&index).unwrap().segments().count(), 1);
    // Night 9: the rest of the corpus, one more segment beside the merged one.
    corpus.extend_from_slice(&all[added..]);
    write_corpus(&setup, &corpus);
    let last = run(&setup, &[]);
    assert_eq!(last["compaction"]["segments"], 2, "{last:#}");
    assert_eq!(last["compaction"]["merges"], serde_json::json!([]));

    run(&setup, &["--output", "out/fresh"]);
    let grown = SegmentedIndex::open(&index).unwrap();
    let fresh = SegmentedIndex::open(&setup.path().join("out/fresh")).unwrap();
    let ids = live_ids(&fresh);
    assert_eq!(live_ids(&grown), ids);
    assert!(!ids.contains("doc-5") && ids.contains("doc-35"));
    same_answers(&grown, &fresh, &ids);
    saeidx_ok(&["verify", index.to_str().unwrap(), "--json"], setup.path());
}
