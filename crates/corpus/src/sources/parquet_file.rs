//! Parquet files: one row is one document. Only the text, id and metadata columns are
//! decoded, a few rows at a time, so memory stays bounded however large the file is. A
//! metadata column the file lacks is null in its documents.

use std::fs::File;

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray, types};
use arrow_schema::DataType;
use parquet::arrow::{
    ProjectionMask,
    arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder},
};

use saeidx_format::metadata::MetadataValue;

use super::{Fault, FileContext, RecordLocation};
use crate::{CorpusError, documents::Document};

/// Rows decoded at a time.
const BATCH_ROWS: usize = 64;

/// Reads a Parquet file's documents, row by row.
pub(crate) struct ParquetFile {
    context: FileContext,
    text_field: String,
    id_field: Option<String>,
    batches: ParquetRecordBatchReader,
    batch: Option<Columns>,
    /// The next row of `batch`.
    index: usize,
    /// The next row of the file, from 0.
    row: u64,
}

/// The columns of one batch.
struct Columns {
    text: ArrayRef,
    id: Option<ArrayRef>,
    /// One per metadata column; `None` where the file lacks it.
    metadata: Vec<Option<ArrayRef>>,
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

fn is_id(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || data_type.is_integer()
}

impl ParquetFile {
    /// Opens the file and checks its columns: the text column must exist and hold
    /// strings (or bytes, checked for UTF-8 row by row); the id column is used when it
    /// exists and holds strings or integers.
    pub(crate) fn open(
        context: FileContext,
        text_field: &str,
        id_field: &str,
    ) -> Result<Self, CorpusError> {
        let file =
            File::open(&context.path).map_err(|e| context.fatal(format!("cannot open: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| context.fatal(format!("not a readable Parquet file: {e}")))?;
        let fields = builder.schema().fields().clone();
        let Some(text_index) = fields.iter().position(|f| f.name() == text_field) else {
            return Err(CorpusError::MissingColumn {
                path: context.path.clone(),
                column: text_field.into(),
                columns: fields.iter().map(|f| f.name().clone()).collect(),
            });
        };
        let text_type = fields[text_index].data_type();
        if !is_text(text_type) {
            return Err(context.fatal(format!(
                "column {text_field:?} holds {text_type}, not text; set text_field to a \
                 string column"
            )));
        }
        let id_index = fields
            .iter()
            .position(|f| f.name() == id_field && is_id(f.data_type()));
        let mut metadata_indices = Vec::new();
        for column in context.metadata.iter() {
            let Some(index) = fields.iter().position(|f| *f.name() == column.name) else {
                continue;
            };
            let found = fields[index].data_type();
            if !column.kind.accepts_arrow(found) {
                return Err(context.fatal(format!(
                    "metadata column {:?} holds {found}, but the job declares it {}; declare its type as {} (or leave the type out to infer it)",
                    column.name,
                    column.kind,
                    saeidx_format::metadata::MetadataType::of_arrow(found)
                        .map_or("a type that fits", |kind| kind.name())
                )));
            }
            metadata_indices.push(index);
        }
        // Top-level arrow fields are the Parquet schema's root columns, in order.
        let projection = ProjectionMask::roots(
            builder.parquet_schema(),
            std::iter::once(text_index)
                .chain(id_index)
                .chain(metadata_indices),
        );
        let batches = builder
            .with_projection(projection)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| context.fatal(format!("cannot read the Parquet file: {e}")))?;
        Ok(Self {
            context,
            text_field: text_field.into(),
            id_field: id_index.map(|_| id_field.into()),
            batches,
            batch: None,
            index: 0,
            row: 0,
        })
    }

    /// The next document or bad record; `None` at the end of the file.
    pub(crate) fn next(&mut self) -> Option<Result<Document, Fault>> {
        loop {
            if let Some(columns) = &self.batch
                && self.index < columns.text.len()
            {
                let result = self.document(columns, self.index);
                self.index += 1;
                self.row += 1;
                return Some(result);
            }
            let batch = match self.batches.next()? {
                Ok(batch) => batch,
                Err(e) => {
                    return Some(Err(Fault::Fatal(self.context.fatal(format!(
                        "cannot decode the rows from row {}: {e}",
                        self.row
                    )))));
                }
            };
            match self.columns(&batch) {
                Ok(columns) => self.batch = Some(columns),
                Err(e) => return Some(Err(Fault::Fatal(e))),
            }
            self.index = 0;
        }
    }

    fn columns(&self, batch: &RecordBatch) -> Result<Columns, CorpusError> {
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                self.context
                    .fatal(format!("column {name:?} is missing from a batch of rows"))
            })
        };
        Ok(Columns {
            text: column(&self.text_field)?,
            id: self.id_field.as_deref().map(column).transpose()?,
            metadata: self
                .context
                .metadata
                .iter()
                .map(|c| batch.column_by_name(&c.name).cloned())
                .collect(),
        })
    }

    fn document(&self, columns: &Columns, index: usize) -> Result<Document, Fault> {
        let location = RecordLocation::Row(self.row);
        let text = match text_value(columns.text.as_ref(), index) {
            Some(Cell::Text(text)) => text,
            Some(Cell::Bytes(bytes)) => std::str::from_utf8(bytes).map_err(|e| {
                self.context.bad(
                    location,
                    format!(
                        "invalid UTF-8 at byte {} of {:?}",
                        e.valid_up_to() + 1,
                        self.text_field
                    ),
                )
            })?,
            Some(Cell::Null) => {
                return Err(self
                    .context
                    .bad(location, format!("{:?} is null", self.text_field)));
            }
            None => {
                return Err(Fault::Fatal(self.context.fatal(format!(
                    "column {:?} holds {}, not text",
                    self.text_field,
                    columns.text.data_type()
                ))));
            }
        };
        self.context.check_size(location, text.len() as u64)?;
        let id = columns
            .id
            .as_ref()
            .and_then(|id| id_value(id.as_ref(), index))
            .unwrap_or_else(|| format!("{}:{}", self.context.name, self.row));
        let mut metadata = Vec::with_capacity(columns.metadata.len());
        for (column, array) in self.context.metadata.iter().zip(&columns.metadata) {
            let value = match array {
                None => MetadataValue::Null,
                Some(array) => MetadataValue::from_arrow(column.kind, array.as_ref(), index)
                    .map_err(|problem| {
                        self.context.bad(
                            location,
                            FileContext::metadata_reason(&id, column, &problem),
                        )
                    })?,
            };
            metadata.push(value);
        }
        Ok(self.context.document_with(id, text.to_string(), metadata))
    }
}

/// One value of the text column.
enum Cell<'a> {
    Null,
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// The text column's value at `index`; `None` if the column's type is not text.
fn text_value(array: &dyn Array, index: usize) -> Option<Cell<'_>> {
    if array.is_null(index) {
        return Some(Cell::Null);
    }
    Some(match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(index)),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(index)),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(index)),
        DataType::Binary => Cell::Bytes(array.as_binary::<i32>().value(index)),
        DataType::LargeBinary => Cell::Bytes(array.as_binary::<i64>().value(index)),
        DataType::BinaryView => Cell::Bytes(array.as_binary_view().value(index)),
        _ => return None,
    })
}

/// The id column's value at `index`, as text; `None` if it is null or not a string or
/// an integer.
fn id_value(array: &dyn Array, index: usize) -> Option<String> {
    if array.is_null(index) {
        return None;
    }
    macro_rules! integer {
        ($type:ty) => {
            array.as_primitive::<$type>().value(index).to_string()
        };
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(index).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(index).to_string(),
        DataType::Utf8View => array.as_string_view().value(index).to_string(),
        DataType::Int8 => integer!(types::Int8Type),
        DataType::Int16 => integer!(types::Int16Type),
        DataType::Int32 => integer!(types::Int32Type),
        DataType::Int64 => integer!(types::Int64Type),
        DataType::UInt8 => integer!(types::UInt8Type),
        DataType::UInt16 => integer!(types::UInt16Type),
        DataType::UInt32 => integer!(types::UInt32Type),
        DataType::UInt64 => integer!(types::UInt64Type),
        _ => return None,
    })
}
