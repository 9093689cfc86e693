//! The pages that look at some documents only: a filter box (a `where=` filter over the
//! documents' metadata and/or a `docs=` list) on the feature page and the search page,
//! and the contrast page (`/contrast?a=FILTER[&b=FILTER]`, as `saeidx contrast`).
//!
//! The filter lives in the URL (`/feature/F?where=year+>%3D+1900`), so a restricted page
//! is a link; the feature links these pages make keep it. A filter that does not parse
//! (or names documents the index lacks) is shown on the page, the box still holding it,
//! with the error the API returns: the filter, a caret under the column at fault, and
//! what is allowed there.

use std::fmt::Write;

use saeidx_query::{
    Aggregate, AnyIndex, Contrast, ContrastFeature, ContrastRequest, DocRef, Restriction,
    SubsetFeatures, TopFeaturesRequest,
};

use super::{
    form::{Failure, Params},
    routes::{Context, Reply, failed, html},
};
use crate::{escape, page};

/// Features a restricted search page lists unless `k=` says.
const SUBSET_FEATURES: usize = 20;

/// Percent-encodes `text` for a query string value.
pub(super) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// The documents of a list, as a `docs=` value.
fn docs_text(docs: &[DocRef]) -> String {
    docs.iter()
        .map(|doc| match doc {
            DocRef::Number(number) => number.to_string(),
            DocRef::Id(id) => id.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `restriction` as query parameters named `filter` and `docs` (`""` when it restricts
/// nothing), each pair preceded by `&`.
pub(super) fn restriction_query(restriction: &Restriction, filter: &str, docs: &str) -> String {
    let mut query = String::new();
    if let Some(text) = &restriction.filter {
        let _ = write!(query, "&{filter}={}", url_encode(text));
    }
    if let Some(list) = &restriction.docs {
        let _ = write!(query, "&{docs}={}", url_encode(&docs_text(list)));
    }
    query
}

/// `restriction_query` as the start of a query string (`?...`, or `""`).
fn as_query(restriction: &Restriction) -> String {
    let query = restriction_query(restriction, "where", "docs");
    match query.strip_prefix('&') {
        Some(rest) => format!("?{rest}"),
        None => String::new(),
    }
}

/// The inputs of a filter and a document list, named `filter` and `docs`.
fn filter_inputs(restriction: &Restriction, filter: &str, docs: &str, what: &str) -> String {
    format!(
        "<label>{what} where <input class=\"filter\" name=\"{filter}\" size=\"50\" value=\"{}\" placeholder=\"year &gt;= 1900 and party = 'Whig'\"></label> \
<label>documents <input class=\"docs\" name=\"{docs}\" size=\"14\" value=\"{}\" placeholder=\"0,5,ID\"></label> ",
        escape(restriction.filter.as_deref().unwrap_or("")),
        escape(
            &restriction
                .docs
                .as_deref()
                .map(docs_text)
                .unwrap_or_default()
        ),
    )
}

/// The filter box: a GET form to `action` holding `restriction`, and `error` (a filter
/// that did not parse, or documents that do not exist) under it.
pub(super) fn filter_box(action: &str, restriction: &Restriction, error: Option<&str>) -> String {
    let mut out = format!(
        "<form class=\"filter-box\" action=\"{}\">{}<button>filter</button>",
        escape(action),
        filter_inputs(restriction, "where", "docs", "documents")
    );
    if !restriction.is_all() {
        let _ = write!(out, " <a href=\"{}\">clear</a>", escape(action));
    }
    out.push_str("</form>\n");
    if let Some(error) = error {
        let _ = writeln!(
            out,
            "<pre class=\"filter-error\" style=\"color:#a00;background:#fff0f0;padding:.4em\">{}</pre>",
            escape(error)
        );
    }
    out
}

/// What a restricted page says about its documents.
fn chosen_line(documents: usize, restriction: &Restriction, base: &str) -> String {
    let mut out = format!("<p class=\"meta restricted\">restricted to {documents} documents");
    if let Some(filter) = &restriction.filter {
        let _ = write!(out, " where <code>{}</code>", escape(filter));
    }
    if let Some(docs) = &restriction.docs {
        let _ = write!(out, " among <code>{}</code>", escape(&docs_text(docs)));
    }
    let _ = writeln!(
        out,
        " · <a href=\"{base}/contrast?{}\">contrast them with the rest</a></p>",
        escape(restriction_query(restriction, "a", "a_docs").trim_start_matches('&'))
    );
    out
}

/// The number of documents `restriction` selects (all when it restricts nothing), or
/// why it selects none (its error, for the page).
fn selected(index: &AnyIndex, restriction: &Restriction) -> Result<usize, Failure> {
    match index.selected_documents(restriction) {
        Ok(Some(count)) => Ok(count),
        Ok(None) => Ok(index.documents() as usize),
        Err(e) => Err(failed(e)),
    }
}

/// A page showing `error` under the filter box (status `status`).
fn refused(title: &str, heading: &str, form: &str, status: u16) -> Reply {
    html(status, page(title, &format!("<h1>{heading}</h1>\n{form}")))
}

/// Puts `html` just after the first heading of `page`.
pub(super) fn after_heading(page: &str, html: &str) -> String {
    match page.find("</h1>") {
        Some(at) => {
            let at = at + "</h1>".len();
            format!("{}\n{html}{}", &page[..at], &page[at..])
        }
        None => page.to_string(),
    }
}

impl Context<'_> {
    /// The feature page's restriction (from `where=`, `docs=`): its filter box, the
    /// suffix its feature links keep, and, when the restriction is unusable, the page
    /// that says why instead.
    pub(super) fn feature_restriction(
        &self,
        index: &AnyIndex,
        feature: u32,
        restriction: &Restriction,
    ) -> Result<(String, String), Reply> {
        let action = format!("{}/feature/{feature}", self.base);
        match selected(index, restriction) {
            Ok(documents) => {
                let mut top = filter_box(&action, restriction, None);
                if !restriction.is_all() {
                    top.push_str(&chosen_line(documents, restriction, self.base));
                }
                Ok((top, as_query(restriction)))
            }
            Err((status, message)) => Err(refused(
                &format!("Feature {feature}"),
                &format!("Feature {feature}"),
                &filter_box(&action, restriction, Some(&message)),
                status,
            )),
        }
    }

    /// `GET /search?q=&where=&docs=`: labels containing the words, and with a filter
    /// or a document list, the strongest features of those documents.
    pub(super) fn search_page(&self, index: &AnyIndex, params: &Params) -> Result<Reply, Failure> {
        let base = self.base;
        let restriction = params.restriction();
        let q = params.get("q").unwrap_or("");
        let action = format!("{base}/search");
        let form = format!(
            "<form class=\"filter-box\" action=\"{}\"><label>labels with <input name=\"q\" value=\"{}\"></label> {}<button>search</button></form>\n",
            escape(&action),
            escape(q),
            filter_inputs(&restriction, "where", "docs", "features of documents")
        );
        let mut body = String::new();
        if !restriction.is_all() {
            match self.subset_section(index, &restriction, params) {
                Ok(section) => body.push_str(&section),
                Err((status, message)) => {
                    let error = format!(
                        "<pre class=\"filter-error\" style=\"color:#a00;background:#fff0f0;padding:.4em\">{}</pre>",
                        escape(&message)
                    );
                    return Ok(refused(
                        "saeidx: search",
                        "Search",
                        &format!("{form}{error}"),
                        status,
                    ));
                }
            }
        }
        body.push_str(&self.label_matches(index, q, &as_query(&restriction)));
        let _ = write!(body, "<p><a href=\"{base}/\">home</a></p>");
        Ok(html(
            200,
            page("saeidx: search", &format!("<h1>Search</h1>\n{form}{body}")),
        ))
    }

    /// Labels containing every word of `q`, each linking to its feature (with `keep`).
    fn label_matches(&self, index: &AnyIndex, q: &str, keep: &str) -> String {
        let q = q.to_lowercase();
        let mut body = format!("<h2>Labels matching “{}”</h2><ul>", escape(&q));
        for (feature, label) in index.registry().iter() {
            let text = format!(
                "{} {} {}",
                label.name.as_deref().unwrap_or(""),
                label.description.as_deref().unwrap_or(""),
                label.notes.as_deref().unwrap_or("")
            )
            .to_lowercase();
            if q.split_whitespace().all(|word| text.contains(word)) {
                let _ = write!(
                    body,
                    "<li><a href=\"{}/feature/{feature}{}\">feature {feature}</a> {}</li>",
                    self.base,
                    escape(keep),
                    escape(label.name.as_deref().unwrap_or(""))
                );
            }
        }
        body.push_str("</ul>");
        body
    }

    /// The strongest features of the documents `restriction` selects, as a table.
    fn subset_section(
        &self,
        index: &AnyIndex,
        restriction: &Restriction,
        params: &Params,
    ) -> Result<String, Failure> {
        let request = TopFeaturesRequest {
            k: params.number("k", SUBSET_FEATURES)?,
            aggregate: params.aggregate()?,
            tokens: None,
            exclusions: params.exclusions(),
        };
        let answer = index
            .subset_features(restriction, &request)
            .map_err(failed)?;
        Ok(self.render_subset(&answer, restriction))
    }

    fn render_subset(&self, answer: &SubsetFeatures, restriction: &Restriction) -> String {
        let base = self.base;
        let keep = escape(&as_query(restriction));
        let mut out = chosen_line(answer.documents as usize, restriction, base);
        let _ = write!(
            out,
            "<h2 id=\"subset-features\">Strongest features of these documents ({} tokens, by {})</h2>\n\
<table class=\"list subset\"><tr><th>feature</th><th>label</th><th>score</th><th>max</th><th>active tokens</th><th>strongest on</th></tr>\n",
            answer.tokens,
            match answer.aggregate {
                Aggregate::Max => "largest activation",
                Aggregate::Sum => "sum of activations",
            }
        );
        for f in &answer.features {
            let name = f.label.as_ref().and_then(|l| l.name.clone());
            let at = match f.doc {
                Some(doc) => format!(
                    "<a href=\"{}\"><code class=\"piece\">{}</code></a>",
                    escape(&crate::document::document_link(
                        base, doc, f.feature, f.position
                    )),
                    escape(&f.token_text)
                ),
                None => escape(&f.token_text),
            };
            let _ = writeln!(
                out,
                "<tr data-feature=\"{0}\"><td><a href=\"{base}/feature/{0}{keep}\">{0}</a></td><td>{1}</td><td class=\"n\">{2:.4}</td><td class=\"n\">{3:.4}</td><td class=\"n\">{4}</td><td>{at}</td></tr>",
                f.feature,
                escape(name.as_deref().unwrap_or("")),
                f.score,
                f.activation,
                f.active_tokens
            );
        }
        out.push_str("</table>\n");
        out
    }

    /// `GET /contrast?a=FILTER&a_docs=&b=FILTER&b_docs=[&k&examples&context&prior&min_count]`:
    /// the features over-represented in A relative to B (or the rest of the index), and
    /// in B relative to A, with examples linking to the feature pages.
    pub(super) fn contrast_page(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = ContrastRequest::default();
        let a = params.restriction_named("a", "a_docs");
        let b = params.restriction_named("b", "b_docs");
        let action = format!("{}/contrast", self.base);
        let form = format!(
            "<form class=\"contrast-form\" action=\"{}\"><p>A: {}</p><p>B: {} <span class=\"meta\">(empty: every document not in A)</span></p><button>contrast</button></form>\n",
            escape(&action),
            filter_inputs(&a, "a", "a_docs", "documents"),
            filter_inputs(&b, "b", "b_docs", "documents"),
        );
        if a.is_all() && b.is_all() {
            let hint = "<p class=\"meta\">Give set A (a filter over the documents' columns, a list of documents, or both), and set B or leave it empty to contrast A with the rest of the index.</p>";
            return Ok(html(
                200,
                page(
                    "saeidx: contrast",
                    &format!("<h1>Contrast</h1>\n{form}{hint}"),
                ),
            ));
        }
        let request = ContrastRequest {
            b: (!b.is_all()).then_some(b),
            a,
            k: params.number("k", defaults.k)?,
            examples: params.number("examples", defaults.examples)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            prior: params.number("prior", defaults.prior)?,
            min_count: params.number("min_count", defaults.min_count)?,
        };
        let answer = self.with_index(|index| Ok(index.contrast(&request)));
        match answer? {
            Ok(contrast) => {
                let body = format!(
                    "<h1>Contrast</h1>\n{form}{}",
                    self.render_contrast(&contrast)
                );
                Ok(html(200, page("saeidx: contrast", &body)))
            }
            Err(e) => {
                let (status, message) = failed(e);
                let error = format!(
                    "<pre class=\"filter-error\" style=\"color:#a00;background:#fff0f0;padding:.4em\">{}</pre>",
                    escape(&message)
                );
                Ok(refused(
                    "saeidx: contrast",
                    "Contrast",
                    &format!("{form}{error}"),
                    status,
                ))
            }
        }
    }

    fn render_contrast(&self, c: &Contrast) -> String {
        let rest = Restriction::default();
        // B's features link with B's restriction; the rest of a filter is its negation.
        let b_keep = match (&c.b, &c.a.filter, &c.a.docs) {
            (Some(b), _, _) => b.clone(),
            (None, Some(filter), None) => Restriction::filter(format!("not ({filter})")),
            _ => rest,
        };
        let mut out = format!(
            "<p class=\"meta\">A: {} documents, {} counted tokens · B{}: {} documents, {} counted tokens · \
score: log-odds ratio with an informative Dirichlet prior (α = {}), ranked by z = δ/σ; features firing on fewer than {} tokens of A and B together are left out</p>\n",
            c.documents_a,
            c.tokens_a,
            if c.b.is_none() { " (the rest)" } else { "" },
            c.documents_b,
            c.tokens_b,
            c.prior,
            c.min_count
        );
        out.push_str(&self.contrast_side("a-over-b", "Over-represented in A", &c.a_over_b, &c.a));
        out.push_str(&self.contrast_side(
            "b-over-a",
            "Over-represented in B",
            &c.b_over_a,
            &b_keep,
        ));
        out
    }

    /// One direction of a contrast: a table of the features, then each one's examples
    /// (from the set it is over-represented in), feature links keeping that set.
    fn contrast_side(
        &self,
        id: &str,
        title: &str,
        features: &[ContrastFeature],
        keep: &Restriction,
    ) -> String {
        let base = self.base;
        let keep = escape(&as_query(keep));
        let mut out = format!(
            "<h2 id=\"{id}\">{title}</h2>\n<table class=\"list contrast {id}\"><tr><th>feature</th><th>label</th><th>z</th><th>log-odds</th><th>count A</th><th>count B</th><th>rate A</th><th>rate B</th><th>mean A</th><th>mean B</th></tr>\n"
        );
        for f in features {
            let name = f.label.as_ref().and_then(|l| l.name.clone());
            let _ = writeln!(
                out,
                "<tr data-feature=\"{0}\"><td><a href=\"{base}/feature/{0}{keep}\">{0}</a></td><td>{1}</td><td class=\"n\">{2:.2}</td><td class=\"n\">{3:.3}</td><td class=\"n\">{4}</td><td class=\"n\">{5}</td><td class=\"n\">{6:.5}</td><td class=\"n\">{7:.5}</td><td class=\"n\">{8:.3}</td><td class=\"n\">{9:.3}</td></tr>",
                f.feature,
                escape(name.as_deref().unwrap_or("")),
                f.z,
                f.log_odds,
                f.count_a,
                f.count_b,
                f.rate_a,
                f.rate_b,
                f.mean_a,
                f.mean_b
            );
        }
        out.push_str("</table>\n");
        for f in features.iter().filter(|f| !f.examples.is_empty()) {
            let _ = writeln!(
                out,
                "<h3 class=\"examples\">feature <a href=\"{base}/feature/{0}{keep}\">{0}</a></h3>",
                f.feature
            );
            for hit in &f.examples {
                let s = &hit.snippet;
                let (before, marked, after) = (
                    s.text.get(..s.hit_start).unwrap_or(""),
                    s.text.get(s.hit_start..s.hit_end).unwrap_or(""),
                    s.text.get(s.hit_end..).unwrap_or(""),
                );
                let _ = writeln!(
                    out,
                    "<div class=\"meta\">{:.4} · <a class=\"hit\" href=\"{}\">{}</a> · position {}</div><div class=\"ctx\">{}{}<mark>{}</mark>{}{}</div>",
                    hit.activation,
                    escape(&crate::document::document_link(
                        base,
                        hit.doc,
                        f.feature,
                        hit.position
                    )),
                    escape(&hit.id),
                    hit.position,
                    if s.more_before { "…" } else { "" },
                    escape(before),
                    escape(marked),
                    escape(after),
                    if s.more_after { "…" } else { "" },
                );
            }
        }
        out
    }
}
