//! Hostile clients against the web server: cross-site writes, foreign Host names,
//! oversized bodies and heads, a thousand idle connections, and idle keep-alive
//! connections holding every slot. The server refuses what it must and stays up.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use saeidx_query::build;
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_view::serve::{ServeOptions, ServedIndex, serve};

fn index(dir: &Path) {
    let spec = SyntheticSpec {
        documents: 6,
        tokens_per_document: (10, 30),
        documents_per_part: 3,
        feature_weights: (0..8).map(|f| 1.0 + f as f64).collect(),
        k: 3,
        value_step: 0.25,
        seed: 11,
    };
    write_synthetic_index(dir, &spec).unwrap();
    build(dir).unwrap();
}

/// Serves a fresh synthetic index with `options`; returns the port and the folder.
fn start(options: ServeOptions) -> (u16, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    index(root.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = vec![ServedIndex {
        dir: root.path().to_path_buf(),
        live: None,
    }];
    std::thread::spawn(move || serve(listener, served, options));
    (port, root)
}

/// Sends raw bytes, returns the status and body of the (first) answer (status 0: the
/// server closed the connection without an answer the client could read).
fn exchange(port: u16, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // A server that refuses early may close while the rest is still being written.
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn post(port: u16, path: &str, headers: &str, body: &str) -> (u16, String) {
    exchange(
        port,
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn label_of(port: u16, feature: u32) -> serde_json::Value {
    let (status, body) = get(port, &format!("/api/feature/{feature}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["label"].clone()
}

#[test]
fn cross_site_writes_and_foreign_hosts_are_refused() {
    let (port, _dir) = start(ServeOptions::default());
    // A form on another site posting to the label form: refused, nothing saved.
    let (status, body) = post(
        port,
        "/labels/3",
        "Origin: http://evil.example\r\n",
        "name=pwned",
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = post(
        port,
        "/labels/3",
        "Sec-Fetch-Site: cross-site\r\n",
        "name=pwned",
    );
    assert_eq!(status, 403);
    let (status, _) = post(
        port,
        "/api/labels/3",
        "Origin: null\r\n",
        "{\"name\": \"pwned\"}",
    );
    assert_eq!(status, 403);
    assert_eq!(label_of(port, 3), serde_json::Value::Null);
    // The server's own page may post (same origin), and so may non-browser clients.
    let own = format!("Origin: http://127.0.0.1:{port}\r\n");
    let (status, _) = post(port, "/labels/3", &own, "name=senate+words");
    assert_eq!(status, 303);
    assert_eq!(label_of(port, 3)["name"], "senate words");
    let (status, _) = post(port, "/api/labels/4", "", "{\"name\": \"navy\"}");
    assert_eq!(status, 200);
    // A rebound DNS name (Host names another server) is refused for reads too.
    let (status, body) = exchange(
        port,
        b"GET /api/info HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("--allow-host"), "{body}");
}

#[test]
fn oversized_bodies_and_heads_are_refused_and_the_server_stays_up() {
    let (port, _dir) = start(ServeOptions::default());
    // A 50 MB label, announced: refused from its head, before any of it is sent.
    let started = Instant::now();
    let (status, body) = exchange(
        port,
        format!(
            "POST /api/labels/3 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            50 * 1024 * 1024
        )
        .as_bytes(),
    );
    assert_eq!(status, 413, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Sent in chunks with no length: cut off at the limit. The client, still writing when
    // the server answers and closes, may see the close as a reset instead of the 413
    // (the kernel resets a connection closed with unread input): refused either way.
    let mut chunked =
        b"POST /api/labels/3 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = exchange(port, &chunked);
    assert!(status == 413 || status == 0, "status {status}");
    // A 1 MB path: refused by the HTTP layer.
    let long = format!(
        "GET /search?q={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (status, _) = exchange(port, long.as_bytes());
    // Refused by the HTTP layer (or, as above, reset while the client still writes).
    assert!([414, 431, 400, 0].contains(&status), "status {status}");
    assert_eq!(label_of(port, 3), serde_json::Value::Null);
    assert_eq!(get(port, "/").0, 200);
}

/// Threads of this process.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_thousand_idle_connections_cost_no_threads() {
    let (port, _dir) = start(ServeOptions::default());
    assert_eq!(get(port, "/").0, 200);
    let before = threads();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(port, "/api/info").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let during = threads();
    assert!(
        during <= before + 2,
        "threads: {before} before, {during} with 1,000 idle connections"
    );
    drop(idle);
}

#[test]
fn idle_keep_alive_connections_time_out_and_free_their_slots() {
    let options = ServeOptions {
        max_connections: 4,
        header_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let (port, _dir) = start(options);
    // Four keep-alive clients take every slot: each sends one request, reads the answer's
    // first bytes and keeps the connection open.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for stream in &mut held {
        write!(stream, "GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).unwrap();
        assert_eq!(&first[9..12], b"200");
    }
    // A fifth client is answered once the idle ones are closed (it waits in the listen
    // queue meanwhile).
    let started = Instant::now();
    assert_eq!(get(port, "/").0, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    // The idle connections were closed by the server (the read ends).
    for mut stream in held {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        assert!(
            stream.read_to_end(&mut rest).is_ok(),
            "closed by the server"
        );
    }
}
