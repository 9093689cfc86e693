//! The browsing and set questions of an index of segments (document pages, the
//! features of a set of documents, contrasts, token profiles, silent contexts, the
//! overview), each answered as one index over the live rows answers it.

use crate::{
    QueryError,
    answers::{DocRef, TopFeaturesRequest},
    browse::{DocumentPage, DocumentRequest},
    contrast::{Contrast, ContrastRequest, check_request, contrast_of},
    index::Exclusions,
    index::Rank,
    limits::Limit,
    restrict::{DocSet, Restriction},
    subset::{Profile, SubsetFeatures},
};

use super::{Scopes, Segment, SegmentedIndex};
use crate::browse::{
    DocumentSummary, Overview, OverviewParts, OverviewRequest, check_overview, frequencies,
    provenance,
};
use crate::by_token::{
    IdMatch, Tallies, TokenFeatureProfile, TokenFeaturesRequest, TokenIds, check_token_request,
    piece,
};
use crate::documents::{DocumentsRequest, MetadataColumnInfo, list_in};
use crate::silent::{
    Silence, SilentContexts, SilentRequest, round_robin, visiting_order, wanted_ids,
};

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

impl SegmentedIndex {
    /// The live documents `restrict` selects, per segment (every live one when it
    /// restricts nothing).
    pub(crate) fn live_sets(&self, restrict: &Restriction) -> Result<Vec<DocSet>, QueryError> {
        match self.doc_sets(restrict)? {
            Some(sets) => Ok(sets),
            None => self
                .segments
                .iter()
                .map(|segment| segment.select(None, None))
                .collect(),
        }
    }

    /// The segment holding global token `token`, and its local number.
    fn at_token(&self, token: u64) -> (&Segment, u64) {
        let at = self
            .segments
            .partition_point(|s| s.first_token <= token)
            .saturating_sub(1);
        let segment = &self.segments[at];
        (segment, token - segment.first_token)
    }

    /// The document, position and text of global token `token`.
    fn token_at(&self, token: u64) -> Result<(u32, u32, String), QueryError> {
        let (segment, local) = self.at_token(token);
        let (doc, position) = segment.index.token_doc(local)?;
        let text = segment.index.token_text(doc, position)?;
        Ok((segment.first_doc + doc, position, text))
    }

    /// The profile of the counted tokens of `sets` (one per segment), summed in global
    /// token order as one index sums it.
    pub(crate) fn profile_of(
        &self,
        sets: &[DocSet],
        exclusions: Exclusions,
    ) -> Result<Profile, QueryError> {
        let mut profile = Profile::empty(self.d_sae);
        for (segment, set) in self.segments.iter().zip(sets) {
            segment
                .index
                .add_to_profile(&mut profile, set, exclusions, segment.first_token)?;
        }
        self.intact(Ok(profile))
    }

    /// The strongest features over every counted token of the live documents
    /// `restrict` selects ([`crate::QueryIndex::subset_features`]).
    pub fn subset_features(
        &self,
        restrict: &Restriction,
        request: &TopFeaturesRequest,
    ) -> Result<SubsetFeatures, QueryError> {
        Limit::K.check(request.k)?;
        if request.tokens.is_some() {
            return Err(QueryError::NotForTexts("tokens"));
        }
        let sets = self.live_sets(restrict)?;
        let profile = self.profile_of(&sets, request.exclusions)?;
        let mut features = Vec::new();
        for ranked in profile.ranked(request.aggregate, request.k) {
            let at = self.token_at(profile.argmax[ranked.0 as usize])?;
            let label = self.registry.get(ranked.0).cloned();
            features.push(profile.feature(ranked, at, label));
        }
        self.intact(Ok(SubsetFeatures {
            restrict: restrict.clone(),
            documents: sets.iter().map(|set| set.len() as u64).sum(),
            tokens: profile.tokens,
            aggregate: request.aggregate,
            exclusions: request.exclusions,
            features,
        }))
    }
}

impl SegmentedIndex {
    /// Per segment, its live documents not in `sets`' segment's set.
    fn rest_sets(&self, sets: &[DocSet]) -> Result<Vec<DocSet>, QueryError> {
        self.segments
            .iter()
            .zip(sets)
            .map(|(segment, set)| {
                let live = segment.select(None, None)?;
                let rest = live.docs().iter().copied();
                segment
                    .index
                    .doc_set_of(rest.filter(|doc| !set.contains_doc(*doc)))
            })
            .collect()
    }

    /// The profile of every live counted token (default exclusions) not in the set `of`
    /// was computed over: what one index's stored totals less `of`'s are
    /// ([`crate::QueryIndex::rest_profile`]). From the segments' stored totals when they
    /// sum exactly ([`SegmentedIndex::rest_from_stored`]); otherwise every live token is
    /// decoded and its sums added strongest first as one index's build adds them. `max`
    /// and `argmax` are left empty.
    fn rest_profile(&self, of: &Profile) -> Result<Profile, QueryError> {
        match self.rest_from_stored(of)? {
            Some(rest) => self.intact(Ok(rest)),
            None => self.rest_decoded(of),
        }
    }

    /// [`Self::rest_profile`] from every live token decoded.
    pub(super) fn rest_decoded(&self, of: &Profile) -> Result<Profile, QueryError> {
        let everything = self.live_sets(&Restriction::all())?;
        // Per feature, how often each value occurs.
        let mut values: Vec<std::collections::HashMap<u32, u64>> =
            vec![std::collections::HashMap::new(); self.d_sae];
        let mut tokens = 0u64;
        for (segment, set) in self.segments.iter().zip(&everything) {
            segment.index.scan_counted(
                set.token_ranges(),
                Exclusions::default(),
                |_, features, found| {
                    tokens += 1;
                    for (&feature, &value) in features.iter().zip(found) {
                        if let Some(tally) = values.get_mut(feature as usize) {
                            *tally.entry(value.to_bits()).or_default() += 1;
                        }
                    }
                },
            )?;
        }
        let mut rest = Profile::empty(0);
        rest.tokens = tokens.saturating_sub(of.tokens);
        for (f, tally) in values.into_iter().enumerate() {
            let mut content: Vec<(f32, u64)> = tally
                .into_iter()
                .map(|(bits, n)| (f32::from_bits(bits), n))
                .collect();
            content.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut sum = 0.0f64;
            let mut count = 0u64;
            for (value, n) in content {
                for _ in 0..n {
                    sum += f64::from(value);
                }
                count += n;
            }
            rest.count.push(count.saturating_sub(of.count[f]));
            rest.sum.push(sum - of.sum[f]);
        }
        self.intact(Ok(rest))
    }

    /// Features over-represented in A relative to B per token, both ways
    /// ([`crate::QueryIndex::contrast`]), over the live documents.
    pub fn contrast(&self, request: &ContrastRequest) -> Result<Contrast, QueryError> {
        check_request(request)?;
        let a = self.live_sets(&request.a)?;
        let b = match &request.b {
            None => self.rest_sets(&a)?,
            Some(b) => self.live_sets(b)?,
        };
        let profile_a = self.profile_of(&a, request.exclusions)?;
        let profile_b = if request.b.is_none() && request.exclusions == Exclusions::default() {
            self.rest_profile(&profile_a)?
        } else {
            self.profile_of(&b, request.exclusions)?
        };
        let documents = |sets: &[DocSet]| sets.iter().map(|set| set.len() as u64).sum();
        let answer = contrast_of(
            request,
            (documents(&a), documents(&b)),
            (&profile_a, &profile_b),
            |mut feature, over_a| {
                feature.label = self.registry.get(feature.feature).cloned();
                feature.examples = self.ranked_texts(
                    feature.feature,
                    request.examples,
                    Rank::Token,
                    request.context,
                    request.exclusions,
                    Scopes::docs(Some(if over_a { &a } else { &b })),
                )?;
                Ok(feature)
            },
        );
        self.intact(answer)
    }
}

impl SegmentedIndex {
    /// The features of a token (or token sequence) over its live occurrences
    /// ([`crate::QueryIndex::token_features`]).
    pub fn token_features(
        &self,
        request: &TokenFeaturesRequest,
    ) -> Result<TokenFeatureProfile, QueryError> {
        check_token_request(request)?;
        // Per segment, the patterns' ids: a token matches by its id and text alone.
        let patterns = self
            .segments
            .iter()
            .map(|segment| {
                request
                    .tokens
                    .iter()
                    .map(|p| segment.index.token_ids(p))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let within = self.live_sets(&request.restrict)?;
        let mut tallies = Tallies::default();
        for ((segment, set), patterns) in self.segments.iter().zip(&within).zip(&patterns) {
            let found = segment
                .index
                .occurrences(patterns, Some(set), request.exclusions)?;
            tallies.add(
                &segment.index,
                &found,
                segment.first_token,
                request.examples,
            )?;
        }
        let last: Vec<&TokenIds> = patterns.iter().filter_map(|p| p.last()).collect();
        let mut token_ids = self.live_ids(&last)?;
        token_ids.truncate(100);
        let answer = tallies.answer(
            request,
            token_ids,
            |token, value| {
                let (segment, local) = self.at_token(token);
                segment.hit(local, value, value, request.context)
            },
            |feature| self.registry.get(feature).cloned(),
        );
        self.intact(answer)
    }

    /// The ids of live tokens that `ids` (one per segment) match, ascending: the ids of
    /// one index's vocabulary over the live documents that match.
    fn live_ids(&self, ids: &[&TokenIds]) -> Result<Vec<u32>, QueryError> {
        let mut found = std::collections::BTreeSet::new();
        let everything = self.live_sets(&Restriction::all())?;
        for ((segment, set), ids) in self.segments.iter().zip(&everything).zip(ids) {
            let index = &segment.index;
            for &doc in set.docs() {
                let range = index.doc_token_range(doc)?;
                if range.is_empty() {
                    continue;
                }
                let (_, _, text) = index.document_texts(doc)?;
                index.tokens.scan(range, |_, entry| {
                    let matches = match ids.by_id(entry.token) {
                        IdMatch::Yes => true,
                        IdMatch::No => false,
                        IdMatch::ByText => {
                            ids.matches(entry.token, &piece(text, entry.start, entry.end))
                        }
                    };
                    if matches {
                        found.insert(entry.token);
                    }
                    Ok(())
                })?;
            }
        }
        Ok(found.into_iter().collect())
    }
}

impl SegmentedIndex {
    /// Up to `request.n` contexts of live documents in which `request.feature` is
    /// active on no counted token ([`crate::QueryIndex::silent_contexts`]): the live
    /// tokens are visited in the order one index over them visits its tokens.
    pub fn silent_contexts(&self, request: &SilentRequest) -> Result<SilentContexts, QueryError> {
        Limit::Examples.check(request.n)?;
        Limit::Context.check(request.context)?;
        Limit::K.check(request.tokens.len())?;
        let f = self.check_feature(request.feature)?;
        let mut active = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            let mut tokens: Vec<u64> = segment
                .index
                .kept_postings(f, request.exclusions, None)?
                .into_iter()
                .map(|(token, _)| token)
                .collect();
            tokens.sort_unstable();
            active.push(tokens);
        }
        let silences: Vec<Silence<'_>> = self
            .segments
            .iter()
            .zip(&active)
            .map(|(segment, active)| Silence {
                index: &segment.index,
                active,
                context: request.context,
                mask: request.exclusions.mask(),
            })
            .collect();
        // Each segment's live tokens: (segment, local token ranges).
        let live = self.live_sets(&Restriction::all())?;
        let centres = if request.tokens.is_empty() {
            self.silent_anywhere(&silences, &live, request)?
        } else {
            let (order, wanted) = wanted_ids(&request.tokens);
            let mut occurrences: Vec<Vec<(usize, u64)>> = vec![Vec::new(); order.len()];
            for (s, (silence, set)) in silences.iter().zip(&live).enumerate() {
                for range in set.token_ranges() {
                    silence.index.tokens.scan(range.clone(), |token, entry| {
                        if let Some(&slot) = wanted.get(&entry.token)
                            && silence.centres_with(token, entry.flags)?
                        {
                            occurrences[slot].push((s, token));
                        }
                        Ok(())
                    })?;
                }
            }
            round_robin(occurrences, request.n, request.seed)
        };
        let contexts = centres
            .into_iter()
            .map(|(s, token)| self.segments[s].hit(token, 0.0, 0.0, request.context))
            .collect();
        Ok(SilentContexts {
            feature: request.feature,
            contexts: self.intact(contexts)?,
        })
    }

    /// Up to `request.n` silent centres anywhere in the live documents `live`, as
    /// (segment, local token).
    fn silent_anywhere(
        &self,
        silences: &[Silence<'_>],
        live: &[DocSet],
        request: &SilentRequest,
    ) -> Result<Vec<(usize, u64)>, QueryError> {
        // The live tokens, numbered in order: (first such number, segment, local range).
        let mut spans = Vec::new();
        let mut total = 0u64;
        for (s, set) in live.iter().enumerate() {
            for range in set.token_ranges() {
                spans.push((total, s, range.clone()));
                total += range.end - range.start;
            }
        }
        let mut found = Vec::new();
        if total == 0 || request.n == 0 {
            return Ok(found);
        }
        for number in visiting_order(total, request.seed) {
            let at = spans.partition_point(|span| span.0 <= number) - 1;
            let (first, s, range) = &spans[at];
            let token = range.start + (number - first);
            if silences[*s].centres(token)? {
                found.push((*s, token));
                if found.len() == request.n {
                    break;
                }
            }
        }
        Ok(found)
    }
}

impl SegmentedIndex {
    /// What the index holds over its live documents ([`crate::QueryIndex::overview`]);
    /// its documents are the first `request.documents` live ones numbered from
    /// `request.documents_from` on.
    pub fn overview(&self, request: &OverviewRequest) -> Result<Overview, QueryError> {
        check_overview(request)?;
        let (live, dead) = frequencies(self.d_sae, &self.registry, |feature| {
            self.feature_stats(feature, Exclusions::default())
        })?;
        let sampled = self.sample_features(request.sample, request.seed)?;
        let (metadata_columns, documents) =
            self.document_summaries(request.documents_from, request.documents)?;
        let first = self.segments.first().map(|s| &s.index);
        let version = first.map_or(env!("CARGO_PKG_VERSION"), |index| {
            index.manifest().saeidx_version.as_str()
        });
        let parts = OverviewParts {
            provenance: provenance(&self.job, version),
            counts: self.counts()?,
            live,
            dead,
            sampled,
            metadata_columns,
            documents,
            logit_effects: first
                .is_some_and(|index| index.logit_effects().is_ok_and(|e| e.is_some())),
        };
        self.intact(Ok(parts.overview(request, &self.registry)))
    }

    /// The first `n` live documents numbered `from` or more, with their metadata, and
    /// the metadata columns (read from the Parquet documents tables only when the index
    /// keeps some).
    fn document_summaries(
        &self,
        from: u32,
        n: usize,
    ) -> Result<(Vec<MetadataColumnInfo>, Vec<DocumentSummary>), QueryError> {
        let mut docs = Vec::with_capacity(n.min(1024));
        let mut before = 0usize;
        for segment in &self.segments {
            for local in 0..segment.documents() {
                let doc = segment.first_doc + local;
                if segment.doc_deleted(local) {
                    continue;
                }
                if doc < from {
                    before += 1;
                } else if docs.len() < n {
                    docs.push((segment, local));
                }
            }
        }
        let (columns, mut metadata) = if self.job.corpus.metadata.is_empty() {
            (Vec::new(), std::collections::HashMap::new())
        } else {
            let request = DocumentsRequest {
                limit: docs.len(),
                offset: before,
                ..DocumentsRequest::default()
            };
            let list = list_in(&self.dir, self.set.as_ref(), &request)?;
            let metadata = list
                .documents
                .into_iter()
                .map(|entry| (entry.doc, entry.metadata))
                .collect();
            (list.columns, metadata)
        };
        let summaries = docs
            .into_iter()
            .map(|(segment, local)| {
                let doc = segment.first_doc + local;
                segment
                    .index
                    .document_summary(local, doc, metadata.remove(&doc))
            })
            .collect::<Result<_, QueryError>>()?;
        Ok((columns, summaries))
    }
}
