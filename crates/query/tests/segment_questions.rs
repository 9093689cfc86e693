//! The browsing and set questions over an index of segments (document listings and
//! pages, the features of a set of documents, contrasts, token profiles, silent
//! contexts, overviews) answer exactly as one index over the same live documents in the
//! same order: three segments, a removed document and a changed one (its old version
//! deleted; its new version is a document of the last segment, as an append writes
//! it), compared field for field once document numbers are mapped.

use std::{collections::BTreeSet, path::Path};

use saeidx_format::segments::SegmentSet;
use saeidx_query::{
    Aggregate, AnyIndex, ContrastRequest, DocRef, DocumentRequest, DocumentsRequest, Exclusions,
    OverviewRequest, QueryError, QueryIndex, Restriction, SilentRequest, TokenFeaturesRequest,
    TokenPattern, TopFeaturesRequest, build, list_documents,
};
use saeidx_testkit::synthetic::{
    SyntheticSpec, split_into_segments, write_synthetic_index_with_metadata,
    write_synthetic_index_with_metadata_without,
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
        seed: 1516,
    }
}

const LABELS: &str = r#"{"2": {"name": "two"}, "5": {"name": "five", "confidence": "high"}}"#;

/// Document 3 changed (its new version is document 33), documents 5, 12, 13 and 35
/// removed: at a segment's edges and inside.
fn removed() -> BTreeSet<u32> {
    [3, 5, 12, 13, 35].into()
}

/// An index of segments and one index over the same live documents.
struct Both {
    seg: AnyIndex,
    one: QueryIndex,
    seg_dir: std::path::PathBuf,
    removed: BTreeSet<u32>,
    _tmp: tempfile::TempDir,
}

impl Both {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let removed = removed();
        let full = tmp.path().join("full");
        write_synthetic_index_with_metadata(&full, &spec()).unwrap();
        let seg_dir = tmp.path().join("seg");
        let mut set = split_into_segments(&full, &seg_dir, &[0..1, 1..2, 2..3]).unwrap();
        for segment in &set.segments {
            build(&SegmentSet::segment_dir(&seg_dir, &segment.name)).unwrap();
        }
        for segment in &mut set.segments {
            for &doc in &removed {
                segment.delete(doc);
            }
        }
        set.publish(&seg_dir).unwrap();
        std::fs::write(seg_dir.join("labels.json"), LABELS).unwrap();
        let one_dir = tmp.path().join("one");
        write_synthetic_index_with_metadata_without(&one_dir, &spec(), &removed).unwrap();
        build(&one_dir).unwrap();
        std::fs::write(one_dir.join("labels.json"), LABELS).unwrap();
        Self {
            seg: AnyIndex::open(&seg_dir).unwrap(),
            one: QueryIndex::open(&one_dir).unwrap(),
            seg_dir,
            removed,
            _tmp: tmp,
        }
    }

    /// The number global document `doc` has in the single index.
    fn renumber(&self, doc: u32) -> u32 {
        doc - self.removed.range(..doc).count() as u32
    }

    /// The live documents' global numbers.
    fn live(&self) -> Vec<u32> {
        (0..spec().documents as u32)
            .filter(|d| !self.removed.contains(d))
            .collect()
    }
}

fn one_dir(both: &Both) -> &Path {
    both.one.dir()
}

#[test]
fn document_listings_answer_as_one_index() {
    let both = Both::new();
    let filters = [
        None,
        Some("year >= 1 or party = 'a'"),
        Some("tokens > 3 and flag = true"),
    ];
    for filter in filters {
        for (offset, limit) in [(0, 100), (3, 5), (29, 10)] {
            for text in [false, true] {
                let request = DocumentsRequest {
                    filter: filter.map(String::from),
                    limit,
                    offset,
                    text,
                };
                let mut got = both.seg.list_documents(&request).unwrap();
                assert!(offset > 0 || !got.documents.is_empty(), "{request:?}");
                assert_eq!(got, list_documents(&both.seg_dir, &request).unwrap());
                for entry in &mut got.documents {
                    assert!(!both.removed.contains(&entry.doc));
                    entry.doc = both.renumber(entry.doc);
                }
                assert_eq!(
                    got,
                    list_documents(one_dir(&both), &request).unwrap(),
                    "{request:?}"
                );
            }
        }
    }
}

#[test]
fn document_pages_answer_as_one_index() {
    let both = Both::new();
    let mut pages = 0;
    for doc in both.live() {
        for feature in [None, Some(2), Some(9)] {
            for page in 0.. {
                let request = |doc: u32| DocumentRequest {
                    doc: DocRef::Number(doc),
                    feature,
                    page,
                    page_tokens: 3,
                    top: 5,
                    ..DocumentRequest::default()
                };
                let theirs = both.one.document_page(&request(both.renumber(doc)));
                let ours = both.seg.document_page(&request(doc));
                match (ours, theirs) {
                    (Ok(mut ours), Ok(theirs)) => {
                        assert_eq!(ours.doc, doc);
                        ours.doc = both.renumber(doc);
                        assert_eq!(ours, theirs);
                        pages += 1;
                    }
                    (Err(QueryError::TokenRange { doc: d, .. }), Err(_)) => {
                        assert_eq!(d, doc);
                        break;
                    }
                    (ours, theirs) => panic!("{doc} page {page}: {ours:?} vs {theirs:?}"),
                }
            }
        }
        let by_id = DocumentRequest {
            doc: DocRef::Id(format!("doc-{doc}")),
            ..DocumentRequest::default()
        };
        assert_eq!(both.seg.document_page(&by_id).unwrap().doc, doc);
    }
    assert!(pages > 100, "{pages}");
    for doc in &both.removed {
        let request = DocumentRequest {
            doc: DocRef::Number(*doc),
            ..DocumentRequest::default()
        };
        assert!(matches!(
            both.seg.document_page(&request),
            Err(QueryError::UnknownDocument { .. })
        ));
    }
}

impl Both {
    /// The same restriction for both: documents listed by global number for the index
    /// of segments, by their numbers in the single index for it; filters and ids alike.
    fn restrictions(&self) -> Vec<(Restriction, Restriction)> {
        let listed: Vec<u32> = [1u32, 4, 11, 14, 20, 21, 33, 34]
            .into_iter()
            .filter(|d| !self.removed.contains(d))
            .collect();
        let mut by_id = Restriction::filter("tokens > 3");
        by_id.docs = Some(
            listed
                .iter()
                .map(|d| DocRef::Id(format!("doc-{d}")))
                .collect(),
        );
        vec![
            (Restriction::all(), Restriction::all()),
            (
                Restriction::documents(listed.clone()),
                Restriction::documents(listed.iter().map(|&d| self.renumber(d))),
            ),
            (
                Restriction::filter("year >= 1 or party = 'a'"),
                Restriction::filter("year >= 1 or party = 'a'"),
            ),
            (by_id.clone(), by_id),
        ]
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

#[test]
fn features_of_a_set_of_documents_answer_as_one_index() {
    let both = Both::new();
    for (ours, theirs) in both.restrictions() {
        for aggregate in [Aggregate::Max, Aggregate::Sum] {
            for exclusions in EXCLUSIONS {
                for k in [3, 1000] {
                    let request = TopFeaturesRequest {
                        k,
                        aggregate,
                        exclusions,
                        ..TopFeaturesRequest::default()
                    };
                    let mut got = both.seg.subset_features(&ours, &request).unwrap();
                    assert!(!got.features.is_empty());
                    for feature in &mut got.features {
                        feature.doc = feature.doc.map(|d| both.renumber(d));
                    }
                    got.restrict = theirs.clone();
                    assert_eq!(
                        got,
                        both.one.subset_features(&theirs, &request).unwrap(),
                        "{ours:?} {request:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn contrasts_answer_as_one_index() {
    let both = Both::new();
    let restrictions = both.restrictions();
    let mut bs: Vec<Option<(Restriction, Restriction)>> = vec![None];
    bs.extend(restrictions.iter().cloned().map(Some));
    let mut features = 0;
    for (a_ours, a_theirs) in &restrictions {
        for b in &bs {
            for exclusions in EXCLUSIONS {
                let request = |a: &Restriction, b: Option<&Restriction>| ContrastRequest {
                    a: a.clone(),
                    b: b.cloned(),
                    k: 50,
                    examples: 3,
                    context: 2,
                    exclusions,
                    prior: 10.0,
                    min_count: 1,
                };
                let ours = request(a_ours, b.as_ref().map(|b| &b.0));
                let theirs = request(a_theirs, b.as_ref().map(|b| &b.1));
                let mut got = both.seg.contrast(&ours).unwrap();
                for feature in got.a_over_b.iter_mut().chain(&mut got.b_over_a) {
                    for hit in &mut feature.examples {
                        hit.doc = both.renumber(hit.doc);
                    }
                    features += 1;
                }
                got.a = theirs.a.clone();
                got.b = theirs.b.clone();
                assert_eq!(got, both.one.contrast(&theirs).unwrap(), "{ours:?}");
            }
        }
    }
    assert!(features > 100, "{features}");
}

#[test]
fn token_features_answer_as_one_index() {
    let both = Both::new();
    let patterns = [
        vec![TokenPattern::Id(1)],
        vec![TokenPattern::Id(517)],
        vec![TokenPattern::Text("tax".into())],
        vec![TokenPattern::Regex("^(the|war\\n|日本)$".into())],
        vec![TokenPattern::Regex("a".into())],
        vec![
            TokenPattern::Regex("a".into()),
            TokenPattern::Regex("e".into()),
        ],
    ];
    let mut occurrences = 0;
    for (ours, theirs) in both.restrictions() {
        for tokens in &patterns {
            for exclusions in EXCLUSIONS {
                let request = |restrict: &Restriction| TokenFeaturesRequest {
                    tokens: tokens.clone(),
                    k: 30,
                    examples: 3,
                    context: 2,
                    exclusions,
                    restrict: restrict.clone(),
                };
                let mut got = both.seg.token_features(&request(&ours)).unwrap();
                occurrences += got.occurrences;
                for feature in &mut got.features {
                    for hit in &mut feature.examples {
                        hit.doc = both.renumber(hit.doc);
                    }
                }
                got.restrict = theirs.clone();
                assert_eq!(
                    got,
                    both.one.token_features(&request(&theirs)).unwrap(),
                    "{ours:?} {tokens:?}"
                );
            }
        }
    }
    assert!(occurrences > 500, "{occurrences}");
}

#[test]
fn silent_contexts_answer_as_one_index() {
    let both = Both::new();
    let ids = both
        .one
        .token_features(&TokenFeaturesRequest {
            tokens: vec![TokenPattern::Regex("[aeo]".into())],
            ..TokenFeaturesRequest::default()
        })
        .unwrap()
        .token_ids;
    let mut some_ids = vec![1];
    some_ids.extend(ids.iter().step_by(3).take(12));
    let mut contexts = 0;
    for feature in 0..D_SAE as u32 {
        for exclusions in EXCLUSIONS {
            for tokens in [Vec::new(), some_ids.clone()] {
                for (n, context, seed) in [(5, 0, 0), (100, 2, 1), (100, 1, 7)] {
                    let request = SilentRequest {
                        feature,
                        n,
                        context,
                        tokens: tokens.clone(),
                        seed,
                        exclusions,
                    };
                    let mut got = both.seg.silent_contexts(&request).unwrap();
                    contexts += got.contexts.len();
                    for hit in &mut got.contexts {
                        hit.doc = both.renumber(hit.doc);
                    }
                    assert_eq!(
                        got,
                        both.one.silent_contexts(&request).unwrap(),
                        "{request:?}"
                    );
                }
            }
        }
    }
    assert!(contexts > 5_000, "{contexts}");
}

#[test]
fn overviews_answer_as_one_index() {
    let both = Both::new();
    for (frequent, sample, seed, documents, from) in
        [(5, 5, 3, 100, 0), (30, 10, 0, 7, 14), (1, 0, 1, 3, 33)]
    {
        let request = |documents_from| OverviewRequest {
            frequent,
            sample,
            seed,
            documents,
            documents_from,
        };
        let mut got = both.seg.overview(&request(from)).unwrap();
        assert!(!got.documents.is_empty() && got.live_features > 0);
        for summary in &mut got.documents {
            assert!(!both.removed.contains(&summary.doc));
            summary.doc = both.renumber(summary.doc);
        }
        let want = both.one.overview(&request(both.renumber(from))).unwrap();
        assert_eq!(got, want, "{from}");
    }
}
