//! The JSON API: each route reads its parameters into a request of `saeidx_query` and
//! returns that question's answer type as JSON, the same value `saeidx ... --json`
//! prints.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/indexes` | every served index: `name`, `url`, `live`, `info` |
//! | `GET /api/info[?dead=1]` | [`Info`](saeidx_query::Info) |
//! | `GET /api/top-texts?feature=F[&k&rank&context]` | [`TopTexts`](saeidx_query::TopTexts) |
//! | `GET /api/top-features?doc=D\|ID[&k&aggregate&tokens=A..B&per_token=1]` | [`TopFeatures`](saeidx_query::TopFeatures) or [`PerToken`](saeidx_query::PerToken) |
//! | `GET /api/text?q=TEXT[&k&aggregate&per_token=1]` | the same, for a text run live |
//! | `GET /api/feature/F[?examples&bands&per_band&neighbours&context]` | [`FeatureReport`](saeidx_query::FeatureReport) |
//! | `GET /api/silent/F[?n&context&seed&token=ID...]` | [`SilentContexts`](saeidx_query::SilentContexts) |
//! | `GET /api/sample[?n&seed&examples&context]` | [`Sample`](saeidx_query::Sample) |
//! | `GET /api/contrast?a=FILTER[&b=FILTER][&a_docs&b_docs&k&examples&context&prior&min_count]` (no B: the rest of the index) | [`Contrast`](saeidx_query::Contrast) |
//! | `GET /api/token-features?token=TEXT[&token=TEXT...][&k&examples&context]` (or `token_id=`, `token_regex=`) | [`TokenFeatureProfile`](saeidx_query::TokenFeatureProfile) |
//! | `GET /api/explain?q=TEXT[&features&texts&context]` | [`Explain`](saeidx_query::Explain) |
//! | `GET /api/overview[?frequent&sample&seed&docs&docs_from]` | [`Overview`](saeidx_query::Overview) |
//! | `GET /api/document/D[?f&page&page_tokens&top]` | [`DocumentPage`](saeidx_query::DocumentPage) |
//! | `GET /api/compare?with=NAME[&candidates&by&min_score&examples&context]` | [`Comparison`](saeidx_compare::Comparison) of this index (A) and the served index NAME (B), as `saeidx compare A B --json` |
//! | `GET /api/labels/F`, `POST /api/labels/F` (a label object: a person's edit) | [`LabelAnswer`](saeidx_query::LabelAnswer) |
//! | `POST /api/labels/F/accept` (a person accepts an LLM draft as it is) | [`LabelAnswer`](saeidx_query::LabelAnswer) |
//!
//! Every route takes `include_special=1` and `include_sinks=1` where tokens are counted.
//! `top-texts` takes one `token=TEXT`, `token_id=N` or `token_regex=RE` (hits on that
//! token only). `top-texts`, `feature`, `sample` and `token-features` take `where=FILTER` (a filter over document
//! metadata, as `saeidx documents --where`) and `docs=D,ID,...` to look at those
//! documents only; `top-features` with `where=`/`docs=` and no `doc=` ranks the features
//! of that set of documents ([`SubsetFeatures`](saeidx_query::SubsetFeatures)).

use saeidx_query::{
    ContrastRequest, ExplainRequest, FeatureLabel, FeatureRequest, InfoRequest, SampleRequest,
    SilentRequest, TokenFeaturesRequest, TopFeaturesRequest, TopTextsRequest,
};

use super::{
    form::{Failure, Params},
    routes::{Context, Reply, answer, failed},
};

impl Context<'_> {
    /// A `GET /api/...` route (`path` without the `/api` prefix).
    pub(super) fn api(&self, path: &str, params: &Params) -> Result<Reply, Failure> {
        match path {
            "/indexes" => self.indexes(),
            "/info" => {
                let request = InfoRequest {
                    list_dead: params.flag("dead"),
                };
                self.with_index(|index| answer(&index.info(&request).map_err(failed)?))
            }
            "/top-texts" => self.top_texts(params),
            "/top-features" => self.top_features(params),
            "/text" => self.text_features(params),
            "/sample" => self.sample(params),
            "/token-features" => self.token_features(params),
            "/contrast" => self.contrast(params),
            "/explain" => self.explain(params),
            "/overview" => self.overview_api(params),
            p if p.starts_with("/document/") => self.document_api(p, params),
            "/compare" => self.compare_api(params),
            p if p.starts_with("/feature/") => self.feature(number_in(p)?, params),
            p if p.starts_with("/silent/") => self.silent(number_in(p)?, params),
            p if p.starts_with("/labels/") => {
                let feature = number_in(p)?;
                self.with_index(|index| answer(&index.label(feature).map_err(failed)?))
            }
            _ => Err((404, format!("no API route {}/api{path}", self.base))),
        }
    }

    /// A `POST /api/...` route: only labels change.
    pub(super) fn api_write(&self, path: &str, body: &str) -> Result<Reply, Failure> {
        if !path.starts_with("/labels/") {
            return Err((405, format!("/api{path} does not take POST")));
        }
        if let Some(accepted) = path.strip_suffix("/accept") {
            let feature = number_in(accepted)?;
            return self
                .with_index_mut(|index| answer(&index.accept_label(feature).map_err(failed)?));
        }
        let feature = number_in(path)?;
        let label: FeatureLabel =
            serde_json::from_str(body).map_err(|e| (400, format!("not a label object: {e}")))?;
        self.with_index_mut(|index| answer(&index.set_label(feature, label).map_err(failed)?))
    }

    fn indexes(&self) -> Result<Reply, Failure> {
        let mut listed = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            let info = slot
                .opened
                .read()
                .map_err(|_| super::routes::busy())?
                .index
                .info(&InfoRequest::default())
                .map_err(failed)?;
            listed.push(serde_json::json!({
                "name": slot.name, "url": format!("/i/{}/", slot.name),
                "live": slot.live.is_some(), "info": info,
            }));
        }
        answer(&listed)
    }

    fn top_texts(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = TopTextsRequest::default();
        let request = TopTextsRequest {
            feature: params.required("feature")?,
            k: params.number("k", defaults.k)?,
            rank: params.rank()?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            restrict: params.restriction(),
            token: match params.token_patterns()?.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                _ => return Err((400, "top-texts takes one token".to_string())),
            },
        };
        self.with_index(|index| answer(&index.top_texts(&request).map_err(failed)?))
    }

    fn top_features(&self, params: &Params) -> Result<Reply, Failure> {
        let request = features_request(params)?;
        if params.get("doc").is_none() {
            let restrict = params.restriction();
            if !restrict.is_all() {
                return self.with_index(|index| {
                    answer(&index.subset_features(&restrict, &request).map_err(failed)?)
                });
            }
        }
        let doc = params.doc()?;
        self.with_index(|index| {
            if params.flag("per_token") {
                answer(&index.per_token(&doc, &request).map_err(failed)?)
            } else {
                answer(&index.top_features(&doc, &request).map_err(failed)?)
            }
        })
    }

    fn text_features(&self, params: &Params) -> Result<Reply, Failure> {
        let request = features_request(params)?;
        let analyzed = self.analyze(&live_text(params)?)?;
        self.with_index(|index| {
            if params.flag("per_token") {
                answer(&index.text_per_token(&analyzed, &request).map_err(failed)?)
            } else {
                answer(
                    &index
                        .text_top_features(&analyzed, &request)
                        .map_err(failed)?,
                )
            }
        })
    }

    fn feature(&self, feature: u32, params: &Params) -> Result<Reply, Failure> {
        let defaults = FeatureRequest::default();
        let request = FeatureRequest {
            feature,
            examples: params.number("examples", defaults.examples)?,
            bands: params.number("bands", defaults.bands)?,
            per_band: params.number("per_band", defaults.per_band)?,
            neighbours: params.number("neighbours", defaults.neighbours)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            restrict: params.restriction(),
        };
        self.with_index(|index| {
            answer(&saeidx_compare::feature_report(index, &request).map_err(failed)?)
        })
    }

    fn silent(&self, feature: u32, params: &Params) -> Result<Reply, Failure> {
        let defaults = SilentRequest::default();
        let request = SilentRequest {
            feature,
            n: params.number("n", defaults.n)?,
            context: params.number("context", defaults.context)?,
            tokens: params.numbers("token")?,
            seed: params.number("seed", defaults.seed)?,
            exclusions: params.exclusions(),
        };
        self.with_index(|index| answer(&index.silent_contexts(&request).map_err(failed)?))
    }

    fn sample(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = SampleRequest::default();
        let request = SampleRequest {
            n: params.number("n", defaults.n)?,
            seed: params.number("seed", defaults.seed)?,
            examples: params.number("examples", defaults.examples)?,
            context: params.number("context", defaults.context)?,
            restrict: params.restriction(),
        };
        self.with_index(|index| answer(&index.sample(&request).map_err(failed)?))
    }

    fn token_features(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = TokenFeaturesRequest::default();
        let request = TokenFeaturesRequest {
            tokens: params.token_patterns()?,
            k: params.number("k", defaults.k)?,
            examples: params.number("examples", defaults.examples)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            restrict: params.restriction(),
        };
        self.with_index(|index| answer(&index.token_features(&request).map_err(failed)?))
    }

    fn contrast(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = ContrastRequest::default();
        let b = params.restriction_named("b", "b_docs");
        let request = ContrastRequest {
            a: params.restriction_named("a", "a_docs"),
            b: (!b.is_all()).then_some(b),
            k: params.number("k", defaults.k)?,
            examples: params.number("examples", defaults.examples)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
            prior: params.number("prior", defaults.prior)?,
            min_count: params.number("min_count", defaults.min_count)?,
        };
        self.with_index(|index| answer(&index.contrast(&request).map_err(failed)?))
    }

    fn explain(&self, params: &Params) -> Result<Reply, Failure> {
        let defaults = ExplainRequest::default();
        let request = ExplainRequest {
            features: params.number("features", defaults.features)?,
            texts: params.number("texts", defaults.texts)?,
            context: params.number("context", defaults.context)?,
            exclusions: params.exclusions(),
        };
        let analyzed = self.analyze(&live_text(params)?)?;
        self.with_index(|index| answer(&index.explain(&analyzed, &request).map_err(failed)?))
    }
}

/// The ranking options of `top-features` and `text`.
fn features_request(params: &Params) -> Result<TopFeaturesRequest, Failure> {
    Ok(TopFeaturesRequest {
        k: params.number("k", TopFeaturesRequest::default().k)?,
        aggregate: params.aggregate()?,
        tokens: params.tokens()?,
        exclusions: params.exclusions(),
    })
}

/// The `q=` text to run live (browsers send a text area's line breaks as CRLF).
pub(super) fn live_text(params: &Params) -> Result<String, Failure> {
    params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .map(|q| q.replace("\r\n", "\n"))
        .ok_or_else(|| (400, "give the text as q=...".to_string()))
}

/// The feature number at the end of a path (`/feature/F`, `/labels/F`).
pub(super) fn number_in(path: &str) -> Result<u32, Failure> {
    let last = path.rsplit('/').next().unwrap_or_default();
    last.parse()
        .map_err(|_| (400, format!("feature must be a whole number, not {last:?}")))
}
