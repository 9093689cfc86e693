//! Two SAEs compared feature by feature: candidates, a one-to-one matching, features
//! without counterpart, and splits.
//!
//! Each feature of A gets candidates in B: its `candidates` nearest decoder directions
//! (blocked products, see [`crate::nearest`]) and, when the indexes share their tokens,
//! its `candidates` best partners by co-activation (see [`crate::coactivation`]), every
//! candidate scored by both. The one-to-one matching is **greedy** on that sparse
//! candidate graph: all candidate pairs scoring at least `min_score`, best first, each
//! taken when neither feature is matched yet. Greedy rather than Hungarian because the
//! graph is sparse and not complete (Hungarian wants a dense `d_sae_a × d_sae_b` cost
//! matrix: 268 MB at 8k, 17 GB at 65k, and O(n³) time), and because the pairs that
//! matter, each other's best candidate, are matched by greedy exactly as by Hungarian;
//! greedy's total score is at least half the optimum on any graph.
//!
//! A split: a feature `a` of A whose tokens a group of B's features share out between
//! them. The group is the partners of `a` with at least `split_containment` of their
//! tokens on `a`'s; it is reported when it has two or more members and the union of
//! their token sets (counted exactly in a second scan) has a Jaccard similarity with
//! `a`'s of at least `split_min_jaccard` that beats the best single partner's by
//! `split_gain`.

use std::collections::{HashMap, HashSet};

use saeidx_query::{AnyIndex, limits::Limit};

use crate::{
    CompareError, Decoder,
    answers::{
        Candidate, CompareRequest, FeatureMatch, MatchBy, SaeComparison, ScoreDistribution, Side,
        Split,
    },
    coactivation::{Pair, SharedTokens, Totals, jaccard, pearson},
    nearest,
};

/// How [`compare_saes`] matches, in words (the answer's `matching`).
pub const MATCHING: &str = "greedy one-to-one on the candidate pairs: best score first, each \
    pair taken when neither feature is matched yet; pairs below min_score are no match";

/// Checks the sizes a request asks for.
pub(crate) fn check(request: &CompareRequest) -> Result<(), CompareError> {
    Limit::Neighbours
        .check(request.candidates)
        .map_err(|e| CompareError::Request(format!("candidates: {e}")))?;
    Limit::Examples
        .check(request.examples)
        .map_err(|e| CompareError::Request(format!("examples: {e}")))?;
    Limit::Context
        .check(request.context)
        .map_err(|e| CompareError::Request(format!("context: {e}")))?;
    for (name, value) in [
        ("min_score", request.min_score),
        ("split_containment", request.split_containment),
        ("split_min_jaccard", request.split_min_jaccard),
        ("split_gain", request.split_gain),
    ] {
        if !(-1.0..=1.0).contains(&value) {
            return Err(CompareError::Request(format!(
                "{name} must be between -1 and 1, not {value}"
            )));
        }
    }
    Ok(())
}

/// An index's side of a comparison.
pub(crate) fn side(index: &AnyIndex) -> Result<Side, CompareError> {
    let job = index.job();
    let counts = index.counts()?;
    Ok(Side {
        index: index.dir().display().to_string(),
        sae: job.sae.source.clone(),
        sae_sha256: job.sae.sha256.clone(),
        d_sae: index.d_sae(),
        hook: job.hook.clone(),
        model: job.model.source.clone(),
        documents: u32::try_from(counts.documents).unwrap_or(u32::MAX),
        tokens: counts.content_tokens,
    })
}

/// Compares the features of `a` (SAE decoder `da`) with those of `b` (`db`).
pub fn compare_saes(
    a: &AnyIndex,
    b: &AnyIndex,
    da: &Decoder,
    db: &Decoder,
    request: &CompareRequest,
) -> Result<SaeComparison, CompareError> {
    check(request)?;
    if da.d_in() != db.d_in() {
        return Err(CompareError::WidthMismatch {
            a: da.d_in(),
            b: db.d_in(),
        });
    }
    let all: Vec<u32> = (0..da.d_sae() as u32).collect();
    let by_decoder = nearest(da, &all, db, request.candidates, false);
    let shared = SharedTokens::new(a, b, request.exclusions)?;
    let matched_by = match (request.by, &shared) {
        (MatchBy::Auto, Ok(_)) | (MatchBy::Coactivation, _) => MatchBy::Coactivation,
        (MatchBy::Auto | MatchBy::Decoder, _) => MatchBy::Decoder,
    };
    let (mut features, splits, dead_a, live_b) = match &shared {
        Ok(shared) => with_coactivation(shared, da, db, &by_decoder, request)?,
        Err(reason) if matched_by == MatchBy::Coactivation => {
            return Err(CompareError::NotSameTokens(format!(
                "matching by co-activation needs indexes of the same tokens, but {reason}"
            )));
        }
        Err(_) => (decoder_only(&by_decoder), Vec::new(), Vec::new(), None),
    };
    for feature in &mut features {
        for c in &mut feature.candidates {
            c.score = match matched_by {
                MatchBy::Coactivation => c.pearson,
                _ => Some(f64::from(c.decoder_cosine)),
            };
        }
        feature.candidates.sort_by(|x, y| {
            y.score
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&x.score.unwrap_or(f64::NEG_INFINITY))
                .then(x.feature.cmp(&y.feature))
        });
    }
    let matched_b = greedy(&mut features, request.min_score);
    let dead: HashSet<u32> = dead_a.iter().copied().collect();
    let unmatched_a = features
        .iter()
        .filter(|f| f.matched.is_none() && !dead.contains(&f.feature))
        .map(|f| f.feature)
        .collect();
    let unmatched_b = (0..db.d_sae() as u32)
        .filter(|f| !matched_b.contains(f))
        .filter(|f| {
            live_b
                .as_ref()
                .is_none_or(|live: &Vec<bool>| live[*f as usize])
        })
        .collect();
    let scores: Vec<f64> = features.iter().filter_map(|f| f.score).collect();
    Ok(SaeComparison {
        a: side(a)?,
        b: side(b)?,
        shared_tokens: shared.as_ref().ok().map(|s| s.tokens),
        shared_tokens_absent: shared.as_ref().err().cloned(),
        matched_by,
        request: *request,
        matching: MATCHING.into(),
        matched: scores.len() as u64,
        unmatched_a,
        unmatched_b,
        dead_a,
        scores: distribution(&scores),
        splits,
        features,
    })
}

/// Candidates by decoder cosine alone (no shared tokens).
fn decoder_only(by_decoder: &[Vec<saeidx_query::DecoderNeighbour>]) -> Vec<FeatureMatch> {
    by_decoder
        .iter()
        .enumerate()
        .map(|(a, near)| FeatureMatch {
            feature: a as u32,
            count: None,
            matched: None,
            score: None,
            candidates: near
                .iter()
                .map(|n| Candidate {
                    feature: n.feature,
                    decoder_cosine: n.cosine,
                    pearson: None,
                    jaccard: None,
                    together: None,
                    score: None,
                })
                .collect(),
        })
        .collect()
}

/// What [`with_coactivation`] answers: features, splits, A's dead features, which of
/// B's features are live.
type Coactivated = (Vec<FeatureMatch>, Vec<Split>, Vec<u32>, Option<Vec<bool>>);

/// Candidates by decoder cosine and co-activation, and the splits.
fn with_coactivation(
    shared: &SharedTokens<'_>,
    da: &Decoder,
    db: &Decoder,
    by_decoder: &[Vec<saeidx_query::DecoderNeighbour>],
    request: &CompareRequest,
) -> Result<Coactivated, CompareError> {
    let (totals_a, totals_b) = shared.totals()?;
    let n = shared.tokens;
    let scored = shared.for_each_batch(|range, pairs| {
        Ok(range
            .zip(pairs)
            .map(|(a, partners)| {
                candidates_of(
                    a, &partners, n, &totals_a, &totals_b, da, db, by_decoder, request,
                )
            })
            .collect())
    })?;
    let mut features = Vec::with_capacity(scored.len());
    let mut groups = Vec::new();
    for (feature, group) in scored {
        if let Some(group) = group {
            groups.push(group);
        }
        features.push(feature);
    }
    let splits = splits(shared, &groups, &totals_a, request)?;
    let dead_a = (0u32..)
        .zip(&totals_a)
        .filter(|(_, t)| t.count == 0)
        .map(|(f, _)| f)
        .collect();
    let live_b = totals_b.iter().map(|t| t.count > 0).collect();
    Ok((features, splits, dead_a, Some(live_b)))
}

/// A possible split: feature of A, its group in B, the best single Jaccard.
type Group = (u32, Vec<u32>, f64);

/// Feature `a`'s candidates (decoder's and co-activation's best) and its split group.
#[allow(clippy::too_many_arguments)]
fn candidates_of(
    a: u32,
    partners: &HashMap<u32, Pair>,
    n: u64,
    totals_a: &[Totals],
    totals_b: &[Totals],
    da: &Decoder,
    db: &Decoder,
    by_decoder: &[Vec<saeidx_query::DecoderNeighbour>],
    request: &CompareRequest,
) -> (FeatureMatch, Option<Group>) {
    let ta = &totals_a[a as usize];
    let candidate = |b: u32| {
        let pair = partners.get(&b).copied().unwrap_or_default();
        let tb = &totals_b[b as usize];
        Candidate {
            feature: b,
            decoder_cosine: da.cosine(a as usize, db, b as usize),
            pearson: pearson(n, ta, tb, &pair),
            jaccard: Some(jaccard(ta, tb, &pair)),
            together: Some(pair.together),
            score: None,
        }
    };
    let mut by_pearson: Vec<Candidate> = partners.keys().map(|&b| candidate(b)).collect();
    by_pearson.sort_by(|x, y| {
        y.pearson
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&x.pearson.unwrap_or(f64::NEG_INFINITY))
            .then(x.feature.cmp(&y.feature))
    });
    let best_single = by_pearson
        .iter()
        .filter_map(|c| c.jaccard)
        .fold(0.0f64, f64::max);
    let mut group: Vec<u32> = partners
        .iter()
        .filter(|(b, pair)| {
            let count = totals_b[**b as usize].count;
            count > 0 && pair.together as f64 >= request.split_containment * count as f64
        })
        .map(|(b, _)| *b)
        .collect();
    group.sort_unstable();
    by_pearson.truncate(request.candidates);
    let mut seen: HashSet<u32> = by_pearson.iter().map(|c| c.feature).collect();
    let mut candidates = by_pearson;
    for near in &by_decoder[a as usize] {
        if seen.insert(near.feature) {
            candidates.push(candidate(near.feature));
        }
    }
    let feature = FeatureMatch {
        feature: a,
        count: Some(ta.count),
        matched: None,
        score: None,
        candidates,
    };
    let group = (group.len() >= 2 && ta.count > 0).then_some((a, group, best_single));
    (feature, group)
}

/// The groups that are splits, with their union's overlap counted exactly.
fn splits(
    shared: &SharedTokens<'_>,
    groups: &[Group],
    totals_a: &[Totals],
    request: &CompareRequest,
) -> Result<Vec<Split>, CompareError> {
    let members: Vec<(u32, Vec<u32>)> = groups.iter().map(|(a, g, _)| (*a, g.clone())).collect();
    let unions = shared.unions(&members)?;
    let mut out = Vec::new();
    for ((a, into, best_single), (union, both)) in groups.iter().zip(unions) {
        let count = totals_a[*a as usize].count;
        let union_jaccard = both as f64 / (count + union - both) as f64;
        if union_jaccard >= request.split_min_jaccard
            && union_jaccard >= best_single + request.split_gain
        {
            out.push(Split {
                feature: *a,
                into: into.clone(),
                union_jaccard,
                best_single_jaccard: *best_single,
                coverage: both as f64 / count as f64,
            });
        }
    }
    Ok(out)
}

/// Greedy one-to-one matching (see the module's documentation); returns B's matched
/// features.
fn greedy(features: &mut [FeatureMatch], min_score: f64) -> HashSet<u32> {
    let mut edges: Vec<(f64, u32, u32)> = features
        .iter()
        .flat_map(|f| {
            f.candidates
                .iter()
                .filter_map(move |c| c.score.map(|s| (s, f.feature, c.feature)))
        })
        .filter(|(s, _, _)| *s >= min_score)
        .collect();
    edges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut taken_b = HashSet::new();
    for (score, a, b) in edges {
        let feature = &mut features[a as usize];
        if feature.matched.is_none() && !taken_b.contains(&b) {
            feature.matched = Some(b);
            feature.score = Some(score);
            taken_b.insert(b);
        }
    }
    taken_b
}

/// The distribution of matched scores.
fn distribution(scores: &[f64]) -> ScoreDistribution {
    let mut histogram = vec![0u64; 10];
    for s in scores {
        let bin = ((s.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        histogram[bin] += 1;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        if sorted.is_empty() {
            0.0
        } else {
            sorted[((sorted.len() - 1) as f64 * p).round() as usize]
        }
    };
    ScoreDistribution {
        histogram,
        percentiles: [0.1, 0.25, 0.5, 0.75, 0.9].map(percentile).to_vec(),
        mean: if scores.is_empty() {
            0.0
        } else {
            scores.iter().sum::<f64>() / scores.len() as f64
        },
    }
}
