//! Documents of a corpus, and the reader of a single JSONL file.
//!
//! [`crate::sources::CorpusReader`] reads whole corpora (plain text, JSONL and Parquet,
//! files and folders). [`JsonlDocuments`] reads one JSONL file with one JSON object per
//! line: each line's text field (default `text`) is the document; its id field (default
//! `id`) is its stable identifier — when a line has none, the id is `{file name}:{line}`,
//! which stays the same as long as the file does. A line that is not valid UTF-8 or
//! JSON, or lacks the text field, is an error naming the file and line.

use std::path::Path;

use crate::{
    CorpusError,
    sources::{DEFAULT_MAX_DOCUMENT_BYTES, Fault, FileContext, JsonlFile},
};

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Stable identifier.
    pub id: String,
    /// Where the document came from: its file's path relative to the path of the source
    /// that names it, with forward slashes (for a source that is one file: the file's
    /// name).
    pub source: String,
    /// The text.
    pub text: String,
}

/// Which JSON fields hold a document's text and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlFields {
    /// The text field.
    pub text: String,
    /// The id field.
    pub id: String,
}

impl Default for JsonlFields {
    fn default() -> Self {
        Self {
            text: "text".into(),
            id: "id".into(),
        }
    }
}

/// Reads documents from a JSONL file, in file order, with the
/// [default document size limit](DEFAULT_MAX_DOCUMENT_BYTES).
///
/// A bad line is an `Err` ([`CorpusError::BadRecord`]) and reading may go on with the
/// next line; after an I/O error the iterator ends.
pub struct JsonlDocuments {
    file: Option<JsonlFile>,
}

impl JsonlDocuments {
    /// Opens `path`.
    pub fn open(path: &Path, fields: JsonlFields) -> Result<Self, CorpusError> {
        let context = FileContext {
            path: path.to_path_buf(),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
        };
        Ok(Self {
            file: Some(JsonlFile::open(context, &fields.text, &fields.id)?),
        })
    }
}

impl Iterator for JsonlDocuments {
    type Item = Result<Document, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.file.as_mut()?.next()? {
            Ok(document) => Some(Ok(document)),
            Err(Fault::Bad(bad)) => Some(Err(CorpusError::BadRecord(Box::new(bad)))),
            Err(Fault::Fatal(e)) => {
                self.file = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_with_stable_ids_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(
            &path,
            "{\"id\": \"a\", \"text\": \"one\"}\n\n{\"text\": \"two\"}\n{\"id\": 7, \"text\": \"\"}\n{oops\n{\"text\": \"after\"}\n",
        )
        .unwrap();
        let read: Vec<_> = JsonlDocuments::open(&path, JsonlFields::default())
            .unwrap()
            .collect();
        assert_eq!(read.len(), 5);
        let docs: Vec<_> = read[..3]
            .iter()
            .map(|d| d.as_ref().unwrap().clone())
            .collect();
        let document = |id: &str, text: &str| Document {
            id: id.into(),
            source: "c.jsonl".into(),
            text: text.into(),
        };
        assert_eq!(docs[0], document("a", "one"));
        assert_eq!(docs[1], document("c.jsonl:3", "two"));
        assert_eq!(docs[2], document("7", ""));
        let error = read[3].as_ref().unwrap_err().to_string();
        assert!(
            error.contains("c.jsonl") && error.contains("line 5"),
            "{error}"
        );
        assert_eq!(read[4].as_ref().unwrap(), &document("c.jsonl:6", "after"));
    }
}
