//! Published SAEs by SAELens release id, end to end through the `saeidx` binary, with a
//! local Hub server (`saeidx-testkit`) serving repos shaped like the published ones:
//!
//! - a GPT-2 model (Hugging Face layout) and `gpt2-small-res-jb/blocks.1.hook_resid_pre`,
//!   a SAELens folder whose release table says the SAE was trained on TransformerLens's
//!   centred residual stream and whose cfg (pre-6) implies BOS and 128-token contexts;
//! - a Gemma 2 model with `gemma-scope-2b-pt-res-canonical/layer_1/width_16k/canonical`
//!   and `gemma-scope-2b-pt-att/layer_1/...` (the heads' outputs, `attn.hook_z`), Gemma
//!   Scope `params.npz` files;
//! - Gemma Scope 2 repos (`params.safetensors` + `config.json`) resolved by release id in
//!   process, residual and attention.
//!
//! Each job names only the model and the release id; `saeidx run` resolves both through
//! the Hub, and the index it writes must hold exactly the codes that the NumPy reference
//! of the SAE's format (`sae_encode_reference.py`) gives for the model's activations with
//! the settings the SAE was trained with (BOS first, inputs centred for the GPT-2 one).
//! Live answers for a document's text must equal the indexed ones.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use mlx_rs::Array;
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_hub::HubSettings;
use saeidx_model::{
    batch::PaddedBatch,
    checkpoint::Checkpoint,
    files::{self, ModelSource},
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    releases::ReleaseTable,
};
use saeidx_testkit::hub::{LocalHub, RepoKind, ServedRepo};
use saeidx_tests::{default_model, index_rows, reference_python, repo_root, saeidx_binary};
use serde_json::Value;

const TEXTS: &[&str] = &[
    "The Congress shall have power to lay and collect taxes.",
    "Our economy grew last year, and more Americans found work.",
    "Paris is the capital of France, and Rome is the capital of Italy.",
    "We must protect the rights of every citizen in every state.",
    "The budget deficit fell by half over the last four years.",
];

/// A two-layer random model of `family` with the default tokenizer, in the HF layout.
fn text_model(out: &Path, family: &str) -> PathBuf {
    let tokenizer = default_model().tokenizer;
    let status = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/family_fixtures.py"))
        .arg(out)
        .args(["--text-model", family, "--vocab", "49152", "--tokenizer"])
        .arg(&tokenizer)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the {family} model was not written");
    out.to_path_buf()
}

/// A random SAE of `kind` (`d_in` inputs, 256 features) for `layer`; returns its folder.
fn random_sae(out: &Path, kind: &str, layer: usize, d_in: usize) -> PathBuf {
    let output = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/sae_encode_reference.py"))
        .args(["--write-random", kind, "--d-in", &d_in.to_string()])
        .args(["--d-sae", "256", "--k", "8"])
        .args(["--seed", "3", "--layer", &layer.to_string(), "--out-dir"])
        .arg(out)
        .output()
        .unwrap();
    assert!(output.status.success());
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// A repo holding the files of `folder` under `prefix/`.
fn repo_with_folder(repo_id: &str, prefix: &str, folder: &Path) -> ServedRepo {
    let files: BTreeMap<String, Vec<u8>> = fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (format!("{prefix}/{name}"), fs::read(&path).unwrap())
        })
        .collect();
    ServedRepo::new(RepoKind::Model, repo_id, files)
}

/// Writes the corpus and a job naming `model` and `release` at `hook` into `dir`
/// (creating it); returns the job.
fn write_job(dir: &Path, model: &str, release: &str, hook: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let corpus: String = TEXTS
        .iter()
        .enumerate()
        .map(|(i, text)| {
            format!(
                "{}\n",
                serde_json::json!({"id": format!("d{i}"), "text": text})
            )
        })
        .collect();
    fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let job = format!(
        "output = \"out/index\"\nhook = \"{hook}\"\n\n[model]\nsource = \"{model}\"\n\n\
         [sae]\nrelease = \"{release}\"\n\n[corpus]\nsources = [{{ path = \"corpus.jsonl\" }}]\n\n\
         [run]\nbatch_tokens = 512\n"
    );
    let path = dir.join("job.toml");
    fs::write(&path, job).unwrap();
    path
}

/// Runs `saeidx ARGS` against the local Hub, with a fresh cache.
fn saeidx(args: &[&str], cwd: &Path, hub: &LocalHub) -> Output {
    Command::new(saeidx_binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", cwd.join("hf"))
        .output()
        .unwrap()
}

fn ok(output: Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// What the reference gives for document `doc`: the model's activations at `hook` for
/// BOS + the text's tokens, encoded by the NumPy reference with `extra` options.
fn reference_codes(
    model_dir: &Path,
    sae: &Path,
    format: &str,
    extra: &[&str],
    hook: HookPoint,
    text: &str,
    scratch: &Path,
) -> Vec<Vec<(u32, f32)>> {
    let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json")).unwrap();
    let mut ids = vec![0u32];
    ids.extend(tokenizer.encode(text).unwrap().ids);
    let files = files::resolve(
        &ModelSource::Local(model_dir.to_path_buf()),
        &HubSettings::from_env(),
    )
    .unwrap();
    let model = Transformer::from_checkpoint(
        Checkpoint::load(files).unwrap(),
        Some(hook.layer),
        WeightStorage::Float32,
    )
    .unwrap();
    let batch = PaddedBatch::new(&[&ids]).unwrap();
    let out = model
        .forward(&batch.tokens, &BTreeSet::from([hook]))
        .unwrap();
    let values = batch.unpad(&out[&hook]).unwrap().remove(0);
    let width = values.len() / ids.len();
    let x = Array::from_slice(&values, &[ids.len() as i32, width as i32]);
    let (input, codes) = (
        scratch.join("x.safetensors"),
        scratch.join("codes.safetensors"),
    );
    Array::save_safetensors([("x", &x)], None, &input).unwrap();
    let status = Command::new(reference_python())
        .arg(repo_root().join("scripts/reference/sae_encode_reference.py"))
        .args(["--format", format, "--sae"])
        .arg(sae)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&codes)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
    let codes = Array::load_safetensors(&codes).unwrap()["codes"].clone();
    codes
        .as_slice::<f32>()
        .chunks(256)
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(f, v)| (f as u32, *v))
                .collect()
        })
        .collect()
}

/// Asserts that every document's indexed codes are the reference's (values are stored
/// with 11 significant bits).
fn assert_index_matches(index: &Path, expected: impl Fn(&str) -> Vec<Vec<(u32, f32)>>) {
    let documents = index_rows::documents(index);
    let rows = index_rows::activations(index);
    assert_eq!(documents.len(), TEXTS.len());
    for (doc, text) in documents {
        let want = expected(&text);
        let mut got = vec![Vec::new(); want.len()];
        for &(_, position, feature, value) in rows.iter().filter(|r| r.0 == doc) {
            got[position as usize].push((feature, value));
        }
        for (position, (got, want)) in got.iter_mut().zip(&want).enumerate() {
            // The index alternates the feature order by position; compare in id order.
            got.sort_by_key(|code| code.0);
            let features = |codes: &[(u32, f32)]| codes.iter().map(|c| c.0).collect::<Vec<_>>();
            assert_eq!(
                features(got),
                features(want),
                "doc {doc} position {position}"
            );
            let largest = want.iter().fold(0f32, |m, c| m.max(c.1));
            for (g, w) in got.iter().zip(want.iter()) {
                assert!((g.1 - w.1).abs() <= 1e-3 * largest, "{g:?} vs {w:?}");
            }
        }
        assert!(
            want.iter().map(Vec::len).sum::<usize>() > want.len(),
            "active features"
        );
    }
}

/// `top-features` of document `doc` from the index equals the live answer for its text.
fn assert_live_answers_match(dir: &Path, hub: &LocalHub, doc: u64, text: &str) {
    let features = |args: &[&str]| -> Vec<u64> {
        let mut all = args.to_vec();
        all.extend(["--index", "out/index", "--k", "5", "--json"]);
        ok(saeidx(&all, dir, hub), "top-features")["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["feature"].as_u64().unwrap())
            .collect()
    };
    let indexed = features(&["top-features", "--doc", &doc.to_string()]);
    assert!(!indexed.is_empty());
    assert_eq!(indexed, features(&["top-features", "--text", text]));
}

#[test]
fn a_gpt2_job_with_a_saelens_release_id_indexes_and_answers() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let model = text_model(&dir.join("gpt2"), "gpt2");
    let id = "gpt2-small-res-jb/blocks.1.hook_resid_pre";
    let release = ReleaseTable::current().unwrap().resolve(id).unwrap();
    let sae = random_sae(&dir.join("sae"), "saelens-pre6", 1, 64);
    let hub = LocalHub::start(vec![
        ServedRepo::from_folder(RepoKind::Model, "openai-community/gpt2", &model).unwrap(),
        repo_with_folder(&release.repo_id, &release.folder, &sae),
    ]);
    let job = write_job(dir, "openai-community/gpt2", id, "blocks.1.hook_resid_pre");
    ok(
        saeidx(&["run", job.to_str().unwrap(), "--json"], dir, &hub),
        "run",
    );

    let index = dir.join("out/index");
    let manifest: Value =
        serde_json::from_slice(&fs::read(index.join("manifest.json")).unwrap()).unwrap();
    let job = &manifest["job"];
    assert!(
        job["sae"]["source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id} = jbloom/GPT2-Small-SAEs-Reformatted/")),
        "{}",
        job["sae"]["source"]
    );
    assert_eq!(job["model"]["model_type"], "gpt2");
    assert_eq!(job["window"]["length"], 128, "the SAE's context_size");
    assert_eq!(job["tokenizer"]["added_ids"], serde_json::json!([0]), "BOS");
    let settings = job["sae"]["settings"].to_string();
    for applied in [
        "input is centred per token",
        "prepend_bos",
        "window_length 128",
    ] {
        assert!(settings.contains(applied), "{applied}: {settings}");
    }
    ok(
        saeidx(&["verify", "out/index", "--json"], dir, &hub),
        "verify",
    );

    let hook = HookPoint::parse("blocks.1.hook_resid_pre", None).unwrap();
    assert_index_matches(&index, |text| {
        reference_codes(&model, &sae, "saelens", &["--center"], hook, text, dir)
    });
    assert_live_answers_match(dir, &hub, 2, TEXTS[2]);
}

#[test]
fn gemma_2_jobs_with_gemma_scope_release_ids_index_and_answer() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let model = text_model(&dir.join("gemma"), "gemma2");
    let table = ReleaseTable::current().unwrap();
    // The residual stream (64 wide) and the attention heads' outputs (4 × 24).
    let residual = "gemma-scope-2b-pt-res-canonical/layer_1/width_16k/canonical";
    let heads = "gemma-scope-2b-pt-att/layer_1/width_16k/average_l0_20";
    let (residual_release, heads_release) = (
        table.resolve(residual).unwrap(),
        table.resolve(heads).unwrap(),
    );
    let residual_sae = random_sae(&dir.join("sae-res"), "gemma-scope", 1, 64);
    let heads_sae = random_sae(&dir.join("sae-att"), "gemma-scope", 1, 96);
    let hub = LocalHub::start(vec![
        ServedRepo::from_folder(RepoKind::Model, "google/gemma-2-2b", &model).unwrap(),
        repo_with_folder(
            &residual_release.repo_id,
            &residual_release.folder,
            &residual_sae,
        ),
        repo_with_folder(&heads_release.repo_id, &heads_release.folder, &heads_sae),
    ]);
    for (id, sae, hook, width) in [
        (residual, &residual_sae, "blocks.1.hook_resid_post", None),
        (heads, &heads_sae, "blocks.1.attn.hook_z", Some(96)),
    ] {
        let job_dir = dir.join(if width.is_some() { "att" } else { "res" });
        let job = write_job(&job_dir, "google/gemma-2-2b", id, hook);
        ok(
            saeidx(&["run", job.to_str().unwrap(), "--json"], &job_dir, &hub),
            "run",
        );
        let index = job_dir.join("out/index");
        let manifest: Value =
            serde_json::from_slice(&fs::read(index.join("manifest.json")).unwrap()).unwrap();
        let job = &manifest["job"];
        assert_eq!(job["sae"]["format"], "gemma-scope");
        assert_eq!(job["hook"], hook);
        assert_eq!(job["model"]["model_type"], "gemma2");
        assert_eq!(job["model"]["hook_width"], serde_json::json!(width));
        assert_eq!(job["window"]["length"], 256, "context_size 1024 is longer");
        assert_eq!(job["tokenizer"]["added_ids"], serde_json::json!([0]), "BOS");
        ok(
            saeidx(&["verify", "out/index", "--json"], &job_dir, &hub),
            "verify",
        );

        let hook = HookPoint::parse(hook, None).unwrap();
        assert_index_matches(&index, |text| {
            reference_codes(&model, sae, "gemma-scope", &[], hook, text, &job_dir)
        });
        assert_live_answers_match(&job_dir, &hub, 0, TEXTS[0]);
    }
}

#[test]
fn gemma_scope_2_release_ids_load_from_the_hub() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let table = ReleaseTable::current().unwrap();
    let residual = table
        .resolve("gemma-scope-2-270m-pt-res/layer_12_width_16k_l0_big")
        .unwrap();
    let attention = table
        .resolve("gemma-scope-2-270m-pt-att/layer_12_width_16k_l0_big")
        .unwrap();
    assert_eq!(residual.repo_id, attention.repo_id);
    let sae = random_sae(&dir.join("sae"), "gemma-scope-2", 12, 64);
    let mut files = BTreeMap::new();
    for folder in [&residual.folder, &attention.folder] {
        for file in ["params.safetensors", "config.json"] {
            files.insert(
                format!("{folder}/{file}"),
                fs::read(sae.join(file)).unwrap(),
            );
        }
    }
    let hub = LocalHub::start(vec![ServedRepo::new(
        RepoKind::Model,
        &residual.repo_id,
        files,
    )]);
    let settings = HubSettings {
        cache_dir: dir.join("hf/hub"),
        offline: false,
        token: None,
        endpoint: hub.endpoint().to_string(),
        timeout: std::time::Duration::from_secs(5),
    };
    let load = |id: &str| {
        formats::load(
            &SaeSource::parse(id, None),
            &settings,
            LoadOptions::default(),
        )
    };
    let id = "gemma-scope-2-270m-pt-res/layer_12_width_16k_l0_big";
    let loaded = load(id).unwrap();
    assert_eq!(loaded.info.format, "gemma-scope");
    assert_eq!(
        loaded.info.recorded_model.as_deref(),
        Some("google/gemma-3-270m")
    );
    assert_eq!(
        loaded.info.recorded_hook.as_deref(),
        Some("blocks.12.hook_resid_post")
    );
    assert!(
        loaded
            .info
            .source
            .starts_with(&format!("{id} = google/gemma-scope-2-270m-pt/"))
    );
    let heads = load("gemma-scope-2-270m-pt-att/layer_12_width_16k_l0_big").unwrap();
    assert_eq!(
        heads.info.recorded_hook.as_deref(),
        Some("blocks.12.attn.hook_z")
    );
}
