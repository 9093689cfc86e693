//! An index of segments, queried as one: [`SegmentedIndex`].
//!
//! A segmented index folder (`segments.json`, see [`saeidx_format::segments`]) holds
//! immutable segments, each a complete index folder with its own query files, and the
//! documents deleted from them. Every question takes the same request type as
//! [`QueryIndex`]'s, asks each segment, and merges the answers so that they equal those
//! of one index built over the live rows in the same order:
//!
//! - global numbers: a segment's document `d` is `first_doc + d`, its token `t` is the
//!   tokens of the segments before it plus `t`, so ties (broken by token or document
//!   order) are broken exactly as in one index;
//! - top texts: each segment's own top `k` (deleted documents skipped), merged by
//!   value, then global token; the segments are asked strongest largest value first,
//!   each stopping at the first posting that ranks after the k-th best found so far (a
//!   segment whose largest value is below it is not read); per-document sums are summed
//!   per segment and sorted globally;
//! - statistics: with the default exclusions, the segments' stored statistics summed,
//!   less their deleted rows' (histograms binned over powers of two add up exactly; see
//!   [`stats`]); otherwise count, documents, max and sum over the live postings of
//!   every segment, the sum added strongest first (the single build's order);
//! - neighbours, bands and samples: over the live postings and counts of every segment;
//! - restrictions (`--where`, `--docs`): a filter is evaluated over each segment's
//!   documents table with global document numbers, listed documents are resolved
//!   globally, and each segment answers within its selected live documents
//!   ([`SegmentedIndex::doc_sets`]); token patterns are matched per segment (a token
//!   matches by its id and text alone, so every segment's answer is the one index's).
//!
//! A folder without `segments.json` (every index written before segments) is opened as
//! one segment holding every document, and answers exactly as [`QueryIndex`] does.
//! Labels live in the index folder's `labels.json`, shared by all segments.

mod stats;

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use saeidx_format::{
    manifest::JobSpec,
    segments::{SegmentRecord, SegmentSet},
};

use crate::{
    QueryError, QueryIndex,
    answers::{
        AnalyzedText, DocRef, FeatureRequest, Info, InfoRequest, LabelAnswer, PerToken, Sample,
        SampleRequest, SampledFeature, Subject, TopFeatures, TopFeaturesRequest, TopTexts,
        TopTextsRequest,
    },
    build::histogram_bin,
    by_token::TokenIds,
    filter::{Filter, filter_columns},
    index::Scope,
    index::{
        Computed, Exclusions, FeatureReport, FeatureStats, Neighbour, QuantileBand, Rank,
        RegistryStamp, TextHit, WindowToken, ranked_neighbours, sample_among,
    },
    layout::{HISTOGRAM_BINS, QueryCounts},
    limits::Limit,
    questions,
    registry::{FeatureLabel, Registry},
    restrict::{DocSet, Restriction},
};

mod browsing;
mod codes;
mod rest;

/// One opened segment.
struct Segment {
    index: QueryIndex,
    /// Global number of its first document.
    first_doc: u32,
    /// Global number of its first token.
    first_token: u64,
    /// Its deleted documents, as local document and local token ranges, sorted.
    deleted_docs: Vec<Range<u32>>,
    deleted_tokens: Vec<Range<u64>>,
    /// What its deleted documents hold, per feature (read on first use).
    deleted_rows: OnceLock<stats::DeletedRows>,
    /// Each feature's largest value (read on first use).
    strongest: OnceLock<Vec<Option<f32>>>,
}

impl Segment {
    fn new(
        index: QueryIndex,
        record: &SegmentRecord,
        first_token: u64,
    ) -> Result<Self, QueryError> {
        let first_doc = record.first_doc;
        let deleted_docs: Vec<Range<u32>> = record
            .deleted
            .iter()
            .map(|[start, end]| start - first_doc..end - first_doc)
            .collect();
        let mut deleted_tokens = Vec::with_capacity(deleted_docs.len());
        for docs in &deleted_docs {
            let (start, _) = index.doc_tokens(docs.start)?;
            let (last, count) = index.doc_tokens(docs.end - 1)?;
            deleted_tokens.push(start..last + u64::from(count));
        }
        Ok(Self {
            index,
            first_doc,
            first_token,
            deleted_docs,
            deleted_tokens,
            deleted_rows: OnceLock::new(),
            strongest: OnceLock::new(),
        })
    }

    /// Feature `f`'s largest value in this segment (deleted documents' too), `None`
    /// without postings; every feature's is read on first use (two words each).
    fn strongest(&self, f: usize) -> Result<Option<f32>, QueryError> {
        let all = match self.strongest.get() {
            Some(all) => all,
            None => {
                let all = self.index.postings.strongest_values()?;
                self.strongest.get_or_init(|| all)
            }
        };
        Ok(all.get(f).copied().flatten())
    }

    fn doc_deleted(&self, local: u32) -> bool {
        let at = self.deleted_docs.partition_point(|r| r.end <= local);
        self.deleted_docs.get(at).is_some_and(|r| r.start <= local)
    }

    fn token_deleted(&self, local: u64) -> bool {
        let at = self.deleted_tokens.partition_point(|r| r.end <= local);
        self.deleted_tokens
            .get(at)
            .is_some_and(|r| r.start <= local)
    }

    fn documents(&self) -> u32 {
        self.index.documents()
    }

    /// `f`'s postings kept by `exclusions` and not deleted (in `within`'s documents
    /// only, a set of live documents, when given): (local token, value), strongest
    /// first, ties in token order.
    fn kept(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<Vec<(u64, f32)>, QueryError> {
        let mut kept = self.index.kept_postings(f, exclusions, within)?;
        if within.is_none() && !self.deleted_tokens.is_empty() {
            kept.retain(|(token, _)| !self.token_deleted(*token));
        }
        Ok(kept)
    }

    /// Counted tokens `f` is active on, deleted documents left out.
    fn count(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<u64, QueryError> {
        if within.is_none() && self.deleted_tokens.is_empty() {
            self.index.count(f, exclusions, None)
        } else {
            Ok(self.kept(f, exclusions, within)?.len() as u64)
        }
    }

    /// Tokens `exclusions` leave in, deleted documents left out.
    fn counted_tokens(
        &self,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<u64, QueryError> {
        let mut counted = self.index.counted_tokens(exclusions, within)?;
        if within.is_some() {
            return Ok(counted);
        }
        let mask = exclusions.mask();
        for range in &self.deleted_tokens {
            self.index.tokens.scan(range.clone(), |_, entry| {
                counted -= u64::from(entry.flags & mask == 0);
                Ok(())
            })?;
        }
        Ok(counted)
    }

    /// The live documents of this segment that `filter` (over global document numbers)
    /// and `listed` (global numbers) select, as a set of local documents.
    fn select(
        &self,
        filter: Option<&Filter>,
        listed: Option<&HashSet<u32>>,
    ) -> Result<DocSet, QueryError> {
        let Some(filter) = filter else {
            let mut local: Vec<u32> = (0..self.documents()).collect();
            local.retain(|&doc| self.live_and_listed(doc, listed));
            return self.index.doc_set_of(local);
        };
        // The segment's documents table numbers its documents globally: made local in
        // place.
        let mut local = filter.matching_documents(self.index.metadata_table()?)?;
        local.retain_mut(|doc| match doc.checked_sub(self.first_doc) {
            Some(number) => {
                *doc = number;
                self.live_and_listed(number, listed)
            }
            None => false,
        });
        self.index.doc_set_of(local)
    }

    /// Whether local document `doc` is live and, when documents are `listed` (global
    /// numbers), listed.
    fn live_and_listed(&self, doc: u32, listed: Option<&HashSet<u32>>) -> bool {
        !self.doc_deleted(doc) && listed.is_none_or(|l| l.contains(&(self.first_doc + doc)))
    }

    fn hit(&self, token: u64, value: f32, score: f32, context: u32) -> Result<TextHit, QueryError> {
        let mut hit = self.index.hit(token, value, score, context)?;
        hit.doc += self.first_doc;
        Ok(hit)
    }
}

/// A posting of the whole index: value, global token, segment, local token.
type Posting = (f32, u64, usize, u64);

/// What a question looks at, per segment: the live documents a restriction selects
/// (local numbers; `None`: every live document) and the token ids a pattern matches.
#[derive(Clone, Copy, Default)]
struct Scopes<'a> {
    within: Option<&'a [DocSet]>,
    tokens: Option<&'a [TokenIds]>,
}

impl<'a> Scopes<'a> {
    /// Only the documents of `within` (all live ones when `None`).
    fn docs(within: Option<&'a [DocSet]>) -> Self {
        Self {
            within,
            tokens: None,
        }
    }

    /// Segment `s`'s document set.
    fn within(&self, s: usize) -> Option<&'a DocSet> {
        self.within.map(|sets| &sets[s])
    }
}

/// Strongest first, ties in global token order.
fn by_strength(a: &Posting, b: &Posting) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// An index of one or more segments, answering as one index (see the module docs).
pub struct SegmentedIndex {
    dir: PathBuf,
    set: Option<SegmentSet>,
    segments: Vec<Segment>,
    registry: Registry,
    registry_stamp: Option<RegistryStamp>,
    d_sae: usize,
    /// The job every segment shares.
    job: JobSpec,
    /// Every feature's statistics, summed (built on first use).
    summed: OnceLock<Option<stats::SummedTable>>,
}

impl SegmentedIndex {
    /// Opens the index in `dir`: the segments `segments.json` names (each checked
    /// against it), or the folder itself when it has no `segments.json`.
    pub fn open(dir: &Path) -> Result<Self, QueryError> {
        let Some(set) = SegmentSet::read(dir)? else {
            let index = QueryIndex::open(dir)?;
            let registry = index.registry().clone();
            let d_sae = index.d_sae();
            let job = index.manifest().job.clone();
            let record = SegmentRecord {
                name: ".".into(),
                first_doc: 0,
                documents: u64::from(index.documents()),
                tokens: index.query_manifest().counts.tokens,
                deleted: Vec::new(),
            };
            return Ok(Self {
                registry_stamp: RegistryStamp::of(dir),
                dir: dir.to_path_buf(),
                set: None,
                segments: vec![Segment::new(index, &record, 0)?],
                registry,
                d_sae,
                job,
                summed: OnceLock::new(),
            });
        };
        let mut segments = Vec::with_capacity(set.segments.len());
        let mut first_token = 0u64;
        for record in &set.segments {
            let index = QueryIndex::open(&SegmentSet::segment_dir(dir, &record.name))?;
            set.check_segment(dir, record, index.manifest())?;
            let tokens = index.query_manifest().counts.tokens;
            segments.push(Segment::new(index, record, first_token)?);
            first_token += tokens;
        }
        let d_sae = set.job.sae.d_sae;
        let registry_stamp = RegistryStamp::of(dir);
        Ok(Self {
            registry: Registry::load(dir, d_sae)?,
            registry_stamp,
            dir: dir.to_path_buf(),
            job: set.job.clone(),
            set: Some(set),
            segments,
            d_sae,
            summed: OnceLock::new(),
        })
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `segments.json`, when the folder has one.
    pub fn segment_set(&self) -> Option<&SegmentSet> {
        self.set.as_ref()
    }

    /// The segments' query indexes, in document order.
    pub fn segments(&self) -> impl Iterator<Item = &QueryIndex> {
        self.segments.iter().map(|s| &s.index)
    }

    /// The SAE's number of features.
    pub fn d_sae(&self) -> usize {
        self.d_sae
    }

    /// The feature registry (the index folder's `labels.json`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What produced the index (the job every segment shares).
    pub fn job(&self) -> &JobSpec {
        &self.job
    }

    /// Changes the registry as it is on disk, under its lock ([`Registry::update`]),
    /// and keeps the result.
    pub fn update_registry<T>(
        &mut self,
        change: impl FnOnce(&mut Registry) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let (registry, value) = Registry::update(&self.dir, self.d_sae, change)?;
        self.registry = registry;
        self.registry_stamp = RegistryStamp::of(&self.dir);
        Ok(value)
    }

    /// Reads the registry again from the index folder.
    pub fn reload_registry(&mut self) -> Result<&Registry, QueryError> {
        let stamp = RegistryStamp::of(&self.dir);
        self.registry = Registry::load(&self.dir, self.d_sae)?;
        self.registry_stamp = stamp;
        Ok(&self.registry)
    }

    /// Whether `labels.json` changed on disk since the registry was read or saved.
    pub fn registry_changed(&self) -> bool {
        RegistryStamp::of(&self.dir) != self.registry_stamp
    }

    /// A person sets (or with an empty label, removes) a feature's label
    /// ([`QueryIndex::set_label`]).
    pub fn set_label(
        &mut self,
        feature: u32,
        label: FeatureLabel,
    ) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        self.update_registry(questions::edit_label(feature, label))?;
        self.label(feature)
    }

    /// A person accepts a feature's LLM draft ([`QueryIndex::accept_label`]).
    pub fn accept_label(&mut self, feature: u32) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        self.update_registry(questions::accept_draft(feature))?;
        self.label(feature)
    }

    /// Imports labels ([`QueryIndex::import_labels`]); returns how many.
    pub fn import_labels(
        &mut self,
        imported: Registry,
        replace: bool,
    ) -> Result<usize, QueryError> {
        let count = imported.len();
        self.update_registry(questions::import(imported, replace))?;
        Ok(count)
    }

    /// A live text's strongest features ([`QueryIndex::text_top_features`]).
    pub fn text_top_features(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        questions::text_top_features(&self.registry, self.d_sae, text, request)
    }

    /// A live text's counted tokens, each with its strongest features.
    pub fn text_per_token(
        &self,
        text: &AnalyzedText,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        questions::text_per_token(text, request)
    }

    /// An error if a segment's files changed under it since it was opened (every file
    /// of every segment is checked).
    pub fn check_intact(&self) -> Result<(), QueryError> {
        for segment in &self.segments {
            segment.index.check_intact()?;
        }
        Ok(())
    }

    /// One past the largest document number.
    pub fn documents(&self) -> u32 {
        self.segments
            .last()
            .map_or(0, |s| s.first_doc + s.documents())
    }

    fn check_feature(&self, feature: u32) -> Result<usize, QueryError> {
        if (feature as usize) < self.d_sae {
            Ok(feature as usize)
        } else {
            Err(QueryError::FeatureOutOfRange {
                feature,
                d_sae: self.d_sae,
            })
        }
    }

    fn unknown(&self, doc: String, hint: &'static str) -> QueryError {
        QueryError::UnknownDocument {
            doc,
            documents: u64::from(self.documents()),
            hint,
        }
    }

    /// The segment holding live global document `doc`, and its local number.
    fn locate(&self, doc: u32) -> Result<(&Segment, u32), QueryError> {
        let at = self
            .segments
            .partition_point(|s| s.first_doc + s.documents() <= doc);
        match self.segments.get(at) {
            Some(segment) if segment.first_doc <= doc => {
                let local = doc - segment.first_doc;
                if segment.doc_deleted(local) {
                    Err(self.unknown(
                        doc.to_string(),
                        "; it was removed from the corpus or changed (a changed document has a new number)",
                    ))
                } else {
                    Ok((segment, local))
                }
            }
            _ => Err(self.unknown(doc.to_string(), "; documents are numbered from 0")),
        }
    }

    /// The global number of the live document `doc` names (an id names its newest live
    /// version).
    pub fn resolve(&self, doc: &DocRef) -> Result<u32, QueryError> {
        match doc {
            DocRef::Number(number) => self.locate(*number).map(|_| *number),
            DocRef::Id(id) => {
                for segment in self.segments.iter().rev() {
                    match segment.index.document_by_id(id) {
                        Ok(local) if !segment.doc_deleted(local) => {
                            return Ok(segment.first_doc + local);
                        }
                        Ok(_) | Err(QueryError::UnknownDocument { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(self.unknown(
                    format!("{id:?}"),
                    "; ids are the corpus's id field, or file:line",
                ))
            }
        }
    }

    /// Live document `doc`'s id, source and text.
    pub fn document(&self, doc: u32) -> Result<(&str, &str, &str), QueryError> {
        let (segment, local) = self.locate(doc)?;
        segment.index.document(local)
    }

    /// Calls `each` with every live document's global number, id and text, in
    /// document order.
    pub fn each_live_document(
        &self,
        mut each: impl FnMut(u32, &str, &str),
    ) -> Result<(), QueryError> {
        for segment in &self.segments {
            for local in 0..segment.documents() {
                if !segment.doc_deleted(local) {
                    let (id, _, text) = segment.index.document_texts(local)?;
                    each(segment.first_doc + local, id, text);
                }
            }
        }
        self.intact(Ok(()))
    }

    /// A feature's label.
    pub fn label(&self, feature: u32) -> Result<LabelAnswer, QueryError> {
        self.check_feature(feature)?;
        Ok(LabelAnswer {
            feature,
            label: self.registry.get(feature).cloned(),
        })
    }

    /// The live documents `restriction` selects, as a set of local documents per
    /// segment (`None` when it restricts nothing). A filter is evaluated over each
    /// segment's documents table with global document numbers (`doc`); listed documents
    /// must be live.
    pub fn doc_sets(&self, restriction: &Restriction) -> Result<Option<Vec<DocSet>>, QueryError> {
        let sets = self.selected(restriction);
        self.intact(sets)
    }

    /// [`SegmentedIndex::doc_sets`], unchecked: for a question that checks its answer.
    fn selected(&self, restriction: &Restriction) -> Result<Option<Vec<DocSet>>, QueryError> {
        if restriction.is_all() {
            return Ok(None);
        }
        let filter = restriction
            .filter
            .as_deref()
            .map(|text| Filter::parse(text, &filter_columns(&self.job.corpus.metadata)))
            .transpose()?;
        let listed: Option<HashSet<u32>> = restriction
            .docs
            .as_ref()
            .map(|docs| docs.iter().map(|doc| self.resolve(doc)).collect())
            .transpose()?;
        let sets: Result<Vec<DocSet>, QueryError> = self
            .segments
            .iter()
            .map(|segment| segment.select(filter.as_ref(), listed.as_ref()))
            .collect();
        sets.map(Some)
    }

    /// The texts where a feature fires most strongly ([`QueryIndex::top_texts`]).
    pub fn top_texts(&self, request: &TopTextsRequest) -> Result<TopTexts, QueryError> {
        Limit::K.check(request.k)?;
        Limit::Context.check(request.context)?;
        let within = self.unless_changed(self.selected(&request.restrict))?;
        let tokens = request
            .token
            .as_ref()
            .map(|pattern| {
                self.segments
                    .iter()
                    .map(|segment| segment.index.token_ids(pattern))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let scopes = Scopes {
            within: within.as_deref(),
            tokens: tokens.as_deref(),
        };
        let texts = self.ranked_texts(
            request.feature,
            request.k,
            request.rank,
            request.context,
            request.exclusions,
            scopes,
        )?;
        Ok(TopTexts {
            feature: request.feature,
            label: self.registry.get(request.feature).cloned(),
            rank: request.rank,
            exclusions: request.exclusions,
            restrict: request.restrict.clone(),
            token: request.token.clone(),
            texts,
        })
    }

    fn ranked_texts(
        &self,
        feature: u32,
        k: usize,
        rank: Rank,
        context: u32,
        exclusions: Exclusions,
        scopes: Scopes<'_>,
    ) -> Result<Vec<TextHit>, QueryError> {
        let f = self.check_feature(feature)?;
        // (value, global token, segment, local token, score)
        let mut chosen: Vec<(Posting, f32)> = Vec::with_capacity(k.saturating_mul(2).min(2048));
        if rank == Rank::DocumentSum {
            chosen = self.document_sums(f, k, exclusions, scopes)?;
        } else {
            for s in self.by_strongest(f)? {
                if scopes.within(s).is_some_and(DocSet::is_empty) {
                    continue;
                }
                let segment = &self.segments[s];
                // The k-th best so far: what a segment must beat to count.
                let bar = chosen.get(k.wrapping_sub(1)).map(|(p, _)| (p.0, p.1));
                let scope = Scope {
                    within: scopes.within(s),
                    tokens: scopes.tokens.map(|ids| &ids[s]),
                };
                let top = segment_top(segment, f, k, rank, exclusions, scope, bar)?;
                for (token, value) in top {
                    chosen.push(((value, segment.first_token + token, s, token), value));
                }
                chosen.sort_by(|a, b| by_strength(&a.0, &b.0));
                chosen.truncate(k);
            }
        }
        let hits = chosen
            .into_iter()
            .map(|((value, _, s, token), score)| self.segments[s].hit(token, value, score, context))
            .collect();
        self.intact(hits)
    }

    /// The segments holding postings of `f`, strongest largest value first (then in
    /// order): asked in this order, the first segments set a high bar for the others
    /// ([`segment_top`]), and a segment whose largest value is below the bar is not
    /// asked at all.
    fn by_strongest(&self, f: usize) -> Result<Vec<usize>, QueryError> {
        let mut tops = Vec::with_capacity(self.segments.len());
        for (s, segment) in self.segments.iter().enumerate() {
            if let Some(top) = segment.strongest(f)? {
                tops.push((top, s));
            }
        }
        tops.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(tops.into_iter().map(|(_, s)| s).collect())
    }

    /// The `k` live documents with the largest sums of `f`, each with its strongest
    /// token, sorted by sum, then document.
    fn document_sums(
        &self,
        f: usize,
        k: usize,
        exclusions: Exclusions,
        scopes: Scopes<'_>,
    ) -> Result<Vec<(Posting, f32)>, QueryError> {
        // Global document → (sum, strongest posting).
        let mut docs: Vec<(u32, f64, Posting)> = Vec::new();
        for (s, segment) in self.segments.iter().enumerate() {
            let index = &segment.index;
            let mut by_doc: HashMap<u32, (f64, Posting)> = HashMap::new();
            for (token, value) in segment.kept(f, exclusions, scopes.within(s))? {
                if let Some(ids) = scopes.tokens
                    && !index.token_matches(&ids[s], token, index.token_entry(token)?)?
                {
                    continue;
                }
                let (doc, _) = index.token_doc(token)?;
                // Postings come strongest first, so the first token seen is the max.
                let posting = (value, segment.first_token + token, s, token);
                by_doc.entry(doc).or_insert((0.0, posting)).0 += f64::from(value);
            }
            docs.extend(
                by_doc
                    .into_iter()
                    .map(|(doc, (sum, posting))| (segment.first_doc + doc, sum, posting)),
            );
        }
        docs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(docs
            .into_iter()
            .take(k)
            .map(|(_, sum, posting)| (posting, sum as f32))
            .collect())
    }

    /// A live document's strongest features ([`QueryIndex::top_features`]).
    pub fn top_features(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<TopFeatures, QueryError> {
        let number = self.resolve(doc)?;
        let (segment, local) = self.locate(number)?;
        let mut answer = segment
            .index
            .top_features(&DocRef::Number(local), request)?;
        globalize(&mut answer.of, segment.first_doc);
        for feature in &mut answer.features {
            feature.label = self.registry.get(feature.feature).cloned();
        }
        Ok(answer)
    }

    /// A live document's counted tokens, each with its strongest features
    /// ([`QueryIndex::per_token`]).
    pub fn per_token(
        &self,
        doc: &DocRef,
        request: &TopFeaturesRequest,
    ) -> Result<PerToken, QueryError> {
        let number = self.resolve(doc)?;
        let (segment, local) = self.locate(number)?;
        let mut answer = segment.index.per_token(&DocRef::Number(local), request)?;
        globalize(&mut answer.of, segment.first_doc);
        Ok(answer)
    }

    /// `f`'s live postings kept by `exclusions` in every segment (in the documents of
    /// `within` only, when given), strongest first, ties in global token order.
    fn kept(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&[DocSet]>,
    ) -> Result<Vec<Posting>, QueryError> {
        let scopes = Scopes::docs(within);
        let mut all = Vec::new();
        for (s, segment) in self.segments.iter().enumerate() {
            all.extend(
                segment
                    .kept(f, exclusions, scopes.within(s))?
                    .into_iter()
                    .map(|(token, value)| (value, segment.first_token + token, s, token)),
            );
        }
        all.sort_by(by_strength);
        Ok(all)
    }

    /// Statistics of `feature` over the live documents ([`QueryIndex::feature_stats`]).
    pub fn feature_stats(
        &self,
        feature: u32,
        exclusions: Exclusions,
    ) -> Result<FeatureStats, QueryError> {
        self.feature_stats_within(feature, exclusions, None)
    }

    /// Statistics of `feature` over the documents of `within` only (every live one when
    /// `None`; see [`SegmentedIndex::doc_sets`] and [`QueryIndex::feature_stats_within`]).
    pub fn feature_stats_within(
        &self,
        feature: u32,
        exclusions: Exclusions,
        within: Option<&[DocSet]>,
    ) -> Result<FeatureStats, QueryError> {
        let f = self.check_feature(feature)?;
        if exclusions == Exclusions::default() && within.is_none() {
            let table = self.summed();
            if let Some(stats) = self.intact(table)?.and_then(|table| table.stats(feature)) {
                return Ok(stats);
            }
        }
        let stats = self
            .kept(f, exclusions, within)
            .and_then(|kept| self.stats_of(feature, &kept, exclusions, within));
        self.intact(stats)
    }

    fn stats_of(
        &self,
        feature: u32,
        kept: &[Posting],
        exclusions: Exclusions,
        within: Option<&[DocSet]>,
    ) -> Result<FeatureStats, QueryError> {
        let scopes = Scopes::docs(within);
        let f = feature as usize;
        let max = kept.first().map_or(0.0, |p| p.0.max(0.0));
        let mut histogram = vec![0u32; HISTOGRAM_BINS];
        let mut docs = HashSet::new();
        let mut sum = 0.0f64;
        for &(value, _, s, token) in kept {
            histogram[histogram_bin(value, max)] += 1;
            sum += f64::from(value);
            let segment = &self.segments[s];
            docs.insert(segment.first_doc + segment.index.token_doc(token)?.0);
        }
        let mut counted = 0u64;
        let mut postings = 0u64;
        for (s, segment) in self.segments.iter().enumerate() {
            counted += segment.counted_tokens(exclusions, scopes.within(s))?;
            postings += segment.count(f, Exclusions::none(), scopes.within(s))?;
        }
        Ok(Computed {
            count: kept.len() as u64,
            documents: docs.len() as u64,
            max,
            sum,
            histogram,
        }
        .stats(feature, counted, postings, exclusions))
    }

    /// The `n` features whose token sets overlap `feature`'s most
    /// ([`QueryIndex::neighbours`]).
    pub fn neighbours(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        self.neighbours_within(feature, n, exclusions, None)
    }

    /// [`SegmentedIndex::neighbours`] over the documents of `within` only
    /// ([`QueryIndex::neighbours_within`]).
    pub fn neighbours_within(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
        within: Option<&[DocSet]>,
    ) -> Result<Vec<Neighbour>, QueryError> {
        Limit::Neighbours.check(n)?;
        let f = self.check_feature(feature)?;
        let neighbours = self
            .kept(f, exclusions, within)
            .and_then(|kept| self.neighbours_of(feature, &kept, n, exclusions, within));
        self.intact(neighbours)
    }

    fn neighbours_of(
        &self,
        feature: u32,
        kept: &[Posting],
        n: usize,
        exclusions: Exclusions,
        within: Option<&[DocSet]>,
    ) -> Result<Vec<Neighbour>, QueryError> {
        let scopes = Scopes::docs(within);
        let mut together: HashMap<u32, u64> = HashMap::new();
        for &(_, _, s, token) in kept {
            self.segments[s]
                .index
                .codes
                .decode(token..token + 1, |_, features, _| {
                    for &other in features {
                        if other != feature {
                            *together.entry(other).or_default() += 1;
                        }
                    }
                    Ok(())
                })?;
        }
        let mut counted = Vec::with_capacity(together.len());
        for (other, both) in together {
            let mut count = 0;
            for (s, segment) in self.segments.iter().enumerate() {
                count += segment.count(other as usize, exclusions, scopes.within(s))?;
            }
            counted.push((other, both, count));
        }
        Ok(ranked_neighbours(kept.len() as u64, counted, n))
    }

    /// Everything about one feature ([`QueryIndex::feature`]).
    pub fn feature(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
        Limit::Examples.check(request.examples)?;
        Limit::Examples.check(request.per_band)?;
        Limit::Bands.check(request.bands)?;
        Limit::Neighbours.check(request.neighbours)?;
        Limit::Context.check(request.context)?;
        let within = self.unless_changed(self.selected(&request.restrict))?;
        let report = self.report(request, within.as_deref());
        self.intact(report)
    }

    fn report(
        &self,
        request: &FeatureRequest,
        within: Option<&[DocSet]>,
    ) -> Result<FeatureReport, QueryError> {
        let FeatureRequest {
            feature,
            examples,
            bands,
            per_band,
            neighbours,
            context,
            exclusions,
            restrict: _,
        } = request.clone();
        let f = self.check_feature(feature)?;
        let kept = self.kept(f, exclusions, within)?;
        let top_texts = self.ranked_texts(
            feature,
            examples,
            Rank::Token,
            context,
            exclusions,
            Scopes::docs(within),
        )?;
        let mut banded = Vec::with_capacity(bands);
        for band in 0..bands {
            let start = band * kept.len() / bands;
            let end = (band + 1) * kept.len() / bands;
            if start == end {
                continue;
            }
            let len = end - start;
            let picks = per_band.min(len);
            let mut chosen = Vec::with_capacity(picks);
            for i in 0..picks {
                let (value, _, s, token) = kept[start + i * len / picks];
                chosen.push(self.segments[s].hit(token, value, value, context)?);
            }
            banded.push(QuantileBand {
                from: band as f64 / bands as f64,
                to: (band + 1) as f64 / bands as f64,
                max_activation: kept[start].0,
                min_activation: kept[end - 1].0,
                examples: chosen,
            });
        }
        let logits = match self.segments.first() {
            Some(segment) => segment.index.feature_logits(feature)?,
            None => None,
        };
        Ok(FeatureReport {
            stats: self.stats_of(feature, &kept, exclusions, within)?,
            label: self.registry.get(feature).cloned(),
            top_texts,
            bands: banded,
            neighbours: self.neighbours_of(feature, &kept, neighbours, exclusions, within)?,
            logits,
            decoder_neighbours: None,
        })
    }

    /// Live features' counts of counted tokens (default exclusions), deleted documents
    /// left out: each segment's stored counts less its deleted tokens' codes.
    fn live_counts(&self) -> Result<Vec<u64>, QueryError> {
        let mut counts = vec![0u64; self.d_sae];
        let mask = Exclusions::default().mask();
        for segment in &self.segments {
            let index = &segment.index;
            let stored = index.range(
                &index.features.file,
                crate::layout::QueryFile::Features,
                &index.features.count,
                0,
                self.d_sae as u64,
            )?;
            for (total, count) in counts.iter_mut().zip(stored) {
                *total += u64::from(*count);
            }
            for range in &segment.deleted_tokens {
                let mut kept = Vec::new();
                index.tokens.scan(range.clone(), |_, entry| {
                    kept.push(entry.flags & mask == 0);
                    Ok(())
                })?;
                index.codes.decode(range.clone(), |token, features, _| {
                    if kept[(token - range.start) as usize] {
                        for &feature in features {
                            counts[feature as usize] -= 1;
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(counts)
    }

    /// Features active on some counted live token, in increasing id order.
    pub fn live_features(&self) -> Result<Vec<u32>, QueryError> {
        let counts = self.live_counts();
        let counts = self.intact(counts)?;
        Ok((0u32..)
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|(feature, _)| feature)
            .collect())
    }

    /// Features active on some counted token of the documents of `within`, in
    /// increasing id order.
    fn live_within(&self, within: &[DocSet]) -> Result<Vec<u32>, QueryError> {
        let mut live = Vec::new();
        for (segment, set) in self.segments.iter().zip(within) {
            live.extend(segment.index.live_within(set, Exclusions::default())?);
        }
        live.sort_unstable();
        live.dedup();
        self.intact(Ok(live))
    }

    /// `n` live features chosen at random (seeded), in increasing id order
    /// ([`QueryIndex::sample_features`]).
    pub fn sample_features(&self, n: usize, seed: u64) -> Result<Vec<u32>, QueryError> {
        sample_among(&self.live_features()?, n, seed)
    }

    /// The tokens of live document `doc` within `context` of `position`, each with
    /// `feature`'s activation ([`QueryIndex::window`]).
    pub fn window(
        &self,
        doc: u32,
        position: u32,
        context: u32,
        feature: u32,
    ) -> Result<Vec<WindowToken>, QueryError> {
        let (segment, local) = self.locate(doc)?;
        segment.index.window(local, position, context, feature)
    }

    /// The byte span of live document `doc`'s token at `position` in its text
    /// ([`QueryIndex::token_span`]).
    pub fn token_span(&self, doc: u32, position: u32) -> Result<Range<usize>, QueryError> {
        let (segment, local) = self.locate(doc)?;
        segment.index.token_span(local, position)
    }

    /// Random live features with their statistics and top examples
    /// ([`QueryIndex::sample`]).
    pub fn sample(&self, request: &SampleRequest) -> Result<Sample, QueryError> {
        Limit::Examples.check(request.examples)?;
        Limit::Context.check(request.context)?;
        let within = self.unless_changed(self.selected(&request.restrict))?;
        let within = within.as_deref();
        let picked = match within {
            None => self.sample_features(request.n, request.seed)?,
            Some(sets) => sample_among(&self.live_within(sets)?, request.n, request.seed)?,
        };
        let exclusions = Exclusions::default();
        let mut features = Vec::with_capacity(picked.len());
        for feature in picked {
            features.push(SampledFeature {
                feature,
                label: self.registry.get(feature).cloned(),
                stats: self.feature_stats_within(feature, exclusions, within)?,
                top_texts: self.ranked_texts(
                    feature,
                    request.examples,
                    Rank::Token,
                    request.context,
                    exclusions,
                    Scopes::docs(within),
                )?,
            });
        }
        self.intact(Ok(Sample {
            restrict: request.restrict.clone(),
            seed: request.seed,
            features,
        }))
    }

    /// The live documents' totals.
    pub fn counts(&self) -> Result<QueryCounts, QueryError> {
        let mut total = QueryCounts {
            documents: 0,
            tokens: 0,
            content_tokens: 0,
            nonzeros: 0,
            features: self.d_sae as u64,
        };
        for segment in &self.segments {
            let counts = segment.index.counts()?;
            let deleted: u64 = segment
                .deleted_docs
                .iter()
                .map(|r| u64::from(r.end - r.start))
                .sum();
            total.documents += counts.documents - deleted;
            total.content_tokens += segment.counted_tokens(Exclusions::default(), None)?;
            let mut tokens = counts.tokens;
            let mut nonzeros = counts.nonzeros;
            for range in &segment.deleted_tokens {
                tokens -= range.end - range.start;
                segment
                    .index
                    .codes
                    .decode(range.clone(), |_, features, _| {
                        nonzeros -= features.len() as u64;
                        Ok(())
                    })?;
            }
            total.tokens += tokens;
            total.nonzeros += nonzeros;
        }
        Ok(total)
    }

    /// What the index holds ([`QueryIndex::info`]), over its live documents.
    pub fn info(&self, request: &InfoRequest) -> Result<Info, QueryError> {
        let counts = self.live_counts()?;
        let live: Vec<u32> = (0u32..)
            .zip(&counts)
            .filter(|(_, c)| **c > 0)
            .map(|(f, _)| f)
            .collect();
        let dead: Vec<u32> = (0u32..)
            .zip(&counts)
            .filter(|(_, c)| **c == 0)
            .map(|(f, _)| f)
            .collect();
        let job = &self.job;
        Ok(Info {
            index: self.dir.display().to_string(),
            model: job.model.source.clone(),
            sae: job.sae.source.clone(),
            hook: job.hook.clone(),
            d_sae: self.d_sae,
            counts: self.counts()?,
            live_features: live.len(),
            dead_features: dead.len(),
            dead: request.list_dead.then_some(dead),
            labels: self.registry.len(),
        })
    }

    /// `result`, its error replaced by [`QueryError::Changed`] when a file read so far
    /// changed (an answer that goes on is checked when it is done).
    fn unless_changed<T>(&self, result: Result<T, QueryError>) -> Result<T, QueryError> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => self.intact(Err(error)),
        }
    }

    /// `result`, unless a file it was computed from changed: the files of every segment
    /// read since this thread's last check ([`crate::reads`]) are checked, one `fstat`
    /// each (a segment the question did not read costs nothing).
    fn intact<T>(&self, result: Result<T, QueryError>) -> Result<T, QueryError> {
        let ticket = crate::reads::ticket();
        for segment in &self.segments {
            segment.index.check_read_since(ticket)?;
        }
        crate::reads::finish();
        result
    }
}

/// One segment's top `k` live postings of `f` in `scope` (per token, or per document by
/// max): (local token, value), strongest first, ties in token order. With `bar` (the
/// k-th best (value, global token) of the segments asked before), it stops at the first
/// posting that ranks after it: it and every later one would not make the top `k`.
fn segment_top(
    segment: &Segment,
    f: usize,
    k: usize,
    rank: Rank,
    exclusions: Exclusions,
    scope: Scope<'_>,
    bar: Option<(f32, u64)>,
) -> Result<Vec<(u64, f32)>, QueryError> {
    if let Some((value, _)) = bar
        && segment.strongest(f)?.is_none_or(|top| top < value)
    {
        return Ok(Vec::new());
    }
    let index = &segment.index;
    let mask = exclusions.mask();
    let counts = |token: u64| -> Result<bool, QueryError> {
        let entry = index.token_entry(token)?;
        if entry.flags & mask != 0 || segment.token_deleted(token) {
            return Ok(false);
        }
        match scope.tokens {
            None => Ok(true),
            Some(ids) => index.token_matches(ids, token, entry),
        }
    };
    let mut chosen = Vec::with_capacity(k.min(1024));
    let mut seen = HashSet::new();
    let floor = bar.map(|(value, _)| value);
    index
        .postings
        .strongest_from(f, scope.within, floor, |token, value| {
            if chosen.len() == k
                || bar.is_some_and(|(v, t)| {
                    value < v || (value == v && segment.first_token + token > t)
                })
            {
                return Ok(false);
            }
            if counts(token)? && (rank == Rank::Token || seen.insert(index.token_doc(token)?.0)) {
                chosen.push((token, value));
            }
            Ok(chosen.len() < k)
        })?;
    Ok(chosen)
}

/// A segment's answer subject with the document's global number.
fn globalize(of: &mut Subject, first_doc: u32) {
    if let Subject::Document { doc, .. } = of {
        *doc += first_doc;
    }
}
