use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};
use saeidx_testkit::filters::{
    filterable_columns, random_columns, random_documents, random_predicate,
};

use super::*;

fn sotu_columns() -> Vec<MetadataColumn> {
    filter_columns(&[
        MetadataColumn::new("year", MetadataType::Integer),
        MetadataColumn::new("president", MetadataType::String),
        MetadataColumn::new("party", MetadataType::String),
    ])
}

fn sotu_table() -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("doc", DataType::UInt32, false),
        Field::new("year", DataType::Int64, true),
        Field::new("party", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(UInt32Array::from(vec![0, 1, 2, 3])),
            Arc::new(Int64Array::from(vec![
                Some(1850),
                Some(1901),
                None,
                Some(1950),
            ])),
            Arc::new(StringArray::from(vec![
                Some("Whig"),
                Some("Republican"),
                Some("Democratic"),
                None,
            ])),
        ],
    )
    .unwrap()
}

fn select(text: &str) -> Vec<u32> {
    Filter::parse(text, &sotu_columns())
        .unwrap_or_else(|e| panic!("{e}"))
        .matching_documents(&sotu_table())
        .unwrap()
}

#[test]
fn selects_by_comparisons_lists_and_logic() {
    assert_eq!(select("year >= 1900"), [1, 3]);
    assert_eq!(select("year >= 1900 and party = 'Republican'"), [1]);
    assert_eq!(
        select("YEAR < 1900 OR party IN ('Democratic', 'Whig')"),
        [0, 2]
    );
    assert_eq!(select("party not in ('Whig')"), [1, 2]);
    assert_eq!(select("not (year > 1900)"), [0]);
    assert_eq!(select("year is null or party is null"), [2, 3]);
    assert_eq!(select("year is not null and year != 1850"), [1, 3]);
    assert_eq!(select("year > 1900.5 and year <> 1950"), [1]);
    assert_eq!(select("\"party\" = 'Whig'"), [0]);
    assert_eq!(select("(((year = 1850)))"), [0]);
}

#[test]
fn nulls_are_unknown_not_false() {
    // Document 2 has no year: neither the comparison nor its negation selects it.
    assert!(!select("year > 1900").contains(&2));
    assert!(!select("not (year > 1900)").contains(&2));
    // `unknown or true` is true; `unknown and false` is false; `not in` of a null is unknown.
    assert!(select("year > 1900 or party = 'Democratic'").contains(&2));
    assert!(!select("party not in ('Whig', 'Republican')").contains(&3));
}

fn error(text: &str) -> String {
    Filter::parse(text, &sotu_columns())
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_point_at_the_column_and_say_what_is_allowed() {
    let message = error("year >= and party = 'x'");
    assert!(
        message.starts_with("invalid filter at character 9:"),
        "{message}"
    );
    assert!(
        message.contains("\n  year >= and party = 'x'\n          ^\n"),
        "{message}"
    );
    assert!(message.contains("allowed: comparisons"), "{message}");
    assert!(message.contains("year (integer)"), "{message}");

    let message = error("party = 1900");
    assert!(message.contains("character 9"), "{message}");
    assert!(message.contains("\"party\" is of type string"), "{message}");
    let message = error("year = '1900'");
    assert!(message.contains("compare it with a number"), "{message}");
    let message = error("yeer > 1900");
    assert!(message.contains("character 1") && message.contains("no column \"yeer\""));
    let message = error("year = null");
    assert!(message.contains("year is null"), "{message}");
    let message = error("(year > 1");
    assert!(message.contains("`)` to close"), "{message}");
    let message = error("year > 1)");
    assert!(message.contains("without its `(`"), "{message}");
    let message = error("party = 'Whig");
    assert!(message.contains("character 9") && message.contains("never closed"));
    let message = error("year in 1900");
    assert!(message.contains("`(` and a list"), "{message}");
    let message = error("year ! 3");
    assert!(message.contains("`!=`"), "{message}");
    let message = error("year 1900");
    assert!(message.contains("expected a comparison"), "{message}");
    let message = error("and = 3");
    assert!(message.contains("keyword `and`"), "{message}");
    let message = error(&"(".repeat(100));
    assert!(message.contains("nested deeper"), "{message}");
    let message = error("year > 1 extra");
    assert!(
        message.contains("expected `and`, `or` or the end"),
        "{message}"
    );
}

#[test]
fn timestamps_and_bools_compare_with_their_literals() {
    let columns = filter_columns(&[
        MetadataColumn::new("when", MetadataType::Timestamp),
        MetadataColumn::new("flag", MetadataType::Bool),
    ]);
    assert!(Filter::parse("when >= '1901-12-03' and flag = true", &columns).is_ok());
    let message = Filter::parse("when > 'yesterday'", &columns)
        .unwrap_err()
        .to_string();
    assert!(message.contains("not a time"), "{message}");
    let message = Filter::parse("flag = 1", &columns).unwrap_err().to_string();
    assert!(message.contains("true or false"), "{message}");
}

#[test]
fn a_table_without_the_column_is_an_error() {
    let filter = Filter::parse("president = 'x'", &sotu_columns()).unwrap();
    let error = filter.matching_documents(&sotu_table()).unwrap_err();
    assert!(
        error.to_string().contains("\"president\" is missing"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random filters over random metadata select exactly what a brute-force evaluation
    /// of SQL's rules selects.
    #[test]
    fn random_filters_equal_brute_force(seed in any::<u64>(), documents in 0usize..40) {
        let mut rng = StdRng::seed_from_u64(seed);
        let rows = random_documents(&mut rng, documents);
        let table = rows.clone().record_batch(&random_columns()).unwrap();
        for _ in 0..8 {
            let predicate = random_predicate(&mut rng, 3);
            let text = predicate.render();
            let filter = Filter::parse(&text, &filterable_columns())
                .unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(
                filter.matching_documents(&table).unwrap(),
                predicate.select(&rows),
                "{}", text
            );
        }
    }
}
