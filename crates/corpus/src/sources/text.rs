//! Plain-text files: one file is one document, its id the file's relative name.

use std::{fs::File, io::Read};

use super::{Fault, FileContext, RecordLocation, utf8_position};
use crate::documents::Document;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads the file as one document (a leading UTF-8 byte-order mark is dropped).
pub(crate) fn read(context: &FileContext) -> Result<Document, Fault> {
    let file = File::open(&context.path)
        .map_err(|e| Fault::Fatal(context.fatal(format!("cannot open: {e}"))))?;
    let length = file
        .metadata()
        .map_err(|e| Fault::Fatal(context.fatal(format!("cannot read: {e}"))))?
        .len();
    context.check_size(RecordLocation::File, length)?;
    // The file may have grown since: read at most one byte over the limit.
    let mut bytes = Vec::new();
    file.take(context.max_document_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Fault::Fatal(context.fatal(format!("cannot read: {e}"))))?;
    context.check_size(RecordLocation::File, bytes.len() as u64)?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, byte) = utf8_position(e.as_bytes(), e.utf8_error().valid_up_to());
        context.bad(
            RecordLocation::Line(line),
            format!("invalid UTF-8 at byte {byte} of the line"),
        )
    })?;
    Ok(context.document(context.name.clone(), text))
}
