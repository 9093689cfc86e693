//! The feature browser in a real browser (headless chromium over WebDriver): the index
//! overview's links, a feature page's logit effects and its hit followed to the
//! document, a token clicked on the document page. Checks the DOM against the CLI's
//! answers and saves screenshots under `target/test-artifacts/browse/` (and, with
//! `SAEIDX_WRITE_SCREENSHOTS=1`, into `docs/screenshots/` for the README).

use std::{
    path::Path,
    process::{Command, Stdio},
};

use saeidx_tests::{
    job_fixture::{Setup, saeidx_ok},
    repo_root, saeidx_binary,
    webdriver::Browser,
};
use serde_json::Value;

/// A `saeidx serve` process, stopped on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `index` on a free port; returns the server and its address.
fn serve(index: &Path, cwd: &Path) -> (Server, String) {
    let mut child = Command::new(saeidx_binary())
        .args(["serve", index.to_str().unwrap(), "--port", "0", "--no-live"])
        .current_dir(cwd)
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
    let server = Server(child);
    let site = first_line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("serve did not start: {first_line:?}"))
        .trim_end_matches('/')
        .to_string();
    (server, site)
}

/// Saves a screenshot under the test artifacts, and into `docs/screenshots/` when asked.
fn screenshot(browser: &Browser, name: &str) {
    let path = repo_root().join("target/test-artifacts/browse").join(name);
    browser.screenshot(&path);
    assert!(
        std::fs::metadata(&path).unwrap().len() > 10_000,
        "a real screenshot"
    );
    if std::env::var_os("SAEIDX_WRITE_SCREENSHOTS").is_some() {
        let docs = repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&path, docs.join(name)).unwrap();
    }
}

/// Gives the fixture's JSONL records a `year` and a `party` (its text files have none)
/// and its job the two metadata columns.
fn with_metadata(setup: &Setup) {
    let corpus = setup.path().join("corpus/addresses.jsonl");
    let records: String = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            record["year"] = (1790 + i).into();
            record["party"] = if i % 2 == 0 { "Federalist" } else { "Whig" }.into();
            format!("{record}\n")
        })
        .collect();
    std::fs::write(&corpus, records).unwrap();
    let job = std::fs::read_to_string(setup.job()).unwrap().replace(
        "on_bad_record = \"skip\"",
        "on_bad_record = \"skip\"\nmetadata = [{ field = \"year\", type = \"integer\" }, \
         { field = \"party\", type = \"string\" }]",
    );
    std::fs::write(setup.job(), job).unwrap();
}

fn text_of(browser: &Browser, selector: &str) -> Value {
    browser.eval(&format!(
        "return Array.from(document.querySelectorAll({selector:?})).map(e => e.textContent)"
    ))
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn overview_feature_and_document_pages_work_in_a_browser() {
    let setup = Setup::create();
    let cwd = setup.path();
    with_metadata(&setup);
    saeidx_ok(&["run", setup.job().to_str().unwrap(), "--json"], cwd);
    let index = setup.path().join("out/index");
    let index_arg = index.to_str().unwrap();
    let (_server, site) = serve(&index, cwd);
    let browser = Browser::start();

    // The overview: provenance, the density plot with its axes, the most frequent
    // features as the CLI ranks them, each a link to its page.
    let overview = saeidx_ok(&["overview", "--index", index_arg, "--json"], cwd);
    browser.open(&format!("{site}/"));
    let dom = browser.dom();
    assert!(dom.contains(overview["provenance"]["hook"].as_str().unwrap()));
    assert!(
        dom.contains("log scale") && dom.contains(">features<"),
        "density axes"
    );
    let most: Vec<String> = overview["most_frequent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].to_string())
        .collect();
    let shown = browser.eval(
        "return Array.from(document.querySelectorAll('#most-frequent + table a')).map(a => a.textContent)",
    );
    assert_eq!(shown, serde_json::json!(most));
    assert_eq!(
        browser.eval("return document.querySelectorAll('#documents + p + table a').length"),
        overview["documents"].as_array().unwrap().len()
    );
    // The documents list shows each document's metadata, as `overview --json` has it.
    assert_eq!(
        text_of(&browser, "#documents-list th"),
        serde_json::json!([
            "doc",
            "id",
            "source",
            "year",
            "party",
            "tokens",
            "beginning"
        ])
    );
    let expected: Vec<Vec<String>> = overview["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            ["year", "party"]
                .iter()
                .map(|column| match &d["metadata"][column] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    assert!(expected.iter().any(|row| row[0] == "1790"));
    assert!(
        expected.iter().any(|row| row[0].is_empty()),
        "a text file's null"
    );
    assert_eq!(
        browser.eval(
            "return Array.from(document.querySelectorAll('#documents-list tr')).slice(1)\
             .map(r => Array.from(r.cells).slice(3, 5).map(c => c.textContent))"
        ),
        serde_json::json!(expected)
    );
    screenshot(&browser, "overview.png");

    // A feature page from the overview: its logit effects as `feature --json` has them.
    browser.click("#most-frequent + table a");
    let feature: u32 = most[0].parse().unwrap();
    assert_eq!(browser.url(), format!("{site}/feature/{feature}"));
    let report = saeidx_ok(&["feature", &most[0], "--index", index_arg, "--json"], cwd);
    let promoted: Vec<Value> = report["logits"]["top"]
        .as_array()
        .expect("the run wrote logit effects")
        .iter()
        .map(|e| e["token"].clone())
        .collect();
    let rows = browser.eval(
        "return Array.from(document.querySelectorAll('table.logit.pos tr[data-token]')).map(r => Number(r.dataset.token))",
    );
    assert_eq!(rows, Value::Array(promoted));
    assert!(browser.dom().contains("activation value (SAE units)"));
    screenshot(&browser, "feature.png");

    // Follow the strongest example to its document: the page opens at that token,
    // coloured by this feature with the example's activation.
    let hit = &report["top_texts"][0];
    let position = hit["position"].as_u64().unwrap();
    browser.click("a.hit");
    let url = browser.url();
    assert!(
        url.starts_with(&format!("{site}/doc/{}?f={feature}&", hit["doc"]))
            && url.ends_with(&format!("#p{position}")),
        "{url}"
    );
    let at_hit = browser.eval(&format!(
        "const t = document.getElementById('p{position}'); return [t.dataset.activation, t.matches(':target')]"
    ));
    assert_eq!(
        at_hit[0].as_str().unwrap().parse::<f32>().unwrap(),
        hit["activation"].as_f64().unwrap() as f32
    );
    assert_eq!(at_hit[1], true, "the hit is the page's target");
    let page = saeidx_ok(
        &[
            "document",
            &hit["doc"].to_string(),
            "--feature",
            &most[0],
            "--page",
            &(position / 400).to_string(),
            "--index",
            index_arg,
            "--json",
        ],
        cwd,
    );
    let tokens: Vec<Value> = page["page_content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].clone())
        .collect();
    assert_eq!(text_of(&browser, "#tokens a.tok"), Value::Array(tokens));
    let side = browser.eval(
        "return Array.from(document.querySelectorAll('aside table a')).map(a => Number(a.textContent))",
    );
    let top: Vec<Value> = page["top_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].clone())
        .collect();
    assert_eq!(side, Value::Array(top));
    screenshot(&browser, "document.png");

    // Click the token: its panel of features shows (no script on the page: CSS
    // :target), listing each active feature with its value.
    let token = &page["page_content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["position"].as_u64() == Some(position))
        .unwrap()["features"];
    assert_eq!(
        browser.eval(&format!(
            "return getComputedStyle(document.getElementById('t{position}')).display"
        )),
        "none"
    );
    browser.click_in_page(&format!("#p{position}"));
    assert!(browser.url().ends_with(&format!("#t{position}")));
    assert_eq!(
        browser.eval(&format!(
            "return getComputedStyle(document.getElementById('t{position}')).display"
        )),
        "block"
    );
    let listed = browser.eval(&format!(
        "return Array.from(document.querySelectorAll('#t{position} tr td:first-child a')).map(a => Number(a.textContent))"
    ));
    let expected: Vec<Value> = token
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].clone())
        .collect();
    assert_eq!(listed, Value::Array(expected));
    assert_eq!(
        browser.eval("return document.querySelectorAll('script').length"),
        0
    );
    screenshot(&browser, "document-token.png");

    // A token's "colour by it" link recolours the document by another feature.
    browser.click(&format!("#t{position} tr:last-child td:last-child a"));
    let other = token.as_array().unwrap().last().unwrap()["feature"].clone();
    assert!(browser.url().contains(&format!("?f={other}&")));

    // The overview's documents list leads to each document's page.
    browser.open(&format!("{site}/"));
    browser.click("#documents + p + table a");
    assert_eq!(browser.url(), format!("{site}/doc/0"));
    assert!(browser.eval("return document.querySelectorAll('#tokens a.tok').length") != 0);
    // Every token is a link: reachable with the keyboard.
    assert_eq!(
        browser.eval("return document.querySelectorAll('#tokens .tok:not(a[href])').length"),
        0
    );

    filter_box_and_contrast_form(&browser, &site, (index_arg, cwd), &most[0]);
}

/// A filter typed into a feature page's filter box and into the contrast form: the
/// answers shown are the CLI's for the same predicate.
fn filter_box_and_contrast_form(
    browser: &Browser,
    site: &str,
    (index_arg, cwd): (&str, &Path),
    feature: &str,
) {
    let filter = "party = 'Whig'";
    browser.open(&format!("{site}/feature/{feature}"));
    browser.type_into("form.filter-box input.filter", filter);
    browser.click("form.filter-box button");
    assert!(
        browser
            .url()
            .starts_with(&format!("{site}/feature/{feature}?where=")),
        "{}",
        browser.url()
    );
    // The top examples: the hits between "Top examples" and the next heading.
    let shown = browser.eval(
        "const out = []; let e = Array.from(document.querySelectorAll('h2')).find(h => h.textContent === 'Top examples');          while ((e = e.nextElementSibling) && e.tagName !== 'H2') { const a = e.querySelector('a.hit');          if (a) { const u = new URL(a.href); out.push([Number(u.pathname.split('/').pop()), Number(u.hash.slice(2))]); } } return out",
    );
    let shown = shown.as_array().unwrap();
    assert!(!shown.is_empty(), "the filter keeps some examples");
    let k = shown.len().to_string();
    let expected = saeidx_ok(
        &[
            "top-texts",
            "--feature",
            feature,
            "--where",
            filter,
            "--k",
            &k,
            "--index",
            index_arg,
            "--json",
        ],
        cwd,
    );
    let expected: Vec<Value> = expected["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| serde_json::json!([hit["doc"], hit["position"]]))
        .collect();
    assert_eq!(shown, &expected);
    assert!(browser.dom().contains("restricted to"), "the page says so");
    screenshot(browser, "feature-filtered.png");

    // The contrast form: A by a filter, B left empty (the rest of the index).
    browser.open(&format!("{site}/contrast"));
    browser.type_into("form.contrast-form input[name=a]", filter);
    browser.click("form.contrast-form button");
    let contrast = saeidx_ok(
        &["contrast", "--a", filter, "--index", index_arg, "--json"],
        cwd,
    );
    for (side, key) in [("a-over-b", "a_over_b"), ("b-over-a", "b_over_a")] {
        let shown = browser.eval(&format!(
            "return Array.from(document.querySelectorAll('table.{side} tr[data-feature]')).map(r => Number(r.dataset.feature))"
        ));
        let expected: Vec<Value> = contrast[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["feature"].clone())
            .collect();
        assert_eq!(shown, Value::Array(expected), "{side}");
    }
    assert!(
        !contrast["a_over_b"].as_array().unwrap().is_empty(),
        "a contrast with features to show"
    );
    screenshot(browser, "contrast.png");
}
