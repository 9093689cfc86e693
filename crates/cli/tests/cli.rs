//! The `saeidx` binary end to end: output shapes, `--json`, exit codes and messages of
//! the questions, and what it says of the commands `saeidx-model` runs when that is
//! missing.

use std::process::{Command, Output};

fn saeidx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saeidx"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A small valid index (synthetic codes; no model needed) with its query files.
fn synthetic_index(dir: &std::path::Path) -> std::path::PathBuf {
    use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
    let index = dir.join("index");
    let spec = SyntheticSpec {
        documents: 12,
        tokens_per_document: (4, 40),
        documents_per_part: 6,
        feature_weights: vec![1.0; 16],
        k: 3,
        value_step: 0.25,
        seed: 7,
    };
    write_synthetic_index(&index, &spec).unwrap();
    saeidx_query::build(&index).unwrap();
    index
}

#[test]
fn sizes_past_the_limits_exit_2_naming_the_limit_which_help_states() {
    use saeidx_query::limits::Limit;
    let dir = tempfile::tempdir().unwrap();
    let index = synthetic_index(dir.path());
    let huge = "4294967295";
    for (args, limit) in [
        (&["top-texts", "--feature", "1", "--k", huge][..], Limit::K),
        (
            &["top-texts", "--feature", "1", "--context", huge][..],
            Limit::Context,
        ),
        (&["feature", "1", "--examples", huge][..], Limit::Examples),
        (&["feature", "1", "--bands", huge][..], Limit::Bands),
        (
            &["feature", "1", "--neighbours", huge][..],
            Limit::Neighbours,
        ),
        (&["top-features", "--doc", "0", "--k", huge][..], Limit::K),
        (&["sample", "--n", huge][..], Limit::Sample),
        (&["sample", "--examples", "101"][..], Limit::Examples),
        (
            &["explain", "text", "--features", huge][..],
            Limit::Features,
        ),
    ] {
        let mut full = args.to_vec();
        full.extend(["--index", index.to_str().unwrap()]);
        let output = saeidx(&full);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains(&format!("at most {}", limit.max())) && message.contains(limit.what()),
            "{args:?}: {message}"
        );
        assert!(!message.contains("memory allocation"), "{message}");
    }
    // At the limit the answer comes.
    let output = saeidx(&[
        "top-texts",
        "--feature",
        "1",
        "--k",
        "10000",
        "--json",
        "--index",
        index.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    for (command, flag, limit) in [
        ("top-texts", "--k", Limit::K),
        ("top-texts", "--context", Limit::Context),
        ("feature", "--examples", Limit::Examples),
        ("feature", "--bands", Limit::Bands),
        ("feature", "--neighbours", Limit::Neighbours),
        ("sample", "--n", Limit::Sample),
        ("explain", "--features", Limit::Features),
    ] {
        let help = String::from_utf8(saeidx(&[command, "--help"]).stdout).unwrap();
        // The option's block: from `--flag <VALUE>` to the next option.
        let start = help.find(&format!("{flag} <")).unwrap_or(0);
        let rest = &help[start..];
        let end = rest
            .match_indices('\n')
            .map(|(i, _)| i)
            .find(|&i| rest[i..].trim_start_matches([' ', '\n']).starts_with('-'))
            .unwrap_or(rest.len());
        let line = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            line.contains(&format!("(at most {})", limit.max())),
            "{command} {flag}: {line}"
        );
    }
}

#[test]
fn a_reversed_token_range_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let index = synthetic_index(dir.path());
    let output = saeidx(&[
        "top-features",
        "--doc",
        "0",
        "--tokens",
        "100..50",
        "--index",
        index.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("100..50") && message.contains("reversed"),
        "{message}"
    );
    assert!(!message.contains("outside document"), "{message}");
}

#[test]
fn query_build_over_a_file_named_query_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let index = synthetic_index(dir.path());
    std::fs::remove_dir_all(index.join("query")).unwrap();
    std::fs::write(index.join("query"), "not a folder").unwrap();
    let before: Vec<_> = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let output = saeidx(&["query", "build", index.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not a folder"),
        "{}",
        stderr(&output)
    );
    let mut after: Vec<_> = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "no temporary folder left behind");
    assert_eq!(std::fs::read(index.join("query")).unwrap(), b"not a folder");
}

#[test]
fn verify_fails_without_the_query_manifest_and_query_build_waits_for_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let index = synthetic_index(dir.path());
    std::fs::remove_file(index.join("query/manifest.json")).unwrap();
    let output = saeidx(&["verify", index.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("manifest.json"),
        "{}",
        stderr(&output)
    );
    // A second writer of the same index is refused, naming the holder.
    let lock = saeidx_format::lock::OutputLock::acquire(&index).unwrap();
    let output = saeidx(&["query", "build", index.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(lock);
    let output = saeidx(&["query", "build", index.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = saeidx(&["verify", index.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A synthetic index at `dir/name` of one fixed corpus, its SAE's decoder `rows` (8 wide).
fn compared_index(dir: &std::path::Path, name: &str, rows: &[f32]) -> std::path::PathBuf {
    use saeidx_testkit::{sae, synthetic};
    let spec = synthetic::SyntheticSpec {
        documents: 8,
        tokens_per_document: (4, 16),
        documents_per_part: 4,
        feature_weights: vec![1.0; rows.len() / 8],
        k: 2,
        value_step: 0.25,
        seed: 9,
    };
    let index = dir.join(name);
    let folder = dir.join(format!("{name}-sae"));
    synthetic::write_synthetic_index(&index, &spec).unwrap();
    sae::write_saelens_sae(&folder, rows, rows.len() / 8, 8).unwrap();
    let sha256 = saeidx_compare::Decoder::read_folder(&folder)
        .unwrap()
        .sha256()
        .to_string();
    sae::record_sae(&index, &folder, &sha256, 8).unwrap();
    saeidx_query::build(&index).unwrap();
    index
}

#[test]
fn compare_prints_the_library_answer_and_writes_the_matching_as_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let rows = saeidx_testkit::sae::random_decoder(12, 8, 3);
    let moved: Vec<f32> = rows.iter().map(|v| v * 1.5 + 0.01).collect();
    let a = compared_index(dir.path(), "a", &rows);
    let b = compared_index(dir.path(), "b", &moved);
    let parquet = dir.path().join("matching.parquet");
    let (a_arg, b_arg) = (a.to_str().unwrap(), b.to_str().unwrap());
    let output = saeidx(&[
        "compare",
        a_arg,
        b_arg,
        "--json",
        "--parquet",
        parquet.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let want = saeidx_compare::compare_recorded(
        &saeidx_query::AnyIndex::open(&a).unwrap(),
        &saeidx_query::AnyIndex::open(&b).unwrap(),
        &saeidx_compare::CompareRequest::default(),
    )
    .unwrap();
    assert_eq!(printed, saeidx_query::answers::to_json(&want).unwrap());
    assert_eq!(printed["matched"], 12);
    assert!(parquet.is_file());
    let text = saeidx(&["compare", a_arg, b_arg, "--show", "2"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(String::from_utf8_lossy(&text.stdout).contains("12 pairs"));
}

/// A copy of `saeidx` alone in a folder (no `saeidx-model` beside it).
fn lone_saeidx(dir: &std::path::Path) -> std::path::PathBuf {
    let binary = dir.join("saeidx");
    std::fs::copy(env!("CARGO_BIN_EXE_saeidx"), &binary).unwrap();
    binary
}

#[test]
fn without_saeidx_model_questions_are_answered_and_model_commands_say_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let index = synthetic_index(dir.path());
    let index_arg = index.to_str().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let saeidx = lone_saeidx(&bin);
    let run = |args: &[&str]| {
        Command::new(&saeidx)
            .args(args)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let answer = run(&[
        "top-texts",
        "--index",
        index_arg,
        "--feature",
        "1",
        "--json",
    ]);
    assert!(answer.status.success(), "{}", stderr(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(answer["feature"], 1);
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for command in ["run", "activations", "sae", "top-texts", "serve"] {
        assert!(help.contains(&format!("\n  {command} ")), "{help}");
    }
    let missing = bin.join("saeidx-model");
    for args in [
        &["run", "pipelines/default.toml"][..],
        &["index", "--help"][..],
        &["help", "activations"][..],
        &["top-features", "--index", index_arg, "--text", "Paris"][..],
        &["explain", "--index", index_arg, "Paris"][..],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("{} is missing", missing.display()))
                && message.contains("cargo build --release -p saeidx-cli-model"),
            "{args:?}: {message}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// `compared_index(dir, name, rows)` again as an index of two segments (`dir/NAME-seg`)
/// with document 2 deleted.
fn segmented_index(dir: &std::path::Path, name: &str, rows: &[f32]) -> std::path::PathBuf {
    use saeidx_format::segments::SegmentSet;
    let whole = compared_index(dir, name, rows);
    let seg = dir.join(format!("{name}-seg"));
    let mut set =
        saeidx_testkit::synthetic::split_into_segments(&whole, &seg, &[0..1, 1..2]).unwrap();
    for segment in &set.segments {
        saeidx_query::build(&SegmentSet::segment_dir(&seg, &segment.name)).unwrap();
    }
    for segment in &mut set.segments {
        segment.delete(2);
    }
    set.publish(&seg).unwrap();
    seg
}

#[test]
fn compare_and_the_neuronpedia_export_take_an_index_of_segments() {
    let dir = tempfile::tempdir().unwrap();
    let rows = saeidx_testkit::sae::random_decoder(12, 8, 3);
    let moved: Vec<f32> = rows.iter().map(|v| v * 1.5 + 0.01).collect();
    let a = segmented_index(dir.path(), "a", &rows);
    let b = compared_index(dir.path(), "b", &moved);
    let output = saeidx(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let want = saeidx_compare::compare_recorded(
        &saeidx_query::AnyIndex::open(&a).unwrap(),
        &saeidx_query::AnyIndex::open(&b).unwrap(),
        &saeidx_compare::CompareRequest::default(),
    )
    .unwrap();
    assert_eq!(printed, saeidx_query::answers::to_json(&want).unwrap());
    assert_eq!(printed["a"]["documents"], 7);
    let out = dir.path().join("export");
    let output = saeidx(&[
        "export",
        "neuronpedia",
        "--model-id",
        "synthetic",
        "--out",
        out.to_str().unwrap(),
        "--index",
        a.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let exported: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let live = saeidx_query::AnyIndex::open(&a)
        .unwrap()
        .live_features()
        .unwrap();
    assert_eq!(exported["features"], live.len());
    assert!(exported["activations"].as_u64().unwrap() > 0, "{exported}");
}
