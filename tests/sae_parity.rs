//! SAE encoding parity: saeidx's loader and encoder against a NumPy implementation of
//! each format's own published encode formula (`scripts/reference/sae_encode_reference.py`),
//! on random SAEs that script writes exactly as each library saves them.
//! Identical active sets; values within 1e-5 relative. A code is a sum of `d_in` terms
//! much larger than itself when they nearly cancel, and float32's error scales with the
//! terms, not the result; such codes are held to 1e-5 of the token's largest code.

use std::{path::Path, process::Command};

use mlx_rs::{Array, random};
use saeidx_hub::HubSettings;
use saeidx_model::{config::ModelConfig, hook::HookPoint};
use saeidx_sae::{
    SaeError,
    formats::{self, LoadOptions, SaeSource},
    sae::Sae,
};
use saeidx_tests::{reference_python, repo_root};
use serde_json::json;

const D_IN: i32 = 48;
const D_SAE: i32 = 192;
const TOKENS: i32 = 300;

fn reference(args: &[&str]) -> String {
    let output = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/sae_encode_reference.py"))
        .args(args)
        .output()
        .expect("the reference runs");
    assert!(
        output.status.success(),
        "reference {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes a random SAE of `kind` and returns its folder.
fn random_sae(kind: &str, dir: &Path, seed: u32) -> std::path::PathBuf {
    let printed = reference(&[
        "--write-random",
        kind,
        "--d-in",
        &D_IN.to_string(),
        "--d-sae",
        &D_SAE.to_string(),
        "--k",
        "9",
        "--seed",
        &seed.to_string(),
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let folder = printed
        .trim()
        .lines()
        .last()
        .expect("the script prints the folder");
    std::path::PathBuf::from(folder)
}

/// One parity check: an SAE kind, the format saeidx should detect, and the settings.
#[derive(Default)]
struct Case<'a> {
    kind: &'a str,
    format: &'a str,
    /// A per-token threshold for BatchTopK SAEs.
    threshold: Option<f32>,
    /// A release table's norm scaling factor.
    norm_scaling_factor: Option<f32>,
    /// A model `config.json` (and its name) to prepare the SAE for, at
    /// `blocks.3.hook_resid_post`; the reference centres the inputs when `center`.
    model: Option<(serde_json::Value, &'a str)>,
    center: bool,
}

fn check(kind: &str, format: &str, threshold: Option<f32>) {
    check_case(Case {
        kind,
        format,
        threshold,
        ..Case::default()
    });
}

/// Compares saeidx's codes with the reference's on random inputs; returns the SAE.
fn check_case(case: Case) -> Sae {
    let Case {
        kind,
        format,
        threshold,
        ..
    } = case;
    let dir = tempfile::tempdir().unwrap();
    let folder = random_sae(kind, dir.path(), 11);
    random::seed(5).unwrap();
    let x = random::normal::<f32>(&[TOKENS, D_IN], None, None, None)
        .unwrap()
        .multiply(Array::from_f32(2.0))
        .unwrap();
    let input = dir.path().join("x.safetensors");
    Array::save_safetensors([("x", &x)], None, &input).unwrap();
    let out = dir.path().join("codes.safetensors");
    let mut args = vec![
        "--format",
        format,
        "--sae",
        folder.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let threshold_text = threshold.map(|t| t.to_string());
    if let Some(t) = &threshold_text {
        args.extend(["--batchtopk-threshold", t]);
    }
    let factor_text = case.norm_scaling_factor.map(|f| f.to_string());
    if let Some(f) = &factor_text {
        args.extend(["--norm-scaling-factor", f]);
    }
    if case.center {
        args.push("--center");
    }
    reference(&args);
    let expected = Array::load_safetensors(&out).unwrap()["codes"].clone();
    let expected = expected.as_slice::<f32>();

    let options = LoadOptions {
        batchtopk_threshold: if kind == "saelens-batchtopk" {
            None
        } else {
            threshold
        },
        norm_scaling_factor: case.norm_scaling_factor,
        ..LoadOptions::default()
    };
    let mut sae =
        formats::load(&SaeSource::Local(folder), &HubSettings::from_env(), options).unwrap();
    if let Some((config, name)) = case.model {
        let config = ModelConfig::from_value(config).unwrap();
        let hook = HookPoint::parse("blocks.3.hook_resid_post", None).unwrap();
        formats::prepare(&mut sae, &config, name, hook, false).unwrap();
    }
    assert_eq!(sae.input.center, case.center);
    assert_eq!(
        (sae.info.d_in, sae.info.d_sae),
        (D_IN as usize, D_SAE as usize)
    );
    assert_eq!(sae.info.format, format);
    let codes = sae.encode(&x).unwrap();
    assert_eq!(codes.tokens(), TOKENS as usize);
    let mut active = 0;
    for t in 0..TOKENS as usize {
        let row = &expected[t * D_SAE as usize..(t + 1) * D_SAE as usize];
        let reference_active: Vec<u32> = (0..D_SAE as u32)
            .filter(|f| row[*f as usize] > 0.0)
            .collect();
        let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let ours: Vec<(u32, f32)> = codes.token(t).collect();
        let ours_active: Vec<u32> = ours.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            ours_active, reference_active,
            "{kind}: active set of token {t}"
        );
        for (feature, value) in ours {
            let want = row[feature as usize];
            assert!(
                (value - want).abs() <= 1e-5 * want.abs().max(largest),
                "{kind}: token {t} feature {feature}: {value} vs {want}"
            );
        }
        active += reference_active.len();
    }
    assert!(
        active > TOKENS as usize,
        "{kind}: the test should exercise active features"
    );
    sae
}

#[test]
fn mlxterp_topk() {
    check("mlxterp", "mlxterp", None);
}

#[test]
fn mlxterp_batchtopk_with_a_per_token_threshold() {
    check("mlxterp-batchtopk", "mlxterp", Some(0.5));
}

#[test]
fn saelens_standard() {
    check("saelens-standard", "saelens", None);
}

#[test]
fn saelens_topk_with_decoder_norm_rescaling() {
    check("saelens-topk", "saelens", None);
}

#[test]
fn saelens_jumprelu() {
    check("saelens-jumprelu", "saelens", None);
}

#[test]
fn saelens_batchtopk_uses_its_stored_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let folder = random_sae("saelens-batchtopk", dir.path(), 11);
    // Stored as F64, which MLX's own reader refuses.
    let weights = formats::read_tensors(&folder.join("sae_weights.safetensors")).unwrap();
    let stored = weights["topk_threshold"].item_exact::<f32>();
    check("saelens-batchtopk", "saelens", Some(stored));
}

#[test]
fn sparsify_topk() {
    check("sparsify", "sparsify", None);
}

#[test]
fn gemma_scope_params_npz() {
    let sae = check_case(Case {
        kind: "gemma-scope",
        format: "gemma-scope",
        ..Case::default()
    });
    assert_eq!(sae.info.recorded_model.as_deref(), Some("gemma-2-2b"));
    assert_eq!(
        sae.info.hook,
        Some(HookPoint::parse("blocks.3.hook_resid_post", None).unwrap())
    );
    assert_eq!(sae.info.trained.prepend_bos, Some(true));
    assert_eq!(sae.info.trained.context_size, Some(1024));
}

#[test]
fn gemma_scope_2_params_safetensors() {
    let sae = check_case(Case {
        kind: "gemma-scope-2",
        format: "gemma-scope",
        ..Case::default()
    });
    assert_eq!(
        sae.info.recorded_model.as_deref(),
        Some("google/gemma-3-270m")
    );
    assert_eq!(
        sae.info.hook,
        Some(HookPoint::parse("blocks.3.hook_resid_post", None).unwrap())
    );
}

/// A tiny GPT-2 (LayerNorm) config of the SAEs' width.
fn layer_norm_model() -> serde_json::Value {
    json!({
        "model_type": "gpt2", "n_embd": D_IN, "n_head": 4, "n_layer": 4, "n_positions": 64,
        "n_ctx": 64, "layer_norm_epsilon": 1e-5, "vocab_size": 32,
    })
}

#[test]
fn center_writing_weights_centres_inputs_for_a_layer_norm_model() {
    let sae = check_case(Case {
        kind: "saelens-centered",
        format: "saelens",
        model: Some((layer_norm_model(), "openai-community/gpt2")),
        center: true,
        ..Case::default()
    });
    assert!(sae.info.trained.center_writing_weights);
}

#[test]
fn center_writing_weights_changes_nothing_on_an_rms_norm_model() {
    // TransformerLens skips centring without LayerNorm; so does saeidx.
    let config = json!({
        "model_type": "llama", "hidden_size": D_IN, "intermediate_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 4, "rms_norm_eps": 1e-5,
        "vocab_size": 32,
    });
    let sae = check_case(Case {
        kind: "saelens-centered",
        format: "saelens",
        model: Some((config, "gpt2")),
        center: false,
        ..Case::default()
    });
    assert!(sae.info.trained.center_writing_weights);
}

#[test]
fn expected_average_only_in_scales_by_the_release_factor() {
    let sae = check_case(Case {
        kind: "saelens-pre6-expected-average",
        format: "saelens",
        norm_scaling_factor: Some(1.75),
        ..Case::default()
    });
    // A pre-6 cfg: hook_point, and prepend_bos defaulted to true as SAELens does.
    assert_eq!(
        sae.info.recorded_hook.as_deref(),
        Some("blocks.3.hook_resid_pre")
    );
    assert_eq!(sae.info.trained.prepend_bos, Some(true));
    assert_eq!(sae.info.trained.context_size, Some(128));

    // Without the factor it is refused, saying where the factor is.
    let dir = tempfile::tempdir().unwrap();
    let folder = random_sae("saelens-pre6-expected-average", dir.path(), 2);
    let error = formats::load(
        &SaeSource::Local(folder),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .err()
    .expect("no factor, no SAE");
    assert!(error.to_string().contains("norm_scaling_factor"), "{error}");
}

#[test]
fn hook_head_index_reads_one_head_of_attn_hook_z() {
    // 4 heads of D_IN values each; the SAE reads head 1.
    let dir = tempfile::tempdir().unwrap();
    let folder = random_sae("saelens-head", dir.path(), 11);
    random::seed(6).unwrap();
    let x = random::normal::<f32>(&[TOKENS, 4 * D_IN], None, None, None)
        .unwrap()
        .multiply(Array::from_f32(2.0))
        .unwrap();
    let input = dir.path().join("x.safetensors");
    Array::save_safetensors([("x", &x)], None, &input).unwrap();
    let out = dir.path().join("codes.safetensors");
    reference(&[
        "--format",
        "saelens",
        "--sae",
        folder.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--head",
        "1",
        "--heads",
        "4",
    ]);
    let expected = Array::load_safetensors(&out).unwrap()["codes"].clone();
    let mut sae = formats::load(
        &SaeSource::Local(folder),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(sae.info.trained.hook_head_index, Some(1));
    let config = ModelConfig::from_value(json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 4, "head_dim": D_IN,
        "rms_norm_eps": 1e-5, "vocab_size": 32,
    }))
    .unwrap();
    let hook = HookPoint::parse("blocks.3.attn.hook_z", None).unwrap();
    let applied = formats::prepare(&mut sae, &config, "gpt2", hook, false).unwrap();
    assert!(applied[0].contains("hook_head_index 1"), "{applied:?}");
    let codes = sae.encode(&x).unwrap();
    let expected = expected.as_slice::<f32>();
    let mut active = 0;
    for t in 0..TOKENS as usize {
        let row = &expected[t * D_SAE as usize..(t + 1) * D_SAE as usize];
        let ours: Vec<(u32, f32)> = codes.token(t).collect();
        let want: Vec<u32> = (0..D_SAE as u32)
            .filter(|f| row[*f as usize] > 0.0)
            .collect();
        assert_eq!(
            ours.iter().map(|c| c.0).collect::<Vec<_>>(),
            want,
            "token {t}"
        );
        let largest = row.iter().fold(0f32, |m, v| m.max(*v));
        for (feature, value) in ours {
            assert!((value - row[feature as usize]).abs() <= 1e-5 * largest);
        }
        active += want.len();
    }
    assert!(active > TOKENS as usize);

    // Another hook, or a head the model lacks, is a mismatch.
    let one_head = ModelConfig::from_value(json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 4, "num_attention_heads": 1, "head_dim": D_IN,
        "rms_norm_eps": 1e-5, "vocab_size": 32,
    }))
    .unwrap();
    let residual = HookPoint::parse("blocks.3.hook_resid_post", None).unwrap();
    for (config, hook) in [(&config, residual), (&one_head, hook)] {
        let error = formats::prepare(&mut sae, config, "gpt2", hook, false).unwrap_err();
        assert!(error.to_string().contains("attention head 1"), "{error}");
    }
}

#[test]
fn unsupported_and_ambiguous_saes_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let gated = random_sae("saelens-gated", &dir.path().join("gated"), 1);
    let error = formats::load(
        &SaeSource::Local(gated),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .err()
    .expect("gated SAEs are refused");
    assert!(matches!(error, SaeError::Unsupported(_)), "{error}");

    let batchtopk = random_sae("mlxterp-batchtopk", &dir.path().join("btk"), 1);
    let error = formats::load(
        &SaeSource::Local(batchtopk),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .err()
    .expect("BatchTopK needs a threshold");
    assert!(
        error.to_string().contains("--batchtopk-threshold"),
        "{error}"
    );

    let error = formats::load(
        &SaeSource::Local(dir.path().to_path_buf()),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .err()
    .expect("an empty folder is no SAE");
    assert!(error.to_string().contains("holds no SAE"), "{error}");

    // An SAE on one head of the queries (hook_q): only attn.hook_z heads are read.
    let head = random_sae("saelens-standard", &dir.path().join("head"), 1);
    let cfg_path = head.join("cfg.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["metadata"]["hook_name"] = json!("blocks.3.attn.hook_q");
    cfg["metadata"]["hook_head_index"] = json!(2);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let error = formats::load(
        &SaeSource::Local(head),
        &HubSettings::from_env(),
        LoadOptions::default(),
    )
    .err()
    .expect("single-head SAEs on hook_q are refused");
    assert!(error.to_string().contains("attn.hook_q"), "{error}");
}
