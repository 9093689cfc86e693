//! Sharing an index through the `saeidx` binary: `publish` writes the folder to upload,
//! a local server on 127.0.0.1 answers the Hub's routes for it (`HF_ENDPOINT`), and
//! `fetch` downloads it into a fresh Hugging Face cache, verifies it and finds it again
//! offline; damaged, incomplete or misplaced repos are refused with clear errors. (The
//! Neuronpedia export is tested in `neuronpedia.rs`.)

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use saeidx_testkit::hub::{LocalHub, RepoKind, ServedRepo};
use saeidx_tests::{repo_root, saeidx_binary};
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

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
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

/// An index of segments is published, fetched (into the cache and as a plain folder)
/// and verified as a whole: exactly the segments `segments.json` names, with the
/// labels, answering like the index it was split from.
#[test]
fn an_index_of_segments_publishes_and_fetches_as_one_set() {
    use saeidx_format::segments::SegmentSet;
    use saeidx_testkit::synthetic::{SyntheticSpec, split_into_segments, write_synthetic_index};
    let work = tempfile::tempdir().unwrap();
    let whole = work.path().join("whole");
    let spec = SyntheticSpec {
        documents: 9,
        tokens_per_document: (3, 12),
        documents_per_part: 3,
        feature_weights: vec![1.0; 8],
        k: 2,
        value_step: 0.5,
        seed: 15,
    };
    write_synthetic_index(&whole, &spec).unwrap();
    saeidx_query::build(&whole).unwrap();
    let seg = work.path().join("seg");
    let set = split_into_segments(&whole, &seg, &[0..1, 1..3]).unwrap();
    for segment in &set.segments {
        saeidx_query::build(&SegmentSet::segment_dir(&seg, &segment.name)).unwrap();
    }
    let labels = r#"{"3": {"name": "three"}}"#;
    fs::write(seg.join("labels.json"), labels).unwrap();
    fs::write(whole.join("labels.json"), labels).unwrap();
    // A segment left behind by an interrupted run is not part of the index.
    fs::create_dir_all(seg.join("segments/stray")).unwrap();
    fs::write(seg.join("segments/stray/junk"), b"not published").unwrap();
    let upload = work.path().join("upload");
    ok(saeidx(
        &[
            "publish",
            seg.to_str().unwrap(),
            "--out",
            upload.to_str().unwrap(),
            "--json",
        ],
        work.path(),
        &[],
    ));
    let files = read_tree(&upload, "");
    assert!(files.contains_key("segments.json") && files.contains_key("labels.json"));
    assert!(files.contains_key("segments/seg-1/manifest.json"));
    assert!(files.keys().any(|f| f.starts_with("segments/seg-0/query/")));
    assert!(!files.keys().any(|f| f.contains("stray")));
    let card = String::from_utf8(files["README.md"].clone()).unwrap();
    assert!(card.contains("data_files: \"segments/*/activations/*.parquet\""));

    let hub = LocalHub::start(vec![ServedRepo {
        kind: RepoKind::Dataset,
        repo_id: "team/segments".into(),
        commit: COMMIT.into(),
        revisions: vec!["main".into()],
        files,
    }]);
    let endpoint = hub.endpoint().to_string();
    let hf_home = work.path().join("hf");
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
    ];
    let plain = work.path().join("plain");
    let fetched = ok(saeidx(
        &[
            "fetch",
            "team/segments",
            "--output",
            plain.to_str().unwrap(),
            "--json",
        ],
        work.path(),
        &env,
    ));
    assert!(fetched["query_bytes"].as_u64().unwrap() > 0);
    assert_eq!(fetched["verified"]["documents"], 9);
    let cached = PathBuf::from(fetched["index"].as_str().unwrap());
    assert_eq!(cached, plain);
    let answer = |index: &Path, question: &[&str]| {
        let mut args = question.to_vec();
        args.extend(["--index", index.to_str().unwrap(), "--json"]);
        ok(saeidx(&args, work.path(), &[]))
    };
    for question in [
        &["top-texts", "--feature", "3", "--k", "20"][..],
        &["top-texts", "--feature", "1", "--where", "tokens > 6"],
        &["feature", "3"],
        &["sample", "--n", "3"],
        &["labels", "get", "3"],
    ] {
        assert_eq!(
            answer(&plain, question),
            answer(&whole, question),
            "{question:?}"
        );
    }
    // Offline, the cached copy is found again and verified.
    let offline = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HOME", hf_home.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let again = ok(saeidx(
        &["fetch", "team/segments", "--json"],
        work.path(),
        &offline,
    ));
    assert_eq!(again["online"], false);
    assert_eq!(again["files"], fetched["files"]);
}
