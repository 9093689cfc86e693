//! The web server over a synthetic index: pages, the JSON API, label editing saved with
//! the index, clear 404s, and a new index published under the same name while serving.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
};

use saeidx_format::atomic::replace_dir;
use saeidx_query::build;
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_view::serve::{ServeOptions, ServedIndex, serve};

fn index(dir: &Path, documents: usize) {
    let spec = SyntheticSpec {
        documents,
        tokens_per_document: (10, 40),
        documents_per_part: 4,
        feature_weights: (0..16).map(|f| 1.0 + f as f64).collect(),
        k: 3,
        value_step: 0.25,
        seed: documents as u64,
    };
    write_synthetic_index(dir, &spec).unwrap();
    build(dir).unwrap();
}

/// Serves `served` on a free loopback port in a background thread; returns the port.
fn start(served: Vec<ServedIndex>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || serve(listener, served, ServeOptions::default()));
    port
}

/// One HTTP/1.0 exchange: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serves_pages_api_labels_and_republished_indexes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir, 8);
    let port = start(vec![ServedIndex {
        dir: dir.clone(),
        live: None,
    }]);

    let (status, home) = http(port, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(home.contains("8 documents"), "{home}");
    let (status, page) = http(port, "GET", "/feature/3", "");
    assert_eq!(status, 200);
    assert!(page.contains("class=\"tok hit\"") && page.contains("action=\"/labels/3\""));
    let (status, api) = http(port, "GET", "/api/top-texts?feature=3&k=2", "");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["texts"].as_array().unwrap().len(), 2);

    // Labels from the form and the API are saved with the index and searchable.
    let (status, _) = http(
        port,
        "POST",
        "/labels/3",
        "name=place+names&description=%3Cb%3Ecities%3C%2Fb%3E",
    );
    assert_eq!(status, 303);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).unwrap()).unwrap();
    assert_eq!(saved["3"]["description"], "<b>cities</b>");
    let (_, page) = http(port, "GET", "/feature/3", "");
    assert!(page.contains("&lt;b&gt;cities&lt;/b&gt;") && !page.contains("<b>cities"));
    let (status, _) = http(
        port,
        "POST",
        "/api/labels/4",
        r#"{"name": "numbers", "confidence": "low"}"#,
    );
    assert_eq!(status, 200);
    let (_, found) = http(port, "GET", "/search?q=place", "");
    assert!(found.contains("/feature/3") && !found.contains("/feature/4"));

    // Clear errors.
    let (status, body) = http(port, "GET", "/api/feature/99", "");
    assert_eq!(status, 404);
    assert!(body.contains("feature 99 does not exist"), "{body}");
    assert_eq!(http(port, "GET", "/nowhere", "").0, 404);
    assert_eq!(http(port, "GET", "/text?q=hello", "").0, 503);

    // The nightly job publishes a new index under the same name: the next request sees it.
    let next = root.path().join("next");
    index(&next, 12);
    replace_dir(&next, &dir).unwrap();
    let (_, info) = http(port, "GET", "/api/info", "");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["counts"]["documents"], 12);
}

#[test]
fn serves_several_indexes_to_concurrent_readers_while_one_is_republished() {
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("nightly"), root.path().join("archive"));
    index(&first, 8);
    index(&second, 5);
    let port = start(
        [&first, &second]
            .iter()
            .map(|dir| ServedIndex {
                dir: dir.to_path_buf(),
                live: None,
            })
            .collect(),
    );

    // Each index under its name; the first also at the root. Links keep the prefix.
    let (_, indexes) = http(port, "GET", "/api/indexes", "");
    let indexes: serde_json::Value = serde_json::from_str(&indexes).unwrap();
    assert_eq!(indexes[0]["name"], "nightly");
    assert_eq!(indexes[1]["url"], "/i/archive/");
    assert_eq!(indexes[1]["info"]["counts"]["documents"], 5);
    let (status, home) = http(port, "GET", "/i/archive/", "");
    assert_eq!(status, 200);
    assert!(home.contains("5 documents") && home.contains("href=\"/i/nightly/\""));
    let (_, page) = http(port, "GET", "/i/archive/feature/2", "");
    assert!(page.contains("action=\"/i/archive/labels/2\""), "{page}");
    assert!(page.contains("href=\"/i/archive/random\""));
    let (status, _) = http(port, "POST", "/i/archive/labels/2", "name=archived");
    assert_eq!(status, 303);
    assert!(second.join("labels.json").is_file() && !first.join("labels.json").exists());
    let (status, body) = http(port, "GET", "/i/elsewhere/", "");
    assert_eq!(status, 404);
    assert!(body.contains("no index is served under /i/elsewhere/"));

    // Readers on four threads keep getting whole answers while the nightly index is
    // replaced twice; afterwards they see the last one.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|reader| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || answers < 20 {
                    let path = match reader % 2 {
                        0 => format!("/api/top-texts?feature={}&k=3", answers % 16),
                        _ => format!("/feature/{}", answers % 16),
                    };
                    let (status, body) = http(port, "GET", &path, "");
                    assert_eq!(status, 200, "{path}: {body}");
                    if reader % 2 == 0 {
                        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                        assert!(answer["texts"].is_array());
                    } else {
                        assert!(body.ends_with("</html>\n"));
                    }
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    for documents in [10, 12] {
        let next = root.path().join(format!("next-{documents}"));
        index(&next, documents);
        replace_dir(&next, &first).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() >= 20);
    }
    let (_, info) = http(port, "GET", "/api/info", "");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["counts"]["documents"], 12);
}

/// Hostile requests and a served index damaged in place: the server answers each with
/// an error and stays up.
#[test]
fn huge_sizes_and_files_truncated_under_the_server_are_errors_not_crashes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir, 8);
    let port = start(vec![ServedIndex {
        dir: dir.clone(),
        live: None,
    }]);

    // A size past the query library's limit: 400, before anything is allocated.
    let (status, body) = http(port, "GET", "/api/top-texts?feature=3&k=4294967295", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 10000"), "{body}");
    let (status, before) = http(port, "GET", "/api/top-texts?feature=3&k=2", "");
    assert_eq!(status, 200);

    // A query file truncated in place under the open index (as copying over it does):
    // reads past its end would raise SIGBUS; the answer is refused instead.
    let postings = dir.join("query/postings.bin");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&postings)
        .unwrap()
        .set_len(16)
        .unwrap();
    for _ in 0..3 {
        let (status, body) = http(port, "GET", "/api/top-texts?feature=3&k=2", "");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("changed on disk"), "{body}");
    }
    // Republished properly, the index is reopened and answers as before.
    build(&dir).unwrap();
    let (status, after) = http(port, "GET", "/api/top-texts?feature=3&k=2", "");
    assert_eq!(status, 200);
    assert_eq!(after, before);
}

/// A drafted label with scores, as `saeidx labels draft` writes it.
fn drafted(name: &str) -> saeidx_query::FeatureLabel {
    use saeidx_query::registry::{LabelScores, Origin, Provenance, ScoreSummary};
    saeidx_query::FeatureLabel {
        name: Some(name.into()),
        description: Some("months <i>of</i> the year".into()),
        confidence: Some("medium".into()),
        provenance: Some(Provenance {
            origin: Origin::Drafted,
            llm: "some-llm".into(),
            prompt_version: "saeidx-draft-1".into(),
            drafted_at: "2026-11-30T12:00:00Z".into(),
            request_sha256: "ab".repeat(32),
            reviewed_at: None,
        }),
        scores: Some(LabelScores {
            explanation: format!("{name}: months <i>of</i> the year"),
            llm: "some-llm".into(),
            prompt_version: "saeidx-score-1".into(),
            scored_at: "2026-11-30T12:01:00Z".into(),
            detection: Some(ScoreSummary {
                balanced_accuracy: 0.75,
                true_positives: 4,
                true_negatives: 2,
                false_positives: 2,
                false_negatives: 0,
                failed: 0,
            }),
            fuzzing: None,
        }),
        ..saeidx_query::FeatureLabel::default()
    }
}

#[test]
fn drafts_are_shown_as_drafts_with_scores_and_a_person_accepts_or_edits_them() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir, 6);
    let mut registry = saeidx_query::Registry::default();
    registry.set(5, drafted("month_names"));
    registry.set(6, drafted("other_months"));
    registry.save(&dir).unwrap();
    let port = start(vec![ServedIndex {
        dir: dir.clone(),
        live: None,
    }]);
    let (_, home) = http(port, "GET", "/", "");
    assert!(
        home.contains("month_names <span class=\"origin draft\">draft, confidence medium</span>"),
        "{home}"
    );
    let (_, page) = http(port, "GET", "/feature/5", "");
    assert!(
        page.contains("LLM draft, not reviewed: drafted by some-llm (prompt saeidx-draft-1, 2026-11-30T12:00:00Z)"),
        "{page}"
    );
    assert!(page.contains(
        "<td>detection</td><td>0.750</td><td>4</td><td>2</td><td>2</td><td>0</td><td>0</td>"
    ));
    assert!(page.contains("months &lt;i&gt;of&lt;/i&gt; the year") && !page.contains("<i>of"));
    assert!(page.contains("action=\"/labels/5/accept\""));

    // Accepted from the page: a person's label now, scores kept, no accept button.
    assert_eq!(http(port, "POST", "/labels/5/accept", "").0, 303);
    let (_, page) = http(port, "GET", "/feature/5", "");
    assert!(page.contains("LLM draft accepted by a person") && !page.contains("/labels/5/accept"));
    assert!(page.contains("<td>0.750</td>") && !page.contains("for an earlier text"));
    let (status, body) = http(port, "POST", "/api/labels/5/accept", "");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no draft to accept"), "{body}");

    // Edited through the API: marked edited, the old text's scores dropped.
    let (status, body) = http(
        port,
        "POST",
        "/api/labels/6",
        r#"{"name": "months", "description": "month names"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["label"]["provenance"]["origin"], "edited");
    assert!(answer["label"]["scores"].is_null());
    let saved = saeidx_query::Registry::load(&dir, 16).unwrap();
    assert_eq!(
        saved.get(5).unwrap().provenance.as_ref().unwrap().origin,
        saeidx_query::registry::Origin::Accepted
    );
    assert!(!saved.get(6).unwrap().is_draft());
}

#[test]
fn labels_another_writer_saves_show_at_once_and_survive_the_next_edit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir, 6);
    let port = start(vec![ServedIndex {
        dir: dir.clone(),
        live: None,
    }]);
    assert_eq!(
        http(port, "GET", "/api/labels/5", "").1,
        r#"{"feature":5,"label":null}"#
    );
    // A labelling run in another process saves a draft while the server runs.
    let mut registry = saeidx_query::Registry::load(&dir, 16).unwrap();
    registry.set(5, drafted("month_names"));
    registry.save(&dir).unwrap();
    let (_, label) = http(port, "GET", "/api/labels/5", "");
    assert!(label.contains("month_names"), "{label}");
    let (_, home) = http(port, "GET", "/", "");
    assert!(home.contains("month_names"), "{home}");
    // A person's edit of another feature keeps the draft.
    let (status, _) = http(port, "POST", "/api/labels/7", r#"{"name": "mine"}"#);
    assert_eq!(status, 200);
    let saved = saeidx_query::Registry::load(&dir, 16).unwrap();
    assert!(saved.get(5).unwrap().is_draft());
    assert_eq!(saved.get(7).unwrap().name.as_deref(), Some("mine"));
}

/// Document pages, the features of a set of documents and contrasts served from an index
/// of segments, as the library answers them for the index it was split from (`one`).
fn same_segment_pages(port: u16, one: &saeidx_query::AnyIndex) {
    use saeidx_query::Restriction;
    let get = |path: &str| {
        let (status, body) = http(port, "GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    // Document pages over segments, as the library answers them for the whole index.
    for doc in [0, 5, 11] {
        let request = saeidx_query::DocumentRequest {
            doc: saeidx_query::DocRef::Number(doc),
            feature: Some(3),
            page_tokens: 7,
            ..saeidx_query::DocumentRequest::default()
        };
        let want = serde_json::to_value(one.document_page(&request).unwrap()).unwrap();
        assert_eq!(get(&format!("/api/document/{doc}?f=3&page_tokens=7")), want);
        let (status, page) = http(port, "GET", &format!("/doc/{doc}"), "");
        assert_eq!(status, 200, "{page}");
    }
    // The features of a set of documents and contrasts, across segments.
    let subset = one
        .subset_features(
            &Restriction::filter("tokens > 20"),
            &saeidx_query::TopFeaturesRequest::default(),
        )
        .unwrap();
    assert_eq!(
        get("/api/top-features?where=tokens+%3E+20"),
        serde_json::to_value(subset).unwrap()
    );
    let contrast = one
        .contrast(&saeidx_query::ContrastRequest {
            a: Restriction::filter("tokens > 20"),
            ..saeidx_query::ContrastRequest::default()
        })
        .unwrap();
    assert_eq!(
        get("/api/contrast?a=tokens+%3E+20"),
        serde_json::to_value(contrast).unwrap()
    );
    let profile = one
        .token_features(&saeidx_query::TokenFeaturesRequest {
            tokens: vec![saeidx_query::TokenPattern::Regex("a".into())],
            ..saeidx_query::TokenFeaturesRequest::default()
        })
        .unwrap();
    assert!(profile.occurrences > 0);
    assert_eq!(
        get("/api/token-features?token_regex=a"),
        serde_json::to_value(profile).unwrap()
    );
    let silent = one
        .silent_contexts(&saeidx_query::SilentRequest {
            feature: 3,
            n: 7,
            seed: 2,
            ..saeidx_query::SilentRequest::default()
        })
        .unwrap();
    assert_eq!(silent.contexts.len(), 7);
    assert_eq!(
        get("/api/silent/3?n=7&seed=2"),
        serde_json::to_value(silent).unwrap()
    );
}

/// An index of segments is served like one index: the API answers what the library
/// answers for the index it was split from (restricted questions included), pages
/// render, and a newly published segment set is seen by the next request.
#[test]
fn serves_an_index_of_segments_and_picks_up_a_new_set() {
    use saeidx_format::segments::SegmentSet;
    use saeidx_query::{AnyIndex, Restriction, TopTextsRequest};
    let root = tempfile::tempdir().unwrap();
    let whole = root.path().join("whole");
    index(&whole, 12);
    let dir = root.path().join("segmented");
    let mut set =
        saeidx_testkit::synthetic::split_into_segments(&whole, &dir, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&dir, &segment.name)).unwrap();
    }
    let one = AnyIndex::open(&whole).unwrap();
    let port = start(vec![ServedIndex {
        dir: dir.clone(),
        live: None,
    }]);
    let get = |path: &str| {
        let (status, body) = http(port, "GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    for feature in [1, 3, 9] {
        for (query, restrict) in [
            ("", Restriction::all()),
            ("&where=tokens+%3E+20", Restriction::filter("tokens > 20")),
            ("&docs=1,doc-5,11", {
                let mut r = Restriction::documents([1]);
                r.docs.as_mut().unwrap().extend([
                    saeidx_query::DocRef::Id("doc-5".into()),
                    saeidx_query::DocRef::Number(11),
                ]);
                r
            }),
        ] {
            let request = TopTextsRequest {
                feature,
                k: 6,
                restrict,
                ..TopTextsRequest::default()
            };
            let want = serde_json::to_value(one.top_texts(&request).unwrap()).unwrap();
            assert_eq!(
                get(&format!("/api/top-texts?feature={feature}&k=6{query}")),
                want
            );
        }
    }
    let info = get("/api/info");
    assert_eq!(info["counts"]["documents"], 12);
    same_segment_pages(port, &one);
    let (status, page) = http(port, "GET", "/feature/3", "");
    assert_eq!(status, 200);
    assert!(page.contains("class=\"tok hit\""), "{page}");
    // A filtered feature page counts the documents its filter selects across segments.
    let selected = one
        .selected_documents(&Restriction::filter("tokens > 20"))
        .unwrap()
        .unwrap();
    let (status, page) = http(port, "GET", "/feature/3?where=tokens+%3E+20", "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("restricted to {selected} documents")),
        "{page}"
    );
    let (status, home) = http(port, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(home.contains("an index of 3 segments"), "{home}");
    let overview = one
        .overview(&saeidx_query::OverviewRequest::default())
        .unwrap();
    assert_eq!(
        get("/api/overview"),
        serde_json::to_value(overview).unwrap()
    );
    let (status, _) = http(port, "POST", "/api/labels/4", r#"{"name": "numbers"}"#);
    assert_eq!(status, 200);
    assert!(dir.join("labels.json").is_file());

    // A nightly run publishes a new set (document 2 removed): the next request sees it.
    set.segments[0].delete(2);
    set.publish(&dir).unwrap();
    assert_eq!(get("/api/info")["counts"]["documents"], 11);
    let hits = get("/api/top-texts?feature=3&k=10000");
    assert!(
        hits["texts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|hit| hit["doc"] != 2)
    );
    let (status, _) = http(port, "GET", "/api/top-features?doc=2", "");
    assert_eq!(status, 404);
    assert_eq!(get("/api/labels/4")["label"]["name"], "numbers");
}
