//! Routing: which index a path addresses, then the JSON API ([`super::api`]) or a page
//! ([`super::pages`]); every answer computed on the blocking pool under the deadline.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use saeidx_query::{AnalyzedText, AnyIndex, QueryError};

use super::{
    ServeOptions,
    form::{Failure, Params},
    guard::Guard,
    slots::Slot,
};
use crate::{escape, page};

/// Live analysis of new texts (the model is not this crate's business): each token's
/// piece of the text and its codes, strongest first. Worker threads share it, one
/// text at a time.
pub trait LiveTexts: Send {
    /// Runs `text` through the index's model and SAE.
    fn analyze(&mut self, text: &str) -> Result<AnalyzedText, String>;
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

    /// Routes a request to its index (`/i/NAME/...`, else the first) and answers.
    fn route(&self, asked: &Asked) -> Reply {
        let path = asked.path.as_str();
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
                context.route(
                    &asked.method,
                    rest,
                    &Params::parse(&asked.query),
                    &asked.body,
                )
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
pub(super) struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    location: Option<String>,
}

pub(super) fn html(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: "text/html; charset=utf-8",
        body: body.into_bytes(),
        location: None,
    }
}

/// An answer type as JSON (status 200).
pub(super) fn answer<T: serde::Serialize>(value: &T) -> Result<Reply, Failure> {
    let body = saeidx_query::answers::to_json(value)
        .and_then(|value| serde_json::to_vec(&value))
        .map_err(|e| (500, format!("answer not serialized: {e}")))?;
    Ok(Reply {
        status: 200,
        content_type: "application/json",
        body,
        location: None,
    })
}

pub(super) fn json(status: u16, value: serde_json::Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
        location: None,
    }
}

pub(super) fn redirect(location: String) -> Reply {
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

/// The HTTP status of a query error.
pub(super) fn failed(error: QueryError) -> Failure {
    let status = match error {
        QueryError::FeatureOutOfRange { .. }
        | QueryError::UnknownDocument { .. }
        | QueryError::TokenRange { .. } => 404,
        QueryError::Registry { .. }
        | QueryError::Limit { .. }
        | QueryError::ReversedRange { .. }
        | QueryError::Filter(_)
        | QueryError::TokenPattern { .. }
        | QueryError::Contrast(_)
        | QueryError::NotForTexts(_) => 400,
        // A draft to accept that is not there (any more): the state, not the request.
        QueryError::NoDraft { .. } => 409,
        // The files changed under the open index: it is reopened before the next request.
        QueryError::Changed { .. } => 503,
        _ => 500,
    };
    (status, error.to_string())
}

/// A lock poisoned by a request that panicked while holding it.
pub(super) fn busy() -> Failure {
    (
        500,
        "a request failed while holding the index; restart the server".into(),
    )
}

/// A request's view of the server: all indexes, the one it addresses, and the URL
/// prefix its links keep.
pub(super) struct Context<'a> {
    /// Every served index.
    pub slots: &'a [Slot],
    /// The one addressed.
    pub slot: &'a Slot,
    /// The URL prefix of its links (`""` or `/i/NAME`).
    pub base: &'a str,
}

impl Context<'_> {
    fn route(
        &self,
        method: &Method,
        path: &str,
        params: &Params,
        body: &str,
    ) -> Result<Reply, Failure> {
        let write = *method == Method::POST;
        match path.strip_prefix("/api") {
            Some(api) if write => self.api_write(api, body),
            Some(api) if *method == Method::GET => self.api(api, params),
            None if write => self.page_write(path, body),
            None if *method == Method::GET => self.page(path, params),
            _ => Err((405, format!("{path} does not take {method}"))),
        }
    }

    /// Runs `read` on the addressed index, shared with other readers.
    pub fn with_index<T>(
        &self,
        read: impl FnOnce(&AnyIndex) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let opened = self.slot.opened.read().map_err(|_| busy())?;
        read(&opened.index)
    }

    /// Runs `write` on the addressed index, alone.
    pub fn with_index_mut<T>(
        &self,
        write: impl FnOnce(&mut AnyIndex) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut opened = self.slot.opened.write().map_err(|_| busy())?;
        write(&mut opened.index)
    }

    /// `text` run live through the index's model and SAE (one text at a time).
    pub fn analyze(&self, text: &str) -> Result<AnalyzedText, Failure> {
        let Some(live) = &self.slot.live else {
            return Err((
                503,
                "live analysis is not available in this server (start it where the index's model and SAE are)".into(),
            ));
        };
        live.lock()
            .map_err(|_| busy())?
            .analyze(text)
            .map_err(|e| (500, e))
    }
}
