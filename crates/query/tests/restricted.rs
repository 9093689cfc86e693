//! Restricted answers (a metadata filter and/or a list of documents) against brute
//! force over the Parquet rows: on random synthetic indexes with random metadata, random
//! filters and random document lists (empty ones included), every restricted answer —
//! top texts by token, document max and document sum, feature statistics, neighbours,
//! the features of a set of documents, sampling, top texts on one token (by text, id or
//! regex) and the features of a token or token sequence — equals the unrestricted computation
//! over the selected documents' rows alone. Which documents a filter selects is checked
//! against DuckDB in `tests/filters.rs`; here it is read back with the same filter.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    path::Path,
};

use arrow_array::{Array, BooleanArray, Float32Array, LargeStringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_format::{manifest::Manifest, metadata::read_documents, tables::Table};
use saeidx_query::{
    Aggregate, ContrastRequest, DocRef, Exclusions, Filter, QueryIndex, Rank, Restriction,
    SampleRequest, TokenFeaturesRequest, TokenPattern, TopFeaturesRequest, TopTextsRequest, build,
    contrast::log_odds, filter_columns,
};
use saeidx_testkit::{
    filters::random_predicate,
    synthetic::{SyntheticSpec, write_synthetic_index_with_metadata},
};

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
}

/// (doc, position, value) of `feature` on counted tokens of `docs`, strongest first,
/// then in token order.
fn postings_in(
    rows: &Rows,
    feature: u32,
    exclusions: Exclusions,
    docs: &HashSet<u32>,
) -> Vec<(u32, u32, f32)> {
    let mut hits: Vec<(u32, u32, f32)> = rows
        .activations
        .iter()
        .filter(|a| a.2 == feature && docs.contains(&a.0) && rows.counted(a.0, a.1, exclusions))
        .map(|a| (a.0, a.1, a.3))
        .collect();
    hits.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    hits
}

/// Random restrictions over `documents` documents: filters, document lists (by number
/// and id), both, and ones that select nothing.
fn restrictions(rng: &mut StdRng, documents: u32) -> Vec<Restriction> {
    let mut out = vec![Restriction::filter("doc < 0"), Restriction::documents([])];
    for _ in 0..4 {
        out.push(Restriction::filter(random_predicate(rng, 2).render()));
    }
    for _ in 0..2 {
        let listed: Vec<u32> = (0..documents)
            .filter(|_| rng.random_range(0..3) == 0)
            .collect();
        out.push(Restriction::documents(listed.clone()));
        out.push(Restriction {
            filter: Some(random_predicate(rng, 1).render()),
            docs: Some(listed.into_iter().map(DocRef::Number).collect()),
        });
    }
    out
}

/// The documents `restriction` selects, from the filter over the Parquet documents
/// table and the listed numbers.
fn selected(dir: &Path, manifest: &Manifest, restriction: &Restriction) -> HashSet<u32> {
    let table = read_documents(dir, manifest, false).unwrap();
    let mut docs: HashSet<u32> = (0..table.num_rows() as u32).collect();
    if let Some(text) = &restriction.filter {
        let filter = Filter::parse(text, &filter_columns(&manifest.job.corpus.metadata)).unwrap();
        docs = filter
            .matching_documents(&table)
            .unwrap()
            .into_iter()
            .collect();
    }
    if let Some(listed) = &restriction.docs {
        let listed: HashSet<u32> = listed
            .iter()
            .map(|d| match d {
                DocRef::Number(n) => *n,
                DocRef::Id(_) => unreachable!("the tests list numbers"),
            })
            .collect();
        docs.retain(|d| listed.contains(d));
    }
    docs
}

fn top_texts(
    index: &QueryIndex,
    feature: u32,
    k: usize,
    rank: Rank,
    exclusions: Exclusions,
    scope: &(Restriction, Option<TokenPattern>),
) -> Vec<(u32, u32, f32, f32)> {
    index
        .top_texts(&TopTextsRequest {
            feature,
            k,
            rank,
            context: 1,
            exclusions,
            restrict: scope.0.clone(),
            token: scope.1.clone(),
        })
        .unwrap()
        .texts
        .iter()
        .map(|h| (h.doc, h.position, h.activation, h.score))
        .collect()
}

fn check_top_texts(
    index: &QueryIndex,
    postings: &[(u32, u32, f32)],
    feature: u32,
    exclusions: Exclusions,
    restrict: &(Restriction, Option<TokenPattern>),
) {
    let k = 9;
    let expected: Vec<_> = postings
        .iter()
        .take(k)
        .map(|p| (p.0, p.1, p.2, p.2))
        .collect();
    let got = top_texts(index, feature, k, Rank::Token, exclusions, restrict);
    assert_eq!(got, expected, "top texts of {feature} in {restrict:?}");
    let mut seen = HashSet::new();
    let expected: Vec<_> = postings
        .iter()
        .filter(|p| seen.insert(p.0))
        .take(k)
        .map(|p| (p.0, p.1, p.2, p.2))
        .collect();
    let got = top_texts(index, feature, k, Rank::DocumentMax, exclusions, restrict);
    assert_eq!(got, expected, "doc-max of {feature} in {restrict:?}");
    let mut sums: BTreeMap<u32, (f64, u32, f32)> = BTreeMap::new();
    for &(doc, position, value) in postings {
        sums.entry(doc).or_insert((0.0, position, value)).0 += f64::from(value);
    }
    let mut by_sum: Vec<_> = sums.into_iter().collect();
    by_sum.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let expected: Vec<_> = by_sum
        .iter()
        .take(k)
        .map(|(doc, (sum, position, value))| (*doc, *position, *value, *sum as f32))
        .collect();
    let got = top_texts(index, feature, k, Rank::DocumentSum, exclusions, restrict);
    assert_eq!(got, expected, "doc-sum of {feature} in {restrict:?}");
}

fn check_stats_and_neighbours(
    index: &QueryIndex,
    rows: &Rows,
    feature: u32,
    exclusions: Exclusions,
    docs: &HashSet<u32>,
) {
    let within = index.doc_set_of(docs.iter().copied()).unwrap();
    let postings = postings_in(rows, feature, exclusions, docs);
    let stats = index
        .feature_stats_within(feature, exclusions, Some(&within))
        .unwrap();
    let counted = rows
        .tokens
        .keys()
        .filter(|(d, p)| docs.contains(d) && rows.counted(*d, *p, exclusions))
        .count() as u64;
    let all = postings_in(rows, feature, Exclusions::none(), docs).len() as u64;
    let documents: HashSet<u32> = postings.iter().map(|p| p.0).collect();
    let max = postings.iter().map(|p| p.2).fold(0.0f32, f32::max);
    assert_eq!(
        (
            stats.count,
            stats.documents,
            stats.max_activation,
            stats.postings
        ),
        (postings.len() as u64, documents.len() as u64, max, all),
        "stats of {feature} in {docs:?}"
    );
    let density = if counted == 0 {
        0.0
    } else {
        postings.len() as f64 / counted as f64
    };
    assert_eq!(stats.density, density);
    // Neighbours: Jaccard over the counted tokens of the set.
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
            let count = postings_in(rows, other, exclusions, docs).len() as u64;
            let jaccard = both as f64 / (own.len() as u64 + count - both) as f64;
            (other, both, count, jaccard)
        })
        .collect();
    expected.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    expected.truncate(4);
    let got: Vec<(u32, u64, u64, f64)> = index
        .neighbours_within(feature, 4, exclusions, Some(&within))
        .unwrap()
        .iter()
        .map(|n| (n.feature, n.together, n.count, n.jaccard))
        .collect();
    assert_eq!(got, expected, "neighbours of {feature} in {docs:?}");
}

/// The features of a set of documents: per feature its max (first token on ties) or
/// its sum over the set's counted tokens.
fn check_subset_features(
    index: &QueryIndex,
    rows: &Rows,
    d_sae: u32,
    restrict: &Restriction,
    docs: &HashSet<u32>,
) {
    for aggregate in [Aggregate::Max, Aggregate::Sum] {
        let exclusions = Exclusions::default();
        let mut expected: Vec<(u32, f32, f32, u32, u32, u32)> = (0..d_sae)
            .filter_map(|feature| {
                let postings = postings_in(rows, feature, exclusions, docs);
                let first = postings
                    .iter()
                    .min_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))))?;
                let score = match aggregate {
                    Aggregate::Max => first.2,
                    Aggregate::Sum => postings.iter().map(|p| f64::from(p.2)).sum::<f64>() as f32,
                };
                Some((
                    feature,
                    score,
                    first.2,
                    first.0,
                    first.1,
                    postings.len() as u32,
                ))
            })
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        expected.truncate(6);
        let request = TopFeaturesRequest {
            k: 6,
            aggregate,
            ..TopFeaturesRequest::default()
        };
        let answer = index.subset_features(restrict, &request).unwrap();
        let got: Vec<_> = answer
            .features
            .iter()
            .map(|f| {
                (
                    f.feature,
                    f.score,
                    f.activation,
                    f.doc.unwrap(),
                    f.position,
                    f.active_tokens,
                )
            })
            .collect();
        assert_eq!(got, expected, "features of {restrict:?} by {aggregate:?}");
        assert_eq!(answer.documents, docs.len() as u64);
    }
}

fn check(spec: &SyntheticSpec, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_synthetic_index_with_metadata(dir.path(), spec).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    index.verify_all().unwrap();
    // The same index as a folder built before `occurrences.bin`: token questions fall
    // back to the occurrences read from `tokens.bin`.
    let older = without_occurrences(dir.path());
    let older_index = QueryIndex::open(older.path()).unwrap();
    let rows = read_rows(dir.path());
    let d_sae = spec.feature_weights.len() as u32;
    let mut rng = StdRng::seed_from_u64(seed);
    let all_restrictions = restrictions(&mut rng, rows.texts.len() as u32);
    for pair in all_restrictions.windows(2) {
        let a_docs = selected(dir.path(), &manifest, &pair[0]);
        if pair[0].is_all() {
            continue;
        }
        let rest: HashSet<u32> = (0..rows.texts.len() as u32)
            .filter(|d| !a_docs.contains(d))
            .collect();
        check_contrast(&index, &rows, (&pair[0], &a_docs), (None, &rest));
        let b_docs = selected(dir.path(), &manifest, &pair[1]);
        check_contrast(
            &index,
            &rows,
            (&pair[0], &a_docs),
            (Some(&pair[1]), &b_docs),
        );
    }
    for restrict in all_restrictions {
        let docs = selected(dir.path(), &manifest, &restrict);
        for exclusions in [Exclusions::default(), Exclusions::none()] {
            for feature in 0..d_sae {
                let postings = postings_in(&rows, feature, exclusions, &docs);
                let scope = (restrict.clone(), None);
                check_top_texts(&index, &postings, feature, exclusions, &scope);
            }
        }
        for feature in 0..d_sae.min(6) {
            check_stats_and_neighbours(&index, &rows, feature, Exclusions::default(), &docs);
        }
        check_subset_features(&index, &rows, d_sae, &restrict, &docs);
        for index in [&index, &older_index] {
            check_tokens(index, &rows, d_sae, &mut rng, &restrict, &docs);
        }
        let sample = index
            .sample(&SampleRequest {
                n: 3,
                examples: 2,
                restrict: restrict.clone(),
                ..SampleRequest::default()
            })
            .unwrap();
        for sampled in &sample.features {
            assert!(
                sampled.stats.count > 0,
                "sampled a feature dead in {docs:?}"
            );
            assert!(sampled.top_texts.iter().all(|h| docs.contains(&h.doc)));
        }
        let live = (0..d_sae)
            .filter(|f| !postings_in(&rows, *f, Exclusions::default(), &docs).is_empty())
            .count();
        assert_eq!(sample.features.len(), live.min(3));
    }
}

/// A copy of the index in `dir` without `occurrences.bin` (nor its manifest record), as
/// folders built before it are.
fn without_occurrences(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(from) = pending.pop() {
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            let target = copy.path().join(path.strip_prefix(dir).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                pending.push(path);
            } else if !path.ends_with("occurrences.bin") {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let manifest = copy.path().join("query/manifest.json");
    let mut query: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let files = query["files"].as_array_mut().unwrap();
    assert_eq!(files.len(), 6, "the build writes occurrences.bin");
    files.retain(|file| file["name"] != "occurrences.bin");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&query).unwrap()).unwrap();
    copy
}

/// The text of token (doc, position), as the index defines it.
fn token_text(rows: &Rows, doc: u32, position: u32) -> String {
    let (start, end, _, _) = rows.tokens[&(doc, position)];
    let bytes = rows.texts[doc as usize].as_bytes();
    let start = (start as usize).min(bytes.len());
    let end = (end as usize).clamp(start, bytes.len());
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

fn pattern_matches(rows: &Rows, pattern: &TokenPattern, doc: u32, position: u32) -> bool {
    let text = token_text(rows, doc, position);
    match pattern {
        TokenPattern::Text(wanted) => *wanted == text,
        TokenPattern::Id(id) => rows.token_ids[&(doc, position)] == *id,
        TokenPattern::Regex(expression) => regex_lite_match(expression, &text),
    }
}

/// The regexes the tests use, evaluated by hand (no regex engine in the brute force).
fn regex_lite_match(expression: &str, text: &str) -> bool {
    match expression {
        "^t" => text.starts_with('t'),
        "a" => text.contains('a'),
        "^$" => text.is_empty(),
        other => unreachable!("no brute force for {other}"),
    }
}

fn patterns(rng: &mut StdRng, rows: &Rows) -> Vec<TokenPattern> {
    let keys: Vec<(u32, u32)> = rows.tokens.keys().copied().collect();
    let mut out = vec![
        TokenPattern::Text("never a token".into()),
        TokenPattern::Id(7),
        TokenPattern::Regex("^t".into()),
        TokenPattern::Regex("a".into()),
        TokenPattern::Regex("^$".into()),
        // Past every id (and past what `occurrences.bin` describes).
        TokenPattern::Id(u32::MAX),
    ];
    for _ in 0..3 {
        if let Some(&(doc, position)) = keys.get(rng.random_range(0..keys.len().max(1))) {
            out.push(TokenPattern::Text(token_text(rows, doc, position)));
            out.push(TokenPattern::Id(rows.token_ids[&(doc, position)]));
        }
    }
    out
}

/// Top texts on one token, and the features of a token or a two-token sequence.
fn check_tokens(
    index: &QueryIndex,
    rows: &Rows,
    d_sae: u32,
    rng: &mut StdRng,
    restrict: &Restriction,
    docs: &HashSet<u32>,
) {
    let exclusions = Exclusions::default();
    let patterns = patterns(rng, rows);
    for pattern in &patterns {
        for feature in 0..d_sae.min(5) {
            let postings: Vec<_> = postings_in(rows, feature, exclusions, docs)
                .into_iter()
                .filter(|p| pattern_matches(rows, pattern, p.0, p.1))
                .collect();
            let scope = (restrict.clone(), Some(pattern.clone()));
            check_top_texts(index, &postings, feature, exclusions, &scope);
        }
    }
    for sequence in [
        vec![patterns.get(6).unwrap_or(&patterns[0]).clone()],
        vec![patterns[2].clone(), patterns[3].clone()],
        vec![patterns[0].clone()],
        vec![patterns[2].clone(), patterns[5].clone()],
    ] {
        check_token_features(index, rows, &sequence, restrict, docs);
    }
}

/// Per feature: count, sum, max, (value, doc, position) of each occurrence.
type Tally = (u64, f64, f32, Vec<(f32, u32, u32)>);

fn check_token_features(
    index: &QueryIndex,
    rows: &Rows,
    sequence: &[TokenPattern],
    restrict: &Restriction,
    docs: &HashSet<u32>,
) {
    let exclusions = Exclusions::default();
    let n = sequence.len() as u32;
    let occurrences: Vec<(u32, u32)> = rows
        .tokens
        .keys()
        .filter(|(doc, position)| {
            docs.contains(doc)
                && *position + 1 >= n
                && rows.counted(*doc, *position, exclusions)
                && sequence
                    .iter()
                    .enumerate()
                    .all(|(i, p)| pattern_matches(rows, p, *doc, *position + 1 + i as u32 - n))
        })
        .copied()
        .collect();
    let at: HashSet<(u32, u32)> = occurrences.iter().copied().collect();
    // Per feature: count, sum, max, (value, doc, position) of each occurrence.
    let mut tallies: BTreeMap<u32, Tally> = BTreeMap::new();
    for a in &rows.activations {
        if at.contains(&(a.0, a.1)) {
            let t = tallies.entry(a.2).or_insert((0, 0.0, 0.0, Vec::new()));
            t.0 += 1;
            t.1 += f64::from(a.3);
            t.2 = t.2.max(a.3);
            t.3.push((a.3, a.0, a.1));
        }
    }
    let mut expected: Vec<_> = tallies.into_iter().collect();
    expected.sort_by(|a, b| {
        b.1.0
            .cmp(&a.1.0)
            .then(b.1.1.total_cmp(&a.1.1))
            .then(a.0.cmp(&b.0))
    });
    expected.truncate(5);
    let answer = index
        .token_features(&TokenFeaturesRequest {
            tokens: sequence.to_vec(),
            k: 5,
            examples: 2,
            context: 1,
            exclusions,
            restrict: restrict.clone(),
        })
        .unwrap();
    assert_eq!(
        answer.occurrences,
        occurrences.len() as u64,
        "{sequence:?} in {docs:?}"
    );
    assert_eq!(answer.features.len(), expected.len(), "{sequence:?}");
    for (got, (feature, (count, sum, max, mut hits))) in answer.features.iter().zip(expected) {
        assert_eq!(
            (got.feature, got.count, got.max_activation),
            (feature, count, max),
            "{sequence:?}"
        );
        assert!((f64::from(got.mean_activation) - sum / count as f64).abs() < 1e-4);
        assert_eq!(got.frequency, count as f64 / occurrences.len() as f64);
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let examples: Vec<_> = got
            .examples
            .iter()
            .map(|h| (h.activation, h.doc, h.position))
            .collect();
        assert_eq!(
            examples,
            hits.into_iter().take(2).collect::<Vec<_>>(),
            "examples of {feature}"
        );
    }
}

/// Per feature: counted tokens of `docs` it fires on.
fn counts_in(rows: &Rows, docs: &HashSet<u32>, exclusions: Exclusions) -> BTreeMap<u32, u64> {
    let mut counts = BTreeMap::new();
    for a in &rows.activations {
        if docs.contains(&a.0) && rows.counted(a.0, a.1, exclusions) {
            *counts.entry(a.2).or_default() += 1;
        }
    }
    counts
}

/// A contrast of A and B (or the rest) against the counts of the Parquet rows scored
/// with the same formula (`log_odds`, unit-tested on its own).
fn check_contrast(
    index: &QueryIndex,
    rows: &Rows,
    (a, a_docs): (&Restriction, &HashSet<u32>),
    (b, b_docs): (Option<&Restriction>, &HashSet<u32>),
) {
    let exclusions = Exclusions::default();
    let tokens = |docs: &HashSet<u32>| {
        rows.tokens
            .keys()
            .filter(|(d, p)| docs.contains(d) && rows.counted(*d, *p, exclusions))
            .count() as u64
    };
    let (n_a, n_b) = (tokens(a_docs), tokens(b_docs));
    let (counts_a, counts_b) = (
        counts_in(rows, a_docs, exclusions),
        counts_in(rows, b_docs, exclusions),
    );
    let request = ContrastRequest {
        a: a.clone(),
        b: b.cloned(),
        k: 4,
        examples: 2,
        context: 1,
        min_count: 2,
        ..ContrastRequest::default()
    };
    let mut scored: Vec<(u32, u64, u64, f64)> = counts_a
        .keys()
        .chain(counts_b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|f| {
            let (ya, yb) = (
                counts_a.get(f).copied().unwrap_or(0),
                counts_b.get(f).copied().unwrap_or(0),
            );
            (*f, ya, yb, log_odds(ya, n_a, yb, n_b, request.prior).1)
        })
        .filter(|s| s.1 + s.2 >= request.min_count)
        .collect();
    let answer = index.contrast(&request).unwrap();
    assert_eq!((answer.tokens_a, answer.tokens_b), (n_a, n_b));
    assert_eq!(answer.documents_b, b_docs.len() as u64);
    for (over_a, got, docs) in [
        (true, &answer.a_over_b, a_docs),
        (false, &answer.b_over_a, b_docs),
    ] {
        scored.sort_by(|x, y| {
            let (x_z, y_z) = if over_a { (x.3, y.3) } else { (-x.3, -y.3) };
            y_z.total_cmp(&x_z).then(x.0.cmp(&y.0))
        });
        let expected: Vec<_> = scored
            .iter()
            .filter(|s| if over_a { s.3 > 0.0 } else { s.3 < 0.0 })
            .take(4)
            .map(|s| (s.0, s.1, s.2))
            .collect();
        let features: Vec<_> = got
            .iter()
            .map(|f| (f.feature, f.count_a, f.count_b))
            .collect();
        assert_eq!(features, expected, "contrast of {a:?} and {b:?}");
        for feature in got {
            let postings = postings_in(rows, feature.feature, exclusions, docs);
            let examples: Vec<_> = feature
                .examples
                .iter()
                .map(|h| (h.doc, h.position, h.activation))
                .collect();
            assert_eq!(examples, postings.into_iter().take(2).collect::<Vec<_>>());
        }
    }
}

fn spec_strategy() -> impl Strategy<Value = SyntheticSpec> {
    (
        1usize..30,
        0usize..6,
        1usize..60,
        1usize..9,
        prop::collection::vec(prop_oneof![Just(0.0), 0.1f64..5.0], 3..12),
        1usize..5,
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn restricted_answers_equal_brute_force_over_the_parquet_rows(
        spec in spec_strategy(),
        seed in any::<u64>(),
    ) {
        check(&spec, seed);
    }
}

#[test]
fn a_bad_filter_or_an_unknown_document_is_an_error_not_an_empty_answer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 5,
        tokens_per_document: (3, 9),
        documents_per_part: 2,
        feature_weights: vec![1.0; 4],
        k: 2,
        value_step: 0.25,
        seed: 1,
    };
    write_synthetic_index_with_metadata(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let index = QueryIndex::open(dir.path()).unwrap();
    let request = |restrict: Restriction| TopTextsRequest {
        restrict,
        ..TopTextsRequest::default()
    };
    let error = index
        .top_texts(&request(Restriction::filter("year >> 3")))
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid filter at character"), "{error}");
    let error = index
        .top_texts(&request(Restriction::filter("colour = 'red'")))
        .unwrap_err()
        .to_string();
    assert!(error.contains("year (integer)"), "{error}");
    let error = index
        .top_texts(&request(Restriction::documents([5])))
        .unwrap_err()
        .to_string();
    assert!(error.contains('5'), "{error}");
    let error = index
        .top_texts(&TopTextsRequest {
            token: Some(TokenPattern::Regex("(".into())),
            ..TopTextsRequest::default()
        })
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid token pattern"), "{error}");
}
