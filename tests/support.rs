//! Helpers shared by the end-to-end tests: where the repository, the default assets and
//! the Python reference environment are.
//!
//! The tests run after `scripts/setup.sh --test-tools` (README command (b) does that);
//! when something it makes is missing, they fail with a message saying so.

use std::path::PathBuf;

use saeidx_assets::defaults::{AssetPaths, DEFAULT_MODEL_REPO};
use saeidx_model::hub::{self, HubSettings, ModelFiles, ModelSource};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(relative)
}

/// The default model's files, resolved through the Hugging Face cache, offline.
pub fn default_model() -> ModelFiles {
    let settings = HubSettings {
        offline: true,
        ..HubSettings::from_env()
    };
    let source = ModelSource::Hub {
        repo_id: DEFAULT_MODEL_REPO.to_string(),
        revision: None,
    };
    hub::resolve(&source, &settings).unwrap_or_else(|e| {
        panic!("{e}\nThe default model is made by `bash scripts/setup.sh`; run it first.")
    })
}

/// Where set-up put the default assets (`SAEIDX_ASSETS_DIR`, else `.assets/` in the
/// repository) and the Hugging Face cache.
pub fn asset_paths() -> AssetPaths {
    let assets_dir = std::env::var_os("SAEIDX_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".assets"));
    AssetPaths {
        assets_dir,
        hub_dir: HubSettings::from_env().cache_dir,
    }
}

/// The Python of the reference environment (`.venv`).
pub fn reference_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh --test-tools`",
        python.display()
    );
    python
}

/// Writes a small random f32 Llama (hidden size 64, `layers` layers) that uses the default
/// model's tokenizer, so that real text can run through it in milliseconds. Returns the
/// folder (`dir/model`).
pub fn tiny_text_model(dir: &std::path::Path, layers: usize) -> PathBuf {
    use mlx_rs::{Array, random};
    let folder = dir.join("model");
    std::fs::create_dir_all(&folder).unwrap();
    let tokenizer = default_model().tokenizer;
    std::fs::copy(&tokenizer, folder.join("tokenizer.json")).unwrap();
    let (hidden, ffn, heads, kv_heads, head_dim) = (64, 128, 4, 2, 16);
    let vocab = 49152;
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "rms_norm_eps": 1e-5,
        "vocab_size": vocab, "rope_theta": 10000.0, "max_position_embeddings": 2048,
        "tie_word_embeddings": true, "bos_token_id": 1,
    });
    random::seed(7).unwrap();
    let normal = |shape: &[i32], std: f32| -> Array {
        random::normal::<f32>(shape, None, None, None)
            .unwrap()
            .multiply(Array::from_f32(std))
            .unwrap()
    };
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert(
        "model.embed_tokens.weight".to_string(),
        normal(&[vocab, hidden], 0.5),
    );
    for layer in 0..layers {
        let p = format!("model.layers.{layer}");
        for (name, rows, cols) in [
            ("self_attn.q_proj", heads * head_dim, hidden),
            ("self_attn.k_proj", kv_heads * head_dim, hidden),
            ("self_attn.v_proj", kv_heads * head_dim, hidden),
            ("self_attn.o_proj", hidden, heads * head_dim),
            ("mlp.gate_proj", ffn, hidden),
            ("mlp.up_proj", ffn, hidden),
            ("mlp.down_proj", hidden, ffn),
        ] {
            tensors.insert(format!("{p}.{name}.weight"), normal(&[rows, cols], 0.1));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.insert(
                format!("{p}.{norm}.weight"),
                Array::ones::<f32>(&[hidden]).unwrap(),
            );
        }
    }
    tensors.insert(
        "model.norm.weight".to_string(),
        Array::ones::<f32>(&[hidden]).unwrap(),
    );
    Array::save_safetensors(&tensors, None, folder.join("model.safetensors")).unwrap();
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    folder
}

/// The `saeidx` binary built beside the test executables (`cargo build --release -p
/// saeidx-cli`; `scripts/test.sh` builds it first).
pub fn saeidx_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/PROFILE/deps");
    let binary = dir.join("saeidx");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --release -p saeidx-cli`",
        binary.display()
    );
    binary
}

pub mod webdriver;

/// Reading an index's Parquet rows directly (brute force, for cross-checks).
pub mod index_rows {
    use std::{fs::File, path::Path};

    use arrow_array::{Float32Array, LargeStringArray, UInt32Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn part_files(dir: &Path, table: &str) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(table))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// Every document `(doc, text)` of the index at `dir`.
    pub fn documents(dir: &Path) -> Vec<(u32, String)> {
        let mut rows = Vec::new();
        for file in part_files(dir, "documents") {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let column = |name: &str| batch.column_by_name(name).unwrap().as_any();
                let doc = column("doc").downcast_ref::<UInt32Array>().unwrap();
                let text = column("text").downcast_ref::<LargeStringArray>().unwrap();
                for i in 0..batch.num_rows() {
                    rows.push((doc.value(i), text.value(i).to_string()));
                }
            }
        }
        rows
    }

    /// Every activation row `(doc, position, feature, value)` of the index at `dir`.
    pub fn activations(dir: &Path) -> Vec<(u32, u32, u32, f32)> {
        let files = part_files(dir, "activations");
        let mut rows = Vec::new();
        for file in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let u32s = |name: &str| {
                    batch
                        .column_by_name(name)
                        .unwrap()
                        .as_any()
                        .downcast_ref::<UInt32Array>()
                        .unwrap()
                        .clone()
                };
                let (doc, position, feature) = (u32s("doc"), u32s("position"), u32s("feature"));
                let value = batch
                    .column_by_name("value")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .unwrap()
                    .clone();
                for i in 0..batch.num_rows() {
                    rows.push((
                        doc.value(i),
                        position.value(i),
                        feature.value(i),
                        value.value(i),
                    ));
                }
            }
        }
        rows
    }
}
