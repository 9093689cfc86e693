//! Query files changed on disk under an open index (truncated in place, rewritten in
//! place, as copying a new index over a served one does): every answer is an error
//! saying so, never a `SIGBUS` that kills the process, and never a silently wrong
//! answer; the index opens again once its files are whole.

use std::{fs::OpenOptions, path::Path, time::Duration};

use saeidx_query::{
    Aggregate, Exclusions, QueryError, QueryIndex, Rank, build,
    layout::{QUERY_DIR, QueryFile},
};
use saeidx_query::{DocRef, FeatureRequest, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

/// An index whose postings and codes span several chunks (about 2 MB each).
fn index(dir: &Path) {
    let spec = SyntheticSpec {
        documents: 600,
        tokens_per_document: (60, 140),
        documents_per_part: 200,
        feature_weights: (0..96).map(|f| 1.0 / (1.0 + f as f64)).collect(),
        k: 12,
        value_step: 0.125,
        seed: 5,
    };
    write_synthetic_index(dir, &spec).unwrap();
    build(dir).unwrap();
}

fn changed(result: Result<impl std::fmt::Debug, QueryError>) -> String {
    match result {
        Err(error @ QueryError::Changed { .. }) => error.to_string(),
        other => panic!("expected a Changed error, got {other:?}"),
    }
}

#[test]
fn a_file_truncated_under_an_open_index_is_an_error_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let index = QueryIndex::open(dir.path()).unwrap();
    let exclusions = Exclusions::default();
    // Warm: the first features' postings are read and their chunks verified.
    let before = index
        .top_texts(&TopTextsRequest {
            feature: 1,
            k: 10,
            rank: Rank::Token,
            context: 3,
            exclusions,
            restrict: Default::default(),
            token: Default::default(),
        })
        .map(|answer| answer.texts)
        .unwrap();
    assert_eq!(before.len(), 10);
    let postings = dir.path().join(QUERY_DIR).join(QueryFile::Postings.name());
    let length = std::fs::metadata(&postings).unwrap().len();
    assert!(length > 1 << 20, "{length}");
    // Truncated in place (as `cp` does before writing), while the index is open.
    OpenOptions::new()
        .write(true)
        .open(&postings)
        .unwrap()
        .set_len(4096)
        .unwrap();
    // The last features' postings lie past the new end: reading them raises SIGBUS,
    // which the reader survives; the answer is refused.
    let message = changed(
        index
            .top_texts(&TopTextsRequest {
                feature: 90,
                k: 10,
                rank: Rank::Token,
                context: 3,
                exclusions,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
    );
    assert!(message.contains("postings.bin"), "{message}");
    assert!(message.contains("read past its end"), "{message}");
    // Every other question is refused too, even one that does not touch the file.
    changed(
        index
            .top_texts(&TopTextsRequest {
                feature: 1,
                k: 10,
                rank: Rank::Token,
                context: 3,
                exclusions,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
    );
    changed(index.feature(&FeatureRequest {
        feature: 2,
        examples: 3,
        bands: 2,
        per_band: 3,
        neighbours: 3,
        context: 2,
        exclusions,
        restrict: Default::default(),
    }));
    changed(
        index
            .top_features(
                &DocRef::Number(0),
                &TopFeaturesRequest {
                    k: 5,
                    aggregate: Aggregate::Max,
                    tokens: None,
                    exclusions,
                },
            )
            .map(|answer| answer.features),
    );
    changed(index.document(0));
    changed(index.live_features());
    changed(index.check_intact());
    // Reopening reports the damage; a rebuilt index opens and answers as before.
    assert!(QueryIndex::open(dir.path()).is_err());
    build(dir.path()).unwrap();
    let reopened = QueryIndex::open(dir.path()).unwrap();
    assert_eq!(
        reopened
            .top_texts(&TopTextsRequest {
                feature: 1,
                k: 10,
                rank: Rank::Token,
                context: 3,
                exclusions,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts)
            .unwrap(),
        before
    );
}

#[test]
fn a_file_rewritten_in_place_under_an_open_index_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let index = QueryIndex::open(dir.path()).unwrap();
    let exclusions = Exclusions::default();
    let before = index
        .top_texts(&TopTextsRequest {
            feature: 3,
            k: 5,
            rank: Rank::Token,
            context: 2,
            exclusions,
            restrict: Default::default(),
            token: Default::default(),
        })
        .map(|answer| answer.texts)
        .unwrap();
    // Same size, other bytes in an already verified chunk (values of feature 3's
    // postings), written in place: no fault, but the answer would silently change.
    let codes = dir.path().join(QUERY_DIR).join(QueryFile::Postings.name());
    let mut bytes = std::fs::read(&codes).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    // File times have the clock's resolution: let it tick.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&codes, &bytes).unwrap();
    let message = changed(
        index
            .top_texts(&TopTextsRequest {
                feature: 3,
                k: 5,
                rank: Rank::Token,
                context: 2,
                exclusions,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
    );
    assert!(message.contains("rewritten in place"), "{message}");
    bytes[middle] ^= 0x40;
    std::fs::write(&codes, &bytes).unwrap();
    let reopened = QueryIndex::open(dir.path()).unwrap();
    assert_eq!(
        reopened
            .top_texts(&TopTextsRequest {
                feature: 3,
                k: 5,
                rank: Rank::Token,
                context: 2,
                exclusions,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts)
            .unwrap(),
        before
    );
}

#[test]
fn a_file_rewritten_under_an_open_index_of_segments_fails_the_questions_that_read_it() {
    use saeidx_format::segments::SegmentSet;
    use saeidx_query::SegmentedIndex;
    use saeidx_testkit::synthetic::split_into_segments;
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    index(&full);
    let split = dir.path().join("segmented");
    let set = split_into_segments(&full, &split, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&split, &segment.name)).unwrap();
    }
    let index = SegmentedIndex::open(&split).unwrap();
    let exclusions = Exclusions::default();
    index.feature_stats(3, exclusions).unwrap();
    let all_tokens = Exclusions::none();
    let before = index.feature_stats(3, all_tokens).unwrap();
    // Other bytes written in place into the second segment's postings.
    let segment = SegmentSet::segment_dir(&split, &set.segments[1].name);
    let postings = segment.join(QUERY_DIR).join(QueryFile::Postings.name());
    let mut bytes = std::fs::read(&postings).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&postings, &bytes).unwrap();
    // Statistics over every token read every segment's postings: refused.
    let message = changed(index.feature_stats(3, all_tokens));
    assert!(message.contains("rewritten in place"), "{message}");
    assert!(message.contains(&set.segments[1].name), "{message}");
    changed(index.check_intact());
    // A refused answer leaves the files it read to be checked again by the next one.
    changed(index.feature_stats(3, exclusions));
    bytes[middle] ^= 0x40;
    std::fs::write(&postings, &bytes).unwrap();
    let reopened = SegmentedIndex::open(&split).unwrap();
    assert_eq!(reopened.feature_stats(3, all_tokens).unwrap(), before);
}
