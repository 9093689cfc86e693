//! The served pages that look at some documents only, over HTTP on a synthetic index
//! with random metadata: the feature page's filter box (examples from the selected
//! documents only, as the library's restricted report has them; the filter kept in the
//! URL of its links), parse errors shown on the page with the caret the API gives, the
//! search page's features of a set of documents, and the contrast page (both
//! directions, as the library's contrast ranks them, examples from each side).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
};

use saeidx_query::{
    AnyIndex, ContrastRequest, FeatureRequest, QueryIndex, Restriction, TopFeaturesRequest, build,
};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index_with_metadata};
use saeidx_view::{
    escape,
    serve::{ServeOptions, ServedIndex, serve},
};

const FILTER: &str = "party = 'a' or year >= 2";

fn index(dir: &Path) {
    let spec = SyntheticSpec {
        documents: 80,
        tokens_per_document: (10, 40),
        documents_per_part: 9,
        feature_weights: (0..16).map(|f| 1.0 + f as f64).collect(),
        k: 3,
        value_step: 0.25,
        seed: 23,
    };
    write_synthetic_index_with_metadata(dir, &spec).unwrap();
    build(dir).unwrap();
}

/// Serves `dir` on a free loopback port in a background thread; returns the port.
fn start(dir: &Path) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = vec![ServedIndex {
        dir: dir.to_path_buf(),
        live: None,
    }];
    std::thread::spawn(move || serve(listener, served, ServeOptions::default()));
    port
}

/// One HTTP/1.0 GET: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `text` percent-encoded for a query string.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The (document, position) of every example link (`a.hit`) of `page`, in order.
fn hits(page: &str) -> Vec<(u32, u32)> {
    page.split("class=\"hit\" href=\"/doc/")
        .skip(1)
        .map(|rest| {
            let doc = rest.split('?').next().unwrap().parse().unwrap();
            let position = rest.split("#p").nth(1).unwrap();
            let position = position[..position.find('"').unwrap()].parse().unwrap();
            (doc, position)
        })
        .collect()
}

/// The features of the rows (`<tr data-feature="F">`) of `html`, in order.
fn rows(html: &str) -> Vec<u32> {
    html.split("<tr data-feature=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The part of `page` from `start` to `end` (or its end).
fn section<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {page}"));
    let rest = &page[from..];
    rest.find(end).map_or(rest, |to| &rest[..to])
}

#[test]
fn the_feature_page_filters_its_examples_and_keeps_the_filter_in_its_links() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir);
    let port = start(&dir);
    let index = QueryIndex::open(&dir).unwrap();
    let restrict = Restriction::filter(FILTER);
    let set = index.doc_set(&restrict).unwrap().unwrap();
    assert!(set.len() > 5 && set.len() < 75, "{} documents", set.len());

    let feature = 5;
    let (status, page) = get(
        port,
        &format!("/feature/{feature}?where={}", encoded(FILTER)),
    );
    assert_eq!(status, 200, "{page}");
    // The box holds the filter; the page says how many documents it selects.
    assert!(page.contains(&format!(
        "name=\"where\" size=\"50\" value=\"{}\"",
        escape(FILTER)
    )));
    assert!(
        page.contains(&format!("restricted to {} documents", set.len())),
        "{page}"
    );
    // Its examples are those of the library's restricted report, all in the set.
    let report = saeidx_compare::feature_report(
        &AnyIndex::One(index),
        &FeatureRequest {
            feature,
            context: 10,
            restrict: restrict.clone(),
            ..FeatureRequest::default()
        },
    )
    .unwrap();
    let expected: Vec<(u32, u32)> = report
        .top_texts
        .iter()
        .chain(report.bands.iter().flat_map(|b| &b.examples))
        .map(|hit| (hit.doc, hit.position))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(hits(&page), expected);
    assert!(expected.iter().all(|(doc, _)| set.contains_doc(*doc)));
    // Unfiltered, the page shows documents outside the set.
    let (_, all) = get(port, &format!("/feature/{feature}"));
    assert!(hits(&all).iter().any(|(doc, _)| !set.contains_doc(*doc)));
    assert!(!all.contains("restricted to"));
    // Neighbour links keep the filter; the contrast link starts from it.
    let keep = format!("?where={}", escape(&saeidx_view_url(FILTER)));
    for n in &report.neighbours {
        assert!(
            page.contains(&format!("href=\"/feature/{}{keep}\"", n.feature)),
            "{page}"
        );
    }
    assert!(page.contains(&format!(
        "href=\"/contrast?a={}\"",
        escape(&saeidx_view_url(FILTER))
    )));

    // A filter that does not parse: the page shows the API's error, caret and all.
    let bad = "party = 3";
    let (status, api) = get(
        port,
        &format!("/api/top-texts?feature={feature}&where={}", encoded(bad)),
    );
    assert_eq!(status, 400);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let message = api["error"].as_str().unwrap();
    assert!(message.contains("        ^"), "{message}");
    let (status, page) = get(port, &format!("/feature/{feature}?where={}", encoded(bad)));
    assert_eq!(status, 400);
    assert!(page.contains(&escape(message)), "{page}");
    assert!(page.contains(&format!("value=\"{bad}\"")) && page.contains("class=\"filter-error\""));
    // Documents the index lacks: said on the page too.
    let (status, page) = get(port, &format!("/feature/{feature}?docs=3,9999"));
    assert_eq!(status, 404);
    assert!(
        page.contains("9999") && page.contains("value=\"3,9999\""),
        "{page}"
    );
    // A document list restricts as the filter does.
    let (status, page) = get(port, &format!("/feature/{feature}?docs=0,1,2"));
    assert_eq!(status, 200);
    assert!(hits(&page).iter().all(|(doc, _)| *doc < 3));
}

/// The query string value the pages write for `text` (`+` for spaces).
fn saeidx_view_url(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_search_page_lists_the_features_of_the_filtered_documents() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir);
    let port = start(&dir);
    let index = QueryIndex::open(&dir).unwrap();
    let restrict = Restriction::filter(FILTER);
    let expected = index
        .subset_features(
            &restrict,
            &TopFeaturesRequest {
                k: 20,
                ..TopFeaturesRequest::default()
            },
        )
        .unwrap();
    let (status, page) = get(port, &format!("/search?q=&where={}", encoded(FILTER)));
    assert_eq!(status, 200, "{page}");
    let listed = rows(section(&page, "id=\"subset-features\"", "</table>"));
    let ranked: Vec<u32> = expected.features.iter().map(|f| f.feature).collect();
    assert!(!ranked.is_empty());
    assert_eq!(listed, ranked);
    assert!(page.contains(&format!("({} tokens", expected.tokens)));
    let keep = escape(&saeidx_view_url(FILTER));
    assert!(page.contains(&format!("href=\"/feature/{}?where={keep}\"", ranked[0])));
    // Without a filter: the label search alone; with a bad one, the error inline.
    let (status, page) = get(port, "/search?q=anything");
    assert_eq!(status, 200);
    assert!(!page.contains("subset-features") && page.contains("Labels matching"));
    let (status, page) = get(port, &format!("/search?where={}", encoded("year >")));
    assert_eq!(status, 400);
    assert!(page.contains("invalid filter at character") && page.contains("value=\"year &gt;\""));
}

#[test]
fn the_contrast_page_ranks_both_directions_as_the_library_does() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("index");
    index(&dir);
    let port = start(&dir);
    let index = QueryIndex::open(&dir).unwrap();

    // No sets yet: the form alone.
    let (status, page) = get(port, "/contrast");
    assert_eq!(status, 200);
    assert!(
        page.contains("name=\"a\"")
            && page.contains("name=\"b_docs\"")
            && !page.contains("a-over-b")
    );

    for (query, b) in [
        (format!("a={}", encoded(FILTER)), None),
        (
            format!("a={}&b={}", encoded(FILTER), encoded("party = 'b'")),
            Some(Restriction::filter("party = 'b'")),
        ),
    ] {
        let request = ContrastRequest {
            a: Restriction::filter(FILTER),
            b,
            ..ContrastRequest::default()
        };
        let expected = index.contrast(&request).unwrap();
        let (status, page) = get(port, &format!("/contrast?{query}"));
        assert_eq!(status, 200, "{page}");
        let a_side = section(&page, "id=\"a-over-b\"", "id=\"b-over-a\"");
        let b_side = section(&page, "id=\"b-over-a\"", "</body>");
        let ids = |features: &[saeidx_query::ContrastFeature]| -> Vec<u32> {
            features.iter().map(|f| f.feature).collect()
        };
        assert_eq!(rows(a_side), ids(&expected.a_over_b));
        assert_eq!(rows(b_side), ids(&expected.b_over_a));
        assert!(!expected.a_over_b.is_empty() || !expected.b_over_a.is_empty());
        assert!(page.contains(&format!(
            "A: {} documents, {} counted tokens",
            expected.documents_a, expected.tokens_a
        )));
        // Each side's examples are its own, linking to the feature pages with its set.
        let a_hits: Vec<(u32, u32)> = expected
            .a_over_b
            .iter()
            .flat_map(|f| f.examples.iter().map(|h| (h.doc, h.position)))
            .collect();
        assert_eq!(hits(a_side), a_hits);
        let set_a = index.doc_set(&request.a).unwrap().unwrap();
        assert!(a_hits.iter().all(|(doc, _)| set_a.contains_doc(*doc)));
        let set_b = match &request.b {
            Some(b) => index.doc_set(b).unwrap().unwrap(),
            None => index.complement(&set_a).unwrap(),
        };
        let b_hits = hits(b_side);
        assert!(b_hits.iter().all(|(doc, _)| set_b.contains_doc(*doc)));
        let b_expected: Vec<(u32, u32)> = expected
            .b_over_a
            .iter()
            .flat_map(|f| f.examples.iter().map(|h| (h.doc, h.position)))
            .collect();
        assert_eq!(b_hits, b_expected);
        if let Some(first) = expected.a_over_b.first() {
            let keep = escape(&saeidx_view_url(FILTER));
            assert!(a_side.contains(&format!("href=\"/feature/{}?where={keep}\"", first.feature)));
        }
        // The form holds the sets asked for.
        assert!(page.contains(&format!(
            "name=\"a\" size=\"50\" value=\"{}\"",
            escape(FILTER)
        )));
    }

    // A filter that does not parse: the form, and the error with its caret.
    let (status, page) = get(port, &format!("/contrast?a={}", encoded("year >= 'x'")));
    assert_eq!(status, 400);
    assert!(
        page.contains("invalid filter at character") && page.contains("class=\"filter-error\"")
    );
}
