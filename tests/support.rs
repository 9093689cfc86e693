//! Helpers shared by the end-to-end tests: where the repository, the default assets and
//! the Python reference environment are.
//!
//! The tests run after `scripts/setup.sh --test-tools` (README command (b) does that);
//! when something it makes is missing, they fail with a message saying so.

use std::path::PathBuf;

use saeidx_assets::defaults::{AssetPaths, DEFAULT_MODEL_REPO};
use saeidx_hub::HubSettings;
use saeidx_model::files::{self, ModelFiles, ModelSource};

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
    files::resolve(&source, &settings).unwrap_or_else(|e| {
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

/// The `saeidx` binary built beside the test executables, with `saeidx-model` (the
/// commands that run a model, which `saeidx` hands over) beside it (`cargo build
/// --release -p saeidx-cli -p saeidx-cli-model`; `scripts/test.sh` builds them first).
pub fn saeidx_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/PROFILE/deps");
    for name in ["saeidx", "saeidx-model"] {
        let binary = dir.join(name);
        assert!(
            binary.is_file(),
            "{} is missing: build it with `cargo build --release -p saeidx-cli -p \
             saeidx-cli-model`",
            binary.display()
        );
    }
    dir.join("saeidx")
}

pub mod postgres;
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

/// Asserts two ranked lists of `(token, value)` agree: values within `tolerance`
/// position by position, and the same tokens in the same order except among near ties
/// (values within `tolerance` of each other, which float sums taken in another order may
/// swap, also across the lists' cut-off).
pub fn assert_same_ranking(ours: &[(u32, f32)], theirs: &[(u32, f32)], tolerance: f32, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: list lengths");
    let Some(&(_, last)) = theirs.last() else {
        return;
    };
    for (i, (&(id, value), &(their_id, their_value))) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (value - their_value).abs() <= tolerance,
            "{what}: value {i} is {value}, expected {their_value}"
        );
        if id == their_id {
            continue;
        }
        // Where their list has our token (or would, just past its end), its value ties.
        let partner = theirs.iter().find(|p| p.0 == id).map_or(last, |p| p.1);
        assert!(
            (partner - their_value).abs() <= tolerance,
            "{what}: token {i} is {id}, expected {their_id} (not a near tie: {partner} vs {their_value})"
        );
    }
}

/// The small index job of the end-to-end tests: a folder with a tiny random Llama (the
/// default tokenizer), a random mlxterp SAE, real text and a job file, and the helpers
/// that run `saeidx` on it and compare index folders.
pub mod job_fixture {
    use std::{
        collections::BTreeMap,
        fs,
        path::{Path, PathBuf},
        process::{Command, Output, Stdio},
    };

    use serde_json::Value;

    use crate::{asset_paths, reference_python, repo_root, saeidx_binary, tiny_text_model};

    /// A job folder: model, SAE, corpus and job file.
    pub struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        /// A new folder with a tiny model, a random SAE (256 features), a corpus and `job.toml`.
        pub fn create() -> Self {
            let dir = tempfile::tempdir().unwrap();
            tiny_text_model(dir.path(), 2);
            random_sae(&dir.path().join("sae"), 64);
            write_corpus(&dir.path().join("corpus"));
            let setup = Self { dir };
            setup.write_job("job.toml", "sae", "");
            setup
        }

        /// The folder.
        pub fn path(&self) -> &Path {
            self.dir.path()
        }

        /// Writes a job file `name` for the SAE folder `sae` (extra `[sae]` lines in
        /// `extra_sae`) that indexes into `out/index`, and returns its path.
        pub fn write_job(&self, name: &str, sae: &str, extra_sae: &str) -> PathBuf {
            let job = format!(
                r#"output = "out/index"
    hook = "blocks.1.hook_resid_post"

    [model]
    source = "model"

    [sae]
    path = "{sae}"
    allow_mismatch = true
    {extra_sae}

    [corpus]
    sources = [{{ path = "corpus" }}]
    on_bad_record = "skip"

    [run]
    part_bytes = 2000
    window_length = 64
    window_overlap = 8
    batch_tokens = 512
    "#
            );
            let path = self.path().join(name);
            fs::write(&path, job).unwrap();
            path
        }

        /// The default job file.
        pub fn job(&self) -> PathBuf {
            self.path().join("job.toml")
        }
    }

    /// A random mlxterp TopK SAE (k = 8, 256 features) written by the reference script.
    pub fn random_sae(out: &Path, d_in: usize) {
        random_sae_seeded(out, d_in, 3);
    }

    /// [`random_sae`] drawn with another seed.
    pub fn random_sae_seeded(out: &Path, d_in: usize, seed: u64) {
        fs::create_dir_all(out).unwrap();
        let status = Command::new(reference_python())
            .arg(repo_root().join("scripts/reference/sae_encode_reference.py"))
            .args(["--write-random", "mlxterp", "--d-in", &d_in.to_string()])
            .args(["--d-sae", "256", "--k", "8", "--seed", &seed.to_string()])
            .arg("--out-dir")
            .arg(out)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Real text (the default corpus's first address) cut into documents of varied length,
    /// one empty, in a JSONL file and a folder of text files.
    fn write_corpus(dir: &Path) {
        fs::create_dir_all(dir.join("notes")).unwrap();
        let corpus = asset_paths().corpus();
        let first = fs::read_to_string(&corpus)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", corpus.display()));
        let text: String = first
            .lines()
            .take(6)
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut lines = String::new();
        let mut start = 0;
        let lengths = [700, 0, 1500, 90, 2600, 400, 3100, 50, 1200, 800, 2000, 300];
        for (i, len) in lengths.iter().cycle().take(36).enumerate() {
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let doc = serde_json::json!({"id": format!("doc-{i}"), "text": &text[start..end]});
            lines.push_str(&doc.to_string());
            lines.push('\n');
            start = end;
        }
        fs::write(dir.join("addresses.jsonl"), lines).unwrap();
        fs::write(
            dir.join("notes/a.txt"),
            "Grüße aus Köln — naïve café, 東京 and emoji 🚀.\nSecond line\twith a tab.",
        )
        .unwrap();
        fs::write(dir.join("notes/b.txt"), &text[..1800]).unwrap();
    }

    /// Runs `saeidx ARGS` in `cwd`, offline.
    pub fn saeidx(args: &[&str], cwd: &Path) -> Output {
        Command::new(saeidx_binary())
            .args(args)
            .current_dir(cwd)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    }

    /// Runs `saeidx ARGS`, asserts success and returns its JSON output (or null).
    pub fn saeidx_ok(args: &[&str], cwd: &Path) -> Value {
        let output = saeidx(args, cwd);
        assert!(
            output.status.success(),
            "saeidx {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    /// Runs `saeidx ARGS`, asserts it fails with status 2 and returns its stderr.
    pub fn saeidx_err(args: &[&str], cwd: &Path) -> String {
        let output = saeidx(args, cwd);
        assert!(!output.status.success(), "saeidx {args:?} should fail");
        assert_eq!(
            output.status.code(),
            Some(2),
            "errors exit with 2, not a panic"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Every file of an index folder, relative path → bytes (the manifest without timings).
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                    continue;
                }
                let name = path.strip_prefix(root).unwrap().display().to_string();
                let mut bytes = fs::read(&path).unwrap();
                if name == "manifest.json" {
                    let mut manifest: Value = serde_json::from_slice(&bytes).unwrap();
                    manifest.as_object_mut().unwrap().remove("timings");
                    bytes = serde_json::to_vec_pretty(&manifest).unwrap();
                }
                out.insert(name, bytes);
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    /// Asserts two indexes' logit effects agree (`assert_same_ranking` per feature's top
    /// and bottom lists, values within 1e-5): computed by two processes (`run`, a resumed
    /// `run`, `query logits`), MLX's float sums have differed in the last bit on an AMD
    /// EPYC machine (earlier CI runs found the files byte-identical), which can swap near
    /// ties.
    pub fn assert_same_logit_effects(a: &Path, b: &Path) {
        let (a, b) = (
            saeidx_query::QueryIndex::open(a).unwrap(),
            saeidx_query::QueryIndex::open(b).unwrap(),
        );
        let pairs = |list: &[saeidx_query::LogitEffect]| -> Vec<(u32, f32)> {
            list.iter().map(|e| (e.token, e.value)).collect()
        };
        for feature in 0..a.d_sae() as u32 {
            let (ours, theirs) = (
                a.feature_logits(feature).unwrap().unwrap(),
                b.feature_logits(feature).unwrap().unwrap(),
            );
            for (what, x, y) in [
                ("top", &ours.top, &theirs.top),
                ("bottom", &ours.bottom, &theirs.bottom),
            ] {
                let what = format!("feature {feature} {what}");
                crate::assert_same_ranking(&pairs(x), &pairs(y), 1e-5, &what);
            }
        }
    }

    /// Asserts two index folders hold the same files with the same bytes (manifests
    /// compared without their timings; logit effects, which each process computes anew,
    /// by [`assert_same_logit_effects`]).
    pub fn assert_same_index(a: &Path, b: &Path) {
        let (left, right) = (snapshot(a), snapshot(b));
        assert_eq!(
            left.keys().collect::<Vec<_>>(),
            right.keys().collect::<Vec<_>>(),
            "the same files"
        );
        for (name, bytes) in &left {
            if name.ends_with(saeidx_format::logits::LOGIT_EFFECTS_FILE) {
                // The index folder holding this file's query/ folder.
                let index_of = |dir: &Path| {
                    dir.join(name)
                        .parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                        .to_path_buf()
                };
                assert_same_logit_effects(&index_of(a), &index_of(b));
                continue;
            }
            assert!(
                *bytes == right[name],
                "{name} differs between {} and {}",
                a.display(),
                b.display()
            );
        }
    }
}

/// Comparing the answers of two indexes (segmented or not) question by question.
pub mod segment_answers {
    use std::collections::BTreeSet;

    use saeidx_query::{
        DocRef, Exclusions, Rank, SegmentedIndex, Subject, TextHit, TopFeaturesRequest,
        TopTextsRequest,
    };

    /// A top-texts answer's hits as comparable rows, in answer order with ties (equal
    /// scores) sorted by document id and position: ties follow document order, and an
    /// appended index orders its documents by when they came.
    pub fn canonical(hits: &[TextHit]) -> Vec<(u32, u32, String, u32, u32, String)> {
        let mut rows: Vec<_> = hits
            .iter()
            .map(|h| {
                (
                    h.score.to_bits(),
                    h.activation.to_bits(),
                    h.id.clone(),
                    h.position,
                    h.token,
                    h.snippet.marked(),
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            f32::from_bits(b.0)
                .total_cmp(&f32::from_bits(a.0))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        rows
    }

    /// Asserts that every question answers the same on both indexes: every feature's
    /// top texts in all ranks (ties up to document order), statistics with their
    /// histograms and neighbours under both exclusions, the top features of every
    /// document in `ids`, and samples.
    pub fn same_answers(grown: &SegmentedIndex, fresh: &SegmentedIndex, ids: &BTreeSet<String>) {
        assert_eq!(grown.counts().unwrap(), fresh.counts().unwrap());
        assert_eq!(
            grown.live_features().unwrap(),
            fresh.live_features().unwrap()
        );
        for feature in 0..grown.d_sae() as u32 {
            for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
                let request = TopTextsRequest {
                    feature,
                    k: 10_000,
                    rank,
                    context: 3,
                    ..TopTextsRequest::default()
                };
                let (a, b) = (
                    grown.top_texts(&request).unwrap(),
                    fresh.top_texts(&request).unwrap(),
                );
                assert_eq!(canonical(&a.texts), canonical(&b.texts), "{request:?}");
                assert_eq!(a.label, b.label);
            }
            for exclusions in [
                Exclusions::default(),
                Exclusions {
                    special: false,
                    sinks: false,
                },
            ] {
                assert_eq!(
                    grown.feature_stats(feature, exclusions).unwrap(),
                    fresh.feature_stats(feature, exclusions).unwrap()
                );
                assert_eq!(
                    grown.neighbours(feature, 1000, exclusions).unwrap(),
                    fresh.neighbours(feature, 1000, exclusions).unwrap()
                );
            }
        }
        for id in ids {
            let doc = DocRef::Id(id.clone());
            let request = TopFeaturesRequest::default();
            let (mut a, mut b) = (
                grown.top_features(&doc, &request).unwrap(),
                fresh.top_features(&doc, &request).unwrap(),
            );
            for of in [&mut a.of, &mut b.of] {
                if let Subject::Document { doc, .. } = of {
                    *doc = 0;
                }
            }
            assert_eq!(a, b, "{id}");
        }
        for seed in 0..3 {
            let request = saeidx_query::SampleRequest {
                n: 8,
                seed,
                examples: 3,
                context: 2,
                ..saeidx_query::SampleRequest::default()
            };
            let (a, b) = (
                grown.sample(&request).unwrap(),
                fresh.sample(&request).unwrap(),
            );
            for (a, b) in a.features.iter().zip(&b.features) {
                assert_eq!(
                    (a.feature, &a.stats, &a.label),
                    (b.feature, &b.stats, &b.label)
                );
                let scores = |hits: &[TextHit]| hits.iter().map(|h| h.score).collect::<Vec<_>>();
                assert_eq!(scores(&a.top_texts), scores(&b.top_texts));
            }
            assert_eq!(a.features.len(), b.features.len());
        }
    }

    /// The ids of an index's live documents.
    pub fn live_ids(index: &SegmentedIndex) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        index
            .each_live_document(|_, id, _| {
                ids.insert(id.to_string());
            })
            .unwrap();
        ids
    }
}
