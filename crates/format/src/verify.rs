//! Verification of an index folder against its manifest (`saeidx verify`). It needs no
//! model: anyone who receives an index can check it.
//!
//! 1. The manifest: format name and version, parts in order, counts that add up, and a
//!    consistent job (SAE input width = the model's hidden size, the hook's layer within
//!    the model, a valid window rule).
//! 2. Every data file: present, of the recorded size and SHA-256.
//! 3. Every Parquet file: the table's exact Arrow schema (for `documents/`: the fixed
//!    columns, then the metadata columns the manifest declares, with their types) and
//!    the recorded row count.
//! 4. Every row: documents numbered consecutively from the part's first document, token
//!    positions consecutive per document with byte ranges inside the text, token counts
//!    matching, activations in the table's row order (doc, position, then
//!    [`feature_sort_key`](crate::tables::feature_sort_key)) with positions inside
//!    their document, feature ids below the SAE width and values finite and positive.

use std::{collections::HashMap, fs::File, path::Path};

use arrow_array::{Array, Float32Array, LargeStringArray, RecordBatch, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use crate::{
    manifest::{Manifest, ManifestError, PartRecord},
    metadata::{FIXED_COLUMNS, MetadataColumn, MetadataType, documents_schema},
    tables::{Table, feature_sort_key},
};

/// Why an index failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The manifest is missing, unreadable or inconsistent.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file or the folder does not match the manifest.
    #[error("{path} failed verification: {reason}")]
    Corrupt {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Data files checked.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Documents checked.
    pub documents: u64,
    /// Tokens checked.
    pub tokens: u64,
    /// Activation rows checked.
    pub nonzeros: u64,
}

/// Verifies the index in `dir`; the first problem found is the error.
pub fn verify(dir: &Path) -> Result<(Manifest, VerifyReport), VerifyError> {
    let manifest = Manifest::read(dir)?;
    check_job(dir, &manifest)?;
    let mut report = VerifyReport::default();
    let metadata = DocumentColumns::Declared(&manifest.job.corpus.metadata);
    for part in &manifest.parts {
        read_part_with(dir, part, manifest.job.sae.d_sae, metadata, &mut report)?;
    }
    Ok((manifest, report))
}

/// Checks that the manifest's job is coherent: the SAE fits the model, the hook is a
/// layer of the model, the window rule is valid.
pub fn check_job(dir: &Path, manifest: &Manifest) -> Result<(), VerifyError> {
    let corrupt = |reason: String| VerifyError::Corrupt {
        path: dir.to_path_buf(),
        reason,
    };
    let job = &manifest.job;
    let width = job.model.hook_width.unwrap_or(job.model.hidden_size);
    if job.sae.d_in != width {
        return Err(corrupt(format!(
            "the SAE's input width {} is not the width {width} of the model's activations at {}",
            job.sae.d_in, job.hook
        )));
    }
    let layer = hook_layer(&job.hook)
        .ok_or_else(|| corrupt(format!("hook {:?} is not a saeidx hook name", job.hook)))?;
    if layer >= job.model.num_layers {
        return Err(corrupt(format!(
            "hook {} is past the model's {} layers",
            job.hook, job.model.num_layers
        )));
    }
    if job.window.length == 0 || job.window.overlap >= job.window.length {
        return Err(corrupt(format!("invalid window rule {:?}", job.window)));
    }
    Ok(())
}

/// One part's three tables, read whole after every check of [`read_part`] passed.
#[derive(Debug, Clone)]
pub struct PartTables {
    /// `documents` rows.
    pub documents: Vec<RecordBatch>,
    /// `tokens` rows.
    pub tokens: Vec<RecordBatch>,
    /// `activations` rows.
    pub activations: Vec<RecordBatch>,
}

/// Which metadata columns a part's `documents/` file must have after the fixed ones.
#[derive(Debug, Clone, Copy)]
pub enum DocumentColumns<'a> {
    /// Exactly these, in this order, with these types.
    Declared(&'a [MetadataColumn]),
    /// Any, as long as each has a metadata type's Arrow type and no fixed column's name.
    Any,
}

/// Reads one part of the index in `dir` and checks it completely: file sizes and
/// SHA-256 against the manifest, schemas, row counts, document numbering, token
/// positions and byte ranges, activation order, feature ids below `d_sae` and values.
/// `report` accumulates what was checked. The `documents/` file may have any metadata
/// columns ([`DocumentColumns::Any`]); [`verify`] checks them against the manifest.
pub fn read_part(
    dir: &Path,
    part: &PartRecord,
    d_sae: usize,
    report: &mut VerifyReport,
) -> Result<PartTables, VerifyError> {
    read_part_with(dir, part, d_sae, DocumentColumns::Any, report)
}

/// [`read_part`], with the metadata columns the `documents/` file must have.
pub fn read_part_with(
    dir: &Path,
    part: &PartRecord,
    d_sae: usize,
    metadata: DocumentColumns<'_>,
    report: &mut VerifyReport,
) -> Result<PartTables, VerifyError> {
    for file in &part.files {
        if !file.matches(dir) {
            return Err(VerifyError::Corrupt {
                path: dir.join(&file.path),
                reason: "missing, or its size or SHA-256 differs from the manifest (the file is damaged or was replaced)".into(),
            });
        }
        report.files += 1;
        report.bytes += file.bytes;
    }
    check_part(dir, part, d_sae, metadata, report)
}

/// The layer of a canonical hook name (`blocks.L.hook_...`).
fn hook_layer(hook: &str) -> Option<usize> {
    let rest = hook.strip_prefix("blocks.")?;
    let (layer, kind) = rest.split_once('.')?;
    (kind.starts_with("hook_") || kind == "attn.hook_z").then_some(())?;
    layer.parse().ok()
}

/// The metadata columns a `documents/` file has after the fixed ones, if they are valid
/// ones (a metadata type's Arrow type, no fixed column's name).
fn found_metadata(fields: &arrow_schema::Fields) -> Option<Vec<MetadataColumn>> {
    let fixed = Table::Documents.schema();
    let fixed = fixed.fields();
    if fields.len() < fixed.len() {
        return None;
    }
    fields[fixed.len()..]
        .iter()
        .map(|field| {
            let kind = MetadataType::ALL
                .into_iter()
                .find(|kind| kind.arrow_type() == *field.data_type())?;
            (!FIXED_COLUMNS.contains(&field.name().as_str()))
                .then(|| MetadataColumn::new(field.name(), kind))
        })
        .collect()
}

/// Reads a table file whole, checking its schema and row count.
fn read_table(
    dir: &Path,
    table: Table,
    part: &PartRecord,
    metadata: DocumentColumns<'_>,
) -> Result<Vec<RecordBatch>, VerifyError> {
    let index = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
    let record = &part.files[index];
    let path = dir.join(&record.path);
    let corrupt = |reason: String| VerifyError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file = File::open(&path).map_err(|e| VerifyError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| corrupt(format!("not readable as Parquet: {e}")))?;
    let found = builder.schema();
    let expected = match (table, metadata) {
        (Table::Documents, DocumentColumns::Declared(columns)) => documents_schema(columns),
        (Table::Documents, DocumentColumns::Any) => {
            documents_schema(&found_metadata(found.fields()).unwrap_or_default())
        }
        _ => table.schema(),
    };
    let same = found.fields().len() == expected.fields().len()
        && found
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        let describe = |fields: &arrow_schema::Fields| {
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(corrupt(format!(
            "its columns ({}) are not the {table:?} table's ({}{})",
            describe(found.fields()),
            describe(expected.fields()),
            if table == Table::Documents {
                ": the fixed columns, then the metadata columns the manifest declares"
            } else {
                ""
            }
        )));
    }
    let rows = builder.metadata().file_metadata().num_rows() as u64;
    if rows != record.rows {
        return Err(corrupt(format!(
            "{rows} rows where the manifest records {}",
            record.rows
        )));
    }
    let reader = builder
        .with_batch_size(65536)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(format!("unreadable rows: {e}")))
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .expect("the schema was checked")
}

fn check_part(
    dir: &Path,
    part: &PartRecord,
    d_sae: usize,
    metadata: DocumentColumns<'_>,
    report: &mut VerifyReport,
) -> Result<PartTables, VerifyError> {
    let check = PartCheck {
        dir,
        part,
        metadata,
    };
    let (documents, document_batches) = check.documents()?;
    let token_batches = check.tokens(&documents, report)?;
    let activation_batches = check.activations(&documents, d_sae, report)?;
    report.documents += part.documents;
    Ok(PartTables {
        documents: document_batches,
        tokens: token_batches,
        activations: activation_batches,
    })
}

/// Each document of a part: its token count and its text's length in bytes.
type PartDocuments = HashMap<u32, (u32, usize)>;

/// One part's three tables checked against each other and the manifest.
struct PartCheck<'a> {
    dir: &'a Path,
    part: &'a PartRecord,
    metadata: DocumentColumns<'a>,
}

impl PartCheck<'_> {
    fn fail(&self, table: Table, reason: String) -> VerifyError {
        VerifyError::Corrupt {
            path: self.dir.join(table.part_path(self.part.part)),
            reason,
        }
    }

    /// Documents: consecutive numbers from first_doc; their token counts and lengths.
    fn documents(&self) -> Result<(PartDocuments, Vec<RecordBatch>), VerifyError> {
        let mut documents = PartDocuments::new();
        let mut expected_doc = self.part.first_doc;
        let batches = read_table(self.dir, Table::Documents, self.part, self.metadata)?;
        for batch in &batches {
            let doc = column::<UInt32Array>(batch, "doc");
            let text = column::<LargeStringArray>(batch, "text");
            let tokens = column::<UInt32Array>(batch, "tokens");
            for row in 0..batch.num_rows() {
                if doc.value(row) != expected_doc {
                    let found = doc.value(row);
                    return Err(self.fail(
                        Table::Documents,
                        format!("document {found} where {expected_doc} was expected"),
                    ));
                }
                documents.insert(expected_doc, (tokens.value(row), text.value(row).len()));
                expected_doc += 1;
            }
        }
        if documents.len() as u64 != self.part.documents {
            return Err(self.fail(
                Table::Documents,
                format!(
                    "{} documents, the manifest says {}",
                    documents.len(),
                    self.part.documents
                ),
            ));
        }
        Ok((documents, batches))
    }

    /// Tokens: per document, positions 0..tokens with spans inside the text.
    fn tokens(
        &self,
        documents: &PartDocuments,
        report: &mut VerifyReport,
    ) -> Result<Vec<RecordBatch>, VerifyError> {
        let mut walk = TokenWalk::default();
        let batches = read_table(self.dir, Table::Tokens, self.part, self.metadata)?;
        for batch in &batches {
            let doc = column::<UInt32Array>(batch, "doc");
            let position = column::<UInt32Array>(batch, "position");
            let start = column::<UInt32Array>(batch, "start");
            let end = column::<UInt32Array>(batch, "end");
            for row in 0..batch.num_rows() {
                let (d, p) = (doc.value(row), position.value(row));
                let Some(&(_, text_len)) = documents.get(&d) else {
                    return Err(self.fail(
                        Table::Tokens,
                        format!("token of document {d}, which is not in this part"),
                    ));
                };
                walk.step(d, p, documents)
                    .map_err(|reason| self.fail(Table::Tokens, reason))?;
                if start.value(row) > end.value(row) || end.value(row) as usize > text_len {
                    return Err(self.fail(
                        Table::Tokens,
                        format!("document {d} position {p}: byte range outside the text"),
                    ));
                }
                report.tokens += 1;
            }
        }
        walk.finish(documents)
            .map_err(|reason| self.fail(Table::Tokens, reason))?;
        Ok(batches)
    }

    /// Activations: sorted, inside documents, valid features and values.
    fn activations(
        &self,
        documents: &PartDocuments,
        d_sae: usize,
        report: &mut VerifyReport,
    ) -> Result<Vec<RecordBatch>, VerifyError> {
        let mut last: Option<(u32, u32, u32)> = None;
        let batches = read_table(self.dir, Table::Activations, self.part, self.metadata)?;
        for batch in &batches {
            let doc = column::<UInt32Array>(batch, "doc");
            let position = column::<UInt32Array>(batch, "position");
            let feature = column::<UInt32Array>(batch, "feature");
            let value = column::<Float32Array>(batch, "value");
            if value.null_count() > 0 {
                return Err(self.fail(Table::Activations, "null values".into()));
            }
            for row in 0..batch.num_rows() {
                let key = (doc.value(row), position.value(row), feature.value(row));
                let order = (key.0, key.1, feature_sort_key(key.1, key.2));
                if last.is_some_and(|last| last >= order) {
                    return Err(self.fail(
                        Table::Activations,
                        format!(
                            "row {key:?} is out of order (doc, position, then features \
                             ascending at even positions and descending at odd ones)"
                        ),
                    ));
                }
                last = Some(order);
                check_activation(key, value.value(row), documents, d_sae)
                    .map_err(|reason| self.fail(Table::Activations, reason))?;
                report.nonzeros += 1;
            }
        }
        Ok(batches)
    }
}

/// One activation row `(doc, position, feature)` with its value, checked against its
/// part's documents and the SAE's width.
fn check_activation(
    (doc, position, feature): (u32, u32, u32),
    value: f32,
    documents: &PartDocuments,
    d_sae: usize,
) -> Result<(), String> {
    let Some(&(count, _)) = documents.get(&doc) else {
        return Err(format!(
            "activation of document {doc}, which is not in this part"
        ));
    };
    if position >= count {
        return Err(format!("document {doc} has no position {position}"));
    }
    if feature as usize >= d_sae {
        return Err(format!(
            "feature {feature} is outside the SAE's {d_sae} features"
        ));
    }
    if !(value.is_finite() && value > 0.0) {
        return Err(format!(
            "value {value} at {:?} is not finite and positive",
            (doc, position, feature)
        ));
    }
    Ok(())
}

/// The walk through a part's token rows: documents in order, positions consecutive.
#[derive(Default)]
struct TokenWalk {
    /// The document being walked and its next expected position.
    current: Option<(u32, u32)>,
    /// Documents seen with tokens.
    documents: usize,
}

impl TokenWalk {
    fn step(&mut self, doc: u32, position: u32, documents: &PartDocuments) -> Result<(), String> {
        match self.current {
            Some((current, next)) if current == doc => {
                if position != next {
                    return Err(format!(
                        "document {doc}: position {position} where {next} was expected"
                    ));
                }
                self.current = Some((doc, next + 1));
            }
            _ => {
                if self.current.is_some_and(|(current, _)| current > doc) {
                    return Err(format!("document {doc} after a later document"));
                }
                self.finish_document(documents)?;
                self.documents += 1;
                if position != 0 {
                    return Err(format!("document {doc} starts at position {position}"));
                }
                self.current = Some((doc, 1));
            }
        }
        Ok(())
    }

    fn finish_document(&self, documents: &PartDocuments) -> Result<(), String> {
        if let Some((doc, seen)) = self.current {
            let (count, _) = documents[&doc];
            if seen != count {
                return Err(format!(
                    "document {doc} has {seen} tokens, its row says {count}"
                ));
            }
        }
        Ok(())
    }

    fn finish(&self, documents: &PartDocuments) -> Result<(), String> {
        self.finish_document(documents)?;
        let with_tokens = documents.values().filter(|(count, _)| *count > 0).count();
        if self.documents != with_tokens {
            return Err(format!(
                "tokens for {} documents, {with_tokens} have tokens",
                self.documents
            ));
        }
        Ok(())
    }
}
