//! `documents`: an index's documents with their metadata, all of them or those a
//! [`Filter`] selects, read from the Parquet `documents/` table alone (no query files
//! needed, so it works on a Parquet-only folder too), and from each segment's of an
//! index of segments.

use std::path::Path;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use saeidx_format::{
    manifest::Manifest,
    metadata::{MetadataColumn, MetadataType, read_documents},
    segments::{SegmentRecord, SegmentSet},
    verify::VerifyError,
};

use crate::{
    QueryError,
    filter::{Filter, filter_columns},
    limits::Limit,
};

/// `documents`: which documents to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DocumentsRequest {
    /// A filter over the documents' columns (`year >= 1900 and party = 'Whig'`; see
    /// [`crate::filter`]); all documents when absent.
    pub filter: Option<String>,
    /// How many documents to list, from `offset` in document order.
    pub limit: usize,
    /// How many matching documents to pass over first (for paging).
    pub offset: usize,
    /// Whether to include each document's text.
    pub text: bool,
}

impl Default for DocumentsRequest {
    fn default() -> Self {
        Self {
            filter: None,
            limit: 100,
            offset: 0,
            text: false,
        }
    }
}

/// A metadata column of the index, as the `documents` answer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetadataColumnInfo {
    /// The column's name.
    pub name: String,
    /// `string`, `integer`, `float`, `bool` or `timestamp`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One listed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocumentEntry {
    /// The document's number.
    pub doc: u32,
    /// Its stable id.
    pub id: String,
    /// Its corpus file.
    pub source: String,
    /// Its number of tokens.
    pub tokens: u32,
    /// Its metadata, by column name: strings, numbers, booleans, timestamps as RFC 3339
    /// strings (UTC), `null` where the record had no value.
    pub metadata: Map<String, Value>,
    /// Its text, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The answer of `documents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocumentList {
    /// The filter applied, as given.
    pub filter: Option<String>,
    /// The index's metadata columns, in table order.
    pub columns: Vec<MetadataColumnInfo>,
    /// Documents in the index.
    pub documents_total: u64,
    /// Documents the filter selects (all when there is none).
    pub matched: u64,
    /// The listed documents: `limit` of the matched ones from `offset`, in document
    /// order.
    pub documents: Vec<DocumentEntry>,
}

/// Lists the documents of the index in `index_dir` that `request` asks for. Over an
/// index of segments, the live documents of every segment in document order (global
/// numbers; deleted documents are neither listed nor counted), as one index over the
/// same live documents lists them.
pub fn list_documents(
    index_dir: &Path,
    request: &DocumentsRequest,
) -> Result<DocumentList, QueryError> {
    Limit::K.check(request.limit)?;
    list_in(index_dir, SegmentSet::read(index_dir)?.as_ref(), request)
}

/// [`list_documents`] of the index in `index_dir` whose segments `set` names (`None`:
/// the folder is one index).
pub(crate) fn list_in(
    index_dir: &Path,
    set: Option<&SegmentSet>,
    request: &DocumentsRequest,
) -> Result<DocumentList, QueryError> {
    Limit::K.check(request.limit)?;
    let (metadata, folders) = match set {
        Some(set) => (
            set.job.corpus.metadata.clone(),
            set.segments
                .iter()
                .map(|record| {
                    (
                        SegmentSet::segment_dir(index_dir, &record.name),
                        Some(record.clone()),
                    )
                })
                .collect(),
        ),
        None => {
            let manifest = Manifest::read(index_dir).map_err(VerifyError::from)?;
            (
                manifest.job.corpus.metadata,
                vec![(index_dir.to_path_buf(), None)],
            )
        }
    };
    // Parse first: a bad filter is refused before any file is read.
    let filter = request
        .filter
        .as_deref()
        .map(|text| Filter::parse(text, &filter_columns(&metadata)))
        .transpose()?;
    let mut list = DocumentList {
        filter: request.filter.clone(),
        columns: metadata
            .iter()
            .map(|column| MetadataColumnInfo {
                name: column.name.clone(),
                kind: column.kind.name().into(),
            })
            .collect(),
        documents_total: 0,
        matched: 0,
        documents: Vec::new(),
    };
    for (folder, record) in folders {
        let manifest = Manifest::read(&folder).map_err(VerifyError::from)?;
        let table = read_documents(&folder, &manifest, request.text)?;
        let live = |doc: &u32| record.as_ref().is_none_or(|r| !r.is_deleted(*doc));
        let selected: Vec<u32> = match &filter {
            Some(filter) => filter.matching_documents(&table)?,
            None => column::<UInt32Array>(&table, "doc")
                .map(|doc| doc.values().to_vec())
                .unwrap_or_default(),
        };
        list.documents_total += (table.num_rows() as u64)
            .saturating_sub(record.as_ref().map_or(0, SegmentRecord::deleted_documents));
        let rows = row_numbers(&table);
        for doc in selected.iter().filter(|doc| live(doc)) {
            let at = list.matched as usize;
            list.matched += 1;
            if at >= request.offset && at - request.offset < request.limit {
                list.documents
                    .extend(rows.get(doc).map(|&row| entry(&table, &metadata, row)));
            }
        }
    }
    Ok(list)
}

fn column<'a, T: 'static>(table: &'a RecordBatch, name: &str) -> Option<&'a T> {
    table
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
}

/// Each document number's row in the table.
fn row_numbers(table: &RecordBatch) -> std::collections::HashMap<u32, usize> {
    column::<UInt32Array>(table, "doc")
        .map(|doc| {
            doc.values()
                .iter()
                .enumerate()
                .map(|(row, d)| (*d, row))
                .collect()
        })
        .unwrap_or_default()
}

fn entry(table: &RecordBatch, metadata: &[MetadataColumn], row: usize) -> DocumentEntry {
    let string = |name: &str| {
        column::<StringArray>(table, name)
            .map(|array| array.value(row).to_string())
            .unwrap_or_default()
    };
    let u32_of = |name: &str| column::<UInt32Array>(table, name).map_or(0, |a| a.value(row));
    DocumentEntry {
        doc: u32_of("doc"),
        id: string("id"),
        source: string("source"),
        tokens: u32_of("tokens"),
        metadata: metadata
            .iter()
            .map(|c| (c.name.clone(), metadata_value(table, c, row)))
            .collect(),
        text: column::<LargeStringArray>(table, "text").map(|a| a.value(row).to_string()),
    }
}

/// One metadata cell as JSON (read_documents checked the column types).
fn metadata_value(table: &RecordBatch, column: &MetadataColumn, row: usize) -> Value {
    let Some(array) = table.column_by_name(&column.name) else {
        return Value::Null;
    };
    if array.is_null(row) {
        return Value::Null;
    }
    let any = array.as_any();
    let value = match column.kind {
        MetadataType::String => any
            .downcast_ref::<StringArray>()
            .map(|a| Value::from(a.value(row))),
        MetadataType::Integer => any
            .downcast_ref::<Int64Array>()
            .map(|a| Value::from(a.value(row))),
        MetadataType::Float => any
            .downcast_ref::<Float64Array>()
            .map(|a| Value::from(a.value(row))),
        MetadataType::Bool => any
            .downcast_ref::<BooleanArray>()
            .map(|a| Value::from(a.value(row))),
        MetadataType::Timestamp => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .and_then(|a| chrono::DateTime::from_timestamp_micros(a.value(row)))
            .map(|time| Value::from(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
    };
    value.unwrap_or(Value::Null)
}
