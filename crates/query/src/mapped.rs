//! A memory-mapped query file: an Arrow IPC file decoded zero-copy by arrow-rs, whose
//! bytes are checked against the query manifest's xxh3 chunk checksums before use.
//!
//! At open, the chunks holding the file's framing (magic, footer, record-batch
//! metadata) are verified before arrow-rs parses them; data chunks are verified the
//! first time a query touches them ([`MappedFile::ensure`]) and remembered in a bitset,
//! so a warm query pays nothing and a damaged chunk is always an error.
//!
//! Checksums say the bytes are the ones the builder wrote, not that they make sense:
//! before arrow-rs decodes the record batch, its message is checked against the file's
//! schema (one node per column with the manifest's row count, no nulls, no compression,
//! every buffer inside the message body), so inconsistent framing is an error rather
//! than a panic inside arrow-rs. The map is registered with [`crate::guard`], so a file
//! truncated while mapped is reported ([`MappedFile::check_unchanged`]) rather than
//! killing the process.
//!
//! Each file also remembers the newest question ticket ([`crate::reads`]) under which a
//! thread read it, so that an index of segments checks after an answer only the files
//! that answer read ([`MappedFile::read_since`]).

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::{convert::try_fb_to_schema, reader::FileDecoder, root_as_footer};
use arrow_schema::{DataType, Schema, SchemaRef};
use twox_hash::XxHash3_64;

use crate::{
    error::QueryError,
    guard::{FaultProbe, GuardedMap},
    layout::{CHUNK_BYTES, QueryFile, QueryFileRecord},
};

/// Arrow IPC file magic, at both ends of the file.
const ARROW_MAGIC: &[u8; 6] = b"ARROW1";

/// One opened query file.
pub(crate) struct MappedFile {
    path: PathBuf,
    bytes: Buffer,
    expected: Vec<u64>,
    verified: Vec<AtomicU64>,
    /// The open file, to notice it being changed in place.
    handle: File,
    /// Its size and modification time when it was mapped.
    opened: (u64, Option<SystemTime>),
    /// Whether a read past its end was answered with zeros.
    probe: FaultProbe,
    /// The newest question ticket under which it was read ([`crate::reads`]).
    last_read: AtomicU64,
}

impl MappedFile {
    /// Maps `dir/record.name`, checks it against `record` and decodes its one record
    /// batch, which must have `file`'s schema in query format `version` and
    /// `record.rows` rows.
    pub(crate) fn open(
        dir: &Path,
        file: QueryFile,
        record: &QueryFileRecord,
        version: u32,
    ) -> Result<(Arc<MappedFile>, RecordBatch), QueryError> {
        let mapped = Self::open_raw(dir, file, record)?;
        let batch = mapped.decode(file.schema_of(version), record.rows)?;
        Ok((mapped, batch))
    }

    /// Maps `dir/record.name` and checks its size and checksum list against `record`
    /// (a block file, whose reader checks its framing).
    pub(crate) fn open_raw(
        dir: &Path,
        file: QueryFile,
        record: &QueryFileRecord,
    ) -> Result<Arc<MappedFile>, QueryError> {
        let path = dir.join(file.name());
        let corrupt = |reason: String| QueryError::corrupt(&path, reason);
        if record.name != file.name() {
            return Err(corrupt(format!(
                "the manifest lists {:?} where {:?} belongs",
                record.name,
                file.name()
            )));
        }
        let handle = File::open(&path).map_err(QueryError::io(&path))?;
        let len = handle.metadata().map_err(QueryError::io(&path))?.len();
        if len != record.bytes {
            return Err(corrupt(format!(
                "{len} bytes where the manifest records {} (truncated or replaced)",
                record.bytes
            )));
        }
        let chunks = len.div_ceil(CHUNK_BYTES) as usize;
        if record.chunks_xxh3.len() != chunks {
            return Err(corrupt(format!(
                "the manifest has {} chunk checksums for {chunks} chunks",
                record.chunks_xxh3.len()
            )));
        }
        let expected = record
            .chunks_xxh3
            .iter()
            .map(|hex| u64::from_str_radix(hex, 16))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| corrupt("the manifest's chunk checksums are not hex".into()))?;
        let modified = handle.metadata().ok().and_then(|m| m.modified().ok());
        // SAFETY: index files are published by an atomic rename and never rewritten in
        // place by saeidx. Should someone else truncate or rewrite one while it is
        // mapped, reads past the end are answered with zeros by the registered SIGBUS
        // handler and reported by `check_unchanged`, every offset read from the map is
        // bounds-checked, and every byte is checked against its chunk checksum first.
        let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(QueryError::io(&path))?;
        let map = GuardedMap::new(map);
        let probe = map.probe();
        let mapped = Arc::new(MappedFile {
            path: path.clone(),
            bytes: Buffer::from(bytes::Bytes::from_owner(map)),
            expected,
            verified: (0..chunks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            handle,
            opened: (len, modified),
            probe,
            last_read: AtomicU64::new(0),
        });
        Ok(mapped)
    }

    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> QueryError {
        QueryError::corrupt(&self.path, reason)
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes `start..end` of the file, their chunks verified.
    pub(crate) fn bytes(&self, start: usize, end: usize) -> Result<&[u8], QueryError> {
        if start > end || end > self.bytes.len() {
            return Err(self.corrupt(format!(
                "bytes {start}..{end} are outside the file ({} bytes)",
                self.bytes.len()
            )));
        }
        self.ensure_bytes(start, end)?;
        Ok(&self.bytes[start..end])
    }

    /// Whether this thread or another read the file under question ticket `ticket` or
    /// a newer one ([`crate::reads`]).
    pub(crate) fn read_since(&self, ticket: u64) -> bool {
        self.last_read.load(Ordering::Acquire) >= ticket
    }

    /// An error if the file was truncated or rewritten since it was mapped (answers
    /// computed from it since then may have read zeros or other bytes).
    pub(crate) fn check_unchanged(&self) -> Result<(), QueryError> {
        let changed = |reason: String| QueryError::Changed {
            path: self.path.clone(),
            reason,
        };
        if self.probe.faulted() {
            return Err(changed(
                "a read past its end: it was truncated while mapped".into(),
            ));
        }
        let meta = self
            .handle
            .metadata()
            .map_err(|e| changed(format!("cannot check it: {e}")))?;
        if meta.len() != self.opened.0 {
            return Err(changed(format!(
                "{} bytes where it had {} when opened",
                meta.len(),
                self.opened.0
            )));
        }
        if meta.modified().ok() != self.opened.1 {
            return Err(changed("it was rewritten in place".into()));
        }
        Ok(())
    }

    /// Parses the (verified) framing and decodes the single record batch.
    fn decode(&self, expected_schema: SchemaRef, rows: u64) -> Result<RecordBatch, QueryError> {
        let len = self.bytes.len();
        if len < 8 + 10 {
            return Err(self.corrupt("too short to be an Arrow IPC file"));
        }
        self.ensure_bytes(0, 8)?;
        self.ensure_bytes(len - 10, len)?;
        if &self.bytes[..6] != ARROW_MAGIC {
            return Err(self.corrupt("no Arrow IPC magic at the start"));
        }
        let mut trailer = [0u8; 10];
        trailer.copy_from_slice(&self.bytes[len - 10..]);
        let footer_len = arrow_ipc::reader::read_footer_length(trailer)
            .map_err(|e| self.corrupt(e.to_string()))?;
        let footer_start = (len - 10)
            .checked_sub(footer_len)
            .filter(|start| *start >= 8)
            .ok_or_else(|| self.corrupt("footer length past the start of the file"))?;
        self.ensure_bytes(footer_start, len - 10)?;
        let footer = root_as_footer(&self.bytes[footer_start..len - 10])
            .map_err(|e| self.corrupt(format!("unreadable footer: {e}")))?;
        let schema = footer
            .schema()
            .ok_or_else(|| self.corrupt("no schema in the footer"))
            .and_then(|schema| {
                try_fb_to_schema(schema).map_err(|e| self.corrupt(format!("bad schema: {e}")))
            })?;
        if schema.fields() != expected_schema.fields() {
            return Err(self.corrupt(format!(
                "schema {:?} is not the {} schema",
                schema.fields(),
                self.path.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
        if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
            return Err(self.corrupt("unexpected dictionaries"));
        }
        let blocks = footer
            .recordBatches()
            .ok_or_else(|| self.corrupt("no record batches"))?;
        if blocks.len() != 1 {
            return Err(self.corrupt(format!("{} record batches where 1 belongs", blocks.len())));
        }
        let block = blocks.get(0);
        let offset = usize::try_from(block.offset()).ok();
        let meta = usize::try_from(block.metaDataLength()).ok();
        let body = usize::try_from(block.bodyLength()).ok();
        let (offset, meta, body) = match (offset, meta, body) {
            (Some(o), Some(m), Some(b)) => (o, m, b),
            _ => return Err(self.corrupt("negative record batch block")),
        };
        let end = offset
            .checked_add(meta)
            .and_then(|e| e.checked_add(body))
            .filter(|end| offset >= 8 && *end <= footer_start)
            .ok_or_else(|| self.corrupt("record batch block outside the file"))?;
        self.ensure_bytes(offset, offset + meta)?;
        check_batch_message(
            &self.bytes[offset..offset + meta],
            body,
            &expected_schema,
            rows,
        )
        .map_err(|reason| self.corrupt(format!("bad record batch message: {reason}")))?;
        let decoder =
            FileDecoder::new(Arc::new(schema), footer.version()).with_require_alignment(true);
        let batch = decoder
            .read_record_batch(block, &self.bytes.slice_with_length(offset, end - offset))
            .map_err(|e| self.corrupt(format!("undecodable record batch: {e}")))?
            .ok_or_else(|| self.corrupt("empty record batch message"))?;
        if batch.num_rows() as u64 != rows {
            return Err(self.corrupt(format!(
                "{} rows where the manifest records {rows}",
                batch.num_rows()
            )));
        }
        // Zero-copy: every buffer must lie inside this map (so `ensure` covers it).
        let base = self.bytes.as_ptr() as usize;
        for column in batch.columns() {
            let data = column.to_data();
            let mut all = vec![data];
            while let Some(data) = all.pop() {
                for buffer in data.buffers() {
                    let start = buffer.as_ptr() as usize;
                    if buffer.is_empty() {
                        continue;
                    }
                    if start < base || start + buffer.len() > base + len {
                        return Err(self.corrupt("a column is not stored in place"));
                    }
                }
                if data.nulls().is_some() {
                    return Err(self.corrupt("a column has nulls"));
                }
                all.extend(data.child_data().iter().cloned());
            }
        }
        Ok(batch)
    }

    /// Verifies (once) every chunk overlapping bytes `start..end` of the file.
    pub(crate) fn ensure_bytes(&self, start: usize, end: usize) -> Result<(), QueryError> {
        if start >= end {
            return Ok(());
        }
        let ticket = crate::reads::ticket();
        if self.last_read.load(Ordering::Relaxed) < ticket {
            self.last_read.fetch_max(ticket, Ordering::AcqRel);
        }
        let len = self.bytes.len();
        if end > len {
            return Err(self.corrupt(format!("bytes {start}..{end} past the end ({len})")));
        }
        let chunk = CHUNK_BYTES as usize;
        for index in start / chunk..=(end - 1) / chunk {
            let (word, bit) = (index / 64, 1u64 << (index % 64));
            if self.verified[word].load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let bytes = &self.bytes[index * chunk..((index + 1) * chunk).min(len)];
            if XxHash3_64::oneshot(bytes) != self.expected[index] {
                return Err(self.corrupt(format!(
                    "chunk {index} (bytes {}..{}) does not match its checksum",
                    index * chunk,
                    (index * chunk + bytes.len())
                )));
            }
            self.verified[word].fetch_or(bit, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Verifies the chunks under `slice`, which must point into this file.
    pub(crate) fn ensure<T>(&self, slice: &[T]) -> Result<(), QueryError> {
        let base = self.bytes.as_ptr() as usize;
        let start = slice.as_ptr() as usize;
        let bytes = size_of_val(slice);
        if slice.is_empty() {
            return Ok(());
        }
        if start < base {
            return Err(self.corrupt("a slice outside the file"));
        }
        self.ensure_bytes(start - base, start - base + bytes)
    }

    /// Verifies every chunk of the file (used by `verify`).
    pub(crate) fn ensure_all(&self) -> Result<(), QueryError> {
        self.ensure_bytes(0, self.bytes.len())
    }
}

/// Checks a record batch message (`meta`: the encapsulated message, then the body of
/// `body` bytes) against `schema` and `rows` before arrow-rs decodes it: arrow-rs
/// slices buffers as the message says and panics on a slice past the body.
fn check_batch_message(meta: &[u8], body: usize, schema: &Schema, rows: u64) -> Result<(), String> {
    let flatbuffer = match meta {
        [0xFF, 0xFF, 0xFF, 0xFF, a, b, c, d, rest @ ..] => {
            let len = i32::from_le_bytes([*a, *b, *c, *d]);
            usize::try_from(len)
                .ok()
                .and_then(|len| rest.get(..len))
                .ok_or("message length outside its block")?
        }
        _ => return Err("no message continuation marker".into()),
    };
    let message = arrow_ipc::root_as_message(flatbuffer).map_err(|e| e.to_string())?;
    let batch = message
        .header_as_record_batch()
        .ok_or("not a record batch message")?;
    if batch.compression().is_some() {
        return Err("compressed buffers".into());
    }
    if u64::try_from(batch.length()).ok() != Some(rows) {
        return Err(format!("{} rows", batch.length()));
    }
    let mut nodes = Vec::new();
    let mut widths = Vec::new();
    for field in schema.fields() {
        expected_layout(field.data_type(), rows, &mut nodes, &mut widths)?;
    }
    let found = batch.nodes().ok_or("no field nodes")?;
    if found.len() != nodes.len() {
        return Err(format!(
            "{} field nodes where {} belong",
            found.len(),
            nodes.len()
        ));
    }
    for (node, expected) in found.iter().zip(&nodes) {
        if u64::try_from(node.length()).ok() != Some(*expected) || node.null_count() != 0 {
            return Err(format!(
                "a field node of length {} with {} nulls where {expected} rows without nulls belong",
                node.length(),
                node.null_count()
            ));
        }
    }
    let found = batch.buffers().ok_or("no buffers")?;
    if found.len() != widths.len() {
        return Err(format!(
            "{} buffers where {} belong",
            found.len(),
            widths.len()
        ));
    }
    for (buffer, width) in found.iter().zip(widths) {
        let span = usize::try_from(buffer.offset())
            .ok()
            .zip(usize::try_from(buffer.length()).ok());
        let inside = span
            .and_then(|(offset, length)| offset.checked_add(length))
            .is_some_and(|end| end <= body);
        if !inside {
            return Err(format!(
                "a buffer at {}+{} outside the {body}-byte body",
                buffer.offset(),
                buffer.length()
            ));
        }
        // arrow-rs asserts (panics) that a typed buffer holds whole values.
        if span.is_some_and(|(_, length)| length % width != 0) {
            return Err(format!(
                "a buffer of {} bytes for values of {width} bytes",
                buffer.length()
            ));
        }
    }
    if batch
        .variadicBufferCounts()
        .is_some_and(|counts| !counts.is_empty())
    {
        return Err("variadic buffers".into());
    }
    Ok(())
}

/// The field nodes (their lengths) and buffers (the byte width of their values) a
/// column of `data_type` with `rows` rows has in an IPC message, appended to `nodes`
/// and `widths`. Each column starts with its validity bitmap (bytes, empty here).
fn expected_layout(
    data_type: &DataType,
    rows: u64,
    nodes: &mut Vec<u64>,
    widths: &mut Vec<usize>,
) -> Result<(), String> {
    nodes.push(rows);
    widths.push(1);
    match data_type {
        DataType::Utf8 | DataType::Binary => widths.extend([4, 1]),
        DataType::LargeBinary => widths.extend([8, 1]),
        DataType::FixedSizeList(child, size) => {
            let size = u64::try_from(*size).map_err(|_| "negative list size")?;
            let values = rows.checked_mul(size).ok_or("list values overflow")?;
            expected_layout(child.data_type(), values, nodes, widths)?;
        }
        t if t.is_primitive() => widths.push(t.primitive_width().unwrap_or(1)),
        t => return Err(format!("unexpected column type {t}")),
    }
    Ok(())
}
