//! The browsing routes: a document's page and the index overview, as JSON
//! (`/api/document/D`, `/api/overview`) and as pages (`/doc/D`, the home page's sections).

use saeidx_query::{AnyIndex, DocRef, DocumentRequest, OverviewRequest};

use super::{
    form::{Failure, Params},
    routes::{Context, Reply, answer, failed, html},
};

/// The document a `/doc/D` or `/api/document/D` path names: a number, or else an id.
fn doc_in(path: &str) -> Result<DocRef, Failure> {
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.is_empty() {
        return Err((400, "name a document: /doc/NUMBER".to_string()));
    }
    Ok(last
        .parse()
        .map(DocRef::Number)
        .unwrap_or_else(|_| DocRef::Id(last.to_string())))
}

/// A document request from a path and `f=`, `page=`, `page_tokens=`, `top=`.
fn document_request(path: &str, params: &Params) -> Result<DocumentRequest, Failure> {
    let defaults = DocumentRequest::default();
    let feature = match params.get("f").or_else(|| params.get("feature")) {
        Some(text) if !text.is_empty() => Some(
            text.parse()
                .map_err(|_| (400, format!("f must be a feature number, not {text:?}")))?,
        ),
        _ => None,
    };
    Ok(DocumentRequest {
        doc: doc_in(path)?,
        feature,
        page: params.number("page", defaults.page)?,
        page_tokens: params.number("page_tokens", defaults.page_tokens)?,
        top: params.number("top", defaults.top)?,
        exclusions: params.exclusions(),
    })
}

/// An overview request from `frequent=`, `sample=`, `seed=`, `docs=`, `docs_from=`.
pub(super) fn overview_request(params: &Params) -> Result<OverviewRequest, Failure> {
    let defaults = OverviewRequest::default();
    Ok(OverviewRequest {
        frequent: params.number("frequent", defaults.frequent)?,
        sample: params.number("sample", defaults.sample)?,
        seed: params.number("seed", defaults.seed)?,
        documents: params.number("docs", defaults.documents)?,
        documents_from: params.number("docs_from", defaults.documents_from)?,
    })
}

impl Context<'_> {
    /// `GET /api/document/D`.
    pub(super) fn document_api(&self, path: &str, params: &Params) -> Result<Reply, Failure> {
        let request = document_request(path, params)?;
        self.with_index(|index| answer(&index.document_page(&request).map_err(failed)?))
    }

    /// `GET /api/overview`.
    pub(super) fn overview_api(&self, params: &Params) -> Result<Reply, Failure> {
        let request = overview_request(params)?;
        self.with_index(|index| answer(&index.overview(&request).map_err(failed)?))
    }

    /// `GET /doc/D`.
    pub(super) fn document_html(&self, path: &str, params: &Params) -> Result<Reply, Failure> {
        let request = document_request(path, params)?;
        self.with_index(|index: &AnyIndex| {
            let answer = index.document_page(&request).map_err(failed)?;
            Ok(html(
                200,
                crate::document::render_document(&answer, self.base),
            ))
        })
    }
}
