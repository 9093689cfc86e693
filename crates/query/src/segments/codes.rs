//! What whole-index comparisons and exports ask of an index of segments: its live
//! documents in order, a live document's codes, and a digest of the live data.

use crate::{DecodedCodes, QueryError, SegmentedIndex, index::Exclusions};

impl SegmentedIndex {
    /// The live documents' global numbers, in document order.
    pub fn live_documents(&self) -> Vec<u32> {
        self.segments
            .iter()
            .flat_map(|segment| {
                (0..segment.documents())
                    .filter(|&local| !segment.doc_deleted(local))
                    .map(|local| segment.first_doc + local)
            })
            .collect()
    }

    /// The per-token codes of live document `doc` ([`crate::QueryIndex::document_codes`]
    /// over all its tokens).
    pub fn document_codes(
        &self,
        doc: u32,
        exclusions: Exclusions,
    ) -> Result<DecodedCodes, QueryError> {
        let (segment, local) = self.locate(doc)?;
        segment.index.document_codes(local, None, exclusions)
    }

    /// A SHA-256 naming the live data: each segment's index data SHA-256 with its
    /// first document and deleted documents (a folder without `segments.json`: its own
    /// index data SHA-256). Another segment set, or other deletions, give another.
    pub fn data_sha256(&self) -> String {
        if self.set.is_none()
            && let [only] = self.segments.as_slice()
        {
            return only.index.query_manifest().index_data_sha256.clone();
        }
        let lines: Vec<String> = self
            .segments
            .iter()
            .map(|segment| {
                format!(
                    "{} {} {:?}",
                    segment.first_doc,
                    segment.index.query_manifest().index_data_sha256,
                    segment.deleted_docs
                )
            })
            .collect();
        saeidx_format::checksum::sha256_hex(lines.join("\n").as_bytes())
    }
}
