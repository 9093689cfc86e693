//! The version-2 block files of `query/` (`tokens.bin`, `codes.bin`, `postings.bin`;
//! described in `crates/query/FORMAT.md`): their writers, which stream, and their
//! readers, which bounds-check every offset and every bit they read.
//!
//! Every block file is: an 8-byte magic, the blocks, a directory of u64 byte offsets
//! (one per block, then the end of the last), then a 64-byte trailer of seven u64
//! fields and the magic again. Writers hold one block in memory: the directory (and
//! the postings' block maxima and order) go to scratch files beside the output, copied
//! in at the end, so a build's memory does not grow with the corpus.

use std::{
    cmp::Reverse,
    fs::File,
    hash::Hasher,
    io::{BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use twox_hash::XxHash3_64;

use crate::{
    codec::{BitReader, BitWriter, VALUE_CODE_BITS, bits_for, code_value, rice_parameter},
    error::QueryError,
    layout::{CHUNK_BYTES, QueryFile, QueryFileRecord},
    mapped::MappedFile,
    restrict::DocSet,
};

/// Postings per block of `postings.bin`.
pub(crate) const POSTINGS_BLOCK: usize = 128;
/// Tokens per group of `codes.bin`.
pub(crate) const CODES_GROUP: usize = 8;
/// Bits of a `codes.bin` group's header (where its first token's codes start).
pub(crate) const CODES_HEADER_BITS: u64 = VALUE_CODE_BITS as u64 + 6 + 5 + 6;
/// Bytes of a block file's trailer.
const TRAILER_BYTES: u64 = 64;
/// Bits of the token id, byte offset and length fields' widths in `tokens.bin`.
const FLAG_BITS: u32 = 2;

/// The magic of a block file (at its start and end), whose directory is packed.
fn magic(file: QueryFile) -> &'static [u8; 8] {
    match file {
        QueryFile::Tokens => b"SXQTOK03",
        QueryFile::Codes => b"SXQCOD03",
        QueryFile::Occurrences => b"SXQOCC04",
        _ => b"SXQPST03",
    }
}

/// The magic of a block file of query format 5 or before, whose directory is u64s.
fn wide_magic(file: QueryFile) -> &'static [u8; 8] {
    match file {
        QueryFile::Tokens => b"SXQTOK02",
        QueryFile::Codes => b"SXQCOD02",
        QueryFile::Occurrences => b"SXQOCC03",
        _ => b"SXQPST02",
    }
}

/// Directory entries per u64 base of a packed directory.
const DIRECTORY_GROUP: u64 = 64;
/// The widest entry of a packed directory, in bits.
const MAX_DIRECTORY_WIDTH: u64 = 56;

/// A writer that checksums what passes through it in [`CHUNK_BYTES`] chunks.
pub(crate) struct ChunkHashing<W: Write> {
    inner: W,
    hasher: XxHash3_64,
    in_chunk: u64,
    bytes: u64,
    chunks: Vec<String>,
}

impl<W: Write> ChunkHashing<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: XxHash3_64::new(),
            in_chunk: 0,
            bytes: 0,
            chunks: Vec::new(),
        }
    }

    fn close_chunk(&mut self) {
        let hasher = std::mem::replace(&mut self.hasher, XxHash3_64::new());
        self.chunks.push(format!("{:016x}", hasher.finish()));
        self.in_chunk = 0;
    }

    /// Bytes written so far.
    pub(crate) fn position(&self) -> u64 {
        self.bytes
    }

    /// Flushes, closes the last chunk; returns the inner writer, bytes and checksums.
    pub(crate) fn finish(mut self) -> std::io::Result<(W, u64, Vec<String>)> {
        self.inner.flush()?;
        if self.in_chunk > 0 {
            self.close_chunk();
        }
        Ok((self.inner, self.bytes, self.chunks))
    }
}

impl<W: Write> Write for ChunkHashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = (CHUNK_BYTES - self.in_chunk) as usize;
        let n = self.inner.write(&buf[..buf.len().min(room)])?;
        self.hasher.write(&buf[..n]);
        self.in_chunk += n as u64;
        self.bytes += n as u64;
        if self.in_chunk == CHUNK_BYTES {
            self.close_chunk();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes appended to a scratch file instead of held in memory (what grows with the
/// corpus: a block file's directory, the postings' block maxima and order), copied into
/// the output once at the end.
struct Spill {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Spill {
    fn create(path: PathBuf) -> Result<Self, QueryError> {
        let file = File::create(&path).map_err(QueryError::io(&path))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), QueryError> {
        self.out
            .write_all(bytes)
            .map_err(QueryError::io(&self.path))
    }

    /// Writes the u64s that were put (ascending offsets) into `to` as a packed
    /// directory: per [`DIRECTORY_GROUP`] entries its first (u64 LE), then each entry
    /// less its group's first in `w` bits, padded to a byte, then `w` (u64 LE). Reads
    /// the scratch file three times instead of holding it; removes it.
    fn pack_into(mut self, to: &mut impl Write) -> Result<(), QueryError> {
        let path = self.path.clone();
        let io = QueryError::io(&path);
        self.out.flush().map_err(QueryError::io(&path))?;
        let each = |f: &mut dyn FnMut(u64, u64) -> Result<(), QueryError>| {
            let file = File::open(&path).map_err(QueryError::io(&path))?;
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let mut word = [0u8; 8];
            let mut i = 0u64;
            let mut first = 0u64;
            loop {
                match std::io::Read::read_exact(&mut reader, &mut word) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(QueryError::io(&path)(e)),
                }
                let offset = u64::from_le_bytes(word);
                if i.is_multiple_of(DIRECTORY_GROUP) {
                    first = offset;
                }
                f(offset, offset - first)?;
                i += 1;
            }
        };
        let mut widest = 0u64;
        each(&mut |_, rel| {
            widest = widest.max(rel);
            Ok(())
        })?;
        let width = bits_for(widest);
        let mut i = 0u64;
        each(&mut |offset, _| {
            if i.is_multiple_of(DIRECTORY_GROUP) {
                to.write_all(&offset.to_le_bytes())
                    .map_err(QueryError::io(&path))?;
            }
            i += 1;
            Ok(())
        })?;
        let mut bits = BitWriter::default();
        each(&mut |_, rel| {
            bits.put(rel, width);
            if bits.position() >= 1 << 19 {
                to.write_all(&bits.take_bytes())
                    .map_err(QueryError::io(&path))?;
            }
            Ok(())
        })?;
        to.write_all(&bits.finish())
            .map_err(QueryError::io(&path))?;
        to.write_all(&u64::from(width).to_le_bytes()).map_err(io)?;
        drop(self.out);
        std::fs::remove_file(&path).map_err(QueryError::io(&path))
    }

    /// Copies what was put into `to`, then removes the scratch file.
    fn copy_into(self, to: &mut impl Write) -> Result<(), QueryError> {
        let io = QueryError::io(&self.path);
        self.out
            .into_inner()
            .map_err(|e| QueryError::io(&self.path)(e.into_error()))?;
        let file = File::open(&self.path).map_err(QueryError::io(&self.path))?;
        std::io::copy(&mut BufReader::with_capacity(1 << 16, file), to).map_err(io)?;
        std::fs::remove_file(&self.path).map_err(QueryError::io(&self.path))
    }
}

/// A block file being written: magic, blocks, then (at [`BlockFileWriter::finish`]) the
/// directory and the trailer.
pub(crate) struct BlockFileWriter {
    path: PathBuf,
    file: QueryFile,
    out: ChunkHashing<BufWriter<File>>,
    offsets: Spill,
}

impl BlockFileWriter {
    pub(crate) fn create(dir: &Path, file: QueryFile) -> Result<Self, QueryError> {
        let path = dir.join(file.name());
        let handle = File::create(&path).map_err(QueryError::io(&path))?;
        let mut out = ChunkHashing::new(BufWriter::with_capacity(1 << 20, handle));
        out.write_all(magic(file)).map_err(QueryError::io(&path))?;
        Ok(Self {
            offsets: Spill::create(dir.join(format!(".{}.directory", file.name())))?,
            path,
            file,
            out,
        })
    }

    fn block(&mut self, bytes: &[u8]) -> Result<(), QueryError> {
        self.start_block()?;
        self.append(bytes)
    }

    /// Starts the next block (its bytes follow with [`Self::append`]).
    pub(crate) fn start_block(&mut self) -> Result<(), QueryError> {
        self.offsets.put(&self.out.position().to_le_bytes())
    }

    /// Appends `bytes` to the current block.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), QueryError> {
        self.out
            .write_all(bytes)
            .map_err(QueryError::io(&self.path))
    }

    /// A block of what was put into `spill`.
    fn spilled_block(&mut self, spill: Spill) -> Result<(), QueryError> {
        self.offsets.put(&self.out.position().to_le_bytes())?;
        spill.copy_into(&mut self.out)
    }

    /// Writes the directory and trailer, fsyncs, and describes the file (`rows` rows).
    pub(crate) fn finish(
        mut self,
        fields: [u64; 7],
        rows: u64,
    ) -> Result<QueryFileRecord, QueryError> {
        let path = self.path.clone();
        let io = |e: std::io::Error| QueryError::io(&path)(e);
        self.offsets.put(&self.out.position().to_le_bytes())?;
        self.offsets.pack_into(&mut self.out)?;
        let mut tail = Vec::with_capacity(TRAILER_BYTES as usize);
        for field in fields {
            tail.extend_from_slice(&field.to_le_bytes());
        }
        tail.extend_from_slice(magic(self.file));
        self.out.write_all(&tail).map_err(io)?;
        let (buffered, bytes, chunks) = self.out.finish().map_err(io)?;
        let handle = buffered.into_inner().map_err(|e| io(e.into_error()))?;
        handle.sync_all().map_err(io)?;
        Ok(QueryFileRecord {
            name: self.file.name().into(),
            bytes,
            rows,
            chunks_xxh3: chunks,
        })
    }
}

/// One token's entry of `tokens.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TokenEntry {
    /// The token id.
    pub(crate) token: u32,
    /// Byte range in the document's text.
    pub(crate) start: u32,
    /// Its end.
    pub(crate) end: u32,
    /// Flags (special, sink).
    pub(crate) flags: u8,
}

/// Bit widths of the fields of a `tokens.bin` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenWidths {
    token: u32,
    start: u32,
    length: u32,
}

/// Bits of a `tokens.bin` block header: the three field widths, 6 bits each.
const TOKEN_HEADER_BITS: u32 = 18;

impl TokenWidths {
    /// Widths that hold every entry of `entries`.
    fn of(entries: &[TokenEntry]) -> Self {
        let (mut token, mut start, mut length) = (0u32, 0u32, 0u32);
        for entry in entries {
            token = token.max(entry.token);
            start = start.max(entry.start);
            length = length.max(entry.end - entry.start);
        }
        Self {
            token: bits_for(u64::from(token)),
            start: bits_for(u64::from(start)),
            length: bits_for(u64::from(length)),
        }
    }

    fn record(self) -> u32 {
        self.token + self.start + self.length + FLAG_BITS
    }
}

/// Tokens per block of `tokens.bin`.
const TOKENS_BLOCK: usize = 4096;

/// Streams `tokens.bin`: blocks of [`TOKENS_BLOCK`] tokens, each the widths of its
/// fields, then one fixed-width bit record per token (token id, start, length, flags).
pub(crate) struct TokensWriter {
    writer: BlockFileWriter,
    block: Vec<TokenEntry>,
    tokens: u64,
}

impl TokensWriter {
    pub(crate) fn create(dir: &Path) -> Result<Self, QueryError> {
        Ok(Self {
            writer: BlockFileWriter::create(dir, QueryFile::Tokens)?,
            block: Vec::with_capacity(TOKENS_BLOCK),
            tokens: 0,
        })
    }

    /// Adds the next token (its end at or after its start).
    pub(crate) fn token(&mut self, entry: TokenEntry) -> Result<(), QueryError> {
        self.block.push(entry);
        self.tokens += 1;
        if self.block.len() == TOKENS_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), QueryError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let widths = TokenWidths::of(&self.block);
        let mut bits = BitWriter::default();
        bits.put(u64::from(widths.token), 6);
        bits.put(u64::from(widths.start), 6);
        bits.put(u64::from(widths.length), 6);
        for entry in &self.block {
            bits.put(u64::from(entry.token), widths.token);
            bits.put(u64::from(entry.start), widths.start);
            bits.put(u64::from(entry.end - entry.start), widths.length);
            bits.put(u64::from(entry.flags), FLAG_BITS);
        }
        self.writer.block(&bits.finish())?;
        self.block.clear();
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<QueryFileRecord, QueryError> {
        self.flush_block()?;
        let fields = [self.tokens, TOKENS_BLOCK as u64, 0, 0, 0, 0, 0];
        self.writer.finish(fields, self.tokens)
    }
}

/// Streams `codes.bin`: tokens in order, each with its codes (any order), grouped by
/// [`CODES_GROUP`] tokens.
pub(crate) struct CodesWriter {
    writer: BlockFileWriter,
    group: Vec<Vec<(u32, u32)>>,
    /// The bit offset in its group of each token written to the file and not yet taken.
    offsets: Vec<u64>,
    tokens: u64,
    nonzeros: u64,
    d_sae: u64,
}

impl CodesWriter {
    pub(crate) fn create(dir: &Path, d_sae: usize) -> Result<Self, QueryError> {
        Ok(Self {
            writer: BlockFileWriter::create(dir, QueryFile::Codes)?,
            group: Vec::with_capacity(CODES_GROUP),
            offsets: Vec::with_capacity(CODES_GROUP),
            tokens: 0,
            nonzeros: 0,
            d_sae: d_sae as u64,
        })
    }

    /// Adds the next token's codes: `(feature, value code)` pairs.
    pub(crate) fn token(&mut self, mut codes: Vec<(u32, u32)>) -> Result<(), QueryError> {
        codes.sort_unstable_by_key(|(feature, _)| *feature);
        self.tokens += 1;
        self.nonzeros += codes.len() as u64;
        self.group.push(codes);
        if self.group.len() == CODES_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    /// The bit offsets in their groups (where their count field starts) of the tokens
    /// written to the file since the last call, in token order.
    pub(crate) fn take_offsets(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.offsets)
    }

    /// Writes the last, partial group (before [`Self::take_offsets`] and `finish`).
    pub(crate) fn flush(&mut self) -> Result<(), QueryError> {
        self.flush_group()
    }

    fn flush_group(&mut self) -> Result<(), QueryError> {
        if self.group.is_empty() {
            return Ok(());
        }
        let all = || self.group.iter().flatten();
        let vmin = all().map(|(_, v)| *v).min().unwrap_or(0);
        let vmax = all().map(|(_, v)| *v).max().unwrap_or(0);
        let value_width = bits_for(u64::from(vmax - vmin));
        let gaps = self.group.iter().flat_map(|codes| feature_gaps(codes));
        let k = rice_parameter(gaps);
        let count_width = bits_for(self.group.iter().map(Vec::len).max().unwrap_or(0) as u64);
        let mut bits = BitWriter::default();
        bits.put(u64::from(vmin), VALUE_CODE_BITS);
        bits.put(u64::from(value_width), 6);
        bits.put(u64::from(k), 5);
        bits.put(u64::from(count_width), 6);
        for codes in &self.group {
            self.offsets.push(bits.position());
            bits.put(codes.len() as u64, count_width);
            for gap in feature_gaps(codes) {
                bits.put_rice(gap, k);
            }
            for (_, value) in codes {
                bits.put(u64::from(value - vmin), value_width);
            }
        }
        self.writer.block(&bits.finish())?;
        self.group.clear();
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<QueryFileRecord, QueryError> {
        self.flush_group()?;
        let groups = self.tokens.div_ceil(CODES_GROUP as u64);
        let fields = [
            self.tokens,
            self.nonzeros,
            groups,
            CODES_GROUP as u64,
            self.d_sae,
            0,
            0,
        ];
        self.writer.finish(fields, self.nonzeros)
    }
}

/// Gaps between ascending features: the first feature, then each difference less one.
fn feature_gaps(codes: &[(u32, u32)]) -> impl Iterator<Item = u64> + Clone + '_ {
    let mut previous: Option<u32> = None;
    codes.iter().map(move |(feature, _)| {
        let gap = match previous {
            None => u64::from(*feature),
            Some(before) => u64::from(feature - before - 1),
        };
        previous = Some(*feature);
        gap
    })
}

/// Streams `postings.bin`: features in order, each with its postings in token order,
/// cut into blocks of [`POSTINGS_BLOCK`], each block with its largest value.
pub(crate) struct PostingsWriter {
    writer: BlockFileWriter,
    /// Every block's largest value code (u32 words).
    maxima: Spill,
    /// Each feature's blocks (numbered from its first), largest maximum first (u32 words).
    order: Spill,
    /// The current feature's block maxima.
    feature_maxima: Vec<u32>,
    /// The current feature's postings not yet in a block.
    pending: Vec<(u64, u32)>,
    blocks: u64,
    features: u64,
    postings: u64,
}

impl PostingsWriter {
    pub(crate) fn create(dir: &Path) -> Result<Self, QueryError> {
        let name = QueryFile::Postings.name();
        Ok(Self {
            writer: BlockFileWriter::create(dir, QueryFile::Postings)?,
            maxima: Spill::create(dir.join(format!(".{name}.maxima")))?,
            order: Spill::create(dir.join(format!(".{name}.order")))?,
            feature_maxima: Vec::new(),
            pending: Vec::with_capacity(POSTINGS_BLOCK),
            blocks: 0,
            features: 0,
            postings: 0,
        })
    }

    /// Adds the current feature's next posting (tokens increase within a feature).
    pub(crate) fn push(&mut self, token: u64, code: u32) -> Result<(), QueryError> {
        self.pending.push((token, code));
        self.postings += 1;
        if self.pending.len() == POSTINGS_BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Ends the current feature (the next posting pushed is the next feature's).
    pub(crate) fn end_feature(&mut self) -> Result<(), QueryError> {
        self.flush_block()?;
        self.features += 1;
        let maxima = &self.feature_maxima;
        let mut order: Vec<u32> = (0..maxima.len() as u32).collect();
        order.sort_by_key(|i| (Reverse(maxima[*i as usize]), *i));
        for i in order {
            self.order.put(&i.to_le_bytes())?;
        }
        self.feature_maxima.clear();
        Ok(())
    }

    fn flush_block(&mut self) -> Result<(), QueryError> {
        let block = &self.pending;
        if let Some(&(first, _)) = block.first() {
            let vmin = block.iter().map(|(_, v)| *v).min().unwrap_or(0);
            let vmax = block.iter().map(|(_, v)| *v).max().unwrap_or(0);
            let value_width = bits_for(u64::from(vmax - vmin));
            let gaps = block.windows(2).map(|pair| pair[1].0 - pair[0].0 - 1);
            let k = rice_parameter(gaps.clone());
            let mut bits = BitWriter::default();
            bits.put(u64::from(bits_for(first)), 7);
            bits.put(first, bits_for(first));
            bits.put(u64::from(k), 5);
            bits.put(u64::from(vmin), VALUE_CODE_BITS);
            bits.put(u64::from(value_width), 6);
            for gap in gaps {
                bits.put_rice(gap, k);
            }
            for (_, value) in block {
                bits.put(u64::from(value - vmin), value_width);
            }
            self.writer.block(&bits.finish())?;
            self.maxima.put(&vmax.to_le_bytes())?;
            self.feature_maxima.push(vmax);
            self.blocks += 1;
        }
        self.pending.clear();
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<QueryFileRecord, QueryError> {
        // The block maxima, then each feature's blocks in their order, go in as two
        // last blocks.
        self.writer.spilled_block(self.maxima)?;
        self.writer.spilled_block(self.order)?;
        let fields = [
            self.features,
            self.postings,
            self.blocks,
            POSTINGS_BLOCK as u64,
            0,
            0,
            0,
        ];
        self.writer.finish(fields, self.postings)
    }
}

/// An opened block file: its trailer fields and directory, bounds-checked.
pub(crate) struct BlockFile {
    pub(crate) file: Arc<MappedFile>,
    which: QueryFile,
    fields: [u64; 7],
    /// Blocks in the directory.
    blocks: u64,
    /// Byte offset of the directory.
    directory: usize,
    /// How its entries are stored.
    layout: Directory,
}

/// A block file's directory.
#[derive(Debug, Clone, Copy)]
enum Directory {
    /// One u64 LE per entry (query format 5 and before).
    Wide,
    /// Per [`DIRECTORY_GROUP`] entries a u64 base at `bases`, then each entry less its
    /// base in `width` bits at `packed` (up to `end`).
    Packed {
        width: u32,
        bases: usize,
        packed: usize,
        end: usize,
    },
}

impl BlockFile {
    /// Checks `mapped`'s magic and trailer; `blocks_of(fields)` says how many blocks
    /// the trailer's fields imply.
    pub(crate) fn open(
        file: Arc<MappedFile>,
        which: QueryFile,
        blocks_of: impl Fn(&[u64; 7]) -> Option<u64>,
    ) -> Result<Self, QueryError> {
        let len = file.len();
        let corrupt = |reason: &str| file.corrupt(reason.to_string());
        if (len as u64) < 8 + TRAILER_BYTES {
            return Err(corrupt("too short for a block file"));
        }
        let head = file.bytes(0, 8)?;
        let trailer = file.bytes(len - TRAILER_BYTES as usize, len)?;
        let packed = head == magic(which) && &trailer[56..] == magic(which);
        if !packed && (head != wide_magic(which) || &trailer[56..] != wide_magic(which)) {
            return Err(corrupt("no block file magic (not a version-2 query file)"));
        }
        let mut fields = [0u64; 7];
        for (i, field) in fields.iter_mut().enumerate() {
            *field = read_u64(trailer, i * 8);
        }
        let blocks = blocks_of(&fields).ok_or_else(|| corrupt("impossible trailer fields"))?;
        let end = len - TRAILER_BYTES as usize;
        let (directory, layout) = if packed {
            let width = read_u64(file.bytes(end - 8, end)?, 0);
            let entries = blocks.checked_add(1);
            let size = entries
                .and_then(|n| n.checked_mul(width))
                .map(|bits| bits.div_ceil(8))
                .zip(entries.map(|n| n.div_ceil(DIRECTORY_GROUP) * 8))
                .and_then(|(packed, bases)| packed.checked_add(bases)?.checked_add(8))
                .filter(|_| width <= MAX_DIRECTORY_WIDTH);
            let directory = size
                .and_then(|size| (end as u64).checked_sub(size))
                .filter(|start| *start >= 8)
                .ok_or_else(|| corrupt("the directory does not fit in the file"))?
                as usize;
            let bases = (blocks + 1).div_ceil(DIRECTORY_GROUP) as usize * 8;
            let layout = Directory::Packed {
                width: width as u32,
                bases: directory,
                packed: directory + bases,
                end: end - 8,
            };
            (directory, layout)
        } else {
            let directory = blocks
                .checked_add(1)
                .and_then(|n| n.checked_mul(8))
                .and_then(|bytes| (end as u64).checked_sub(bytes))
                .filter(|start| *start >= 8)
                .ok_or_else(|| corrupt("the directory does not fit in the file"))?
                as usize;
            (directory, Directory::Wide)
        };
        let opened = Self {
            file,
            which,
            fields,
            blocks,
            directory,
            layout,
        };
        let first = opened.offset(0)?;
        let last = opened.offset(blocks)?;
        if first != 8 || last as usize != directory {
            return Err(opened
                .file
                .corrupt(format!("blocks span {first}..{last}, not 8..{directory}")));
        }
        Ok(opened)
    }

    /// Trailer field `i`.
    pub(crate) fn field(&self, i: usize) -> u64 {
        self.fields[i]
    }

    /// Directory entry `block` (at most the number of blocks).
    fn offset(&self, block: u64) -> Result<u64, QueryError> {
        let Directory::Packed {
            width,
            bases,
            packed,
            end,
        } = self.layout
        else {
            let at = self.directory + block as usize * 8;
            return Ok(read_u64(self.file.bytes(at, at + 8)?, 0));
        };
        let at = bases + (block / DIRECTORY_GROUP) as usize * 8;
        let base = read_u64(self.file.bytes(at, at + 8)?, 0);
        let bit = block * u64::from(width);
        let byte = packed + (bit / 8) as usize;
        let bytes = self.file.bytes(byte, (byte + 8).min(end))?;
        let relative = BitReader::new(bytes, bit % 8)
            .get(width)
            .map_err(|_| self.file.corrupt("a directory entry past the directory"))?;
        base.checked_add(relative)
            .ok_or_else(|| self.file.corrupt("a directory entry past 2^64"))
    }

    /// The bytes of block `block`, verified.
    pub(crate) fn block(&self, block: u64) -> Result<&[u8], QueryError> {
        let span = self.span(block)?;
        self.file.bytes(span.start, span.end)
    }

    /// Where block `block` lies in the file, checked against the directory and the
    /// other blocks (its bytes not yet verified).
    pub(crate) fn span(&self, block: u64) -> Result<std::ops::Range<usize>, QueryError> {
        if block >= self.blocks {
            return Err(self
                .file
                .corrupt(format!("block {block} of {}", self.blocks)));
        }
        let (start, end) = (self.offset(block)?, self.offset(block + 1)?);
        if start > end || end as usize > self.directory || start < 8 {
            return Err(self.file.corrupt(format!(
                "block {block} at bytes {start}..{end} is outside the blocks"
            )));
        }
        Ok(start as usize..end as usize)
    }

    /// The error of a block that does not decode.
    pub(crate) fn bad_block(&self, block: u64, why: &str) -> QueryError {
        self.file
            .corrupt(format!("{} block {block}: {why}", self.which.name()))
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// `tokens.bin`, opened.
pub(crate) struct TokensFile {
    blocks: BlockFile,
    tokens: u64,
}

impl TokensFile {
    pub(crate) fn open(file: Arc<MappedFile>, tokens: u64) -> Result<Self, QueryError> {
        let blocks = BlockFile::open(file, QueryFile::Tokens, |f| {
            (f[1] == TOKENS_BLOCK as u64).then(|| f[0].div_ceil(TOKENS_BLOCK as u64))
        })?;
        if blocks.field(0) != tokens {
            return Err(blocks.file.corrupt(format!(
                "{} tokens where the manifest records {tokens}",
                blocks.field(0)
            )));
        }
        Ok(Self { blocks, tokens })
    }

    /// The mapped file.
    pub(crate) fn file(&self) -> &MappedFile {
        &self.blocks.file
    }

    /// Tokens in the file.
    pub(crate) fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The entry of global token `token`.
    pub(crate) fn entry(&self, token: u64) -> Result<TokenEntry, QueryError> {
        let mut found = TokenEntry::default();
        self.scan(token..token.saturating_add(1), |_, entry| {
            found = entry;
            Ok(())
        })?;
        Ok(found)
    }

    /// Calls `each` with every token of `tokens` and its entry, in order.
    pub(crate) fn scan(
        &self,
        tokens: std::ops::Range<u64>,
        mut each: impl FnMut(u64, TokenEntry) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        if tokens.end > self.tokens || tokens.start > tokens.end {
            return Err(self.blocks.file.corrupt(format!(
                "tokens {}..{} of {}",
                tokens.start, tokens.end, self.tokens
            )));
        }
        let mut token = tokens.start;
        while token < tokens.end {
            let block = token / TOKENS_BLOCK as u64;
            let bytes = self.blocks.block(block)?;
            let bad = |_| self.blocks.bad_block(block, "a token record past its end");
            let mut bits = BitReader::new(bytes, 0);
            let widths = TokenWidths {
                token: bits.get(6).map_err(bad)? as u32,
                start: bits.get(6).map_err(bad)? as u32,
                length: bits.get(6).map_err(bad)? as u32,
            };
            if widths.token > 32 || widths.start > 32 || widths.length > 32 {
                return Err(self.blocks.bad_block(block, "fields wider than 32 bits"));
            }
            let first = block * TOKENS_BLOCK as u64;
            let held = (self.tokens - first).min(TOKENS_BLOCK as u64);
            let bits_used = u64::from(TOKEN_HEADER_BITS) + held * u64::from(widths.record());
            if bits_used.div_ceil(8) != bytes.len() as u64 {
                return Err(self
                    .blocks
                    .bad_block(block, "its size does not fit its records"));
            }
            let at = u64::from(TOKEN_HEADER_BITS)
                + (token % TOKENS_BLOCK as u64) * u64::from(widths.record());
            let mut bits = BitReader::new(bytes, at);
            let end = ((block + 1) * TOKENS_BLOCK as u64).min(tokens.end);
            for at in token..end {
                let id = bits.get(widths.token).map_err(bad)?;
                let start = bits.get(widths.start).map_err(bad)?;
                let length = bits.get(widths.length).map_err(bad)?;
                let flags = bits.get(FLAG_BITS).map_err(bad)?;
                let entry = TokenEntry {
                    token: id as u32,
                    start: start as u32,
                    end: u32::try_from(start + length).map_err(|_| {
                        self.blocks.bad_block(block, "a token ends past 2^32 bytes")
                    })?,
                    flags: flags as u8,
                };
                each(at, entry)?;
            }
            token = end;
        }
        Ok(())
    }
}

/// `codes.bin`, opened.
pub(crate) struct CodesFile {
    blocks: BlockFile,
    tokens: u64,
    nonzeros: u64,
    d_sae: u32,
}

impl CodesFile {
    pub(crate) fn open(
        file: Arc<MappedFile>,
        tokens: u64,
        nonzeros: u64,
        d_sae: usize,
    ) -> Result<Self, QueryError> {
        let blocks = BlockFile::open(file, QueryFile::Codes, |f| {
            (f[3] == CODES_GROUP as u64 && f[2] == f[0].div_ceil(CODES_GROUP as u64))
                .then_some(f[2])
        })?;
        if blocks.field(0) != tokens
            || blocks.field(1) != nonzeros
            || blocks.field(4) != d_sae as u64
        {
            return Err(blocks.file.corrupt(format!(
                "{} tokens, {} codes and {} features where the manifest records {tokens}, {nonzeros} and {d_sae}",
                blocks.field(0),
                blocks.field(1),
                blocks.field(4)
            )));
        }
        Ok(Self {
            blocks,
            tokens,
            nonzeros,
            d_sae: u32::try_from(d_sae).unwrap_or(u32::MAX),
        })
    }

    /// The mapped file.
    pub(crate) fn file(&self) -> &MappedFile {
        &self.blocks.file
    }

    /// Codes in the file.
    pub(crate) fn nonzeros(&self) -> u64 {
        self.nonzeros
    }

    /// The bytes and header (vmin, value width, Rice parameter, count width) of group
    /// `group`.
    fn group_header(&self, group: u64) -> Result<(&[u8], [u32; 4]), QueryError> {
        let bytes = self.blocks.block(group)?;
        let bad = |_| self.blocks.bad_block(group, "codes past its end");
        let mut bits = BitReader::new(bytes, 0);
        let mut header = [0u32; 4];
        for (field, width) in header.iter_mut().zip([VALUE_CODE_BITS, 6, 5, 6]) {
            *field = bits.get(width).map_err(bad)? as u32;
        }
        Ok((bytes, header))
    }

    /// The codes of global token `token` read from bit `offset` of its group (where
    /// `occurrences.bin` says its record starts): its features (ascending; only up to
    /// `want`'s place when it is not among them) and, for feature `want` when it is
    /// among them, its value. Every field is bounds-checked.
    fn read_at(
        &self,
        token: u64,
        offset: u64,
        want: Option<u32>,
        features: &mut Vec<u32>,
    ) -> Result<Option<f32>, QueryError> {
        if token >= self.tokens {
            return Err(self
                .blocks
                .file
                .corrupt(format!("token {token} of {}", self.tokens)));
        }
        let group = token / CODES_GROUP as u64;
        let (bytes, [vmin, value_width, k, count_width]) = self.group_header(group)?;
        let bad = |_| self.blocks.bad_block(group, "a token's codes past its end");
        let mut bits = BitReader::new(bytes, offset);
        let count = bits.get(count_width).map_err(bad)?;
        if count > u64::from(self.d_sae) {
            return Err(self.blocks.bad_block(group, "more codes than features"));
        }
        features.clear();
        let mut found = None;
        let mut feature = 0u64;
        for i in 0..count {
            let gap = bits.rice(k).map_err(bad)?;
            feature = if i == 0 { gap } else { feature + 1 + gap };
            if feature >= u64::from(self.d_sae) {
                return Err(self
                    .blocks
                    .bad_block(group, "a feature past the SAE's width"));
            }
            match want {
                Some(wanted) if u64::from(wanted) == feature => found = Some(i),
                // Features ascend: the wanted one is not among the rest.
                Some(wanted) if u64::from(wanted) < feature && found.is_none() => {
                    return Ok(None);
                }
                _ => {}
            }
            features.push(feature as u32);
        }
        let Some(i) = found else {
            bits.skip(count, value_width).map_err(bad)?;
            return Ok(None);
        };
        bits.skip(i, value_width).map_err(bad)?;
        let code = u64::from(vmin) + bits.get(value_width).map_err(bad)?;
        let code =
            u32::try_from(code).map_err(|_| self.blocks.bad_block(group, "a value past f32"))?;
        Ok(Some(code_value(code)))
    }

    /// Feature `feature`'s value on global token `token`, whose codes start at bit
    /// `offset` of its group; `None` where it does not fire.
    pub(crate) fn value_at(
        &self,
        token: u64,
        offset: u64,
        feature: u32,
        scratch: &mut Vec<u32>,
    ) -> Result<Option<f32>, QueryError> {
        self.read_at(token, offset, Some(feature), scratch)
    }

    /// The features of global token `token` read from bit `offset` of its group.
    pub(crate) fn features_at(&self, token: u64, offset: u64) -> Result<Vec<u32>, QueryError> {
        let mut features = Vec::new();
        self.read_at(token, offset, None, &mut features)?;
        Ok(features)
    }

    /// Appends the codes of global tokens `tokens` (features ascending, with their
    /// values) to `out`, calling `each(token, features, values)` per token.
    pub(crate) fn decode(
        &self,
        tokens: std::ops::Range<u64>,
        mut each: impl FnMut(u64, &[u32], &[f32]) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        if tokens.end > self.tokens || tokens.start > tokens.end {
            return Err(self.blocks.file.corrupt(format!(
                "tokens {}..{} of {}",
                tokens.start, tokens.end, self.tokens
            )));
        }
        let (mut features, mut values) = (Vec::new(), Vec::new());
        let mut token = tokens.start;
        while token < tokens.end {
            let group = token / CODES_GROUP as u64;
            let bytes = self.blocks.block(group)?;
            let bad = |_| self.blocks.bad_block(group, "codes past its end");
            let mut bits = BitReader::new(bytes, 0);
            let vmin = bits.get(VALUE_CODE_BITS).map_err(bad)? as u32;
            let value_width = bits.get(6).map_err(bad)? as u32;
            let k = bits.get(5).map_err(bad)? as u32;
            let count_width = bits.get(6).map_err(bad)? as u32;
            let first = group * CODES_GROUP as u64;
            let last = (first + CODES_GROUP as u64).min(self.tokens);
            for at in first..last.min(tokens.end) {
                let count = bits.get(count_width).map_err(bad)?;
                if count > u64::from(self.d_sae) {
                    return Err(self.blocks.bad_block(group, "more codes than features"));
                }
                features.clear();
                values.clear();
                let mut feature = 0u64;
                for i in 0..count {
                    let gap = bits.rice(k).map_err(bad)?;
                    feature = if i == 0 { gap } else { feature + 1 + gap };
                    if feature >= u64::from(self.d_sae) {
                        return Err(self
                            .blocks
                            .bad_block(group, "a feature past the SAE's width"));
                    }
                    features.push(feature as u32);
                }
                if at < token {
                    bits.skip(count, value_width).map_err(bad)?;
                    continue;
                }
                for _ in 0..count {
                    let code = u64::from(vmin) + bits.get(value_width).map_err(bad)?;
                    let code = u32::try_from(code)
                        .map_err(|_| self.blocks.bad_block(group, "a value past f32"))?;
                    values.push(code_value(code));
                }
                each(at, &features, &values)?;
            }
            if tokens.end >= last && !bits.at_end() {
                return Err(self
                    .blocks
                    .bad_block(group, "its size does not fit its codes"));
            }
            token = last;
        }
        Ok(())
    }
}

/// `postings.bin`, opened.
pub(crate) struct PostingsFile {
    blocks: BlockFile,
    /// Each feature's first block, and the end of the last.
    first_block: Vec<u64>,
    /// Each feature's postings.
    counts: Vec<u64>,
    /// Each block's largest value code.
    maxima_at: usize,
    /// Each feature's blocks, largest maximum first.
    order_at: usize,
    tokens: u64,
}

impl PostingsFile {
    /// Opens `postings.bin` for features with `counts` postings each.
    pub(crate) fn open(
        file: Arc<MappedFile>,
        counts: Vec<u64>,
        tokens: u64,
    ) -> Result<Self, QueryError> {
        let mut first_block = Vec::with_capacity(counts.len() + 1);
        let mut total = 0u64;
        for count in &counts {
            first_block.push(total);
            total += count.div_ceil(POSTINGS_BLOCK as u64);
        }
        first_block.push(total);
        let postings: u64 = counts.iter().sum();
        let blocks = BlockFile::open(file, QueryFile::Postings, |f| {
            (f[3] == POSTINGS_BLOCK as u64 && f[2] == total).then_some(f[2] + 2)
        })?;
        if blocks.field(0) != counts.len() as u64 || blocks.field(1) != postings {
            return Err(blocks.file.corrupt(format!(
                "{} features and {} postings where features.arrow has {} and {postings}",
                blocks.field(0),
                blocks.field(1),
                counts.len()
            )));
        }
        // Bounds only: their bytes (4 per block, tens of MiB at a billion postings)
        // are verified chunk by chunk when a question first reads them.
        let maxima = blocks.span(total)?;
        if maxima.len() as u64 != total * 4 {
            return Err(blocks.file.corrupt(format!(
                "{} bytes of block maxima for {total} blocks",
                maxima.len()
            )));
        }
        let order = blocks.span(total + 1)?;
        if order.len() as u64 != total * 4 {
            return Err(blocks.file.corrupt(format!(
                "{} bytes of block order for {total} blocks",
                order.len()
            )));
        }
        let (maxima_at, order_at) = (maxima.start, order.start);
        Ok(Self {
            blocks,
            first_block,
            counts,
            maxima_at,
            order_at,
            tokens,
        })
    }

    /// The mapped file.
    pub(crate) fn file(&self) -> &MappedFile {
        &self.blocks.file
    }

    /// Feature `feature`'s blocks.
    pub(crate) fn blocks_of(&self, feature: usize) -> std::ops::Range<u64> {
        self.first_block[feature]..self.first_block[feature + 1]
    }

    /// Feature `feature`'s `i`-th block by largest value (ties: file order).
    fn ordered_block(&self, feature: usize, i: u64) -> Result<u64, QueryError> {
        let blocks = self.blocks_of(feature);
        let at = self.order_at + (blocks.start + i) as usize * 4;
        let bytes = self.blocks.file.bytes(at, at + 4)?;
        let relative = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let block = blocks.start + relative;
        if block >= blocks.end {
            return Err(self
                .blocks
                .bad_block(block, "the block order names a block of another feature"));
        }
        Ok(block)
    }

    /// An error unless `feature`'s block order lists each of its blocks once, largest
    /// value first, ties in file order (for `verify`).
    pub(crate) fn check_order(&self, feature: usize) -> Result<(), QueryError> {
        let blocks = self.blocks_of(feature);
        let mut previous: Option<(f32, u64)> = None;
        for i in 0..blocks.end - blocks.start {
            let block = self.ordered_block(feature, i)?;
            let max = self.block_max(block)?;
            if let Some((before, before_block)) = previous {
                let ordered = before > max || (before == max && before_block < block);
                if !ordered {
                    return Err(self
                        .blocks
                        .bad_block(block, "the block order is not by largest value"));
                }
            }
            previous = Some((max, block));
        }
        Ok(())
    }

    /// The largest value in block `block`.
    pub(crate) fn block_max(&self, block: u64) -> Result<f32, QueryError> {
        let at = self.maxima_at + block as usize * 4;
        let bytes = self.blocks.file.bytes(at, at + 4)?;
        Ok(code_value(u32::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ])))
    }

    /// Appends block `block` of feature `feature` to `out` as `(token, value)` in token
    /// order.
    pub(crate) fn decode_block(
        &self,
        feature: usize,
        block: u64,
        out: &mut Vec<(u64, f32)>,
    ) -> Result<(), QueryError> {
        let blocks = self.blocks_of(feature);
        if !blocks.contains(&block) {
            return Err(self.blocks.bad_block(block, "not a block of its feature"));
        }
        let index = block - blocks.start;
        let n = (self.counts[feature] - index * POSTINGS_BLOCK as u64).min(POSTINGS_BLOCK as u64);
        let bytes = self.blocks.block(block)?;
        let bad = |_| self.blocks.bad_block(block, "postings past its end");
        let mut bits = BitReader::new(bytes, 0);
        let first_width = bits.get(7).map_err(bad)? as u32;
        let mut token = bits.get(first_width).map_err(bad)?;
        let k = bits.get(5).map_err(bad)? as u32;
        let vmin = bits.get(VALUE_CODE_BITS).map_err(bad)?;
        let value_width = bits.get(6).map_err(bad)? as u32;
        let start = out.len();
        for i in 0..n {
            if i > 0 {
                token = token
                    .checked_add(1 + bits.rice(k).map_err(bad)?)
                    .ok_or_else(|| self.blocks.bad_block(block, "a token past 2^64"))?;
            }
            if token >= self.tokens {
                return Err(self.blocks.bad_block(block, "a token past the last"));
            }
            out.push((token, 0.0));
        }
        for slot in &mut out[start..] {
            let code = vmin + bits.get(value_width).map_err(bad)?;
            let code = u32::try_from(code)
                .map_err(|_| self.blocks.bad_block(block, "a value past f32"))?;
            slot.1 = code_value(code);
        }
        if !bits.at_end() {
            return Err(self
                .blocks
                .bad_block(block, "its size does not fit its postings"));
        }
        Ok(())
    }

    /// Every feature's largest value (the maximum of its first block in the block
    /// order), read in one pass over the order and the maxima (`None` for a feature
    /// without postings): a bound on every answer of [`Self::strongest_within`].
    pub(crate) fn strongest_values(&self) -> Result<Vec<Option<f32>>, QueryError> {
        let blocks = self.first_block.last().copied().unwrap_or(0) as usize;
        let order = self
            .blocks
            .file
            .bytes(self.order_at, self.order_at + blocks * 4)?;
        let maxima = self
            .blocks
            .file
            .bytes(self.maxima_at, self.maxima_at + blocks * 4)?;
        let word = |bytes: &[u8], i: usize| {
            u32::from_le_bytes([
                bytes[i * 4],
                bytes[i * 4 + 1],
                bytes[i * 4 + 2],
                bytes[i * 4 + 3],
            ])
        };
        (0..self.counts.len())
            .map(|feature| {
                let range = self.blocks_of(feature);
                if range.is_empty() {
                    return Ok(None);
                }
                let block = range.start + u64::from(word(order, range.start as usize));
                if block >= range.end {
                    return Err(self
                        .blocks
                        .bad_block(block, "the block order names a block of another feature"));
                }
                Ok(Some(code_value(word(maxima, block as usize))))
            })
            .collect()
    }

    /// Every posting of `feature`, strongest first, ties in token order.
    pub(crate) fn all(&self, feature: usize) -> Result<Vec<(u64, f32)>, QueryError> {
        let mut out = Vec::with_capacity(self.counts[feature] as usize);
        for block in self.blocks_of(feature) {
            self.decode_block(feature, block, &mut out)?;
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// The first token of block `block` (read from its header alone).
    fn first_token(&self, block: u64) -> Result<u64, QueryError> {
        let bytes = self.blocks.block(block)?;
        let bad = |_| self.blocks.bad_block(block, "postings past its end");
        let mut bits = BitReader::new(bytes, 0);
        let width = bits.get(7).map_err(bad)? as u32;
        bits.get(width).map_err(bad)
    }

    /// Whether block `block` of `feature` may hold a token of `within`: its tokens lie
    /// between its first token and the next block's (blocks are in token order).
    fn may_hold(&self, feature: usize, block: u64, within: &DocSet) -> Result<bool, QueryError> {
        let first = self.first_token(block)?;
        let end = if block + 1 < self.blocks_of(feature).end {
            self.first_token(block + 1)?
        } else {
            self.tokens
        };
        Ok(within.overlaps(first..end.max(first + 1)))
    }

    /// `feature`'s postings strongest first (ties in token order), produced lazily:
    /// blocks are decoded in order of their largest value, and a posting is handed to
    /// `take` only once no unread block can hold one that comes before it. `take`
    /// returns whether it wants more. Only postings whose tokens `within` holds (all
    /// when `None`) are handed out; blocks whose tokens all lie outside `within` are passed over undecoded.
    /// Passing over a block never changes the order of what is handed out: a skipped
    /// block holds no posting that could be handed out.
    pub(crate) fn strongest_within(
        &self,
        feature: usize,
        within: Option<&DocSet>,
        take: impl FnMut(u64, f32) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        self.walk(feature, within, None, None, take)
    }

    /// [`Self::strongest_within`], handing out only postings whose tokens are also in
    /// `members` (ascending; all when `None`): the others never enter the heap.
    pub(crate) fn strongest_among(
        &self,
        feature: usize,
        within: Option<&DocSet>,
        members: Option<&[u64]>,
        take: impl FnMut(u64, f32) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        self.walk(feature, within, members, None, take)
    }

    /// [`Self::strongest_within`], handing out only postings of at least `floor` when
    /// given (what an answer merged from several walks must reach): the others never
    /// enter the heap, and the walk ends at the first block whose largest value is
    /// below it.
    pub(crate) fn strongest_from(
        &self,
        feature: usize,
        within: Option<&DocSet>,
        floor: Option<f32>,
        take: impl FnMut(u64, f32) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        self.walk(feature, within, None, floor, take)
    }

    /// The walk of [`Self::strongest_among`] and [`Self::strongest_from`].
    fn walk(
        &self,
        feature: usize,
        within: Option<&DocSet>,
        members: Option<&[u64]>,
        floor: Option<f32>,
        mut take: impl FnMut(u64, f32) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        let blocks = self.blocks_of(feature);
        let count = blocks.end - blocks.start;
        let mut heap = std::collections::BinaryHeap::new();
        let mut decoded = Vec::with_capacity(POSTINGS_BLOCK);
        let mut next = 0u64;
        let mut bound_before = f32::INFINITY;
        loop {
            // The next block in order, and its largest value: nothing unread exceeds it.
            let upcoming = if next < count {
                let block = self.ordered_block(feature, next)?;
                let max = self.block_max(block)?;
                if max > bound_before {
                    return Err(self
                        .blocks
                        .bad_block(block, "the block order is not by largest value"));
                }
                bound_before = max;
                // Blocks come largest first: none from here on holds a value at the floor.
                floor
                    .is_none_or(|floor| max >= floor)
                    .then_some((block, max))
            } else {
                None
            };
            while let Some(Strongest(value, token, from)) = heap.peek().copied() {
                // Unread blocks hold nothing stronger than `bound`; blocks of equal
                // maxima come in file (token) order, so a posting equal to `bound` from
                // an earlier block ranks before everything unread.
                let later = upcoming.is_some_and(|(block, bound)| {
                    value < bound || (value == bound && from > block)
                });
                if later {
                    break;
                }
                heap.pop();
                if !take(token, value)? {
                    return Ok(());
                }
            }
            let Some((block, _)) = upcoming else {
                return Ok(());
            };
            next += 1;
            if let Some(within) = within
                && !self.may_hold(feature, block, within)?
            {
                continue;
            }
            decoded.clear();
            self.decode_block(feature, block, &mut decoded)?;
            heap.extend(
                decoded
                    .iter()
                    .filter(|(token, value)| {
                        floor.is_none_or(|floor| *value >= floor)
                            && within.is_none_or(|set| set.contains_token(*token))
                            && members.is_none_or(|m| m.binary_search(token).is_ok())
                    })
                    .map(|(token, value)| Strongest(*value, *token, block)),
            );
        }
    }
}

/// A posting (value, token, its block) ordered strongest first, then by token (a
/// max-heap pops it first).
#[derive(Debug, Clone, Copy)]
struct Strongest(f32, u64, u64);

impl PartialEq for Strongest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Strongest {}

impl PartialOrd for Strongest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Strongest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then(other.1.cmp(&self.1))
            .then(other.2.cmp(&self.2))
    }
}
