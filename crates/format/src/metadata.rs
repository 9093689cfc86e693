//! Document metadata: the typed, nullable columns a job keeps from its corpus records
//! (JSONL keys, Parquet columns) after the five fixed columns of the `documents/` table.
//!
//! | [`MetadataType`] | Arrow / Parquet / DuckDB column | accepted record values |
//! |---|---|---|
//! | `string` | `Utf8` / `BYTE_ARRAY (String)` / `VARCHAR` | JSON strings; Parquet string columns |
//! | `integer` | `Int64` / `INT64` / `BIGINT` | JSON integers; Parquet integer columns (up to `i64::MAX`) |
//! | `float` | `Float64` / `DOUBLE` / `DOUBLE` | JSON numbers; Parquet float and integer columns |
//! | `bool` | `Boolean` / `BOOLEAN` / `BOOLEAN` | JSON `true`/`false`; Parquet boolean columns |
//! | `timestamp` | `Timestamp(µs)` / `INT64 (TIMESTAMP(MICROS, UTC=false))` / `TIMESTAMP` | RFC 3339 strings (`2024-05-01T12:00:00Z`, converted to UTC), dates (`2024-05-01`, midnight); Parquet timestamp and date columns |
//!
//! Every metadata column is nullable: a JSON `null`, a key missing from a JSONL record
//! or a null Parquet cell is null. A value of another type is a bad record naming the
//! document and the field (the corpus's `on_bad_record` decides whether that stops the
//! run). The manifest records the columns, names and types, in
//! `job.corpus.metadata` ([`crate::manifest::CorpusRecord::metadata`]); an index without
//! metadata has none and its `documents/` table has only the fixed columns.
//!
//! [`read_documents`] reads the whole table back (with or without the texts) as one Arrow
//! batch: the simple way for a tool to list documents with their metadata.

use std::{fmt, fs::File, path::Path, sync::Arc};

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, cast::AsArray, types,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{manifest::Manifest, tables::Table};

/// The type of a metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataType {
    /// UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// A 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// A point in time, microseconds since 1970-01-01T00:00:00 UTC.
    Timestamp,
}

impl MetadataType {
    /// Every type, in the order of the module's table.
    pub const ALL: [MetadataType; 5] = [
        Self::String,
        Self::Integer,
        Self::Float,
        Self::Bool,
        Self::Timestamp,
    ];

    /// The type's name in job files and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
        }
    }

    /// The column's Arrow type in the `documents/` table.
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Integer => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The metadata type an Arrow column of a corpus Parquet file maps to, if any (the
    /// inference rule for Parquet sources).
    pub fn of_arrow(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::String,
            DataType::Boolean => Self::Bool,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Self::Float,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => Self::Timestamp,
            other if other.is_integer() => Self::Integer,
            _ => return None,
        })
    }
}

impl MetadataType {
    /// Whether a corpus Parquet column of `data_type` can hold values of this type
    /// (per row, a string column declared `timestamp` may still hold a bad one).
    pub fn accepts_arrow(self, data_type: &DataType) -> bool {
        match self {
            Self::String => Self::of_arrow(data_type) == Some(Self::String),
            Self::Integer => data_type.is_integer(),
            Self::Float => data_type.is_integer() || data_type.is_floating(),
            Self::Bool => *data_type == DataType::Boolean,
            Self::Timestamp => matches!(
                Self::of_arrow(data_type),
                Some(Self::Timestamp | Self::String)
            ),
        }
    }
}

impl fmt::Display for MetadataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata column: its name (the record's key or column) and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetadataColumn {
    /// The column's name, the same as the record field it comes from.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: MetadataType,
}

impl MetadataColumn {
    /// A column `name` of type `kind`.
    pub fn new(name: impl Into<String>, kind: MetadataType) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

impl fmt::Display for MetadataColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)
    }
}

/// Columns as `a (integer), b (string)`, or `none`.
pub fn describe_columns(columns: &[MetadataColumn]) -> String {
    if columns.is_empty() {
        return "none".into();
    }
    columns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fixed columns of the `documents/` table; no metadata column may take their names.
pub const FIXED_COLUMNS: [&str; 5] = ["doc", "id", "source", "text", "tokens"];

/// Checks a declaration: names non-empty, unique, and none of [`FIXED_COLUMNS`].
pub fn check_columns(columns: &[MetadataColumn]) -> Result<(), String> {
    for (index, column) in columns.iter().enumerate() {
        if column.name.is_empty() {
            return Err("a metadata field has an empty name".into());
        }
        if FIXED_COLUMNS.contains(&column.name.as_str()) {
            return Err(format!(
                "metadata field {:?} has the name of a fixed column of the documents table \
                 ({}); the record's id and text are kept already (see id_field and text_field)",
                column.name,
                FIXED_COLUMNS.join(", ")
            ));
        }
        if columns[..index].iter().any(|c| c.name == column.name) {
            return Err(format!(
                "metadata field {:?} is declared twice",
                column.name
            ));
        }
    }
    Ok(())
}

/// The `documents/` table's Arrow schema with `columns` after the fixed columns.
pub fn documents_schema(columns: &[MetadataColumn]) -> SchemaRef {
    let base = Table::Documents.schema();
    let fields = base.fields().iter().cloned().chain(
        columns
            .iter()
            .map(|column| Arc::new(Field::new(&column.name, column.kind.arrow_type(), true))),
    );
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

/// One metadata value of one document.
#[derive(Debug, Clone)]
pub enum MetadataValue {
    /// No value.
    Null,
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Microseconds since 1970-01-01T00:00:00 UTC.
    Timestamp(i64),
}

impl PartialEq for MetadataValue {
    /// Floats are equal when their bits are (so that `Eq` holds, NaN included).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Integer(a), Self::Integer(b)) | (Self::Timestamp(a), Self::Timestamp(b)) => {
                a == b
            }
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Bool(a), Self::Bool(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for MetadataValue {}

/// Parses a timestamp: RFC 3339 with an offset (converted to UTC), a date and time
/// without one (taken as UTC; `T` or a space between them), or a date (midnight UTC).
/// Returns microseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc().timestamp_micros())
}

/// What a timestamp value may look like, for error messages.
pub const TIMESTAMP_FORMS: &str = "an RFC 3339 time such as \"2024-05-01T12:00:00Z\", \"2024-05-01 12:00:00\" or a date \"2024-05-01\"";

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

impl MetadataValue {
    /// A JSON record's value (`None`: the key is missing) as a value of type `kind`; the
    /// error says what was found.
    pub fn from_json(kind: MetadataType, value: Option<&Value>) -> Result<Self, String> {
        let Some(value) = value.filter(|value| !value.is_null()) else {
            return Ok(Self::Null);
        };
        let converted = match (kind, value) {
            (MetadataType::String, Value::String(text)) => Some(Self::String(text.clone())),
            (MetadataType::Integer, Value::Number(n)) => n.as_i64().map(Self::Integer),
            (MetadataType::Float, Value::Number(n)) => n.as_f64().map(Self::Float),
            (MetadataType::Bool, Value::Bool(b)) => Some(Self::Bool(*b)),
            (MetadataType::Timestamp, Value::String(text)) => {
                parse_timestamp(text).map(Self::Timestamp)
            }
            _ => None,
        };
        converted.ok_or_else(|| {
            let expected = match kind {
                MetadataType::Timestamp => TIMESTAMP_FORMS.to_string(),
                MetadataType::Integer => "an integer that fits in 64 bits".into(),
                other => format!("a {other}"),
            };
            format!(
                "is a {} ({}), but the job declares it {kind}: expected {expected} or null",
                json_kind(value),
                short(value),
            )
        })
    }

    /// Row `index` of a corpus Parquet column as a value of type `kind`; the error says
    /// what was found.
    pub fn from_arrow(kind: MetadataType, array: &dyn Array, index: usize) -> Result<Self, String> {
        if array.is_null(index) {
            return Ok(Self::Null);
        }
        let data_type = array.data_type();
        let mismatch = || {
            format!(
                "the column holds {data_type}, but the job declares it {kind}; declare its type \
                 as {} or leave the type out to infer it",
                MetadataType::of_arrow(data_type).map_or("one that fits", MetadataType::name)
            )
        };
        let value = match (kind, data_type) {
            (MetadataType::String, _) => {
                Self::String(string_cell(array, index).ok_or_else(mismatch)?)
            }
            (MetadataType::Integer, t) if t.is_integer() => {
                let value = integer_cell(array, index).ok_or_else(mismatch)?;
                Self::Integer(value.ok_or_else(|| "the integer is above 2^63 - 1".to_string())?)
            }
            (MetadataType::Float, t) if t.is_integer() => {
                let value = integer_cell(array, index).ok_or_else(mismatch)?;
                Self::Float(value.map_or(u64::MAX as f64, |v| v as f64))
            }
            (MetadataType::Float, _) => Self::Float(float_cell(array, index).ok_or_else(mismatch)?),
            (MetadataType::Bool, DataType::Boolean) => Self::Bool(array.as_boolean().value(index)),
            (MetadataType::Timestamp, _) => {
                Self::Timestamp(timestamp_cell(array, index).ok_or_else(mismatch)??)
            }
            _ => return Err(mismatch()),
        };
        Ok(value)
    }
}

fn string_cell(array: &dyn Array, index: usize) -> Option<String> {
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(index).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(index).to_string(),
        DataType::Utf8View => array.as_string_view().value(index).to_string(),
        _ => return None,
    })
}

/// An integer cell; `Some(None)` for a u64 above `i64::MAX`.
fn integer_cell(array: &dyn Array, index: usize) -> Option<Option<i64>> {
    macro_rules! value {
        ($type:ty) => {
            i64::try_from(array.as_primitive::<$type>().value(index)).ok()
        };
    }
    Some(match array.data_type() {
        DataType::Int8 => value!(types::Int8Type),
        DataType::Int16 => value!(types::Int16Type),
        DataType::Int32 => value!(types::Int32Type),
        DataType::Int64 => value!(types::Int64Type),
        DataType::UInt8 => value!(types::UInt8Type),
        DataType::UInt16 => value!(types::UInt16Type),
        DataType::UInt32 => value!(types::UInt32Type),
        DataType::UInt64 => value!(types::UInt64Type),
        _ => return None,
    })
}

fn float_cell(array: &dyn Array, index: usize) -> Option<f64> {
    Some(match array.data_type() {
        DataType::Float16 => array
            .as_primitive::<types::Float16Type>()
            .value(index)
            .to_f64(),
        DataType::Float32 => f64::from(array.as_primitive::<types::Float32Type>().value(index)),
        DataType::Float64 => array.as_primitive::<types::Float64Type>().value(index),
        _ => return None,
    })
}

/// A timestamp, date or string cell as microseconds since the epoch.
fn timestamp_cell(array: &dyn Array, index: usize) -> Option<Result<i64, String>> {
    const DAY_MICROS: i64 = 86_400_000_000;
    let scale = |value: i64, micros_per: i64| Ok(value.saturating_mul(micros_per));
    Some(match array.data_type() {
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => scale(
                array
                    .as_primitive::<types::TimestampSecondType>()
                    .value(index),
                1_000_000,
            ),
            TimeUnit::Millisecond => scale(
                array
                    .as_primitive::<types::TimestampMillisecondType>()
                    .value(index),
                1_000,
            ),
            TimeUnit::Microsecond => Ok(array
                .as_primitive::<types::TimestampMicrosecondType>()
                .value(index)),
            TimeUnit::Nanosecond => Ok(array
                .as_primitive::<types::TimestampNanosecondType>()
                .value(index)
                .div_euclid(1_000)),
        },
        DataType::Date32 => scale(
            i64::from(array.as_primitive::<types::Date32Type>().value(index)),
            DAY_MICROS,
        ),
        DataType::Date64 => scale(
            array.as_primitive::<types::Date64Type>().value(index),
            1_000,
        ),
        _ => {
            let text = string_cell(array, index)?;
            parse_timestamp(&text)
                .ok_or_else(|| format!("{text:?} is not a timestamp: expected {TIMESTAMP_FORMS}"))
        }
    })
}

/// One metadata column's values as the `documents/` table's Arrow array; values of
/// another type than `kind` (which the corpus readers never produce) are an error.
pub fn metadata_array(kind: MetadataType, values: &[MetadataValue]) -> Result<ArrayRef, String> {
    let wrong = |value: &MetadataValue| format!("a {kind} column holds {value:?}");
    macro_rules! collect {
        ($variant:ident, $array:ty) => {{
            let cells = values
                .iter()
                .map(|value| match value {
                    MetadataValue::Null => Ok(None),
                    MetadataValue::$variant(v) => Ok(Some(v.clone())),
                    other => Err(wrong(other)),
                })
                .collect::<Result<Vec<_>, String>>()?;
            Arc::new(<$array>::from(cells)) as ArrayRef
        }};
    }
    Ok(match kind {
        MetadataType::String => collect!(String, StringArray),
        MetadataType::Integer => collect!(Integer, Int64Array),
        MetadataType::Float => collect!(Float, Float64Array),
        MetadataType::Bool => collect!(Bool, BooleanArray),
        MetadataType::Timestamp => collect!(Timestamp, TimestampMicrosecondArray),
    })
}

/// Why [`read_documents`] failed.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {reason}; run `saeidx verify` on the index")]
pub struct ReadDocumentsError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Reads the index's whole `documents/` table, part by part, as one batch in document
/// order: `doc`, `id`, `source`, (`text` when `with_text`), `tokens`, then the metadata
/// columns the manifest declares. Without the texts it is small (one row per document)
/// and fast: the table to filter, list or join documents by their metadata.
pub fn read_documents(
    dir: &Path,
    manifest: &Manifest,
    with_text: bool,
) -> Result<RecordBatch, ReadDocumentsError> {
    let full = documents_schema(&manifest.job.corpus.metadata);
    let keep: Vec<usize> = (0..full.fields().len())
        .filter(|&index| with_text || full.field(index).name() != "text")
        .collect();
    let schema = Arc::new(full.project(&keep).map_err(|e| ReadDocumentsError {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?);
    let mut batches = Vec::with_capacity(manifest.parts.len());
    for part in &manifest.parts {
        let path = dir.join(Table::Documents.part_path(part.part));
        let fail = |reason: String| ReadDocumentsError {
            path: path.clone(),
            reason,
        };
        let file = File::open(&path).map_err(|e| fail(e.to_string()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| fail(format!("not readable as Parquet: {e}")))?;
        let found = builder.schema().clone();
        if found.fields().len() != full.fields().len()
            || found
                .fields()
                .iter()
                .zip(full.fields())
                .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
        {
            return Err(fail(format!(
                "its columns are not those the manifest declares ({:?})",
                full.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            )));
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), keep.iter().copied());
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            batches.push(
                RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
    }
    arrow_select_concat(&schema, &batches).map_err(|reason| ReadDocumentsError {
        path: dir.join(Table::Documents.dir()),
        reason,
    })
}

/// Concatenates batches of one schema.
fn arrow_select_concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, String> {
    if batches.len() == 1 {
        return Ok(batches[0].clone());
    }
    arrow_select::concat::concat_batches(schema, batches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_convert_by_declared_type() {
        let json: Value = serde_json::json!({
            "year": 1901, "party": "Whig", "share": 0.5, "flag": true,
            "when": "1901-12-03", "nothing": null
        });
        let get = |key: &str| json.get(key);
        assert_eq!(
            MetadataValue::from_json(MetadataType::Integer, get("year")),
            Ok(MetadataValue::Integer(1901))
        );
        assert_eq!(
            MetadataValue::from_json(MetadataType::Float, get("year")),
            Ok(MetadataValue::Float(1901.0))
        );
        assert_eq!(
            MetadataValue::from_json(MetadataType::Timestamp, get("when")),
            Ok(MetadataValue::Timestamp(-2_148_422_400_000_000))
        );
        assert_eq!(
            MetadataValue::from_json(MetadataType::Bool, get("missing")),
            Ok(MetadataValue::Null)
        );
        assert_eq!(
            MetadataValue::from_json(MetadataType::String, get("nothing")),
            Ok(MetadataValue::Null)
        );
        let error = MetadataValue::from_json(MetadataType::Integer, get("party")).unwrap_err();
        assert!(
            error.contains("string") && error.contains("integer"),
            "{error}"
        );
        let error = MetadataValue::from_json(MetadataType::Integer, get("share")).unwrap_err();
        assert!(error.contains("number (0.5)"), "{error}");
    }

    #[test]
    fn timestamps_parse_in_the_documented_forms() {
        let noon = parse_timestamp("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2024-05-01 12:00:00"), Some(noon));
        assert_eq!(parse_timestamp("2024-05-01T14:00:00+02:00"), Some(noon));
        assert_eq!(
            parse_timestamp("2024-05-01"),
            Some(noon - 12 * 3_600_000_000)
        );
        assert_eq!(parse_timestamp("May 1st"), None);
    }

    /// `schemas/index/documents.arrow.json` names each metadata type's Arrow type.
    #[test]
    fn schemas_folder_names_the_metadata_column_types() {
        let path = format!(
            "{}/../../schemas/index/documents.arrow.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let described: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let types = &described["metadata_columns"]["types"];
        for kind in MetadataType::ALL {
            assert_eq!(
                types[kind.name()].as_str(),
                Some(kind.arrow_type().to_string().as_str()),
                "{path}"
            );
        }
        assert_eq!(types.as_object().unwrap().len(), MetadataType::ALL.len());
    }

    #[test]
    fn declarations_are_checked() {
        let column = |name: &str| MetadataColumn::new(name, MetadataType::String);
        assert!(check_columns(&[column("year"), column("party")]).is_ok());
        assert!(check_columns(&[column("year"), column("year")]).is_err());
        assert!(check_columns(&[column("text")]).is_err());
        assert!(check_columns(&[column("")]).is_err());
        let schema = documents_schema(&[MetadataColumn::new("year", MetadataType::Integer)]);
        assert_eq!(schema.fields().len(), 6);
        assert!(schema.field(5).is_nullable());
    }

    #[test]
    fn arrow_cells_convert_by_declared_type() {
        let ints: ArrayRef = Arc::new(arrow_array::UInt32Array::from(vec![Some(7), None]));
        assert_eq!(
            MetadataValue::from_arrow(MetadataType::Integer, ints.as_ref(), 0),
            Ok(MetadataValue::Integer(7))
        );
        assert_eq!(
            MetadataValue::from_arrow(MetadataType::Float, ints.as_ref(), 0),
            Ok(MetadataValue::Float(7.0))
        );
        assert_eq!(
            MetadataValue::from_arrow(MetadataType::Integer, ints.as_ref(), 1),
            Ok(MetadataValue::Null)
        );
        assert!(MetadataValue::from_arrow(MetadataType::String, ints.as_ref(), 0).is_err());
        let dates: ArrayRef = Arc::new(arrow_array::Date32Array::from(vec![1]));
        assert_eq!(
            MetadataValue::from_arrow(MetadataType::Timestamp, dates.as_ref(), 0),
            Ok(MetadataValue::Timestamp(86_400_000_000))
        );
    }
}
