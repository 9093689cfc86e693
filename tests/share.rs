//! Sharing an index through the `saeidx` binary: `publish` writes the folder to upload,
//! a local server on 127.0.0.1 answers the Hub's routes for it (`HF_ENDPOINT`), and
//! `fetch` downloads it into a fresh Hugging Face cache, verifies it and finds it again
//! offline; damaged, incomplete or misplaced repos are refused with clear errors. The
//! Neuronpedia export of the committed index is checked against its JSON Schemas and
//! against the index itself.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use saeidx_testkit::hub::{LocalHub, RepoKind, ServedRepo};
use saeidx_tests::{reference_python, repo_root, saeidx_binary};
use serde_json::Value;

/// Every file under `dir`, by path relative to it.
fn read_tree(dir: &Path, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            files.extend(read_tree(&path, &format!("{name}/")));
        } else {
            files.insert(name, fs::read(&path).unwrap());
        }
    }
    files
}

fn saeidx(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(saeidx_binary());
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("HF_HUB_OFFLINE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn ok(output: Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn failed(output: Output) -> String {
    assert_eq!(output.status.code(), Some(2), "an error exit");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const NEXT_COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

#[test]
fn published_indexes_fetch_from_a_local_hub_verified_and_offline() {
    let work = tempfile::tempdir().unwrap();
    let fixture = repo_root().join("tests/fixtures/index-v1");
    let upload = work.path().join("upload");
    let published = ok(saeidx(
        &[
            "publish",
            fixture.to_str().unwrap(),
            "--out",
            upload.to_str().unwrap(),
            "--repo-id",
            "team/sotu-index",
            "--json",
        ],
        work.path(),
        &[],
    ));
    assert!(
        published["upload"]
            .as_str()
            .unwrap()
            .starts_with("huggingface-cli upload team/sotu-index")
    );
    let card = fs::read_to_string(upload.join("README.md")).unwrap();
    assert!(
        card.contains("| tokenizer | SHA-256 `") && card.contains("saeidx fetch team/sotu-index")
    );

    let files = read_tree(&upload, "");
    let mut damaged = files.clone();
    let part = damaged.get_mut("activations/part-00000.parquet").unwrap();
    let middle = part.len() / 2;
    part[middle] ^= 0x04;
    let mut incomplete = files.clone();
    incomplete.remove("tokens/part-00001.parquet");
    let nested: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(name, bytes)| (format!("smollm2/layer1/{name}"), bytes.clone()))
        .collect();
    let repo = |repo_id: &str, commit: &str, files: BTreeMap<String, Vec<u8>>| ServedRepo {
        kind: RepoKind::Dataset,
        repo_id: repo_id.into(),
        commit: commit.into(),
        revisions: vec!["main".into(), "v1".into()],
        files,
    };
    let hub = LocalHub::start(vec![
        repo("team/sotu-index", COMMIT, files.clone()),
        repo("team/damaged", COMMIT, damaged),
        repo("team/incomplete", COMMIT, incomplete),
        repo("team/indexes", COMMIT, nested),
        repo("team/next", NEXT_COMMIT, files.clone()),
    ]);
    let endpoint = hub.endpoint().to_string();
    let hf_home = work.path().join("hf");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
    ];

    // Fetched into the cache, pinned to the commit, verified, and answering like the
    // original.
    let fetched = ok(saeidx(
        &["fetch", "team/sotu-index", "--json"],
        work.path(),
        &env,
    ));
    assert_eq!(fetched["commit"], COMMIT);
    assert_eq!(fetched["online"], true);
    assert!(fetched["query_bytes"].as_u64().unwrap() > 0);
    let cached = PathBuf::from(fetched["index"].as_str().unwrap());
    assert!(cached.starts_with(hf_home.join("hub/datasets--team--sotu-index/snapshots")));
    let top = |index: &Path| {
        ok(saeidx(
            &[
                "top-texts",
                "--feature",
                "0",
                "--k",
                "5",
                "--index",
                index.to_str().unwrap(),
                "--json",
            ],
            work.path(),
            &[],
        ))
    };
    assert_eq!(top(&cached), top(&fixture));
    assert!(
        hub.requests().iter().all(|url| !url.contains("README.md")),
        "only the index's files are downloaded"
    );

    // A folder of a repo, copied out as plain files; errors name the folders that
    // hold an index.
    let error = failed(saeidx(&["fetch", "team/indexes"], work.path(), &env));
    assert!(
        error.contains("these folders hold one: smollm2/layer1"),
        "{error}"
    );
    let plain = work.path().join("plain");
    let copied = ok(saeidx(
        &[
            "fetch",
            "team/indexes",
            "--revision",
            "v1",
            "--path",
            "smollm2/layer1",
            "--output",
            plain.to_str().unwrap(),
            "--json",
        ],
        work.path(),
        &env,
    ));
    assert_eq!(copied["index"], plain.to_str().unwrap());
    assert!(
        !fs::symlink_metadata(plain.join("manifest.json"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(top(&plain), top(&fixture));

    // Damaged, incomplete, unknown: refused, with what to do.
    let error = failed(saeidx(&["fetch", "team/damaged"], work.path(), &env));
    assert!(
        error.contains("does not verify") && error.contains("part-00000.parquet"),
        "{error}"
    );
    assert!(
        error.contains("delete") && error.contains("fetch again"),
        "{error}"
    );
    let error = failed(saeidx(&["fetch", "team/incomplete"], work.path(), &env));
    assert!(
        error.contains("tokens/part-00001.parquet is named by its manifest"),
        "{error}"
    );
    let error = failed(saeidx(
        &["fetch", "team/sotu-index", "--revision", "v9"],
        work.path(),
        &env,
    ));
    assert!(error.contains("team/sotu-index"), "{error}");
    ok(saeidx(&["fetch", "team/next", "--json"], work.path(), &env));

    // With the server gone and no HF_HUB_OFFLINE, the cached snapshot answers (with a
    // warning naming its commit), as huggingface_hub does.
    drop(hub);
    let output = saeidx(&["fetch", "team/sotu-index", "--json"], work.path(), &env);
    let warning = String::from_utf8_lossy(&output.stderr).into_owned();
    let again = ok(output);
    assert_eq!(
        (&again["online"], &again["commit"]),
        (&Value::Bool(false), &Value::from(COMMIT))
    );
    assert!(
        warning.contains(&format!("team/sotu-index@main at commit {COMMIT}")),
        "{warning}"
    );

    // Offline: the cache answers for the fetched revisions.
    let offline = [env[0], env[1], ("HF_HUB_OFFLINE", "1")];
    let again = ok(saeidx(
        &["fetch", "team/sotu-index", "--json"],
        work.path(),
        &offline,
    ));
    assert_eq!(again["online"], false);
    assert_eq!(again["index"], fetched["index"]);
    let next = ok(saeidx(
        &["fetch", "team/next", "--json"],
        work.path(),
        &offline,
    ));
    assert_eq!(next["commit"], NEXT_COMMIT);
    let error = failed(saeidx(
        &["fetch", "team/sotu-index", "--revision", "v2"],
        work.path(),
        &offline,
    ));
    assert!(error.contains("v2"), "{error}");
}

/// The lines of a jsonl.gz file.
fn gz_lines(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_neuronpedia_export_validates_and_matches_the_index() {
    let work = tempfile::tempdir().unwrap();
    let fixture = repo_root().join("tests/fixtures/index-v1");
    let index = work.path().join("index");
    copy_tree(&fixture, &index);
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--index", index.to_str().unwrap(), "--json"]);
        ok(saeidx(&all, work.path(), &[]))
    };
    let labelled_feature =
        cli(&["top-features", "--doc", "0", "--k", "1"])["features"][0]["feature"].to_string();
    let labelled = saeidx(
        &[
            "labels",
            "set",
            &labelled_feature,
            "--name",
            "nation words",
            "--description",
            "\"the Union\"",
            "--index",
            index.to_str().unwrap(),
        ],
        work.path(),
        &[],
    );
    assert!(labelled.status.success());
    let out = work.path().join("np");
    let exported = cli(&[
        "export",
        "neuronpedia",
        "--model-id",
        "tiny-llama",
        "--top",
        "4",
        "--bands",
        "3",
        "--per-band",
        "2",
        "--context",
        "6",
        "--features-per-batch",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]);
    let folder = out.join("tiny-llama/1-res-saeidx");
    assert_eq!(exported["folder"], folder.to_str().unwrap());

    // Every record against its JSON Schema (schemas/neuronpedia/).
    let status = Command::new(reference_python())
        .arg("-c")
        .arg(VALIDATE)
        .arg(repo_root().join("schemas/neuronpedia"))
        .arg(&folder)
        .status()
        .unwrap();
    assert!(status.success(), "the export matches the schemas");

    // And against the index: every live feature once, its statistics; every example's
    // tokens, values and maximum; ids unique; each batch's lines share their keys (the
    // importer takes a batch's columns from its first line).
    let mut features = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut examples: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    let batches = |kind: &str| {
        let mut files: Vec<PathBuf> = fs::read_dir(folder.join(kind))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };
    for file in batches("features") {
        let lines = gz_lines(&file);
        assert!(lines.len() <= 50);
        same_keys(&lines);
        for line in lines {
            let feature: u64 = line["index"].as_str().unwrap().parse().unwrap();
            assert!(features.insert(feature, line).is_none());
        }
    }
    for file in batches("activations") {
        let lines = gz_lines(&file);
        same_keys(&lines);
        for line in lines {
            assert!(ids.insert(line["id"].as_str().unwrap().to_string()));
            let feature: u64 = line["index"].as_str().unwrap().parse().unwrap();
            assert!(
                features.contains_key(&feature),
                "an example of an exported feature"
            );
            let values: Vec<f64> = line["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(values.len(), line["tokens"].as_array().unwrap().len());
            let max = values.iter().copied().fold(f64::MIN, f64::max);
            assert_eq!(line["maxValue"].as_f64().unwrap(), max);
            let at = line["maxValueTokenIndex"].as_u64().unwrap() as usize;
            assert_eq!(values[at], max);
            // The token the example was chosen for lies in its band.
            let hit = values[line["qualifyingTokenIndex"].as_u64().unwrap() as usize];
            assert!(hit > 0.0 && hit <= line["binMax"].as_f64().unwrap());
            let bin_min = line["binMin"].as_f64().unwrap();
            assert!(bin_min == -1.0 || hit >= bin_min);
            examples.entry(feature).or_default().push(line);
        }
    }
    let info = cli(&["info"]);
    assert_eq!(
        features.len() as u64,
        info["live_features"].as_u64().unwrap(),
        "every live feature"
    );
    for (feature, line) in &features {
        let report = cli(&["feature", &feature.to_string()]);
        assert_eq!(line["frac_nonzero"], report["stats"]["density"]);
        let as_f32 = |v: &Value| v.as_f64().unwrap() as f32;
        assert_eq!(
            as_f32(&line["maxActApprox"]),
            as_f32(&report["stats"]["max"])
        );
        assert_eq!(
            line["freq_hist_data_bar_heights"],
            report["stats"]["histogram"]
        );
        assert_eq!(line["layer"], "1-res-saeidx");
        assert_eq!(line["hookName"], "blocks.1.hook_resid_post");
        // The top examples are the index's top texts, strongest first.
        let top = cli(&["top-texts", "--feature", &feature.to_string(), "--k", "4"]);
        let tops: Vec<&Value> = examples[feature]
            .iter()
            .filter(|e| e["binMin"] == -1.0)
            .collect();
        let texts = top["texts"].as_array().unwrap();
        assert_eq!(tops.len(), texts.len());
        for (example, text) in tops.iter().zip(texts) {
            let at = example["qualifyingTokenIndex"].as_u64().unwrap() as usize;
            assert_eq!(as_f32(&example["values"][at]), as_f32(&text["activation"]));
            assert_eq!(example["dataIndex"], text["id"]);
            // The qualifying token is the hit: its piece ends with the hit's text.
            let snippet = &text["snippet"];
            let hit = snippet["text"]
                .as_str()
                .unwrap()
                .get(
                    snippet["hit_start"].as_u64().unwrap() as usize
                        ..snippet["hit_end"].as_u64().unwrap() as usize,
                )
                .unwrap();
            let piece = example["tokens"][at].as_str().unwrap();
            assert!(piece.ends_with(hit), "{piece:?} vs {hit:?}");
        }
    }
    let explanations: Vec<Value> = batches("explanations")
        .iter()
        .flat_map(|file| gz_lines(file))
        .collect();
    assert_eq!(explanations.len(), 1);
    assert_eq!(explanations[0]["index"], labelled_feature.as_str());
    assert_eq!(
        explanations[0]["description"],
        "nation words: \"the Union\""
    );
    for file in ["model.jsonl", "sourceset.jsonl", "source.jsonl"] {
        let text = fs::read_to_string(folder.join(file)).unwrap();
        assert_eq!(text.lines().count(), 1, "{file}: one JSON line");
    }
}

/// Asserts that all lines have the keys of the first.
fn same_keys(lines: &[Value]) {
    let keys =
        |line: &Value| -> Vec<String> { line.as_object().unwrap().keys().cloned().collect() };
    if let Some(first) = lines.first() {
        assert!(lines.iter().all(|line| keys(line) == keys(first)));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for (name, bytes) in read_tree(from, "") {
        let path = to.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

/// Validates every record of an export folder against the schemas (python jsonschema).
const VALIDATE: &str = r#"
import gzip, json, pathlib, sys
from jsonschema import Draft202012Validator
schemas, folder = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def validator(name):
    schema = json.loads((schemas / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
checked = 0
for name in ["model", "sourceset", "source"]:
    for line in (folder / f"{name}.jsonl").read_text().splitlines():
        validator(name).validate(json.loads(line)); checked += 1
for kind, name in [("features", "feature"), ("activations", "activation"), ("explanations", "explanation")]:
    v = validator(name)
    for path in sorted((folder / kind).glob("batch-*.jsonl.gz")):
        for line in gzip.open(path, "rt", encoding="utf-8"):
            v.validate(json.loads(line)); checked += 1
assert checked > 10, checked
print(f"{checked} records valid")
"#;
