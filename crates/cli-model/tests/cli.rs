//! `saeidx-model` end to end (the commands that run a model, which `saeidx` hands it):
//! output shapes, `--json`, exit codes and messages.

use std::process::{Command, Output};

use saeidx_assets::defaults::DEFAULT_MODEL_REPO;

fn saeidx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saeidx-model"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn inspect_prints_the_default_model_as_json() {
    let output = saeidx(&["model", "inspect", "--json", "--text", "Paris, 1790"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["source"], DEFAULT_MODEL_REPO);
    assert_eq!(report["config"]["num_hidden_layers"], 30);
    assert_eq!(report["checkpoint"]["parameters"], 134_515_008u64);
    let text = &report["texts"][0];
    assert_eq!(
        text["pieces"],
        serde_json::json!(["Paris", ",", " ", "1", "7", "9", "0"])
    );
    assert_eq!(text["ids"].as_array().unwrap().len(), 7);
}

#[test]
fn inspect_prints_text_for_people() {
    let output = saeidx(&["model", "inspect", "--text", "Hello"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("30 layers, d_model 576, 9 query / 3 key-value heads of 64"),
        "{stdout}"
    );
    assert!(
        stdout.contains("210 × 4-bit/g32, 1 × 8-bit/g32"),
        "{stdout}"
    );
}

#[test]
fn a_model_missing_offline_is_a_clear_error() {
    let output = saeidx(&["model", "inspect", "--model", "nobody/no-such-model"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("nobody/no-such-model@main is not in the Hugging Face cache"),
        "{message}"
    );
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
}

#[test]
fn converting_a_missing_gguf_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = saeidx(&[
        "convert-gguf",
        "/nonexistent/model.gguf",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/model.gguf"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn help_has_examples() {
    let output = saeidx(&["model", "inspect", "--help"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("Examples:"));
}

#[test]
fn activations_are_printed_per_token_as_json() {
    let output = saeidx(&[
        "activations",
        "--hook",
        "blocks.15.hook_resid_post",
        "--text",
        "The capital of France is Paris.",
        "--values",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["hook"], "blocks.15.hook_resid_post");
    assert_eq!(report["width"], 576);
    let tokens = report["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 7);
    assert_eq!(tokens[6]["text"], ".");
    for token in tokens {
        let values = token["values"].as_array().unwrap();
        assert_eq!(values.len(), 576);
        let norm: f64 = values
            .iter()
            .map(|v| v.as_f64().unwrap().powi(2))
            .sum::<f64>()
            .sqrt();
        let reported = token["norm"].as_f64().unwrap();
        assert!(
            (norm - reported).abs() <= 1e-3 * reported,
            "{norm} vs {reported}"
        );
    }
    // The first position is an attention sink: its residual norm dwarfs the others.
    let first = tokens[0]["norm"].as_f64().unwrap();
    let later = tokens[3]["norm"].as_f64().unwrap();
    assert!(first > 50.0 * later, "{first} vs {later}");
}

#[test]
fn activations_reject_bad_hooks_and_layers() {
    for (args, expected) in [
        (
            &["--hook", "mlp", "--layer", "30"][..],
            "layer 30 is out of range: the model has 30 layers",
        ),
        (&["--hook", "mlp"][..], "names a component but no layer"),
        (&["--hook", "blocks.3.hook_q"][..], "unknown hook"),
    ] {
        let mut full = vec!["activations", "--text", "Hi"];
        full.extend_from_slice(args);
        let output = saeidx(&full);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}
