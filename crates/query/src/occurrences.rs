//! `occurrences.bin` (described in `crates/query/FORMAT.md`): every token id's
//! distinct texts and its occurrences (global token numbers, ascending), each with its
//! flags and the bit where its codes start in its group of `codes.bin`. Token-
//! conditioned questions read a token's occurrences and their codes from it directly,
//! and the vocabulary from its texts, instead of scanning `tokens.bin`.
//!
//! One block per token id (`0..=` the largest that occurs): its texts, its number of
//! occurrences, then one fixed-width bit record per occurrence. The writer streams an
//! id's records as they come out of the build's external sort, so its memory does not
//! grow with the corpus.

use std::{
    collections::{HashMap, VecDeque},
    path::Path,
    sync::Arc,
};

use crate::{
    blocks::{BlockFile, BlockFileWriter},
    codec::{BitReader, BitWriter, bits_for},
    error::QueryError,
    layout::{MAX_OCCURRENCE_IDS, QueryFile, QueryFileRecord},
    mapped::MappedFile,
    sort::{Posting, Sorter},
};

/// Bits of an occurrence's flags.
const FLAG_BITS: u32 = 2;
/// Record bits buffered before they are appended to the file.
const BUFFER_BITS: u64 = 1 << 19;

/// Streams `occurrences.bin`: ids in order, each with its texts and count, then its
/// occurrences in token order.
pub(crate) struct OccurrencesWriter {
    writer: BlockFileWriter,
    token_width: u32,
    offset_width: u32,
    bits: BitWriter,
    /// Records the current id still owes.
    owed: u64,
    ids: u64,
    tokens: u64,
}

impl OccurrencesWriter {
    /// A writer of records with `token_width`-bit tokens and `offset_width`-bit codes
    /// offsets.
    pub(crate) fn create(
        dir: &Path,
        token_width: u32,
        offset_width: u32,
    ) -> Result<Self, QueryError> {
        Ok(Self {
            writer: BlockFileWriter::create(dir, QueryFile::Occurrences)?,
            token_width,
            offset_width,
            bits: BitWriter::default(),
            owed: 0,
            ids: 0,
            tokens: 0,
        })
    }

    fn owed_error(&self) -> QueryError {
        QueryError::corrupt(
            QueryFile::Occurrences.name(),
            "the build's occurrence counts disagree with its sorted occurrences",
        )
    }

    /// Starts the next id's block: its distinct texts and how many occurrences follow.
    pub(crate) fn start_id(&mut self, texts: &[String], count: u64) -> Result<(), QueryError> {
        self.end_id()?;
        self.writer.start_block()?;
        let mut head = Vec::new();
        head.extend_from_slice(&(texts.len() as u32).to_le_bytes());
        for text in texts {
            let len = u32::try_from(text.len()).map_err(|_| QueryError::TooLarge {
                what: "one token's text",
                limit: u64::from(u32::MAX),
            })?;
            head.extend_from_slice(&len.to_le_bytes());
            head.extend_from_slice(text.as_bytes());
        }
        head.extend_from_slice(&count.to_le_bytes());
        self.writer.append(&head)?;
        self.owed = count;
        self.ids += 1;
        Ok(())
    }

    /// Adds the current id's next occurrence: its global token, the bit offset of its
    /// codes in their group, its flags.
    pub(crate) fn push(&mut self, token: u64, offset: u64, flags: u8) -> Result<(), QueryError> {
        if self.owed == 0 {
            return Err(self.owed_error());
        }
        self.owed -= 1;
        self.tokens += 1;
        self.bits.put(token, self.token_width);
        self.bits.put(offset, self.offset_width);
        self.bits.put(u64::from(flags), FLAG_BITS);
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
        let fields = [
            self.tokens,
            self.ids,
            u64::from(self.token_width),
            u64::from(self.offset_width),
            0,
            0,
            0,
        ];
        self.writer.finish(fields, self.tokens)
    }
}

/// `occurrences.bin`, opened.
pub(crate) struct OccurrencesFile {
    blocks: BlockFile,
    tokens: u64,
    ids: u64,
    token_width: u32,
    offset_width: u32,
}

/// One id's block, its header read.
struct IdBlock<'a> {
    texts: Vec<&'a [u8]>,
    count: u64,
    records: &'a [u8],
}

impl OccurrencesFile {
    /// Checks the file's framing against an index of `tokens` tokens.
    pub(crate) fn open(file: Arc<MappedFile>, tokens: u64) -> Result<Self, QueryError> {
        let blocks = BlockFile::open(file, QueryFile::Occurrences, |f| {
            (f[1] <= MAX_OCCURRENCE_IDS && f[2] <= 64 && f[3] <= 32 && f[4..] == [0, 0, 0])
                .then_some(f[1])
        })?;
        if blocks.field(0) != tokens {
            return Err(blocks.file.corrupt(format!(
                "{} occurrences where the manifest records {tokens} tokens",
                blocks.field(0)
            )));
        }
        Ok(Self {
            tokens,
            ids: blocks.field(1),
            token_width: blocks.field(2) as u32,
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

    /// Id `id`'s block, read and checked; `None` past the last id.
    fn id_block(&self, id: u32) -> Result<Option<IdBlock<'_>>, QueryError> {
        let id = u64::from(id);
        if id >= self.ids {
            return Ok(None);
        }
        let bytes = self.blocks.block(id)?;
        let bad = |why: &str| self.blocks.bad_block(id, why);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], QueryError> {
            let piece = at
                .checked_add(n)
                .and_then(|end| bytes.get(at..end))
                .ok_or_else(|| bad("its header past its end"))?;
            at += n;
            Ok(piece)
        };
        let word = |piece: &[u8]| piece.iter().rev().fold(0u64, |w, b| w << 8 | u64::from(*b));
        let n_texts = word(take(4)?);
        let mut texts = Vec::new();
        for _ in 0..n_texts {
            let len = word(take(4)?) as usize;
            texts.push(take(len)?);
        }
        let count = word(take(8)?);
        let records = &bytes[at..];
        let record = u64::from(self.token_width + self.offset_width + FLAG_BITS);
        let needed = count.checked_mul(record).map(|bits| bits.div_ceil(8));
        if needed != Some(records.len() as u64) {
            return Err(bad("its size does not fit its occurrences"));
        }
        if (count == 0) != texts.is_empty() {
            return Err(bad(
                "texts without occurrences, or occurrences without a text",
            ));
        }
        Ok(Some(IdBlock {
            texts,
            count,
            records,
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
                std::str::from_utf8(text)
                    .map(str::to_string)
                    .map_err(|_| self.blocks.bad_block(u64::from(id), "a text is not UTF-8"))
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
        let bad = |why: &str| self.blocks.bad_block(u64::from(id), why);
        let mut bits = BitReader::new(block.records, 0);
        let mut previous: Option<u64> = None;
        for _ in 0..block.count {
            let token = bits
                .get(self.token_width)
                .map_err(|_| bad("an occurrence past its end"))?;
            let offset = bits
                .get(self.offset_width)
                .map_err(|_| bad("an occurrence past its end"))?;
            let flags = bits
                .get(FLAG_BITS)
                .map_err(|_| bad("an occurrence past its end"))?;
            if token >= self.tokens || previous.is_some_and(|p| p >= token) {
                return Err(bad("occurrences out of order or past the last token"));
            }
            previous = Some(token);
            if !each(token, offset, flags as u8)? {
                break;
            }
        }
        Ok(())
    }
}

/// The build's side of `occurrences.bin`: every token as it is written, with its id,
/// flags and text, then the bit offset of its codes once `codes.bin` has written its
/// group; the occurrences go through an external sort by (id, token), the ids' counts
/// and distinct texts are kept (memory in proportion to the vocabulary, not the corpus).
pub(crate) struct OccurrenceStream {
    sorter: Sorter,
    /// Per id that occurs: its occurrences and distinct texts (first seen first).
    ids: HashMap<u32, (u64, Vec<String>)>,
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
        let (count, texts) = self.ids.entry(id).or_default();
        *count += 1;
        if !texts.iter().any(|known| known == text) {
            texts.push(text.to_string());
        }
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

    /// Writes `occurrences.bin` into `dir` for an index of `tokens` tokens; `None`
    /// (and nothing written) when an id is past [`MAX_OCCURRENCE_IDS`].
    pub(crate) fn write(
        self,
        dir: &Path,
        tokens: u64,
    ) -> Result<Option<QueryFileRecord>, QueryError> {
        if self.too_wide {
            return Ok(None);
        }
        let ids = self.ids.keys().max().map_or(0, |id| u64::from(*id) + 1);
        let token_width = bits_for(tokens.saturating_sub(1));
        let mut writer =
            OccurrencesWriter::create(dir, token_width, bits_for(self.largest_offset))?;
        let start = |writer: &mut OccurrencesWriter, id: u32| {
            let (count, texts) = self
                .ids
                .get(&id)
                .map_or((0, &[][..]), |(n, t)| (*n, &t[..]));
            writer.start_id(texts, count)
        };
        let mut next = 0u64;
        self.sorter.drain(|posting| {
            while next <= u64::from(posting.feature) {
                start(&mut writer, next as u32)?;
                next += 1;
            }
            let offset = u64::from(posting.payload & ((1 << OFFSET_BITS) - 1));
            writer.push(
                posting.token,
                offset,
                (posting.payload >> OFFSET_BITS) as u8,
            )
        })?;
        while next < ids {
            start(&mut writer, next as u32)?;
            next += 1;
        }
        writer.finish().map(Some)
    }
}
