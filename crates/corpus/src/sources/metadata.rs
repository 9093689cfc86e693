//! Document metadata: which record fields a corpus keeps, and inferring their types.
//!
//! A field declared without a type is inferred from the whole corpus, read once before
//! indexing:
//!
//! - a Parquet column's type decides ([`MetadataType::of_arrow`]: strings, integers,
//!   floats, booleans; timestamps and dates are `timestamp`);
//! - a JSONL key's values decide: all integers → `integer`; numbers with at least one
//!   non-integer → `float`; `true`/`false` → `bool`; strings → `string` (a string is
//!   never guessed to be a timestamp: declare `type = "timestamp"`); nulls are ignored,
//!   and a field whose values are all null is a `string`;
//! - values of two other kinds (a number in one record, a string in another) are an error
//!   asking to declare the type.
//!
//! The same pass checks that every declared field occurs in at least one record (or
//! Parquet file): a field in none is almost always a misspelt name. Records that cannot
//! be parsed are left to the reader (and its bad-record policy).

use std::{fs::File, io::BufReader, path::Path};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use saeidx_format::metadata::{MetadataColumn, MetadataType, check_columns};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CorpusSpec, ResolvedFile, SourceFormat, jsonl::read_line};
use crate::CorpusError;

/// One record field kept as document metadata: `{ field = "year", type = "integer" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSpec {
    /// The JSONL key or Parquet column; also the documents table's column name.
    pub field: String,
    /// Its type; inferred from the corpus when absent (see the [module docs](self)).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<MetadataType>,
}

impl MetadataSpec {
    /// A field of a declared type.
    pub fn typed(field: impl Into<String>, kind: MetadataType) -> Self {
        Self {
            field: field.into(),
            kind: Some(kind),
        }
    }
}

fn metadata_error(reason: impl Into<String>) -> CorpusError {
    CorpusError::Metadata {
        reason: reason.into(),
    }
}

/// What the scan saw of one field.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Whether any record had the key (or any file the column).
    present: bool,
    /// The type its values suggest so far, and the file that suggested it.
    kind: Option<(MetadataType, String)>,
}

impl Seen {
    fn observe(&mut self, field: &str, kind: MetadataType, file: &str) -> Result<(), CorpusError> {
        let merged = match &self.kind {
            None => kind,
            Some((old, _)) if *old == kind => return Ok(()),
            Some((MetadataType::Integer, _)) if kind == MetadataType::Float => kind,
            Some((MetadataType::Float, _)) if kind == MetadataType::Integer => return Ok(()),
            Some((old, where_old)) => {
                return Err(metadata_error(format!(
                    "field {field:?} holds {old} values (in {where_old}) and {kind} values (in \
                     {file}); declare its type, e.g. {{ field = {field:?}, type = \"string\" }}"
                )));
            }
        };
        self.kind = Some((merged, file.to_string()));
        Ok(())
    }
}

impl CorpusSpec {
    /// The declared metadata columns, if every field has a type (no reading).
    pub fn declared_columns(&self) -> Option<Vec<MetadataColumn>> {
        self.metadata
            .iter()
            .map(|spec| Some(MetadataColumn::new(&spec.field, spec.kind?)))
            .collect()
    }

    /// The metadata columns with every type known: declared, or inferred by reading the
    /// corpus once (see the [module docs](self)), which also checks that every field
    /// occurs in some record. No reading when the corpus keeps no metadata.
    pub fn metadata_columns(&self) -> Result<Vec<MetadataColumn>, CorpusError> {
        if self.metadata.is_empty() {
            return Ok(Vec::new());
        }
        let named: Vec<MetadataColumn> = self
            .metadata
            .iter()
            .map(|spec| MetadataColumn::new(&spec.field, MetadataType::String))
            .collect();
        check_columns(&named).map_err(metadata_error)?;
        let fields: Vec<&str> = self.metadata.iter().map(|s| s.field.as_str()).collect();
        let mut seen = vec![Seen::default(); fields.len()];
        for file in self.resolve()? {
            match file.format {
                SourceFormat::Text => {}
                SourceFormat::Jsonl => scan_jsonl(&file, &fields, &mut seen, self)?,
                SourceFormat::Parquet => scan_parquet(&file, &fields, &mut seen)?,
            }
        }
        self.metadata
            .iter()
            .zip(seen)
            .map(|(spec, seen)| {
                if !seen.present {
                    return Err(metadata_error(format!(
                        "no record of the corpus has a field {:?}; check its name (JSONL key or \
                         Parquet column, case-sensitive)",
                        spec.field
                    )));
                }
                let inferred = seen.kind.map_or(MetadataType::String, |(kind, _)| kind);
                Ok(MetadataColumn::new(
                    &spec.field,
                    spec.kind.unwrap_or(inferred),
                ))
            })
            .collect()
    }

    /// Gives every metadata field its type ([`Self::metadata_columns`]), so that readers
    /// of this spec need not infer them again.
    pub fn resolve_metadata(&mut self) -> Result<(), CorpusError> {
        let columns = self.metadata_columns()?;
        for (spec, column) in self.metadata.iter_mut().zip(columns) {
            spec.kind = Some(column.kind);
        }
        Ok(())
    }
}

fn json_type(value: &Value) -> Option<Result<MetadataType, &'static str>> {
    Some(Ok(match value {
        Value::Null => return None,
        Value::Bool(_) => MetadataType::Bool,
        Value::Number(n) if n.is_i64() => MetadataType::Integer,
        Value::Number(_) => MetadataType::Float,
        Value::String(_) => MetadataType::String,
        Value::Array(_) => return Some(Err("an array")),
        Value::Object(_) => return Some(Err("an object")),
    }))
}

fn scan_jsonl(
    file: &ResolvedFile,
    fields: &[&str],
    seen: &mut [Seen],
    spec: &CorpusSpec,
) -> Result<(), CorpusError> {
    let unreadable = |e: std::io::Error| CorpusError::Read {
        path: file.path.clone(),
        line: None,
        reason: format!("cannot read: {e}"),
    };
    let mut reader = BufReader::with_capacity(1 << 16, File::open(&file.path).map_err(unreadable)?);
    let limit = spec.max_document_bytes.saturating_mul(4);
    let mut buffer = Vec::new();
    let mut line = 0u64;
    while read_line(&mut reader, &mut buffer, limit)
        .map_err(unreadable)?
        .is_some()
    {
        line += 1;
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&buffer) else {
            continue;
        };
        for (field, seen) in fields.iter().zip(seen.iter_mut()) {
            let Some(value) = object.get(*field) else {
                continue;
            };
            seen.present = true;
            let where_ = format!("{}, line {line}", file.path.display());
            match json_type(value) {
                None => {}
                Some(Ok(kind)) => seen.observe(field, kind, &where_)?,
                Some(Err(what)) => {
                    return Err(metadata_error(format!(
                        "field {field:?} is {what} in {where_}; only strings, numbers, booleans \
                         and timestamps can be metadata"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn scan_parquet(
    file: &ResolvedFile,
    fields: &[&str],
    seen: &mut [Seen],
) -> Result<(), CorpusError> {
    let fail = |reason: String| CorpusError::Read {
        path: file.path.clone(),
        line: None,
        reason,
    };
    let opened = File::open(&file.path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(opened)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema();
    let name = display(&file.path);
    for (field, seen) in fields.iter().zip(seen.iter_mut()) {
        let Some(column) = schema.fields().iter().find(|f| f.name() == field) else {
            continue;
        };
        seen.present = true;
        let kind = MetadataType::of_arrow(column.data_type()).ok_or_else(|| {
            metadata_error(format!(
                "column {field:?} of {name} holds {}; only string, integer, float, boolean, \
                 timestamp and date columns can be metadata",
                column.data_type()
            ))
        })?;
        seen.observe(field, kind, &name)?;
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
