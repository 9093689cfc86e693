//! The index job end to end, through the `saeidx` binary, on a small random Llama that
//! uses the default tokenizer, a random mlxterp SAE and real text: verification, DuckDB
//! reading the Parquet, kill -9 at several points and resume, shards published as
//! segments and compacted, and
//! damaged or mismatched inputs refused with clear errors.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use saeidx_query::{SegmentedIndex, TopTextsRequest};
use saeidx_testkit::llm::{FakeLlm, sensible};
use saeidx_tests::{
    job_fixture::{Setup, assert_same_index, random_sae, saeidx, saeidx_err, saeidx_ok},
    reference_python, repo_root, saeidx_binary,
    segment_answers::{live_ids, same_answers},
};
use serde_json::Value;

#[test]
fn index_verifies_and_reads_in_duckdb() {
    let setup = Setup::create();
    let job = setup.job();
    let summary = saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    let index = setup.path().join("out/index");
    let counts = &summary["counts"];
    let (documents, tokens, nonzeros) = (
        counts["documents"].as_u64().unwrap(),
        counts["tokens"].as_u64().unwrap(),
        counts["nonzeros"].as_u64().unwrap(),
    );
    assert_eq!(documents, 38, "36 JSONL documents and 2 text files");
    assert!(tokens > 5_000 && nonzeros >= 8 * tokens, "{summary}");
    assert!(
        counts["parts"].as_u64().unwrap() >= 12,
        "small parts: {summary}"
    );
    let verified = saeidx_ok(&["verify", index.to_str().unwrap(), "--json"], setup.path());
    assert_eq!(verified["checked"]["nonzeros"].as_u64(), Some(nonzeros));

    // The manifest and the job file follow their schemas in schemas/.
    let validate = r#"
import json, sys, tomllib, jsonschema
schemas, index, job = sys.argv[1:4]
def check(schema, value):
    schema = json.load(open(f"{schemas}/{schema}"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
check("index/manifest.schema.json", json.load(open(f"{index}/manifest.json")))
check("index/query/manifest.schema.json", json.load(open(f"{index}/query/manifest.json")))
check("job.schema.json", tomllib.load(open(job, "rb")))
for path in sorted(__import__("glob").glob(sys.argv[4] + "/pipelines/*.toml")):
    check("job.schema.json", tomllib.load(open(path, "rb")))
"#;
    let output = Command::new(reference_python())
        .args(["-c", validate])
        .arg(repo_root().join("schemas"))
        .arg(&index)
        .arg(&job)
        .arg(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "schema validation: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Rerunning a finished job does nothing.
    let again = saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    assert_eq!(again["up_to_date"], Value::Bool(true));

    // DuckDB reads the folder as plain Parquet: counts, a top-k and a join agree.
    let script = r#"
import duckdb, json, sys
root = sys.argv[1]
con = duckdb.connect()
act = f"read_parquet('{root}/activations/*.parquet')"
tok = f"read_parquet('{root}/tokens/*.parquet')"
doc = f"read_parquet('{root}/documents/*.parquet')"
count = lambda t: con.execute(f"select count(*) from {t}").fetchone()[0]
feature = con.execute(f"select feature from {act} group by feature order by count(*) desc, feature limit 1").fetchone()[0]
top = con.execute(f"select doc, position, value from {act} where feature = {feature} order by value desc, doc, position limit 10").fetchall()
joined = con.execute(f"""select d.id, substr(d.text, t.start + 1, t."end" - t.start)
    from {act} a join {tok} t using (doc, position) join {doc} d using (doc)
    where a.feature = {feature} order by a.value desc, a.doc, a.position limit 1""").fetchone()
print(json.dumps({"documents": count(doc), "tokens": count(tok), "nonzeros": count(act),
                  "feature": feature, "top": top, "joined": joined}))
"#;
    let output = Command::new(reference_python())
        .args(["-c", script])
        .arg(&index)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let duck: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(duck["documents"].as_u64(), Some(documents));
    assert_eq!(duck["tokens"].as_u64(), Some(tokens));
    assert_eq!(duck["nonzeros"].as_u64(), Some(nonzeros));

    // saeidx's own reading of the same rows gives the same top-k.
    let feature = duck["feature"].as_u64().unwrap() as u32;
    let mut rows = saeidx_tests::index_rows::activations(&index);
    rows.retain(|row| row.2 == feature);
    rows.sort_by(|a, b| b.3.total_cmp(&a.3).then((a.0, a.1).cmp(&(b.0, b.1))));
    let ours: Vec<(u64, u64, f64)> = rows
        .iter()
        .take(10)
        .map(|r| (r.0 as u64, r.1 as u64, r.3 as f64))
        .collect();
    let theirs: Vec<(u64, u64, f64)> = duck["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap(),
                r[1].as_u64().unwrap(),
                r[2].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(duck["joined"][1].as_str().is_some_and(|s| !s.is_empty()));

    // The query index built at the end of the run gives DuckDB's answer too (with every
    // token counted, as the SQL counts them).
    let top = saeidx_ok(
        &[
            "top-texts",
            "--index",
            index.to_str().unwrap(),
            "--feature",
            &feature.to_string(),
            "--k",
            "10",
            "--include-special",
            "--include-sinks",
            "--json",
        ],
        setup.path(),
    );
    let answered: Vec<(u64, u64, f64)> = top["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["doc"].as_u64().unwrap(),
                t["position"].as_u64().unwrap(),
                t["activation"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(answered, theirs);
    let snippet = &top["texts"][0]["snippet"];
    let range = snippet["hit_start"].as_u64().unwrap() as usize
        ..snippet["hit_end"].as_u64().unwrap() as usize;
    assert_eq!(
        &snippet["text"].as_str().unwrap()[range],
        duck["joined"][1].as_str().unwrap()
    );
}

/// One token of a `--per-token` answer: position, text, (feature, activation)s.
type PerToken = (u64, String, Vec<(u64, f64)>);

/// The query commands on the index of a run: documents and live texts agree, answers
/// carry labels, a Parquet-only copy is queryable after `query build`, and wrong
/// questions get clear errors.
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn queries_answer_from_the_index_and_live() {
    let setup = Setup::create();
    saeidx_ok(
        &["run", setup.job().to_str().unwrap(), "--json"],
        setup.path(),
    );
    let index = setup.path().join("out/index");
    let at = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--index", index.to_str().unwrap(), "--json"]);
        saeidx_ok(&all, setup.path())
    };

    // A long document of the corpus (several model windows), by id and live.
    let info = at(&["info"]);
    assert_eq!(info["counts"]["documents"].as_u64(), Some(38));
    let by_doc = at(&[
        "top-features",
        "--doc-id",
        "doc-6",
        "--per-token",
        "--k",
        "8",
    ]);
    let doc = by_doc["of"]["doc"].as_u64().unwrap();
    let rows = saeidx_tests::index_rows::documents(&index);
    let text = &rows.iter().find(|d| d.0 == doc as u32).unwrap().1;
    let live = at(&["top-features", "--text", text, "--per-token", "--k", "8"]);
    let tokens = |answer: &Value| -> Vec<PerToken> {
        answer["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["position"].as_u64().unwrap(),
                    t["token_text"].as_str().unwrap().to_string(),
                    t["features"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            (
                                f["feature"].as_u64().unwrap(),
                                f["activation"].as_f64().unwrap(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let (indexed, analysed) = (tokens(&by_doc), tokens(&live));
    assert!(indexed.len() > 200, "several windows: {}", indexed.len());
    assert_eq!(indexed.len(), analysed.len());
    for ((p1, t1, f1), (p2, t2, f2)) in indexed.iter().zip(&analysed) {
        assert_eq!((p1, t1), (p2, t2), "the same tokens");
        let ids1: Vec<u64> = f1.iter().map(|f| f.0).collect();
        let ids2: Vec<u64> = f2.iter().map(|f| f.0).collect();
        assert_eq!(
            ids1, ids2,
            "token {p1} {t1:?}: the same features, in the same order"
        );
        for (a, b) in f1.iter().zip(f2) {
            assert!(
                (a.1 - b.1).abs() <= 2e-3 * a.1.abs().max(1.0),
                "{a:?} vs {b:?}"
            );
        }
    }

    // Feature pages: statistics, examples, neighbours; labels show up in answers.
    let strongest =
        at(&["top-features", "--doc", &doc.to_string(), "--k", "1"])["features"][0]["feature"]
            .as_u64()
            .unwrap()
            .to_string();
    let registry = setup.path().join("sae_features.json");
    fs::write(
        &registry,
        format!(
            r#"{{"{strongest}": {{"name": "test label", "confidence": "low", "examples": ["x"]}}}}"#
        ),
    )
    .unwrap();
    saeidx_ok(
        &[
            "labels",
            "import",
            registry.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    let report = at(&["feature", &strongest, "--examples", "2", "--bands", "3"]);
    assert_eq!(report["label"]["name"], "test label");
    assert!(report["stats"]["count"].as_u64().unwrap() >= 1);
    assert_eq!(report["stats"]["histogram"].as_array().unwrap().len(), 20);
    assert!(!report["top_texts"].as_array().unwrap().is_empty());
    assert!(!report["bands"].as_array().unwrap().is_empty());
    let top = at(&[
        "top-texts",
        "--feature",
        &strongest,
        "--k",
        "3",
        "--rank",
        "doc-sum",
    ]);
    assert_eq!(top["label"]["name"], "test label");
    let exported = setup.path().join("exported.json");
    saeidx_ok(
        &[
            "labels",
            "export",
            exported.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    let exported: Value = serde_json::from_slice(&fs::read(&exported).unwrap()).unwrap();
    assert_eq!(exported[&strongest]["confidence"], "low");
    let validate = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft202012Validator)
"#;
    let output = Command::new(reference_python())
        .args(["-c", validate])
        .arg(repo_root().join("schemas/index/labels.schema.json"))
        .arg(index.join("labels.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sample = at(&["sample", "--n", "4", "--seed", "2"]);
    assert_eq!(sample["features"].as_array().unwrap().len(), 4);

    // Labels drafted by an LLM (a scripted endpoint) leave its answers cached in the
    // index's work folder.
    let llm = FakeLlm::start(|_, seen| sensible(seen));
    let drafted = at(&[
        "labels",
        "draft",
        "--llm",
        llm.url(),
        "--llm-model",
        "fake-model",
        "--sample",
        "3",
        "--seed",
        "1",
    ]);
    assert!(
        drafted["requests"]["sent"].as_u64().unwrap() >= 5,
        "{drafted:#}"
    );
    let cache = index.join("autointerp/cache");
    let cached = cached_answers(&cache);
    assert_eq!(
        cached.len() as u64,
        drafted["requests"]["sent"].as_u64().unwrap()
    );

    // The nightly job republishing the index over another corpus with the same SAE
    // keeps the labels, drafts included, and the LLM's cached answers.
    let labels = fs::read(index.join("labels.json")).unwrap();
    let republished = saeidx_ok(
        &[
            "run",
            setup.job().to_str().unwrap(),
            "--max-documents",
            "30",
            "--replace",
            "--json",
        ],
        setup.path(),
    );
    assert_eq!(republished["counts"]["documents"], 30);
    assert_eq!(fs::read(index.join("labels.json")).unwrap(), labels);
    assert_eq!(at(&["feature", &strongest])["label"]["name"], "test label");
    assert_eq!(cached_answers(&cache), cached);

    // Pages: a feature page with coloured examples, a live text coloured by a feature.
    let pages = setup.path().join("pages");
    saeidx_ok(
        &[
            "render",
            "feature",
            &strongest,
            "--out",
            pages.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    let page = fs::read_to_string(pages.join(format!("feature-{strongest}.html"))).unwrap();
    assert!(page.contains("test label") && page.contains("class=\"tok hit\""));
    let text_page = pages.join("text.html");
    saeidx_ok(
        &[
            "render",
            "text",
            "Fellow <citizens> & friends",
            "--feature",
            &strongest,
            "--out",
            text_page.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    let page = fs::read_to_string(&text_page).unwrap();
    assert!(page.contains("&lt;citizens&gt; &amp; friends") && !page.contains("<citizens>"));

    // A Parquet-only copy (as someone might share it) is queryable once built, and
    // gives the same answers.
    let copy = setup.path().join("shared");
    copy_dir(&index, &copy);
    fs::remove_dir_all(copy.join("query")).unwrap();
    let error = saeidx_err(&["info", "--index", copy.to_str().unwrap()], setup.path());
    assert!(error.contains("saeidx query build"), "{error}");
    saeidx_ok(
        &["query", "build", copy.to_str().unwrap(), "--json"],
        setup.path(),
    );
    let again = saeidx_ok(
        &[
            "top-texts",
            "--feature",
            &strongest,
            "--k",
            "3",
            "--rank",
            "doc-sum",
            "--json",
            "--index",
            copy.to_str().unwrap(),
        ],
        setup.path(),
    );
    assert_eq!(again["texts"], top["texts"]);
    // A Parquet-only copy has no logit effects (they come from the SAE and the model,
    // not the Parquet); `query logits` computes the same file.
    let sae = setup.path().join("sae");
    saeidx_ok(
        &[
            "query",
            "logits",
            copy.to_str().unwrap(),
            "--sae",
            sae.to_str().unwrap(),
        ],
        setup.path(),
    );
    assert_same_index(&index.join("query"), &copy.join("query"));

    // Clear errors.
    let error = saeidx_err(
        &[
            "top-texts",
            "--feature",
            "256",
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    assert!(
        error.contains("feature 256 does not exist") && error.contains("256 features"),
        "{error}"
    );
    let error = saeidx_err(
        &[
            "top-features",
            "--doc",
            "38",
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    assert!(
        error.contains("document 38 is not in this index"),
        "{error}"
    );
    let error = saeidx_err(
        &[
            "top-features",
            "--doc-id",
            "nope",
            "--index",
            index.to_str().unwrap(),
        ],
        setup.path(),
    );
    assert!(error.contains("\"nope\" is not in this index"), "{error}");
    let error = saeidx_err(
        &["info", "--index", setup.path().to_str().unwrap()],
        setup.path(),
    );
    assert!(error.contains("is this an index folder?"), "{error}");

    // verify checks the query files too.
    let postings = copy.join("query/postings.bin");
    let mut bytes = fs::read(&postings).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&postings, bytes).unwrap();
    let error = saeidx_err(&["verify", copy.to_str().unwrap()], setup.path());
    assert!(error.contains("does not match its checksum"), "{error}");
}

/// Starts a run and kills it (SIGKILL) once `parts` parts are recorded or `after` has
/// passed, whichever comes first. Returns whether it was killed before finishing.
fn run_and_kill(setup: &Setup, output: &Path, parts: usize, after: Duration) -> bool {
    let mut child = Command::new(saeidx_binary())
        .args(["run", setup.job().to_str().unwrap(), "--json", "--output"])
        .arg(output)
        .current_dir(setup.path())
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let work = output.with_file_name(format!(
        ".{}.partial",
        output.file_name().unwrap().to_string_lossy()
    ));
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let recorded = fs::read_dir(work.join("parts"))
            .map(|d| d.count())
            .unwrap_or(0);
        if recorded >= parts || started.elapsed() >= after {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_runs_resume_to_identical_output() {
    let setup = Setup::create();
    saeidx_ok(
        &["run", setup.job().to_str().unwrap(), "--json"],
        setup.path(),
    );
    let reference = setup.path().join("out/index");
    // Kill points: after loading (before any part), mid-way by parts, and by time.
    let mut killed = 0;
    for (round, (parts, after_ms)) in [(1, 10_000), (3, 10_000), (100, 700), (100, 1300)]
        .into_iter()
        .enumerate()
    {
        let output = setup.path().join(format!("out/killed-{round}"));
        if run_and_kill(&setup, &output, parts, Duration::from_millis(after_ms)) {
            killed += 1;
        }
        // A second kill during the resumed run, then a run to the end.
        run_and_kill(&setup, &output, parts + 2, Duration::from_millis(after_ms));
        let resumed = saeidx_ok(
            &[
                "run",
                setup.job().to_str().unwrap(),
                "--json",
                "--output",
                output.to_str().unwrap(),
            ],
            setup.path(),
        );
        assert!(resumed["counts"]["parts"].as_u64().unwrap() >= 12);
        assert_same_index(&reference, &output);
        assert!(
            !output
                .with_file_name(format!("killed-{round}.partial"))
                .exists()
        );
    }
    assert!(killed >= 2, "the runs should have been killed mid-way");
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn shards_publish_as_segments_and_compact_into_the_single_run_index() {
    let setup = Setup::create();
    let job = setup.job();
    saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    let single = setup.path().join("out/index");
    let merged = setup.path().join("out/merged");
    for i in 0..3 {
        let shard = format!("{i}/3");
        saeidx_ok(
            &[
                "run",
                job.to_str().unwrap(),
                "--shard",
                &shard,
                "--output",
                merged.to_str().unwrap(),
                "--json",
            ],
            setup.path(),
        );
    }
    // Publishing with a shard missing is refused.
    let shards = setup.path().join("out/merged.shards");
    let missing = saeidx_err(
        &[
            "merge",
            merged.to_str().unwrap(),
            shards.join("0-of-3").to_str().unwrap(),
            shards.join("2-of-3").to_str().unwrap(),
        ],
        setup.path(),
    );
    assert!(missing.contains("shard 1/3 is missing"), "{missing}");
    // A shard of another job (here: another document limit) is refused, with the reason.
    let odd = setup.path().join("out/odd");
    saeidx_ok(
        &[
            "run",
            job.to_str().unwrap(),
            "--shard",
            "0/3",
            "--max-documents",
            "10",
            "--output",
            odd.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    );
    let other = saeidx_err(
        &[
            "merge",
            merged.to_str().unwrap(),
            setup.path().join("out/odd.shards/0-of-3").to_str().unwrap(),
            shards.join("1-of-3").to_str().unwrap(),
            shards.join("2-of-3").to_str().unwrap(),
        ],
        setup.path(),
    );
    assert!(
        other.contains("different job") && other.contains("corpus"),
        "{other}"
    );
    // The shards become the index's segments: nothing rebuilt, the data files the
    // shards' own (hard links).
    let published = saeidx_ok(&["merge", merged.to_str().unwrap(), "--json"], setup.path());
    assert_eq!(
        published["segments"],
        serde_json::json!(["shard-0-of-3", "shard-1-of-3", "shard-2-of-3"]),
        "{published}"
    );
    let linked = merged.join("segments/shard-1-of-3/activations");
    let first = fs::read_dir(&linked)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let shard_file = shards
        .join("1-of-3/activations")
        .join(first.file_name().unwrap());
    assert_eq!(inode(&first), inode(&shard_file), "hard-linked, not copied");
    saeidx_ok(
        &["verify", merged.to_str().unwrap(), "--json"],
        setup.path(),
    );
    // Every answer equals the single run's, document numbers included.
    let reference = SegmentedIndex::open(&single).unwrap();
    let ids = live_ids(&reference);
    let request = TopTextsRequest {
        feature: 5,
        k: 100,
        ..TopTextsRequest::default()
    };
    {
        let sharded = SegmentedIndex::open(&merged).unwrap();
        assert_eq!(sharded.segments().count(), 3);
        same_answers(&sharded, &reference, &ids);
        assert_eq!(
            sharded.top_texts(&request).unwrap(),
            reference.top_texts(&request).unwrap()
        );
    }
    // Compacted (a 1 MiB sort budget): one segment, file for file the single run's index.
    let compacted = saeidx_ok(
        &[
            "compact",
            merged.to_str().unwrap(),
            "--memory",
            "1",
            "--json",
        ],
        setup.path(),
    );
    assert_eq!(compacted["segments"], 1, "{compacted}");
    let into = compacted["merges"][0]["into"].as_str().unwrap();
    assert_same_index(&single, &merged.join("segments").join(into));
    let one = SegmentedIndex::open(&merged).unwrap();
    same_answers(&one, &reference, &ids);
    saeidx_ok(
        &["verify", merged.to_str().unwrap(), "--json"],
        setup.path(),
    );
    // `merge --compact` does both at once.
    let again = setup.path().join("out/merged-again");
    let shard_dirs: Vec<String> = (0..3)
        .map(|i| shards.join(format!("{i}-of-3")).display().to_string())
        .collect();
    let mut args = vec!["merge", again.to_str().unwrap()];
    args.extend(shard_dirs.iter().map(String::as_str));
    args.extend(["--compact", "--json"]);
    let both = saeidx_ok(&args, setup.path());
    let into = both["compaction"]["merges"][0]["into"].as_str().unwrap();
    assert_same_index(&single, &again.join("segments").join(into));
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn damaged_and_mismatched_inputs_are_refused() {
    let setup = Setup::create();
    let job = setup.job();
    saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    let index = setup.path().join("out/index");

    // A flipped byte in a data file.
    let damaged = setup.path().join("damaged");
    copy_dir(&index, &damaged);
    let file = damaged.join("activations/part-00001.parquet");
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&file, &bytes).unwrap();
    let error = saeidx_err(&["verify", damaged.to_str().unwrap()], setup.path());
    assert!(
        error.contains("part-00001.parquet") && error.contains("SHA-256"),
        "{error}"
    );
    // A truncated file.
    fs::write(&file, &bytes[..middle]).unwrap();
    let error = saeidx_err(&["verify", damaged.to_str().unwrap()], setup.path());
    assert!(error.contains("part-00001.parquet"), "{error}");
    // A manifest of a future format version, and a folder that is not an index.
    let manifest_path = damaged.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["format_version"] = Value::from(99);
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = saeidx_err(&["verify", damaged.to_str().unwrap()], setup.path());
    assert!(error.contains("format version 99"), "{error}");
    assert!(error.contains("upgrade saeidx"), "{error}");
    manifest["format_version"] = Value::from(0);
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = saeidx_err(&["verify", damaged.to_str().unwrap()], setup.path());
    assert!(error.contains("rebuild it with this saeidx"), "{error}");
    let error = saeidx_err(&["verify", setup.path().to_str().unwrap()], setup.path());
    assert!(error.contains("is this an index folder"), "{error}");

    // An SAE of the wrong width.
    random_sae(&setup.path().join("narrow-sae"), 32);
    let narrow = setup.write_job("narrow.toml", "narrow-sae", "");
    let error = saeidx_err(&["run", narrow.to_str().unwrap()], setup.path());
    assert!(error.contains("32") && error.contains("64"), "{error}");
    // An SAE recorded for another model, without the override.
    let strict = fs::read_to_string(&job)
        .unwrap()
        .replace("allow_mismatch = true", "allow_mismatch = false");
    fs::write(setup.path().join("strict.toml"), strict).unwrap();
    let error = saeidx_err(&["run", "strict.toml"], setup.path());
    assert!(error.contains("SmolLM2-135M-Instruct"), "{error}");

    // A partial folder left by a different job is never mixed in: it is discarded and
    // the run starts over, saying so; the result is that job's index alone.
    let other = setup.write_job("other.toml", "sae", "");
    let other_text = fs::read_to_string(&other)
        .unwrap()
        .replace("window_length = 64", "window_length = 48");
    fs::write(&other, other_text).unwrap();
    let output = setup.path().join("out/shared");
    run_and_kill(&setup, &output, 1, Duration::from_secs(30));
    let run = saeidx(
        &[
            "run",
            other.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    );
    let note = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{note}");
    assert!(
        note.contains("different job") && note.contains("starts over"),
        "{note}"
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["resumed_parts"], 0);
    let fresh = setup.path().join("out/fresh");
    saeidx_ok(
        &[
            "run",
            other.to_str().unwrap(),
            "--output",
            fresh.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    );
    for table in ["documents", "tokens", "activations"] {
        let name = format!("{table}/part-00000.parquet");
        assert_eq!(
            fs::read(output.join(&name)).unwrap(),
            fs::read(fresh.join(&name)).unwrap()
        );
    }

    // Bad corpus records: skipped and counted, or a stop naming file and line.
    fs::write(
        setup.path().join("corpus/broken.jsonl"),
        b"{\"text\": \"fine\"}\n{\"text\": \"bad \xff byte\"}\nnot json\n",
    )
    .unwrap();
    // The corpus changed: the run indexes only the new document, into a new segment.
    let appended = saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    assert_eq!(appended["changes"]["new"], 1, "{appended:#}");
    assert_eq!(appended["changes"]["changed"], 0);
    assert_eq!(appended["segment"], "seg-000001");
    let summary = saeidx_ok(
        &["run", job.to_str().unwrap(), "--json", "--replace"],
        setup.path(),
    );
    assert_eq!(summary["counts"]["skipped_records"].as_u64(), Some(2));
    let stop = fs::read_to_string(&job)
        .unwrap()
        .replace("on_bad_record = \"skip\"", "on_bad_record = \"stop\"");
    fs::write(setup.path().join("stop.toml"), stop).unwrap();
    let error = saeidx_err(&["run", "stop.toml", "--output", "out/stop"], setup.path());
    assert!(
        error.contains("broken.jsonl") && error.contains("line 2"),
        "{error}"
    );
    // The corpus corrected, the same command runs: the stopped run's hidden
    // `.stop.partial/` (of the corpus as it was) does not stand in the way.
    fs::remove_file(setup.path().join("corpus/broken.jsonl")).unwrap();
    let rerun = saeidx(
        &["run", "stop.toml", "--output", "out/stop", "--json"],
        setup.path(),
    );
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(!setup.path().join("out/.stop.partial").exists());
    assert_same_index(&setup.path().join("out/stop"), &{
        // The same job into another folder of the same depth gives the same index.
        saeidx_ok(
            &["run", "stop.toml", "--output", "out/stop-again", "--json"],
            setup.path(),
        );
        setup.path().join("out/stop-again")
    });
}

#[test]
fn one_writer_per_output_and_jobs_that_cannot_run_are_refused_clearly() {
    let setup = Setup::create();
    let job = setup.job();
    let output = setup.path().join("out/index");
    // A second writer is refused at once, naming the holder.
    let lock = saeidx_format::lock::OutputLock::acquire(&output).unwrap();
    let error = saeidx_err(&["run", job.to_str().unwrap()], setup.path());
    assert!(
        error.contains("being written by another saeidx process")
            && error.contains(&format!("pid {}", std::process::id())),
        "{error}"
    );
    drop(lock);
    // A killed writer's lock is taken over by the next run, which resumes its work.
    assert!(run_and_kill(&setup, &output, 2, Duration::from_secs(60)));
    let lock_file = saeidx_format::lock::lock_path(&output);
    assert!(lock_file.exists(), "the killed run left its lock file");
    let resumed = saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    assert!(resumed["resumed_parts"].as_u64().unwrap() >= 1, "{resumed}");
    assert!(!lock_file.exists(), "a finished run removes its lock file");

    // An empty corpus publishes nothing and says why.
    fs::create_dir_all(setup.path().join("empty")).unwrap();
    fs::write(setup.path().join("empty/none.jsonl"), "").unwrap();
    let empty = fs::read_to_string(&job).unwrap().replace(
        "sources = [{ path = \"corpus\" }]",
        "sources = [{ path = \"empty\" }]",
    );
    fs::write(setup.path().join("empty.toml"), empty).unwrap();
    let error = saeidx_err(
        &["run", "empty.toml", "--output", "out/empty"],
        setup.path(),
    );
    assert!(error.contains("the corpus has no documents"), "{error}");
    assert!(!setup.path().join("out/empty").exists());
    assert!(!setup.path().join("out/.empty.partial").exists());

    // Values the job schema refuses, refused naming the job file and the key.
    for (from, to, key) in [
        ("part_bytes = 2000", "part_bytes = 0", "part_bytes"),
        (
            "part_bytes = 2000",
            "part_bytes = 2000\nquery_memory = 0",
            "query_memory",
        ),
        (
            "window_overlap = 8",
            "window_overlap = 64",
            "window_overlap",
        ),
    ] {
        let text = fs::read_to_string(&job).unwrap().replace(from, to);
        fs::write(setup.path().join("bad.toml"), text).unwrap();
        let error = saeidx_err(&["run", "bad.toml", "--output", "out/bad"], setup.path());
        assert!(
            error.contains("bad.toml") && error.contains(key) && !error.contains("out/bad"),
            "{error}"
        );
    }
}

/// A single large document is one part: the run's progress moves within it, batch by
/// batch, instead of jumping from 0 to done at its end.
#[test]
fn progress_moves_within_a_single_large_document() {
    use saeidx_indexer::{
        job::{self, JobFile},
        parts::Shard,
        pipeline::{self, Event, RunOptions},
    };
    let setup = Setup::create();
    let text: String = saeidx_tests::index_rows::documents(&{
        saeidx_ok(
            &["run", setup.job().to_str().unwrap(), "--json"],
            setup.path(),
        );
        setup.path().join("out/index")
    })
    .into_iter()
    .map(|(_, text)| text)
    .collect::<Vec<_>>()
    .join("\n");
    fs::create_dir_all(setup.path().join("large")).unwrap();
    fs::write(setup.path().join("large/one.txt"), &text).unwrap();
    let job_text = fs::read_to_string(setup.job()).unwrap().replace(
        "sources = [{ path = \"corpus\" }]",
        "sources = [{ path = \"large\" }]",
    );
    fs::write(setup.path().join("large.toml"), job_text).unwrap();
    let mut file = JobFile::read(&setup.path().join("large.toml")).unwrap();
    file.output = setup.path().join("out/large");
    let reader = file.corpus.reader().unwrap();
    let loaded = job::load(file, &saeidx_hub::HubSettings::from_env()).unwrap();
    let mut events = Vec::new();
    pipeline::run(
        &loaded.engine(),
        &loaded.spec,
        reader,
        &loaded.file.output,
        RunOptions {
            shard: Shard::WHOLE,
            replace: false,
            first_doc: 0,
            query_build: saeidx_query::BuildOptions::default(),
            corpus_parts: None,
        },
        &mut |event| events.push(event),
    )
    .unwrap();
    let moved: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Batch { text_bytes, .. } if *text_bytes > 0 => Some(*text_bytes),
            _ => None,
        })
        .collect();
    assert!(moved.len() >= 5, "progress within the document: {events:?}");
    let total: u64 = events
        .iter()
        .map(|e| match e {
            Event::Batch { text_bytes, .. } | Event::PartComputed { text_bytes } => *text_bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(total, text.len() as u64);
}

#[test]
fn a_hub_dataset_corpus_is_read_from_the_cache_offline() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let setup = Setup::create();
    // A dataset repo in a private HF cache, laid out as datasets ship Parquet.
    let hf_home = setup.path().join("hf");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = hf_home.join("hub/datasets--someone--speeches");
    let data = repo.join("snapshots").join(commit).join("data");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    let texts = [
        "Fellow citizens, the state of the union is strong.",
        "",
        "We must balance the budget and defend the nation.",
    ];
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from(vec![10, 11, 12])) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from(texts.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap();
    let file = fs::File::create(data.join("train-00000-of-00001.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let job = fs::read_to_string(setup.job()).unwrap().replace(
        "sources = [{ path = \"corpus\" }]",
        "sources = [{ path = \"hf://datasets/someone/speeches/data\" }]",
    );
    fs::write(setup.path().join("hub.toml"), job).unwrap();
    let output = Command::new(saeidx_binary())
        .args(["run", "hub.toml", "--json", "--output", "out/hub"])
        .current_dir(setup.path())
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: Value =
        serde_json::from_slice(&fs::read(setup.path().join("out/hub/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["counts"]["documents"], 3);
    assert_eq!(
        manifest["job"]["corpus"]["sources"][0],
        format!("hf://datasets/someone/speeches@{commit}/data")
    );
    assert_eq!(
        manifest["job"]["corpus"]["files"][0]["name"],
        "train-00000-of-00001.parquet"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A `saeidx serve` process, stopped on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn the_served_ui_works_in_a_browser() {
    use saeidx_tests::webdriver::Browser;
    let setup = Setup::create();
    saeidx_ok(
        &["run", setup.job().to_str().unwrap(), "--json"],
        setup.path(),
    );
    let index = setup.path().join("out/index");
    // Any free port: the server says which when it is listening.
    let mut child = Command::new(saeidx_binary())
        .args(["serve", index.to_str().unwrap(), "--port", "0"])
        .current_dir(setup.path())
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let _server = Server(child);
    let site = first_line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("serve did not start: {first_line:?}"))
        .trim_end_matches('/')
        .to_string();
    let artifacts = repo_root().join("target/test-artifacts/served-ui");
    let browser = Browser::start();

    // The text box: the text runs live through the model and SAE; each of its five
    // strongest features colours the text's tokens, which read as the text itself.
    let text = "Fellow-Citizens of the Senate — naïve 東京\nand of the House.";
    browser.open(&format!("{site}/"));
    browser.type_into("textarea[name=q]", text);
    browser.click("form[action='/text'] button");
    assert!(browser.url().starts_with(&format!("{site}/text?q=")));
    let expected = saeidx_ok(
        &[
            "top-features",
            "--text",
            text,
            "--k",
            "5",
            "--index",
            index.to_str().unwrap(),
            "--json",
        ],
        setup.path(),
    );
    let expected: Vec<u64> = expected["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_u64().unwrap())
        .collect();
    let shown = browser.eval(
        "return Array.from(document.querySelectorAll('details')).map(d => ({
            feature: Number(d.querySelector('summary a').textContent),
            link: d.querySelector('summary a').getAttribute('href'),
            text: Array.from(d.querySelectorAll('.tok')).map(t => t.textContent).join(''),
            coloured: d.querySelectorAll('.tok[data-activation]:not([data-activation=\"0\"])').length,
        }))",
    );
    let shown = shown.as_array().unwrap();
    assert_eq!(
        shown
            .iter()
            .map(|s| s["feature"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        expected,
        "the page shows the features the CLI ranks first"
    );
    for section in shown {
        assert_eq!(section["text"], text, "tokens render as the text");
        assert!(section["coloured"].as_u64().unwrap() >= 1);
        assert_eq!(
            section["link"].as_str().unwrap(),
            format!("/feature/{}", section["feature"])
        );
    }
    browser.screenshot(&artifacts.join("text.png"));

    // A feature page: follow the first feature's link, label it through the form
    // (hostile markup stays text), and find it again by searching labels.
    browser.click("details summary a");
    let feature = expected[0];
    assert_eq!(browser.url(), format!("{site}/feature/{feature}"));
    assert!(browser.dom().contains("class=\"tok hit\""));
    browser.type_into("input[name=name]", "<b>senate</b> words");
    browser.type_into("input[name=confidence]", "low");
    browser.click("form[method=post] button");
    assert_eq!(browser.url(), format!("{site}/feature/{feature}"));
    let heading = browser.eval("return document.querySelector('h1').textContent");
    assert_eq!(heading, format!("Feature {feature} <b>senate</b> words"));
    assert_eq!(
        browser.eval("return document.querySelectorAll('h1 b').length"),
        0
    );
    let saved: Value =
        serde_json::from_slice(&fs::read(index.join("labels.json")).unwrap()).unwrap();
    assert_eq!(saved[feature.to_string()]["name"], "<b>senate</b> words");
    assert_eq!(saved[feature.to_string()]["confidence"], "low");
    browser.screenshot(&artifacts.join("feature.png"));
    browser.open(&format!("{site}/"));
    browser.type_into("input[name=q]", "SENATE");
    browser.click("form[action='/search'] button");
    let found = browser.eval(
        "return Array.from(document.querySelectorAll('li a')).map(a => a.getAttribute('href'))",
    );
    assert_eq!(found, serde_json::json!([format!("/feature/{feature}")]));
    for shot in ["text.png", "feature.png"] {
        assert!(fs::metadata(artifacts.join(shot)).unwrap().len() > 10_000);
    }
}

/// Answers that identify an index's content: a document's top features, the first
/// one's top texts and its feature report (none of them names the folder).
fn fingerprint_answers(index: &Path, cwd: &Path) -> Value {
    let at = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--index", index.to_str().unwrap(), "--json"]);
        saeidx_ok(&all, cwd)
    };
    let features = at(&["top-features", "--doc", "0", "--k", "5"]);
    let feature = features["features"][0]["feature"]
        .as_u64()
        .unwrap()
        .to_string();
    // The answers from the index's data: a feature's decoder neighbours (read from the
    // SAE file, when it is at hand) and logit effects (a file computed from the SAE and
    // the model) are not part of the fingerprint; their own tests check them.
    let mut report = at(&["feature", &feature, "--bands", "5"]);
    if let Some(fields) = report.as_object_mut() {
        fields.remove("decoder_neighbours");
        fields.remove("logits");
    }
    serde_json::json!({
        "top_features": features,
        "top_texts": at(&["top-texts", "--feature", &feature, "--k", "5"]),
        "feature": report,
    })
}

/// The committed index of the current format version (`tests/fixtures/index-v1/`, made
/// by this test's first half with `SAEIDX_WRITE_FIXTURES=1`) and its answers.
const INDEX_FIXTURE: &str = "index-v1";

#[test]
fn copied_indexes_and_the_committed_fixture_verify_and_answer_anywhere() {
    let setup = Setup::create();
    let original = setup.path().join("out/index");
    saeidx_ok(
        &[
            "run",
            setup.job().to_str().unwrap(),
            "--max-documents",
            "4",
            "--json",
        ],
        setup.path(),
    );
    let expected = fingerprint_answers(&original, setup.path());

    // The SAE is recorded relative to the index folder, so live texts work from any
    // working directory.
    let manifest: Value =
        serde_json::from_slice(&fs::read(original.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["job"]["sae"]["source"], "../../sae");
    assert_eq!(manifest["job"]["sae"]["location"], "relative");
    let live_args = |index: &Path| {
        vec![
            "top-features".to_string(),
            "--text".into(),
            "Fellow citizens of the Senate".into(),
            "--k".into(),
            "3".into(),
            "--json".into(),
            "--index".into(),
            index.display().to_string(),
        ]
    };
    let anywhere = tempfile::tempdir().unwrap();
    let args = live_args(&original);
    let live = saeidx_ok(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        anywhere.path(),
    );

    // Copied elsewhere (another depth and name) with the original gone, the folder
    // verifies and answers the same: its files are named relative to it (the model and
    // corpus sources in the manifest are provenance, as the job gave them).
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("shared/with/a colleague");
    copy_dir(&original, &copy);
    fs::rename(setup.path().join("out"), setup.path().join("gone")).unwrap();
    let made_in = setup.path().to_str().unwrap();
    let query_manifest = fs::read_to_string(copy.join("query/manifest.json")).unwrap();
    assert!(!query_manifest.contains(made_in));
    let manifest: Value =
        serde_json::from_slice(&fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    for part in manifest["parts"].as_array().unwrap() {
        for file in part["files"].as_array().unwrap() {
            let path = file["path"].as_str().unwrap();
            assert!(Path::new(path).is_relative() && !path.contains(made_in));
        }
    }
    saeidx_ok(
        &["verify", copy.to_str().unwrap(), "--json"],
        elsewhere.path(),
    );
    assert_eq!(fingerprint_answers(&copy, elsewhere.path()), expected);
    // A copy away from its SAE says exactly what to pass, and answers live with it.
    let mut args = live_args(&copy);
    let error = saeidx_err(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        elsewhere.path(),
    );
    assert!(
        error.contains("--sae FOLDER") && error.contains("../../sae relative to the index folder"),
        "{error}"
    );
    args.extend([
        "--sae".into(),
        setup.path().join("sae").display().to_string(),
    ]);
    let with_sae = saeidx_ok(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        elsewhere.path(),
    );
    assert_eq!(with_sae["features"], live["features"]);

    let fixture = repo_root().join("tests/fixtures").join(INDEX_FIXTURE);
    let answers_file = fixture.with_extension("answers.json");
    if std::env::var_os("SAEIDX_WRITE_FIXTURES").is_some() {
        if fixture.exists() {
            fs::remove_dir_all(&fixture).unwrap();
        }
        copy_dir(&copy, &fixture);
        let mut text = serde_json::to_string_pretty(&expected).unwrap();
        text.push('\n');
        fs::write(&answers_file, text).unwrap();
    }

    // The committed fixture of this format version opens, verifies and gives the
    // answers recorded when it was made.
    let opened = tempfile::tempdir().unwrap();
    let fixture_copy = opened.path().join(INDEX_FIXTURE);
    copy_dir(&fixture, &fixture_copy);
    let verified = saeidx_ok(
        &["verify", fixture_copy.to_str().unwrap(), "--json"],
        opened.path(),
    );
    assert_eq!(verified["ok"], true);
    let recorded: Value = serde_json::from_slice(&fs::read(&answers_file).unwrap()).unwrap();
    assert_eq!(fingerprint_answers(&fixture_copy, opened.path()), recorded);
    let manifest: Value =
        serde_json::from_slice(&fs::read(fixture_copy.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["format_version"], 1,
        "a new format version needs a new fixture (and this one kept while it is read)"
    );
}

/// Query files of format version 1 (`tests/fixtures/query-v1/`, the committed
/// fixture's query folder before version 2) are refused with what to do; rebuilt, the
/// folder gives exactly the answers recorded when version 1 answered them.
#[test]
fn version_1_query_files_are_refused_and_rebuild_to_the_same_answers() {
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    copy_dir(
        &repo_root().join("tests/fixtures").join(INDEX_FIXTURE),
        &index,
    );
    fs::remove_dir_all(index.join("query")).unwrap();
    copy_dir(
        &repo_root().join("tests/fixtures/query-v1"),
        &index.join("query"),
    );
    let error = saeidx_err(
        &[
            "top-texts",
            "--feature",
            "3",
            "--index",
            index.to_str().unwrap(),
        ],
        work.path(),
    );
    assert!(
        error.contains("query format version 1")
            && error.contains("rebuild with `saeidx query build`"),
        "{error}"
    );
    saeidx_ok(
        &["query", "build", index.to_str().unwrap(), "--json"],
        work.path(),
    );
    let answers_file = repo_root()
        .join("tests/fixtures")
        .join(INDEX_FIXTURE)
        .with_extension("answers.json");
    let recorded: Value = serde_json::from_slice(&fs::read(&answers_file).unwrap()).unwrap();
    assert_eq!(fingerprint_answers(&index, work.path()), recorded);
}

/// The files of an answer cache (`INDEX/autointerp/cache/xx/KEY.json`), sorted.
fn cached_answers(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flat_map(|shard| fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}
