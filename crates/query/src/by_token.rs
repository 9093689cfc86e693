//! Token-conditioned questions: a feature's top texts on one token only (by its text,
//! its id, or a regular expression over token texts), and the features of a token (or a
//! token sequence) over every occurrence in the corpus: which fire, how often, how
//! strongly, with example contexts.
//!
//! A token's text is its piece of its document (the bytes its span covers, read as
//! UTF-8 with replacement characters). Patterns resolve, once, through the index's
//! vocabulary (every token id that occurs with the distinct texts it has, read once per
//! opened index from `occurrences.bin`, or from `tokens.bin` and the documents in a
//! folder built before that file) into the ids all of whose texts
//! match — a posting's token is then tested by its id alone — and the ids only some of
//! whose texts match (a tokenizer whose pieces split UTF-8 characters), whose
//! occurrences are tested by their own text. A token id that never occurs, or a text no
//! token has, gives empty answers, not an error.
//!
//! A feature's top texts on a token are found one of two ways, whichever costs less,
//! with the same answer: from the token's occurrences (`occurrences.bin`, which also
//! says where each occurrence's codes start, so one is read without decoding its
//! group's other tokens; in older folders every id's global token numbers,
//! `TokenPositions`, built from `tokens.bin` on first use), reading the feature's value
//! in the codes of each and ranking those where it fires; or by walking the feature's
//! postings strongest first, testing each token against the occurrences by binary
//! search.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    QueryError, QueryIndex,
    blocks::TokenEntry,
    index::{Exclusions, Rank, TextHit},
    layout::QueryFile,
    limits::Limit,
    registry::FeatureLabel,
    restrict::{DocSet, Restriction},
};

/// Which tokens: by exact text, by token id, or by a regular expression over token
/// texts (Rust `regex` syntax, matched anywhere in the text unless anchored with `^`/`$`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenPattern {
    /// Tokens whose text is exactly this (mind the leading space of BPE tokens: `" Paris"`).
    Text(String),
    /// The token with this id.
    Id(u32),
    /// Tokens whose text matches this regular expression.
    Regex(String),
}

/// The longest regular expression accepted, in bytes.
const MAX_REGEX: usize = 1000;

/// A set of token ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct IdSet {
    bits: Vec<u64>,
}

impl IdSet {
    fn insert(&mut self, id: u32) {
        let word = id as usize / 64;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (id % 64);
    }

    fn contains(&self, id: u32) -> bool {
        self.bits
            .get(id as usize / 64)
            .is_some_and(|bits| bits >> (id % 64) & 1 == 1)
    }

    /// The ids in the set, ascending.
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0u32..).zip(&self.bits).flat_map(|(word, bits)| {
            (0..64)
                .filter(move |bit| bits >> bit & 1 == 1)
                .map(move |bit| word * 64 + bit)
        })
    }
}

/// Every token id's occurrences in the index: the global token numbers of each id,
/// ascending, one list after another (built from `tokens.bin` on first use, when the
/// index has fewer than 2³² tokens: 4 bytes per token).
#[derive(Debug, Default)]
pub(crate) struct TokenPositions {
    /// Per id, where its list starts in `positions` (then the end of the last).
    starts: Vec<u32>,
    /// The lists.
    positions: Vec<u32>,
}

impl TokenPositions {
    /// The global tokens with id `id`, ascending.
    fn of(&self, id: u32) -> &[u32] {
        let id = id as usize;
        match (self.starts.get(id), self.starts.get(id + 1)) {
            (Some(&start), Some(&end)) => &self.positions[start as usize..end as usize],
            _ => &[],
        }
    }
}

/// How a token-conditioned top-texts question is answered.
pub(crate) enum OnToken {
    /// Chosen from the token's occurrences: (token, value, score), best first.
    Chosen(Vec<(u64, f32, f32)>),
    /// By walking the feature's postings, testing each token against these
    /// occurrences (ascending) first when known.
    Walk(Option<Vec<u64>>),
}

/// The cost of decoding one occurrence's codes (its group's, up to it), in postings
/// walked.
const DECODE_COST: u64 = 12;
/// The cost of reading one occurrence's value from its own codes (`occurrences.bin`
/// says where they start), in postings walked.
const STORED_DECODE_COST: u64 = 4;

/// How a pattern tests a token's text.
#[derive(Debug, Clone)]
enum Matcher {
    Text(String),
    Id(u32),
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, id: u32, text: &str) -> bool {
        match self {
            Matcher::Text(wanted) => wanted == text,
            Matcher::Id(wanted) => *wanted == id,
            Matcher::Regex(regex) => regex.is_match(text),
        }
    }
}

/// What a pattern resolved to: the ids all of whose texts match, and those only some
/// of whose texts match.
#[derive(Debug, Clone)]
pub(crate) struct TokenIds {
    all: IdSet,
    some: IdSet,
    matcher: Matcher,
}

/// Whether a token matches, from its id alone, or only from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdMatch {
    Yes,
    No,
    ByText,
}

impl TokenIds {
    /// Whether tokens with id `id` match.
    pub(crate) fn by_id(&self, id: u32) -> IdMatch {
        if self.all.contains(id) {
            IdMatch::Yes
        } else if self.some.contains(id) {
            IdMatch::ByText
        } else {
            IdMatch::No
        }
    }

    /// Whether a token with id `id` and text `text` matches.
    pub(crate) fn matches(&self, id: u32, text: &str) -> bool {
        match self.by_id(id) {
            IdMatch::Yes => true,
            IdMatch::No => false,
            IdMatch::ByText => self.matcher.matches(id, text),
        }
    }

    /// The ids some of whose tokens may match, ascending.
    fn candidates(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.all.iter().chain(self.some.iter()).collect();
        ids.sort_unstable();
        ids
    }

    /// The matching ids, ascending (all, then those matching by text).
    fn ids(&self, vocabulary: &Vocabulary) -> Vec<u32> {
        let mut ids: Vec<u32> = vocabulary
            .texts
            .keys()
            .copied()
            .filter(|id| self.by_id(*id) != IdMatch::No)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Every token id that occurs in the index, with its distinct texts.
#[derive(Debug, Default)]
pub(crate) struct Vocabulary {
    texts: HashMap<u32, Vec<String>>,
}

/// The text of a token spanning `start..end` of `text` (clamped; lossy UTF-8).
pub(crate) fn piece(text: &str, start: u32, end: u32) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let start = (start as usize).min(bytes.len());
    let end = (end as usize).clamp(start, bytes.len());
    String::from_utf8_lossy(&bytes[start..end])
}

/// `token_features`: the features of a token (or a token sequence) over its occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TokenFeaturesRequest {
    /// The token, or a sequence of consecutive tokens (the features are those of the
    /// sequence's last token, wherever the whole sequence occurs in one document).
    pub tokens: Vec<TokenPattern>,
    /// How many features.
    pub k: usize,
    /// Example contexts per feature (its strongest occurrences).
    pub examples: usize,
    /// Tokens of context on each side of an example.
    pub context: u32,
    /// Occurrences on tokens left out do not count.
    pub exclusions: Exclusions,
    /// Only occurrences in these documents (default: all).
    pub restrict: Restriction,
}

impl Default for TokenFeaturesRequest {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            k: 20,
            examples: 2,
            context: 8,
            exclusions: Exclusions::default(),
            restrict: Restriction::default(),
        }
    }
}

/// One feature of a `token_features` answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TokenFeature {
    /// The feature.
    pub feature: u32,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
    /// Occurrences it fires on.
    pub count: u64,
    /// `count` over all occurrences.
    pub frequency: f64,
    /// Mean activation over the occurrences it fires on.
    pub mean_activation: f32,
    /// Largest activation.
    pub max_activation: f32,
    /// Its strongest occurrences (ties: first in the corpus).
    pub examples: Vec<TextHit>,
}

/// The answer of `token_features`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TokenFeatureProfile {
    /// The token or sequence asked for.
    pub tokens: Vec<TokenPattern>,
    /// The documents looked at.
    pub restrict: Restriction,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// Token ids the last pattern matched (the first 100).
    pub token_ids: Vec<u32>,
    /// Occurrences found (counted ones: the last token not left out).
    pub occurrences: u64,
    /// The features firing on them, most frequent first (ties: larger sum of
    /// activations first, then lower id).
    pub features: Vec<TokenFeature>,
}

/// Per feature over the occurrences: count, sum, max, strongest occurrences.
#[derive(Default)]
struct Tally {
    count: u64,
    sum: f64,
    max: f32,
    best: Vec<(f32, u64)>,
}

impl Tally {
    fn add(&mut self, value: f32, token: u64, keep: usize) {
        self.count += 1;
        self.sum += f64::from(value);
        self.max = if self.count == 1 {
            value
        } else {
            self.max.max(value)
        };
        // Occurrences come in token order: a later one replaces only a weaker one.
        if self.best.len() < keep {
            self.best.push((value, token));
        } else if let Some(weakest) = self.best.last()
            && value > weakest.0
        {
            self.best.pop();
            self.best.push((value, token));
        } else {
            return;
        }
        self.best
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    }
}

impl QueryIndex {
    /// The index's vocabulary (read from `occurrences.bin`, or built from `tokens.bin`
    /// where the folder has none, on first use, and kept).
    pub(crate) fn vocabulary(&self) -> Result<&Vocabulary, QueryError> {
        if let Some(vocabulary) = self.vocabulary.get() {
            return Ok(vocabulary);
        }
        let texts = match &self.occurrences {
            Some(file) => {
                let mut texts = HashMap::new();
                for id in 0..file.ids() as u32 {
                    let known = file.texts(id)?;
                    if !known.is_empty() {
                        texts.insert(id, known);
                    }
                }
                texts
            }
            None => self.scan_vocabulary()?,
        };
        Ok(self.vocabulary.get_or_init(|| Vocabulary { texts }))
    }

    /// Every token id that occurs with its distinct texts (first seen first), from
    /// `tokens.bin` and the documents' texts.
    pub(crate) fn scan_vocabulary(&self) -> Result<HashMap<u32, Vec<String>>, QueryError> {
        let mut texts: HashMap<u32, Vec<String>> = HashMap::new();
        for doc in 0..self.documents() {
            let range = self.doc_token_range(doc)?;
            if range.is_empty() {
                continue;
            }
            let (_, _, text) = self.document_texts(doc)?;
            self.tokens.scan(range, |_, entry| {
                let piece = piece(text, entry.start, entry.end);
                let known = texts.entry(entry.token).or_default();
                if !known.iter().any(|t| *t == piece) {
                    known.push(piece.into_owned());
                }
                Ok(())
            })?;
        }
        Ok(texts)
    }

    /// Every token id's occurrences (built on first use and kept; `None` when the index
    /// has 2³² tokens or more, or ids past 2²⁴: questions then walk the postings).
    pub(crate) fn token_positions(&self) -> Result<Option<&TokenPositions>, QueryError> {
        if let Some(built) = self.token_positions.get() {
            return Ok(built.as_ref());
        }
        let built = self.build_token_positions()?;
        Ok(self.token_positions.get_or_init(|| built).as_ref())
    }

    fn build_token_positions(&self) -> Result<Option<TokenPositions>, QueryError> {
        const MAX_ID: usize = 1 << 24;
        let tokens = self.tokens.tokens();
        if u32::try_from(tokens).is_err() {
            return Ok(None);
        }
        let mut counts: Vec<u32> = Vec::new();
        let mut too_wide = false;
        self.tokens.scan(0..tokens, |_, entry| {
            let id = entry.token as usize;
            if id >= MAX_ID {
                too_wide = true;
            } else {
                if counts.len() <= id {
                    counts.resize(id + 1, 0);
                }
                counts[id] += 1;
            }
            Ok(())
        })?;
        if too_wide {
            return Ok(None);
        }
        let mut starts = Vec::with_capacity(counts.len() + 1);
        let mut at = 0u32;
        for count in &counts {
            starts.push(at);
            at += count;
        }
        starts.push(at);
        let mut next = starts[..counts.len()].to_vec();
        let mut positions = vec![0u32; tokens as usize];
        let changed = || self.corrupt(QueryFile::Tokens, "token ids changed while read".into());
        self.tokens.scan(0..tokens, |token, entry| {
            let slot = next.get_mut(entry.token as usize).ok_or_else(changed)?;
            *positions.get_mut(*slot as usize).ok_or_else(changed)? = token as u32;
            *slot += 1;
            Ok(())
        })?;
        Ok(Some(TokenPositions { starts, positions }))
    }

    /// The global tokens `ids` may match (all of an id's tokens, whether or not its
    /// text matches), ascending, in `within`'s documents; `None` when the occurrences
    /// are not known.
    fn token_candidates(
        &self,
        ids: &TokenIds,
        within: Option<&DocSet>,
    ) -> Result<Option<Vec<u64>>, QueryError> {
        if self.occurrences.is_some() {
            let found = self.stored_occurrences(ids, within, Exclusions::none())?;
            return Ok(Some(found.into_iter().map(|(token, _, _)| token).collect()));
        }
        let Some(positions) = self.token_positions()? else {
            return Ok(None);
        };
        let mut found: Vec<u64> = Vec::new();
        for id in ids.candidates() {
            found.extend(
                positions
                    .of(id)
                    .iter()
                    .map(|p| u64::from(*p))
                    .filter(|t| within.is_none_or(|set| set.contains_token(*t))),
            );
        }
        found.sort_unstable();
        Ok(Some(found))
    }

    /// How to answer top-texts of feature `f` (index checked) on the tokens `ids`
    /// match: from the token's occurrences when decoding their codes costs less than
    /// walking the feature's postings, else by that walk.
    /// Either way the answer is the same: postings strongest first, ties in token order.
    pub(crate) fn on_token(
        &self,
        f: usize,
        k: usize,
        rank: Rank,
        exclusions: Exclusions,
        ids: &TokenIds,
        within: Option<&DocSet>,
    ) -> Result<OnToken, QueryError> {
        if ids.candidates().is_empty() {
            return Ok(OnToken::Chosen(Vec::new()));
        }
        let postings = u64::from(self.at(
            &self.features.file,
            QueryFile::Features,
            &self.features.postings,
            f,
        )?);
        if self.occurrences.is_some() {
            return self.on_stored_token(f, postings, (k, rank, exclusions), ids, within);
        }
        let Some(candidates) = self.token_candidates(ids, within)? else {
            return Ok(OnToken::Walk(None));
        };
        // A walk may stop after k hits, but postings of equal value tie across blocks
        // (values are quantized), so a frequent feature's walk can decode most of its
        // blocks before the first hit: it is priced at all of its postings.
        if (candidates.len() as u64).saturating_mul(DECODE_COST) > postings {
            return Ok(OnToken::Walk(Some(candidates)));
        }
        let mask = exclusions.mask();
        let feature = f as u32;
        let mut hits: Vec<(u64, f32)> = Vec::new();
        for &token in &candidates {
            let entry = self.token_entry(token)?;
            if entry.flags & mask != 0 || !self.token_matches(ids, token, entry)? {
                continue;
            }
            self.codes.decode(token..token + 1, |_, features, values| {
                if let Ok(at) = features.binary_search(&feature) {
                    hits.push((token, values[at]));
                }
                Ok(())
            })?;
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(OnToken::Chosen(self.pick(hits, rank, k)?))
    }

    /// The occurrences of the ids `ids` may match (all of an id's tokens, whether or
    /// not its text matches) in `within`'s documents, not left out by `exclusions`,
    /// ascending, from `occurrences.bin` (empty without it): (token, codes offset, id).
    fn stored_occurrences(
        &self,
        ids: &TokenIds,
        within: Option<&DocSet>,
        exclusions: Exclusions,
    ) -> Result<Vec<(u64, u64, u32)>, QueryError> {
        let Some(file) = &self.occurrences else {
            return Ok(Vec::new());
        };
        let mask = exclusions.mask();
        let candidates = ids.candidates();
        let mut found = Vec::new();
        for &id in &candidates {
            file.each(id, |token, offset, flags| {
                if flags & mask == 0 && within.is_none_or(|set| set.contains_token(token)) {
                    found.push((token, offset, id));
                }
                Ok(true)
            })?;
        }
        if candidates.len() > 1 {
            found.sort_unstable();
        }
        Ok(found)
    }

    /// [`Self::on_token`] from `occurrences.bin`: each occurrence's value read from its
    /// own codes, when that costs less than walking the feature's `postings`.
    fn on_stored_token(
        &self,
        f: usize,
        postings: u64,
        (k, rank, exclusions): (usize, Rank, Exclusions),
        ids: &TokenIds,
        within: Option<&DocSet>,
    ) -> Result<OnToken, QueryError> {
        let found = self.stored_occurrences(ids, within, exclusions)?;
        if (found.len() as u64).saturating_mul(STORED_DECODE_COST) > postings {
            return Ok(OnToken::Walk(Some(
                found.into_iter().map(|(token, _, _)| token).collect(),
            )));
        }
        let feature = f as u32;
        let mut scratch = Vec::new();
        let mut hits: Vec<(u64, f32)> = Vec::new();
        for (token, offset, id) in found {
            let matches = match ids.by_id(id) {
                IdMatch::Yes => true,
                IdMatch::No => false,
                IdMatch::ByText => self.token_matches(ids, token, self.token_entry(token)?)?,
            };
            if !matches {
                continue;
            }
            if let Some(value) = self.codes.value_at(token, offset, feature, &mut scratch)? {
                hits.push((token, value));
            }
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(OnToken::Chosen(self.pick(hits, rank, k)?))
    }

    /// The `k` best of `hits` (strongest first, ties in token order) by `rank`:
    /// (token, value, score).
    fn pick(
        &self,
        hits: Vec<(u64, f32)>,
        rank: Rank,
        k: usize,
    ) -> Result<Vec<(u64, f32, f32)>, QueryError> {
        match rank {
            Rank::Token => Ok(hits.into_iter().take(k).map(|(t, v)| (t, v, v)).collect()),
            Rank::DocumentMax => {
                let mut seen = HashSet::new();
                let mut chosen = Vec::new();
                for (token, value) in hits {
                    if chosen.len() == k {
                        break;
                    }
                    if seen.insert(self.token_doc(token)?.0) {
                        chosen.push((token, value, value));
                    }
                }
                Ok(chosen)
            }
            Rank::DocumentSum => {
                // Per document: (sum, strongest token, its value), summed strongest first.
                let mut by_doc: HashMap<u32, (f64, u64, f32)> = HashMap::new();
                for (token, value) in hits {
                    let (doc, _) = self.token_doc(token)?;
                    by_doc.entry(doc).or_insert((0.0, token, value)).0 += f64::from(value);
                }
                let mut docs: Vec<(u32, (f64, u64, f32))> = by_doc.into_iter().collect();
                docs.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
                Ok(docs
                    .into_iter()
                    .take(k)
                    .map(|(_, (sum, token, value))| (token, value, sum as f32))
                    .collect())
            }
        }
    }

    /// The ids of the tokens `pattern` matches.
    pub(crate) fn token_ids(&self, pattern: &TokenPattern) -> Result<TokenIds, QueryError> {
        let matcher = match pattern {
            TokenPattern::Id(id) => Matcher::Id(*id),
            TokenPattern::Text(text) => Matcher::Text(text.clone()),
            TokenPattern::Regex(expression) => {
                let invalid = |reason: String| QueryError::TokenPattern {
                    pattern: expression.clone(),
                    reason,
                };
                if expression.len() > MAX_REGEX {
                    return Err(invalid(format!("longer than {MAX_REGEX} bytes")));
                }
                Matcher::Regex(
                    regex::RegexBuilder::new(expression)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| invalid(e.to_string()))?,
                )
            }
        };
        let (mut all, mut some) = (IdSet::default(), IdSet::default());
        if let Matcher::Id(id) = matcher {
            // An id matches all of its texts: it is in the set if it occurs at all.
            let occurs = match &self.occurrences {
                Some(file) => file.count(id)? > 0,
                None => self.vocabulary()?.texts.contains_key(&id),
            };
            if occurs {
                all.insert(id);
            }
            return Ok(TokenIds { all, some, matcher });
        }
        for (id, texts) in &self.vocabulary()?.texts {
            let matching = texts.iter().filter(|t| matcher.matches(*id, t)).count();
            if matching == texts.len() {
                all.insert(*id);
            } else if matching > 0 {
                some.insert(*id);
            }
        }
        Ok(TokenIds { all, some, matcher })
    }

    /// Whether global token `token` (whose entry is `entry`) matches `ids`.
    pub(crate) fn token_matches(
        &self,
        ids: &TokenIds,
        token: u64,
        entry: TokenEntry,
    ) -> Result<bool, QueryError> {
        match ids.by_id(entry.token) {
            IdMatch::Yes => Ok(true),
            IdMatch::No => Ok(false),
            IdMatch::ByText => {
                let (doc, _) = self.token_doc(token)?;
                let (_, _, text) = self.document_texts(doc)?;
                Ok(ids.matches(entry.token, &piece(text, entry.start, entry.end)))
            }
        }
    }

    /// Global tokens ending an occurrence of `patterns` (all in one document), in
    /// `within`'s documents (all when `None`), counted under `exclusions`, in order.
    pub(crate) fn occurrences(
        &self,
        patterns: &[TokenIds],
        within: Option<&DocSet>,
        exclusions: Exclusions,
    ) -> Result<Vec<u64>, QueryError> {
        let mask = exclusions.mask();
        let n = patterns.len();
        let mut found = Vec::new();
        let mut entries = Vec::new();
        for doc in 0..self.documents() {
            if within.is_some_and(|set| !set.contains_doc(doc)) {
                continue;
            }
            let range = self.doc_token_range(doc)?;
            if range.is_empty() {
                continue;
            }
            let (_, _, text) = self.document_texts(doc)?;
            entries.clear();
            self.tokens.scan(range.clone(), |_, entry| {
                entries.push(entry);
                Ok(())
            })?;
            for end in n.saturating_sub(1)..entries.len() {
                let start = end + 1 - n;
                let matches = patterns
                    .iter()
                    .zip(&entries[start..=end])
                    .all(|(ids, e)| match ids.by_id(e.token) {
                        IdMatch::Yes => true,
                        IdMatch::No => false,
                        IdMatch::ByText => ids.matches(e.token, &piece(text, e.start, e.end)),
                    });
                if matches && entries[end].flags & mask == 0 {
                    found.push(range.start + end as u64);
                }
            }
        }
        Ok(found)
    }

    /// The features of a token (or token sequence) over its occurrences.
    pub fn token_features(
        &self,
        request: &TokenFeaturesRequest,
    ) -> Result<TokenFeatureProfile, QueryError> {
        check_token_request(request)?;
        let patterns = request
            .tokens
            .iter()
            .map(|p| self.token_ids(p))
            .collect::<Result<Vec<_>, _>>()?;
        let within = self.doc_set(&request.restrict)?;
        self.answer(self.profile_token(request, &patterns, within.as_ref()))
    }

    fn profile_token(
        &self,
        request: &TokenFeaturesRequest,
        patterns: &[TokenIds],
        within: Option<&DocSet>,
    ) -> Result<TokenFeatureProfile, QueryError> {
        let found = self.occurrences(patterns, within, request.exclusions)?;
        let mut tallies = Tallies::default();
        tallies.add(self, &found, 0, request.examples)?;
        let mut token_ids = match patterns.last() {
            Some(last) => last.ids(self.vocabulary()?),
            None => Vec::new(),
        };
        token_ids.truncate(100);
        tallies.answer(
            request,
            token_ids,
            |token, value| self.hit(token, value, value, request.context),
            |feature| self.registry().get(feature).cloned(),
        )
    }
}

/// Checks a `token_features` request's sizes and patterns.
pub(crate) fn check_token_request(request: &TokenFeaturesRequest) -> Result<(), QueryError> {
    Limit::K.check(request.k)?;
    Limit::Examples.check(request.examples)?;
    Limit::Context.check(request.context)?;
    if request.tokens.is_empty() || request.tokens.len() > 16 {
        return Err(QueryError::TokenPattern {
            pattern: String::new(),
            reason: "give one token, or a sequence of up to 16".into(),
        });
    }
    Ok(())
}

/// Per feature, its tally over the occurrences seen so far (in token order).
#[derive(Default)]
pub(crate) struct Tallies {
    by_feature: HashMap<u32, Tally>,
    occurrences: u64,
}

impl Tallies {
    /// Adds `index`'s occurrences `found` (its tokens, ascending, after every occurrence
    /// added before); `first_token` is added to its token numbers.
    pub(crate) fn add(
        &mut self,
        index: &QueryIndex,
        found: &[u64],
        first_token: u64,
        keep: usize,
    ) -> Result<(), QueryError> {
        self.occurrences += found.len() as u64;
        for &token in found {
            index
                .codes
                .decode(token..token + 1, |_, features, values| {
                    for (&feature, &value) in features.iter().zip(values) {
                        self.by_feature.entry(feature).or_default().add(
                            value,
                            first_token + token,
                            keep,
                        );
                    }
                    Ok(())
                })?;
        }
        Ok(())
    }

    /// The answer: the `k` most frequent features with their examples (`hit` of a
    /// token and value) and labels.
    pub(crate) fn answer(
        self,
        request: &TokenFeaturesRequest,
        token_ids: Vec<u32>,
        hit: impl Fn(u64, f32) -> Result<TextHit, QueryError>,
        label: impl Fn(u32) -> Option<FeatureLabel>,
    ) -> Result<TokenFeatureProfile, QueryError> {
        let mut ranked: Vec<(u32, Tally)> = self.by_feature.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then(b.1.sum.total_cmp(&a.1.sum))
                .then(a.0.cmp(&b.0))
        });
        ranked.truncate(request.k);
        let occurrences = self.occurrences;
        let mut features = Vec::with_capacity(ranked.len());
        for (feature, tally) in ranked {
            let mut examples = Vec::with_capacity(tally.best.len());
            for &(value, token) in &tally.best {
                examples.push(hit(token, value)?);
            }
            features.push(TokenFeature {
                feature,
                label: label(feature),
                count: tally.count,
                frequency: tally.count as f64 / occurrences as f64,
                mean_activation: (tally.sum / tally.count as f64) as f32,
                max_activation: tally.max,
                examples,
            });
        }
        Ok(TokenFeatureProfile {
            tokens: request.tokens.clone(),
            restrict: request.restrict.clone(),
            exclusions: request.exclusions,
            token_ids,
            occurrences,
            features,
        })
    }
}
