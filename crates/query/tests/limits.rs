//! Sizes past the limits of `saeidx_query::limits` are refused with an error naming
//! the limit, before anything is allocated (a request for 4294967295 answers used to
//! abort the process trying to allocate 51 GB); sizes at the limit are answered.

use saeidx_query::{Aggregate, Exclusions, QueryError, QueryIndex, Rank, build, limits::Limit};
use saeidx_query::{DocRef, FeatureRequest, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

fn refused<T: std::fmt::Debug>(result: Result<T, QueryError>, limit: Limit) {
    match result {
        Err(QueryError::Limit { max, .. }) => assert_eq!(max, limit.max()),
        other => panic!("expected the {limit:?} limit, got {other:?}"),
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn huge_sizes_are_refused_and_sizes_at_the_limit_answered() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 20,
        tokens_per_document: (5, 30),
        documents_per_part: 10,
        feature_weights: vec![1.0; 16],
        k: 4,
        value_step: 0.25,
        seed: 3,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    let (ex, huge) = (Exclusions::default(), u32::MAX as usize);
    refused(
        index
            .top_texts(&TopTextsRequest {
                feature: 1,
                k: huge,
                rank: Rank::Token,
                context: 8,
                exclusions: ex,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
        Limit::K,
    );
    refused(
        index
            .top_texts(&TopTextsRequest {
                feature: 1,
                k: huge,
                rank: Rank::DocumentSum,
                context: 8,
                exclusions: ex,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
        Limit::K,
    );
    refused(
        index
            .top_texts(&TopTextsRequest {
                feature: 1,
                k: 10,
                rank: Rank::Token,
                context: u32::MAX,
                exclusions: ex,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts),
        Limit::Context,
    );
    refused(
        index.feature(&FeatureRequest {
            feature: 1,
            examples: huge,
            bands: 5,
            per_band: huge,
            neighbours: 10,
            context: 8,
            exclusions: ex,
            restrict: Default::default(),
        }),
        Limit::Examples,
    );
    refused(
        index.feature(&FeatureRequest {
            feature: 1,
            examples: 5,
            bands: huge,
            per_band: 5,
            neighbours: 10,
            context: 8,
            exclusions: ex,
            restrict: Default::default(),
        }),
        Limit::Bands,
    );
    refused(
        index.feature(&FeatureRequest {
            feature: 1,
            examples: 5,
            bands: 5,
            per_band: 5,
            neighbours: huge,
            context: 8,
            exclusions: ex,
            restrict: Default::default(),
        }),
        Limit::Neighbours,
    );
    refused(
        index.feature(&FeatureRequest {
            feature: 1,
            examples: 5,
            bands: 5,
            per_band: 5,
            neighbours: 10,
            context: u32::MAX,
            exclusions: ex,
            restrict: Default::default(),
        }),
        Limit::Context,
    );
    refused(index.neighbours(1, huge, ex), Limit::Neighbours);
    refused(index.sample_features(huge, 0), Limit::Sample);
    refused(index.window(0, 1, u32::MAX, 1), Limit::Context);
    refused(
        index
            .top_features(
                &DocRef::Number(0),
                &TopFeaturesRequest {
                    k: huge,
                    aggregate: Aggregate::Max,
                    tokens: None,
                    exclusions: ex,
                },
            )
            .map(|answer| answer.features),
        Limit::K,
    );
    let k = Limit::K.max() as usize;
    assert!(
        index
            .top_texts(&TopTextsRequest {
                feature: 1,
                k,
                rank: Rank::Token,
                context: 8,
                exclusions: ex,
                restrict: Default::default(),
                token: Default::default(),
            })
            .map(|answer| answer.texts)
            .unwrap()
            .len()
            < k
    );
    let examples = Limit::Examples.max() as usize;
    let bands = Limit::Bands.max() as usize;
    let context = Limit::Context.max() as u32;
    let report = index
        .feature(&FeatureRequest {
            feature: 1,
            examples,
            bands,
            per_band: examples,
            neighbours: 1000,
            context,
            exclusions: ex,
            restrict: Default::default(),
        })
        .unwrap();
    assert!(!report.top_texts.is_empty() && !report.bands.is_empty());
    // A reversed token range says so.
    let reversed = std::ops::Range { start: 4, end: 2 };
    let error = index
        .top_features(
            &DocRef::Number(0),
            &TopFeaturesRequest {
                k: 5,
                aggregate: Aggregate::Max,
                tokens: Some(reversed),
                exclusions: ex,
            },
        )
        .map(|answer| answer.features)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("4..2") && error.contains("reversed"),
        "{error}"
    );
}
