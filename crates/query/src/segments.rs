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
//!   value, then global token; per-document sums are summed per segment and sorted
//!   globally;
//! - statistics: count, documents, max and sum over the live postings of every
//!   segment, the sum added strongest first (the single build's order), the histogram's
//!   bins over `(0, max]` of the whole index's max (computed from the postings: a
//!   segment's stored histogram is binned over its own max);
//! - neighbours, bands and samples: over the live postings and counts of every segment.
//!
//! A folder without `segments.json` (every index written before segments) is opened as
//! one segment holding every document, and answers exactly as [`QueryIndex`] does.
//! Labels live in the index folder's `labels.json`, shared by all segments.

use std::{
    collections::{HashMap, HashSet},
    ops::Range,
    path::{Path, PathBuf},
};

use rand::{SeedableRng, rngs::StdRng};
use saeidx_format::{
    manifest::JobSpec,
    segments::{SegmentRecord, SegmentSet},
};

use crate::{
    QueryError, QueryIndex,
    answers::{
        DocRef, FeatureRequest, Info, InfoRequest, LabelAnswer, PerToken, Sample, SampleRequest,
        SampledFeature, Subject, TopFeatures, TopFeaturesRequest, TopTexts, TopTextsRequest,
    },
    build::histogram_bin,
    index::{
        Exclusions, FeatureReport, FeatureStats, Neighbour, QuantileBand, Rank, TextHit,
        ranked_neighbours,
    },
    layout::{HISTOGRAM_BINS, QueryCounts},
    limits::Limit,
    registry::Registry,
};

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
        })
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

    /// `f`'s postings kept by `exclusions` and not deleted: (local token, value),
    /// strongest first, ties in token order.
    fn kept(&self, f: usize, exclusions: Exclusions) -> Result<Vec<(u64, f32)>, QueryError> {
        let mut kept = self.index.kept_postings(f, exclusions, None)?;
        if !self.deleted_tokens.is_empty() {
            kept.retain(|(token, _)| !self.token_deleted(*token));
        }
        Ok(kept)
    }

    /// Counted tokens `f` is active on, deleted documents left out.
    fn count(&self, f: usize, exclusions: Exclusions) -> Result<u64, QueryError> {
        if self.deleted_tokens.is_empty() {
            self.index.count(f, exclusions, None)
        } else {
            Ok(self.kept(f, exclusions)?.len() as u64)
        }
    }

    /// Tokens `exclusions` leave in, deleted documents left out.
    fn counted_tokens(&self, exclusions: Exclusions) -> Result<u64, QueryError> {
        let mut counted = self.index.counted_tokens(exclusions, None)?;
        let mask = exclusions.mask();
        for range in &self.deleted_tokens {
            self.index.tokens.scan(range.clone(), |_, entry| {
                counted -= u64::from(entry.flags & mask == 0);
                Ok(())
            })?;
        }
        Ok(counted)
    }

    fn hit(&self, token: u64, value: f32, score: f32, context: u32) -> Result<TextHit, QueryError> {
        let mut hit = self.index.hit(token, value, score, context)?;
        hit.doc += self.first_doc;
        Ok(hit)
    }
}

/// A posting of the whole index: value, global token, segment, local token.
type Posting = (f32, u64, usize, u64);

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
    d_sae: usize,
    /// The job every segment shares.
    job: JobSpec,
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
                dir: dir.to_path_buf(),
                set: None,
                segments: vec![Segment::new(index, &record, 0)?],
                registry,
                d_sae,
                job,
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
        Ok(Self {
            registry: Registry::load(dir, d_sae)?,
            dir: dir.to_path_buf(),
            job: set.job.clone(),
            set: Some(set),
            segments,
            d_sae,
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

    /// The texts where a feature fires most strongly ([`QueryIndex::top_texts`]).
    pub fn top_texts(&self, request: &TopTextsRequest) -> Result<TopTexts, QueryError> {
        if !request.restrict.is_all() || request.token.is_some() {
            return Err(QueryError::NotForSegments(
                "document restrictions and token patterns",
            ));
        }
        Limit::K.check(request.k)?;
        Limit::Context.check(request.context)?;
        let texts = self.ranked_texts(
            request.feature,
            request.k,
            request.rank,
            request.context,
            request.exclusions,
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
    ) -> Result<Vec<TextHit>, QueryError> {
        let f = self.check_feature(feature)?;
        // (value, global token, segment, local token, score)
        let mut chosen: Vec<(Posting, f32)> = Vec::new();
        if rank == Rank::DocumentSum {
            chosen = self.document_sums(f, k, exclusions)?;
        } else {
            for (s, segment) in self.segments.iter().enumerate() {
                for (token, value) in self.segment_top(segment, f, k, rank, exclusions)? {
                    chosen.push(((value, segment.first_token + token, s, token), value));
                }
            }
            chosen.sort_by(|a, b| by_strength(&a.0, &b.0));
            chosen.truncate(k);
        }
        let hits = chosen
            .into_iter()
            .map(|((value, _, s, token), score)| self.segments[s].hit(token, value, score, context))
            .collect();
        self.intact(hits)
    }

    /// One segment's top `k` live postings of `f` (per token, or per document by max):
    /// (local token, value), strongest first, ties in token order.
    fn segment_top(
        &self,
        segment: &Segment,
        f: usize,
        k: usize,
        rank: Rank,
        exclusions: Exclusions,
    ) -> Result<Vec<(u64, f32)>, QueryError> {
        let index = &segment.index;
        let mask = exclusions.mask();
        let mut chosen = Vec::with_capacity(k.min(1024));
        let mut seen = HashSet::new();
        index.postings.strongest_within(f, None, |token, value| {
            if chosen.len() == k {
                return Ok(false);
            }
            if index.flags(token)? & mask == 0
                && !segment.token_deleted(token)
                && (rank == Rank::Token || seen.insert(index.token_doc(token)?.0))
            {
                chosen.push((token, value));
            }
            Ok(chosen.len() < k)
        })?;
        Ok(chosen)
    }

    /// The `k` live documents with the largest sums of `f`, each with its strongest
    /// token, sorted by sum, then document.
    fn document_sums(
        &self,
        f: usize,
        k: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<(Posting, f32)>, QueryError> {
        // Global document → (sum, strongest posting).
        let mut docs: Vec<(u32, f64, Posting)> = Vec::new();
        for (s, segment) in self.segments.iter().enumerate() {
            let mut by_doc: HashMap<u32, (f64, Posting)> = HashMap::new();
            for (token, value) in segment.kept(f, exclusions)? {
                let (doc, _) = segment.index.token_doc(token)?;
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

    /// `f`'s live postings kept by `exclusions` in every segment, strongest first, ties
    /// in global token order.
    fn kept(&self, f: usize, exclusions: Exclusions) -> Result<Vec<Posting>, QueryError> {
        let mut all = Vec::new();
        for (s, segment) in self.segments.iter().enumerate() {
            all.extend(
                segment
                    .kept(f, exclusions)?
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
        let f = self.check_feature(feature)?;
        let kept = self.kept(f, exclusions)?;
        let stats = self.stats_of(feature, &kept, exclusions);
        self.intact(stats)
    }

    fn stats_of(
        &self,
        feature: u32,
        kept: &[Posting],
        exclusions: Exclusions,
    ) -> Result<FeatureStats, QueryError> {
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
        for segment in &self.segments {
            counted += segment.counted_tokens(exclusions)?;
            postings += segment.count(
                f,
                Exclusions {
                    special: false,
                    sinks: false,
                },
            )?;
        }
        let count = kept.len() as u64;
        Ok(FeatureStats {
            feature,
            count,
            density: if counted == 0 {
                0.0
            } else {
                count as f64 / counted as f64
            },
            documents: docs.len() as u64,
            max_activation: max,
            mean_activation: if count == 0 {
                0.0
            } else {
                (sum / count as f64) as f32
            },
            histogram,
            postings,
            exclusions,
        })
    }

    /// The `n` features whose token sets overlap `feature`'s most
    /// ([`QueryIndex::neighbours`]).
    pub fn neighbours(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        Limit::Neighbours.check(n)?;
        let f = self.check_feature(feature)?;
        let kept = self.kept(f, exclusions)?;
        let neighbours = self.neighbours_of(feature, &kept, n, exclusions);
        self.intact(neighbours)
    }

    fn neighbours_of(
        &self,
        feature: u32,
        kept: &[Posting],
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
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
            for segment in &self.segments {
                count += segment.count(other as usize, exclusions)?;
            }
            counted.push((other, both, count));
        }
        Ok(ranked_neighbours(kept.len() as u64, counted, n))
    }

    /// Everything about one feature ([`QueryIndex::feature`]).
    pub fn feature(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
        if !request.restrict.is_all() {
            return Err(QueryError::NotForSegments("document restrictions"));
        }
        Limit::Examples.check(request.examples)?;
        Limit::Examples.check(request.per_band)?;
        Limit::Bands.check(request.bands)?;
        Limit::Neighbours.check(request.neighbours)?;
        Limit::Context.check(request.context)?;
        let report = self.report(request);
        self.intact(report)
    }

    fn report(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
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
        let kept = self.kept(f, exclusions)?;
        let top_texts = self.ranked_texts(feature, examples, Rank::Token, context, exclusions)?;
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
            stats: self.stats_of(feature, &kept, exclusions)?,
            label: self.registry.get(feature).cloned(),
            top_texts,
            bands: banded,
            neighbours: self.neighbours_of(feature, &kept, neighbours, exclusions)?,
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
        let counts = self.live_counts()?;
        Ok((0u32..)
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|(feature, _)| feature)
            .collect())
    }

    /// Random live features with their statistics and top examples
    /// ([`QueryIndex::sample`]).
    pub fn sample(&self, request: &SampleRequest) -> Result<Sample, QueryError> {
        if !request.restrict.is_all() {
            return Err(QueryError::NotForSegments("document restrictions"));
        }
        Limit::Examples.check(request.examples)?;
        Limit::Context.check(request.context)?;
        Limit::Sample.check(request.n)?;
        let live = self.live_features()?;
        let mut rng = StdRng::seed_from_u64(request.seed);
        let mut picked: Vec<u32> =
            rand::seq::index::sample(&mut rng, live.len(), request.n.min(live.len()))
                .into_iter()
                .map(|i| live[i])
                .collect();
        picked.sort_unstable();
        let mut features = Vec::with_capacity(picked.len());
        for feature in picked {
            let top = TopTextsRequest {
                feature,
                k: request.examples,
                context: request.context,
                ..TopTextsRequest::default()
            };
            let answer = self.top_texts(&top)?;
            features.push(SampledFeature {
                feature,
                label: answer.label,
                stats: self.feature_stats(feature, top.exclusions)?,
                top_texts: answer.texts,
            });
        }
        Ok(Sample {
            restrict: request.restrict.clone(),
            seed: request.seed,
            features,
        })
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
            total.content_tokens += segment.counted_tokens(Exclusions::default())?;
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

    /// `result`, unless a segment's files changed while it was computed.
    fn intact<T>(&self, result: Result<T, QueryError>) -> Result<T, QueryError> {
        for segment in &self.segments {
            segment.index.check_intact()?;
        }
        result
    }
}

/// A segment's answer subject with the document's global number.
fn globalize(of: &mut Subject, first_doc: u32) {
    if let Subject::Document { doc, .. } = of {
        *doc += first_doc;
    }
}
