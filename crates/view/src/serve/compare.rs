//! The comparison of the addressed index (A) with another served index (B, `with=NAME`):
//! `GET /compare?with=NAME` (a page linking both features' pages) and
//! `GET /api/compare?with=NAME` ([`Comparison`], as `saeidx compare A B --json`).
//! Parameters: `candidates`, `by` (`auto`, `decoder`, `coactivation`), `min_score`,
//! `examples`, `context`, `show` (page rows), and the exclusions.

use std::fmt::Write;

use saeidx_compare::{CompareRequest, Comparison, MatchBy, RunComparison, SaeComparison};
use saeidx_query::AnyIndex;

use super::{
    form::{Failure, Params},
    routes::{Context, Reply, answer, busy, html},
};
use crate::{escape, page};

/// Rows of matched pairs (or changed features) a page shows unless `show` says.
const SHOW: usize = 200;

impl Context<'_> {
    /// The request of `params`.
    fn compare_request(params: &Params) -> Result<CompareRequest, Failure> {
        let defaults = CompareRequest::default();
        let by = match params.text("by").as_deref() {
            None | Some("auto") => MatchBy::Auto,
            Some("decoder") => MatchBy::Decoder,
            Some("coactivation") => MatchBy::Coactivation,
            Some(other) => {
                return Err((
                    400,
                    format!("by={other:?}: use auto, decoder or coactivation"),
                ));
            }
        };
        Ok(CompareRequest {
            candidates: params.number("candidates", defaults.candidates)?,
            by,
            min_score: params.number("min_score", defaults.min_score)?,
            examples: params.number("examples", defaults.examples)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            ..defaults
        })
    }

    /// The comparison of this index with the served index `with=NAME`, and B's URL prefix.
    fn comparison(&self, params: &Params) -> Result<(Comparison, String), Failure> {
        let name = params
            .text("with")
            .ok_or_else(|| (400, "name the index to compare with: with=NAME".to_string()))?;
        let other = self
            .slots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| (404, format!("no index named {name:?} is served")))?;
        let request = Self::compare_request(params)?;
        let b_slot = &self.slots[other];
        b_slot.refresh();
        let b_base = if other == 0 {
            String::new()
        } else {
            format!("/i/{name}")
        };
        self.with_index(|a| {
            let b = b_slot.opened.read().map_err(|_| busy())?;
            let compared = compare(a, &b.index, &request)?;
            Ok((compared, b_base))
        })
    }

    /// `GET /api/compare`.
    pub(super) fn compare_api(&self, params: &Params) -> Result<Reply, Failure> {
        answer(&self.comparison(params)?.0)
    }

    /// `GET /compare`.
    pub(super) fn compare_page(&self, params: &Params) -> Result<Reply, Failure> {
        let (comparison, b_base) = self.comparison(params)?;
        let show = params.number("show", SHOW)?;
        let link_a = |f: u32| format!("{}/feature/{f}", self.base);
        let link_b = |f: u32| format!("{b_base}/feature/{f}");
        let body = match &comparison {
            Comparison::Saes(saes) => render_saes(saes, &link_a, &link_b, show),
            Comparison::Runs(runs) => render_runs(runs, &link_a, &link_b, show),
        };
        Ok(html(200, page("saeidx: comparison", &body)))
    }
}

/// [`saeidx_compare::compare`] with the SAE files where the indexes record them.
fn compare(a: &AnyIndex, b: &AnyIndex, request: &CompareRequest) -> Result<Comparison, Failure> {
    saeidx_compare::compare_recorded(a, b, request).map_err(|e| {
        let status = match e {
            saeidx_compare::CompareError::Request(_) => 400,
            saeidx_compare::CompareError::SaeNotFound { .. }
            | saeidx_compare::CompareError::NotSameTokens(_)
            | saeidx_compare::CompareError::WidthMismatch { .. } => 409,
            _ => 500,
        };
        (status, e.to_string())
    })
}

fn render_saes(
    c: &SaeComparison,
    link_a: &dyn Fn(u32) -> String,
    link_b: &dyn Fn(u32) -> String,
    show: usize,
) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Comparison</h1><p class=\"meta\">A: {} ({} features, SAE {})<br>B: {} ({} features, SAE {})</p>",
        escape(&c.a.index),
        c.a.d_sae,
        escape(&c.a.sae),
        escape(&c.b.index),
        c.b.d_sae,
        escape(&c.b.sae)
    );
    let shared = match (c.shared_tokens, &c.shared_tokens_absent) {
        (Some(n), _) => format!("{n} shared tokens"),
        (_, Some(why)) => format!("no shared tokens ({}): decoder cosine only", escape(why)),
        _ => String::new(),
    };
    let _ = writeln!(
        body,
        "<p>{shared}. Matched by {:?} ({}): {} pairs; {} features of A without counterpart, {} of B; {} dead in A; {} splits.</p>",
        c.matched_by,
        escape(&c.matching),
        c.matched,
        c.unmatched_a.len(),
        c.unmatched_b.len(),
        c.dead_a.len(),
        c.splits.len()
    );
    body.push_str("<h2>Matched scores</h2>\n<table class=\"stats\">");
    for (bin, count) in c.scores.histogram.iter().enumerate() {
        let _ = write!(
            body,
            "<tr><td>{:.1}–{:.1}</td><td>{count}</td></tr>",
            bin as f64 / 10.0,
            (bin + 1) as f64 / 10.0
        );
    }
    body.push_str("</table>\n<h2>Splits</h2>\n<ul>\n");
    for s in c.splits.iter().take(show) {
        let into: Vec<String> = s
            .into
            .iter()
            .map(|f| format!("<a href=\"{}\">B {f}</a>", link_b(*f)))
            .collect();
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">A {}</a> → {} — union Jaccard {:.3} (best single {:.3})</li>",
            link_a(s.feature),
            s.feature,
            into.join(", "),
            s.union_jaccard,
            s.best_single_jaccard
        );
    }
    body.push_str("</ul>\n<h2>Matches, best first</h2>\n<table class=\"stats\"><tr><th>A</th><th>B</th><th>score</th><th>decoder cosine</th><th>Pearson</th><th>Jaccard</th></tr>\n");
    let mut pairs: Vec<_> = c.features.iter().filter(|f| f.matched.is_some()).collect();
    pairs.sort_by(|x, y| y.score.unwrap_or(0.0).total_cmp(&x.score.unwrap_or(0.0)));
    for f in pairs.into_iter().take(show) {
        let Some(m) = f.candidates.iter().find(|c| Some(c.feature) == f.matched) else {
            continue;
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td><a href=\"{}\">{}</a></td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            link_a(f.feature),
            f.feature,
            link_b(m.feature),
            m.feature,
            f.score.unwrap_or(0.0),
            m.decoder_cosine,
            optional(m.pearson),
            optional(m.jaccard)
        );
    }
    body.push_str("</table>\n");
    body
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

fn render_runs(
    c: &RunComparison,
    link_a: &dyn Fn(u32) -> String,
    link_b: &dyn Fn(u32) -> String,
    show: usize,
) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>Two runs of one SAE</h1><p class=\"meta\">SAE {}<br>A: {} ({} documents, {} tokens)<br>B: {} ({} documents, {} tokens)</p><p>{} features changed, {} unchanged; {} appeared, {} vanished.</p>",
        escape(&c.a.sae),
        escape(&c.a.index),
        c.a.documents,
        c.a.tokens,
        escape(&c.b.index),
        c.b.documents,
        c.b.tokens,
        c.changed.len(),
        c.unchanged,
        c.appeared.len(),
        c.vanished.len()
    );
    body.push_str("<table class=\"stats\"><tr><th>feature</th><th>density A → B</th><th>max</th><th>mean</th><th>new top examples</th></tr>\n");
    for f in c.changed.iter().take(show) {
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{}\">A {}</a> · <a href=\"{}\">B</a></td><td>{:.5} → {:.5}</td><td>{:.3} → {:.3}</td><td>{:.3} → {:.3}</td><td>{}</td></tr>",
            link_a(f.feature),
            f.feature,
            link_b(f.feature),
            f.density[0],
            f.density[1],
            f.max_activation[0],
            f.max_activation[1],
            f.mean_activation[0],
            f.mean_activation[1],
            f.new_examples
                .iter()
                .map(|h| escape(&h.snippet.marked()))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    body.push_str("</table>\n");
    body
}
