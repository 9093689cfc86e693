//! Contrast: which features are over-represented in one set of documents (A) relative to
//! another (B, or the rest of the index), per token.
//!
//! Each feature is a yes/no event per counted token. With `y` the tokens it fires on
//! and `n` the counted tokens of a set, the score is the **log-odds ratio with an
//! informative Dirichlet prior** (Monroe, Colaresi & Quinn 2008, "Fightin' Words"),
//! binomial form: the prior adds `α·p` pseudo-firings and `α·(1 − p)` pseudo-silences
//! to both sets, `p` being the feature's rate over A and B together and `α` the prior's
//! strength (`prior`, in pseudo-tokens),
//!
//! ```text
//! δ = ln((y_A + αp) / (n_A − y_A + α(1−p))) − ln((y_B + αp) / (n_B − y_B + α(1−p)))
//! σ² ≈ 1/(y_A + αp) + 1/(n_A − y_A + α(1−p)) + 1/(y_B + αp) + 1/(n_B − y_B + α(1−p))
//! ```
//!
//! and features are ranked by `z = δ / σ`. Why this and not a plain ratio of rates: a
//! feature seen twice in A and never in B has an infinite ratio, and a binomial test
//! with a minimum count needs a threshold chosen by hand that still ranks the features
//! just above it by chance. The prior shrinks rare features' log-odds towards zero (by
//! how much their rate is uncertain), and dividing by σ ranks by evidence, so a feature
//! rises only with many firings in A *and* a rate that differs from B's. `min_count`
//! (firings in A and B together) is a floor on top of it.
//!
//! A's counts come from decoding its tokens' codes once. B as "the rest of the index"
//! (with the default exclusions) is never decoded: its counts and sums are the stored
//! per-feature totals of `features.arrow` less A's, so contrasting a small subset with
//! the rest costs the subset alone.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    QueryError, QueryIndex,
    index::{Exclusions, Rank, Scope, TextHit},
    limits::Limit,
    registry::FeatureLabel,
    restrict::Restriction,
    subset::Profile,
};

/// `contrast`: features over-represented in A relative to B, and in B relative to A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ContrastRequest {
    /// Set A.
    pub a: Restriction,
    /// Set B; `None`: every document not in A.
    pub b: Option<Restriction>,
    /// Features per direction.
    pub k: usize,
    /// Example texts per feature (from A for A's features, from B for B's).
    pub examples: usize,
    /// Tokens of context on each side of an example.
    pub context: u32,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// The prior's strength α, in pseudo-tokens (larger: rare features shrink more).
    pub prior: f64,
    /// Features firing on fewer tokens of A and B together are left out.
    pub min_count: u64,
}

impl Default for ContrastRequest {
    fn default() -> Self {
        Self {
            a: Restriction::default(),
            b: None,
            k: 10,
            examples: 2,
            context: 8,
            exclusions: Exclusions::default(),
            prior: 100.0,
            min_count: 5,
        }
    }
}

/// One feature of a contrast.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContrastFeature {
    /// The feature.
    pub feature: u32,
    /// Its label, if the registry has one.
    pub label: Option<FeatureLabel>,
    /// Tokens of A it fires on.
    pub count_a: u64,
    /// Tokens of B it fires on.
    pub count_b: u64,
    /// `count_a` over A's counted tokens.
    pub rate_a: f64,
    /// `count_b` over B's counted tokens.
    pub rate_b: f64,
    /// Mean activation where it fires in A (0 when it does not).
    pub mean_a: f32,
    /// Mean activation where it fires in B.
    pub mean_b: f32,
    /// The log-odds ratio δ (positive: more in A), with the prior.
    pub log_odds: f64,
    /// δ / σ: what the features are ranked by (A's list: largest first; B's: smallest).
    pub z: f64,
    /// Its strongest texts in the set it is over-represented in.
    pub examples: Vec<TextHit>,
}

/// The answer of `contrast`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Contrast {
    /// Set A.
    pub a: Restriction,
    /// Set B (`null`: the rest of the index).
    pub b: Option<Restriction>,
    /// Documents in A.
    pub documents_a: u64,
    /// Documents in B.
    pub documents_b: u64,
    /// Counted tokens of A.
    pub tokens_a: u64,
    /// Counted tokens of B.
    pub tokens_b: u64,
    /// The prior's strength α.
    pub prior: f64,
    /// The minimum count applied.
    pub min_count: u64,
    /// Tokens left out.
    pub exclusions: Exclusions,
    /// Features over-represented in A, strongest evidence first.
    pub a_over_b: Vec<ContrastFeature>,
    /// Features over-represented in B, strongest evidence first.
    pub b_over_a: Vec<ContrastFeature>,
}

/// δ and z of counts `(y_a, n_a)` against `(y_b, n_b)` with prior strength `alpha`.
pub fn log_odds(y_a: u64, n_a: u64, y_b: u64, n_b: u64, alpha: f64) -> (f64, f64) {
    let total = (n_a + n_b) as f64;
    let p = if total == 0.0 {
        0.0
    } else {
        (y_a + y_b) as f64 / total
    };
    let on = alpha * p;
    let off = alpha * (1.0 - p);
    let (ya, yb) = (y_a as f64 + on, y_b as f64 + on);
    let (xa, xb) = (
        n_a.saturating_sub(y_a) as f64 + off,
        n_b.saturating_sub(y_b) as f64 + off,
    );
    if ya <= 0.0 || yb <= 0.0 || xa <= 0.0 || xb <= 0.0 {
        return (0.0, 0.0);
    }
    let delta = (ya / xa).ln() - (yb / xb).ln();
    let variance = 1.0 / ya + 1.0 / xa + 1.0 / yb + 1.0 / xb;
    (delta, delta / variance.sqrt())
}

impl QueryIndex {
    /// Features over-represented in A relative to B per token, both ways (see the
    /// module's doc for the score).
    pub fn contrast(&self, request: &ContrastRequest) -> Result<Contrast, QueryError> {
        check_request(request)?;
        let all = || self.doc_set_of(0..self.documents());
        let a = match self.doc_set(&request.a)? {
            Some(set) => set,
            None => all()?,
        };
        let b = match &request.b {
            None => self.complement(&a)?,
            Some(b) => match self.doc_set(b)? {
                Some(set) => set,
                None => all()?,
            },
        };
        let profile_a = self.answer(self.profile(&a, request.exclusions))?;
        // The rest of the index: stored totals less A (they count the default
        // exclusions); any other B is scanned.
        let profile_b = if request.b.is_none() && request.exclusions == Exclusions::default() {
            self.answer(self.rest_profile(&profile_a))?
        } else {
            self.answer(self.profile(&b, request.exclusions))?
        };
        let documents = (a.len() as u64, b.len() as u64);
        let answer = contrast_of(
            request,
            documents,
            (&profile_a, &profile_b),
            |mut feature, over_a| {
                feature.label = self.registry().get(feature.feature).cloned();
                feature.examples = self.ranked_texts(
                    feature.feature,
                    request.examples,
                    Rank::Token,
                    request.context,
                    request.exclusions,
                    Scope::docs(Some(if over_a { &a } else { &b })),
                )?;
                Ok(feature)
            },
        );
        self.answer(answer)
    }
}

/// Checks a contrast request's sizes and prior.
pub(crate) fn check_request(request: &ContrastRequest) -> Result<(), QueryError> {
    Limit::K.check(request.k)?;
    Limit::Examples.check(request.examples)?;
    Limit::Context.check(request.context)?;
    if !(request.prior.is_finite() && request.prior > 0.0) {
        return Err(QueryError::Contrast(format!(
            "the prior must be a positive number of pseudo-tokens, not {}",
            request.prior
        )));
    }
    Ok(())
}

/// The contrast of A's profile with B's (`documents`: A's and B's); `examples` gives
/// each chosen feature its label and examples (`true`: from A, over-represented there).
pub(crate) fn contrast_of(
    request: &ContrastRequest,
    documents: (u64, u64),
    (profile_a, profile_b): (&Profile, &Profile),
    mut examples: impl FnMut(ContrastFeature, bool) -> Result<ContrastFeature, QueryError>,
) -> Result<Contrast, QueryError> {
    let scored = score(profile_a, profile_b, request);
    let mut pick = |over_a: bool| -> Result<Vec<ContrastFeature>, QueryError> {
        let mut chosen: Vec<&ContrastFeature> = scored
            .iter()
            .filter(|f| if over_a { f.z > 0.0 } else { f.z < 0.0 })
            .collect();
        chosen.sort_by(|x, y| {
            let (x_z, y_z) = if over_a { (x.z, y.z) } else { (-x.z, -y.z) };
            y_z.total_cmp(&x_z).then(x.feature.cmp(&y.feature))
        });
        chosen.truncate(request.k);
        chosen
            .into_iter()
            .map(|f| examples(f.clone(), over_a))
            .collect()
    };
    let (a_over_b, b_over_a) = (pick(true)?, pick(false)?);
    Ok(Contrast {
        a: request.a.clone(),
        b: request.b.clone(),
        documents_a: documents.0,
        documents_b: documents.1,
        tokens_a: profile_a.tokens,
        tokens_b: profile_b.tokens,
        prior: request.prior,
        min_count: request.min_count,
        exclusions: request.exclusions,
        a_over_b,
        b_over_a,
    })
}

/// Every feature active in A or B with at least `min_count` firings, scored.
fn score(a: &Profile, b: &Profile, request: &ContrastRequest) -> Vec<ContrastFeature> {
    let rate = |y: u64, n: u64| if n == 0 { 0.0 } else { y as f64 / n as f64 };
    let mean = |sum: f64, y: u64| if y == 0 { 0.0 } else { (sum / y as f64) as f32 };
    (0u32..)
        .zip(a.count.iter().zip(&b.count))
        .filter(|(_, (ya, yb))| **ya + **yb > 0 && **ya + **yb >= request.min_count)
        .map(|(feature, (&ya, &yb))| {
            let f = feature as usize;
            let (log_odds, z) = log_odds(ya, a.tokens, yb, b.tokens, request.prior);
            ContrastFeature {
                feature,
                label: None,
                count_a: ya,
                count_b: yb,
                rate_a: rate(ya, a.tokens),
                rate_b: rate(yb, b.tokens),
                mean_a: mean(a.sum[f], ya),
                mean_b: mean(b.sum[f], yb),
                log_odds,
                z,
                examples: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::log_odds;

    #[test]
    fn rare_features_do_not_outrank_frequent_ones_by_chance() {
        // Twice in A and never in B (out of 10,000 tokens each) against 200 vs 100.
        let (_, rare) = log_odds(2, 10_000, 0, 10_000, 100.0);
        let (_, frequent) = log_odds(200, 10_000, 100, 10_000, 100.0);
        assert!(frequent > rare && rare > 0.0, "{frequent} {rare}");
        let (delta, z) = log_odds(50, 1000, 50, 1000, 100.0);
        assert_eq!((delta, z), (0.0, 0.0));
        let (delta, z) = log_odds(10, 1000, 100, 1000, 100.0);
        assert!(delta < 0.0 && z < 0.0);
    }
}
