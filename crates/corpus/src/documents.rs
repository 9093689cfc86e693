//! Documents from a corpus file: JSONL with one JSON object per line.
//!
//! Each line's text field (default `text`) is the document; its id field (default `id`)
//! is its stable identifier — when a line has none, the id is `{file name}:{line}`, which
//! stays the same as long as the file does. A line that is not valid JSON, or lacks the
//! text field, is an error naming the file and line.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use crate::CorpusError;

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Stable identifier.
    pub id: String,
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

/// Reads documents from a JSONL file, in file order.
pub struct JsonlDocuments {
    path: PathBuf,
    name: String,
    fields: JsonlFields,
    lines: std::io::Lines<BufReader<File>>,
    line: usize,
}

impl JsonlDocuments {
    /// Opens `path`.
    pub fn open(path: &Path, fields: JsonlFields) -> Result<Self, CorpusError> {
        let file = File::open(path).map_err(|e| CorpusError::Read {
            path: path.to_path_buf(),
            line: None,
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fields,
            lines: BufReader::new(file).lines(),
            line: 0,
        })
    }

    fn error(&self, reason: impl Into<String>) -> CorpusError {
        CorpusError::Read {
            path: self.path.clone(),
            line: Some(self.line),
            reason: reason.into(),
        }
    }
}

impl Iterator for JsonlDocuments {
    type Item = Result<Document, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.line += 1;
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(self.error(e.to_string()))),
            };
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(&line) {
                Ok(value) => value,
                Err(e) => return Some(Err(self.error(format!("not valid JSON: {e}")))),
            };
            let Some(text) = value.get(&self.fields.text).and_then(|t| t.as_str()) else {
                return Some(Err(self.error(format!(
                    "no string field {:?} (choose the text field with --text-field)",
                    self.fields.text
                ))));
            };
            let id = match value.get(&self.fields.id) {
                Some(serde_json::Value::String(id)) => id.clone(),
                Some(serde_json::Value::Number(id)) => id.to_string(),
                _ => format!("{}:{}", self.name, self.line),
            };
            return Some(Ok(Document {
                id,
                text: text.to_string(),
            }));
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
            "{\"id\": \"a\", \"text\": \"one\"}\n\n{\"text\": \"two\"}\n{\"id\": 7, \"text\": \"\"}\n{oops\n",
        )
        .unwrap();
        let read: Vec<_> = JsonlDocuments::open(&path, JsonlFields::default())
            .unwrap()
            .collect();
        let docs: Vec<_> = read[..3]
            .iter()
            .map(|d| d.as_ref().unwrap().clone())
            .collect();
        assert_eq!(
            docs[0],
            Document {
                id: "a".into(),
                text: "one".into()
            }
        );
        assert_eq!(
            docs[1],
            Document {
                id: "c.jsonl:3".into(),
                text: "two".into()
            }
        );
        assert_eq!(
            docs[2],
            Document {
                id: "7".into(),
                text: String::new()
            }
        );
        let error = read[3].as_ref().unwrap_err().to_string();
        assert!(
            error.contains("c.jsonl") && error.contains("line 5"),
            "{error}"
        );
    }
}
