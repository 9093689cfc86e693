//! Restricting questions to some documents: a [`Restriction`] (a metadata filter and/or
//! a list of documents, as a request says it) resolves against an index into a
//! [`DocSet`], the reusable primitive every restricted answer is computed with: a
//! membership bit per document and the selected documents' token ranges, merged, so
//! that "is this posting's token in the set?" is a binary search and a block of
//! postings whose tokens all lie outside the set is passed over without being decoded.
//!
//! Restricted answers are exact: they equal the unrestricted computation over the
//! selected documents' tokens only (the property tests of `tests/restricted.rs` check
//! each against a plain scan of the Parquet rows).

use std::ops::Range;

use arrow_array::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    QueryError, QueryIndex,
    answers::DocRef,
    filter::{Filter, filter_columns},
};

/// Which documents a question looks at: those `filter` selects, intersected with
/// `docs` when both are given; every document when neither is (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Restriction {
    /// A filter over the documents' columns (`year >= 1900 and party = 'Whig'`; see
    /// [`crate::filter`]).
    pub filter: Option<String>,
    /// Only these documents (numbers or ids).
    pub docs: Option<Vec<DocRef>>,
}

impl Restriction {
    /// No restriction: every document.
    pub fn all() -> Self {
        Self::default()
    }

    /// The documents `filter` selects.
    pub fn filter(filter: impl Into<String>) -> Self {
        Self {
            filter: Some(filter.into()),
            docs: None,
        }
    }

    /// These documents.
    pub fn documents(docs: impl IntoIterator<Item = u32>) -> Self {
        Self {
            filter: None,
            docs: Some(docs.into_iter().map(DocRef::Number).collect()),
        }
    }

    /// Whether this restricts nothing.
    pub fn is_all(&self) -> bool {
        self.filter.is_none() && self.docs.is_none()
    }
}

/// A set of an index's documents, with their token ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSet {
    /// One bit per document of the index.
    member: Vec<u64>,
    /// The selected documents, ascending.
    docs: Vec<u32>,
    /// Their global token ranges, ascending, adjacent ranges merged, none empty.
    ranges: Vec<Range<u64>>,
    /// Tokens in `ranges`.
    tokens: u64,
}

impl DocSet {
    /// The set of `docs` (each below `documents`), whose token ranges `range_of` gives.
    pub fn new(
        documents: u32,
        docs: impl IntoIterator<Item = u32>,
        mut range_of: impl FnMut(u32) -> Result<Range<u64>, QueryError>,
    ) -> Result<Self, QueryError> {
        let mut member = vec![0u64; (documents as usize).div_ceil(64)];
        for doc in docs {
            if doc >= documents {
                return Err(QueryError::UnknownDocument {
                    doc: doc.to_string(),
                    documents: u64::from(documents),
                    hint: "; documents are numbered from 0",
                });
            }
            member[doc as usize / 64] |= 1 << (doc % 64);
        }
        let selected = member.iter().map(|word| word.count_ones() as usize).sum();
        let mut set = Self {
            member,
            docs: Vec::with_capacity(selected),
            ranges: Vec::new(),
            tokens: 0,
        };
        for doc in 0..documents {
            if set.contains_doc(doc) {
                set.docs.push(doc);
                set.add_range(range_of(doc)?);
            }
        }
        Ok(set)
    }

    fn add_range(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        self.tokens += range.end - range.start;
        match self.ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.ranges.push(range),
        }
    }

    /// The documents of the index (numbered below `documents`) not in this set, with
    /// their token ranges from `range_of`.
    pub fn complement(
        &self,
        documents: u32,
        range_of: impl FnMut(u32) -> Result<Range<u64>, QueryError>,
    ) -> Result<Self, QueryError> {
        Self::new(
            documents,
            (0..documents).filter(|doc| !self.contains_doc(*doc)),
            range_of,
        )
    }

    /// Whether document `doc` is in the set.
    pub fn contains_doc(&self, doc: u32) -> bool {
        self.member
            .get(doc as usize / 64)
            .is_some_and(|bits| bits >> (doc % 64) & 1 == 1)
    }

    /// Whether global token `token` belongs to a document of the set.
    pub fn contains_token(&self, token: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= token);
        self.ranges.get(i).is_some_and(|r| r.start <= token)
    }

    /// Whether any token of `tokens` belongs to a document of the set.
    pub fn overlaps(&self, tokens: Range<u64>) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= tokens.start);
        self.ranges
            .get(i)
            .is_some_and(|r| r.start < tokens.end && tokens.start < tokens.end)
    }

    /// The selected documents, ascending.
    pub fn docs(&self) -> &[u32] {
        &self.docs
    }

    /// The selected documents' global token ranges, ascending and disjoint.
    pub fn token_ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }

    /// Tokens of the selected documents (all of them, excluded or not).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Documents in the set.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

impl QueryIndex {
    /// The documents `restriction` selects (`None` when it restricts nothing, so callers
    /// keep their unrestricted fast paths). A filter is parsed against the index's
    /// metadata columns and evaluated over its Parquet documents table (read once and
    /// kept); listed documents must exist.
    pub fn doc_set(&self, restriction: &Restriction) -> Result<Option<DocSet>, QueryError> {
        if restriction.is_all() {
            return Ok(None);
        }
        let documents = self.documents();
        let mut selected: Option<Vec<bool>> = None;
        if let Some(text) = &restriction.filter {
            let filter =
                Filter::parse(text, &filter_columns(&self.manifest().job.corpus.metadata))?;
            let mut mask = vec![false; documents as usize];
            for doc in filter.matching_documents(self.metadata_table()?)? {
                if let Some(slot) = mask.get_mut(doc as usize) {
                    *slot = true;
                }
            }
            selected = Some(mask);
        }
        if let Some(docs) = &restriction.docs {
            let mut listed = vec![false; documents as usize];
            for doc in docs {
                listed[self.resolve(doc)? as usize] = true;
            }
            selected = Some(match selected {
                Some(mask) => mask.iter().zip(&listed).map(|(a, b)| *a && *b).collect(),
                None => listed,
            });
        }
        let mask = selected.unwrap_or_else(|| vec![true; documents as usize]);
        let docs = (0u32..).zip(mask).filter(|(_, s)| *s).map(|(doc, _)| doc);
        self.answer(DocSet::new(documents, docs, |doc| self.doc_token_range(doc)).map(Some))
    }

    /// A set of documents by number (each must exist).
    pub fn doc_set_of(&self, docs: impl IntoIterator<Item = u32>) -> Result<DocSet, QueryError> {
        DocSet::new(self.documents(), docs, |doc| self.doc_token_range(doc))
    }

    /// The documents not in `set`.
    pub fn complement(&self, set: &DocSet) -> Result<DocSet, QueryError> {
        set.complement(self.documents(), |doc| self.doc_token_range(doc))
    }

    /// Document `doc`'s global token range.
    pub(crate) fn doc_token_range(&self, doc: u32) -> Result<Range<u64>, QueryError> {
        let (first, count) = self.doc_tokens(doc)?;
        Ok(first..first + u64::from(count))
    }

    /// The Parquet documents table without texts (read on first use and kept).
    pub(crate) fn metadata_table(&self) -> Result<&RecordBatch, QueryError> {
        if let Some(table) = self.metadata.get() {
            return Ok(table);
        }
        let table = saeidx_format::metadata::read_documents(self.dir(), self.manifest(), false)?;
        if table.num_rows() != self.documents() as usize {
            return Err(QueryError::corrupt(
                self.dir().join("documents"),
                format!(
                    "{} rows where the index has {} documents",
                    table.num_rows(),
                    self.documents()
                ),
            ));
        }
        Ok(self.metadata.get_or_init(|| table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(doc: u32) -> Result<Range<u64>, QueryError> {
        // Document d holds tokens [10d, 10d + d).
        Ok(u64::from(doc) * 10..u64::from(doc) * 11)
    }

    #[test]
    fn membership_by_document_and_token() {
        let set = DocSet::new(6, [1, 2, 5, 0], ranges).unwrap();
        assert_eq!(set.docs(), [0, 1, 2, 5]);
        assert_eq!(set.token_ranges(), [10..11, 20..22, 50..55]);
        assert_eq!(set.tokens(), 8);
        assert!(set.contains_doc(2) && !set.contains_doc(3) && !set.contains_doc(99));
        assert!(set.contains_token(10) && !set.contains_token(11) && set.contains_token(54));
        assert!(!set.contains_token(55) && !set.contains_token(0));
        assert!(set.overlaps(11..21) && !set.overlaps(11..20) && !set.overlaps(30..30));
        let rest = set.complement(6, ranges).unwrap();
        assert_eq!(rest.docs(), [3, 4]);
        assert!(DocSet::new(6, [6], ranges).is_err());
    }
}
