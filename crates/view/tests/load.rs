//! A bounded load test of the web server on loopback: 32 keep-alive clients, then 32
//! clients that connect per request, each for a few seconds, over the JSON API and a
//! page. Every answer must be a 200 (the figures printed are for the log; the benchmark
//! `benches/serve.rs` measures).

use std::time::Duration;

use saeidx_query::build;
use saeidx_testkit::load::{LoadSpec, run};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_view::serve::{ServeOptions, ServedIndex, serve};

#[test]
fn sustained_load_gets_only_successful_answers() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 60,
        tokens_per_document: (50, 200),
        documents_per_part: 20,
        feature_weights: (0..64).map(|f| 1.0 + (f % 7) as f64).collect(),
        k: 8,
        value_step: 0.125,
        seed: 3,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let served = vec![ServedIndex {
        dir: dir.path().to_path_buf(),
        live: None,
    }];
    std::thread::spawn(move || serve(listener, served, ServeOptions::default()));
    let mut paths = Vec::new();
    for i in 0..16 {
        paths.push(format!("/api/top-texts?feature={}&k=10", i * 3));
        paths.push(format!("/api/top-features?doc={}&k=10", i * 3));
        paths.push(format!("/api/feature/{}", i * 4));
    }
    paths.push("/api/info".into());
    paths.push("/feature/5".into());
    for keep_alive in [true, false] {
        let load = LoadSpec {
            clients: 32,
            duration: Duration::from_secs(4),
            keep_alive,
            paths: paths.clone(),
        };
        let report = run(address, &load);
        println!(
            "keep-alive {keep_alive}: {} answers, {:.0}/s, p50 {:?}, p99 {:?}, {} errors",
            report.ok,
            report.per_second(),
            report.quantile(0.5),
            report.quantile(0.99),
            report.errors
        );
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert!(report.ok > 0);
    }
}
