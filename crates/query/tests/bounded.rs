//! Builds in bounded memory: a budget small enough to force the external sort to spill
//! sorted runs writes byte-identical query files to a build that holds everything in
//! memory, and leaves no run behind.

use std::path::Path;

use saeidx_query::{BuildOptions, QueryIndex, build_with, layout::QUERY_DIR};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

fn query_files(index: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(index.join(QUERY_DIR))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_tiny_memory_budget_spills_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 120,
        tokens_per_document: (60, 140),
        documents_per_part: 40,
        feature_weights: (0..500).map(|f| 1.0 / (1.0 + f as f64)).collect(),
        k: 16,
        value_step: 0.37,
        seed: 11,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();

    let in_memory = build_with(dir.path(), &BuildOptions::default()).unwrap();
    assert_eq!(in_memory.spilled_runs, 0);
    let expected = query_files(dir.path());
    // Top texts of features, alone and on a token id (these read `occurrences.bin`,
    // whose sort spills too).
    let answers = |index: &QueryIndex| {
        (0..500)
            .step_by(37)
            .flat_map(|feature| {
                [None, Some(100 + feature % 1000)].map(|token| {
                    let request = saeidx_query::TopTextsRequest {
                        feature,
                        token: token.map(saeidx_query::TokenPattern::Id),
                        ..Default::default()
                    };
                    serde_json::to_string(&index.top_texts(&request).unwrap()).unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    let before = answers(&QueryIndex::open(dir.path()).unwrap());

    // About 190,000 nonzeros of 16 bytes each in the sort: a 256 KiB budget spills a
    // dozen runs.
    let options = BuildOptions { memory: 256 << 10 };
    let spilled = build_with(dir.path(), &options).unwrap();
    assert!(spilled.spilled_runs >= 8, "{}", spilled.spilled_runs);
    assert_eq!(spilled.counts, in_memory.counts);
    let found = query_files(dir.path());
    assert_eq!(
        found.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        expected.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "the same files, and no sort runs left behind"
    );
    assert!(
        found
            .iter()
            .any(|(name, _)| name.ends_with("occurrences.bin"))
    );
    for ((name, bytes), (_, expected)) in found.iter().zip(&expected) {
        assert!(bytes == expected, "{name} differs");
    }
    let index = QueryIndex::open(dir.path()).unwrap();
    assert_eq!(answers(&index), before);
    index.verify_all().unwrap();
}
