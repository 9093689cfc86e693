//! Any index folder, whatever its shape: [`AnyIndex`].
//!
//! Front ends (the command line, `serve`, Python, sharing) open an index with
//! [`AnyIndex::open`] and ask it the same questions with the same request and answer
//! types, whether the folder is one index ([`QueryIndex`]) or an index of segments
//! ([`SegmentedIndex`], a folder with `segments.json`). `segments.json` is read once per
//! open, so one opened index answers from one consistent segment set; reopen it to see
//! a newly published set.

use std::{ops::Range, path::Path};

use saeidx_format::{
    manifest::{JobSpec, Manifest},
    segments::SegmentSet,
};

use crate::{
    DecodedCodes, QueryError, QueryIndex, SegmentedIndex,
    answers::{
        AnalyzedText, DocRef, Explain, ExplainRequest, FeatureRequest, Info, InfoRequest,
        LabelAnswer, PerToken, Sample, SampleRequest, TopFeatures, TopFeaturesRequest, TopTexts,
        TopTextsRequest,
    },
    browse::{DocumentPage, DocumentRequest, Overview, OverviewRequest},
    by_token::{TokenFeatureProfile, TokenFeaturesRequest},
    contrast::{Contrast, ContrastRequest},
    documents::{DocumentList, DocumentsRequest, list_in},
    index::{Exclusions, FeatureReport, FeatureStats, Neighbour, WindowToken},
    layout::QueryCounts,
    registry::{FeatureLabel, Registry},
    restrict::{DocSet, Restriction},
    silent::{SilentContexts, SilentRequest},
    subset::SubsetFeatures,
};

/// An opened index folder: one index, or an index of segments answering as one.
#[expect(
    clippy::large_enum_variant,
    reason = "opened once per folder and kept, never moved in a loop"
)]
pub enum AnyIndex {
    /// A folder without `segments.json`: one index.
    One(QueryIndex),
    /// A folder with `segments.json`: its live segments, as one index.
    Segments(SegmentedIndex),
}

/// Calls the same method on either shape.
macro_rules! either {
    ($self:expr, $index:ident => $call:expr) => {
        match $self {
            AnyIndex::One($index) => $call,
            AnyIndex::Segments($index) => $call,
        }
    };
}

impl AnyIndex {
    /// Opens the index in `dir`: an index of segments when it has `segments.json`
    /// (read once: this index answers from that set), else one index.
    pub fn open(dir: &Path) -> Result<Self, QueryError> {
        if SegmentSet::is_segmented(dir) {
            SegmentedIndex::open(dir).map(Self::Segments)
        } else {
            QueryIndex::open(dir).map(Self::One)
        }
    }

    /// The live segments' count (1 for one index).
    pub fn segment_count(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Segments(index) => index.segments().count(),
        }
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        either!(self, index => index.dir())
    }

    /// What produced the index (shared by every segment).
    pub fn job(&self) -> &JobSpec {
        match self {
            Self::One(index) => &index.manifest().job,
            Self::Segments(index) => index.job(),
        }
    }

    /// The manifest that names the model and SAE (the index's, or its first segment's:
    /// every segment shares the job) and the folder its SAE path is relative to (the
    /// index folder, for an index of segments its top folder: [`Self::dir`]); `None`
    /// for an index of no segments.
    pub fn model_source(&self) -> Option<(&Manifest, &Path)> {
        match self {
            Self::One(index) => Some((index.manifest(), index.dir())),
            Self::Segments(index) => index.segments().next().map(|i| (i.manifest(), index.dir())),
        }
    }

    /// The SAE's number of features.
    pub fn d_sae(&self) -> usize {
        either!(self, index => index.d_sae())
    }

    /// How many live documents `restriction` selects (`None` when it restricts nothing).
    pub fn selected_documents(
        &self,
        restriction: &Restriction,
    ) -> Result<Option<usize>, QueryError> {
        match self {
            Self::One(index) => Ok(index.doc_set(restriction)?.map(|set| set.len())),
            Self::Segments(index) => Ok(index
                .doc_sets(restriction)?
                .map(|sets| sets.iter().map(DocSet::len).sum())),
        }
    }

    /// One past the largest document number.
    pub fn documents(&self) -> u32 {
        either!(self, index => index.documents())
    }

    /// The live documents' totals.
    pub fn counts(&self) -> Result<QueryCounts, QueryError> {
        either!(self, index => index.counts())
    }

    /// The live documents' numbers, in document order.
    pub fn live_documents(&self) -> Vec<u32> {
        match self {
            Self::One(index) => (0..index.documents()).collect(),
            Self::Segments(index) => index.live_documents(),
        }
    }

    /// The per-token codes of live document `doc`, each token's features in increasing
    /// id order; tokens that `exclusions` leave out are skipped.
    pub fn document_codes(
        &self,
        doc: u32,
        exclusions: Exclusions,
    ) -> Result<DecodedCodes, QueryError> {
        match self {
            Self::One(index) => index.document_codes(doc, None, exclusions),
            Self::Segments(index) => index.document_codes(doc, exclusions),
        }
    }

    /// A SHA-256 naming the data the index answers from: one index's index data
    /// SHA-256 ([`crate::layout::QueryManifest::index_data_sha256`]), or a digest of the
    /// live segments' and their deleted documents ([`SegmentedIndex::data_sha256`]).
    pub fn data_sha256(&self) -> String {
        match self {
            Self::One(index) => index.query_manifest().index_data_sha256.clone(),
            Self::Segments(index) => index.data_sha256(),
        }
    }

    /// The saeidx version that wrote the index (its first segment's, for an index of
    /// segments; `None` for an index of no segments).
    pub fn saeidx_version(&self) -> Option<&str> {
        self.model_source()
            .map(|(manifest, _)| manifest.saeidx_version.as_str())
    }

    /// The feature registry (the folder's `labels.json`).
    pub fn registry(&self) -> &Registry {
        either!(self, index => index.registry())
    }

    /// Whether `labels.json` changed on disk since it was read or saved.
    pub fn registry_changed(&self) -> bool {
        either!(self, index => index.registry_changed())
    }

    /// Reads the registry again from the index folder.
    pub fn reload_registry(&mut self) -> Result<&Registry, QueryError> {
        either!(self, index => index.reload_registry())
    }

    /// An error if one of the index's files changed under it since it was opened.
    pub fn check_intact(&self) -> Result<(), QueryError> {
        either!(self, index => index.check_intact())
    }

    /// The global number of the live document `doc` names.
    pub fn resolve(&self, doc: &DocRef) -> Result<u32, QueryError> {
        either!(self, index => index.resolve(doc))
    }

    /// Document `doc`'s id, source and text.
    pub fn document(&self, doc: u32) -> Result<(&str, &str, &str), QueryError> {
        either!(self, index => index.document(doc))
    }

    /// Features active on some counted live token, in increasing id order.
    pub fn live_features(&self) -> Result<Vec<u32>, QueryError> {
        either!(self, index => index.live_features())
    }

    /// `n` live features chosen at random (seeded), in increasing id order.
    pub fn sample_features(&self, n: usize, seed: u64) -> Result<Vec<u32>, QueryError> {
        either!(self, index => index.sample_features(n, seed))
    }

    /// The tokens of document `doc` within `context` of `position`, each with its text
    /// piece and `feature`'s activation ([`QueryIndex::window`]).
    pub fn window(
        &self,
        doc: u32,
        position: u32,
        context: u32,
        feature: u32,
    ) -> Result<Vec<WindowToken>, QueryError> {
        either!(self, index => index.window(doc, position, context, feature))
    }

    /// The byte span of document `doc`'s token at `position` in its text.
    pub fn token_span(&self, doc: u32, position: u32) -> Result<Range<usize>, QueryError> {
        either!(self, index => index.token_span(doc, position))
    }

    /// The live documents `request` asks for ([`crate::list_documents`]), from the
    /// segment set this index was opened with.
    pub fn list_documents(&self, request: &DocumentsRequest) -> Result<DocumentList, QueryError> {
        match self {
            Self::One(index) => list_in(index.dir(), None, request),
            Self::Segments(index) => list_in(index.dir(), index.segment_set(), request),
        }
    }

    /// One page of a live document, coloured by a feature.
    pub fn document_page(&self, request: &DocumentRequest) -> Result<DocumentPage, QueryError> {
        either!(self, index => index.document_page(request))
    }

    /// The strongest features over every counted token of the live documents
    /// `restrict` selects ([`QueryIndex::subset_features`]).
    pub fn subset_features(
        &self,
        restrict: &Restriction,
        request: &TopFeaturesRequest,
    ) -> Result<SubsetFeatures, QueryError> {
        either!(self, index => index.subset_features(restrict, request))
    }

    /// Features over-represented in A relative to B per token, both ways
    /// ([`QueryIndex::contrast`]).
    pub fn contrast(&self, request: &ContrastRequest) -> Result<Contrast, QueryError> {
        either!(self, index => index.contrast(request))
    }

    /// The features of a token (or token sequence) over its live occurrences
    /// ([`QueryIndex::token_features`]).
    pub fn token_features(
        &self,
        request: &TokenFeaturesRequest,
    ) -> Result<TokenFeatureProfile, QueryError> {
        either!(self, index => index.token_features(request))
    }

    /// Up to `request.n` contexts in which a feature is active on no counted token
    /// ([`QueryIndex::silent_contexts`]).
    pub fn silent_contexts(&self, request: &SilentRequest) -> Result<SilentContexts, QueryError> {
        either!(self, index => index.silent_contexts(request))
    }

    /// What the index holds: provenance, counts, feature densities, frequent and rare
    /// features, labels, a sample, documents ([`QueryIndex::overview`]).
    pub fn overview(&self, request: &OverviewRequest) -> Result<Overview, QueryError> {
        either!(self, index => index.overview(request))
    }

    /// The texts where a feature fires most strongly.
    pub fn top_texts(&self, request: &TopTextsRequest) -> Result<TopTexts, QueryError> {
        either!(self, index => index.top_texts(request))
    }

    /// A document's strongest features.
    pub fn top_features(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        either!(self, index => index.top_features(doc, request))
    }

    /// A document's counted tokens, each with its strongest features.
    pub fn per_token(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        either!(self, index => index.per_token(doc, request))
    }

    /// A live text's strongest features.
    pub fn text_top_features(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        either!(self, index => index.text_top_features(text, request))
    }

    /// A live text's counted tokens, each with its strongest features.
    pub fn text_per_token(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        either!(self, index => index.text_per_token(text, request))
    }

    /// Everything about one feature.
    pub fn feature(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
        either!(self, index => index.feature(request))
    }

    /// Statistics of `feature` over the live documents.
    pub fn feature_stats(
        &self,
        feature: u32,
        exclusions: Exclusions,
    ) -> Result<FeatureStats, QueryError> {
        either!(self, index => index.feature_stats(feature, exclusions))
    }

    /// The `n` features whose token sets overlap `feature`'s most.
    pub fn neighbours(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        either!(self, index => index.neighbours(feature, n, exclusions))
    }

    /// Random live features with their statistics and top examples.
    pub fn sample(&self, request: &SampleRequest) -> Result<Sample, QueryError> {
        either!(self, index => index.sample(request))
    }

    /// What the index holds.
    pub fn info(&self, request: &InfoRequest) -> Result<Info, QueryError> {
        either!(self, index => index.info(request))
    }

    /// A feature's label.
    pub fn label(&self, feature: u32) -> Result<LabelAnswer, QueryError> {
        either!(self, index => index.label(feature))
    }

    /// A person sets (or with an empty label, removes) a feature's label
    /// ([`QueryIndex::set_label`]).
    pub fn set_label(
        &mut self,
        feature: u32,
        label: FeatureLabel,
    ) -> Result<LabelAnswer, QueryError> {
        either!(self, index => index.set_label(feature, label))
    }

    /// A person accepts a feature's LLM draft ([`QueryIndex::accept_label`]).
    pub fn accept_label(&mut self, feature: u32) -> Result<LabelAnswer, QueryError> {
        either!(self, index => index.accept_label(feature))
    }

    /// Imports labels ([`QueryIndex::import_labels`]).
    pub fn import_labels(
        &mut self,
        imported: Registry,
        replace: bool,
    ) -> Result<usize, QueryError> {
        either!(self, index => index.import_labels(imported, replace))
    }

    /// A live text's strongest features, then where each fires most in the index.
    pub fn explain(
        &self,
        text: &AnalyzedText,
        request: &ExplainRequest,
    ) -> Result<Explain, QueryError> {
        crate::questions::explain_with(
            text,
            request,
            |ranking| self.text_top_features(text, ranking),
            |top| self.top_texts(top),
        )
    }
}
