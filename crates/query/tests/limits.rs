//! Sizes past the limits of `saeidx_query::limits` are refused with an error naming
//! the limit, before anything is allocated (a request for 4294967295 answers used to
//! abort the process trying to allocate 51 GB); sizes at the limit are answered.

use saeidx_format::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_query::{Aggregate, Exclusions, QueryError, QueryIndex, Rank, build, limits::Limit};

fn refused<T: std::fmt::Debug>(result: Result<T, QueryError>, limit: Limit) {
    match result {
        Err(QueryError::Limit { max, .. }) => assert_eq!(max, limit.max()),
        other => panic!("expected the {limit:?} limit, got {other:?}"),
    }
}

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
    refused(index.top_texts(1, huge, Rank::Token, 8, ex), Limit::K);
    refused(index.top_texts(1, huge, Rank::DocumentSum, 8, ex), Limit::K);
    refused(
        index.top_texts(1, 10, Rank::Token, u32::MAX, ex),
        Limit::Context,
    );
    refused(index.feature(1, huge, 5, 10, 8, ex), Limit::Examples);
    refused(index.feature(1, 5, huge, 10, 8, ex), Limit::Bands);
    refused(index.feature(1, 5, 5, huge, 8, ex), Limit::Neighbours);
    refused(index.feature(1, 5, 5, 10, u32::MAX, ex), Limit::Context);
    refused(index.neighbours(1, huge, ex), Limit::Neighbours);
    refused(index.sample(huge, 0), Limit::Sample);
    refused(index.window(0, 1, u32::MAX, 1), Limit::Context);
    refused(
        index.top_features(0, None, Aggregate::Max, huge, ex),
        Limit::K,
    );
    let k = Limit::K.max() as usize;
    assert!(index.top_texts(1, k, Rank::Token, 8, ex).unwrap().len() < k);
    let examples = Limit::Examples.max() as usize;
    let bands = Limit::Bands.max() as usize;
    let context = Limit::Context.max() as u32;
    let report = index
        .feature(1, examples, bands, 1000, context, ex)
        .unwrap();
    assert!(!report.top.is_empty() && !report.quantiles.is_empty());
    // A reversed token range says so.
    let reversed = std::ops::Range { start: 4, end: 2 };
    let error = index
        .top_features(0, Some(reversed), Aggregate::Max, 5, ex)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("4..2") && error.contains("reversed"),
        "{error}"
    );
}
