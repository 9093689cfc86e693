//! saeidx's query layer: answers "which texts make feature F fire?" and "which features
//! fire on this text?" from an index folder, without the model.
//!
//! [`build()`] turns an index's Parquet tables into the query files of its `query/`
//! folder (Arrow IPC files, see [`layout`]): feature-major postings ordered by
//! activation, token-major codes, the documents with their texts, per-token metadata
//! and per-feature statistics. [`QueryIndex::open`] memory-maps those files and decodes
//! them zero-copy with arrow-rs; every byte is checked against the xxh3 chunk checksums
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
pub mod build;
mod consistency;
pub mod documents;
mod error;
pub mod filter;
mod guard;
pub mod index;
pub mod layout;
pub mod limits;
mod mapped;
mod questions;
pub mod rank;
pub mod registry;
pub mod silent;

pub use answers::{
    AnalyzedText, AnalyzedToken, DocRef, Explain, ExplainRequest, ExplainedFeature,
    FeatureActivation, FeatureRequest, Info, InfoRequest, LabelAnswer, PerToken, RankedFeature,
    Sample, SampleRequest, SampledFeature, Subject, TokenFeatures, TopFeatures, TopFeaturesRequest,
    TopTexts, TopTextsRequest,
};
pub use build::{BuildSummary, build, build_unlocked};
pub use consistency::verify_query_files;
pub use documents::{DocumentEntry, DocumentList, DocumentsRequest, list_documents};
pub use error::QueryError;
pub use filter::{Filter, FilterError, filter_columns};
pub use index::{
    Exclusions, FeatureReport, FeatureStats, Neighbour, QuantileBand, QueryIndex, Rank, Snippet,
    TextHit,
};
pub use rank::{Aggregate, FeatureScore, TokenCodes, rank_features};
pub use registry::{FeatureLabel, Registry};
pub use silent::{SilentContexts, SilentRequest};
