//! Decoder-cosine neighbours: the blocked top-k equals brute force, the decoder is read
//! from the SAE file an index records, and `feature` answers with it.

use std::path::Path;

use saeidx_compare::{Decoder, DecoderNeighbour, decoder_neighbours, feature_report, nearest};
use saeidx_query::{AnyIndex, FeatureRequest, build};
use saeidx_testkit::{
    sae::{NpyLayout, random_decoder, record_sae, write_gemma_scope_npz, write_saelens_sae},
    synthetic::{SyntheticSpec, write_synthetic_index},
};

/// The `k` nearest of each query by brute force: every cosine, sorted.
fn brute_force(a: &Decoder, b: &Decoder, k: usize, same: bool) -> Vec<Vec<(u32, f32)>> {
    (0..a.d_sae())
        .map(|q| {
            let mut all: Vec<(u32, f32)> = (0..b.d_sae())
                .filter(|&f| !(same && f == q))
                .map(|f| (f as u32, a.cosine(q, b, f)))
                .collect();
            all.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            all.truncate(k);
            all
        })
        .collect()
}

/// The answers agree with brute force: the same features, cosines within float error
/// (sgemm sums in another order), except where two cosines tie within that error.
fn assert_same(got: &[Vec<DecoderNeighbour>], want: &[Vec<(u32, f32)>]) {
    assert_eq!(got.len(), want.len());
    for (q, (got, want)) in got.iter().zip(want).enumerate() {
        assert_eq!(got.len(), want.len(), "query {q}");
        for (g, w) in got.iter().zip(want) {
            assert!((g.cosine - w.1).abs() < 1e-5, "query {q}: {g:?} vs {w:?}");
            if g.feature != w.0 {
                let tie = want
                    .iter()
                    .any(|x| x.0 == g.feature && (x.1 - w.1).abs() < 1e-5);
                assert!(tie, "query {q}: {g:?} vs {w:?}");
            }
        }
    }
}

#[test]
fn blocked_top_k_equals_brute_force_across_blocks() {
    // More rows than one query block and one key block, a width that is no multiple of
    // a SIMD lane, a zero row, and duplicated directions (exact ties).
    let (d_sae, d_in) = (1300, 19);
    let mut rows = random_decoder(d_sae, d_in, 7);
    rows[5 * d_in..6 * d_in].fill(0.0);
    let copy: Vec<f32> = rows[10 * d_in..11 * d_in].to_vec();
    rows[1200 * d_in..1201 * d_in].copy_from_slice(&copy);
    let a = Decoder::from_rows(rows, d_sae, d_in).unwrap();
    let queries: Vec<u32> = (0..d_sae as u32).collect();
    let got = nearest(&a, &queries, &a, 6, true);
    assert_same(&got, &brute_force(&a, &a, 6, true));
    assert_eq!(got[10][0].feature, 1200);
    assert!((got[10][0].cosine - 1.0).abs() < 1e-5);
    assert!(
        got[5].iter().all(|n| n.cosine == 0.0),
        "a zero row is near nothing"
    );

    let b = Decoder::from_rows(random_decoder(1030, d_in, 8), 1030, d_in).unwrap();
    assert_same(
        &nearest(&a, &queries, &b, 3, false),
        &brute_force(&a, &b, 3, false),
    );
    // More neighbours asked for than there are features: all of them, ranked.
    let small = Decoder::from_rows(random_decoder(4, d_in, 9), 4, d_in).unwrap();
    let all = nearest(&small, &[0, 1, 2, 3], &small, 10, true);
    assert!(all.iter().all(|n| n.len() == 3));
}

#[test]
fn non_finite_decoders_are_refused() {
    let mut rows = random_decoder(3, 4, 1);
    rows[7] = f32::NAN;
    assert!(Decoder::from_rows(rows, 3, 4).is_err());
    assert!(Decoder::from_rows(vec![0.0; 5], 3, 4).is_err());
}

/// A synthetic index in `dir/index` whose SAE (a SAELens folder in `dir/sae`) has
/// `d_sae` random directions of width 12; returns the decoder as read.
fn index_with_sae(dir: &Path, d_sae: usize) -> Decoder {
    let index = dir.join("index");
    let spec = SyntheticSpec {
        documents: 12,
        tokens_per_document: (3, 20),
        documents_per_part: 5,
        feature_weights: vec![1.0; d_sae],
        k: 3,
        value_step: 0.25,
        seed: 3,
    };
    write_synthetic_index(&index, &spec).unwrap();
    let rows = random_decoder(d_sae, 12, 11);
    write_saelens_sae(&dir.join("sae"), &rows, d_sae, 12).unwrap();
    let decoder = Decoder::read_folder(&dir.join("sae")).unwrap();
    record_sae(&index, &dir.join("sae"), decoder.sha256(), 12).unwrap();
    build(&index).unwrap();
    let direct = Decoder::from_rows(rows, d_sae, 12).unwrap();
    assert_eq!(decoder.rows(), direct.rows(), "the file's rows, normalised");
    decoder
}

#[test]
fn feature_answers_carry_decoder_neighbours_from_the_recorded_sae() {
    let dir = tempfile::tempdir().unwrap();
    let decoder = index_with_sae(dir.path(), 40);
    let index = AnyIndex::open(&dir.path().join("index")).unwrap();
    let request = FeatureRequest {
        feature: 17,
        neighbours: 4,
        ..FeatureRequest::default()
    };
    let report = feature_report(&index, &request).unwrap();
    let want = brute_force(&decoder, &decoder, 4, true).remove(17);
    let got = report
        .decoder_neighbours
        .clone()
        .expect("the SAE is where it was recorded");
    assert_same(&[got], &[want]);
    // Everything else is the query layer's answer.
    let mut plain = index.feature(&request).unwrap();
    assert_eq!(plain.decoder_neighbours, None);
    plain.decoder_neighbours = report.decoder_neighbours.clone();
    assert_eq!(plain, report);
    assert_eq!(decoder_neighbours(&decoder, 40, 3), None);

    // The folder given first wins when the recorded place is gone; a different SAE is
    // refused by its SHA-256, naming what was tried.
    let record = index.job().sae.clone();
    std::fs::rename(dir.path().join("sae"), dir.path().join("moved")).unwrap();
    let other = dir.path().join("other");
    write_saelens_sae(&other, &random_decoder(40, 12, 99), 40, 12).unwrap();
    let hub = saeidx_hub::HubSettings::from_env();
    let index_dir = dir.path().join("index");
    let error =
        Decoder::for_index(&record, &index_dir, std::slice::from_ref(&other), &hub).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("different SAE") && message.contains("--sae"),
        "{message}"
    );
    let found = Decoder::for_index(
        &record,
        &index_dir,
        &[other, dir.path().join("moved")],
        &hub,
    );
    assert_eq!(found.unwrap().rows(), decoder.rows());
}

#[test]
fn an_index_without_its_sae_file_answers_without_decoder_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 4,
        tokens_per_document: (2, 6),
        documents_per_part: 4,
        feature_weights: vec![1.0; 8],
        k: 2,
        value_step: 0.5,
        seed: 1,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let index = AnyIndex::open(dir.path()).unwrap();
    let report = feature_report(&index, &FeatureRequest::default()).unwrap();
    assert_eq!(report.decoder_neighbours, None);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["decoder_neighbours"].is_null());
}

#[test]
fn gemma_scope_params_npz_decoders_are_read_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (d_sae, d_in) = (40, 12);
    let rows = random_decoder(d_sae, d_in, 5);
    let want = Decoder::from_rows(rows.clone(), d_sae, d_in).unwrap();
    for (i, fortran, f64, deflated) in [
        (0, false, false, false),
        (1, true, false, true),
        (2, false, true, false),
        (3, true, true, true),
    ] {
        let sae = dir.path().join(format!("gemma-{i}"));
        let layout = NpyLayout {
            fortran,
            f64,
            deflated,
        };
        write_gemma_scope_npz(&sae, &rows, d_sae, d_in, layout).unwrap();
        let got = Decoder::read_folder(&sae).unwrap();
        assert_eq!((got.d_sae(), got.d_in()), (d_sae, d_in), "{layout:?}");
        for (g, w) in got.rows().iter().zip(want.rows()) {
            // f64 storage rounds through f64 and back: the same f32 values.
            assert_eq!(g, w, "{layout:?}");
        }
        // The SHA-256 `saeidx_sae` records for the folder: params.npz, then config.json.
        let npz = saeidx_format::checksum::sha256_file(&sae.join("params.npz")).unwrap();
        let listing = format!("params.npz {npz}\n");
        assert_eq!(
            got.sha256(),
            saeidx_format::checksum::sha256_hex(listing.as_bytes())
        );
        std::fs::write(sae.join("config.json"), "{}").unwrap();
        let config = saeidx_format::checksum::sha256_file(&sae.join("config.json")).unwrap();
        let listing = format!("{listing}config.json {config}\n");
        assert_eq!(
            Decoder::read_folder(&sae).unwrap().sha256(),
            saeidx_format::checksum::sha256_hex(listing.as_bytes())
        );
    }
    // A file that is no archive is refused, naming it.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("params.npz"), b"not a zip").unwrap();
    let error = Decoder::read_folder(&broken).unwrap_err().to_string();
    assert!(
        error.contains("params.npz") && error.contains("npz"),
        "{error}"
    );
}
