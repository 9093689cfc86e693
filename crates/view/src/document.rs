//! A document's page (`/doc/D?f=F&page=P`): its text, one page of tokens at a time,
//! coloured by a feature; a side list of its top features (max and sum); and, without
//! script, each token's features: every token is a link to `#tP`, and the panel with
//! that id shows through CSS `:target`. Token `P` itself is `#pP`, the anchor feature
//! pages link their examples to.

use std::fmt::Write;

use saeidx_query::{DocumentPage, DocumentRequest, DocumentToken};

use crate::{escape, page, plots};

/// The URL of document `doc`'s page coloured by `feature`, at `position` (its page and
/// anchor), under `base`.
pub fn document_link(base: &str, doc: u32, feature: u32, position: u32) -> String {
    let page = position / DocumentRequest::default().page_tokens;
    format!("{base}/doc/{doc}?f={feature}&page={page}#p{position}")
}

/// The page of `answer`, links under `base`.
pub fn render_document(answer: &DocumentPage, base: &str) -> String {
    let doc = answer.doc;
    let f_param = answer
        .feature
        .map(|f| format!("f={f}&amp;"))
        .unwrap_or_default();
    let mut body = format!(
        "<p><a href=\"{base}/\">overview</a></p><h1>Document {doc} <span class=\"meta\">{}</span></h1>\
<p class=\"meta\">{} · {} tokens · page {} of {}</p>",
        escape(&answer.id),
        escape(&answer.source),
        answer.tokens,
        answer.page + 1,
        answer.pages
    );
    body.push_str(&pager(answer, base, &f_param));
    body.push_str("<div class=\"doc\"><div class=\"text\">");
    match answer.feature {
        Some(feature) => {
            let _ = write!(
                body,
                "<p>Coloured by <a href=\"{base}/feature/{feature}\">feature {feature}</a> (max {:.3} in this document). Select a token to see its features.</p>{}",
                answer.feature_max,
                plots::colour_legend(
                    answer.feature_max,
                    &format!("activation of feature {feature}")
                )
            );
        }
        None => body.push_str("<p>No feature fires in this document.</p>"),
    }
    body.push_str("<div class=\"ctx\" id=\"tokens\">");
    for token in &answer.page_content {
        token_link(&mut body, token, answer.feature_max);
    }
    body.push_str("</div>");
    body.push_str(&pager(answer, base, &f_param));
    body.push_str("</div>");
    body.push_str(&side_list(answer, base));
    body.push_str("</div>");
    for token in &answer.page_content {
        token_panel(&mut body, token, doc, base);
    }
    page(&format!("Document {doc}: {}", answer.id), &body)
}

/// One token, coloured, as a link to its panel.
fn token_link(out: &mut String, token: &DocumentToken, max: f32) {
    let alpha = if max > 0.0 {
        (token.activation / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let skip = if token.special || token.sink {
        " skip"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<a class=\"tok{skip}\" id=\"p{0}\" href=\"#t{0}\" style=\"background:rgba(230,126,34,{alpha:.3})\" title=\"{1:.4}\" data-activation=\"{1}\" data-position=\"{0}\">{2}</a>",
        token.position,
        token.activation,
        escape(&token.text)
    );
}

/// The panel of one token's features (shown when its id is the URL's fragment).
fn token_panel(out: &mut String, token: &DocumentToken, doc: u32, base: &str) {
    let _ = write!(
        out,
        "<div class=\"tokinfo\" id=\"t{0}\" role=\"region\" aria-label=\"features of token {0}\"><p><b>Token {0}</b> <code class=\"piece\">{1}</code>{2} <a href=\"#p{0}\">close</a></p>",
        token.position,
        escape(&token.text),
        if token.special {
            " (special)"
        } else if token.sink {
            " (attention sink)"
        } else {
            ""
        }
    );
    if token.features.is_empty() {
        out.push_str("<p>No feature fires on it.</p></div>");
        return;
    }
    out.push_str("<table class=\"list\"><tr><th>feature</th><th>activation</th><th></th></tr>");
    for active in &token.features {
        let _ = write!(
            out,
            "<tr><td><a href=\"{base}/feature/{0}\">{0}</a></td><td class=\"n\">{1:.4}</td><td><a href=\"{base}/doc/{doc}?f={0}&amp;page={2}#p{3}\">colour by it</a></td></tr>",
            active.feature,
            active.activation,
            token.position / DocumentRequest::default().page_tokens,
            token.position
        );
    }
    out.push_str("</table></div>");
}

/// The document's top features, each colouring the document on click.
fn side_list(answer: &DocumentPage, base: &str) -> String {
    let mut out = String::from(
        "<aside aria-label=\"top features\"><h2>Top features</h2><table class=\"list\"><tr><th>feature</th><th>max</th><th>sum</th><th>tokens</th></tr>",
    );
    for f in &answer.top_features {
        let chosen = if Some(f.feature) == answer.feature {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><a{chosen} href=\"{base}/doc/{doc}?f={feature}&amp;page={page}#p{position}\">{feature}</a> {name}</td><td class=\"n\">{max:.3}</td><td class=\"n\">{sum:.2}</td><td class=\"n\">{count}</td></tr>",
            doc = answer.doc,
            feature = f.feature,
            page = f.position / answer.page_tokens,
            position = f.position,
            name = escape(f.name.as_deref().unwrap_or("")),
            max = f.max_activation,
            sum = f.sum_activation,
            count = f.count
        );
    }
    out.push_str("</table><p class=\"meta\">max and sum of each feature's activations over the document; a link colours the document by it, at its strongest token</p></aside>");
    out
}

/// Links to the previous and next pages.
fn pager(answer: &DocumentPage, base: &str, f_param: &str) -> String {
    if answer.pages <= 1 {
        return String::new();
    }
    let doc = answer.doc;
    let mut out = String::from("<nav class=\"pager\" aria-label=\"pages\">");
    if answer.page > 0 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{base}/doc/{doc}?{f_param}page={}\">← previous page</a> ",
            answer.page - 1
        );
    }
    let _ = write!(out, "page {} of {} ", answer.page + 1, answer.pages);
    if answer.page + 1 < answer.pages {
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"{base}/doc/{doc}?{f_param}page={}\">next page →</a>",
            answer.page + 1
        );
    }
    out.push_str("</nav>");
    out
}

#[cfg(test)]
mod tests {
    use saeidx_query::{DocumentFeature, Exclusions, TokenActivation};

    use super::*;

    fn answer() -> DocumentPage {
        let token = |position, text: &str, activation, features: Vec<(u32, f32)>| DocumentToken {
            position,
            text: text.into(),
            activation,
            special: position == 0,
            sink: false,
            features: features
                .into_iter()
                .map(|(feature, activation)| TokenActivation {
                    feature,
                    activation,
                })
                .collect(),
        };
        DocumentPage {
            doc: 4,
            id: "<script>x</script>".into(),
            source: "a.jsonl".into(),
            tokens: 900,
            feature: Some(7),
            feature_max: 2.0,
            page: 1,
            pages: 3,
            page_tokens: 400,
            page_content: vec![
                token(400, "<b>bold", 2.0, vec![(7, 2.0), (3, 0.5)]),
                token(401, " \"x\"", 0.0, vec![]),
            ],
            top_features: vec![DocumentFeature {
                feature: 7,
                max_activation: 2.0,
                sum_activation: 5.5,
                count: 3,
                position: 400,
                name: Some("<i>name</i>".into()),
            }],
            exclusions: Exclusions::default(),
        }
    }

    #[test]
    fn tokens_link_to_their_panels_and_text_stays_text() {
        let html = render_document(&answer(), "/i/x");
        assert!(!html.contains("<script>") && !html.contains("<b>bold") && !html.contains("<i>"));
        assert!(html.contains("&lt;b&gt;bold") && html.contains("&lt;i&gt;name&lt;/i&gt;"));
        assert!(html.contains("id=\"p400\" href=\"#t400\""), "{html}");
        assert!(html.contains("id=\"t400\""), "{html}");
        assert!(html.contains("rgba(230,126,34,1.000)") && html.contains("rgba(230,126,34,0.000)"));
        assert!(
            html.contains("href=\"/i/x/doc/4?f=3&amp;page=1#p400\""),
            "{html}"
        );
        assert!(
            html.contains("href=\"/i/x/doc/4?f=7&amp;page=0\""),
            "previous page: {html}"
        );
        assert!(
            html.contains("href=\"/i/x/doc/4?f=7&amp;page=2\""),
            "next page: {html}"
        );
        assert!(html.contains("No feature fires on it."));
        assert_eq!(document_link("", 4, 7, 401), "/doc/4?f=7&page=1#p401");
    }
}
