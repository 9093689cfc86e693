//! Damaged query files (bit flips, truncation, junk, edited manifests) never make the
//! reader panic or answer wrongly: opening fails, or every answer is an error or the
//! undamaged index's answer, and full verification finds any changed byte.

use std::{path::Path, sync::OnceLock};

use proptest::prelude::*;
use saeidx_format::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_query::{
    Aggregate, Exclusions, QueryIndex, Rank, build,
    layout::{QUERY_DIR, QUERY_MANIFEST, QueryFile},
};

/// A pristine index with multi-chunk codes and postings files, built once.
fn pristine() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            documents: 300,
            tokens_per_document: (60, 140),
            documents_per_part: 100,
            feature_weights: (0..96)
                .map(|f| {
                    if f % 9 == 0 {
                        0.0
                    } else {
                        1.0 / (1.0 + f as f64)
                    }
                })
                .collect(),
            k: 8,
            value_step: 0.125,
            seed: 5,
        };
        write_synthetic_index(dir.path(), &spec).unwrap();
        build(dir.path()).unwrap();
        dir
    })
    .path()
}

/// Every answer a battery of queries gives, as JSON (errors as their message kind).
fn answers(index: &QueryIndex) -> Vec<Result<String, ()>> {
    let json = |value: Result<serde_json::Value, saeidx_query::QueryError>| {
        value.map(|v| v.to_string()).map_err(|_| ())
    };
    let mut out = Vec::new();
    for feature in [1, 2, 5, 40, 95] {
        for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
            out.push(json(
                index
                    .top_texts(feature, 5, rank, 3, Exclusions::default())
                    .map(|hits| serde_json::to_value(hits).unwrap()),
            ));
        }
        out.push(json(
            index
                .feature(feature, 2, 3, 3, 2, Exclusions::default())
                .map(|r| serde_json::to_value(r).unwrap()),
        ));
    }
    for doc in [0, 150, 299] {
        out.push(json(
            index
                .top_features(doc, None, Aggregate::Sum, 8, Exclusions::default())
                .map(|r| serde_json::to_value(r).unwrap()),
        ));
        out.push(json(
            index
                .document(doc)
                .map(|(id, source, text)| serde_json::json!([id, source, text])),
        ));
    }
    out.push(json(index.live_features().map(|l| serde_json::json!(l))));
    out
}

fn original_answers() -> &'static Vec<Result<String, ()>> {
    static ANSWERS: OnceLock<Vec<Result<String, ()>>> = OnceLock::new();
    ANSWERS.get_or_init(|| answers(&QueryIndex::open(pristine()).unwrap()))
}

/// A damaged copy of the pristine index.
fn damaged(damage: impl FnOnce(&Path)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in walk(pristine()) {
        let target = copy.path().join(entry.strip_prefix(pristine()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    damage(&copy.path().join(QUERY_DIR));
    copy
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

/// Opening fails, or every answer is an error or the original answer.
fn check_never_wrong(dir: &Path, must_fail_verification: bool) {
    let Ok(index) = QueryIndex::open(dir) else {
        return;
    };
    for (got, original) in answers(&index).iter().zip(original_answers()) {
        if let Ok(got) = got {
            assert_eq!(
                Ok(got),
                original.as_ref(),
                "a damaged index answered differently"
            );
        }
    }
    if must_fail_verification {
        assert!(
            index.verify_all().is_err(),
            "verification missed a changed byte"
        );
    }
}

fn file_strategy() -> impl Strategy<Value = QueryFile> {
    prop::sample::select(QueryFile::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn bit_flips_are_caught(file in file_strategy(), at in 0.0f64..1.0, bit in 0u8..8) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] ^= 1 << bit;
            std::fs::write(&path, bytes).unwrap();
        });
        check_never_wrong(dir.path(), true);
    }

    #[test]
    fn truncation_and_junk_are_caught(file in file_strategy(), keep in 0.0f64..1.0, junk in 0usize..64) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate((bytes.len() as f64 * keep) as usize);
            bytes.extend(std::iter::repeat_n(0xA5u8, junk));
            std::fs::write(&path, bytes).unwrap();
        });
        assert!(QueryIndex::open(dir.path()).is_err(), "a resized file opened");
    }

    #[test]
    fn edited_manifests_are_caught(at in 0.0f64..1.0, byte in any::<u8>()) {
        let dir = damaged(|query| {
            let path = query.join(QUERY_MANIFEST);
            let mut bytes = std::fs::read(&path).unwrap();
            let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] = byte;
            std::fs::write(&path, bytes).unwrap();
        });
        check_never_wrong(dir.path(), false);
    }
}

#[test]
fn swapped_files_are_caught() {
    let dir = damaged(|query| {
        std::fs::copy(
            query.join(QueryFile::Codes.name()),
            query.join(QueryFile::Postings.name()),
        )
        .unwrap();
    });
    check_never_wrong(dir.path(), true);
}

#[test]
fn query_files_of_other_data_are_refused() {
    let dir = damaged(|_| {});
    let other = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 3,
        tokens_per_document: (2, 4),
        documents_per_part: 3,
        feature_weights: vec![1.0; 96],
        k: 2,
        value_step: 0.5,
        seed: 9,
    };
    write_synthetic_index(other.path(), &spec).unwrap();
    build(other.path()).unwrap();
    std::fs::remove_dir_all(dir.path().join(QUERY_DIR)).unwrap();
    std::fs::rename(other.path().join(QUERY_DIR), dir.path().join(QUERY_DIR)).unwrap();
    let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("built from other index data"), "{error}");
}
