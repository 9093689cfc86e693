//! The browsing answers (document pages, the overview) against brute-force computations
//! over the same index's other answers, on a synthetic index.

use std::collections::BTreeMap;

use saeidx_query::{
    DocRef, DocumentRequest, DocumentsRequest, Exclusions, OverviewRequest, QueryError, QueryIndex,
    build, list_documents,
};
use saeidx_testkit::synthetic::{
    SyntheticSpec, write_synthetic_index, write_synthetic_index_with_metadata,
};

fn index() -> (tempfile::TempDir, QueryIndex) {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_index(dir.path(), &spec()).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    (dir, index)
}

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        documents: 12,
        tokens_per_document: (0, 90),
        documents_per_part: 5,
        feature_weights: (0..40)
            .map(|f| if f % 7 == 3 { 0.0 } else { 1.0 + f as f64 })
            .collect(),
        k: 5,
        value_step: 0.25,
        seed: 9,
    }
}

#[test]
fn document_pages_tile_the_document_and_rank_its_features() {
    let (_dir, index) = index();
    for doc in 0..index.documents() {
        let request = |page, page_tokens, feature| DocumentRequest {
            doc: DocRef::Number(doc),
            feature,
            page,
            page_tokens,
            top: 1000,
            exclusions: Exclusions::default(),
        };
        let whole = index.document_page(&request(0, 500, None)).unwrap();
        let codes = index
            .document_codes(
                doc,
                None,
                Exclusions {
                    special: false,
                    sinks: false,
                },
            )
            .unwrap();
        assert_eq!(whole.tokens as usize, codes.len());
        assert_eq!(whole.page_content.len(), codes.len());
        // Brute force: max, sum and count per feature over the counted tokens.
        let mut expected: BTreeMap<u32, (f32, f32, u32)> = BTreeMap::new();
        for token in index
            .document_codes(doc, None, Exclusions::default())
            .unwrap()
            .iter()
        {
            for (&f, &v) in token.features.iter().zip(token.values) {
                let e = expected.entry(f).or_insert((v, 0.0, 0));
                e.0 = e.0.max(v);
                e.1 += v;
                e.2 += 1;
            }
        }
        assert_eq!(whole.top_features.len(), expected.len());
        for pair in whole.top_features.windows(2) {
            assert!(pair[0].max_activation >= pair[1].max_activation);
        }
        for f in &whole.top_features {
            let (max, sum, count) = expected[&f.feature];
            assert_eq!((f.max_activation, f.count), (max, count));
            assert!((f.sum_activation - sum).abs() <= 1e-4 * sum.max(1.0));
        }
        assert_eq!(whole.feature, whole.top_features.first().map(|f| f.feature));
        // Pages of 7 tokens are the whole page cut in pieces, text included.
        let pieces: Vec<_> = (0..whole.tokens.div_ceil(7).max(1))
            .flat_map(|page| {
                index
                    .document_page(&request(page, 7, whole.feature))
                    .unwrap()
                    .page_content
            })
            .collect();
        assert_eq!(pieces, whole.page_content);
        // Each token's features are its codes, strongest first; the chosen feature's
        // activation is its.
        for (token, codes) in whole.page_content.iter().zip(codes.iter()) {
            let features: Vec<(u32, f32)> = token
                .features
                .iter()
                .map(|a| (a.feature, a.activation))
                .collect();
            let mut stored: Vec<(u32, f32)> = codes
                .features
                .iter()
                .copied()
                .zip(codes.values.iter().copied())
                .collect();
            stored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            assert_eq!(features, stored);
            let chosen = whole
                .feature
                .and_then(|f| stored.iter().find(|(g, _)| *g == f).map(|p| p.1))
                .unwrap_or(0.0);
            assert_eq!(token.activation, chosen);
        }
    }
    let past = index
        .document_page(&DocumentRequest {
            page: 99,
            ..DocumentRequest::default()
        })
        .unwrap_err();
    assert!(matches!(past, QueryError::TokenRange { .. }), "{past}");
    let too_big = index
        .document_page(&DocumentRequest {
            page_tokens: 501,
            ..DocumentRequest::default()
        })
        .unwrap_err();
    assert!(matches!(too_big, QueryError::Limit { .. }), "{too_big}");
}

#[test]
fn the_overview_counts_every_feature_once() {
    let (_dir, index) = index();
    let overview = index.overview(&OverviewRequest::default()).unwrap();
    let info = index.info(&saeidx_query::InfoRequest::default()).unwrap();
    assert_eq!(overview.live_features, info.live_features);
    assert_eq!(overview.dead_features, info.dead_features);
    assert_eq!(overview.density.dead as usize, info.dead_features);
    assert_eq!(
        overview.density.counts.iter().sum::<u64>() as usize,
        info.live_features
    );
    assert_eq!(
        overview.density.log10_edges.len(),
        overview.density.counts.len() + 1
    );
    let counts: Vec<u64> = overview.most_frequent.iter().map(|f| f.count).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    let mut all: Vec<u64> = (0..index.d_sae() as u32)
        .map(|f| index.feature_stats(f, Exclusions::default()).unwrap().count)
        .filter(|c| *c > 0)
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(counts, all[..counts.len()]);
    assert!(overview.least_frequent.iter().all(|f| f.count > 0));
    assert_eq!(overview.least_frequent[0].count, *all.last().unwrap());
    assert_eq!(overview.documents.len(), index.documents() as usize);
    assert_eq!(overview.documents[3].doc, 3);
    assert!(!overview.logit_effects);
    assert!(overview.metadata_columns.is_empty());
    assert!(overview.documents.iter().all(|d| d.metadata.is_empty()));
    let later = index
        .overview(&OverviewRequest {
            documents: 2,
            documents_from: 10,
            ..OverviewRequest::default()
        })
        .unwrap();
    assert_eq!(
        later.documents.iter().map(|d| d.doc).collect::<Vec<_>>(),
        [10, 11]
    );
}

#[test]
fn the_overview_lists_documents_with_their_metadata_as_documents_does() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_index_with_metadata(dir.path(), &spec()).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    let overview = index
        .overview(&OverviewRequest {
            documents: 4,
            documents_from: 7,
            ..OverviewRequest::default()
        })
        .unwrap();
    let listed = list_documents(
        dir.path(),
        &DocumentsRequest {
            limit: 1000,
            ..DocumentsRequest::default()
        },
    )
    .unwrap();
    assert!(!overview.metadata_columns.is_empty());
    assert_eq!(overview.metadata_columns, listed.columns);
    assert_eq!(
        overview.documents.iter().map(|d| d.doc).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    for summary in &overview.documents {
        let entry = &listed.documents[summary.doc as usize];
        assert_eq!(entry.doc, summary.doc);
        assert_eq!(summary.metadata, entry.metadata);
        assert_eq!(summary.metadata.len(), overview.metadata_columns.len());
    }
}
