//! An index of segments answers exactly what one index over the same live rows
//! answers: top texts in every rank and order (ties included), top features, per-token
//! features, statistics and histograms, neighbours, feature reports, samples, counts
//! and labels; deleted documents are never answered.

use std::{collections::BTreeSet, path::Path};

use saeidx_format::segments::SegmentSet;
use saeidx_query::{
    Aggregate, AnyIndex, DocRef, Exclusions, FeatureRequest, InfoRequest, QueryError, QueryIndex,
    Rank, Restriction, SampleRequest, SegmentedIndex, Subject, TextHit, TokenPattern,
    TopFeaturesRequest, TopTextsRequest, build,
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

/// The same restriction for both: documents listed by global number for the segmented
/// index, by their numbers without `removed` for the single one.
fn restrictions(removed: &BTreeSet<u32>) -> Vec<(Restriction, Restriction)> {
    let listed = [1u32, 4, 12, 13, 20, 21, 22, 34, 35];
    let live: Vec<u32> = listed
        .into_iter()
        .filter(|d| !removed.contains(d))
        .collect();
    let mut pairs = vec![
        (
            Restriction::documents(live.clone()),
            Restriction::documents(live.iter().map(|&d| renumber(d, removed))),
        ),
        (
            Restriction::filter("tokens >= 4 and tokens <= 8"),
            Restriction::filter("tokens >= 4 and tokens <= 8"),
        ),
        (
            Restriction::filter("id in ('doc-3', 'doc-30', 'doc-31') or tokens = 2"),
            Restriction::filter("id in ('doc-3', 'doc-30', 'doc-31') or tokens = 2"),
        ),
    ];
    let mut both = Restriction::filter("tokens > 3");
    both.docs = Some(
        live.iter()
            .map(|d| DocRef::Id(format!("doc-{d}")))
            .collect(),
    );
    pairs.push((both.clone(), both));
    if removed.is_empty() {
        // `doc` in a filter is the global document number.
        let by_number = Restriction::filter("doc >= 10 and doc < 27");
        pairs.push((by_number.clone(), by_number));
    }
    pairs
}

/// Restricted questions and token patterns, asked of both, equal once document numbers
/// are mapped.
fn same_restricted_answers(seg: &SegmentedIndex, one: &QueryIndex, removed: &BTreeSet<u32>) {
    for (ours, theirs) in restrictions(removed) {
        for feature in 0..D_SAE as u32 {
            for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
                let request = |restrict: &Restriction| TopTextsRequest {
                    feature,
                    k: 7,
                    rank,
                    context: 2,
                    restrict: restrict.clone(),
                    ..TopTextsRequest::default()
                };
                let mut got = seg.top_texts(&request(&ours)).unwrap();
                renumber_hits(&mut got.texts, removed);
                got.restrict = theirs.clone();
                assert_eq!(got, one.top_texts(&request(&theirs)).unwrap(), "{ours:?}");
            }
            let request = |restrict: &Restriction| FeatureRequest {
                feature,
                examples: 4,
                bands: 3,
                per_band: 2,
                restrict: restrict.clone(),
                ..FeatureRequest::default()
            };
            let mut got = seg.feature(&request(&ours)).unwrap();
            renumber_hits(&mut got.top_texts, removed);
            for band in &mut got.bands {
                renumber_hits(&mut band.examples, removed);
            }
            assert_eq!(got, one.feature(&request(&theirs)).unwrap(), "{ours:?}");
        }
        for seed in 0..3 {
            let request = |restrict: &Restriction| SampleRequest {
                n: 4,
                seed,
                examples: 3,
                context: 1,
                restrict: restrict.clone(),
            };
            let mut got = seg.sample(&request(&ours)).unwrap();
            for feature in &mut got.features {
                renumber_hits(&mut feature.top_texts, removed);
            }
            got.restrict = theirs.clone();
            assert_eq!(got, one.sample(&request(&theirs)).unwrap(), "{ours:?}");
        }
    }
    let patterns = [
        TokenPattern::Id(1),
        TokenPattern::Id(517),
        TokenPattern::Text("tax".into()),
        TokenPattern::Regex("^(the|war\\n|日本)$".into()),
        TokenPattern::Regex("a".into()),
    ];
    for token in patterns {
        for feature in 0..D_SAE as u32 {
            for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
                let request = TopTextsRequest {
                    feature,
                    k: 6,
                    rank,
                    context: 1,
                    exclusions: EXCLUSIONS[1],
                    token: Some(token.clone()),
                    ..TopTextsRequest::default()
                };
                let mut got = seg.top_texts(&request).unwrap();
                renumber_hits(&mut got.texts, removed);
                assert_eq!(got, one.top_texts(&request).unwrap(), "{request:?}");
            }
        }
    }
}

#[test]
fn restrictions_and_token_patterns_answer_as_one_index() {
    let tmp = tempfile::tempdir().unwrap();
    let none = BTreeSet::new();
    let one = single(&tmp.path().join("whole"), &none);
    let seg = segmented(&tmp.path().join("whole"), &tmp.path().join("seg"), &none);
    same_restricted_answers(&seg, &one, &none);
    let removed: BTreeSet<u32> = [0, 4, 11, 12, 21, 35].into();
    write_synthetic_index(&tmp.path().join("full"), &spec()).unwrap();
    let seg = segmented(&tmp.path().join("full"), &tmp.path().join("seg2"), &removed);
    let one = single(&tmp.path().join("without"), &removed);
    same_restricted_answers(&seg, &one, &removed);
    // A deleted document cannot be asked for.
    let error = seg.top_texts(&TopTextsRequest {
        restrict: Restriction::documents([4]),
        ..TopTextsRequest::default()
    });
    assert!(matches!(error, Err(QueryError::UnknownDocument { .. })));
}

/// Any folder opens as [`AnyIndex`] and answers as its shape does.
#[test]
fn any_index_opens_either_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let none = BTreeSet::new();
    let one = single(&tmp.path().join("whole"), &none);
    let seg = segmented(&tmp.path().join("whole"), &tmp.path().join("seg"), &none);
    let any_one = AnyIndex::open(&tmp.path().join("whole")).unwrap();
    let any_seg = AnyIndex::open(&tmp.path().join("seg")).unwrap();
    assert_eq!((any_one.segment_count(), any_seg.segment_count()), (1, 3));
    let request = TopTextsRequest {
        feature: 3,
        k: 9,
        restrict: Restriction::filter("tokens > 2"),
        ..TopTextsRequest::default()
    };
    let answer = one.top_texts(&request).unwrap();
    assert_eq!(any_one.top_texts(&request).unwrap(), answer);
    assert_eq!(seg.top_texts(&request).unwrap(), answer);
    assert_eq!(any_seg.top_texts(&request).unwrap(), answer);
    assert_eq!(
        any_seg.info(&InfoRequest::default()).unwrap().counts,
        one.info(&InfoRequest::default()).unwrap().counts
    );
    let mut windows = 0;
    for doc in 0..spec().documents as u32 {
        if let Ok(window) = one.window(doc, 1, 3, 5) {
            assert_eq!(any_seg.window(doc, 1, 3, 5).unwrap(), window);
            assert_eq!(
                any_seg.token_span(doc, 1).unwrap(),
                one.token_span(doc, 1).unwrap()
            );
            windows += 1;
        }
    }
    assert!(windows > 20, "{windows}");
    assert_eq!(
        any_seg.sample_features(4, 9).unwrap(),
        one.sample_features(4, 9).unwrap()
    );
    assert_eq!(any_seg.job(), &seg.job().clone());
    // Labels written through either shape land in the folder's labels.json.
    let mut any_seg = any_seg;
    let label = saeidx_query::FeatureLabel {
        name: Some("written".into()),
        ..Default::default()
    };
    any_seg.set_label(9, label).unwrap();
    let reopened = SegmentedIndex::open(&tmp.path().join("seg")).unwrap();
    assert_eq!(
        reopened.label(9).unwrap().label.unwrap().name.as_deref(),
        Some("written")
    );
    assert_eq!(reopened.label(5).unwrap(), one.label(5).unwrap());
}

/// Statistics, histograms and top texts (every rank, ties included) over segments with
/// random deletions equal one index built over the live rows, for several corpora whose
/// segments' maxima (so their histograms' ranges) differ.
#[test]
fn statistics_histograms_and_top_texts_over_segments_equal_one_index() {
    for (seed, value_step) in [(1u64, 0.25f32), (2, 0.375), (3, 1.5), (4, 0.0625)] {
        let tmp = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            seed,
            value_step,
            ..spec()
        };
        // Every fifth document or so, by a seeded choice (segment edges included).
        let removed: BTreeSet<u32> = (0..spec.documents as u32)
            .filter(|d| (d * 7 + seed as u32 * 3).is_multiple_of(5) || *d == 35)
            .collect();
        let full = tmp.path().join("full");
        write_synthetic_index(&full, &spec).unwrap();
        let dest = tmp.path().join("seg");
        let mut set = split_into_segments(&full, &dest, &[0..1, 1..2, 2..3]).unwrap();
        for segment in &mut set.segments {
            build(&SegmentSet::segment_dir(&dest, &segment.name)).unwrap();
            for &doc in &removed {
                segment.delete(doc);
            }
        }
        set.publish(&dest).unwrap();
        let seg = SegmentedIndex::open(&dest).unwrap();
        let dir = tmp.path().join("one");
        write_synthetic_index_without(&dir, &spec, &removed).unwrap();
        build(&dir).unwrap();
        let one = QueryIndex::open(&dir).unwrap();
        let mut histogram_ranges = BTreeSet::new();
        for feature in 0..D_SAE as u32 {
            for exclusions in EXCLUSIONS {
                let stats = one.feature_stats(feature, exclusions).unwrap();
                assert_eq!(
                    seg.feature_stats(feature, exclusions).unwrap(),
                    stats,
                    "seed {seed}: statistics of {feature} {exclusions:?}"
                );
                assert_eq!(
                    stats.histogram.iter().map(|&n| u64::from(n)).sum::<u64>(),
                    stats.count
                );
                histogram_ranges.insert(stats.histogram_max.to_bits());
                for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
                    for k in [1, 2, 5, 17, 1000] {
                        let request = TopTextsRequest {
                            feature,
                            k,
                            rank,
                            exclusions,
                            ..TopTextsRequest::default()
                        };
                        let mut got = seg.top_texts(&request).unwrap();
                        renumber_hits(&mut got.texts, &removed);
                        assert_eq!(
                            got,
                            one.top_texts(&request).unwrap(),
                            "seed {seed}: {request:?}"
                        );
                    }
                }
            }
        }
        assert!(
            histogram_ranges.len() > 1,
            "seed {seed}: {histogram_ranges:?}"
        );
    }
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
