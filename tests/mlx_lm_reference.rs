//! mlx-lm (Python) loads the converted default model from the Hugging Face cache by repo
//! id, offline, and `scripts/reference/mlx_lm_check.py` confirms the conversion
//! numerically: its logits equal those of a model built directly from the GGUF
//! (dequantized by gguf-py, run in llama.cpp's layout), and its tokenizer as mlx-lm loads
//! it reproduces the reference ids.

use std::process::Command;

use saeidx_assets::defaults::DEFAULT_MODEL_REPO;
use saeidx_tests::{asset_paths, fixture, reference_python, repo_root};

#[test]
fn mlx_lm_loads_the_default_model_and_agrees_with_the_gguf() {
    let gguf = asset_paths().gguf();
    assert!(
        gguf.is_file(),
        "{} is missing: run scripts/setup.sh",
        gguf.display()
    );
    let output = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/mlx_lm_check.py"))
        .arg(DEFAULT_MODEL_REPO)
        .arg("--gguf")
        .arg(&gguf)
        .arg("--fixture")
        .arg(fixture("tokenizer/smollm2_reference_ids.json"))
        .arg("--json")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the reference Python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{stderr}"));

    assert_eq!(report["config"]["num_hidden_layers"], 30);
    assert_eq!(report["config"]["quantization"]["bits"], 4);
    assert_eq!(
        report["config"]["quantization"]["model.embed_tokens"]["bits"],
        8
    );
    let diff = report["max_abs_logit_diff"].as_f64().unwrap();
    assert!(diff < 1e-3, "logits differ from the GGUF's by {diff}");
    // A correct conversion scores ≈2.46 nats on the check sentence, one with the q/k
    // rows left permuted ≈2.71.
    let loss = report["loss_nats"].as_f64().unwrap();
    assert!(loss < 2.6, "loss {loss}");
    assert_eq!(report["tokenizer_mismatches"], serde_json::json!([]));
    assert!(
        report["generated"].as_str().unwrap().contains("Paris"),
        "{}",
        report["generated"]
    );
    assert_eq!(report["ok"], true);
    assert!(output.status.success(), "{stderr}");
}
