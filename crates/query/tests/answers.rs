//! Every answer of the query index equals a brute-force computation over the index's
//! Parquet rows, on random synthetic indexes (ties, dead features, empty documents,
//! multi-byte text, special and sink tokens included).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    path::Path,
};

use arrow_array::{Array, BooleanArray, Float32Array, LargeStringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use saeidx_format::tables::Table;
use saeidx_query::{
    Aggregate, Exclusions, QueryIndex, Rank, SilentRequest, build, layout::HISTOGRAM_BINS,
};
use saeidx_query::{DocRef, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

/// The index's rows, read straight from Parquet.
struct Rows {
    texts: Vec<String>,
    /// (doc, position) → (start, end, special, sink).
    tokens: BTreeMap<(u32, u32), (u32, u32, bool, bool)>,
    /// (doc, position) → token id.
    token_ids: BTreeMap<(u32, u32), u32>,
    /// (doc, position, feature, value), in file order.
    activations: Vec<(u32, u32, u32, f32)>,
}

fn read_rows(dir: &Path) -> Rows {
    let batches = |table: Table| {
        let mut out = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(dir.join(table.dir()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .build()
                .unwrap();
            out.extend(reader.map(Result::unwrap));
        }
        out
    };
    let col = |batch: &arrow_array::RecordBatch, name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap()
            .clone()
    };
    let mut rows = Rows {
        texts: Vec::new(),
        tokens: BTreeMap::new(),
        token_ids: BTreeMap::new(),
        activations: Vec::new(),
    };
    for batch in batches(Table::Documents) {
        let text = batch
            .column_by_name("text")
            .unwrap()
            .as_any()
            .downcast_ref::<LargeStringArray>()
            .unwrap()
            .clone();
        for i in 0..text.len() {
            rows.texts.push(text.value(i).to_string());
        }
    }
    for batch in batches(Table::Tokens) {
        let (doc, position, start, end, token) = (
            col(&batch, "doc"),
            col(&batch, "position"),
            col(&batch, "start"),
            col(&batch, "end"),
            col(&batch, "token"),
        );
        let flag = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .clone()
        };
        let (special, sink) = (flag("special"), flag("sink"));
        for i in 0..doc.len() {
            rows.token_ids
                .insert((doc.value(i), position.value(i)), token.value(i));
            rows.tokens.insert(
                (doc.value(i), position.value(i)),
                (
                    start.value(i),
                    end.value(i),
                    special.value(i),
                    sink.value(i),
                ),
            );
        }
    }
    for batch in batches(Table::Activations) {
        let (doc, position, feature) = (
            col(&batch, "doc"),
            col(&batch, "position"),
            col(&batch, "feature"),
        );
        let value = batch
            .column_by_name("value")
            .unwrap()
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap()
            .clone();
        for i in 0..doc.len() {
            rows.activations.push((
                doc.value(i),
                position.value(i),
                feature.value(i),
                value.value(i),
            ));
        }
    }
    rows
}

impl Rows {
    fn counted(&self, doc: u32, position: u32, exclusions: Exclusions) -> bool {
        let (_, _, special, sink) = self.tokens[&(doc, position)];
        !((exclusions.special && special) || (exclusions.sinks && sink))
    }

    /// (doc, position, value) of `feature` on counted tokens, strongest first, then in
    /// token order.
    fn postings(&self, feature: u32, exclusions: Exclusions) -> Vec<(u32, u32, f32)> {
        let mut hits: Vec<(u32, u32, f32)> = self
            .activations
            .iter()
            .filter(|a| a.2 == feature && self.counted(a.0, a.1, exclusions))
            .map(|a| (a.0, a.1, a.3))
            .collect();
        hits.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        hits
    }

    /// Every (doc, position) centring a window of `context` tokens each side in which
    /// `feature` is active on no counted token, the centre itself counted.
    fn silent_centres(
        &self,
        feature: u32,
        context: u32,
        exclusions: Exclusions,
    ) -> HashSet<(u32, u32)> {
        let active: HashSet<(u32, u32)> = self
            .postings(feature, exclusions)
            .iter()
            .map(|p| (p.0, p.1))
            .collect();
        self.tokens
            .keys()
            .filter(|(doc, position)| {
                self.counted(*doc, *position, exclusions)
                    && (position.saturating_sub(context)..=position.saturating_add(context))
                        .all(|p| !active.contains(&(*doc, p)))
            })
            .copied()
            .collect()
    }
}

/// `silent_contexts` against every silent window found by brute force: each answer
/// silent and distinct, as many as asked or as exist, round-robin over token ids,
/// the same for the same seed.
fn check_silent(index: &QueryIndex, rows: &Rows, feature: u32, exclusions: Exclusions) {
    let context = 1;
    let silent = rows.silent_centres(feature, context, exclusions);
    let request = SilentRequest {
        feature,
        n: 6,
        context,
        exclusions,
        ..SilentRequest::default()
    };
    let anywhere = index.silent_contexts(&request).unwrap().contexts;
    let got: Vec<(u32, u32)> = anywhere.iter().map(|h| (h.doc, h.position)).collect();
    assert_eq!(
        got.len(),
        silent.len().min(6),
        "silent contexts of {feature}"
    );
    assert!(got.iter().all(|c| silent.contains(c)), "{got:?}");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    assert!(anywhere.iter().all(|h| h.activation == 0.0));
    assert_eq!(index.silent_contexts(&request).unwrap().contexts, anywhere);
    // The same words where the feature does not fire, round-robin over two ids.
    let ids: Vec<u32> = rows.token_ids.values().copied().take(2).collect();
    let request = SilentRequest {
        tokens: ids.clone(),
        ..request
    };
    let got = index.silent_contexts(&request).unwrap().contexts;
    let candidates = |id: u32| silent.iter().filter(|c| rows.token_ids[c] == id).count();
    let distinct: Vec<u32> = ids
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let total: usize = distinct.iter().map(|id| candidates(*id)).sum();
    assert_eq!(got.len(), total.min(6), "same-token contexts of {feature}");
    for hit in &got {
        assert!(silent.contains(&(hit.doc, hit.position)));
        assert!(ids.contains(&hit.token));
        assert_eq!(rows.token_ids[&(hit.doc, hit.position)], hit.token);
    }
    let taken = |id: u32| got.iter().filter(|h| h.token == id).count();
    for &a in &distinct {
        for &b in &distinct {
            if taken(a) < candidates(a) {
                assert!(taken(b) <= taken(a) + 1, "round-robin: {a} {b} {got:?}");
            }
        }
    }
}

fn spec_strategy() -> impl Strategy<Value = SyntheticSpec> {
    (
        1usize..7,
        0usize..6,
        1usize..40,
        1usize..4,
        prop::collection::vec(prop_oneof![Just(0.0), 0.1f64..5.0], 4..40),
        1usize..6,
        prop_oneof![Just(0.25f32), Just(0.037f32)],
        any::<u64>(),
    )
        .prop_map(
            |(documents, min_tokens, extra, per_part, weights, k, step, seed)| SyntheticSpec {
                documents,
                tokens_per_document: (min_tokens, min_tokens + extra),
                documents_per_part: per_part,
                feature_weights: weights,
                k,
                value_step: step,
                seed,
            },
        )
}

fn all_exclusions() -> [Exclusions; 2] {
    [
        Exclusions::default(),
        Exclusions {
            special: false,
            sinks: false,
        },
    ]
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn check(spec: &SyntheticSpec) {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_index(dir.path(), spec).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    let rows = read_rows(dir.path());
    let d_sae = spec.feature_weights.len() as u32;
    let docs = rows.texts.len() as u32;
    assert!(index.verify_all().unwrap() > 0);

    for exclusions in all_exclusions() {
        for feature in 0..d_sae {
            let postings = rows.postings(feature, exclusions);
            // Per token.
            let hits = index
                .top_texts(&TopTextsRequest {
                    feature,
                    k: 7,
                    rank: Rank::Token,
                    context: 2,
                    exclusions,
                    restrict: Default::default(),
                    token: Default::default(),
                })
                .map(|answer| answer.texts)
                .unwrap();
            let expected: Vec<(u32, u32, f32)> = postings.iter().take(7).copied().collect();
            let got: Vec<(u32, u32, f32)> = hits
                .iter()
                .map(|h| (h.doc, h.position, h.activation))
                .collect();
            assert_eq!(got, expected, "top texts of {feature} ({exclusions:?})");
            for hit in &hits {
                let (start, end, _, _) = rows.tokens[&(hit.doc, hit.position)];
                let text = &rows.texts[hit.doc as usize];
                assert_eq!(
                    &hit.snippet.text[hit.snippet.hit_start..hit.snippet.hit_end],
                    &text[start as usize..end as usize]
                );
                let span = index.token_span(hit.doc, hit.position).unwrap();
                assert_eq!(&text[span], &text[start as usize..end as usize]);
                let low = hit.position.saturating_sub(2);
                let (low_start, _, _, _) = rows.tokens[&(hit.doc, low)];
                assert!(text[..].contains(&hit.snippet.text));
                assert_eq!(hit.snippet.more_before, low_start > 0);
            }
            // Per document, by max: each document's first posting.
            let mut seen = HashSet::new();
            let expected: Vec<(u32, u32, f32)> = postings
                .iter()
                .filter(|p| seen.insert(p.0))
                .take(5)
                .copied()
                .collect();
            let got: Vec<(u32, u32, f32)> = index
                .top_texts(&TopTextsRequest {
                    feature,
                    k: 5,
                    rank: Rank::DocumentMax,
                    context: 2,
                    exclusions,
                    restrict: Default::default(),
                    token: Default::default(),
                })
                .map(|answer| answer.texts)
                .unwrap()
                .iter()
                .map(|h| (h.doc, h.position, h.activation))
                .collect();
            assert_eq!(got, expected, "doc-max of {feature}");
            // Per document, by sum.
            let mut sums: BTreeMap<u32, (f64, u32, f32)> = BTreeMap::new();
            for &(doc, position, value) in &postings {
                let entry = sums.entry(doc).or_insert((0.0, position, value));
                entry.0 += f64::from(value);
            }
            let mut by_sum: Vec<(u32, (f64, u32, f32))> = sums.into_iter().collect();
            by_sum.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
            let expected: Vec<(u32, u32, f32)> = by_sum
                .iter()
                .take(5)
                .map(|(doc, (sum, position, _))| (*doc, *position, *sum as f32))
                .collect();
            let got: Vec<(u32, u32, f32)> = index
                .top_texts(&TopTextsRequest {
                    feature,
                    k: 5,
                    rank: Rank::DocumentSum,
                    context: 2,
                    exclusions,
                    restrict: Default::default(),
                    token: Default::default(),
                })
                .map(|answer| answer.texts)
                .unwrap()
                .iter()
                .map(|h| (h.doc, h.position, h.score))
                .collect();
            assert_eq!(got, expected, "doc-sum of {feature}");
            // Statistics.
            let stats = index.feature_stats(feature, exclusions).unwrap();
            let max = postings.iter().map(|p| p.2).fold(0.0f32, f32::max);
            let sum: f64 = postings.iter().map(|p| f64::from(p.2)).sum();
            // 20 equal bins over (0, P], P the smallest power of two at least max (f64
            // holds 20 · value / P exactly).
            let top = if max > 0.0 {
                2f64.powi(f64::from(max).log2().ceil() as i32)
            } else {
                1.0
            };
            assert_eq!(stats.histogram_max, top);
            let mut histogram = vec![0u32; HISTOGRAM_BINS];
            for p in &postings {
                let bin = (f64::from(p.2) / top * HISTOGRAM_BINS as f64).ceil() as usize;
                histogram[bin.clamp(1, HISTOGRAM_BINS) - 1] += 1;
            }
            let documents: HashSet<u32> = postings.iter().map(|p| p.0).collect();
            assert_eq!(stats.count, postings.len() as u64);
            assert_eq!(stats.documents, documents.len() as u64);
            assert_eq!(stats.max_activation, max);
            assert_eq!(stats.histogram, histogram);
            if !postings.is_empty() {
                assert!(
                    (f64::from(stats.mean_activation) - sum / postings.len() as f64).abs() < 1e-4
                );
            }
            // Neighbours: Jaccard over counted tokens.
            let own: HashSet<(u32, u32)> = postings.iter().map(|p| (p.0, p.1)).collect();
            let mut together: HashMap<u32, u64> = HashMap::new();
            for a in &rows.activations {
                if a.2 != feature && own.contains(&(a.0, a.1)) {
                    *together.entry(a.2).or_default() += 1;
                }
            }
            let mut expected: Vec<(u32, u64, u64, f64)> = together
                .into_iter()
                .map(|(other, both)| {
                    let count = rows.postings(other, exclusions).len() as u64;
                    (
                        other,
                        both,
                        count,
                        both as f64 / (own.len() as u64 + count - both) as f64,
                    )
                })
                .collect();
            expected.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
            expected.truncate(4);
            let got: Vec<(u32, u64, u64, f64)> = index
                .neighbours(feature, 4, exclusions)
                .unwrap()
                .iter()
                .map(|n| (n.feature, n.together, n.count, n.jaccard))
                .collect();
            assert_eq!(got, expected, "neighbours of {feature}");
            check_silent(&index, &rows, feature, exclusions);
        }
        // Top features of each document, whole and in a range.
        for doc in 0..docs {
            let positions: Vec<u32> = rows
                .tokens
                .keys()
                .filter(|(d, _)| *d == doc)
                .map(|(_, p)| *p)
                .collect();
            let ranges = [None, Some(1..(positions.len() as u32 / 2).max(1))];
            for range in ranges {
                let range = range.filter(|r| r.end as usize <= positions.len());
                for aggregate in [Aggregate::Max, Aggregate::Sum] {
                    let mut scores: BTreeMap<u32, (f32, f32, u32, u32)> = BTreeMap::new();
                    for &(d, position, feature, value) in &rows.activations {
                        let in_range = range.as_ref().is_none_or(|r| r.contains(&position));
                        if d != doc || !in_range || !rows.counted(d, position, exclusions) {
                            continue;
                        }
                        let entry = scores.entry(feature).or_insert((0.0, 0.0, position, 0));
                        entry.0 = match aggregate {
                            Aggregate::Max => entry.0.max(value),
                            Aggregate::Sum => entry.0 + value,
                        };
                        if value > entry.1 {
                            entry.1 = value;
                            entry.2 = position;
                        }
                        entry.3 += 1;
                    }
                    let mut expected: Vec<(u32, f32, f32, u32, u32)> = scores
                        .into_iter()
                        .map(|(f, (score, max, position, tokens))| {
                            (f, score, max, position, tokens)
                        })
                        .collect();
                    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    expected.truncate(6);
                    let got: Vec<(u32, f32, f32, u32, u32)> = index
                        .top_features(
                            &DocRef::Number(doc),
                            &TopFeaturesRequest {
                                k: 6,
                                aggregate,
                                tokens: range.clone(),
                                exclusions,
                            },
                        )
                        .map(|answer| answer.features)
                        .unwrap()
                        .iter()
                        .map(|s| {
                            (
                                s.feature,
                                s.score,
                                s.activation,
                                s.position,
                                s.active_tokens,
                            )
                        })
                        .collect();
                    assert_eq!(
                        got, expected,
                        "top features of doc {doc} {range:?} {aggregate:?}"
                    );
                }
            }
        }
    }
    // Live and dead features, sampling.
    let live: Vec<u32> = (0..d_sae)
        .filter(|f| !rows.postings(*f, Exclusions::default()).is_empty())
        .collect();
    assert_eq!(index.live_features().unwrap(), live);
    let dead: Vec<u32> = (0..d_sae).filter(|f| !live.contains(f)).collect();
    assert_eq!(index.dead_features().unwrap(), dead);
    let sample = index.sample_features(3, 11).unwrap();
    assert_eq!(sample.len(), live.len().min(3));
    assert!(sample.iter().all(|f| live.contains(f)));
    assert!(sample.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(index.sample_features(3, 11).unwrap(), sample);
    // Clear errors.
    let error = index
        .top_texts(&TopTextsRequest {
            feature: d_sae,
            k: 1,
            rank: Rank::Token,
            context: 0,
            exclusions: Exclusions::default(),
            restrict: Default::default(),
            token: Default::default(),
        })
        .map(|answer| answer.texts)
        .unwrap_err();
    assert!(
        error.to_string().contains(&format!("has {d_sae} features")),
        "{error}"
    );
    let error = index
        .top_features(
            &DocRef::Number(docs),
            &TopFeaturesRequest {
                k: 1,
                aggregate: Aggregate::Max,
                tokens: None,
                exclusions: Exclusions::default(),
            },
        )
        .map(|answer| answer.features)
        .unwrap_err();
    assert!(
        error.to_string().contains("is not in this index"),
        "{error}"
    );
    let tokens = rows.tokens.keys().filter(|(d, _)| *d == 0).count() as u32;
    let error = index.token_span(0, tokens).unwrap_err();
    assert!(
        error.to_string().contains("are outside document 0"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn answers_equal_brute_force_over_the_parquet_rows(spec in spec_strategy()) {
        check(&spec);
    }
}

#[test]
fn a_folder_without_query_files_says_how_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 2,
        tokens_per_document: (3, 5),
        documents_per_part: 1,
        feature_weights: vec![1.0; 8],
        k: 2,
        value_step: 0.5,
        seed: 1,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("saeidx query build"), "{error}");
}

#[test]
fn label_edits_start_from_the_registry_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 2,
        tokens_per_document: (3, 5),
        documents_per_part: 1,
        feature_weights: vec![1.0; 8],
        k: 2,
        value_step: 0.5,
        seed: 1,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let mut index = QueryIndex::open(dir.path()).unwrap();
    let mut other = QueryIndex::open(dir.path()).unwrap();
    assert!(!index.registry_changed());
    let label = |name: &str| saeidx_query::FeatureLabel {
        name: Some(name.into()),
        ..saeidx_query::FeatureLabel::default()
    };
    // Another writer (a labelling run, another process) saves a label.
    other.set_label(1, label("from elsewhere")).unwrap();
    assert!(index.registry_changed());
    assert!(index.registry().get(1).is_none(), "read only when asked");
    // An edit here keeps it, and leaves the registry read.
    index.set_label(2, label("here")).unwrap();
    assert!(!index.registry_changed());
    assert_eq!(
        index.registry().get(1).unwrap().name.as_deref(),
        Some("from elsewhere")
    );
    assert!(other.registry_changed());
    other.reload_registry().unwrap();
    assert_eq!(other.registry().len(), 2);
    std::fs::remove_file(dir.path().join("labels.json")).unwrap();
    assert!(other.registry_changed());
}
