//! Rendered pages in a real browser: Debian's chromium (installed by
//! `scripts/setup.sh --test-tools`) loads them headless; the test checks the DOM it
//! built (coloured tokens, exact values, the outlined hit, links, no injected markup)
//! and saves screenshots under `target/test-artifacts/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use saeidx_query::FeatureRequest;
use saeidx_query::{AnyIndex, Exclusions, FeatureLabel, QueryIndex, Registry, build};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_view::{TextToken, render_feature, render_text};

fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())
    });
    found.expect("chromium is missing: run `bash scripts/setup.sh --test-tools`")
}

/// The DOM chromium builds from `page`, and a screenshot of it in `artifacts`.
fn load(page: &Path, artifacts: &Path) -> String {
    let url = format!("file://{}", page.display());
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let output = Command::new(chromium())
        .args(headless)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::create_dir_all(artifacts).unwrap();
    let shot = artifacts.join(page.with_extension("png").file_name().unwrap());
    let status = Command::new(chromium())
        .args(headless)
        .arg("--window-size=1200,1400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    String::from_utf8(output.stdout).unwrap()
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/view")
}

#[test]
fn feature_and_text_pages_render_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 10,
        tokens_per_document: (20, 60),
        documents_per_part: 5,
        feature_weights: (0..16).map(|f| 1.0 + f as f64).collect(),
        k: 4,
        value_step: 0.25,
        seed: 4,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let mut index = QueryIndex::open(dir.path()).unwrap();
    let mut registry = Registry::default();
    registry.set(
        5,
        FeatureLabel {
            name: Some("<img src=x onerror=\"document.title='pwned'\">".into()),
            ..FeatureLabel::default()
        },
    );
    index.save_registry(registry.clone()).unwrap();
    let index = AnyIndex::One(index);

    let report = index
        .feature(&FeatureRequest {
            feature: 5,
            examples: 3,
            bands: 2,
            per_band: 3,
            neighbours: 3,
            context: 4,
            exclusions: Exclusions::default(),
            restrict: Default::default(),
        })
        .unwrap();
    let page = dir.path().join("feature-5.html");
    std::fs::write(&page, render_feature(&index, &report, 4).unwrap()).unwrap();
    let dom = load(&page, &artifacts());
    assert!(
        dom.contains("<title>Feature 5</title>"),
        "no script changed the title"
    );
    assert!(!dom.contains("<img"), "the hostile label stayed text");
    let examples =
        report.top_texts.len() + report.bands.iter().map(|b| b.examples.len()).sum::<usize>();
    assert_eq!(dom.matches("class=\"tok hit\"").count(), examples);
    let top = &report.top_texts[0];
    assert!(dom.contains(&format!("data-activation=\"{}\"", top.activation)));
    assert!(dom.contains(&format!("title=\"{:.4}\"", top.activation)));
    for n in &report.neighbours {
        assert!(dom.contains(&format!("href=\"feature-{}.html\"", n.feature)));
    }
    assert!(dom.contains("<svg") && dom.contains("<rect"));

    let hostile = "<script>document.title='pwned'</script> naïve 日本\nnew line";
    let tokens = vec![
        TextToken {
            text: "<script>document.title='pwned'</script>".into(),
            values: vec![3.0],
            skipped: true,
        },
        TextToken {
            text: " naïve".into(),
            values: vec![1.5],
            skipped: false,
        },
        TextToken {
            text: " 日本\nnew line".into(),
            values: vec![0.0],
            skipped: false,
        },
    ];
    let page = dir.path().join("text.html");
    std::fs::write(&page, render_text(&registry, hostile, &[5], &tokens)).unwrap();
    let dom = load(&page, &artifacts());
    assert!(dom.contains("<title>saeidx: text</title>"));
    assert!(!dom.contains("<script>"));
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"));
    assert!(
        dom.contains("> 日本\nnew line</span>"),
        "whitespace and characters as written"
    );
    assert_eq!(dom.matches("class=\"tok").count(), 3);
}

#[test]
fn the_served_ui_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 6,
        tokens_per_document: (20, 40),
        documents_per_part: 3,
        feature_weights: (0..12).map(|f| 1.0 + f as f64).collect(),
        k: 3,
        value_step: 0.25,
        seed: 6,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = vec![saeidx_view::serve::ServedIndex {
        dir: dir.path().to_path_buf(),
        live: None,
    }];
    let options = saeidx_view::serve::ServeOptions::default();
    std::thread::spawn(move || saeidx_view::serve::serve(listener, served, options));
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let url = format!("http://127.0.0.1:{port}/feature/2");
    let output = Command::new(chromium())
        .args(headless)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8(output.stdout).unwrap();
    assert!(dom.contains("<title>Feature 2</title>"), "{dom}");
    assert!(dom.contains("class=\"tok hit\"") && dom.contains("action=\"/labels/2\""));
    assert!(dom.contains("href=\"/random\""));
    let shot = artifacts().join("served-feature-2.png");
    std::fs::create_dir_all(artifacts()).unwrap();
    let status = Command::new(chromium())
        .args(headless)
        .arg("--window-size=1200,1400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
