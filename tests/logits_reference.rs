//! Logit effects against NumPy: each feature's top and bottom tokens of
//! `(W_dec[f] ⊙ γ) · W_Uᵀ`, computed by `scripts/reference/logit_effects_reference.py`
//! from the checkpoint and SAE files themselves (float64, mlx only to read and
//! dequantize), must name the same token ids in the same order, with values within 1e-4.
//!
//! Two models: the default one (4-bit MLX, tied embeddings quantized at 8 bits) with the
//! default SAE, and a tiny f32 Llama with an untied `lm_head` and a non-trivial final
//! norm weight with a random SAE. Then end to end: `saeidx run` writes them, `saeidx
//! feature --json` shows them, and `saeidx query logits` rebuilds them for an index that
//! lost them.

use std::{collections::BTreeMap, path::Path, process::Command};

use mlx_rs::{Array, random};
use saeidx_format::logits::{LOGIT_EFFECTS_PATH, LogitEffects};
use saeidx_hub::HubSettings;
use saeidx_model::{
    files::{self, ModelSource},
    hook::HookPoint,
    unembedding::Unembedding,
};
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    logits::{LogitOptions, LogitTable, ModelIdentity, logit_effects},
};
use saeidx_tests::{
    default_model,
    job_fixture::{Setup, random_sae, saeidx_ok},
    reference_python, repo_root,
};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
const K: usize = 10;

/// A feature's top and bottom lists, each `[(token, value)]`.
type Lists = (Vec<(u32, f32)>, Vec<(u32, f32)>);

/// NumPy's lists for `features`: feature → (top, bottom).
type Reference = BTreeMap<u32, Lists>;

fn reference(model: &Path, sae: &Path, features: &[u32]) -> Reference {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("reference.json");
    let list: Vec<String> = features.iter().map(u32::to_string).collect();
    let output = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/logit_effects_reference.py"))
        .arg("--model")
        .arg(model)
        .arg("--sae")
        .arg(sae)
        .args([
            "--features",
            &list.join(","),
            "--k",
            &K.to_string(),
            "--out",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let pairs = |v: &Value| -> Vec<(u32, f32)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
            .collect()
    };
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(f, lists)| {
            (
                f.parse().unwrap(),
                (pairs(&lists["top"]), pairs(&lists["bottom"])),
            )
        })
        .collect()
}

/// Asserts that `ours` (feature → top, bottom) matches NumPy's; returns the worst
/// value difference.
fn compare(ours: &dyn Fn(u32) -> Lists, expected: &Reference) -> f32 {
    let mut worst = 0f32;
    for (feature, (top, bottom)) in expected {
        let (our_top, our_bottom) = ours(*feature);
        for (what, ours, theirs) in [("top", &our_top, top), ("bottom", &our_bottom, bottom)] {
            // Near ties (values within the tolerance) may come in either order: NumPy sums
            // in float64, MLX in float32 in an order that depends on the CPU's kernels.
            let what = format!("feature {feature} {what}");
            saeidx_tests::assert_same_ranking(ours, theirs, TOLERANCE, &what);
            for ((_, a), (_, b)) in ours.iter().zip(theirs) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    assert!(worst <= TOLERANCE, "worst value difference {worst}");
    worst
}

fn table_lists(table: &LogitTable) -> impl Fn(u32) -> Lists + '_ {
    |feature| {
        let entry = &table.effects[feature as usize];
        (entry.top.clone(), entry.bottom.clone())
    }
}

fn compute(model_dir: &Path, sae_dir: &Path, hook: &str) -> LogitTable {
    let files = files::resolve(
        &ModelSource::Local(model_dir.to_path_buf()),
        &HubSettings::from_env(),
    )
    .unwrap();
    let unembedding = Unembedding::load(&files).unwrap();
    let sae = formats::load(
        &SaeSource::Local(sae_dir.to_path_buf()),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .unwrap();
    let tokenizer = saeidx_corpus::tokenizer::TextTokenizer::from_file(&files.tokenizer).unwrap();
    logit_effects(
        &sae,
        HookPoint::parse(hook, None).unwrap(),
        &unembedding,
        &ModelIdentity {
            source: model_dir.display().to_string(),
            weights_sha256: files.weights_sha256().unwrap(),
        },
        &|id| tokenizer.token_text(id),
        LogitOptions {
            k: K,
            ..LogitOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn the_default_model_and_sae_match_numpy() {
    let model = default_model();
    let sae = repo_root().join("crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32");
    let table = compute(&model.dir, &sae, "blocks.15.hook_resid_post");
    assert_eq!(table.effects.len(), 8192);
    assert!(table.header.unembedding.contains("tied embedding"));
    // Every 64th feature and the last: NumPy in float64 is the slow side.
    let features: Vec<u32> = (0..8192).step_by(64).chain([8191]).collect();
    let worst = compare(
        &table_lists(&table),
        &reference(&model.dir, &sae, &features),
    );
    println!(
        "default model: worst difference {worst:e} over {} features",
        features.len()
    );
    // Token texts are the tokenizer's decoding of each id on its own.
    let (token, _) = table.effects[0].top[0];
    assert!(!table.token_texts[&token].is_empty());
}

/// A tiny f32 Llama with an untied `lm_head` and a random final norm weight, using the
/// default tokenizer. Returns its folder.
fn tiny_untied_model(dir: &Path) -> std::path::PathBuf {
    let folder = saeidx_tests::tiny_text_model(dir, 2);
    let config_path = folder.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["tie_word_embeddings"] = Value::Bool(false);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let weights = folder.join("model.safetensors");
    let mut tensors = Array::load_safetensors(&weights).unwrap();
    random::seed(11).unwrap();
    let vocab = config["vocab_size"].as_i64().unwrap() as i32;
    let hidden = config["hidden_size"].as_i64().unwrap() as i32;
    tensors.insert(
        "lm_head.weight".into(),
        random::normal::<f32>(&[vocab, hidden], None, None, None).unwrap(),
    );
    tensors.insert(
        "model.norm.weight".into(),
        random::uniform::<f32, f32>(0.2, 2.0, &[hidden], None).unwrap(),
    );
    // The loaded tensors read the file lazily: write a new one, then replace it.
    let written = folder.join("rewritten.safetensors");
    Array::save_safetensors(&tensors, None, &written).unwrap();
    std::fs::rename(&written, &weights).unwrap();
    folder
}

#[test]
fn a_tiny_untied_model_matches_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_untied_model(dir.path());
    let sae = dir.path().join("sae");
    random_sae(&sae, 64);
    let table = compute(&model, &sae, "blocks.1.hook_resid_post");
    assert_eq!(table.header.unembedding, "lm_head.weight");
    assert!(table.header.final_norm.contains("RMSNorm"));
    let features: Vec<u32> = (0..256).collect();
    let worst = compare(&table_lists(&table), &reference(&model, &sae, &features));
    println!("tiny untied model: worst difference {worst:e}");
}

/// The logit effects as `saeidx feature --json` shows them.
fn shown(index: &Path, cwd: &Path, feature: u32) -> Value {
    let answer = saeidx_ok(
        &[
            "feature",
            &feature.to_string(),
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        cwd,
    );
    answer["logits"].clone()
}

#[test]
fn runs_write_them_feature_shows_them_and_query_logits_rebuilds_them() {
    let setup = Setup::create();
    saeidx_ok(
        &["run", setup.job().to_str().unwrap(), "--json"],
        setup.path(),
    );
    let index = setup.path().join("out/index");
    let file = index.join(LOGIT_EFFECTS_PATH);
    let written = LogitEffects::read(&file).unwrap();
    assert_eq!(written.header().d_sae, 256);
    let expected = reference(
        &setup.path().join("model"),
        &setup.path().join("sae"),
        &[3, 200],
    );
    let from_json = |logits: &Value| {
        let list = |key: &str| -> Vec<(u32, f32)> {
            logits[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["token"].as_u64().unwrap() as u32,
                        e["value"].as_f64().unwrap() as f32,
                    )
                })
                .collect()
        };
        (list("top"), list("bottom"))
    };
    let cwd = setup.path();
    let lists = |feature| from_json(&shown(&index, cwd, feature));
    compare(&lists, &expected);
    let logits = shown(&index, cwd, 3);
    assert!(logits["top"][0]["token_text"].is_string());
    assert!(logits["method"].as_str().unwrap().contains("final norm"));

    // Rebuilding the query files keeps them; an index without them shows null, and
    // `query logits` computes them on first use.
    saeidx_ok(&["query", "build", index.to_str().unwrap(), "--json"], cwd);
    assert!(file.is_file());
    std::fs::remove_file(&file).unwrap();
    assert_eq!(shown(&index, cwd, 3), Value::Null);
    let built = saeidx_ok(&["query", "logits", index.to_str().unwrap(), "--json"], cwd);
    assert_eq!(built["computed"], true);
    assert_eq!(built["features"], 256);
    compare(&lists, &expected);
    let again = saeidx_ok(&["query", "logits", index.to_str().unwrap(), "--json"], cwd);
    assert_eq!(again["computed"], false);

    // A damaged file is an error that says how to rebuild it, and --rebuild does.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let error = saeidx_tests::job_fixture::saeidx_err(
        &["feature", "3", "--index", index.to_str().unwrap()],
        cwd,
    );
    assert!(error.contains("--rebuild"), "{error}");
    saeidx_ok(
        &[
            "query",
            "logits",
            index.to_str().unwrap(),
            "--rebuild",
            "--json",
        ],
        cwd,
    );
    compare(&lists, &expected);
}
