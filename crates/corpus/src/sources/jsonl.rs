//! JSONL files: one JSON object per line is one document.
//!
//! [`JsonlDocuments`] reads one JSONL file on its own (the SAE trainer's input); whole
//! corpora go through [`super::CorpusReader`]. Each line's text field (default `text`) is
//! the document; its id field (default `id`) is its stable identifier — when a line has
//! none, the id is `{file name}:{line}`, which stays the same as long as the file does. A
//! line that is not valid UTF-8 or JSON, or lacks the text field, is an error naming the
//! file and line.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::Path,
};

use saeidx_format::metadata::MetadataValue;
use serde_json::Value;

use super::{DEFAULT_MAX_DOCUMENT_BYTES, Fault, FileContext, RecordLocation, utf8_position};
use crate::{CorpusError, documents::Document};

/// How many times `max_document_bytes` a line may be: room for JSON escapes and the
/// record's other fields, while memory stays bounded.
const LINE_LIMIT_FACTOR: u64 = 4;

/// Reads a JSONL file's documents, line by line, in bounded memory.
pub(crate) struct JsonlFile {
    context: FileContext,
    text_field: String,
    id_field: String,
    reader: BufReader<File>,
    line: u64,
    buffer: Vec<u8>,
}

impl JsonlFile {
    /// Opens the file.
    pub(crate) fn open(
        context: FileContext,
        text_field: &str,
        id_field: &str,
    ) -> Result<Self, CorpusError> {
        let file =
            File::open(&context.path).map_err(|e| context.fatal(format!("cannot open: {e}")))?;
        Ok(Self {
            context,
            text_field: text_field.into(),
            id_field: id_field.into(),
            reader: BufReader::with_capacity(1 << 16, file),
            line: 0,
            buffer: Vec::new(),
        })
    }

    /// The next document or bad record; `None` at the end of the file.
    pub(crate) fn next(&mut self) -> Option<Result<Document, Fault>> {
        let line_limit = self
            .context
            .max_document_bytes
            .saturating_mul(LINE_LIMIT_FACTOR);
        loop {
            let length = match read_line(&mut self.reader, &mut self.buffer, line_limit) {
                Ok(None) => return None,
                Ok(Some(length)) => length,
                Err(e) => {
                    return Some(Err(Fault::Fatal(CorpusError::Read {
                        path: self.context.path.clone(),
                        line: usize::try_from(self.line + 1).ok(),
                        reason: format!("cannot read: {e}"),
                    })));
                }
            };
            self.line += 1;
            let location = RecordLocation::Line(self.line);
            if length > line_limit {
                return Some(Err(self.context.bad(
                    location,
                    format!(
                        "the line is {length} bytes, over {LINE_LIMIT_FACTOR} × \
                         max_document_bytes ({line_limit})"
                    ),
                )));
            }
            let mut bytes = self.buffer.as_slice();
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            let text = match std::str::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    let (_, byte) = utf8_position(bytes, e.valid_up_to());
                    return Some(Err(self.context.bad(
                        location,
                        format!("invalid UTF-8 at byte {byte} of the line"),
                    )));
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(self.record(text, location));
        }
    }

    fn record(&self, line: &str, location: RecordLocation) -> Result<Document, Fault> {
        let bad = |reason: String| self.context.bad(location, reason);
        let value: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(bad(format!(
                "a JSON {}, not an object with a {:?} field",
                kind(&value),
                self.text_field
            )));
        };
        let text = match object.remove(&self.text_field) {
            Some(Value::String(text)) => text,
            Some(Value::Null) => return Err(bad(format!("{:?} is null", self.text_field))),
            Some(other) => {
                return Err(bad(format!(
                    "{:?} is a {}, not a string",
                    self.text_field,
                    kind(&other)
                )));
            }
            None => {
                let fields: Vec<_> = object.keys().map(|key| format!("{key:?}")).collect();
                return Err(bad(format!(
                    "no field {:?} (fields: {}); set text_field to the field that holds the text",
                    self.text_field,
                    if fields.is_empty() {
                        "none".into()
                    } else {
                        fields.join(", ")
                    }
                )));
            }
        };
        self.context.check_size(location, text.len() as u64)?;
        let id = match object.get(&self.id_field) {
            Some(Value::String(id)) => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => format!("{}:{}", self.context.name, self.line),
        };
        let mut metadata = Vec::with_capacity(self.context.metadata.len());
        for column in self.context.metadata.iter() {
            let value = MetadataValue::from_json(column.kind, object.get(&column.name))
                .map_err(|problem| bad(FileContext::metadata_reason(&id, column, &problem)))?;
            metadata.push(value);
        }
        Ok(self.context.document_with(id, text, metadata))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads one line into `buffer`, without its `\n` or a `\r` before it. Returns `None` at
/// the end of the input, otherwise the line's length; when that is over `limit`, the
/// rest of the line was skipped rather than stored, and `buffer` is empty.
pub(super) fn read_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    limit: u64,
) -> io::Result<Option<u64>> {
    buffer.clear();
    let mut length = 0u64;
    let mut started = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        started = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        length += chunk.len() as u64;
        // One byte of room for a `\r` before the `\n`.
        if length <= limit.saturating_add(1) {
            buffer.extend_from_slice(chunk);
        } else {
            buffer.clear();
        }
        let used = newline.map_or(available.len(), |newline| newline + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !started {
        return Ok(None);
    }
    if buffer.last() == Some(&b'\r') {
        buffer.pop();
        length -= 1;
    }
    if length > limit {
        buffer.clear();
    }
    Ok(Some(length))
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
            metadata: Vec::new().into(),
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
            metadata: Vec::new(),
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

    #[test]
    fn reads_lines_as_bytes_with_a_limit() {
        let input = b"one\r\n\ntoo long\nlast";
        let mut reader = BufReader::with_capacity(2, &input[..]);
        let mut buffer = Vec::new();
        let mut lines = Vec::new();
        while let Some(length) = read_line(&mut reader, &mut buffer, 4).unwrap() {
            lines.push((length, String::from_utf8(buffer.clone()).unwrap()));
        }
        assert_eq!(
            lines,
            [
                (3, "one".to_string()),
                (0, String::new()),
                (8, String::new()),
                (4, "last".to_string())
            ]
        );
    }
}
