//! The default corpus, as set-up wrote it: the corpus format of
//! `schemas/corpus-document.schema.json`, pinned content.

use std::collections::HashSet;

use saeidx_assets::corpus::{SOTU_DOCUMENTS, SOTU_JSONL_SHA256};
use saeidx_tests::{asset_paths, repo_root};

#[test]
fn sotu_jsonl_follows_the_corpus_schema() {
    let path = asset_paths().corpus();
    let digest = saeidx_format::checksum::sha256_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", path.display()));
    assert_eq!(digest, SOTU_JSONL_SHA256);

    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas/corpus-document.schema.json")).unwrap(),
    )
    .unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["id", "text"]);

    let text = std::fs::read_to_string(&path).unwrap();
    let mut ids = HashSet::new();
    for line in text.lines() {
        let document: serde_json::Value = serde_json::from_str(line).unwrap();
        for (field, property) in schema["properties"].as_object().unwrap() {
            let value = &document[field];
            let expected = property["type"].as_str().unwrap();
            let ok = match expected {
                "string" => value.is_string(),
                "integer" => value.is_u64(),
                other => panic!("schema type {other} not handled"),
            };
            assert!(ok, "{field} of {} is not a {expected}", document["id"]);
        }
        assert!(ids.insert(document["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len(), SOTU_DOCUMENTS);
    assert!(ids.contains("1790_george_washington_n"));
}
