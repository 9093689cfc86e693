//! `compare` with an index of segments on either side (or both) gives what it gives for
//! one index over the same live documents: two SAEs matched by co-activation over the
//! live tokens, and two runs of one SAE with their changes and new top examples. The
//! `feature` answer's decoder neighbours come from the SAE that the index records
//! relative to its top folder, not to a segment's.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use saeidx_compare::{
    CompareRequest, Comparison, Decoder, MatchBy, SaeFolders, compare, feature_report,
};
use saeidx_format::segments::SegmentSet;
use saeidx_hub::HubSettings;
use saeidx_query::{AnyIndex, FeatureRequest, build};
use saeidx_testkit::{
    sae::{random_decoder, record_sae, write_saelens_sae},
    synthetic::{
        Recode, SyntheticSpec, split_into_segments, write_synthetic_index_recoded,
        write_synthetic_index_recoded_without,
    },
};

const D_IN: usize = 16;
const D_SAE: usize = 24;

fn spec(documents: usize) -> SyntheticSpec {
    SyntheticSpec {
        documents,
        tokens_per_document: (0, 12),
        documents_per_part: 10,
        feature_weights: (0..D_SAE).map(|f| 1.0 + (f % 5) as f64).collect(),
        k: 4,
        value_step: 0.25,
        seed: 1517,
    }
}

/// Document 3 changed (its new version is a later document), documents 9, 10 and 29
/// removed: at a segment's edges and inside.
fn removed() -> BTreeSet<u32> {
    [3, 9, 10, 29].into()
}

/// The number global document `doc` has in the index without `removed`.
fn renumber(doc: u32) -> u32 {
    doc - removed().range(..doc).count() as u32
}

/// An SAE folder `dir/name` with decoder `rows`, and its SHA-256.
fn sae(dir: &Path, name: &str, rows: &[f32]) -> (PathBuf, String) {
    let folder = dir.join(name);
    write_saelens_sae(&folder, rows, D_SAE, D_IN).unwrap();
    let sha256 = Decoder::read_folder(&folder).unwrap().sha256().to_string();
    (folder, sha256)
}

/// One run of `sae` over `documents` documents with codes through `recode`: as an index
/// of three segments with [`removed`] deleted (`dir/NAME-seg`), and as one index over
/// the same live documents (`dir/NAME-one`).
fn both(
    dir: &Path,
    name: &str,
    documents: usize,
    recode: &Recode<'_>,
    (sae, sha256): &(PathBuf, String),
) -> (AnyIndex, AnyIndex) {
    let whole = dir.join(format!("{name}-whole"));
    write_synthetic_index_recoded(&whole, &spec(documents), recode).unwrap();
    record_sae(&whole, sae, sha256, D_IN).unwrap();
    let seg = dir.join(format!("{name}-seg"));
    let parts = documents.div_ceil(10);
    let groups = [0..1, 1..parts - 1, parts - 1..parts];
    let mut set = split_into_segments(&whole, &seg, &groups).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&seg, &segment.name)).unwrap();
    }
    for segment in &mut set.segments {
        for &doc in &removed() {
            segment.delete(doc);
        }
    }
    set.publish(&seg).unwrap();
    let one = dir.join(format!("{name}-one"));
    write_synthetic_index_recoded_without(&one, &spec(documents), recode, &removed()).unwrap();
    record_sae(&one, sae, sha256, D_IN).unwrap();
    build(&one).unwrap();
    (AnyIndex::open(&seg).unwrap(), AnyIndex::open(&one).unwrap())
}

fn compared(a: &AnyIndex, b: &AnyIndex, request: &CompareRequest) -> Comparison {
    let hub = HubSettings::from_env();
    compare(a, b, &SaeFolders::default(), &hub, request).unwrap()
}

/// `answer` with its sides' folders named as `like`'s.
fn renamed(mut answer: Comparison, like: &Comparison) -> Comparison {
    match (&mut answer, like) {
        (Comparison::Saes(ours), Comparison::Saes(theirs)) => {
            ours.a.index.clone_from(&theirs.a.index);
            ours.b.index.clone_from(&theirs.b.index);
        }
        (Comparison::Runs(ours), Comparison::Runs(theirs)) => {
            ours.a.index.clone_from(&theirs.a.index);
            ours.b.index.clone_from(&theirs.b.index);
        }
        _ => panic!("compared as different kinds"),
    }
    answer
}

#[test]
fn two_saes_compare_over_segments_as_over_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let rows_a = random_decoder(D_SAE, D_IN, 1);
    let rows_b: Vec<f32> = random_decoder(D_SAE, D_IN, 2)
        .iter()
        .zip(&rows_a)
        .map(|(n, r)| r + 0.3 * n)
        .collect();
    let sae_a = sae(dir.path(), "sae-a", &rows_a);
    let sae_b = sae(dir.path(), "sae-b", &rows_b);
    let (a_seg, a_one) = both(dir.path(), "a", 40, &|_, _, codes| codes, &sae_a);
    // B's features: A's rotated by 5, activations moved by position, some dropped.
    let (b_seg, b_one) = both(
        dir.path(),
        "b",
        40,
        &|doc, position, codes: BTreeMap<u32, f32>| {
            codes
                .into_iter()
                .filter(|(f, _)| (doc + position + f) % 7 != 0)
                .map(|(f, v)| {
                    (
                        (f + 5) % D_SAE as u32,
                        v * (1.0 + 0.1 * (position % 3) as f32),
                    )
                })
                .collect()
        },
        &sae_b,
    );
    let mut checked = 0;
    for by in [MatchBy::Auto, MatchBy::Decoder] {
        let request = CompareRequest {
            by,
            min_score: 0.2,
            ..CompareRequest::default()
        };
        let want = compared(&a_one, &b_one, &request);
        let Comparison::Saes(saes) = &want else {
            panic!("two SAEs compared as runs");
        };
        if by == MatchBy::Auto {
            assert_eq!(saes.matched_by, MatchBy::Coactivation);
            assert!(saes.shared_tokens.unwrap() > 100, "{saes:?}");
            assert!(saes.matched > 10, "{}", saes.matched);
        }
        for (a, b) in [(&a_seg, &b_one), (&a_one, &b_seg), (&a_seg, &b_seg)] {
            let got = renamed(compared(a, b, &request), &want);
            assert_eq!(got, want, "{by:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    // An index of segments and a full index do not share tokens: a removed document
    // is in one and not the other.
    let full = dir.path().join("a-whole");
    build(&full).unwrap();
    let request = CompareRequest::default();
    let Comparison::Saes(apart) = compared(&AnyIndex::open(&full).unwrap(), &b_seg, &request)
    else {
        panic!("two SAEs compared as runs");
    };
    assert_eq!(apart.matched_by, MatchBy::Decoder);
    assert!(apart.shared_tokens_absent.is_some());
}

#[test]
fn two_runs_compare_over_segments_as_over_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let sae = sae(dir.path(), "sae", &random_decoder(D_SAE, D_IN, 3));
    // Night 1 of 30 documents, night 2 of 50 with feature 4 only in the new ones and
    // feature 3 lost; distinct values (no ties among top examples).
    let codes = |doc: u32, position: u32, codes: BTreeMap<u32, f32>, lost: bool| {
        codes
            .into_keys()
            .filter(|&f| !((f == 4 && doc < 30) || (lost && f == 3)))
            .map(|f| (f, 0.5 + ((doc * 131 + position) * 64 + f) as f32 * 1e-3))
            .collect::<BTreeMap<u32, f32>>()
    };
    let (a_seg, a_one) = both(
        dir.path(),
        "night-1",
        30,
        &|d, p, c| codes(d, p, c, false),
        &sae,
    );
    let (b_seg, b_one) = both(
        dir.path(),
        "night-2",
        50,
        &|d, p, c| codes(d, p, c, true),
        &sae,
    );
    let request = CompareRequest {
        examples: 5,
        context: 2,
        ..CompareRequest::default()
    };
    let want = compared(&a_one, &b_one, &request);
    let Comparison::Runs(runs) = &want else {
        panic!("two runs of one SAE compared as SAEs");
    };
    assert!(
        runs.appeared.contains(&4) && runs.vanished.contains(&3),
        "{runs:?}"
    );
    let news: usize = runs.changed.iter().map(|c| c.new_examples.len()).sum();
    assert!(news > 20, "{news}");
    for (a, b, b_segmented) in [
        (&a_seg, &b_one, false),
        (&a_one, &b_seg, true),
        (&a_seg, &b_seg, true),
    ] {
        let mut got = renamed(compared(a, b, &request), &want);
        if let Comparison::Runs(runs) = &mut got
            && b_segmented
        {
            for hit in runs.changed.iter_mut().flat_map(|c| &mut c.new_examples) {
                assert!(!removed().contains(&hit.doc));
                hit.doc = renumber(hit.doc);
            }
        }
        assert_eq!(got, want);
    }
}

#[test]
fn feature_report_over_segments_reads_the_sae_recorded_relative_to_the_top_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sae = sae(dir.path(), "sae", &random_decoder(D_SAE, D_IN, 4));
    let (seg, one) = both(dir.path(), "night", 30, &|_, _, codes| codes, &sae);
    // The index records `../sae`: from a segment's folder that names no SAE.
    for feature in [0, 7, D_SAE as u32 - 1] {
        let request = FeatureRequest {
            feature,
            neighbours: 5,
            ..FeatureRequest::default()
        };
        let want = feature_report(&one, &request).unwrap().decoder_neighbours;
        assert_eq!(want.as_ref().map(Vec::len), Some(5), "feature {feature}");
        let got = feature_report(&seg, &request).unwrap().decoder_neighbours;
        assert_eq!(got, want, "feature {feature}");
    }
}
