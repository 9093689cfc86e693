//! saeidx's query layer: answers "which texts make feature F fire?" and "which features
//! fire on this text?" from an index folder, without the model.
//!
//! [`build()`] turns an index's Parquet tables into the query files of its `query/`
//! folder (see [`layout`] and `FORMAT.md`): compact feature-major postings in blocks
//! with their largest values, token-major codes, the documents with their texts (Arrow
//! IPC), packed per-token metadata and per-feature statistics (Arrow IPC), in bounded
//! memory. [`QueryIndex::open`] memory-maps those files (the Arrow ones decoded
//! zero-copy with arrow-rs, the block files decoded on use); every byte is checked
//! against the xxh3 chunk checksums
//! of `query/manifest.json` before it is used (small metadata at open, data chunks on
//! first touch), and every offset is bounds-checked, so a damaged file is an error,
//! never a panic or a silently wrong answer. A file truncated or rewritten in place
//! while it is mapped is reported as [`QueryError::Changed`] (see `guard`), and
//! [`limits`] bounds every size a question can ask for.
//!
//! Querying never needs MLX: this crate depends on the index format only. Live text
//! analysis (running the model) produces [`TokenCodes`] elsewhere and ranks them with
//! [`rank_features`], the same function the index's own documents go through.

pub mod answers;
mod any;
mod blocks;
pub mod browse;
pub mod build;
pub mod by_token;
mod codec;
mod consistency;
pub mod contrast;
pub mod documents;
mod error;
pub mod filter;
mod guard;
pub mod index;
pub mod layout;
pub mod limits;
pub mod logits;
mod mapped;
mod occurrences;
mod questions;
pub mod rank;
mod reads;
pub mod registry;
pub mod restrict;
pub mod segments;
pub mod silent;
mod sort;
pub mod subset;

pub use answers::{
    AnalyzedText, AnalyzedToken, DocRef, Explain, ExplainRequest, ExplainedFeature,
    FeatureActivation, FeatureRequest, Info, InfoRequest, LabelAnswer, PerToken, RankedFeature,
    Sample, SampleRequest, SampledFeature, Subject, TokenFeatures, TopFeatures, TopFeaturesRequest,
    TopTexts, TopTextsRequest,
};
pub use any::AnyIndex;
pub use browse::{
    DensityHistogram, DocumentFeature, DocumentPage, DocumentRequest, DocumentSummary,
    DocumentToken, FeatureFrequency, IndexProvenance, LabelledFeature, Overview, OverviewRequest,
    TokenActivation,
};
pub use build::{
    BuildOptions, BuildSummary, DEFAULT_BUILD_MEMORY, build, build_unlocked, build_unlocked_with,
    build_with,
};
pub use by_token::{TokenFeature, TokenFeatureProfile, TokenFeaturesRequest, TokenPattern};
pub use consistency::{SegmentsVerified, verify_query_files, verify_segments};
pub use contrast::{Contrast, ContrastFeature, ContrastRequest};
pub use documents::{DocumentEntry, DocumentList, DocumentsRequest, list_documents};
pub use error::QueryError;
pub use filter::{Filter, FilterError, filter_columns};
pub use index::{
    DecoderNeighbour, Exclusions, FeatureReport, FeatureStats, Neighbour, QuantileBand, QueryIndex,
    Rank, Snippet, TextHit,
};
pub use logits::{FeatureLogits, LogitEffect};
pub use rank::{Aggregate, DecodedCodes, FeatureScore, TokenCodes, rank_features};
pub use registry::{FeatureLabel, Registry};
pub use restrict::{DocSet, Restriction};
pub use segments::SegmentedIndex;
pub use silent::{SilentContexts, SilentRequest};
pub use subset::SubsetFeatures;
