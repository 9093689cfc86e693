//! Document metadata and filters on real index folders: a synthetic index with random
//! metadata verifies, DuckDB reads its typed columns, and random filters select exactly
//! the documents DuckDB's SQL selects with the same `WHERE` clause; verification refuses
//! a documents table that differs from the manifest's declaration, and an index without
//! metadata still reads and filters on its fixed columns.

use std::{path::Path, process::Command};

use rand::{SeedableRng, rngs::StdRng};
use saeidx_format::{
    manifest::Manifest,
    metadata::read_documents,
    verify::{VerifyError, verify},
};
use saeidx_query::{Filter, filter_columns};
use saeidx_testkit::{
    filters::random_predicate,
    synthetic::{SyntheticSpec, write_synthetic_index, write_synthetic_index_with_metadata},
};
use saeidx_tests::reference_python;
use serde_json::Value;

fn spec(documents: usize) -> SyntheticSpec {
    SyntheticSpec {
        documents,
        tokens_per_document: (0, 6),
        documents_per_part: 17,
        feature_weights: vec![1.0; 8],
        k: 2,
        value_step: 0.5,
        seed: 5,
    }
}

/// Runs `select doc ... where <filter> order by doc` in DuckDB for every filter, and
/// the column types DuckDB sees.
fn duckdb(index: &Path, filters: &[String]) -> Value {
    let script = r#"
import duckdb, json, sys
root, filters = sys.argv[1], json.loads(sys.stdin.read())
con = duckdb.connect()
table = f"read_parquet('{root}/documents/*.parquet')"
types = {row[0]: row[1] for row in con.execute(f"describe select * from {table}").fetchall()}
selected = [[row[0] for row in con.execute(f"select doc from {table} where {f} order by doc").fetchall()]
            for f in filters]
print(json.dumps({"types": types, "selected": selected}))
"#;
    let mut child = Command::new(reference_python())
        .args(["-c", script])
        .arg(index)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(filters).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn random_filters_select_what_duckdb_selects() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_synthetic_index_with_metadata(dir.path(), &spec(120)).unwrap();
    verify(dir.path()).unwrap();
    let table = read_documents(dir.path(), &manifest, false).unwrap();
    assert_eq!(table.num_rows(), 120);
    let columns = filter_columns(&manifest.job.corpus.metadata);
    let mut rng = StdRng::seed_from_u64(17);
    let predicates: Vec<_> = (0..300).map(|_| random_predicate(&mut rng, 3)).collect();
    let texts: Vec<String> = predicates.iter().map(|p| p.render()).collect();
    let duck = duckdb(dir.path(), &texts);

    let types = &duck["types"];
    for (column, duck_type) in [
        ("year", "BIGINT"),
        ("share", "DOUBLE"),
        ("party", "VARCHAR"),
        ("flag", "BOOLEAN"),
        ("delivered", "TIMESTAMP"),
        ("first name", "VARCHAR"),
    ] {
        assert_eq!(types[column], duck_type, "{types}");
    }
    let mut nonempty = 0;
    for (text, selected) in texts.iter().zip(duck["selected"].as_array().unwrap()) {
        let expected: Vec<u32> = serde_json::from_value(selected.clone()).unwrap();
        let filter = Filter::parse(text, &columns).unwrap_or_else(|e| panic!("{e}"));
        let ours = filter.matching_documents(&table).unwrap();
        assert_eq!(ours, expected, "{text}");
        nonempty += usize::from(!ours.is_empty() && ours.len() < 120);
    }
    // The filters discriminate: most select some documents but not all.
    assert!(
        nonempty > 100,
        "{nonempty} of 300 filters select a proper subset"
    );
}

#[test]
fn verify_checks_the_metadata_columns_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_index_with_metadata(dir.path(), &spec(20)).unwrap();
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["job"]["corpus"]["metadata"][0]["type"] = "float".into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let Err(VerifyError::Corrupt { reason, .. }) = verify(dir.path()) else {
        panic!("a documents table that is not the declared one verified");
    };
    assert!(
        reason.contains("year Int64") && reason.contains("year Float64"),
        "{reason}"
    );
    assert!(
        reason.contains("metadata columns the manifest declares"),
        "{reason}"
    );
}

#[test]
fn an_index_without_metadata_reads_and_filters_on_its_fixed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_synthetic_index(dir.path(), &spec(30)).unwrap();
    let json = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(!json.contains("\"metadata\""), "an old-style manifest");
    let reread = Manifest::read(dir.path()).unwrap();
    assert!(reread.job.corpus.metadata.is_empty());
    verify(dir.path()).unwrap();
    let table = read_documents(dir.path(), &manifest, true).unwrap();
    assert_eq!(table.num_columns(), 5);
    let filter = Filter::parse("doc < 3 or id = 'doc-29'", &filter_columns(&[])).unwrap();
    assert_eq!(filter.matching_documents(&table).unwrap(), [0, 1, 2, 29]);
    let error = Filter::parse("year > 1900", &filter_columns(&[])).unwrap_err();
    assert!(error.to_string().contains("no column \"year\""), "{error}");
}

#[test]
fn documents_lists_matching_documents_with_metadata_the_same_from_cli_and_library() {
    use saeidx_query::{DocumentsRequest, list_documents};
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_index_with_metadata(dir.path(), &spec(60)).unwrap();
    let filter = "year >= 0 and party is not null";
    let request = DocumentsRequest {
        filter: Some(filter.into()),
        limit: 5,
        offset: 2,
        text: false,
    };
    let library = list_documents(dir.path(), &request).unwrap();
    let all = list_documents(
        dir.path(),
        &DocumentsRequest {
            limit: 1000,
            offset: 0,
            ..request.clone()
        },
    )
    .unwrap();
    assert_eq!(library.documents_total, 60);
    assert_eq!(all.documents.len() as u64, all.matched);
    assert!(all.matched > 7, "{}", all.matched);
    assert_eq!(library.documents, all.documents[2..7]);
    for document in &all.documents {
        assert!(document.metadata["year"].as_i64().unwrap() >= 0);
        assert!(document.metadata["party"].is_string());
        assert!(document.text.is_none());
    }
    assert_eq!(library.columns.len(), 6);
    assert_eq!(library.columns[4].kind, "timestamp");

    let output = Command::new(saeidx_tests::saeidx_binary())
        .args(["documents", "--index"])
        .arg(dir.path())
        .args(["--where", filter, "--limit", "5", "--offset", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli, saeidx_query::answers::to_json(&library).unwrap());

    let output = Command::new(saeidx_tests::saeidx_binary())
        .args(["documents", "--index"])
        .arg(dir.path())
        .args(["--where", "party = 3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid filter at character 9") && stderr.contains("        ^"),
        "{stderr}"
    );
}
