//! A small HTTP/1.1 load generator for tests and benchmarks of `saeidx serve`: client
//! threads send GET requests round-robin over a list of paths, each on one keep-alive
//! connection or on a new connection per request, and record every latency and error.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// What load to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Client threads (each with its own connection).
    pub clients: usize,
    /// How long to send.
    pub duration: Duration,
    /// Reuse one connection per client (HTTP keep-alive), or connect per request.
    pub keep_alive: bool,
    /// Paths requested round-robin (each client starts at a different one).
    pub paths: Vec<String>,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Answers with status 200.
    pub ok: usize,
    /// Other statuses, broken connections and timeouts, with a sample message.
    pub errors: usize,
    /// The first error seen.
    pub first_error: Option<String>,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }
}

/// Sends `spec`'s load to `server` and reports.
pub fn run(server: SocketAddr, spec: &LoadSpec) -> LoadReport {
    let start = Instant::now();
    let deadline = start + spec.duration;
    let reports: Vec<LoadReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.clients)
            .map(|client| scope.spawn(move || one_client(server, spec, client, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = LoadReport::default();
    for report in reports {
        total.merge(report);
    }
    total.latencies.sort();
    total.elapsed = start.elapsed();
    total
}

fn one_client(server: SocketAddr, spec: &LoadSpec, client: usize, deadline: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    let mut connection: Option<BufReader<TcpStream>> = None;
    let mut n = client;
    while Instant::now() < deadline {
        let path = &spec.paths[n % spec.paths.len()];
        n += 1;
        let started = Instant::now();
        match request(server, path, spec.keep_alive, &mut connection) {
            Ok(200) => {
                report.ok += 1;
                report.latencies.push(started.elapsed());
            }
            outcome => {
                report.errors += 1;
                connection = None;
                if report.first_error.is_none() {
                    report.first_error = Some(format!("GET {path}: {outcome:?}"));
                }
            }
        }
        if !spec.keep_alive {
            connection = None;
        }
    }
    report
}

/// One GET; returns the status. The body is read whole (by Content-Length).
fn request(
    server: SocketAddr,
    path: &str,
    keep_alive: bool,
    connection: &mut Option<BufReader<TcpStream>>,
) -> std::io::Result<u16> {
    if connection.is_none() {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        *connection = Some(BufReader::new(stream));
    }
    let reader = connection.as_mut().expect("connected above");
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    write!(
        reader.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}\r\n"
    )?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}
