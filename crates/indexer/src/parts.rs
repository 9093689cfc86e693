//! Cutting the corpus into parts, and parts among shards.
//!
//! Documents are numbered in corpus order and grouped into parts of consecutive
//! documents: a part closes after the document that brings its text to at least
//! `part_bytes` bytes. The rule needs nothing but the texts, so every process that reads
//! the same corpus cuts it the same way: a resumed run, and each of `n` shards, which
//! takes a contiguous block of the parts ([`Shard::parts`]), so that its documents are
//! consecutive and its output is one segment of the index. Each part is computed on its
//! own (batches never cross parts), so its files do not depend on which process wrote
//! them.

use std::{fmt, ops::Range, str::FromStr};

use saeidx_corpus::{CorpusError, documents::Document};

/// `i/n`: this process indexes shard `i` (0-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// The whole corpus as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The parts this shard indexes when the corpus is cut into `parts` parts: the block
    /// `[i·parts/n, (i+1)·parts/n)`, so the shards' blocks follow each other in order
    /// and differ in size by at most one part.
    pub fn parts(&self, parts: u32) -> Range<u32> {
        let at = |i: u32| (u64::from(i) * u64::from(parts) / u64::from(self.count)) as u32;
        at(self.index)..at(self.index + 1)
    }
}

/// The number of parts `documents` (the first `limit` of them) are cut into, read
/// without tokenizing (a sharded run needs it before it starts, to know its block).
pub fn count_parts(
    documents: impl Iterator<Item = Result<Document, CorpusError>>,
    part_bytes: u64,
    limit: Option<u64>,
) -> Result<u32, CorpusError> {
    let mut partitioner = Partitioner::new(part_bytes);
    let mut parts = 0u32;
    for document in documents.take(limit.unwrap_or(u64::MAX) as usize) {
        parts += u32::from(partitioner.push(document?).is_some());
    }
    Ok(parts + u32::from(partitioner.finish().is_some()))
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A shard that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("shard {0:?}: expected i/n with 0 <= i < n (e.g. --shard 0/4)")]
pub struct ShardParseError(String);

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ShardParseError(text.to_string());
        let (index, count) = text.split_once('/').ok_or_else(error)?;
        let index: u32 = index.trim().parse().map_err(|_| error())?;
        let count: u32 = count.trim().parse().map_err(|_| error())?;
        if count == 0 || index >= count {
            return Err(error());
        }
        Ok(Shard { index, count })
    }
}

/// A document with its number in the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedDocument {
    /// Its number (corpus order, from 0).
    pub doc: u32,
    /// The document.
    pub document: Document,
}

/// A part: consecutive documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Part number (from 0).
    pub part: u32,
    /// The first document's number.
    pub first_doc: u32,
    /// The documents.
    pub documents: Vec<NumberedDocument>,
}

/// Groups numbered documents into parts by text size.
#[derive(Debug)]
pub struct Partitioner {
    part_bytes: u64,
    next_doc: u32,
    current: Part,
    current_bytes: u64,
}

impl Partitioner {
    /// Parts of at least `part_bytes` bytes of text (the last may be smaller).
    pub fn new(part_bytes: u64) -> Self {
        Self::starting_at(part_bytes, 0)
    }

    /// [`Partitioner::new`], numbering documents from `first_doc` (a segment appended
    /// to an index).
    pub fn starting_at(part_bytes: u64, first_doc: u32) -> Self {
        Self {
            part_bytes: part_bytes.max(1),
            next_doc: first_doc,
            current: Part {
                part: 0,
                first_doc,
                documents: Vec::new(),
            },
            current_bytes: 0,
        }
    }

    /// Adds the next document; returns the part it closed, if any.
    pub fn push(&mut self, document: Document) -> Option<Part> {
        self.current_bytes += document.text.len() as u64;
        self.current.documents.push(NumberedDocument {
            doc: self.next_doc,
            document,
        });
        self.next_doc += 1;
        (self.current_bytes >= self.part_bytes).then(|| self.close())
    }

    /// The last, unfinished part (`None` if it is empty).
    pub fn finish(mut self) -> Option<Part> {
        (!self.current.documents.is_empty()).then(|| self.close())
    }

    /// The number the next document gets.
    pub fn documents(&self) -> u32 {
        self.next_doc
    }

    fn close(&mut self) -> Part {
        let next = Part {
            part: self.current.part + 1,
            first_doc: self.next_doc,
            documents: Vec::new(),
        };
        self.current_bytes = 0;
        std::mem::replace(&mut self.current, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: &str) -> Document {
        Document {
            id: text.into(),
            source: "s".into(),
            text: text.into(),
            metadata: Vec::new(),
        }
    }

    #[test]
    fn parts_close_at_the_byte_target() {
        let mut partitioner = Partitioner::new(5);
        assert!(partitioner.push(document("abc")).is_none());
        let first = partitioner.push(document("de")).unwrap();
        assert_eq!(
            (first.part, first.first_doc, first.documents.len()),
            (0, 0, 2)
        );
        let second = partitioner.push(document("0123456789")).unwrap();
        assert_eq!((second.part, second.first_doc), (1, 2));
        assert!(partitioner.push(document("")).is_none());
        let last = partitioner.finish().unwrap();
        assert_eq!(
            (last.part, last.first_doc, last.documents[0].doc),
            (2, 3, 3)
        );
    }

    #[test]
    fn parts_are_counted_as_the_partitioner_cuts_them() {
        let texts = ["abc", "de", "0123456789", ""];
        let documents = texts.iter().map(|t| Ok(document(t)));
        assert_eq!(count_parts(documents.clone(), 5, None).unwrap(), 3);
        assert_eq!(count_parts(documents, 5, Some(2)).unwrap(), 1);
    }

    #[test]
    fn shards_parse_and_split_parts() {
        let shard: Shard = "1/3".parse().unwrap();
        assert_eq!(shard.parts(10), 3..6);
        let blocks: Vec<_> = (0..3)
            .map(|i| Shard { index: i, count: 3 }.parts(10))
            .collect();
        assert_eq!(blocks, [0..3, 3..6, 6..10]);
        assert_eq!(Shard { index: 0, count: 4 }.parts(2), 0..0);
        assert!("3/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert_eq!(Shard::WHOLE.to_string(), "0/1");
    }
}
