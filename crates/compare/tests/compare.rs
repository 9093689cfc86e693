//! `compare` on constructed SAEs whose answer is known: B is A with its features
//! permuted and decoder rows perturbed (the matching recovers the permutation), B splits
//! one feature of A in two (the split is reported), and two runs of one SAE over a
//! grown corpus (the changes equal brute force over both indexes' Parquet); a Gemma
//! Scope SAE (`params.npz`) is matched with a SAELens one by its decoder.

use std::{collections::BTreeMap, fs::File, path::Path};

use arrow_array::{Array, BooleanArray, Float32Array, RecordBatch, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use saeidx_compare::{
    CompareRequest, Comparison, Decoder, MatchBy, SaeComparison, SaeFolders, compare,
    table::write_parquet,
};
use saeidx_hub::HubSettings;
use saeidx_query::{AnyIndex, build};
use saeidx_testkit::{
    sae::{NpyLayout, random_decoder, record_sae, write_gemma_scope_npz, write_saelens_sae},
    synthetic::{Recode, SyntheticSpec, write_synthetic_index_recoded},
};

const D_IN: usize = 16;

fn spec(d_sae: usize, documents: usize, seed: u64) -> SyntheticSpec {
    SyntheticSpec {
        documents,
        tokens_per_document: (5, 30),
        documents_per_part: 10,
        feature_weights: vec![1.0; d_sae],
        k: 4,
        value_step: 0.25,
        seed,
    }
}

/// Writes an index at `dir/name` with codes passed through `recode` and an SAE with
/// decoder `rows` (unless `dir/name-sae` holds one already), and builds its query files.
fn index(
    dir: &Path,
    name: &str,
    spec: &SyntheticSpec,
    recode: &Recode<'_>,
    rows: &[f32],
) -> AnyIndex {
    let index = dir.join(name);
    let sae = dir.join(format!("{name}-sae"));
    write_synthetic_index_recoded(&index, spec, recode).unwrap();
    if !sae.exists() {
        write_saelens_sae(&sae, rows, rows.len() / D_IN, D_IN).unwrap();
    }
    let decoder = Decoder::read_folder(&sae).unwrap();
    record_sae(&index, &sae, decoder.sha256(), D_IN).unwrap();
    build(&index).unwrap();
    AnyIndex::open(&index).unwrap()
}

/// `rows` with every value moved by `scale` × a deterministic pseudo-random amount.
fn perturbed(rows: &[f32], scale: f32, seed: u64) -> Vec<f32> {
    let noise = random_decoder(rows.len() / D_IN, D_IN, seed);
    rows.iter().zip(noise).map(|(r, n)| r + scale * n).collect()
}

fn saes(comparison: Comparison) -> SaeComparison {
    match comparison {
        Comparison::Saes(saes) => saes,
        Comparison::Runs(_) => panic!("two different SAEs compared as runs"),
    }
}

/// A permutation of `0..n`.
fn permutation(n: u32) -> Vec<u32> {
    (0..n).map(|f| (f * 7 + 3) % n).collect()
}

#[test]
fn the_matching_recovers_a_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let d_sae = 40;
    let rows_a = random_decoder(d_sae, D_IN, 1);
    let pi = permutation(d_sae as u32);
    let mut rows_b = vec![0.0; rows_a.len()];
    for (f, &to) in pi.iter().enumerate() {
        let to = to as usize;
        rows_b[to * D_IN..(to + 1) * D_IN].copy_from_slice(&rows_a[f * D_IN..(f + 1) * D_IN]);
    }
    let rows_b = perturbed(&rows_b, 0.05, 2);
    let spec = spec(d_sae, 60, 5);
    let a = index(dir.path(), "a", &spec, &|_, _, codes| codes, &rows_a);
    let map = pi.clone();
    let b = index(
        dir.path(),
        "b",
        &spec,
        &move |doc, position, codes: BTreeMap<u32, f32>| {
            // Permuted features, activations moved a little.
            let wobble = 1.0 + 0.02 * ((doc + position) % 3) as f32;
            codes
                .into_iter()
                .map(|(f, v)| (map[f as usize], v * wobble))
                .collect()
        },
        &rows_b,
    );
    for by in [MatchBy::Auto, MatchBy::Decoder] {
        let request = CompareRequest {
            by,
            ..CompareRequest::default()
        };
        let answer = saes(
            compare(
                &a,
                &b,
                &SaeFolders::default(),
                &HubSettings::from_env(),
                &request,
            )
            .unwrap(),
        );
        let expected = if by == MatchBy::Auto {
            MatchBy::Coactivation
        } else {
            MatchBy::Decoder
        };
        assert_eq!(answer.matched_by, expected);
        assert!(answer.shared_tokens.is_some_and(|n| n > 0));
        for feature in &answer.features {
            assert_eq!(
                feature.matched,
                Some(pi[feature.feature as usize]),
                "{by:?} {feature:?}"
            );
            assert!(feature.score.unwrap() > 0.9, "{feature:?}");
        }
        assert_eq!(answer.matched, d_sae as u64);
        assert!(answer.unmatched_a.is_empty() && answer.unmatched_b.is_empty());
        assert!(answer.splits.is_empty(), "{:?}", answer.splits);
        assert_eq!(answer.scores.histogram.iter().sum::<u64>(), d_sae as u64);
    }
}

#[test]
fn a_feature_split_in_two_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d_sae = 32;
    let split = 5u32;
    let rows_a = random_decoder(d_sae, D_IN, 11);
    // B: A's features (same ids) with perturbed rows; A's feature 5 becomes 5 (even
    // documents) and 32 (odd documents), each a direction near A's 5.
    let mut rows_b = perturbed(&rows_a, 0.05, 12);
    let second = perturbed(
        &rows_a[split as usize * D_IN..(split as usize + 1) * D_IN],
        0.3,
        13,
    );
    rows_b.extend(second);
    // A feature of B that co-fires with nothing of A's: A's feature 9 never fires in A.
    let spec_a = spec(d_sae, 80, 21);
    let a = index(
        dir.path(),
        "a",
        &spec_a,
        &|_, _, mut codes: BTreeMap<u32, f32>| {
            codes.remove(&9);
            codes
        },
        &rows_a,
    );
    // B is one feature wider; feature 32 is never drawn (weight 0), so B's documents and
    // drawn codes are A's.
    let mut spec_b = spec_a.clone();
    spec_b.feature_weights.push(0.0);
    let b = index(
        dir.path(),
        "b",
        &spec_b,
        &move |doc, _, codes: BTreeMap<u32, f32>| {
            codes
                .into_iter()
                .map(|(f, v)| {
                    if f == split && doc % 2 == 1 {
                        (32, v)
                    } else {
                        (f, v)
                    }
                })
                .collect()
        },
        &rows_b,
    );
    let answer = saes(
        compare(
            &a,
            &b,
            &SaeFolders::default(),
            &HubSettings::from_env(),
            &CompareRequest::default(),
        )
        .unwrap(),
    );
    assert_eq!(answer.splits.len(), 1, "{:?}", answer.splits);
    let found = &answer.splits[0];
    assert_eq!(
        (found.feature, found.into.clone()),
        (split, vec![split, 32])
    );
    assert!((found.union_jaccard - 1.0).abs() < 1e-12 && found.coverage == 1.0);
    assert!(found.best_single_jaccard < 0.7);
    // Feature 9 is dead in A; in B it fires and nothing of A's matches it.
    assert_eq!(answer.dead_a, vec![9]);
    assert!(answer.unmatched_b.contains(&9), "{:?}", answer.unmatched_b);
    // The split's halves: one is matched to A's 5, the other is left over.
    let halves: Vec<u32> = [split, 32]
        .into_iter()
        .filter(|f| answer.unmatched_b.contains(f))
        .collect();
    assert_eq!(halves.len(), 1);

    // The Parquet table holds every candidate row, the match and the split marked.
    let path = dir.path().join("matching.parquet");
    write_parquet(&Comparison::Saes(answer.clone()), &path).unwrap();
    let batches = read(&path);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let candidates: usize = answer
        .features
        .iter()
        .map(|f| f.candidates.len().max(1))
        .sum();
    assert_eq!(rows, candidates);
    let mut split_rows = 0;
    let mut matched_rows = 0;
    for batch in &batches {
        let a_feature = column::<UInt32Array>(batch, "a_feature");
        let is_split = column::<BooleanArray>(batch, "split");
        let matched = column::<BooleanArray>(batch, "matched");
        for i in 0..batch.num_rows() {
            if is_split.value(i) {
                assert_eq!(a_feature.value(i), split);
                split_rows += 1;
            }
            matched_rows += usize::from(matched.value(i));
        }
    }
    assert_eq!(split_rows, 2);
    assert_eq!(matched_rows as u64, answer.matched);
    assert_schema(&batches[0], "matching");
}

/// The table's columns are those of `schemas/compare/{name}.arrow.json`.
fn assert_schema(batch: &RecordBatch, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../schemas/compare/{name}.arrow.json"));
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let want: Vec<(String, String, bool)> = committed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
                f["nullable"].as_bool().unwrap(),
            )
        })
        .collect();
    let got: Vec<(String, String, bool)> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                format!("{:?}", f.data_type()),
                f.is_nullable(),
            )
        })
        .collect();
    assert_eq!(got, want, "schemas/compare/{name}.arrow.json");
}

#[test]
fn indexes_of_different_documents_are_matched_by_decoder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d_sae = 24;
    let rows = random_decoder(d_sae, D_IN, 31);
    let a = index(dir.path(), "a", &spec(d_sae, 20, 1), &|_, _, c| c, &rows);
    let b = index(
        dir.path(),
        "b",
        &spec(d_sae, 20, 2),
        &|_, _, c| c,
        &perturbed(&rows, 0.05, 3),
    );
    let answer = saes(
        compare(
            &a,
            &b,
            &SaeFolders::default(),
            &HubSettings::from_env(),
            &CompareRequest::default(),
        )
        .unwrap(),
    );
    assert_eq!(answer.shared_tokens, None);
    assert!(answer.shared_tokens_absent.is_some());
    assert_eq!(answer.matched_by, MatchBy::Decoder);
    assert!(answer.features.iter().all(|f| f.matched == Some(f.feature)));
    let request = CompareRequest {
        by: MatchBy::Coactivation,
        ..CompareRequest::default()
    };
    let error = compare(
        &a,
        &b,
        &SaeFolders::default(),
        &HubSettings::from_env(),
        &request,
    );
    assert!(error.unwrap_err().to_string().contains("same tokens"));
}

#[test]
fn a_gemma_scope_npz_sae_is_matched_by_its_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let d_sae = 30;
    let rows_a = random_decoder(d_sae, D_IN, 41);
    let pi = permutation(d_sae as u32);
    let mut rows_b = vec![0.0; rows_a.len()];
    for (f, &to) in pi.iter().enumerate() {
        let to = to as usize;
        rows_b[to * D_IN..(to + 1) * D_IN].copy_from_slice(&rows_a[f * D_IN..(f + 1) * D_IN]);
    }
    // B: Gemma Scope's params.npz, its w_dec in Fortran order as f64, deflated.
    let sae_b = dir.path().join("b-sae");
    let layout = NpyLayout {
        fortran: true,
        f64: true,
        deflated: true,
    };
    write_gemma_scope_npz(&sae_b, &perturbed(&rows_b, 0.05, 42), d_sae, D_IN, layout).unwrap();
    let a = index(dir.path(), "a", &spec(d_sae, 20, 1), &|_, _, c| c, &rows_a);
    let b = index(dir.path(), "b", &spec(d_sae, 20, 2), &|_, _, c| c, &[]);
    let answer = saes(
        compare(
            &a,
            &b,
            &SaeFolders::default(),
            &HubSettings::from_env(),
            &CompareRequest::default(),
        )
        .unwrap(),
    );
    assert_eq!(answer.matched_by, MatchBy::Decoder);
    assert_eq!(answer.b.d_sae, d_sae);
    for feature in &answer.features {
        assert_eq!(feature.matched, Some(pi[feature.feature as usize]));
        assert!(feature.score.unwrap() > 0.95, "{feature:?}");
    }
}

fn read(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

/// Per feature from an index folder's Parquet: (count, max, sum) over counted tokens,
/// and every counted (document id, position, value), plus the counted tokens.
type Brute = (
    BTreeMap<u32, (u64, f32, f64)>,
    BTreeMap<u32, Vec<(String, u32, f32)>>,
    u64,
);

fn brute_force(dir: &Path) -> Brute {
    let parts = |table: &str| -> Vec<RecordBatch> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(table))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().flat_map(|f| read(f)).collect()
    };
    let mut ids = BTreeMap::new();
    for batch in parts("documents") {
        let doc = column::<UInt32Array>(&batch, "doc");
        let id = column::<StringArray>(&batch, "id");
        for i in 0..batch.num_rows() {
            ids.insert(doc.value(i), id.value(i).to_string());
        }
    }
    let mut excluded = std::collections::HashSet::new();
    let mut counted = 0;
    for batch in parts("tokens") {
        let (doc, position) = (
            column::<UInt32Array>(&batch, "doc"),
            column::<UInt32Array>(&batch, "position"),
        );
        let (special, sink) = (
            column::<BooleanArray>(&batch, "special"),
            column::<BooleanArray>(&batch, "sink"),
        );
        for i in 0..batch.num_rows() {
            if special.value(i) || sink.value(i) {
                excluded.insert((doc.value(i), position.value(i)));
            } else {
                counted += 1;
            }
        }
    }
    let mut stats: BTreeMap<u32, (u64, f32, f64)> = BTreeMap::new();
    let mut hits: BTreeMap<u32, Vec<(String, u32, f32)>> = BTreeMap::new();
    for batch in parts("activations") {
        let doc = column::<UInt32Array>(&batch, "doc");
        let position = column::<UInt32Array>(&batch, "position");
        let feature = column::<UInt32Array>(&batch, "feature");
        let value = column::<Float32Array>(&batch, "value");
        for i in 0..batch.num_rows() {
            if excluded.contains(&(doc.value(i), position.value(i))) {
                continue;
            }
            let entry = stats.entry(feature.value(i)).or_insert((0, 0.0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(value.value(i));
            entry.2 += f64::from(value.value(i));
            hits.entry(feature.value(i)).or_default().push((
                ids[&doc.value(i)].clone(),
                position.value(i),
                value.value(i),
            ));
        }
    }
    (stats, hits, counted)
}

#[test]
fn changes_between_two_runs_equal_brute_force_over_both_parquets() {
    let dir = tempfile::tempdir().unwrap();
    let d_sae = 30;
    let sae = dir.path().join("sae");
    write_saelens_sae(&sae, &random_decoder(d_sae, D_IN, 41), d_sae, D_IN).unwrap();
    let sha256 = Decoder::read_folder(&sae).unwrap().sha256().to_string();
    // Distinct activations (no ties among top examples); feature 4 fires only in the
    // documents the second night added, so it appears; the second night's corpus lost
    // what feature 3 fired on, so it vanishes.
    let codes = |doc: u32, position: u32, codes: BTreeMap<u32, f32>, lost: bool| {
        codes
            .into_keys()
            .filter(|&f| !((f == 4 && doc < 40) || (lost && f == 3)))
            .map(|f| (f, 0.5 + ((doc * 131 + position) * 64 + f) as f32 * 1e-3))
            .collect::<BTreeMap<u32, f32>>()
    };
    let run = |name: &str, documents: usize, recode: &Recode<'_>| {
        let path = dir.path().join(name);
        write_synthetic_index_recoded(&path, &spec(d_sae, documents, 7), recode).unwrap();
        record_sae(&path, &sae, &sha256, D_IN).unwrap();
        build(&path).unwrap();
        AnyIndex::open(&path).unwrap()
    };
    // The corpus grew: B holds A's 40 documents and 20 more.
    let a = run("night-1", 40, &|d, p, c| codes(d, p, c, false));
    let b = run("night-2", 60, &|d, p, c| codes(d, p, c, true));
    let request = CompareRequest {
        examples: 5,
        ..CompareRequest::default()
    };
    let Comparison::Runs(answer) = compare(
        &a,
        &b,
        &SaeFolders::default(),
        &HubSettings::from_env(),
        &request,
    )
    .unwrap() else {
        panic!("two runs of one SAE compared as SAEs");
    };
    let (stats_a, hits_a, tokens_a) = brute_force(&dir.path().join("night-1"));
    let (stats_b, hits_b, tokens_b) = brute_force(&dir.path().join("night-2"));
    let stat = |stats: &BTreeMap<u32, (u64, f32, f64)>, tokens: u64, f: u32| {
        let (count, max, sum) = stats.get(&f).copied().unwrap_or_default();
        let mean = if count == 0 {
            0.0
        } else {
            (sum / count as f64) as f32
        };
        (count, count as f64 / tokens as f64, max, mean)
    };
    let top = |hits: &BTreeMap<u32, Vec<(String, u32, f32)>>, f: u32| {
        let mut all = hits.get(&f).cloned().unwrap_or_default();
        all.sort_by(|x, y| y.2.total_cmp(&x.2));
        all.truncate(request.examples);
        all.into_iter()
            .map(|(id, p, _)| (id, p))
            .collect::<Vec<_>>()
    };
    let mut changed = 0;
    for f in 0..d_sae as u32 {
        let (ca, da, ma, mea) = stat(&stats_a, tokens_a, f);
        let (cb, db, mb, meb) = stat(&stats_b, tokens_b, f);
        let old = top(&hits_a, f);
        let new: Vec<(String, u32)> = top(&hits_b, f)
            .into_iter()
            .filter(|k| !old.contains(k))
            .collect();
        let entry = answer.changed.iter().find(|c| c.feature == f);
        if (ca, da, ma) == (cb, db, mb) && (mea - meb).abs() < 1e-6 && new.is_empty() {
            assert!(entry.is_none(), "feature {f} did not change: {entry:?}");
            continue;
        }
        changed += 1;
        let entry = entry.unwrap_or_else(|| panic!("feature {f} changed"));
        assert_eq!(entry.count, [ca, cb]);
        assert_eq!(entry.density, [da, db]);
        assert_eq!(entry.max_activation, [ma, mb]);
        assert!(
            (entry.mean_activation[0] - mea).abs() < 1e-5
                && (entry.mean_activation[1] - meb).abs() < 1e-5
        );
        let got: Vec<(String, u32)> = entry
            .new_examples
            .iter()
            .map(|h| (h.id.clone(), h.position))
            .collect();
        assert_eq!(got, new, "feature {f}");
    }
    assert_eq!(answer.changed.len(), changed);
    assert_eq!(answer.unchanged as usize, d_sae - changed);
    assert_eq!(answer.appeared, vec![4]);
    assert_eq!(answer.vanished, vec![3]);

    let path = dir.path().join("changes.parquet");
    write_parquet(&Comparison::Runs(answer.clone()), &path).unwrap();
    let batches = read(&path);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        changed
    );
    assert_schema(&batches[0], "changes");
}
