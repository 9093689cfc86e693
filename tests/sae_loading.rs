//! SAE loading beyond the formats: from a Hugging Face cache (offline, repo +
//! subfolder), and the embedded default SAE, which must load, match the default model
//! and hook, and reconstruct the default model's activations as well as its training
//! metrics say.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use mlx_rs::Array;
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_hub::HubSettings;
use saeidx_model::{
    batch::PaddedBatch,
    checkpoint::Checkpoint,
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_sae::formats::{self, LoadOptions, SaeSource};
use saeidx_tests::{default_model, reference_python, repo_root};

/// The committed default SAE.
fn default_sae_dir() -> PathBuf {
    repo_root().join("crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32")
}

#[test]
fn an_sae_in_a_hub_cache_loads_offline_with_its_subfolder() {
    let dir = tempfile::tempdir().unwrap();
    let repo_folder = dir.path().join("repo");
    let written = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/sae_encode_reference.py"))
        .args([
            "--write-random",
            "sparsify",
            "--d-in",
            "48",
            "--d-sae",
            "96",
        ])
        .args(["--k", "4", "--seed", "2", "--layer", "6", "--out-dir"])
        .arg(&repo_folder)
        .output()
        .unwrap();
    assert!(written.status.success());
    let hub_dir = dir.path().join("hub");
    saeidx_hub::cache::place_snapshot(&hub_dir, "someone/sparsify-sae", &repo_folder).unwrap();
    let settings = HubSettings {
        cache_dir: hub_dir,
        offline: true,
        ..HubSettings::from_env()
    };
    let source = SaeSource::parse("someone/sparsify-sae/layers.6", None);
    let from_hub = formats::load(&source, &settings, LoadOptions::default()).unwrap();
    let local = formats::load(
        &SaeSource::Local(repo_folder.join("layers.6")),
        &settings,
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(from_hub.info.sha256, local.info.sha256);
    assert_eq!((from_hub.info.d_in, from_hub.info.d_sae), (48, 96));
    assert!(
        from_hub
            .info
            .source
            .starts_with("someone/sparsify-sae/layers.6@")
    );
    // A subfolder that is not in the snapshot is a clear error.
    let missing = SaeSource::parse("someone/sparsify-sae/layers.7", None);
    let error = formats::load(&missing, &settings, LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("layers.7"), "{error}");
}

#[test]
fn the_default_sae_fits_the_default_model_and_reconstructs_it() {
    let settings = HubSettings::from_env();
    let sae = formats::load(
        &SaeSource::Local(default_sae_dir()),
        &settings,
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((sae.info.d_in, sae.info.d_sae), (576, 8192));
    let hook = HookPoint::parse("blocks.15.hook_resid_post", None).unwrap();
    assert_eq!(sae.info.hook, Some(hook));
    formats::check_compatible(
        &sae,
        576,
        saeidx_assets::defaults::DEFAULT_MODEL_REPO,
        hook,
        false,
    )
    .unwrap();

    // Held-out-like text (not from the training corpus): FVU and L0 on real activations.
    let files = default_model();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer).unwrap();
    let model = Transformer::from_checkpoint(
        Checkpoint::load(files).unwrap(),
        Some(15),
        WeightStorage::Float32,
    )
    .unwrap();
    let texts = [
        "The Congress shall have power to lay and collect taxes, duties, imposts and excises, \
         to pay the debts and provide for the common defence and general welfare.",
        "Our economy grew last year, and more Americans found work than in any year since the war.",
    ];
    let (mut error, mut variance, mut active, mut tokens) = (0f64, 0f64, 0usize, 0usize);
    for text in texts {
        let ids = tokenizer.encode(text).unwrap().ids;
        let batch = PaddedBatch::new(&[&ids]).unwrap();
        let out = model
            .forward(&batch.tokens, &BTreeSet::from([hook]))
            .unwrap();
        let values = batch.unpad(&out[&hook]).unwrap().remove(0);
        // Skip position 0, the attention sink (never in training data).
        let rows = &values[576..];
        let n = rows.len() / 576;
        let x = Array::from_slice(rows, &[n as i32, 576]);
        let codes = sae.encode(&x).unwrap();
        let decoded = sae.decode(&codes).unwrap();
        let decoded = decoded.as_slice::<f32>();
        let mut mean = vec![0f64; 576];
        for row in rows.chunks(576) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / n as f64;
            }
        }
        for (i, v) in rows.iter().enumerate() {
            error += (*v as f64 - decoded[i] as f64).powi(2);
            variance += (*v as f64 - mean[i % 576]).powi(2);
        }
        active += codes.nonzeros();
        tokens += n;
    }
    let fvu = error / variance;
    let l0 = active as f64 / tokens as f64;
    eprintln!("default SAE on unseen text: FVU {fvu:.3}, L0 {l0:.1}");
    assert!(fvu < 0.35, "FVU {fvu}");
    assert!((30.0..=40.0).contains(&l0), "L0 {l0}");

    // The metadata records how it was made and how good it is.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(default_sae_dir().join("config.json")).unwrap())
            .unwrap();
    let metadata = &config["metadata"];
    assert!(
        metadata["training"]["metrics"]["fvu"].is_number(),
        "{metadata}"
    );
    for key in [
        "model_name",
        "model_commit",
        "model_weights_sha256",
        "hook",
        "corpus_sha256",
        "training",
    ] {
        assert!(
            metadata.get(key).is_some(),
            "metadata lacks {key}: {metadata}"
        );
    }
}
