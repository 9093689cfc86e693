//! Routing and answers: which index a path addresses, the pages and the JSON API.

use std::{fmt::Write, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use saeidx_query::{
    Aggregate, Exclusions, FeatureLabel, QueryError, QueryIndex, Rank, TokenCodes, rank_features,
};

use super::{ServeOptions, guard::Guard, slots::Slot};
use crate::{TextToken, chosen_values, escape, page, render_feature_linked, render_text_linked};

/// Live analysis of new texts (the model is not this crate's business): each token's
/// piece of the text and its codes, strongest first. Worker threads share it, one
/// text at a time.
pub trait LiveTexts: Send {
    /// Runs `text` through the index's model and SAE.
    fn analyze(&mut self, text: &str) -> Result<Vec<LiveToken>, String>;
}

/// One token of a live text.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveToken {
    /// Its piece of the text (pieces concatenate to the text).
    pub text: String,
    /// Active features.
    pub features: Vec<u32>,
    /// Their values.
    pub values: Vec<f32>,
    /// Left out of rankings (special or sink).
    pub skipped: bool,
}

/// The served indexes, who may ask, and the limits on asking.
pub(super) struct App {
    slots: Vec<Slot>,
    guard: Guard,
    options: ServeOptions,
}

/// A request, read: what the synchronous router needs.
struct Asked {
    method: Method,
    path: String,
    query: String,
    body: String,
}

impl App {
    /// The application over opened `slots`.
    pub fn new(slots: Vec<Slot>, guard: Guard, options: ServeOptions) -> Self {
        Self {
            slots,
            guard,
            options,
        }
    }

    /// Answers one request: checks who asks, reads a bounded body, and computes the answer
    /// on the blocking pool under the request deadline.
    pub async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let api = path.starts_with("/api/") || path.contains("/api/");
        if let Err(refusal) = self.guard.check(&parts.method, &parts.headers) {
            let (status, message) = refusal.reply();
            return respond(error_reply(api, status, &message));
        }
        let body = match self.read_body(&parts, body).await {
            Ok(body) => body,
            Err((status, message)) => return respond(error_reply(api, status, &message)),
        };
        let asked = Asked {
            method: parts.method,
            path,
            query: parts.uri.query().unwrap_or("").to_string(),
            body,
        };
        let app = self.clone();
        let work = tokio::task::spawn_blocking(move || app.route(&asked));
        let reply = match tokio::time::timeout(self.options.request_timeout, work).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => error_reply(api, 500, "the answer failed; see the server's log"),
            Err(_) => error_reply(
                api,
                503,
                &format!(
                    "no answer within {} s; try again later",
                    self.options.request_timeout.as_secs()
                ),
            ),
        };
        respond(reply)
    }

    /// The body of a request that may carry one, up to `max_body_bytes`.
    async fn read_body(
        &self,
        parts: &hyper::http::request::Parts,
        body: Incoming,
    ) -> Result<String, Failure> {
        if parts.method != Method::POST {
            return Ok(String::new());
        }
        let limit = self.options.max_body_bytes;
        let too_large = || {
            (
                413,
                format!("the request body is over the limit of {limit} bytes"),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| too_large())?
            .to_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| (400, "the body is not UTF-8".to_string()))
    }

    /// Routes a read request to its index (`/i/NAME/...`, else the first) and answers.
    fn route(&self, asked: &Asked) -> Reply {
        let path = asked.path.as_str();
        let query = params(&asked.query);
        let (slot, base, rest) = match path.strip_prefix("/i/") {
            Some(tail) => {
                let (name, rest) = tail.split_once('/').unwrap_or((tail, ""));
                let rest = if rest.is_empty() {
                    "/"
                } else {
                    &path[path.len() - rest.len() - 1..]
                };
                (
                    self.slots.iter().find(|s| s.name == name),
                    format!("/i/{name}"),
                    rest,
                )
            }
            None => (self.slots.first(), String::new(), path),
        };
        let api = rest.starts_with("/api/");
        match slot {
            Some(slot) => {
                slot.refresh();
                let context = Context {
                    slots: &self.slots,
                    slot,
                    base: &base,
                };
                context.route(&asked.method, rest, &query, &asked.body)
            }
            None => Err((404, format!("no index is served under {base}/"))),
        }
        .unwrap_or_else(|(status, message)| error_reply(api, status, &message))
    }
}

/// The HTTP response for a reply.
fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, reply.content_type);
    if let Some(location) = reply.location {
        response = response.header(header::LOCATION, location);
    }
    response
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad response"))))
}

/// An answer: status, content type, body and, for redirects, where to.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    location: Option<String>,
}

fn html(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: "text/html; charset=utf-8",
        body: body.into_bytes(),
        location: None,
    }
}

fn json(status: u16, value: serde_json::Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
        location: None,
    }
}

fn redirect(location: String) -> Reply {
    Reply {
        status: 303,
        content_type: "text/html; charset=utf-8",
        body: Vec::new(),
        location: Some(location),
    }
}

fn error_reply(api: bool, status: u16, message: &str) -> Reply {
    if api {
        json(status, serde_json::json!({"error": message}))
    } else {
        html(
            status,
            page(
                "saeidx: error",
                &format!("<h1>Error</h1><p>{}</p>", escape(message)),
            ),
        )
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match text
                .get(i + 1..i + 3)
                .map(|hex| u8::from_str_radix(hex, 16))
            {
                Some(Ok(byte)) => {
                    out.push(byte);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` pairs of a query string or form body.
fn params(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(key), url_decode(value))
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

type Failure = (u16, String);

fn failed(error: QueryError) -> Failure {
    let status = match error {
        QueryError::FeatureOutOfRange { .. }
        | QueryError::UnknownDocument { .. }
        | QueryError::TokenRange { .. } => 404,
        QueryError::Registry { .. }
        | QueryError::Limit { .. }
        | QueryError::ReversedRange { .. } => 400,
        // The files changed under the open index: it is reopened before the next request.
        QueryError::Changed { .. } => 503,
        _ => 500,
    };
    (status, error.to_string())
}

fn number(text: Option<&str>, what: &str) -> Result<u32, Failure> {
    text.and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| (400, format!("{what} must be a number")))
}

fn busy() -> Failure {
    (
        500,
        "a request failed while holding the index; restart the server".into(),
    )
}

/// A request's view of the server: all indexes, the one it addresses, and the URL
/// prefix its links keep.
struct Context<'a> {
    slots: &'a [Slot],
    slot: &'a Slot,
    base: &'a str,
}

impl Context<'_> {
    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: &str,
    ) -> Result<Reply, Failure> {
        match (method, path) {
            (&Method::POST, p) if p.starts_with("/labels/") || p.starts_with("/api/labels/") => {
                self.save_label(p, body)
            }
            // Browsers send a text area's line breaks as CRLF; the person typed newlines.
            (&Method::GET, "/text") => {
                self.text(&param(query, "q").unwrap_or("").replace("\r\n", "\n"))
            }
            (&Method::GET, _) => {
                let opened = self.slot.opened.read().map_err(|_| busy())?;
                self.read(&opened.index, path, query)
            }
            _ => Err((405, format!("{path} does not take {method}"))),
        }
    }

    /// Pages and answers that only read the index.
    fn read(
        &self,
        index: &QueryIndex,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Reply, Failure> {
        let base = self.base;
        let exclusions = Exclusions::default();
        match path {
            "/" => Ok(html(200, self.home(index))),
            "/random" => {
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                let pick = index.sample(1, seed).map_err(failed)?;
                let feature = pick.first().copied().unwrap_or(0);
                Ok(redirect(format!("{base}/feature/{feature}")))
            }
            "/search" => {
                let q = param(query, "q").unwrap_or("").to_lowercase();
                let mut body = format!("<h1>Labels matching “{}”</h1><ul>", escape(&q));
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
                            "<li><a href=\"{base}/feature/{feature}\">feature {feature}</a> {}</li>",
                            escape(label.name.as_deref().unwrap_or(""))
                        );
                    }
                }
                let _ = write!(body, "</ul><p><a href=\"{base}/\">home</a></p>");
                Ok(html(200, page("saeidx: search", &body)))
            }
            "/api/indexes" => Ok(json(
                200,
                serde_json::Value::Array(
                    self.slots
                        .iter()
                        .map(|slot| match slot.opened.read() {
                            Ok(opened) => summary(slot, &opened.index),
                            Err(_) => {
                                serde_json::json!({"name": slot.name, "error": "unavailable"})
                            }
                        })
                        .collect(),
                ),
            )),
            "/api/info" => Ok(json(200, summary(self.slot, index))),
            "/api/top-texts" => {
                let feature = number(param(query, "feature"), "feature")?;
                let k = number(param(query, "k").or(Some("10")), "k")? as usize;
                let hits = index
                    .top_texts(feature, k, Rank::Token, 8, exclusions)
                    .map_err(failed)?;
                Ok(json(
                    200,
                    serde_json::json!({"feature": feature, "label": index.registry().get(feature), "texts": hits}),
                ))
            }
            "/api/top-features" => {
                let doc = number(param(query, "doc"), "doc")?;
                let k = number(param(query, "k").or(Some("10")), "k")? as usize;
                let ranked = index
                    .top_features(doc, None, Aggregate::Max, k, exclusions)
                    .map_err(failed)?;
                Ok(json(
                    200,
                    serde_json::json!({"doc": doc, "features": ranked}),
                ))
            }
            p if p.starts_with("/api/feature/") => {
                let feature = number(p.strip_prefix("/api/feature/"), "feature")?;
                let report = index
                    .feature(feature, 5, 4, 10, 8, exclusions)
                    .map_err(failed)?;
                Ok(json(200, serde_json::to_value(report).unwrap_or_default()))
            }
            p if p.starts_with("/feature/") => {
                let feature = number(p.strip_prefix("/feature/"), "feature")?;
                let report = index
                    .feature(feature, 5, 4, 10, 10, exclusions)
                    .map_err(failed)?;
                let label = report.label.clone().unwrap_or_default();
                let field = |name: &str, value: &Option<String>| {
                    format!(
                        "<label>{name} <input name=\"{name}\" value=\"{}\"></label> ",
                        escape(value.as_deref().unwrap_or(""))
                    )
                };
                let form = format!(
                    "<h2>Label</h2><form method=\"post\" action=\"{base}/labels/{feature}\">{}{}{}{}<button>save</button></form><p><a href=\"{base}/\">home</a> · <a href=\"{base}/random\">random feature</a></p>",
                    field("name", &label.name),
                    field("description", &label.description),
                    field("confidence", &label.confidence),
                    field("notes", &label.notes)
                );
                let link = |f: u32| format!("{base}/feature/{f}");
                render_feature_linked(index, &report, 10, &link, &form)
                    .map(|page| html(200, page))
                    .map_err(failed)
            }
            _ => Err((404, format!("no page at {base}{path}"))),
        }
    }

    /// A text run live, coloured by its five strongest features.
    fn text(&self, text: &str) -> Result<Reply, Failure> {
        let Some(live) = &self.slot.live else {
            return Err((
                503,
                "live analysis is not available in this server (start it where the index's model and SAE are)".into(),
            ));
        };
        // One live analysis at a time (the model is not shared between threads).
        let tokens = live
            .lock()
            .map_err(|_| busy())?
            .analyze(text)
            .map_err(|e| (500, e))?;
        let opened = self.slot.opened.read().map_err(|_| busy())?;
        let index = &opened.index;
        let ranked = rank_features(
            tokens
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.skipped)
                .map(|(i, t)| TokenCodes {
                    position: i as u32,
                    features: &t.features,
                    values: &t.values,
                }),
            Aggregate::Max,
            5,
            index.d_sae(),
        );
        let features: Vec<u32> = ranked.iter().map(|s| s.feature).collect();
        let pieces: Vec<TextToken> = tokens
            .iter()
            .map(|t| TextToken {
                text: t.text.clone(),
                values: chosen_values(&t.features, &t.values, &features),
                skipped: t.skipped,
            })
            .collect();
        let link = |f: u32| format!("{}/feature/{f}", self.base);
        Ok(html(
            200,
            render_text_linked(index.registry(), text, &features, &pieces, &link),
        ))
    }

    /// Saves a label from the page's form or the API, atomically with the index.
    fn save_label(&self, path: &str, body: &str) -> Result<Reply, Failure> {
        let api = path.starts_with("/api/");
        let feature = number(path.rsplit('/').next(), "feature")?;
        let mut opened = self.slot.opened.write().map_err(|_| busy())?;
        let index = &mut opened.index;
        if feature as usize >= index.d_sae() {
            return Err(failed(QueryError::FeatureOutOfRange {
                feature,
                d_sae: index.d_sae(),
            }));
        }
        let label = if api {
            serde_json::from_str::<FeatureLabel>(body)
                .map_err(|e| (400, format!("not a label object: {e}")))?
        } else {
            let form = params(body);
            let get = |key: &str| {
                param(&form, key)
                    .filter(|v| !v.trim().is_empty())
                    .map(str::to_string)
            };
            FeatureLabel {
                name: get("name"),
                description: get("description"),
                examples: index
                    .registry()
                    .get(feature)
                    .map(|l| l.examples.clone())
                    .unwrap_or_default(),
                confidence: get("confidence"),
                notes: get("notes"),
            }
        };
        let mut registry = index.registry().clone();
        registry.set(feature, label);
        index.save_registry(registry).map_err(failed)?;
        if api {
            Ok(json(
                200,
                serde_json::json!({"feature": feature, "label": index.registry().get(feature)}),
            ))
        } else {
            Ok(redirect(format!("{}/feature/{feature}", self.base)))
        }
    }

    fn home(&self, index: &QueryIndex) -> String {
        let base = self.base;
        let counts = index.query_manifest().counts;
        let manifest = index.manifest();
        let mut body = format!(
            "<h1>saeidx: {}</h1><p class=\"meta\">{} · {} · SAE {} ({} features) · {} documents, {} tokens, {} nonzeros</p>\
<form action=\"{base}/search\"><input name=\"q\" placeholder=\"search labels\"> <button>search</button></form>\
<p><a href=\"{base}/random\">a random feature</a></p>\
<form action=\"{base}/text\"><textarea name=\"q\" rows=\"3\" cols=\"70\" placeholder=\"a text to analyse\"></textarea><br><button>analyse</button></form>",
            escape(&self.slot.name),
            escape(&manifest.job.model.source),
            escape(&manifest.job.hook),
            escape(&manifest.job.sae.source),
            manifest.job.sae.d_sae,
            counts.documents,
            counts.tokens,
            counts.nonzeros
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
        body.push_str("<h2>Labelled features</h2><ul>");
        for (feature, label) in index.registry().iter() {
            let _ = write!(
                body,
                "<li><a href=\"{base}/feature/{feature}\">feature {feature}</a> {}</li>",
                escape(label.name.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</ul>");
        page(&format!("saeidx: {}", self.slot.name), &body)
    }
}

/// What `/api/info` and `/api/indexes` say about an index.
fn summary(slot: &Slot, index: &QueryIndex) -> serde_json::Value {
    let manifest = index.manifest();
    serde_json::json!({
        "name": slot.name, "url": format!("/i/{}/", slot.name), "index": slot.dir,
        "counts": index.query_manifest().counts, "hook": manifest.job.hook,
        "model": manifest.job.model.source, "sae": manifest.job.sae.source,
        "d_sae": manifest.job.sae.d_sae, "labels": index.registry().len(),
        "live": slot.live.is_some(),
    })
}
