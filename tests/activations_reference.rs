//! Fidelity of saeidx's hooked activations against mlx-lm's own modules
//! (`scripts/reference/mlx_lm_hooks.py`), per token: ‖ours_t − ref_t‖ / ‖ref_t‖ ≤ 1e-3.
//!
//! saeidx runs texts of different lengths together in one right-padded batch; the
//! reference runs each alone, so padding and batching are checked too. Models: the real
//! default model (4-bit, dequantized at load) at its first, a middle and its last layer,
//! and tiny random Llamas written here (f32 with Llama 3 RoPE scaling, untied embeddings
//! and attention biases; bf16 in two shards; 4-bit quantized and tied, both weight
//! storages).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use mlx_rs::{Array, Dtype, ops, random};
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_model::{
    batch::PaddedBatch,
    checkpoint::Checkpoint,
    files::{self, ModelSource},
    hook::{HookKind, HookPoint},
    transformer::{Transformer, WeightStorage},
};
use saeidx_tests::{asset_paths, default_model, reference_python, repo_root};
use serde_json::json;

const TOLERANCE: f32 = 1e-3;

/// Runs both implementations and returns the largest per-token relative error per hook.
fn worst_errors(
    model: &Path,
    sequences: &[Vec<u32>],
    hooks: &BTreeSet<HookPoint>,
    storage: WeightStorage,
) -> BTreeMap<HookPoint, f32> {
    let files = files::resolve(
        &ModelSource::Local(model.to_path_buf()),
        &saeidx_hub::HubSettings::from_env(),
    )
    .unwrap();
    let deepest = hooks.iter().map(|h| h.layer).max();
    let transformer =
        Transformer::from_checkpoint(Checkpoint::load(files).unwrap(), deepest, storage).unwrap();
    let rows: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
    let batch = PaddedBatch::new(&rows).unwrap();
    let ours = transformer.forward(&batch.tokens, hooks).unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let request = scratch.path().join("request.json");
    let hook_list: Vec<_> = hooks
        .iter()
        .map(|h| json!({"layer": h.layer, "kind": h.kind.as_str()}))
        .collect();
    std::fs::write(
        &request,
        json!({"sequences": sequences, "hooks": hook_list}).to_string(),
    )
    .unwrap();
    let out = scratch.path().join("reference.safetensors");
    let status = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/mlx_lm_hooks.py"))
        .arg(model)
        .arg(&request)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "the mlx-lm reference failed");
    let reference = Array::load_safetensors(&out).unwrap();

    let mut worst = BTreeMap::new();
    for (hook, activations) in &ours {
        let rows = batch.unpad(activations).unwrap();
        let width = activations.shape()[2] as usize;
        let mut hook_worst = 0f32;
        for (index, row) in rows.iter().enumerate() {
            let expected = &reference[&format!("seq{index}.{}", hook.name())];
            assert_eq!(expected.dtype(), Dtype::Float32);
            let expected = expected.as_slice::<f32>();
            assert_eq!(expected.len(), row.len(), "{hook} seq {index}");
            for (t, (ours_t, ref_t)) in row.chunks(width).zip(expected.chunks(width)).enumerate() {
                let diff: f32 = ours_t.iter().zip(ref_t).map(|(a, b)| (a - b).powi(2)).sum();
                let norm: f32 = ref_t.iter().map(|b| b * b).sum();
                let relative = (diff / norm).sqrt();
                assert!(
                    relative <= TOLERANCE,
                    "{hook}, sequence {index}, token {t}: relative error {relative}"
                );
                hook_worst = hook_worst.max(relative);
            }
        }
        worst.insert(*hook, hook_worst);
    }
    assert_eq!(worst.len(), hooks.len());
    worst
}

fn all_kinds(layers: &[usize]) -> BTreeSet<HookPoint> {
    layers
        .iter()
        .flat_map(|&layer| HookKind::ALL.map(|kind| HookPoint { layer, kind }))
        .collect()
}

fn report(label: &str, worst: &BTreeMap<HookPoint, f32>) {
    for (hook, error) in worst {
        eprintln!("{label}  {hook:<28} worst per-token relative error {error:.2e}");
    }
}

#[test]
fn default_model_matches_mlx_lm_at_first_middle_and_last_layer() {
    let files = default_model();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer).unwrap();
    let corpus = std::fs::read_to_string(asset_paths().corpus()).unwrap();
    let address: serde_json::Value =
        serde_json::from_str(corpus.lines().nth(100).unwrap()).unwrap();
    let long_text: String = address["text"]
        .as_str()
        .unwrap()
        .chars()
        .take(1500)
        .collect();
    let texts = [
        "Paris",
        "The Eiffel Tower is a famous landmark in Paris, France.",
        "<|im_start|>user\nWhat is 12 × 34?<|im_end|>\n<|im_start|>assistant\n",
        long_text.as_str(),
    ];
    let sequences: Vec<Vec<u32>> = texts
        .iter()
        .map(|text| tokenizer.encode(text).unwrap().ids)
        .collect();
    assert!(
        sequences[3].len() > 250,
        "a long text to batch with short ones"
    );
    let worst = worst_errors(
        &files.dir,
        &sequences,
        &all_kinds(&[0, 15, 29]),
        WeightStorage::Float32,
    );
    report("default", &worst);
}

/// How a tiny test checkpoint stores its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tiny {
    /// f32, Llama 3 RoPE scaling, untied embeddings, attention biases.
    Float32,
    /// bf16, split into two shards with a `model.safetensors.index.json`.
    Bfloat16Sharded,
    /// MLX 4-bit (embedding 8-bit) with f16 scales like mlx-community's, tied.
    Quantized,
}

/// Writes a tiny random Llama folder stored as `variant` says.
fn tiny_llama(dir: &Path, variant: Tiny) {
    let quantized = variant == Tiny::Quantized;
    let (hidden, ffn, vocab, heads, kv_heads, head_dim, layers) = (64, 128, 96, 4, 2, 16, 3);
    let mut config = json!({
        "model_type": "llama", "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "rms_norm_eps": 1e-5,
        "vocab_size": vocab, "rope_theta": 10000.0, "max_position_embeddings": 512,
    });
    if quantized {
        config["tie_word_embeddings"] = json!(true);
        config["quantization"] = json!({"group_size": 32, "bits": 4, "model.embed_tokens": {"group_size": 32, "bits": 8}});
    } else if variant == Tiny::Float32 {
        config["tie_word_embeddings"] = json!(false);
        config["attention_bias"] = json!(true);
        config["rope_scaling"] = json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
        });
    } else {
        config["tie_word_embeddings"] = json!(true);
    }
    random::seed(variant as u64 + 3).unwrap();
    let normal = |shape: &[i32], std: f32| -> Array {
        random::normal::<f32>(shape, None, None, None)
            .unwrap()
            .multiply(Array::from_f32(std))
            .unwrap()
    };
    let mut tensors: BTreeMap<String, Array> = BTreeMap::new();
    let mut matrix = |path: String, rows: i32, cols: i32, bits: i32| {
        let weight = normal(&[rows, cols], 0.08);
        if quantized {
            let (w, scales, biases) = ops::quantize(&weight, 32, bits).unwrap();
            tensors.insert(format!("{path}.weight"), w);
            tensors.insert(
                format!("{path}.scales"),
                scales.as_dtype(Dtype::Float16).unwrap(),
            );
            tensors.insert(
                format!("{path}.biases"),
                biases.as_dtype(Dtype::Float16).unwrap(),
            );
        } else {
            tensors.insert(format!("{path}.weight"), weight);
        }
    };
    let q_width = heads * head_dim;
    let kv_width = kv_heads * head_dim;
    matrix("model.embed_tokens".into(), vocab, hidden, 8);
    for layer in 0..layers {
        let p = format!("model.layers.{layer}");
        matrix(format!("{p}.self_attn.q_proj"), q_width, hidden, 4);
        matrix(format!("{p}.self_attn.k_proj"), kv_width, hidden, 4);
        matrix(format!("{p}.self_attn.v_proj"), kv_width, hidden, 4);
        matrix(format!("{p}.self_attn.o_proj"), hidden, q_width, 4);
        matrix(format!("{p}.mlp.gate_proj"), ffn, hidden, 4);
        matrix(format!("{p}.mlp.up_proj"), ffn, hidden, 4);
        matrix(format!("{p}.mlp.down_proj"), hidden, ffn, 4);
    }
    if variant == Tiny::Float32 {
        matrix("lm_head".into(), vocab, hidden, 4);
    }
    for layer in 0..layers {
        let p = format!("model.layers.{layer}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.insert(
                format!("{p}.{norm}.weight"),
                normal(&[hidden], 0.1).add(Array::from_f32(1.0)).unwrap(),
            );
        }
        if variant == Tiny::Float32 {
            for (name, width) in [
                ("q_proj", q_width),
                ("k_proj", kv_width),
                ("v_proj", kv_width),
                ("o_proj", hidden),
            ] {
                tensors.insert(format!("{p}.self_attn.{name}.bias"), normal(&[width], 0.05));
            }
        }
    }
    tensors.insert(
        "model.norm.weight".into(),
        Array::ones::<f32>(&[hidden]).unwrap(),
    );
    Array::save_safetensors(&tensors, None, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    // The forward pass needs no tokenizer; the folder layout still has one.
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
}

#[test]
fn tiny_random_llamas_match_mlx_lm() {
    // Lengths up to 200 pass Llama 3 scaling's original context (64).
    let sequences: Vec<Vec<u32>> = [1usize, 5, 64, 200]
        .iter()
        .map(|&n| (0..n as u32).map(|i| (i * 37 + 11) % 96).collect())
        .collect();
    for variant in [Tiny::Float32, Tiny::Bfloat16Sharded, Tiny::Quantized] {
        let dir = tempfile::tempdir().unwrap();
        tiny_llama(dir.path(), variant);
        let storages: &[WeightStorage] = if variant == Tiny::Quantized {
            &[WeightStorage::Float32, WeightStorage::KeepQuantized]
        } else {
            &[WeightStorage::Float32]
        };
        for &storage in storages {
            let worst = worst_errors(dir.path(), &sequences, &all_kinds(&[0, 1, 2]), storage);
            report(&format!("tiny {variant:?} {storage:?}"), &worst);
        }
    }
}
