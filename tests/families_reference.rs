//! Fidelity of every supported model family against mlx-lm, per token:
//! ‖ours_t − ref_t‖ / ‖ref_t‖ ≤ 1e-4 in f32, at every hook kind of every layer.
//!
//! One Python process (`scripts/reference/family_fixtures.py`) makes a tiny random
//! checkpoint of each family with mlx-lm's own model classes, writes it in the Hugging
//! Face layout (f32, or bf16 in two shards for GPT-2), the MLX layout (f32) and
//! mlx-community's 4-bit quantization (embeddings at 8 bits), loads each back with
//! mlx-lm, and records the hook activations of mlx-lm's own forward pass on each
//! sequence alone. saeidx runs the sequences together, right-padded, from both layouts
//! and the quantized folder (dequantized at load, and kept quantized).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use mlx_rs::Array;
use saeidx_model::{
    batch::PaddedBatch,
    checkpoint::Checkpoint,
    files::{self, ModelSource},
    hook::{HookKind, HookPoint},
    transformer::{Transformer, WeightStorage},
};
use saeidx_tests::{reference_python, repo_root};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

/// The largest per-token relative error of each hook, for one checkpoint folder.
fn worst_errors(
    folder: &Path,
    reference: &Path,
    sequences: &[Vec<u32>],
    hooks: &BTreeSet<HookPoint>,
    storage: WeightStorage,
) -> Result<BTreeMap<HookPoint, f32>, String> {
    let files = files::resolve(
        &ModelSource::Local(folder.to_path_buf()),
        &saeidx_hub::HubSettings::from_env(),
    )
    .map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::load(files).map_err(|e| e.to_string())?;
    let model =
        Transformer::from_checkpoint(checkpoint, None, storage).map_err(|e| e.to_string())?;
    let rows: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
    let batch = PaddedBatch::new(&rows).unwrap();
    let ours = model
        .forward(&batch.tokens, hooks)
        .map_err(|e| e.to_string())?;
    let expected = Array::load_safetensors(reference).unwrap();
    let mut worst = BTreeMap::new();
    for (hook, activations) in &ours {
        let width = activations.shape()[2] as usize;
        let mut hook_worst = 0f32;
        for (index, row) in batch.unpad(activations).unwrap().iter().enumerate() {
            let reference = expected[&format!("seq{index}.{}", hook.name())].as_slice::<f32>();
            if reference.len() != row.len() {
                return Err(format!(
                    "{hook} seq {index}: {} values, expected {}",
                    row.len(),
                    reference.len()
                ));
            }
            for (ours_t, ref_t) in row.chunks(width).zip(reference.chunks(width)) {
                let diff: f32 = ours_t.iter().zip(ref_t).map(|(a, b)| (a - b).powi(2)).sum();
                let norm: f32 = ref_t.iter().map(|b| b * b).sum();
                hook_worst = hook_worst.max((diff / norm).sqrt());
            }
        }
        worst.insert(*hook, hook_worst);
    }
    Ok(worst)
}

#[test]
fn every_family_matches_mlx_lm_in_both_layouts_and_quantized() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/family_fixtures.py"))
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the mlx-lm fixtures failed");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    let sequences: Vec<Vec<u32>> = serde_json::from_value(manifest["sequences"].clone()).unwrap();
    let layers = manifest["layers"].as_u64().unwrap() as usize;
    let mut failures = Vec::new();
    let mut families = BTreeSet::new();
    for case in manifest["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        families.insert(case["model_type"].as_str().unwrap().to_string());
        let kinds: Vec<HookKind> = HookKind::ALL
            .into_iter()
            .filter(|kind| {
                case["kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == kind.as_str())
            })
            .collect();
        let hooks: BTreeSet<HookPoint> = (0..layers)
            .flat_map(|layer| kinds.iter().map(move |&kind| HookPoint { layer, kind }))
            .collect();
        let dir = out.path().join(name);
        let runs = [
            ("hf", "reference.safetensors", WeightStorage::Float32),
            ("mlx", "reference.safetensors", WeightStorage::Float32),
            ("mlx-q4", "reference-q4.safetensors", WeightStorage::Float32),
            (
                "mlx-q4",
                "reference-q4.safetensors",
                WeightStorage::KeepQuantized,
            ),
        ];
        for (folder, reference, storage) in runs {
            let label = format!("{name}/{folder} {storage:?}");
            match worst_errors(
                &dir.join(folder),
                &dir.join(reference),
                &sequences,
                &hooks,
                storage,
            ) {
                Err(error) => failures.push(format!("{label}: {error}")),
                Ok(worst) => {
                    let max = worst.values().fold(0f32, |a, &b| a.max(b));
                    eprintln!(
                        "{label:<40} worst per-token relative error {max:.2e} over {} hooks",
                        worst.len()
                    );
                    for (hook, error) in worst.iter().filter(|(_, e)| **e > TOLERANCE) {
                        failures.push(format!("{label}: {hook} relative error {error:.2e}"));
                    }
                }
            }
        }
        for deviation in case["deviations"].as_array().unwrap() {
            eprintln!("{name}: reference follows the checkpoint's definition: {deviation}");
        }
    }
    let expected: BTreeSet<String> = [
        "llama",
        "gpt2",
        "gpt_neox",
        "gemma2",
        "gemma3_text",
        "gemma3",
        "qwen2",
        "qwen3",
        "phi3",
        "olmo2",
    ]
    .map(String::from)
    .into();
    assert_eq!(families, expected);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
