//! The JSON Schema of a labelling run's answer (`schemas/answers/label-run.schema.json`)
//! is generated from the type and committed, like the query library's answers
//! (`crates/query/tests/schemas.rs`): a changed type must come with its changed schema.

use std::path::PathBuf;

use saeidx_autointerp::answer_schemas;

#[test]
fn committed_answer_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/answers");
    let write = std::env::var_os("SAEIDX_WRITE_SCHEMAS").is_some();
    for (name, schema) in answer_schemas() {
        let path = dir.join(format!("{name}.schema.json"));
        let mut text = serde_json::to_string_pretty(&schema).unwrap();
        text.push('\n');
        if write {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} differs from the answer type: after changing it, run \
             `SAEIDX_WRITE_SCHEMAS=1 cargo test -p saeidx-autointerp --test schemas` and add a \
             CHANGELOG.md line for renamed or removed fields",
            path.display()
        );
    }
}
