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
    sync::{Arc, Mutex},
};

use saeidx_format::checksum::sha256_hex;
use saeidx_tests::{repo_root, saeidx_binary};
use serde_json::Value;

/// A Hub dataset repo as the server holds it: revision names → commit, and files.
struct Repo {
    commit: String,
    revisions: Vec<String>,
    files: BTreeMap<String, Vec<u8>>,
}

/// A local server for the Hub routes hf-hub uses: the revision listing
/// (`/api/datasets/ORG/NAME/revision/REV`) and file resolution
/// (`/datasets/ORG/NAME/resolve/REV/FILE`, with the `etag`, `x-repo-commit` and
/// `content-range` headers and byte ranges). Stops on drop.
struct LocalHub {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    requests: Arc<Mutex<Vec<String>>>,
    endpoint: String,
}

impl LocalHub {
    fn start(repos: BTreeMap<String, Repo>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!(
            "http://127.0.0.1:{}",
            server.server_addr().to_ip().unwrap().port()
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, requests) = (server.clone(), requests.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    requests.lock().unwrap().push(request.url().to_string());
                    let response = answer(&repos, &request);
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            server,
            thread: Some(thread),
            requests,
            endpoint,
        }
    }
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name, value).unwrap()
}

fn not_found(what: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(format!("{{\"error\": \"{what}\"}}")).with_status_code(404)
}

fn answer(
    repos: &BTreeMap<String, Repo>,
    request: &tiny_http::Request,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let url = request.url().to_string();
    let find = |rest: &str| -> Option<(&Repo, String, String)> {
        // ORG/NAME/<sep>/REV[/FILE]
        let mut parts = rest.splitn(5, '/');
        let repo_id = format!("{}/{}", parts.next()?, parts.next()?);
        let _separator = parts.next()?;
        let revision = parts.next()?.replace("%2F", "/");
        let file = parts.next().unwrap_or("").to_string();
        let repo = repos.get(&repo_id)?;
        (repo.revisions.contains(&revision) || revision == repo.commit)
            .then_some((repo, revision, file))
    };
    if let Some(rest) = url.strip_prefix("/api/datasets/") {
        let Some((repo, _, _)) = find(rest) else {
            return not_found("Revision Not Found");
        };
        let siblings: Vec<Value> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({"rfilename": f}))
            .collect();
        let body = serde_json::json!({"sha": repo.commit, "siblings": siblings});
        return tiny_http::Response::from_string(body.to_string())
            .with_header(header("Content-Type", "application/json"));
    }
    let Some((repo, _, file)) = url.strip_prefix("/datasets/").and_then(find) else {
        return not_found("Repository Not Found");
    };
    let Some(bytes) = repo.files.get(&file) else {
        return not_found("Entry Not Found");
    };
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end = if b.is_empty() {
                bytes.len().saturating_sub(1)
            } else {
                b.parse().unwrap()
            };
            (start, end.min(bytes.len().saturating_sub(1)))
        }
        None => (0, bytes.len().saturating_sub(1)),
    };
    let body = if bytes.is_empty() {
        Vec::new()
    } else {
        bytes[start..=end].to_vec()
    };
    tiny_http::Response::from_data(body)
        .with_status_code(if range.is_some() { 206 } else { 200 })
        .with_header(header("etag", &format!("\"{}\"", sha256_hex(bytes))))
        .with_header(header("x-repo-commit", &repo.commit))
        .with_header(header(
            "content-range",
            &format!("bytes {start}-{end}/{}", bytes.len()),
        ))
}

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
    let repo = |files: BTreeMap<String, Vec<u8>>| Repo {
        commit: COMMIT.into(),
        revisions: vec!["main".into(), "v1".into()],
        files,
    };
    let mut repos = BTreeMap::new();
    repos.insert("team/sotu-index".to_string(), repo(files.clone()));
    repos.insert("team/damaged".to_string(), repo(damaged));
    repos.insert("team/incomplete".to_string(), repo(incomplete));
    repos.insert("team/indexes".to_string(), repo(nested));
    repos.insert(
        "team/next".to_string(),
        Repo {
            commit: NEXT_COMMIT.into(),
            revisions: vec!["main".into()],
            files: files.clone(),
        },
    );
    let hub = LocalHub::start(repos);
    let endpoint = hub.endpoint.clone();
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
        hub.requests
            .lock()
            .unwrap()
            .iter()
            .all(|url| !url.contains("README.md")),
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

    // Offline, with the server gone: the cache answers for the fetched revisions.
    drop(hub);
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
