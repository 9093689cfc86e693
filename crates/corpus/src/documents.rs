//! The document: what every corpus source yields and every later stage refers to.

use saeidx_format::metadata::MetadataValue;

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Stable identifier.
    pub id: String,
    /// Where the document came from: its file's path relative to the path of the source
    /// that names it, with forward slashes (for a source that is one file: the file's
    /// name).
    pub source: String,
    /// The text.
    pub text: String,
    /// The values of the corpus's metadata columns ([`crate::CorpusSpec::metadata`]), in
    /// declaration order; empty when the corpus keeps no metadata.
    pub metadata: Vec<MetadataValue>,
}
