//! The comparison page and API route: two served indexes of one corpus, each with its
//! own SAE (B's decoder is A's, perturbed), compared through the server as the library
//! compares them, and the feature page showing decoder neighbours.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
};

use saeidx_compare::{CompareRequest, Decoder, compare_recorded};
use saeidx_query::{AnyIndex, build};
use saeidx_testkit::{
    sae::{random_decoder, record_sae, write_saelens_sae},
    synthetic::{SyntheticSpec, write_synthetic_index},
};
use saeidx_view::serve::{ServeOptions, ServedIndex, serve};

const D_SAE: usize = 16;
const D_IN: usize = 8;

/// A synthetic index at `dir/name` (one corpus for every name) whose SAE's decoder is
/// `rows`.
fn index(dir: &Path, name: &str, rows: &[f32]) {
    let spec = SyntheticSpec {
        documents: 10,
        tokens_per_document: (5, 20),
        documents_per_part: 5,
        feature_weights: vec![1.0; D_SAE],
        k: 3,
        value_step: 0.25,
        seed: 4,
    };
    let index = dir.join(name);
    let sae = dir.join(format!("{name}-sae"));
    write_synthetic_index(&index, &spec).unwrap();
    write_saelens_sae(&sae, rows, D_SAE, D_IN).unwrap();
    let sha256 = Decoder::read_folder(&sae).unwrap().sha256().to_string();
    record_sae(&index, &sae, &sha256, D_IN).unwrap();
    build(&index).unwrap();
}

fn http(port: u16, path: &str) -> (u16, String) {
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

#[test]
fn the_comparison_page_and_api_answer_as_the_library() {
    let root = tempfile::tempdir().unwrap();
    let rows = random_decoder(D_SAE, D_IN, 1);
    let noise = random_decoder(D_SAE, D_IN, 2);
    let perturbed: Vec<f32> = rows.iter().zip(&noise).map(|(r, n)| r + 0.05 * n).collect();
    index(root.path(), "a", &rows);
    index(root.path(), "b", &perturbed);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = ["a", "b"]
        .map(|name| ServedIndex {
            dir: root.path().join(name),
            live: None,
        })
        .into();
    std::thread::spawn(move || serve(listener, served, ServeOptions::default()));

    let a = AnyIndex::open(&root.path().join("a")).unwrap();
    let b = AnyIndex::open(&root.path().join("b")).unwrap();
    let want = compare_recorded(&a, &b, &CompareRequest::default()).unwrap();
    let (status, api) = http(port, "/api/compare?with=b");
    assert_eq!(status, 200, "{api}");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api, saeidx_query::answers::to_json(&want).unwrap());
    assert_eq!(api["kind"], "saes");
    assert_eq!(api["matched_by"], "coactivation");

    let (status, page) = http(port, "/compare?with=b&show=3");
    assert_eq!(status, 200);
    assert!(
        page.contains("href=\"/feature/") && page.contains("href=\"/i/b/feature/"),
        "{page}"
    );
    let (status, page) = http(port, "/i/b/compare?with=a");
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/i/b/feature/"), "{page}");

    let (status, error) = http(port, "/api/compare?with=nowhere");
    assert_eq!(status, 404, "{error}");
    let (status, error) = http(port, "/api/compare?with=b&by=magic");
    assert_eq!(status, 400, "{error}");

    // The feature page lists decoder neighbours, linking to their pages.
    let (status, page) = http(port, "/feature/3");
    assert_eq!(status, 200);
    assert!(page.contains("Decoder neighbours (cosine"), "{page}");
}
