//! A feature's logit effects on its page: the output tokens its decoder direction
//! promotes and suppresses, each with its value and a bar scaled to the largest
//! magnitude shown (Neuronpedia's and SAEDashboard's "positive/negative logits").

use std::fmt::Write;

use saeidx_query::{FeatureLogits, LogitEffect};

use crate::escape;

/// The logit effects section (or a note saying how to compute them).
pub(crate) fn logits_section(logits: Option<&FeatureLogits>) -> String {
    let mut out = String::from("<h2 id=\"logits\">Logit effects</h2>\n");
    let Some(logits) = logits else {
        out.push_str(
            "<p class=\"meta\">This index has no logit effects yet: \
             <code>saeidx query logits INDEX</code> computes them.</p>\n",
        );
        return out;
    };
    let scale = logits
        .top
        .iter()
        .chain(&logits.bottom)
        .map(|e| e.value.abs())
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    out.push_str("<div class=\"logits\">");
    for (title, list, class) in [
        ("Promotes (largest)", &logits.top, "pos"),
        ("Suppresses (smallest)", &logits.bottom, "neg"),
    ] {
        let _ = write!(
            out,
            "<table class=\"logit {class}\"><caption>{title}</caption>\
             <tr><th scope=\"col\">token</th><th scope=\"col\">logit effect</th></tr>"
        );
        for effect in list {
            row(&mut out, effect, scale, class);
        }
        out.push_str("</table>");
    }
    let _ = writeln!(
        out,
        "</div>\n<p class=\"meta\">Per unit of activation: {}.</p>",
        escape(&logits.method)
    );
    out
}

fn row(out: &mut String, effect: &LogitEffect, scale: f32, class: &str) {
    let width = (effect.value.abs() / scale * 100.0).clamp(0.0, 100.0);
    let _ = write!(
        out,
        "<tr data-token=\"{}\"><td><code class=\"piece\" title=\"token {}\">{}</code></td>\
         <td><span class=\"bar {class}\" style=\"width:{width:.1}px\"></span> {:+.4}</td></tr>",
        effect.token,
        effect.token,
        escape(&visible(&effect.token_text)),
        effect.value
    );
}

/// A token's text with its whitespace made visible (`·` for a space, `↵` for a newline).
fn visible(text: &str) -> String {
    text.replace(' ', "·").replace('\n', "↵").replace('\t', "⇥")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_escapes_tokens_and_shows_values() {
        let effect = |token, text: &str, value| LogitEffect {
            token,
            token_text: text.into(),
            value,
        };
        let logits = FeatureLogits {
            top: vec![effect(5, " <b>", 2.0)],
            bottom: vec![effect(6, "\n", -1.0)],
            method: "W_dec rows".into(),
        };
        let html = logits_section(Some(&logits));
        assert!(html.contains("·&lt;b&gt;"), "{html}");
        assert!(
            html.contains("+2.0000") && html.contains("-1.0000"),
            "{html}"
        );
        assert!(html.contains("↵"), "{html}");
        assert!(logits_section(None).contains("saeidx query logits"));
    }
}
