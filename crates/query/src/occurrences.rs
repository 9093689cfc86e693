//! `occurrences.bin` (described in `crates/query/FORMAT.md`): every token id's
//! distinct texts and its occurrences (global token numbers, ascending), each with its
//! flags and the bit where its codes start in its group of `codes.bin`. Token-
//! conditioned questions read a token's occurrences and their codes from it directly,
//! and the vocabulary from its texts, instead of scanning `tokens.bin`.
//!
//! Block 0 says which ids occur (a bitmap, with the number of ids before each word of
//! it); then one block per id that occurs, in id order: its texts, its count, its flags
//! when they are all the same, then per occurrence a Rice-coded token gap, the codes
//! offset (left out for the first token of a group, whose codes start after the group's
//! header) and, where its flags differ, the flags. The writer streams an id's records as
//! they come out of the build's external sort, so its memory does not grow with the
//! corpus.

use std::{collections::HashMap, collections::VecDeque, path::Path, sync::Arc};

use crate::{
    blocks::{BlockFile, BlockFileWriter, CODES_GROUP, CODES_HEADER_BITS},
    codec::{BitReader, BitWriter, bits_for, put_varint, read_varint},
    error::QueryError,
    layout::{MAX_OCCURRENCE_IDS, QueryFile, QueryFileRecord},
    mapped::MappedFile,
    sort::{Posting, Sorter},
};

/// Bits of an occurrence's flags.
const FLAG_BITS: u32 = 2;
/// Record bits buffered before they are appended to the file.
const BUFFER_BITS: u64 = 1 << 19;
/// The flags byte's bit that says each occurrence carries its own flags.
const MIXED_FLAGS: u8 = 4;
/// The largest Rice parameter of token gaps.
const MAX_RICE: u32 = 30;

/// What the build knows of one token id before its occurrences are written.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdSummary {
    /// Occurrences.
    count: u64,
    /// Distinct texts, first seen first.
    texts: Vec<String>,
    /// The first occurrence's flags.
    flags: u8,
    /// Whether the occurrences' flags differ.
    mixed: bool,
    /// The first and last occurrences.
    first: u64,
    last: u64,
}

impl IdSummary {
    fn add(&mut self, token: u64, flags: u8, text: &str) {
        if self.count == 0 {
            (self.first, self.flags) = (token, flags);
        }
        self.mixed |= flags != self.flags;
        self.last = token;
        self.count += 1;
        if !self.texts.iter().any(|known| known == text) {
            self.texts.push(text.to_string());
        }
    }

    /// The Rice parameter of the token gaps: the one near the logarithm of their mean.
    fn rice(&self) -> u32 {
        let mean = (self.last - self.first) / self.count.max(1);
        bits_for(mean).saturating_sub(1).min(MAX_RICE)
    }
}

/// Streams `occurrences.bin`: which ids occur, then each id that occurs with its texts
/// and count, then its occurrences in token order.
pub(crate) struct OccurrencesWriter {
    writer: BlockFileWriter,
    offset_width: u32,
    bits: BitWriter,
    /// The current id's Rice parameter, whether its records carry flags, its flags.
    k: u32,
    mixed: bool,
    flags: u8,
    /// Records the current id still owes, and its last token.
    owed: u64,
    previous: Option<u64>,
    ids: u64,
    present: u64,
    /// Ids started so far.
    started: u64,
    tokens: u64,
}

impl OccurrencesWriter {
    /// A writer of `ids` ids, those in `present` (ascending) occurring, with
    /// `offset_width`-bit codes offsets; writes block 0.
    pub(crate) fn create(
        dir: &Path,
        ids: u64,
        present: &[u32],
        offset_width: u32,
    ) -> Result<Self, QueryError> {
        let mut writer = BlockFileWriter::create(dir, QueryFile::Occurrences)?;
        writer.start_block()?;
        writer.append(&presence_block(ids, present))?;
        Ok(Self {
            writer,
            offset_width,
            bits: BitWriter::default(),
            k: 0,
            mixed: false,
            flags: 0,
            owed: 0,
            previous: None,
            ids,
            present: present.len() as u64,
            started: 0,
            tokens: 0,
        })
    }

    fn owed_error(&self) -> QueryError {
        QueryError::corrupt(
            QueryFile::Occurrences.name(),
            "the build's occurrence counts disagree with its sorted occurrences",
        )
    }

    /// Starts the next id's block: its distinct texts, how many occurrences follow,
    /// their flags (when all the same) and the Rice parameter of their gaps.
    pub(crate) fn start_id(&mut self, id: &IdSummary) -> Result<(), QueryError> {
        self.end_id()?;
        self.writer.start_block()?;
        let mut head = Vec::new();
        put_varint(&mut head, id.texts.len() as u64);
        for text in &id.texts {
            put_varint(&mut head, text.len() as u64);
            head.extend_from_slice(text.as_bytes());
        }
        put_varint(&mut head, id.count);
        (self.k, self.mixed, self.flags) = (id.rice(), id.mixed, id.flags);
        head.push(if id.mixed { MIXED_FLAGS } else { id.flags });
        head.push(self.k as u8);
        self.writer.append(&head)?;
        self.owed = id.count;
        self.previous = None;
        self.started += 1;
        Ok(())
    }

    /// Adds the current id's next occurrence: its global token, the bit offset of its
    /// codes in their group, its flags.
    pub(crate) fn push(&mut self, token: u64, offset: u64, flags: u8) -> Result<(), QueryError> {
        let gap = match self.previous {
            None => Some(token),
            Some(previous) => token.checked_sub(previous + 1),
        };
        let first_in_group = token.is_multiple_of(CODES_GROUP as u64);
        let consistent =
            (self.mixed || flags == self.flags) && (!first_in_group || offset == CODES_HEADER_BITS);
        let (Some(gap), true, true) = (gap, self.owed > 0, consistent) else {
            return Err(self.owed_error());
        };
        self.owed -= 1;
        self.tokens += 1;
        self.previous = Some(token);
        self.bits.put_rice(gap, self.k);
        if !first_in_group {
            self.bits.put(offset, self.offset_width);
        }
        if self.mixed {
            self.bits.put(u64::from(flags), FLAG_BITS);
        }
        if self.bits.position() >= BUFFER_BITS {
            let bytes = self.bits.take_bytes();
            self.writer.append(&bytes)?;
        }
        Ok(())
    }

    /// Ends the current id's block (its last byte padded with zeros).
    fn end_id(&mut self) -> Result<(), QueryError> {
        if self.owed != 0 {
            return Err(self.owed_error());
        }
        let bytes = std::mem::take(&mut self.bits).finish();
        self.writer.append(&bytes)
    }

    /// Writes the directory and trailer; `rows` is every occurrence.
    pub(crate) fn finish(mut self) -> Result<QueryFileRecord, QueryError> {
        self.end_id()?;
        if self.started != self.present {
            return Err(self.owed_error());
        }
        let fields = [
            self.tokens,
            self.ids,
            self.present,
            u64::from(self.offset_width),
            0,
            0,
            0,
        ];
        self.writer.finish(fields, self.tokens)
    }
}

/// Block 0: per word of 64 ids, the bitmap of those that occur (u64 LE), then per
/// word the number of ids that occur before it (u32 LE).
fn presence_block(ids: u64, present: &[u32]) -> Vec<u8> {
    let words = ids.div_ceil(64) as usize;
    let mut bitmap = vec![0u64; words];
    for id in present {
        bitmap[*id as usize / 64] |= 1 << (id % 64);
    }
    let mut bytes = Vec::with_capacity(words * 12);
    for word in &bitmap {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let mut before = 0u32;
    for word in &bitmap {
        bytes.extend_from_slice(&before.to_le_bytes());
        before += word.count_ones();
    }
    bytes
}

/// `occurrences.bin`, opened.
pub(crate) struct OccurrencesFile {
    blocks: BlockFile,
    tokens: u64,
    ids: u64,
    present: u64,
    offset_width: u32,
}

/// One id's block, its header read.
struct IdBlock<'a> {
    texts: Vec<&'a [u8]>,
    count: u64,
    /// The occurrences' flags, `None` where each carries its own.
    flags: Option<u8>,
    k: u32,
    records: &'a [u8],
}

/// Reads bytes and LEB128 numbers off the front of a block's header.
struct Header<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Header<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let end = self.at.checked_add(usize::try_from(n).ok()?)?;
        let piece = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(piece)
    }

    fn varint(&mut self) -> Option<u64> {
        read_varint(self.bytes, &mut self.at)
    }
}

impl OccurrencesFile {
    /// Checks the file's framing against an index of `tokens` tokens.
    pub(crate) fn open(file: Arc<MappedFile>, tokens: u64) -> Result<Self, QueryError> {
        let blocks = BlockFile::open(file, QueryFile::Occurrences, |f| {
            (f[1] <= MAX_OCCURRENCE_IDS && f[2] <= f[1] && f[3] <= 32 && f[4..] == [0, 0, 0])
                .then_some(f[2] + 1)
        })?;
        if blocks.field(0) != tokens {
            return Err(blocks.file.corrupt(format!(
                "{} occurrences where the manifest records {tokens} tokens",
                blocks.field(0)
            )));
        }
        let words = blocks.field(1).div_ceil(64) as usize;
        if blocks.span(0)?.len() != words * 12 {
            return Err(blocks.bad_block(0, "its size does not fit the ids"));
        }
        Ok(Self {
            tokens,
            ids: blocks.field(1),
            present: blocks.field(2),
            offset_width: blocks.field(3) as u32,
            blocks,
        })
    }

    /// The mapped file.
    pub(crate) fn file(&self) -> &MappedFile {
        &self.blocks.file
    }

    /// Token ids described (one more than the largest that occurs).
    pub(crate) fn ids(&self) -> u64 {
        self.ids
    }

    /// The block of id `id`, `None` when it does not occur.
    fn block_of(&self, id: u32) -> Result<Option<u64>, QueryError> {
        let id = u64::from(id);
        if id >= self.ids {
            return Ok(None);
        }
        let presence = self.blocks.block(0)?;
        let word = (id / 64) as usize;
        let words = self.ids.div_ceil(64) as usize;
        let read = |at: usize, n: usize| {
            presence[at..at + n]
                .iter()
                .rev()
                .fold(0u64, |w, b| w << 8 | u64::from(*b))
        };
        let bitmap = read(word * 8, 8);
        if bitmap >> (id % 64) & 1 == 0 {
            return Ok(None);
        }
        let rank = read(words * 8 + word * 4, 4)
            + u64::from((bitmap & ((1 << (id % 64)) - 1)).count_ones());
        if rank >= self.present {
            return Err(self
                .blocks
                .bad_block(0, "more ids occur than the file holds"));
        }
        Ok(Some(rank + 1))
    }

    /// Id `id`'s block, read and checked; `None` when it does not occur.
    fn id_block(&self, id: u32) -> Result<Option<IdBlock<'_>>, QueryError> {
        let Some(block) = self.block_of(id)? else {
            return Ok(None);
        };
        let bytes = self.blocks.block(block)?;
        let bad = || self.blocks.bad_block(block, "its header is damaged");
        let mut header = Header { bytes, at: 0 };
        let n_texts = header.varint().ok_or_else(bad)?;
        if n_texts == 0 || n_texts > bytes.len() as u64 {
            return Err(bad());
        }
        let mut texts = Vec::new();
        for _ in 0..n_texts {
            let len = header.varint().ok_or_else(bad)?;
            texts.push(header.take(len).ok_or_else(bad)?);
        }
        let count = header.varint().ok_or_else(bad)?;
        let (flags, k) = match header.take(2).ok_or_else(bad)? {
            [flags, k] if (*flags < 4 || *flags == MIXED_FLAGS) && u32::from(*k) <= MAX_RICE => {
                (*flags, *k)
            }
            _ => return Err(bad()),
        };
        if count == 0 || count > self.tokens {
            return Err(bad());
        }
        Ok(Some(IdBlock {
            texts,
            count,
            flags: (flags & MIXED_FLAGS == 0).then_some(flags),
            k: u32::from(k),
            records: &bytes[header.at..],
        }))
    }

    /// How many tokens have id `id`.
    pub(crate) fn count(&self, id: u32) -> Result<u64, QueryError> {
        Ok(self.id_block(id)?.map_or(0, |block| block.count))
    }

    /// The distinct texts of id `id` (empty when it never occurs).
    pub(crate) fn texts(&self, id: u32) -> Result<Vec<String>, QueryError> {
        let Some(block) = self.id_block(id)? else {
            return Ok(Vec::new());
        };
        block
            .texts
            .iter()
            .map(|text| {
                std::str::from_utf8(text).map(str::to_string).map_err(|_| {
                    self.file()
                        .corrupt(format!("token id {id}: a text is not UTF-8"))
                })
            })
            .collect()
    }

    /// Calls `each(token, codes offset, flags)` with id `id`'s occurrences, ascending,
    /// until it returns `false`.
    pub(crate) fn each(
        &self,
        id: u32,
        mut each: impl FnMut(u64, u64, u8) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        let Some(block) = self.id_block(id)? else {
            return Ok(());
        };
        let bad = |why: &str| {
            self.file()
                .corrupt(format!("token id {id}'s occurrences: {why}"))
        };
        let overrun = |_| bad("an occurrence past its end");
        let mut bits = BitReader::new(block.records, 0);
        let mut previous: Option<u64> = None;
        for _ in 0..block.count {
            let gap = bits.rice(block.k).map_err(overrun)?;
            let token = match previous {
                None => Some(gap),
                Some(p) => p.checked_add(gap).and_then(|t| t.checked_add(1)),
            }
            .filter(|token| *token < self.tokens)
            .ok_or_else(|| bad("an occurrence past the last token"))?;
            previous = Some(token);
            let offset = if token.is_multiple_of(CODES_GROUP as u64) {
                CODES_HEADER_BITS
            } else {
                bits.get(self.offset_width).map_err(overrun)?
            };
            let flags = match block.flags {
                Some(flags) => flags,
                None => bits.get(FLAG_BITS).map_err(overrun)? as u8,
            };
            if !each(token, offset, flags)? {
                return Ok(());
            }
        }
        if !bits.at_end() {
            return Err(bad("bytes past its last occurrence"));
        }
        Ok(())
    }
}

/// The build's side of `occurrences.bin`: every token as it is written, with its id,
/// flags and text, then the bit offset of its codes once `codes.bin` has written its
/// group; the occurrences go through an external sort by (id, token), each id's
/// summary (count, distinct texts, flags, first and last token) is kept (memory in
/// proportion to the vocabulary, not the corpus).
pub(crate) struct OccurrenceStream {
    sorter: Sorter,
    /// Per id that occurs: what the file says before its occurrences.
    ids: HashMap<u32, IdSummary>,
    /// Tokens whose codes offsets are not known yet: (token, id, flags), in order.
    pending: VecDeque<(u64, u32, u8)>,
    largest_offset: u64,
    /// Whether an id past [`MAX_OCCURRENCE_IDS`] occurred (the file is left out).
    too_wide: bool,
}

/// Bits of the sort payload holding an occurrence's codes offset (its flags above).
const OFFSET_BITS: u32 = 30;

impl OccurrenceStream {
    /// A stream sorting in `dir` within about `memory` bytes.
    pub(crate) fn new(dir: &Path, memory: u64) -> Self {
        Self {
            sorter: Sorter::new(dir, memory),
            ids: HashMap::new(),
            pending: VecDeque::new(),
            largest_offset: 0,
            too_wide: false,
        }
    }

    /// Runs the sort spilled.
    pub(crate) fn spilled(&self) -> usize {
        self.sorter.spilled()
    }

    /// The next global token `token`: its id, flags and text.
    pub(crate) fn token(&mut self, token: u64, id: u32, flags: u8, text: &str) {
        if self.too_wide || u64::from(id) >= MAX_OCCURRENCE_IDS {
            self.too_wide = true;
            return;
        }
        self.ids.entry(id).or_default().add(token, flags, text);
        self.pending.push_back((token, id, flags));
    }

    /// The codes offsets of the next tokens `codes.bin` wrote, in order.
    pub(crate) fn offsets(&mut self, offsets: Vec<u64>) -> Result<(), QueryError> {
        if self.too_wide {
            return Ok(());
        }
        for offset in offsets {
            let (token, id, flags) = self.pending.pop_front().ok_or_else(|| {
                QueryError::corrupt(
                    QueryFile::Codes.name(),
                    "the build wrote codes for more tokens than it read",
                )
            })?;
            if offset >= 1 << OFFSET_BITS {
                return Err(QueryError::TooLarge {
                    what: "one group of codes.bin, in bits",
                    limit: 1 << OFFSET_BITS,
                });
            }
            self.largest_offset = self.largest_offset.max(offset);
            self.sorter.push(Posting {
                feature: id,
                token,
                payload: offset as u32 | u32::from(flags) << OFFSET_BITS,
            })?;
        }
        Ok(())
    }

    /// Writes `occurrences.bin` into `dir`; `None` (and nothing written) when an id is
    /// past [`MAX_OCCURRENCE_IDS`].
    pub(crate) fn write(self, dir: &Path) -> Result<Option<QueryFileRecord>, QueryError> {
        if self.too_wide {
            return Ok(None);
        }
        let mut present: Vec<u32> = self.ids.keys().copied().collect();
        present.sort_unstable();
        let ids = present.last().map_or(0, |id| u64::from(*id) + 1);
        let mut writer =
            OccurrencesWriter::create(dir, ids, &present, bits_for(self.largest_offset))?;
        let mut current: Option<u32> = None;
        self.sorter.drain(|posting| {
            if current != Some(posting.feature) {
                let summary = self.ids.get(&posting.feature).ok_or_else(|| {
                    QueryError::corrupt(
                        QueryFile::Occurrences.name(),
                        "the build sorted an occurrence of an id it did not count",
                    )
                })?;
                writer.start_id(summary)?;
                current = Some(posting.feature);
            }
            let offset = u64::from(posting.payload & ((1 << OFFSET_BITS) - 1));
            writer.push(
                posting.token,
                offset,
                (posting.payload >> OFFSET_BITS) as u8,
            )
        })?;
        writer.finish().map(Some)
    }
}
