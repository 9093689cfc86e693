//! Offline-first loading through the `saeidx` binary, without `HF_HUB_OFFLINE`: the
//! README's own examples run as written and never touch the network (the default model
//! is placed in the cache by set-up); models and SAEs that came from the Hub load from the
//! cache with a warning naming the commit when the Hub is unreachable, fails (500) or
//! refuses (404); uncached ones fail with an error that says what to run.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

use saeidx_testkit::hub::{LocalHub, RepoKind, ServedRepo, closed_endpoint};
use saeidx_tests::{job_fixture::random_sae, repo_root, saeidx_binary, tiny_text_model};

/// Runs `saeidx` as a user would: `HF_HUB_OFFLINE` unset, the Hub at `endpoint`, and
/// the cache at `hf_home` (`None`: the one set-up filled).
fn saeidx(args: &[&str], cwd: &Path, endpoint: &str, hf_home: Option<&Path>) -> Output {
    let mut command = Command::new(saeidx_binary());
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_ETAG_TIMEOUT", "5")
        .env("RUST_LOG", "warn");
    if let Some(home) = hf_home {
        command.env("HF_HOME", home);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    output
}

fn failed(output: Output, what: &str) -> String {
    assert_eq!(output.status.code(), Some(2), "{what}: {}", stderr(&output));
    stderr(&output)
}

/// The commands of the README's offline example block (the first `bash` block after the
/// heading "## Offline first").
fn readme_offline_examples() -> Vec<String> {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split_once("\n## Offline first")
        .expect("README has the section '## Offline first'")
        .1;
    let block = section
        .split_once("```bash\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section has a bash block")
        .0;
    block
        .lines()
        .filter(|line| line.starts_with("saeidx "))
        .map(str::to_string)
        .collect()
}

/// A small index of the default model and SAE at `dir/indexes/default`, built the way a
/// user builds one (no `HF_HUB_OFFLINE`).
fn default_index(dir: &Path, endpoint: &str) {
    let corpus = dir.join("corpus.jsonl");
    let texts = [
        "The Senate and House of Representatives shall make appropriations for the navy.",
        "Paris is the capital of France, and Berlin is the capital of Germany.",
    ];
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| serde_json::json!({"id": format!("doc-{i}"), "text": text}).to_string())
        .collect();
    fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let sae = repo_root().join("crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32");
    let job = format!(
        "output = \"indexes/default\"\nhook = \"blocks.15.hook_resid_post\"\n\
         [model]\nsource = \"saeidx-default/SmolLM2-135M-Instruct-mlx-4bit\"\n\
         [sae]\npath = {sae:?}\n[corpus]\nsources = [{{ path = \"corpus.jsonl\" }}]\n"
    );
    fs::write(dir.join("job.toml"), job).unwrap();
    succeeded(saeidx(&["run", "job.toml"], dir, endpoint, None), "run");
}

#[test]
fn the_readme_examples_run_as_written_and_never_ask_the_hub() {
    let examples = readme_offline_examples();
    assert!(
        examples
            .iter()
            .any(|e| e.starts_with("saeidx activations "))
            && examples.iter().any(|e| e.contains("top-features --text")),
        "{examples:?}"
    );
    // A Hub that knows nothing and records what it is asked: nothing, since the
    // default model is placed in the cache by set-up.
    let hub = LocalHub::start(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    default_index(dir.path(), hub.endpoint());
    let bin = saeidx_binary().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for endpoint in [hub.endpoint().to_string(), closed_endpoint()] {
        for example in &examples {
            let output = Command::new("bash")
                .args(["-c", example])
                .current_dir(dir.path())
                .env("PATH", &path)
                .env_remove("HF_HUB_OFFLINE")
                .env("HF_ENDPOINT", &endpoint)
                .output()
                .unwrap();
            let output = succeeded(output, example);
            assert!(!output.stdout.is_empty(), "{example} printed nothing");
            assert!(
                !stderr(&output).contains("WARN"),
                "{example}: {}",
                stderr(&output)
            );
        }
    }
    assert!(
        hub.requests().is_empty(),
        "asked the Hub: {:?}",
        hub.requests()
    );
}

#[test]
fn cached_models_and_saes_load_when_the_hub_cannot_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_text_model(dir.path(), 1);
    random_sae(&dir.path().join("sae"), 64);
    let served_model = ServedRepo::from_folder(RepoKind::Model, "org/tiny-llama", &model).unwrap();
    let served_sae =
        ServedRepo::from_folder(RepoKind::Model, "org/tiny-sae", &dir.path().join("sae")).unwrap();
    let (model_commit, sae_commit) = (served_model.commit.clone(), served_sae.commit.clone());
    let hub = LocalHub::start(vec![served_model, served_sae]);
    let home = dir.path().join("hf");
    let cwd = dir.path();
    let activations = [
        "activations",
        "--model",
        "org/tiny-llama",
        "--hook",
        "blocks.0.hook_resid_post",
        "--text",
        "Paris is the capital of France.",
        "--json",
    ];
    let inspect_sae = ["sae", "inspect", "org/tiny-sae", "--json"];
    // Online: the first use downloads into the fresh cache, silently.
    for args in [&activations[..], &inspect_sae[..]] {
        let output = succeeded(saeidx(args, cwd, hub.endpoint(), Some(&home)), args[0]);
        assert!(!stderr(&output).contains("WARN"), "{}", stderr(&output));
    }
    let closed = closed_endpoint();
    for (endpoint, status, reason) in [
        (closed.as_str(), None, "could not be reached"),
        (hub.endpoint(), Some(500), "HTTP 500"),
        (hub.endpoint(), Some(404), "HTTP 404"),
    ] {
        hub.fail_with(status);
        for (args, repo, commit) in [
            (&activations[..], "org/tiny-llama", &model_commit),
            (&inspect_sae[..], "org/tiny-sae", &sae_commit),
        ] {
            let output = succeeded(saeidx(args, cwd, endpoint, Some(&home)), reason);
            let warning = stderr(&output);
            assert!(warning.contains(reason), "{warning}");
            let named = format!("using the cached snapshot of {repo}@main at commit {commit}");
            assert!(warning.contains(&named), "{warning}");
            assert_eq!(warning.lines().count(), 1, "one line: {warning}");
        }
        let mut absent = activations;
        absent[2] = "org/absent";
        let message = failed(saeidx(&absent, cwd, endpoint, Some(&home)), "absent model");
        assert!(message.contains(reason), "{message}");
        assert!(
            message
                .contains("huggingface-cli download --repo-type model org/absent --revision main"),
            "{message}"
        );
        let message = failed(
            saeidx(
                &["sae", "inspect", "org/absent-sae"],
                cwd,
                endpoint,
                Some(&home),
            ),
            "absent SAE",
        );
        assert!(
            message.contains("org/absent-sae@main is not in the Hugging Face cache"),
            "{message}"
        );
    }
}
