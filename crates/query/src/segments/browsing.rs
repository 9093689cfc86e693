//! The browsing and set questions of an index of segments (document pages, the
//! features of a set of documents, contrasts, token profiles, silent contexts, the
//! overview), each answered as one index over the live rows answers it.

use crate::{
    QueryError,
    answers::DocRef,
    browse::{DocumentPage, DocumentRequest},
};

use super::SegmentedIndex;

impl SegmentedIndex {
    /// One page of a live document ([`crate::QueryIndex::document_page`]), with its
    /// global number and the index's labels.
    pub fn document_page(&self, request: &DocumentRequest) -> Result<DocumentPage, QueryError> {
        let number = self.resolve(&request.doc)?;
        let (segment, local) = self.locate(number)?;
        let first_doc = segment.first_doc;
        let mut page = segment
            .index
            .document_page(&DocumentRequest {
                doc: DocRef::Number(local),
                ..request.clone()
            })
            .map_err(|error| match error {
                QueryError::TokenRange {
                    doc,
                    start,
                    end,
                    tokens,
                } => QueryError::TokenRange {
                    doc: doc + first_doc,
                    start,
                    end,
                    tokens,
                },
                other => other,
            })?;
        page.doc += first_doc;
        for feature in &mut page.top_features {
            feature.name = self
                .registry
                .get(feature.feature)
                .and_then(|label| label.name.clone());
        }
        self.intact(Ok(page))
    }
}
