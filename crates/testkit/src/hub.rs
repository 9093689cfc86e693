//! A local stand-in for the Hugging Face Hub, for tests: a server on
//! 127.0.0.1 answering the routes hf-hub uses — the revision listing
//! (`/api/{models,datasets}/ORG/NAME/revision/REV`) and file resolution
//! (`[/datasets]/ORG/NAME/resolve/REV/FILE` with the `etag`, `x-repo-commit` and
//! `content-range` headers and byte ranges) — for the repos it is given. It can be told
//! to answer every request with an error status, and [`closed_endpoint`] names a port
//! where nothing listens.

use std::{
    collections::BTreeMap,
    fs,
    io::Cursor,
    path::Path,
    sync::{Arc, Mutex},
};

use sha2::{Digest, Sha256};

/// What a served repo holds (the Hub's URLs differ by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repo: `/api/models/...`, `/ORG/NAME/resolve/...`.
    Model,
    /// A dataset repo: `/api/datasets/...`, `/datasets/ORG/NAME/resolve/...`.
    Dataset,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A repo as the local Hub holds it.
#[derive(Debug, Clone)]
pub struct ServedRepo {
    /// Model or dataset.
    pub kind: RepoKind,
    /// `org/name`.
    pub repo_id: String,
    /// The commit every revision names.
    pub commit: String,
    /// Branch and tag names that resolve to the commit.
    pub revisions: Vec<String>,
    /// Path in the repo → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl ServedRepo {
    /// A repo at `main` holding `files`, its commit derived from their content.
    pub fn new(kind: RepoKind, repo_id: &str, files: BTreeMap<String, Vec<u8>>) -> Self {
        let listing: String = files
            .iter()
            .map(|(name, bytes)| format!("{name} {}\n", sha256_hex(bytes)))
            .collect();
        Self {
            kind,
            repo_id: repo_id.to_string(),
            commit: sha256_hex(listing.as_bytes())[..40].to_string(),
            revisions: vec!["main".into()],
            files,
        }
    }

    /// A repo holding every file below `dir` (symbolic links followed), at `main`.
    pub fn from_folder(kind: RepoKind, repo_id: &str, dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        read_tree(dir, "", &mut files)?;
        Ok(Self::new(kind, repo_id, files))
    }
}

fn read_tree(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            read_tree(&entry.path(), &format!("{name}/"), out)?;
        } else {
            out.insert(name, fs::read(entry.path())?);
        }
    }
    Ok(())
}

struct State {
    repos: Vec<ServedRepo>,
    fail_with: Option<u16>,
    requests: Vec<String>,
}

/// The local Hub; stops when dropped.
pub struct LocalHub {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    state: Arc<Mutex<State>>,
    endpoint: String,
}

impl LocalHub {
    /// Starts serving `repos` on a free loopback port.
    pub fn start(repos: Vec<ServedRepo>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let state = Arc::new(Mutex::new(State {
            repos,
            fail_with: None,
            requests: Vec::new(),
        }));
        let thread = {
            let (server, state) = (server.clone(), state.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let response = {
                        let mut state = state.lock().expect("state lock");
                        state.requests.push(request.url().to_string());
                        match state.fail_with {
                            Some(status) => status_response(status, "failing on purpose"),
                            None => answer(&state.repos, &request),
                        }
                    };
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            server,
            thread: Some(thread),
            state,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The URL to put in `HF_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, answer every request with `status` (`None`: serve normally).
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.lock().expect("state lock").fail_with = status;
    }

    /// The URLs requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state lock").requests.clone()
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

/// An endpoint on a loopback port where nothing listens (connections are refused).
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("an address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

type Response = tiny_http::Response<Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name, value).expect("a valid header")
}

fn status_response(status: u16, message: &str) -> Response {
    tiny_http::Response::from_string(format!("{{\"error\": \"{message}\"}}"))
        .with_status_code(status)
        .with_header(header("x-error-message", message))
}

/// Finds the repo and file a `ORG/NAME/<sep>/REV[/FILE]` path names.
fn find<'a>(
    repos: &'a [ServedRepo],
    kind: RepoKind,
    rest: &str,
) -> Option<(&'a ServedRepo, String)> {
    let mut parts = rest.splitn(5, '/');
    let repo_id = format!("{}/{}", parts.next()?, parts.next()?);
    let _separator = parts.next()?;
    let revision = parts.next()?.replace("%2F", "/");
    let file = parts.next().unwrap_or("").to_string();
    let repo = repos
        .iter()
        .find(|r| r.kind == kind && r.repo_id == repo_id)?;
    (repo.revisions.contains(&revision) || revision == repo.commit).then_some((repo, file))
}

fn answer(repos: &[ServedRepo], request: &tiny_http::Request) -> Response {
    let url = request.url().to_string();
    let listing = [
        ("/api/models/", RepoKind::Model),
        ("/api/datasets/", RepoKind::Dataset),
    ];
    for (prefix, kind) in listing {
        if let Some(rest) = url.strip_prefix(prefix) {
            return match find(repos, kind, rest) {
                Some((repo, _)) => list(repo),
                None => status_response(404, "Repository or revision not found"),
            };
        }
    }
    let (kind, rest) = match url.strip_prefix("/datasets/") {
        Some(rest) => (RepoKind::Dataset, rest),
        None => (RepoKind::Model, url.trim_start_matches('/')),
    };
    match find(repos, kind, rest) {
        Some((repo, file)) => match repo.files.get(&file) {
            Some(bytes) => file_response(repo, bytes, request),
            None => status_response(404, "Entry not found"),
        },
        None => status_response(404, "Repository not found"),
    }
}

fn list(repo: &ServedRepo) -> Response {
    let siblings: Vec<serde_json::Value> = repo
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    let body = serde_json::json!({ "sha": repo.commit, "siblings": siblings });
    tiny_http::Response::from_string(body.to_string())
        .with_header(header("Content-Type", "application/json"))
}

fn file_response(repo: &ServedRepo, bytes: &[u8], request: &tiny_http::Request) -> Response {
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let last = bytes.len().saturating_sub(1);
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let start: usize = a.parse().unwrap_or(0);
            let end = b.parse().unwrap_or(last);
            (start.min(last), end.min(last))
        }
        None => (0, last),
    };
    let body = if bytes.is_empty() {
        Vec::new()
    } else {
        bytes[start..=end.max(start)].to_vec()
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
