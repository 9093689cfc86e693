//! The index overview (the home page, `/`): provenance, counts, the distribution of
//! feature densities on a log scale with the dead features, the most and least frequent
//! features, labelled features, a sample, and the documents.

use std::fmt::Write;

use saeidx_query::{FeatureFrequency, Overview};
use serde_json::Value;

use crate::{escape, plots};

/// The overview's sections as HTML (the caller frames them with its own header and
/// forms); links under `base`.
pub fn render_overview(overview: &Overview, base: &str) -> String {
    let mut body = String::new();
    provenance(&mut body, overview);
    density(&mut body, overview);
    for (title, id, list) in [
        (
            "Most frequent features",
            "most-frequent",
            &overview.most_frequent,
        ),
        (
            "Least frequent live features",
            "least-frequent",
            &overview.least_frequent,
        ),
        ("Sampled features", "sampled", &overview.sampled),
    ] {
        feature_table(&mut body, title, id, list, base);
    }
    labelled(&mut body, overview, base);
    documents(&mut body, overview, base);
    body
}

fn provenance(out: &mut String, overview: &Overview) {
    let p = &overview.provenance;
    let c = &overview.counts;
    let commit = p
        .model_commit
        .as_deref()
        .map(|c| format!(" @ {}", escape(&c[..c.len().min(12)])))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<h2 id=\"provenance\">Index</h2><table class=\"stats\">\
<tr><td>model</td><td>{}{commit} ({})</td></tr>\
<tr><td>hook</td><td>{}</td></tr>\
<tr><td>SAE</td><td>{} — {}, {} features; {}</td></tr>\
<tr><td>corpus</td><td>{}</td></tr>\
<tr><td>documents</td><td>{}</td></tr><tr><td>tokens</td><td>{} ({} counted: not special, not attention sinks)</td></tr>\
<tr><td>nonzero activations</td><td>{} ({:.1} per token)</td></tr>\
<tr><td>features</td><td>{} live, {} dead (never active on a counted token)</td></tr>\
<tr><td>logit effects</td><td>{}</td></tr>\
<tr><td>built by</td><td>saeidx {}</td></tr></table>",
        escape(&p.model),
        escape(&p.model_type),
        escape(&p.hook),
        escape(&p.sae),
        escape(&p.sae_architecture),
        p.d_sae,
        escape(&p.sae_rule),
        escape(&p.corpus.join(", ")),
        c.documents,
        c.tokens,
        c.content_tokens,
        c.nonzeros,
        c.nonzeros as f64 / c.tokens.max(1) as f64,
        overview.live_features,
        overview.dead_features,
        if overview.logit_effects {
            "on every feature page"
        } else {
            "none yet: <code>saeidx query logits INDEX</code>"
        },
        escape(&p.saeidx_version)
    );
}

fn density(out: &mut String, overview: &Overview) {
    let d = &overview.density;
    out.push_str("<h2 id=\"density\">Feature density</h2>");
    if d.counts.is_empty() {
        out.push_str("<p>No feature is live.</p>");
    } else {
        out.push_str(&plots::density_histogram(&d.log10_edges, &d.counts));
    }
    let _ = write!(
        out,
        "<p class=\"meta\">Live features by the fraction of counted tokens they fire on, in equal bins of log₁₀ density. \
         Dead features (density 0, off the log scale): <b>{}</b> of {}.</p>",
        d.dead, overview.provenance.d_sae
    );
}

fn feature_table(out: &mut String, title: &str, id: &str, list: &[FeatureFrequency], base: &str) {
    let _ = write!(
        out,
        "<h2 id=\"{id}\">{title}</h2><table class=\"list\"><tr><th>feature</th><th>label</th><th>tokens</th><th>density</th><th>max activation</th></tr>"
    );
    for f in list {
        let _ = write!(
            out,
            "<tr><td><a href=\"{base}/feature/{0}\">{0}</a></td><td>{1}</td><td class=\"n\">{2}</td><td class=\"n\">{3:.2e}</td><td class=\"n\">{4:.3}</td></tr>",
            f.feature,
            escape(f.name.as_deref().unwrap_or("")),
            f.count,
            f.density,
            f.max_activation
        );
    }
    out.push_str("</table>");
}

fn labelled(out: &mut String, overview: &Overview, base: &str) {
    out.push_str("<h2 id=\"labelled\">Labelled features</h2>");
    if overview.labelled.is_empty() {
        out.push_str(
            "<p class=\"meta\">No labels yet: label a feature on its page, or draft labels with <code>saeidx labels draft</code>.</p>",
        );
        return;
    }
    out.push_str("<table class=\"list\"><tr><th>feature</th><th>name</th><th>confidence</th></tr>");
    for l in &overview.labelled {
        let confidence = escape(l.confidence.as_deref().unwrap_or(""));
        let draft = if l.draft {
            let of = if confidence.is_empty() {
                String::new()
            } else {
                format!(", confidence {confidence}")
            };
            format!(" <span class=\"origin draft\">draft{of}</span>")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"{base}/feature/{0}\">{0}</a></td><td>{1}{draft}</td><td>{confidence}</td></tr>",
            l.feature,
            escape(l.name.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}

fn documents(out: &mut String, overview: &Overview, base: &str) {
    let shown = overview.documents.len();
    let total = overview.counts.documents;
    let first = overview.documents.first().map_or(0, |d| d.doc);
    let columns: String = overview
        .metadata_columns
        .iter()
        .map(|c| format!("<th title=\"{}\">{}</th>", escape(&c.kind), escape(&c.name)))
        .collect();
    let _ = write!(
        out,
        "<h2 id=\"documents\">Documents</h2><p class=\"meta\">{} of {total}</p><table class=\"list\" id=\"documents-list\"><tr><th>doc</th><th>id</th><th>source</th>{columns}<th>tokens</th><th>beginning</th></tr>",
        if shown == 0 {
            "none".to_string()
        } else {
            format!("{}–{}", first, first as usize + shown - 1)
        }
    );
    for d in &overview.documents {
        let cells: String = overview
            .metadata_columns
            .iter()
            .map(|c| metadata_cell(d.metadata.get(&c.name)))
            .collect();
        let _ = write!(
            out,
            "<tr><td><a href=\"{base}/doc/{0}\">{0}</a></td><td>{1}</td><td>{2}</td>{cells}<td class=\"n\">{3}</td><td>{4}…</td></tr>",
            d.doc,
            escape(&d.id),
            escape(&d.source),
            d.tokens,
            escape(&d.preview)
        );
    }
    out.push_str("</table>");
    let next = first as u64 + shown as u64;
    let mut nav = String::new();
    if first > 0 {
        let back = first.saturating_sub(shown.max(1) as u32);
        let _ = write!(
            nav,
            "<a rel=\"prev\" href=\"{base}/?docs_from={back}#documents\">← previous documents</a> "
        );
    }
    if next < total {
        let _ = write!(
            nav,
            "<a rel=\"next\" href=\"{base}/?docs_from={next}#documents\">next documents →</a>"
        );
    }
    if !nav.is_empty() {
        let _ = write!(out, "<nav aria-label=\"documents\">{nav}</nav>");
    }
}

/// One metadata value as a table cell: numbers right-aligned, a missing value as an
/// empty cell.
fn metadata_cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "<td class=\"meta\"></td>".to_string(),
        Some(Value::Number(n)) => format!("<td class=\"n\">{n}</td>"),
        Some(Value::String(s)) => format!("<td>{}</td>", escape(s)),
        Some(other) => format!("<td>{}</td>", escape(&other.to_string())),
    }
}
