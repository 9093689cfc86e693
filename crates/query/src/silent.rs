//! Contexts where a feature stays silent: the counter-examples that explaining and
//! scoring a feature need (delphi's "non-activating examples"), taken from the index
//! instead of running the model again.
//!
//! A context is the window of `context` tokens on each side of a centre token, within
//! one document. It is *silent* for a feature when the feature is active on none of the
//! window's counted tokens (those the exclusions leave in); its centre is itself a
//! counted token. Two kinds are asked for:
//!
//! - any silent context, spread over the whole index (`tokens` empty): token positions
//!   are visited in a seeded order that covers every token exactly once (a random start
//!   and a random stride coprime with the number of tokens), so the answer has
//!   `min(n, silent contexts)` entries and a feature that fires almost everywhere costs
//!   one pass over the tokens, never an endless search;
//! - silent contexts centred on given token ids (`tokens`, e.g. the tokens a feature
//!   fires on most): the same words where it does *not* fire. Every occurrence is
//!   found by one scan of the token column; each id's occurrences are shuffled (seeded)
//!   and taken round-robin over the ids, in the order given.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng, rngs::StdRng, seq::SliceRandom};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Exclusions, QueryError, QueryIndex, TextHit, limits::Limit};

/// `silent_contexts`: where a feature stays silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SilentRequest {
    /// The feature.
    pub feature: u32,
    /// How many contexts.
    pub n: usize,
    /// Tokens of context on each side of the centre; the whole window must be silent.
    pub context: u32,
    /// Centre token ids, most wanted first; empty: any token.
    pub tokens: Vec<u32>,
    /// Seed of the choice.
    pub seed: u64,
    /// Tokens that do not count (a left-out token may be active, and never centres a
    /// context).
    pub exclusions: Exclusions,
}

impl Default for SilentRequest {
    fn default() -> Self {
        Self {
            feature: 0,
            n: 10,
            context: 8,
            tokens: Vec::new(),
            seed: 0,
            exclusions: Exclusions::default(),
        }
    }
}

/// The answer of `silent_contexts`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SilentContexts {
    /// The feature.
    pub feature: u32,
    /// The contexts, as hits with activation and score 0 (see the module documentation
    /// for their order).
    pub contexts: Vec<TextHit>,
}

impl QueryIndex {
    /// Up to `request.n` contexts in which `request.feature` is active on no counted
    /// token.
    pub fn silent_contexts(&self, request: &SilentRequest) -> Result<SilentContexts, QueryError> {
        Limit::Examples.check(request.n)?;
        Limit::Context.check(request.context)?;
        Limit::K.check(request.tokens.len())?;
        let contexts = self.answer(self.find_silent(request))?;
        Ok(SilentContexts {
            feature: request.feature,
            contexts,
        })
    }

    fn find_silent(&self, request: &SilentRequest) -> Result<Vec<TextHit>, QueryError> {
        let feature = request.feature;
        let f = self.feature_index(feature)?;
        let mut active: Vec<u64> = self
            .kept_postings(f, request.exclusions, None)?
            .into_iter()
            .map(|(token, _)| token)
            .collect();
        active.sort_unstable();
        let silent = Silence {
            index: self,
            active: &active,
            context: request.context,
            mask: request.exclusions.mask(),
        };
        let centres = if request.tokens.is_empty() {
            silent.anywhere(request.n, request.seed)?
        } else {
            silent.on_tokens(&request.tokens, request.n, request.seed)?
        };
        centres
            .into_iter()
            .map(|token| self.hit(token, 0.0, 0.0, request.context))
            .collect()
    }
}

/// Whether windows are silent for one feature.
pub(crate) struct Silence<'a> {
    pub(crate) index: &'a QueryIndex,
    /// Global tokens where the feature is active on a counted token, ascending.
    pub(crate) active: &'a [u64],
    pub(crate) context: u32,
    pub(crate) mask: u8,
}

impl Silence<'_> {
    /// Whether global token `token` is counted and its window holds no active token.
    pub(crate) fn centres(&self, token: u64) -> Result<bool, QueryError> {
        self.centres_with(token, self.index.flags(token)?)
    }

    /// [`Self::centres`] for a token whose flags are `flags`.
    pub(crate) fn centres_with(&self, token: u64, flags: u8) -> Result<bool, QueryError> {
        if flags & self.mask != 0 {
            return Ok(false);
        }
        let (doc, position) = self.index.token_doc(token)?;
        let (first, count) = self.index.doc_tokens(doc)?;
        let position = u64::from(position);
        let low = first + position.saturating_sub(u64::from(self.context));
        let high = first + (position + u64::from(self.context)).min(u64::from(count) - 1);
        let next = self.active.partition_point(|a| *a < low);
        Ok(self.active.get(next).is_none_or(|a| *a > high))
    }

    /// Up to `n` silent centres anywhere, visiting every token once in a seeded order.
    fn anywhere(&self, n: usize, seed: u64) -> Result<Vec<u64>, QueryError> {
        let total = self.index.tokens.tokens();
        let mut found = Vec::with_capacity(n.min(total as usize));
        if total == 0 || n == 0 {
            return Ok(found);
        }
        for token in visiting_order(total, seed) {
            if self.centres(token)? {
                found.push(token);
                if found.len() == n {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Up to `n` silent centres whose token id is one of `ids`, round-robin over `ids`.
    fn on_tokens(&self, ids: &[u32], n: usize, seed: u64) -> Result<Vec<u64>, QueryError> {
        let (order, wanted) = wanted_ids(ids);
        let mut occurrences: Vec<Vec<u64>> = vec![Vec::new(); order.len()];
        let tokens = &self.index.tokens;
        tokens.scan(0..tokens.tokens(), |token, entry| {
            if let Some(&slot) = wanted.get(&entry.token)
                && self.centres_with(token, entry.flags)?
            {
                occurrences[slot].push(token);
            }
            Ok(())
        })?;
        Ok(round_robin(occurrences, n, seed))
    }
}

/// Every token of `0..total` once, in the seeded order of silent contexts anywhere.
pub(crate) fn visiting_order(total: u64, seed: u64) -> impl Iterator<Item = u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = rng.random_range(0..total.max(1));
    let mut stride = rng.random_range(1..total.max(2));
    while gcd(stride, total) != 1 {
        stride = stride % total + 1;
    }
    (0..total).map(move |i| {
        ((u128::from(start) + u128::from(i) * u128::from(stride)) % u128::from(total)) as u64
    })
}

/// The distinct ids of `ids` in their order, and each one's slot in it.
pub(crate) fn wanted_ids(ids: &[u32]) -> (Vec<u32>, HashMap<u32, usize>) {
    let mut order: Vec<u32> = Vec::with_capacity(ids.len());
    for id in ids {
        if !order.contains(id) {
            order.push(*id);
        }
    }
    let wanted = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    (order, wanted)
}

/// Up to `n` of `occurrences` (one list per id, in token order): each list shuffled
/// (seeded), then taken round-robin over the ids.
pub(crate) fn round_robin<T: Copy>(mut occurrences: Vec<Vec<T>>, n: usize, seed: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    for list in &mut occurrences {
        list.shuffle(&mut rng);
    }
    let mut found = Vec::with_capacity(n);
    let mut round = 0;
    while found.len() < n {
        let before = found.len();
        for list in &occurrences {
            if let Some(token) = list.get(round)
                && found.len() < n
            {
                found.push(*token);
            }
        }
        if found.len() == before {
            break;
        }
        round += 1;
    }
    found
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
