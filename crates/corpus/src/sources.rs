//! Corpus sources: which files make up a corpus, in which order, and how each is read.
//!
//! A [`CorpusSpec`] (one section of a TOML job file) lists sources; each is a file or a
//! folder. A folder is walked recursively in sorted order — entries of each folder sorted
//! by name, byte-wise, and visited depth first — taking the files whose extension names
//! a format and skipping hidden files and folders (names starting with `.`).
//!
//! | format | extensions | one document is | id |
//! |---|---|---|---|
//! | [`SourceFormat::Text`] | `.txt`, `.md` | a whole file | the file's relative path |
//! | [`SourceFormat::Jsonl`] | `.jsonl`, `.json` | a line's JSON object | its `id_field` (string or number), else `{file}:{line}` (from 1) |
//! | [`SourceFormat::Parquet`] | `.parquet` | a row | its `id_field` column (string or integer), else `{file}:{row}` (from 0) |
//!
//! `{file}` and [`Document::source`] are the file's path relative to the source's path,
//! with forward slashes (for a source that is one file: its file name). The same spec
//! over the same files always gives the same documents, in the same order, with the same
//! ids: that is what makes an index reproducible and its answers citable.
//!
//! A record that cannot become a document — invalid UTF-8, a line that is not JSON, a
//! missing or null text, a text over [`CorpusSpec::max_document_bytes`] — is a *bad
//! record*. [`BadRecordPolicy::Stop`] ends reading with an error naming the file, the
//! line or row, and the reason; [`BadRecordPolicy::Skip`] counts it (see
//! [`CorpusReader::skipped`]) and goes on. Problems that are not about one record (a
//! file that cannot be opened, a Parquet file without the text column, an I/O error) end
//! reading under either policy.

mod jsonl;
mod metadata;
mod parquet_file;
mod text;

use std::{
    fmt,
    fs::{self, File},
    io::{self, Read},
    path::{Path, PathBuf},
    sync::Arc,
};

use saeidx_format::metadata::{MetadataColumn, MetadataValue};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{CorpusError, documents::Document};

pub(crate) use jsonl::JsonlFile;
pub use jsonl::{JsonlDocuments, JsonlFields};
pub use metadata::MetadataSpec;

/// The default [`CorpusSpec::max_document_bytes`]: 256 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 256 << 20;

/// How many bad records [`SkippedRecords`] keeps in full; later ones are only counted.
pub const MAX_KEPT_BAD_RECORDS: usize = 100;

/// The documents of a corpus: its sources, in reading order, and how to treat bad records.
///
/// In TOML:
///
/// ```toml
/// on_bad_record = "skip"          # or "stop" (the default)
/// max_document_bytes = 1048576    # default 256 MiB
///
/// [[sources]]
/// path = "corpora/sotu.jsonl"
///
/// [[sources]]
/// path = "datasets/wikitext"      # a folder of Parquet files, say
/// format = "parquet"              # optional: inferred from each file's extension
/// text_field = "text"             # the default
/// id_field = "id"                 # the default
/// ```
///
/// `metadata` lists the record fields (JSONL keys, Parquet columns) kept as typed
/// columns of the index's documents table; see [`MetadataSpec`]:
///
/// ```toml
/// metadata = [
///   { field = "year", type = "integer" },
///   { field = "party", type = "string" },
///   { field = "president" },        # type inferred from the corpus
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSpec {
    /// The sources, read one after the other in this order.
    pub sources: Vec<SourceSpec>,
    /// What to do with a record that cannot become a document.
    #[serde(default)]
    pub on_bad_record: BadRecordPolicy,
    /// The largest document text, in bytes (UTF-8); a larger one is a bad record. It also
    /// bounds memory: a plain-text file over it is not read, and a JSONL line longer than
    /// four times it (room for JSON escapes and other fields) is not parsed.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
    /// Record fields kept as typed document metadata, in column order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataSpec>,
}

fn default_max_document_bytes() -> u64 {
    DEFAULT_MAX_DOCUMENT_BYTES
}

/// One source of a corpus: a file, or a folder of files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A file, or a folder walked recursively (see the [module docs](self)).
    pub path: PathBuf,
    /// The format. When absent, each file's extension decides. For a folder, an explicit
    /// format also restricts the walk to that format's extensions (so a Hugging Face
    /// dataset folder with `format = "parquet"` ignores its `README.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SourceFormat>,
    /// The JSON field or Parquet column holding the text.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// The JSON field or Parquet column holding the document id; when a record has no
    /// usable id there, the id is its position (see the [module docs](self)).
    #[serde(default = "default_id_field")]
    pub id_field: String,
}

fn default_text_field() -> String {
    "text".into()
}

fn default_id_field() -> String {
    "id".into()
}

impl SourceSpec {
    /// A source at `path` with an inferred format and the default fields.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: None,
            text_field: default_text_field(),
            id_field: default_id_field(),
        }
    }
}

/// How a source file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// UTF-8 text: one file is one document (`.txt`, `.md`).
    Text,
    /// JSON Lines: one object per line is one document (`.jsonl`, `.json`).
    Jsonl,
    /// Apache Parquet: one row is one document (`.parquet`).
    Parquet,
}

impl SourceFormat {
    /// Every format, in the order of the extension table.
    pub const ALL: [SourceFormat; 3] = [Self::Text, Self::Jsonl, Self::Parquet];

    /// The file extensions (lowercase, without the dot) that mean this format.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::Text => &["txt", "md"],
            Self::Jsonl => &["jsonl", "json"],
            Self::Parquet => &["parquet"],
        }
    }

    /// The format a file's extension names (case-insensitive), if any.
    pub fn from_extension(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|format| format.extensions().contains(&extension.as_str()))
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        })
    }
}

/// What [`CorpusReader`] does with a record that cannot become a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRecordPolicy {
    /// End reading with [`CorpusError::BadRecord`].
    #[default]
    Stop,
    /// Count it, keep its reason (the first [`MAX_KEPT_BAD_RECORDS`]), and go on.
    Skip,
}

/// One file of a corpus, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusFile {
    /// The file: the source's path, joined with the file's relative name for a folder.
    pub path: PathBuf,
    /// The path relative to the source's path, with forward slashes (for a source that is
    /// one file: its file name); the [`Document::source`] of its documents.
    pub name: String,
    /// The index of its source in [`CorpusSpec::sources`].
    pub source: usize,
    /// How it is read.
    pub format: SourceFormat,
    /// Its size in bytes.
    pub bytes: u64,
    /// The SHA-256 of its contents, as 64 lowercase hex digits.
    pub sha256: String,
}

/// Where in a file a bad record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordLocation {
    /// The whole file (a plain-text file is one record).
    File,
    /// A line, from 1 (JSONL, or invalid UTF-8 in a plain-text file).
    Line(u64),
    /// A Parquet row, from 0 within the file (as in the `{file}:{row}` ids).
    Row(u64),
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => Ok(()),
            Self::Line(line) => write!(f, ", line {line}"),
            Self::Row(row) => write!(f, ", row {row}"),
        }
    }
}

/// A record that could not become a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The file.
    pub path: PathBuf,
    /// The file's name relative to its source (as in [`Document::source`]).
    pub source: String,
    /// Where in the file.
    pub location: RecordLocation,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}: {}",
            self.path.display(),
            self.location,
            self.reason
        )
    }
}

/// The bad records [`BadRecordPolicy::Skip`] passed over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRecords {
    /// How many were skipped.
    pub count: u64,
    /// The first [`MAX_KEPT_BAD_RECORDS`] of them, in reading order.
    pub first: Vec<BadRecord>,
}

impl SkippedRecords {
    fn record(&mut self, bad: BadRecord) {
        self.count += 1;
        if self.first.len() < MAX_KEPT_BAD_RECORDS {
            self.first.push(bad);
        }
    }
}

/// A file found by resolving a spec, before it is hashed or read.
#[derive(Debug, Clone)]
struct ResolvedFile {
    path: PathBuf,
    name: String,
    source: usize,
    format: SourceFormat,
}

impl CorpusSpec {
    /// A spec reading `sources` with the default policy ([`BadRecordPolicy::Stop`]) and
    /// limit ([`DEFAULT_MAX_DOCUMENT_BYTES`]).
    pub fn new(sources: Vec<SourceSpec>) -> Self {
        Self {
            sources,
            on_bad_record: BadRecordPolicy::default(),
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            metadata: Vec::new(),
        }
    }

    /// This spec with every relative source path joined onto `base` (the folder of the
    /// job file that holds the spec, say); absolute paths stay as they are.
    pub fn relative_to(&self, base: &Path) -> Self {
        let mut spec = self.clone();
        for source in &mut spec.sources {
            if source.path.is_relative() {
                source.path = base.join(&source.path);
            }
        }
        spec
    }

    /// Every file of the corpus in reading order, with its size and SHA-256, for the
    /// manifest. Reads every file once.
    pub fn files(&self) -> Result<Vec<CorpusFile>, CorpusError> {
        self.resolve()?
            .into_iter()
            .map(|file| {
                let (bytes, sha256) = hash_file(&file.path).map_err(|e| CorpusError::Read {
                    path: file.path.clone(),
                    line: None,
                    reason: format!("cannot read to hash it: {e}"),
                })?;
                Ok(CorpusFile {
                    path: file.path,
                    name: file.name,
                    source: file.source,
                    format: file.format,
                    bytes,
                    sha256,
                })
            })
            .collect()
    }

    /// A reader of this spec's documents (see [`CorpusReader::open`]).
    pub fn reader(&self) -> Result<CorpusReader, CorpusError> {
        CorpusReader::open(self)
    }

    fn resolve(&self) -> Result<Vec<ResolvedFile>, CorpusError> {
        if self.sources.is_empty() {
            return Err(CorpusError::Source {
                path: PathBuf::new(),
                reason: "the corpus has no sources; add at least one [[sources]] with a path"
                    .into(),
            });
        }
        let mut files = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            resolve_source(index, source, &mut files)?;
        }
        Ok(files)
    }
}

fn source_error(path: &Path, reason: impl Into<String>) -> CorpusError {
    CorpusError::Source {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn known_extensions(format: Option<SourceFormat>) -> String {
    let formats = match format {
        Some(format) => vec![format],
        None => SourceFormat::ALL.to_vec(),
    };
    formats
        .iter()
        .flat_map(|format| format.extensions())
        .map(|extension| format!(".{extension}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve_source(
    index: usize,
    source: &SourceSpec,
    files: &mut Vec<ResolvedFile>,
) -> Result<(), CorpusError> {
    let path = &source.path;
    let metadata = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            source_error(path, "no such file or folder; check the source's path")
        } else {
            source_error(
                path,
                format!("cannot read it: {e}; check that it exists and is readable"),
            )
        }
    })?;
    if metadata.is_file() {
        let format = match source.format.or_else(|| SourceFormat::from_extension(path)) {
            Some(format) => format,
            None => {
                return Err(source_error(
                    path,
                    format!(
                        "cannot tell its format from its extension (known: {}); set format = \
                         \"text\", \"jsonl\" or \"parquet\" for this source",
                        known_extensions(None)
                    ),
                ));
            }
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string_lossy().into_owned());
        files.push(ResolvedFile {
            path: path.clone(),
            name,
            source: index,
            format,
        });
        return Ok(());
    }
    if !metadata.is_dir() {
        return Err(source_error(
            path,
            "neither a file nor a folder; point the source at a file or a folder",
        ));
    }
    let before = files.len();
    let mut ancestors = vec![canonical(path)?];
    walk(index, source.format, path, "", &mut ancestors, files)?;
    if files.len() == before {
        return Err(source_error(
            path,
            format!(
                "the folder holds no {} files (hidden files are skipped); point the source at \
                 the files, or set its format",
                known_extensions(source.format)
            ),
        ));
    }
    Ok(())
}

fn canonical(path: &Path) -> Result<PathBuf, CorpusError> {
    fs::canonicalize(path).map_err(|e| {
        source_error(
            path,
            format!("cannot resolve it: {e}; check that it exists and is readable"),
        )
    })
}

/// Appends the files under `dir` (whose path relative to the source is `prefix`) in
/// sorted order.
fn walk(
    index: usize,
    format: Option<SourceFormat>,
    dir: &Path,
    prefix: &str,
    ancestors: &mut Vec<PathBuf>,
    files: &mut Vec<ResolvedFile>,
) -> Result<(), CorpusError> {
    let unreadable = |e: io::Error| {
        source_error(
            dir,
            format!("cannot read the folder: {e}; check that it is readable"),
        )
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        entries.push(entry.map_err(unreadable)?.file_name());
    }
    entries.sort();
    for name in entries {
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = dir.join(&name);
        let relative = if prefix.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{prefix}/{}", name.to_string_lossy())
        };
        let metadata = fs::metadata(&path).map_err(|e| {
            source_error(
                &path,
                format!(
                    "cannot read it: {e}; remove it or fix it (a broken link?), or list the \
                     other files as sources"
                ),
            )
        })?;
        if metadata.is_dir() {
            let real = canonical(&path)?;
            if ancestors.contains(&real) {
                return Err(source_error(
                    &path,
                    "a link back to a folder above it (a loop); remove the link",
                ));
            }
            ancestors.push(real);
            walk(index, format, &path, &relative, ancestors, files)?;
            ancestors.pop();
        } else if metadata.is_file() {
            let Some(file_format) = SourceFormat::from_extension(&path) else {
                continue;
            };
            if format.is_some_and(|format| format != file_format) {
                continue;
            }
            files.push(ResolvedFile {
                path,
                name: relative,
                source: index,
                format: file_format,
            });
        }
    }
    Ok(())
}

/// The size and SHA-256 of a file, read in chunks.
fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    let digest = hasher.finalize();
    let hex = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok((bytes, hex))
}

/// The file being read and the limit on its documents, shared by the format readers.
#[derive(Debug, Clone)]
pub(crate) struct FileContext {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) max_document_bytes: u64,
    /// The metadata columns every document of the file carries.
    pub(crate) metadata: Arc<[MetadataColumn]>,
}

/// Why a file reader produced no document.
#[derive(Debug)]
pub(crate) enum Fault {
    /// One record is bad; reading may go on.
    Bad(BadRecord),
    /// The file cannot be read further.
    Fatal(CorpusError),
}

impl FileContext {
    pub(crate) fn bad(&self, location: RecordLocation, reason: impl Into<String>) -> Fault {
        Fault::Bad(BadRecord {
            path: self.path.clone(),
            source: self.name.clone(),
            location,
            reason: reason.into(),
        })
    }

    pub(crate) fn fatal(&self, reason: impl Into<String>) -> CorpusError {
        CorpusError::Read {
            path: self.path.clone(),
            line: None,
            reason: reason.into(),
        }
    }

    /// A bad record if `text_bytes` is over the limit.
    pub(crate) fn check_size(
        &self,
        location: RecordLocation,
        text_bytes: u64,
    ) -> Result<(), Fault> {
        if text_bytes > self.max_document_bytes {
            return Err(self.bad(
                location,
                format!(
                    "the document is {text_bytes} bytes, over max_document_bytes ({})",
                    self.max_document_bytes
                ),
            ));
        }
        Ok(())
    }

    /// A document of this file with null metadata.
    pub(crate) fn document(&self, id: String, text: String) -> Document {
        let metadata = vec![MetadataValue::Null; self.metadata.len()];
        self.document_with(id, text, metadata)
    }

    /// A document of this file with its metadata values.
    pub(crate) fn document_with(
        &self,
        id: String,
        text: String,
        metadata: Vec<MetadataValue>,
    ) -> Document {
        Document {
            id,
            source: self.name.clone(),
            text,
            metadata,
        }
    }

    /// The reason a document's metadata field is unusable, naming both.
    pub(crate) fn metadata_reason(id: &str, column: &MetadataColumn, problem: &str) -> String {
        format!(
            "document {id:?}: metadata field {:?} {problem}; fix the record, or change the \
             field's type in the job's [corpus] metadata",
            column.name
        )
    }
}

/// Where the first invalid byte of `bytes` (at `valid_up_to`) is: its line (from 1) and
/// its byte within that line (from 1).
pub(crate) fn utf8_position(bytes: &[u8], valid_up_to: usize) -> (u64, usize) {
    let before = &bytes[..valid_up_to];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, valid_up_to - line_start + 1)
}

/// The reader of one file.
enum FileReader {
    /// A plain-text file, until its one document is read.
    Text(Option<FileContext>),
    /// A JSONL file.
    Jsonl(JsonlFile),
    /// A Parquet file.
    Parquet(Box<parquet_file::ParquetFile>),
}

impl FileReader {
    fn next(&mut self) -> Option<Result<Document, Fault>> {
        match self {
            Self::Text(context) => context.take().map(|context| text::read(&context)),
            Self::Jsonl(reader) => reader.next(),
            Self::Parquet(reader) => reader.next(),
        }
    }
}

/// The documents of a [`CorpusSpec`], in order: its sources one after the other, each
/// folder's files in sorted order, each file's records in file order.
///
/// Files are opened one at a time and read in bounded memory. The iterator ends after
/// the last document, or after the first `Err` (which it yields once).
pub struct CorpusReader {
    sources: Vec<SourceSpec>,
    files: Vec<ResolvedFile>,
    next_file: usize,
    current: Option<FileReader>,
    policy: BadRecordPolicy,
    max_document_bytes: u64,
    metadata: Arc<[MetadataColumn]>,
    skipped: SkippedRecords,
    done: bool,
}

impl CorpusReader {
    /// Resolves `spec`'s files (errors as for [`CorpusSpec::files`], without reading any
    /// file) and prepares to read them. When a metadata field's type is left out, the
    /// corpus is read once first to infer it ([`CorpusSpec::metadata_columns`]).
    pub fn open(spec: &CorpusSpec) -> Result<Self, CorpusError> {
        let metadata = match spec.declared_columns() {
            Some(columns) => {
                saeidx_format::metadata::check_columns(&columns)
                    .map_err(|reason| CorpusError::Metadata { reason })?;
                columns
            }
            None => spec.metadata_columns()?,
        };
        Ok(Self {
            sources: spec.sources.clone(),
            files: spec.resolve()?,
            next_file: 0,
            current: None,
            policy: spec.on_bad_record,
            max_document_bytes: spec.max_document_bytes,
            metadata: metadata.into(),
            skipped: SkippedRecords::default(),
            done: false,
        })
    }

    /// The metadata columns of every document this reader yields.
    pub fn metadata(&self) -> &[MetadataColumn] {
        &self.metadata
    }

    /// The bad records skipped so far (always none under [`BadRecordPolicy::Stop`]).
    pub fn skipped(&self) -> &SkippedRecords {
        &self.skipped
    }

    fn open_next(&mut self) -> Option<Result<FileReader, CorpusError>> {
        let file = self.files.get(self.next_file)?;
        self.next_file += 1;
        let source = &self.sources[file.source];
        let context = FileContext {
            path: file.path.clone(),
            name: file.name.clone(),
            max_document_bytes: self.max_document_bytes,
            metadata: self.metadata.clone(),
        };
        Some(match file.format {
            SourceFormat::Text => Ok(FileReader::Text(Some(context))),
            SourceFormat::Jsonl => JsonlFile::open(context, &source.text_field, &source.id_field)
                .map(FileReader::Jsonl),
            SourceFormat::Parquet => {
                parquet_file::ParquetFile::open(context, &source.text_field, &source.id_field)
                    .map(|reader| FileReader::Parquet(Box::new(reader)))
            }
        })
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Document, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(reader) = &mut self.current else {
                match self.open_next() {
                    None => self.done = true,
                    Some(Ok(reader)) => self.current = Some(reader),
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            match reader.next() {
                None => self.current = None,
                Some(Ok(document)) => return Some(Ok(document)),
                Some(Err(Fault::Bad(bad))) => match self.policy {
                    BadRecordPolicy::Skip => self.skipped.record(bad),
                    BadRecordPolicy::Stop => {
                        self.done = true;
                        return Some(Err(CorpusError::BadRecord(Box::new(bad))));
                    }
                },
                Some(Err(Fault::Fatal(e))) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for CorpusReader {}

#[cfg(test)]
mod tests;
