//! An index of segments answers exactly what one index over the same live rows
//! answers: top texts in every rank and order (ties included), top features, per-token
//! features, statistics and histograms, neighbours, feature reports, samples, counts
//! and labels; deleted documents are never answered.

use std::{collections::BTreeSet, path::Path};

use saeidx_format::segments::SegmentSet;
use saeidx_query::{
    Aggregate, DocRef, Exclusions, FeatureRequest, InfoRequest, QueryError, QueryIndex, Rank,
    SampleRequest, SegmentedIndex, Subject, TextHit, TopFeaturesRequest, TopTextsRequest, build,
};
use saeidx_testkit::synthetic::{
    SyntheticSpec, split_into_segments, write_synthetic_index, write_synthetic_index_without,
};

const D_SAE: usize = 24;

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        documents: 36,
        tokens_per_document: (0, 10),
        documents_per_part: 12,
        feature_weights: (0..D_SAE)
            .map(|f| if f % 7 == 6 { 0.0 } else { 1.0 + f as f64 })
            .collect(),
        k: 4,
        value_step: 0.25,
        seed: 1515,
    }
}

const LABELS: &str = r#"{"2": {"name": "two"}, "5": {"name": "five", "confidence": "high"}}"#;

/// A segmented index of `whole` in `dest` (three segments of one part each) with the
/// documents `deleted` deleted, its query files built, and the labels.
fn segmented(whole: &Path, dest: &Path, deleted: &BTreeSet<u32>) -> SegmentedIndex {
    let mut set = split_into_segments(whole, dest, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(dest, &segment.name)).unwrap();
    }
    for segment in &mut set.segments {
        for &doc in deleted {
            segment.delete(doc);
        }
    }
    set.publish(dest).unwrap();
    std::fs::write(dest.join("labels.json"), LABELS).unwrap();
    SegmentedIndex::open(dest).unwrap()
}

fn single(dir: &Path, removed: &BTreeSet<u32>) -> QueryIndex {
    write_synthetic_index_without(dir, &spec(), removed).unwrap();
    build(dir).unwrap();
    std::fs::write(dir.join("labels.json"), LABELS).unwrap();
    QueryIndex::open(dir).unwrap()
}

/// The number document `doc` of the full corpus has in the index without `removed`.
fn renumber(doc: u32, removed: &BTreeSet<u32>) -> u32 {
    doc - removed.range(..doc).count() as u32
}

fn renumber_hits(hits: &mut [TextHit], removed: &BTreeSet<u32>) {
    for hit in hits {
        hit.doc = renumber(hit.doc, removed);
    }
}

fn renumber_subject(of: &mut Subject, removed: &BTreeSet<u32>) {
    if let Subject::Document { doc, .. } = of {
        *doc = renumber(*doc, removed);
    }
}

const EXCLUSIONS: [Exclusions; 2] = [
    Exclusions {
        special: true,
        sinks: true,
    },
    Exclusions {
        special: false,
        sinks: false,
    },
];

/// Every feature question, asked of both, equal once document numbers are mapped.
fn same_feature_answers(seg: &SegmentedIndex, one: &QueryIndex, removed: &BTreeSet<u32>) {
    for feature in 0..D_SAE as u32 {
        for exclusions in EXCLUSIONS {
            for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
                for k in [1, 3, 10_000] {
                    let request = TopTextsRequest {
                        feature,
                        k,
                        rank,
                        context: 2,
                        exclusions,
                        ..TopTextsRequest::default()
                    };
                    let mut got = seg.top_texts(&request).unwrap();
                    renumber_hits(&mut got.texts, removed);
                    assert_eq!(got, one.top_texts(&request).unwrap(), "{request:?}");
                }
            }
            assert_eq!(
                seg.feature_stats(feature, exclusions).unwrap(),
                one.feature_stats(feature, exclusions).unwrap(),
                "statistics of {feature} {exclusions:?}"
            );
            assert_eq!(
                seg.neighbours(feature, 1000, exclusions).unwrap(),
                one.neighbours(feature, 1000, exclusions).unwrap(),
            );
            let request = FeatureRequest {
                feature,
                examples: 4,
                bands: 3,
                per_band: 2,
                exclusions,
                ..FeatureRequest::default()
            };
            let mut got = seg.feature(&request).unwrap();
            renumber_hits(&mut got.top_texts, removed);
            for band in &mut got.bands {
                renumber_hits(&mut band.examples, removed);
            }
            assert_eq!(got, one.feature(&request).unwrap(), "{request:?}");
        }
    }
}

/// Top features and per-token features of every live document, by number and id;
/// deleted documents are unknown.
fn same_document_answers(seg: &SegmentedIndex, one: &QueryIndex, removed: &BTreeSet<u32>) {
    for doc in 0..spec().documents as u32 {
        let id = DocRef::Id(format!("doc-{doc}"));
        if removed.contains(&doc) {
            let error = seg.top_features(&DocRef::Number(doc), &TopFeaturesRequest::default());
            assert!(matches!(error, Err(QueryError::UnknownDocument { .. })));
            assert!(matches!(
                seg.resolve(&id),
                Err(QueryError::UnknownDocument { .. })
            ));
            continue;
        }
        assert_eq!(seg.resolve(&id).unwrap(), doc);
        let theirs = DocRef::Number(renumber(doc, removed));
        for aggregate in [Aggregate::Max, Aggregate::Sum] {
            for exclusions in EXCLUSIONS {
                let request = TopFeaturesRequest {
                    k: 5,
                    aggregate,
                    exclusions,
                    ..TopFeaturesRequest::default()
                };
                let mut got = seg.top_features(&DocRef::Number(doc), &request).unwrap();
                renumber_subject(&mut got.of, removed);
                assert_eq!(got, one.top_features(&theirs, &request).unwrap());
                let mut got = seg.per_token(&id, &request).unwrap();
                renumber_subject(&mut got.of, removed);
                assert_eq!(got, one.per_token(&theirs, &request).unwrap());
            }
        }
        assert_eq!(
            seg.document(doc).unwrap(),
            one.document(renumber(doc, removed)).unwrap()
        );
    }
}

fn same_index_answers(seg: &SegmentedIndex, one: &QueryIndex, removed: &BTreeSet<u32>) {
    for seed in 0..4 {
        let request = SampleRequest {
            n: 5,
            seed,
            examples: 3,
            context: 1,
            ..SampleRequest::default()
        };
        let mut got = seg.sample(&request).unwrap();
        for feature in &mut got.features {
            renumber_hits(&mut feature.top_texts, removed);
        }
        assert_eq!(got, one.sample(&request).unwrap());
    }
    let request = InfoRequest { list_dead: true };
    let mut got = seg.info(&request).unwrap();
    got.index = one.dir().display().to_string();
    assert_eq!(got, one.info(&request).unwrap());
    assert_eq!(seg.label(5).unwrap(), one.label(5).unwrap());
    assert!(seg.label(5).unwrap().label.is_some());
}

#[test]
fn segments_answer_as_one_index() {
    let tmp = tempfile::tempdir().unwrap();
    let none = BTreeSet::new();
    let one = single(&tmp.path().join("whole"), &none);
    let seg = segmented(&tmp.path().join("whole"), &tmp.path().join("seg"), &none);
    assert_eq!(seg.segments().count(), 3);
    same_feature_answers(&seg, &one, &none);
    same_document_answers(&seg, &one, &none);
    same_index_answers(&seg, &one, &none);
    // A folder without segments.json is one segment and answers as itself.
    let legacy = SegmentedIndex::open(&tmp.path().join("whole")).unwrap();
    assert!(legacy.segment_set().is_none());
    same_index_answers(&legacy, &one, &none);
}

#[test]
fn deleted_documents_are_never_answered() {
    let tmp = tempfile::tempdir().unwrap();
    // Documents at a segment's edges and inside, one whole run of them.
    let removed: BTreeSet<u32> = [0, 5, 11, 12, 13, 14, 30, 35].into();
    write_synthetic_index(&tmp.path().join("full"), &spec()).unwrap();
    let seg = segmented(&tmp.path().join("full"), &tmp.path().join("seg"), &removed);
    let one = single(&tmp.path().join("without"), &removed);
    same_feature_answers(&seg, &one, &removed);
    same_document_answers(&seg, &one, &removed);
    same_index_answers(&seg, &one, &removed);
}

#[test]
fn a_segment_of_another_job_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_synthetic_index(&tmp.path().join("full"), &spec()).unwrap();
    let dest = tmp.path().join("seg");
    let mut set = split_into_segments(&tmp.path().join("full"), &dest, &[0..1, 1..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&dest, &segment.name)).unwrap();
    }
    set.job.hook = "blocks.3.hook_resid_post".into();
    set.publish(&dest).unwrap();
    let error = SegmentedIndex::open(&dest).err().unwrap().to_string();
    assert!(
        error.contains("another job") && error.contains("hook"),
        "{error}"
    );
}
