//! The HTML pages: home, feature pages with a label form, label search, a random feature,
//! and a text run live, coloured by its strongest features.

use std::fmt::Write;

use saeidx_query::{AnyIndex, FeatureLabel, FeatureRequest, InfoRequest, TopFeaturesRequest};

use super::{
    api::{live_text, number_in},
    form::{Failure, Params},
    restricted::after_heading,
    routes::{Context, Reply, failed, html, redirect},
};
use crate::{
    document::document_link, escape, page, render_feature_page, render_text_linked, text_tokens,
};

/// Features a live text's page shows.
const TEXT_FEATURES: usize = 5;

impl Context<'_> {
    /// A `GET` page.
    pub(super) fn page(&self, path: &str, params: &Params) -> Result<Reply, Failure> {
        match path {
            "/" => self.with_index(|index| Ok(html(200, self.home(index, params)?))),
            p if p.starts_with("/doc/") => self.document_html(p, params),
            "/random" => self.random(),
            "/search" => self.with_index(|index| self.search_page(index, params)),
            "/text" => self.text(&live_text(params)?),
            "/compare" => self.compare_page(params),
            "/contrast" => self.contrast_page(params),
            p if p.starts_with("/feature/") => {
                let feature = number_in(p)?;
                self.with_index(|index| self.feature_page(index, feature, params))
            }
            _ => Err((404, format!("no page at {}{path}", self.base))),
        }
    }

    /// A form post: a label saved (or a draft accepted) from a feature page, then back
    /// to that page.
    pub(super) fn page_write(&self, path: &str, body: &str) -> Result<Reply, Failure> {
        if !path.starts_with("/labels/") {
            return Err((405, format!("{path} does not take POST")));
        }
        if let Some(accepted) = path.strip_suffix("/accept") {
            let feature = number_in(accepted)?;
            self.with_index_mut(|index| index.accept_label(feature).map_err(failed))?;
            return Ok(redirect(format!("{}/feature/{feature}", self.base)));
        }
        let feature = number_in(path)?;
        let form = Params::parse(body);
        self.with_index_mut(|index| {
            // The form edits the text fields; examples are kept.
            let examples = index
                .label(feature)
                .map_err(failed)?
                .label
                .map(|l| l.examples)
                .unwrap_or_default();
            let label = FeatureLabel {
                name: form.text("name"),
                description: form.text("description"),
                examples,
                confidence: form.text("confidence"),
                notes: form.text("notes"),
                ..FeatureLabel::default()
            };
            index.set_label(feature, label).map_err(failed)
        })?;
        Ok(redirect(format!("{}/feature/{feature}", self.base)))
    }

    fn random(&self) -> Result<Reply, Failure> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pick = self.with_index(|index| index.sample_features(1, seed).map_err(failed))?;
        let feature = pick.first().copied().unwrap_or(0);
        Ok(redirect(format!("{}/feature/{feature}", self.base)))
    }

    /// A feature's page; `where=` and `docs=` restrict it to some documents (its filter
    /// box, [`super::restricted`]).
    fn feature_page(
        &self,
        index: &AnyIndex,
        feature: u32,
        params: &Params,
    ) -> Result<Reply, Failure> {
        let base = self.base;
        let restrict = params.restriction();
        let (filter_box, keep) = match self.feature_restriction(index, feature, &restrict) {
            Ok(parts) => parts,
            Err(refused) => return Ok(refused),
        };
        let request = FeatureRequest {
            feature,
            context: 10,
            restrict,
            ..FeatureRequest::default()
        };
        let report = saeidx_compare::feature_report(index, &request).map_err(failed)?;
        let label = report.label.clone().unwrap_or_default();
        let field = |name: &str, value: &Option<String>| {
            format!(
                "<label>{name} <input name=\"{name}\" value=\"{}\"></label> ",
                escape(value.as_deref().unwrap_or(""))
            )
        };
        let review = if label.is_draft() {
            format!(
                "<form method=\"post\" action=\"{base}/labels/{feature}/accept\"><button>accept the draft</button> <span class=\"meta\">as it is; or edit it below (saving marks it edited)</span></form>"
            )
        } else {
            String::new()
        };
        let form = format!(
            "<h2>Label</h2>{review}<form method=\"post\" action=\"{base}/labels/{feature}\">{}{}{}{}<button>save</button></form><p><a href=\"{base}/\">home</a> · <a href=\"{base}/random\">random feature</a></p>",
            field("name", &label.name),
            field("description", &label.description),
            field("confidence", &label.confidence),
            field("notes", &label.notes)
        );
        let link = |f: u32| format!("{base}/feature/{f}{}", escape(&keep));
        let doc_link =
            |hit: &saeidx_query::TextHit| document_link(base, hit.doc, feature, hit.position);
        render_feature_page(index, &report, 10, &link, Some(&doc_link), &form)
            .map(|page| html(200, after_heading(&page, &filter_box)))
            .map_err(failed)
    }

    /// A text run live, coloured by its strongest features.
    fn text(&self, text: &str) -> Result<Reply, Failure> {
        let analyzed = self.analyze(text)?;
        let request = TopFeaturesRequest {
            k: TEXT_FEATURES,
            ..TopFeaturesRequest::default()
        };
        self.with_index(|index| {
            let ranked = index
                .text_top_features(&analyzed, &request)
                .map_err(failed)?;
            let features: Vec<u32> = ranked.features.iter().map(|f| f.feature).collect();
            let tokens = text_tokens(&analyzed, &features, request.exclusions);
            let link = |f: u32| format!("{}/feature/{f}", self.base);
            Ok(html(
                200,
                render_text_linked(index.registry(), text, &features, &tokens, &link),
            ))
        })
    }

    fn home(&self, index: &AnyIndex, params: &Params) -> Result<String, Failure> {
        let base = self.base;
        let info = index.info(&InfoRequest::default()).map_err(failed)?;
        let mut body = format!(
            "<h1>saeidx: {}</h1><p class=\"meta\">{} · {} · SAE {} ({} features) · {} documents, {} tokens, {} nonzeros</p>\
<form action=\"{base}/search\"><input name=\"q\" placeholder=\"search labels\"> <input name=\"where\" size=\"40\" placeholder=\"and/or the features of documents where year &gt;= 1900\"> <button>search</button></form>\
<p><a href=\"{base}/random\">a random feature</a> · <a href=\"{base}/contrast\">contrast two sets of documents</a></p>\
<form action=\"{base}/text\"><textarea name=\"q\" rows=\"3\" cols=\"70\" placeholder=\"a text to analyse\"></textarea><br><button>analyse</button></form>",
            escape(&self.slot.name),
            escape(&info.model),
            escape(&info.hook),
            escape(&info.sae),
            info.d_sae,
            info.counts.documents,
            info.counts.tokens,
            info.counts.nonzeros
        );
        if self.slots.len() > 1 {
            body.push_str("<h2>Indexes served</h2><ul>");
            for slot in self.slots {
                let _ = write!(
                    body,
                    "<li><a href=\"/i/{0}/\">{0}</a> <span class=\"meta\">{1}</span></li>",
                    escape(&slot.name),
                    escape(&slot.dir.display().to_string())
                );
            }
            body.push_str("</ul>");
        }
        if matches!(index, AnyIndex::Segments(_)) {
            let _ = write!(
                body,
                "<p class=\"meta\">an index of {} segments</p>",
                index.segment_count()
            );
        }
        let overview = index
            .overview(&super::browse::overview_request(params)?)
            .map_err(failed)?;
        body.push_str(&crate::overview::render_overview(&overview, base));
        Ok(page(&format!("saeidx: {}", self.slot.name), &body))
    }
}
