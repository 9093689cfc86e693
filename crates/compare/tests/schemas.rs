//! The JSON Schema of `compare`'s answer (`schemas/answers/compare.schema.json`) is
//! generated from the type and committed, as the query layer's are.

use std::path::PathBuf;

use saeidx_compare::Comparison;

#[test]
fn the_committed_compare_schema_matches_the_type() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/answers/compare.schema.json");
    let mut text = serde_json::to_string_pretty(&schemars::schema_for!(Comparison)).unwrap();
    text.push('\n');
    if std::env::var_os("SAEIDX_WRITE_SCHEMAS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} differs from the answer type: run `SAEIDX_WRITE_SCHEMAS=1 cargo test -p \
         saeidx-compare --test schemas`",
        path.display()
    );
}
