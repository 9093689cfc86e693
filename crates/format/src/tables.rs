//! The index's Parquet tables: their Arrow schemas, how they are encoded, and the
//! writer that produces one part of each.
//!
//! An index holds three tables, each split into parts (`part-00000.parquet`, ...) that
//! cover consecutive documents; part `p` of every table covers the same documents.
//!
//! | table | one row per | columns |
//! | --- | --- | --- |
//! | `documents/` | document | `doc` u32, `id` utf8, `source` utf8, `text` large utf8, `tokens` u32, then the job's metadata columns ([`crate::metadata`]) |
//! | `tokens/` | token | `doc` u32, `position` u32, `token` u32, `start` u32, `end` u32, `special` bool, `sink` bool |
//! | `activations/` | nonzero feature activation | `doc` u32, `position` u32, `feature` u32, `value` f32 |
//!
//! `doc` is the document's number in corpus order (the same in every table);
//! `start..end` is the token's byte range in its document's text. Activations are sorted
//! by (doc, position), the order the batch stage produces them, and within a token by
//! [`feature_sort_key`] (features ascending at even positions, descending at odd ones).
//! That makes `doc` and `position` nearly free to store, keeps feature deltas small and
//! keeps each part a contiguous range of documents; feature-major access is the query
//! index's job. Values are rounded to half-precision's 11 significant bits (kept in
//! f32, so no range limit) and stored with Parquet's `BYTE_STREAM_SPLIT` encoding, whose
//! zeroed low bytes zstd then removes. Every encoding is one that DuckDB, Polars and
//! pyarrow read (DuckDB 1.4 reads `BYTE_STREAM_SPLIT` only for floats).

use std::{fs::File, path::Path, sync::Arc};

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, LargeStringArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::metadata::{MetadataColumn, MetadataValue, documents_schema, metadata_array};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};

/// One of the index's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per document.
    Documents,
    /// One row per token.
    Tokens,
    /// One row per nonzero activation.
    Activations,
}

impl Table {
    /// Every table, in the order their files are listed in manifests.
    pub const ALL: [Table; 3] = [Table::Documents, Table::Tokens, Table::Activations];

    /// The table's folder in the index.
    pub fn dir(self) -> &'static str {
        match self {
            Table::Documents => "documents",
            Table::Tokens => "tokens",
            Table::Activations => "activations",
        }
    }

    /// The path of part `part` relative to the index folder.
    pub fn part_path(self, part: u32) -> String {
        format!("{}/part-{part:05}.parquet", self.dir())
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        let u32_field = |name: &str| Field::new(name, DataType::UInt32, false);
        let fields = match self {
            Table::Documents => vec![
                u32_field("doc"),
                Field::new("id", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("text", DataType::LargeUtf8, false),
                u32_field("tokens"),
            ],
            Table::Tokens => vec![
                u32_field("doc"),
                u32_field("position"),
                u32_field("token"),
                u32_field("start"),
                u32_field("end"),
                Field::new("special", DataType::Boolean, false),
                Field::new("sink", DataType::Boolean, false),
            ],
            Table::Activations => vec![
                u32_field("doc"),
                u32_field("position"),
                u32_field("feature"),
                Field::new("value", DataType::Float32, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    fn writer_properties(self, value_level: i32) -> WriterProperties {
        let builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd_level(TABLE_ZSTD_LEVEL)))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // One page per megabyte rather than per 20,000 rows (the writer's default):
            // small pages made zstd share one entropy table across a page's byte streams.
            .set_data_page_row_count_limit(ROW_GROUP_ROWS)
            .set_created_by(concat!("saeidx ", env!("CARGO_PKG_VERSION")).into());
        match self {
            Table::Activations => {
                let delta = |builder: parquet::file::properties::WriterPropertiesBuilder,
                             column: &str| {
                    builder
                        .set_column_dictionary_enabled(ColumnPath::from(column), false)
                        .set_column_encoding(
                            ColumnPath::from(column),
                            Encoding::DELTA_BINARY_PACKED,
                        )
                };
                let builder = delta(delta(delta(builder, "doc"), "position"), "feature");
                builder
                    .set_column_dictionary_enabled(ColumnPath::from("value"), false)
                    .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
                    .set_column_compression(
                        ColumnPath::from("value"),
                        Compression::ZSTD(zstd_level(value_level)),
                    )
                    .build()
            }
            _ => builder.build(),
        }
    }
}

/// zstd level of every column but the activation values (3: zstd's default; higher
/// levels bought little on them).
const TABLE_ZSTD_LEVEL: i32 = 3;

/// zstd level of the activation values: at 19 their byte streams shrink ~7% more than at
/// 3 (measured on the default index: 1.53 vs 1.65 B/value), at ~400k values/s for the
/// writer thread, far above what the model produces on a CPU.
const VALUE_ZSTD_LEVEL: i32 = 19;

fn zstd_level(level: i32) -> ZstdLevel {
    ZstdLevel::try_new(level).unwrap_or_default()
}

/// Rows per Parquet row group: large enough for good compression, small enough that
/// DuckDB and the query builder can skip groups by their `doc` statistics.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Rounds `value` to half precision's 11 significant bits (round to nearest, ties to
/// even), keeping f32's exponent range. The 13 low mantissa bits become zero.
pub fn round_to_half_precision(value: f32) -> f32 {
    if !value.is_finite() {
        return value;
    }
    let bits = value.to_bits();
    let round = 0x0fff + ((bits >> 13) & 1);
    f32::from_bits((bits + round) & !0x1fff)
}

/// Rows for one part of each table, accumulated in columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DocumentRows {
    /// Document numbers.
    pub doc: Vec<u32>,
    /// Stable ids.
    pub id: Vec<String>,
    /// Source files.
    pub source: Vec<String>,
    /// Texts.
    pub text: Vec<String>,
    /// Token counts.
    pub tokens: Vec<u32>,
    /// Metadata values, one vector per declared column (in declaration order), one
    /// value per document; empty when the job keeps no metadata.
    pub metadata: Vec<Vec<MetadataValue>>,
}

/// Token rows, in columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenRows {
    /// Document numbers.
    pub doc: Vec<u32>,
    /// Positions in the document.
    pub position: Vec<u32>,
    /// Token ids.
    pub token: Vec<u32>,
    /// Byte where the token's text starts.
    pub start: Vec<u32>,
    /// Byte where it ends.
    pub end: Vec<u32>,
    /// Whether it is a special token.
    pub special: Vec<bool>,
    /// Whether its activations come from the first position of a model window (an
    /// attention sink; the document's first token).
    pub sink: Vec<bool>,
}

/// Activation rows, in columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ActivationRows {
    /// Document numbers.
    pub doc: Vec<u32>,
    /// Positions.
    pub position: Vec<u32>,
    /// Feature ids.
    pub feature: Vec<u32>,
    /// Values (rounded by the writer).
    pub value: Vec<f32>,
}

/// Where a feature's row sorts among its token's rows: feature ids ascend at even
/// positions and descend at odd ones. Consecutive ids then stay close across token
/// boundaries too, so the `DELTA_BINARY_PACKED` feature column needs no wide deltas for
/// the jump back at each new token (measured on the default index: 1.44 instead of 1.68
/// bytes per row).
pub fn feature_sort_key(position: u32, feature: u32) -> u32 {
    if position.is_multiple_of(2) {
        feature
    } else {
        u32::MAX - feature
    }
}

impl ActivationRows {
    /// Appends one token's active `(feature, value)` pairs in the table's row order
    /// ([`feature_sort_key`]); tokens must come in (doc, position) order.
    pub fn push_token(
        &mut self,
        doc: u32,
        position: u32,
        active: impl IntoIterator<Item = (u32, f32)>,
    ) {
        let mut active: Vec<(u32, f32)> = active.into_iter().collect();
        active.sort_by_key(|&(feature, _)| feature_sort_key(position, feature));
        for (feature, value) in active {
            self.doc.push(doc);
            self.position.push(position);
            self.feature.push(feature);
            self.value.push(value);
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.doc.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.doc.is_empty()
    }
}

fn u32s(values: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(values))
}

impl DocumentRows {
    /// Appends one document's metadata values (in declaration order).
    pub fn push_metadata(&mut self, values: Vec<MetadataValue>) {
        if self.metadata.len() < values.len() {
            self.metadata.resize(values.len(), Vec::new());
        }
        for (column, value) in self.metadata.iter_mut().zip(values) {
            column.push(value);
        }
    }

    /// The rows as the `documents/` table's Arrow batch with the metadata columns
    /// `metadata` (exactly what [`TableWriter::write_documents`] writes).
    pub fn record_batch(
        self,
        metadata: &[MetadataColumn],
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let rows = self.doc.len();
        let mut columns: Vec<ArrayRef> = vec![
            u32s(self.doc),
            Arc::new(StringArray::from(self.id)),
            Arc::new(StringArray::from(self.source)),
            Arc::new(LargeStringArray::from(self.text)),
            u32s(self.tokens),
        ];
        let mut values = self.metadata.into_iter();
        for column in metadata {
            let column_values = values.next().unwrap_or_default();
            let column_values = if column_values.is_empty() {
                vec![MetadataValue::Null; rows]
            } else {
                column_values
            };
            columns.push(
                metadata_array(column.kind, &column_values)
                    .map_err(arrow_schema::ArrowError::InvalidArgumentError)?,
            );
        }
        RecordBatch::try_new(documents_schema(metadata), columns)
    }
}

impl TokenRows {
    pub(crate) fn batch(self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_new(
            Table::Tokens.schema(),
            vec![
                u32s(self.doc),
                u32s(self.position),
                u32s(self.token),
                u32s(self.start),
                u32s(self.end),
                Arc::new(BooleanArray::from(self.special)),
                Arc::new(BooleanArray::from(self.sink)),
            ],
        )
    }
}

impl ActivationRows {
    fn batch(self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let values: Vec<f32> = self
            .value
            .into_iter()
            .map(round_to_half_precision)
            .collect();
        RecordBatch::try_new(
            Table::Activations.schema(),
            vec![
                u32s(self.doc),
                u32s(self.position),
                u32s(self.feature),
                Arc::new(Float32Array::from(values)),
            ],
        )
    }
}

/// Failure to write a table file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// I/O on the file.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("writing Parquet {path}: {source}")]
    Parquet {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Columns of different lengths.
    #[error("building a {table:?} batch: {source}")]
    Arrow {
        /// The table.
        table: Table,
        /// The failure.
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// Writes one table's part file, batch by batch, with bounded memory (the Arrow writer
/// flushes a row group every [`ROW_GROUP_ROWS`] rows). The caller publishes the file
/// (fsync + rename) after [`TableWriter::finish`].
pub struct TableWriter {
    table: Table,
    schema: SchemaRef,
    metadata: Vec<MetadataColumn>,
    path: std::path::PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl TableWriter {
    /// Creates `path` (truncating it) for `table` (documents without metadata).
    pub fn create(table: Table, path: &Path) -> Result<Self, TableError> {
        Self::create_with(table, path, &[], VALUE_ZSTD_LEVEL)
    }

    /// [`TableWriter::create`] compressing activation values at zstd level 3 rather
    /// than 19: the same columns, encodings and values, ~7% larger values, written ~50
    /// times faster (synthetic benchmark indexes of billions of nonzeros; real runs use
    /// [`TableWriter::create`]).
    pub fn create_quick(table: Table, path: &Path) -> Result<Self, TableError> {
        Self::create_with(table, path, &[], TABLE_ZSTD_LEVEL)
    }

    /// Creates `path` (truncating it) for a part of the `documents/` table with the
    /// metadata columns `metadata`.
    pub fn create_documents(path: &Path, metadata: &[MetadataColumn]) -> Result<Self, TableError> {
        Self::create_with(Table::Documents, path, metadata, VALUE_ZSTD_LEVEL)
    }

    fn create_with(
        table: Table,
        path: &Path,
        metadata: &[MetadataColumn],
        value_level: i32,
    ) -> Result<Self, TableError> {
        let schema = match table {
            Table::Documents => documents_schema(metadata),
            _ => table.schema(),
        };
        let file = File::create(path).map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = ArrowWriter::try_new(
            file,
            schema.clone(),
            Some(table.writer_properties(value_level)),
        )
        .map_err(|source| TableError::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            table,
            schema,
            metadata: metadata.to_vec(),
            path: path.to_path_buf(),
            writer,
            rows: 0,
        })
    }

    fn write(
        &mut self,
        batch: Result<RecordBatch, arrow_schema::ArrowError>,
    ) -> Result<(), TableError> {
        let batch = batch.map_err(|source| TableError::Arrow {
            table: self.table,
            source,
        })?;
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(&batch)
            .map_err(|source| TableError::Parquet {
                path: self.path.clone(),
                source,
            })
    }

    /// Appends document rows (the writer must be for [`Table::Documents`]).
    pub fn write_documents(&mut self, rows: DocumentRows) -> Result<(), TableError> {
        debug_assert_eq!(self.table, Table::Documents);
        let batch = rows.record_batch(&self.metadata);
        self.write(batch)
    }

    /// Appends token rows (the writer must be for [`Table::Tokens`]).
    pub fn write_tokens(&mut self, rows: TokenRows) -> Result<(), TableError> {
        debug_assert_eq!(self.table, Table::Tokens);
        self.write(rows.batch())
    }

    /// Appends activation rows (the writer must be for [`Table::Activations`]).
    pub fn write_activations(&mut self, rows: ActivationRows) -> Result<(), TableError> {
        debug_assert_eq!(self.table, Table::Activations);
        self.write(rows.batch())
    }

    /// Appends rows read from a part of the same table (e.g. by a compaction), as they
    /// are: their columns must have this file's types.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), TableError> {
        self.write(RecordBatch::try_new(
            self.schema.clone(),
            batch.columns().to_vec(),
        ))
    }

    /// Writes the footer, flushes the file to disk and returns the rows written.
    pub fn finish(self) -> Result<u64, TableError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|source| TableError::Parquet {
                path: self.path.clone(),
                source,
            })?;
        file.sync_all().map_err(|source| TableError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_folder_describes_these_tables() {
        for table in Table::ALL {
            let path = format!(
                "{}/../../schemas/index/{}.arrow.json",
                env!("CARGO_MANIFEST_DIR"),
                table.dir()
            );
            let described: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let fields: Vec<(String, String, bool)> = described["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap().to_string(),
                        f["type"].as_str().unwrap().to_string(),
                        f["nullable"].as_bool().unwrap(),
                    )
                })
                .collect();
            let actual: Vec<(String, String, bool)> = table
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string(), f.is_nullable()))
                .collect();
            assert_eq!(fields, actual, "{path}");
        }
    }

    /// The compression and encodings `schemas/index/*.arrow.json` name are the writer's,
    /// and a written part really uses them.
    #[test]
    fn schemas_folder_names_the_encodings_and_compression() {
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let dir = tempfile::tempdir().unwrap();
        for table in Table::ALL {
            let path = format!(
                "{}/../../schemas/index/{}.arrow.json",
                env!("CARGO_MANIFEST_DIR"),
                table.dir()
            );
            let described: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let properties = table.writer_properties(VALUE_ZSTD_LEVEL);
            let file = dir.path().join(format!("{}.parquet", table.dir()));
            let mut writer = TableWriter::create(table, &file).unwrap();
            match table {
                Table::Documents => writer.write_documents(DocumentRows {
                    doc: vec![0, 1],
                    id: vec!["a".into(), "b".into()],
                    source: vec!["s".into(), "s".into()],
                    text: vec!["x".into(), "y".into()],
                    tokens: vec![1, 1],
                    metadata: Vec::new(),
                }),
                Table::Tokens => writer.write_tokens(TokenRows {
                    doc: vec![0, 1],
                    position: vec![0, 0],
                    token: vec![5, 6],
                    start: vec![0, 0],
                    end: vec![1, 1],
                    special: vec![false, false],
                    sink: vec![true, true],
                }),
                Table::Activations => {
                    let mut rows = ActivationRows::default();
                    rows.push_token(0, 0, [(3, 1.0), (1, 2.0)]);
                    rows.push_token(0, 1, [(3, 1.0), (1, 2.0)]);
                    assert_eq!(rows.feature, [1, 3, 3, 1]);
                    assert_eq!(rows.value, [2.0, 1.0, 1.0, 2.0]);
                    writer.write_activations(rows)
                }
            }
            .unwrap();
            writer.finish().unwrap();
            let reader = SerializedFileReader::new(File::open(&file).unwrap()).unwrap();
            let group = reader.metadata().row_group(0);
            for (index, field) in table.schema().fields().iter().enumerate() {
                let column = ColumnPath::from(field.name().as_str());
                let compression = &described["compression"];
                let level = compression[field.name().as_str()]
                    .as_str()
                    .or(compression["default"].as_str())
                    .unwrap();
                let Compression::ZSTD(actual) = properties.compression(&column) else {
                    panic!("{path}: {} is not zstd", field.name());
                };
                assert_eq!(
                    level,
                    format!("zstd({})", actual.compression_level()),
                    "{path}"
                );
                let chunk = group.column(index);
                assert!(
                    matches!(chunk.compression(), Compression::ZSTD(_)),
                    "{path}"
                );
                if let Some(named) = described["encodings"][field.name().as_str()].as_str() {
                    let encoding: Encoding = named.parse().unwrap();
                    assert_eq!(properties.encoding(&column), Some(encoding), "{path}");
                    assert!(
                        chunk.encodings().any(|used| used == encoding),
                        "{path}: {} does not use {named}",
                        field.name()
                    );
                    assert!(!properties.dictionary_enabled(&column), "{path}");
                }
            }
        }
    }

    #[test]
    fn rounding_keeps_eleven_significant_bits() {
        assert_eq!(round_to_half_precision(1.0), 1.0);
        assert_eq!(round_to_half_precision(0.0), 0.0);
        for value in [0.1f32, 2.71, 123456.78, 1e-20, -7.77] {
            let rounded = round_to_half_precision(value);
            assert_eq!(rounded.to_bits() & 0x1fff, 0);
            assert!(((rounded - value) / value).abs() <= 1.0 / 2048.0, "{value}");
        }
        // Values f16 can hold come out exactly as f16 rounds them.
        for value in [0.1f32, 2.5, 1000.3, 0.0312] {
            assert_eq!(
                round_to_half_precision(value),
                half::f16::from_f32(value).to_f32()
            );
        }
    }
}
