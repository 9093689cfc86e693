//! Self-contained HTML views (no network needed to open them): a feature's page and a
//! text's tokens, coloured by activation with the exact value on hover.
//!
//! Every piece of document text, label and id goes through [`escape`]; pages carry no
//! script, so hostile text can neither inject markup nor run code. Token pieces come
//! from [`AnyIndex::window`], whose pieces concatenate to the document's text exactly,
//! so whitespace, newlines and multi-byte characters render as written and the
//! highlighted token is the one that fired.

use std::fmt::Write;

pub mod document;
mod logits;
pub mod overview;
pub mod plots;
pub mod serve;

use saeidx_query::{
    AnalyzedText, AnyIndex, Exclusions, FeatureLabel, FeatureReport, QueryError, Registry, TextHit,
    layout::{FLAG_SINK, FLAG_SPECIAL},
    registry::Origin,
};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table.stats td{padding:0 1em 0 0}\
.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap;border-left:3px solid #ddd;padding:.2em .6em;margin:.4em 0}\
.tok{border-radius:2px}.tok.hit{outline:2px solid #c40}.tok.skip{color:#999}\
.meta{color:#666;font-size:.85em}svg.plot rect.bar{fill:#e67e22}svg.plot .grid{stroke:#eee}svg.plot .axis{stroke:#555}\
svg.plot text{font-size:11px;fill:#333}svg.plot text.label{font-size:12px}\
.legend{margin:.4em 0;width:16em}.legend .gradient{height:.8em;background:linear-gradient(to right,rgba(230,126,34,0),rgba(230,126,34,1));border:1px solid #ccc}\
.legend .ticks{display:flex;justify-content:space-between;font-size:.75em}.legend figcaption{font-size:.8em;color:#666}\
a.tok{color:inherit;text-decoration:none}a.tok:focus{outline:2px solid #2e86c1}.tok:target{outline:2px solid #c40}\
.doc{display:flex;gap:1.5em;align-items:flex-start}.doc .text{flex:1;min-width:0}.doc aside{width:20em;font-size:.9em}\
.tokinfo{display:none}.tokinfo:target{display:block;position:fixed;right:1em;bottom:1em;max-height:60vh;overflow:auto;background:#fff;border:1px solid #999;padding:.5em 1em;box-shadow:0 2px 8px #0003}\
table.list td,table.list th{padding:0 .8em 0 0;text-align:left}table.list td.n{text-align:right}\
.origin{display:inline-block;padding:0 .5em;border-radius:3px;font-size:.85em}\
.origin.draft{background:#fff3cd}.origin.human{background:#d4edda}\
table.scores td,table.scores th{padding:0 .8em 0 0;text-align:left}\
.logits{display:flex;gap:2em;flex-wrap:wrap}table.logit caption{text-align:left;font-weight:600}\
table.logit td{padding:0 .6em 0 0}.bar{display:inline-block;height:.8em}.bar.pos{background:#2e86c1}.bar.neg{background:#c0392b}\
code.piece{background:#f4f4f4;padding:0 .2em}";

/// The page frame.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// One token as a coloured span: background opacity is `value / max`; the exact value
/// is in the `title` (hover) and `data-activation`.
fn token_span(out: &mut String, text: &str, value: f32, max: f32, hit: bool, skipped: bool) {
    let alpha = if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut class = String::from("tok");
    if hit {
        class.push_str(" hit");
    }
    if skipped {
        class.push_str(" skip");
    }
    let _ = write!(
        out,
        "<span class=\"{class}\" style=\"background:rgba(230,126,34,{alpha:.3})\" title=\"{value:.4}\" data-activation=\"{value}\">{}</span>",
        escape(text)
    );
}

/// A hit's context window, tokens coloured by `feature`'s activation.
fn context(
    out: &mut String,
    index: &AnyIndex,
    hit: &TextHit,
    feature: u32,
    max: f32,
    window: u32,
    doc_link: Option<&dyn Fn(&TextHit) -> String>,
) -> Result<(), QueryError> {
    let id = match doc_link {
        Some(link) => format!(
            "<a class=\"hit\" href=\"{}\">{}</a>",
            escape(&link(hit)),
            escape(&hit.id)
        ),
        None => escape(&hit.id),
    };
    let _ = write!(
        out,
        "<div class=\"meta\">{:.4} · {id} · position {}</div><div class=\"ctx\">",
        hit.activation, hit.position
    );
    for token in index.window(hit.doc, hit.position, window, feature)? {
        let skipped = token.flags & (FLAG_SPECIAL | FLAG_SINK) != 0;
        token_span(
            out,
            &token.text,
            token.activation,
            max,
            token.position == hit.position,
            skipped,
        );
    }
    out.push_str("</div>\n");
    Ok(())
}

/// The file name of `feature`'s page (neighbour links point at these).
pub fn feature_file(feature: u32) -> String {
    format!("feature-{feature}.html")
}

/// A feature's page: label, statistics, histogram, top examples and examples from each
/// activation band as coloured context windows, neighbours linking to their pages.
pub fn render_feature(
    index: &AnyIndex,
    report: &FeatureReport,
    window: u32,
) -> Result<String, QueryError> {
    render_feature_linked(index, report, window, &feature_file, "")
}

/// [`render_feature`] with neighbour links made by `link` and `extra` HTML (already
/// escaped) at the end of the body.
pub fn render_feature_linked(
    index: &AnyIndex,
    report: &FeatureReport,
    window: u32,
    link: &dyn Fn(u32) -> String,
    extra: &str,
) -> Result<String, QueryError> {
    render_feature_page(index, report, window, link, None, extra)
}

/// [`render_feature_linked`] where each example's document id links to `doc_link(hit)`
/// (the served document page, at the hit).
pub fn render_feature_page(
    index: &AnyIndex,
    report: &FeatureReport,
    window: u32,
    link: &dyn Fn(u32) -> String,
    doc_link: Option<&dyn Fn(&TextHit) -> String>,
    extra: &str,
) -> Result<String, QueryError> {
    let stats = &report.stats;
    let feature = stats.feature;
    let mut body = String::new();
    let name = report
        .label
        .as_ref()
        .and_then(|l| l.name.clone())
        .unwrap_or_default();
    let _ = writeln!(body, "<h1>Feature {feature} {}</h1>", escape(&name));
    if let Some(label) = &report.label {
        for (key, value) in [
            ("description", &label.description),
            ("confidence", &label.confidence),
            ("notes", &label.notes),
        ] {
            if let Some(value) = value {
                let _ = writeln!(body, "<p><b>{key}</b>: {}</p>", escape(value));
            }
        }
        body.push_str(&label_origin(label));
        body.push_str(&label_scores(label));
    }
    let job = index.job();
    let _ = write!(
        body,
        "<p class=\"meta\">{} · {} · SAE {} ({} features)</p>\n<table class=\"stats\">\
<tr><td>active on</td><td>{} tokens (density {:.5})</td></tr>\
<tr><td>documents</td><td>{}</td></tr><tr><td>max</td><td>{:.4}</td></tr>\
<tr><td>mean</td><td>{:.4}</td></tr></table>\n{}\n",
        escape(&job.model.source),
        escape(&job.hook),
        escape(&job.sae.source),
        job.sae.d_sae,
        stats.count,
        stats.density,
        stats.documents,
        stats.max_activation,
        stats.mean_activation,
        plots::activation_histogram(&stats.histogram, stats.histogram_max)
    );
    body.push_str(&logits::logits_section(report.logits.as_ref()));
    body.push_str("<h2>Top examples</h2>\n");
    for hit in &report.top_texts {
        context(
            &mut body,
            index,
            hit,
            feature,
            stats.max_activation,
            window,
            doc_link,
        )?;
    }
    for band in &report.bands {
        let _ = writeln!(
            body,
            "<h2>Band {:.0}–{:.0}% from the top (activations {:.3}–{:.3})</h2>",
            band.from * 100.0,
            band.to * 100.0,
            band.min_activation,
            band.max_activation
        );
        for hit in &band.examples {
            context(
                &mut body,
                index,
                hit,
                feature,
                stats.max_activation,
                window,
                doc_link,
            )?;
        }
    }
    body.push_str("<h2>Neighbours (Jaccard over tokens)</h2>\n<ul>\n");
    for n in &report.neighbours {
        let label = index
            .registry()
            .get(n.feature)
            .and_then(|l| l.name.clone())
            .unwrap_or_default();
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">feature {}</a> {} — {:.3} ({} tokens together)</li>",
            link(n.feature),
            n.feature,
            escape(&label),
            n.jaccard,
            n.together
        );
    }
    body.push_str("</ul>\n");
    decoder_neighbours(&mut body, index, report, link);
    body.push_str(extra);
    Ok(page(&format!("Feature {feature}"), &body))
}

/// The feature's nearest decoder directions (when the SAE file was read), each linking
/// to its page.
fn decoder_neighbours(
    body: &mut String,
    index: &AnyIndex,
    report: &FeatureReport,
    link: &dyn Fn(u32) -> String,
) {
    let Some(neighbours) = &report.decoder_neighbours else {
        body.push_str(
            "<h2>Decoder neighbours</h2>\n<p class=\"meta\">the index's SAE file was not found, so decoder directions are not shown</p>\n",
        );
        return;
    };
    body.push_str("<h2>Decoder neighbours (cosine of decoder directions)</h2>\n<ul>\n");
    for n in neighbours {
        let label = index
            .registry()
            .get(n.feature)
            .and_then(|l| l.name.clone())
            .unwrap_or_default();
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">feature {}</a> {} — {:.3}</li>",
            link(n.feature),
            n.feature,
            escape(&label),
            n.cosine
        );
    }
    body.push_str("</ul>\n");
}

/// Who stands behind a label, as a badge: a person, or an LLM's draft (reviewed or
/// not) with its model, prompt version and dates.
pub fn label_origin(label: &FeatureLabel) -> String {
    let Some(p) = &label.provenance else {
        return "<p><span class=\"origin human\">written by a person</span></p>\n".into();
    };
    let drafted = format!(
        "drafted by {} (prompt {}, {})",
        escape(&p.llm),
        escape(&p.prompt_version),
        escape(&p.drafted_at)
    );
    let reviewed = escape(p.reviewed_at.as_deref().unwrap_or(""));
    let (class, text) = match p.origin {
        Origin::Drafted => ("draft", format!("LLM draft, not reviewed: {drafted}")),
        Origin::Accepted => (
            "human",
            format!("LLM draft accepted by a person {reviewed}: {drafted}"),
        ),
        Origin::Edited => (
            "human",
            format!("LLM draft edited by a person {reviewed}: {drafted}"),
        ),
    };
    format!("<p><span class=\"origin {class}\">{text}</span></p>\n")
}

/// A label's scores (detection and fuzzing against the index) as a small table, or
/// nothing when it has none.
pub fn label_scores(label: &FeatureLabel) -> String {
    let Some(scores) = &label.scores else {
        return String::new();
    };
    let mut out = String::from(
        "<table class=\"scores\"><tr><th>score</th><th>balanced accuracy</th><th>TP</th><th>TN</th><th>FP</th><th>FN</th><th>no answer</th></tr>",
    );
    for (name, score) in [
        ("detection", &scores.detection),
        ("fuzzing", &scores.fuzzing),
    ] {
        if let Some(s) = score {
            let accuracy = if s.answered() > 0 {
                format!("{:.3}", s.balanced_accuracy)
            } else {
                "–".into()
            };
            let _ = write!(
                out,
                "<tr><td>{name}</td><td>{accuracy}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.true_positives, s.true_negatives, s.false_positives, s.false_negatives, s.failed
            );
        }
    }
    let stale = if label.scores_current() {
        ""
    } else {
        " — for an earlier text of the label"
    };
    let _ = writeln!(
        out,
        "</table><p class=\"meta\">scored by {} (prompts {}, {}){stale}; 0.5 is chance</p>",
        escape(&scores.llm),
        escape(&scores.prompt_version),
        escape(&scores.scored_at)
    );
    out
}

/// One token of a text for [`render_text`]: its piece of the text and each chosen
/// feature's activation on it.
#[derive(Debug, Clone, PartialEq)]
pub struct TextToken {
    /// The piece of the text (pieces concatenate to the text).
    pub text: String,
    /// Activations, parallel to the chosen features.
    pub values: Vec<f32>,
    /// Whether the token is left out of rankings (special or sink).
    pub skipped: bool,
}

/// A live text's tokens as [`render_text`] shows them: each chosen feature's value (0
/// where it is inactive), and whether `exclusions` leave the token out of rankings.
pub fn text_tokens(text: &AnalyzedText, chosen: &[u32], exclusions: Exclusions) -> Vec<TextToken> {
    text.tokens
        .iter()
        .map(|t| TextToken {
            text: t.text.clone(),
            values: chosen_values(&t.features, &t.values, chosen),
            skipped: exclusions.leaves_out(t.special, t.sink),
        })
        .collect()
}

/// A token's value of each of `chosen` features, given its active `features` and their
/// `values` (0 where a chosen feature is inactive).
fn chosen_values(features: &[u32], values: &[f32], chosen: &[u32]) -> Vec<f32> {
    chosen
        .iter()
        .map(|f| {
            features
                .iter()
                .position(|g| g == f)
                .map_or(0.0, |i| values[i])
        })
        .collect()
}

/// A text's tokens coloured by each of `features` in turn: one collapsible section per
/// feature (no script needed to switch).
pub fn render_text(
    registry: &Registry,
    text: &str,
    features: &[u32],
    tokens: &[TextToken],
) -> String {
    render_text_linked(registry, text, features, tokens, &feature_file)
}

/// [`render_text`] with feature links made by `link`.
pub fn render_text_linked(
    registry: &Registry,
    text: &str,
    features: &[u32],
    tokens: &[TextToken],
    link: &dyn Fn(u32) -> String,
) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(text));
    for (i, feature) in features.iter().enumerate() {
        let max = tokens
            .iter()
            .filter_map(|t| t.values.get(i))
            .fold(0.0f32, |m, v| m.max(*v));
        let label = registry
            .get(*feature)
            .and_then(|l| l.name.clone())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<details open><summary>feature <a href=\"{}\">{feature}</a> {} (max {max:.3})</summary><div class=\"ctx\">",
            escape(&link(*feature)),
            escape(&label)
        );
        for token in tokens {
            let value = token.values.get(i).copied().unwrap_or(0.0);
            token_span(&mut body, &token.text, value, max, false, token.skipped);
        }
        body.push_str("</div></details>\n");
    }
    page("saeidx: text", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_pieces_render_as_written() {
        let tokens = vec![
            TextToken {
                text: "<script>alert('x')</script>".into(),
                values: vec![2.0],
                skipped: false,
            },
            TextToken {
                text: " naïve\n\"日本\" &amp;".into(),
                values: vec![1.0],
                skipped: true,
            },
        ];
        let html = render_text(
            &Registry::default(),
            "<img src=x onerror=alert(1)>",
            &[7],
            &tokens,
        );
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains(" naïve\n&quot;日本&quot; &amp;amp;"));
        assert!(html.contains("title=\"2.0000\" data-activation=\"2\""));
        assert!(html.contains("rgba(230,126,34,1.000)") && html.contains("rgba(230,126,34,0.500)"));
        assert!(html.contains("class=\"tok skip\""));
    }
}
