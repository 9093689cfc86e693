//! Deleted documents taken out of a part's rows (a compaction).
//!
//! A compacted segment keeps every document number it covers, so that numbers stay
//! stable: a deleted document remains as a *placeholder* row of `documents/` (its
//! number, an empty id, source and text, 0 tokens, null metadata) and loses its
//! `tokens/` and `activations/` rows. Its text and activations are gone from the files;
//! `segments.json` still lists it as deleted, so nothing ever answers it.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, LargeStringArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::ArrowError;

/// Each row's `doc`, from the batch's `doc` column.
fn docs(batch: &RecordBatch) -> Result<&UInt32Array, ArrowError> {
    batch
        .column_by_name("doc")
        .and_then(|column| column.as_any().downcast_ref::<UInt32Array>())
        .ok_or_else(|| ArrowError::SchemaError("no u32 `doc` column".into()))
}

fn downcast<'a, T: 'static>(column: &'a ArrayRef, name: &str) -> Result<&'a T, ArrowError> {
    column
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column `{name}` has another type")))
}

/// A `documents/` batch with the rows of deleted documents turned into placeholders.
pub fn documents_without(
    batch: &RecordBatch,
    deleted: &dyn Fn(u32) -> bool,
) -> Result<RecordBatch, ArrowError> {
    let mask = BooleanArray::from_iter(docs(batch)?.values().iter().map(|d| Some(deleted(*d))));
    if mask.true_count() == 0 {
        return Ok(batch.clone());
    }
    let rows = batch.num_rows();
    let gone = |row: usize| mask.value(row);
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        let replaced: ArrayRef = match name {
            "doc" => column.clone(),
            "id" | "source" => {
                let values = downcast::<StringArray>(column, name)?;
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|r| if gone(r) { "" } else { values.value(r) }),
                ))
            }
            "text" => {
                let values = downcast::<LargeStringArray>(column, name)?;
                Arc::new(LargeStringArray::from_iter_values(
                    (0..rows).map(|r| if gone(r) { "" } else { values.value(r) }),
                ))
            }
            "tokens" => {
                let values = downcast::<UInt32Array>(column, name)?;
                Arc::new(UInt32Array::from_iter_values(
                    (0..rows).map(|r| if gone(r) { 0 } else { values.value(r) }),
                ))
            }
            _ => arrow_select::nullif::nullif(column.as_ref(), &mask)?,
        };
        columns.push(replaced);
    }
    RecordBatch::try_new(schema, columns)
}

/// A `tokens/` or `activations/` batch without the rows of deleted documents.
pub fn rows_without(
    batch: &RecordBatch,
    deleted: &dyn Fn(u32) -> bool,
) -> Result<RecordBatch, ArrowError> {
    let keep = BooleanArray::from_iter(docs(batch)?.values().iter().map(|d| Some(!deleted(*d))));
    if keep.false_count() == 0 {
        return Ok(batch.clone());
    }
    arrow_select::filter::filter_record_batch(batch, &keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        metadata::{MetadataColumn, MetadataType, MetadataValue},
        tables::{DocumentRows, TokenRows},
    };

    #[test]
    fn deleted_documents_become_placeholders_and_lose_their_rows() {
        let columns = vec![MetadataColumn::new("year", MetadataType::Integer)];
        let mut rows = DocumentRows::default();
        for doc in 4..7u32 {
            rows.doc.push(doc);
            rows.id.push(format!("d{doc}"));
            rows.source.push("s".into());
            rows.text.push(format!("text {doc}"));
            rows.tokens.push(2);
            rows.push_metadata(vec![MetadataValue::Integer(i64::from(doc))]);
        }
        let batch = rows.record_batch(&columns).unwrap();
        let purged = documents_without(&batch, &|doc| doc == 5).unwrap();
        assert_eq!(purged.schema(), batch.schema());
        let text = purged
            .column(3)
            .as_any()
            .downcast_ref::<LargeStringArray>()
            .unwrap();
        assert_eq!(
            (text.value(0), text.value(1), text.value(2)),
            ("text 4", "", "text 6")
        );
        let id = purged
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(id.value(1), "");
        assert!(purged.column(5).is_null(1) && !purged.column(5).is_null(0));
        let tokens = TokenRows {
            doc: vec![4, 5, 5, 6],
            position: vec![0, 0, 1, 0],
            token: vec![1, 2, 3, 4],
            start: vec![0; 4],
            end: vec![0; 4],
            special: vec![false; 4],
            sink: vec![false; 4],
        };
        let tokens = tokens.batch().unwrap();
        let kept = rows_without(&tokens, &|doc| doc == 5).unwrap();
        assert_eq!(kept.num_rows(), 2);
    }
}
