//! JSONL files: one JSON object per line is one document.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
};

use serde_json::Value;

use super::{Fault, FileContext, RecordLocation, utf8_position};
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
        Ok(self.context.document(id, text))
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
fn read_line(
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

#[cfg(test)]
mod tests {
    use super::*;

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
