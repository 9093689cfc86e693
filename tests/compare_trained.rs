//! The README's comparison demo at tiny size: two SAEs trained by `saeidx sae train` on
//! the same corpus with different seeds, each indexing the same documents, compared by
//! `saeidx compare` (co-activation over the shared tokens, a greedy one-to-one
//! matching), with the full matching as Parquet.

use std::path::Path;

use saeidx_tests::job_fixture::{Setup, saeidx_ok};
use serde_json::Value;

/// Trains a tiny TopK SAE on the fixture's model and corpus with `seed` into `out`.
fn train(setup: &Setup, seed: u64, out: &str) {
    let (seed, model) = (seed.to_string(), setup.path().join("model"));
    saeidx_ok(
        &[
            "sae",
            "train",
            "--model",
            model.to_str().unwrap(),
            "--hook",
            "blocks.1.hook_resid_post",
            "--corpus",
            "corpus/addresses.jsonl",
            "--d-sae",
            "96",
            "--k",
            "6",
            "--batch-size",
            "256",
            "--train-tokens",
            "3072",
            "--eval-tokens",
            "256",
            "--window-length",
            "64",
            "--window-overlap",
            "8",
            "--seed",
            &seed,
            "--out",
            out,
            "--json",
        ],
        setup.path(),
    );
}

/// Indexes the fixture's documents with the SAE in `sae` into `out/NAME`.
fn index(setup: &Setup, sae: &str, name: &str) -> Value {
    let job = setup.write_job(&format!("{name}.toml"), sae, "");
    let output = setup.path().join("out").join(name);
    saeidx_ok(
        &[
            "run",
            job.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    )
}

fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn two_differently_seeded_trained_saes_are_matched_over_the_same_tokens() {
    let setup = Setup::create();
    train(&setup, 1, "sae-seed1");
    train(&setup, 2, "sae-seed2");
    let a = index(&setup, "sae-seed1", "seed1");
    index(&setup, "sae-seed2", "seed2");
    let out = |name: &str| setup.path().join("out").join(name);
    let parquet = setup.path().join("matching.parquet");
    let answer = saeidx_ok(
        &[
            "compare",
            out("seed1").to_str().unwrap(),
            out("seed2").to_str().unwrap(),
            "--parquet",
            parquet.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    );
    assert_eq!(answer["kind"], "saes", "different seeds, different SAEs");
    assert_ne!(answer["a"]["sae_sha256"], answer["b"]["sae_sha256"]);
    assert_eq!(answer["matched_by"], "coactivation", "the same documents");
    let shared = answer["shared_tokens"].as_u64().unwrap();
    assert!(shared > 0 && shared <= a["counts"]["tokens"].as_u64().unwrap());
    assert_eq!(
        answer["a"]["tokens"], answer["shared_tokens"],
        "all of A's counted tokens"
    );
    // Every feature of A is matched, without counterpart, or dead: exactly one of them.
    let matched = answer["matched"].as_u64().unwrap();
    let unmatched = numbers(&answer["unmatched_a"]);
    let dead = numbers(&answer["dead_a"]);
    assert!(matched > 0, "{answer}");
    assert_eq!(matched + unmatched.len() as u64 + dead.len() as u64, 96);
    let features = answer["features"].as_array().unwrap();
    assert_eq!(features.len(), 96);
    for feature in features {
        let id = feature["feature"].as_u64().unwrap();
        match feature["matched"].as_u64() {
            Some(b) => {
                let score = feature["score"].as_f64().unwrap();
                assert!((0.5..=1.0 + 1e-9).contains(&score), "{feature}");
                let candidate = feature["candidates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["feature"] == b)
                    .expect("the match is one of the candidates");
                assert_eq!(candidate["score"], feature["score"]);
                assert!(!unmatched.contains(&id) && !dead.contains(&id));
            }
            None => assert!(unmatched.contains(&id) || dead.contains(&id), "{feature}"),
        }
    }
    // The score distribution counts the matched pairs.
    let histogram = numbers(&answer["scores"]["histogram"]);
    assert_eq!(histogram.iter().sum::<u64>(), matched);
    let percentiles: Vec<f64> = answer["scores"]["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "{percentiles:?}"
    );
    assert!(Path::new(&parquet).is_file());
}
