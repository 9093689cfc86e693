//! Two runs of one SAE (equal SHA-256), e.g. last night's corpus and tonight's: per
//! feature, the change in density, max and mean, and the top examples that are new;
//! features that appeared or vanished.
//!
//! Statistics are each index's own (`feature_stats`), top examples each index's
//! `top_texts` ranked per token; an example is identified by its document's stable id
//! and the token's position, so a document both runs hold is recognised even when its
//! number changed.

use std::collections::HashSet;

use rayon::prelude::*;
use saeidx_query::{AnyIndex, FeatureStats, Rank, TextHit, TopTextsRequest};

use crate::{
    CompareError,
    answers::{CompareRequest, FeatureChange, RunComparison},
    saes::{check, side},
};

/// Compares two runs of one SAE.
pub fn compare_runs(
    a: &AnyIndex,
    b: &AnyIndex,
    request: &CompareRequest,
) -> Result<RunComparison, CompareError> {
    check(request)?;
    if a.d_sae() != b.d_sae() {
        return Err(CompareError::Request(format!(
            "the indexes record one SAE but {} and {} features",
            a.d_sae(),
            b.d_sae()
        )));
    }
    let features: Vec<(FeatureStats, FeatureStats, Vec<TextHit>)> = (0..a.d_sae() as u32)
        .into_par_iter()
        .map(|feature| {
            let stats_a = a.feature_stats(feature, request.exclusions)?;
            let stats_b = b.feature_stats(feature, request.exclusions)?;
            let new = new_examples(a, b, feature, request)?;
            Ok((stats_a, stats_b, new))
        })
        .collect::<Result<_, CompareError>>()?;
    let mut appeared = Vec::new();
    let mut vanished = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for (sa, sb, new_examples) in features {
        if sa.count == 0 && sb.count > 0 {
            appeared.push(sa.feature);
        }
        if sa.count > 0 && sb.count == 0 {
            vanished.push(sa.feature);
        }
        let same = sa.count == sb.count
            && sa.density == sb.density
            && sa.max_activation == sb.max_activation
            && sa.mean_activation == sb.mean_activation
            && new_examples.is_empty();
        if same {
            unchanged += 1;
            continue;
        }
        changed.push(FeatureChange {
            feature: sa.feature,
            count: [sa.count, sb.count],
            density: [sa.density, sb.density],
            max_activation: [sa.max_activation, sb.max_activation],
            mean_activation: [sa.mean_activation, sb.mean_activation],
            density_change: sb.density - sa.density,
            new_examples,
        });
    }
    changed.sort_by(|x, y| {
        y.density_change
            .abs()
            .total_cmp(&x.density_change.abs())
            .then(x.feature.cmp(&y.feature))
    });
    Ok(RunComparison {
        a: side(a)?,
        b: side(b)?,
        request: *request,
        appeared,
        vanished,
        changed,
        unchanged,
    })
}

/// B's top examples of `feature` that are not among A's, by document id and position.
fn new_examples(
    a: &AnyIndex,
    b: &AnyIndex,
    feature: u32,
    request: &CompareRequest,
) -> Result<Vec<TextHit>, CompareError> {
    let top = TopTextsRequest {
        feature,
        k: request.examples,
        rank: Rank::Token,
        context: request.context,
        exclusions: request.exclusions,
        restrict: Default::default(),
        token: Default::default(),
    };
    let old: HashSet<(String, u32)> = a
        .top_texts(&top)?
        .texts
        .into_iter()
        .map(|hit| (hit.id, hit.position))
        .collect();
    Ok(b.top_texts(&top)?
        .texts
        .into_iter()
        .filter(|hit| !old.contains(&(hit.id.clone(), hit.position)))
        .collect())
}
