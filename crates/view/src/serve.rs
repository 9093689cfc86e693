//! `saeidx serve`: a local web UI and JSON API over one or more index folders.
//!
//! Each index is served under `/i/NAME/` (NAME: its folder name); the first index also
//! answers the same routes without the prefix. Pages: `/` (counts, the served indexes,
//! label search, a random feature, a text box), `/feature/F` (the feature page with a
//! label form), `/search?q=` (labels containing the words), `/random`, `/text?q=` (a
//! text coloured by its strongest features, when live analysis is available). JSON:
//! `GET /api/indexes`, `GET /api/info`, `GET /api/feature/F`,
//! `GET /api/top-texts?feature=F&k=K`, `GET /api/top-features?doc=D&k=K`,
//! `POST /api/labels/F` (a label object, as in `sae_features.json`). Form posts to
//! `/labels/F` save a label and return to the page. Labels are saved atomically with the
//! index. Errors are JSON (`{"error": ...}`) under `/api/` and pages elsewhere.
//!
//! Several worker threads answer at once; readers share each index, a label save holds
//! it exclusively for the write. Before each request the server checks whether the
//! index folder was replaced (the nightly job publishes by an atomic rename) and reopens
//! it; answers in flight keep the old (unlinked) files mapped, so nothing breaks
//! mid-answer.

use std::{
    fmt::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Mutex, RwLock},
};

use saeidx_query::{
    Aggregate, Exclusions, FeatureLabel, QueryError, QueryIndex, Rank, TokenCodes, rank_features,
};
use tiny_http::{Header, Method, Request, Response};

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

/// An index folder to serve.
pub struct ServedIndex {
    /// The folder.
    pub dir: PathBuf,
    /// Live analysis through the index's model and SAE, if available.
    pub live: Option<Box<dyn LiveTexts>>,
}

/// One served index: its name in URLs, folder, the opened index and live analysis.
struct Slot {
    name: String,
    dir: PathBuf,
    opened: RwLock<Opened>,
    live: Option<Mutex<Box<dyn LiveTexts>>>,
}

/// The opened index and what identifies the folder it came from.
struct Opened {
    index: QueryIndex,
    folder: (u64, i64),
}

fn folder_identity(dir: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000))
}

impl Slot {
    /// Reopens the index if its folder was replaced since it was opened, or if one of
    /// its files was truncated or rewritten in place under it.
    fn refresh(&self) {
        let identity = folder_identity(&self.dir).unwrap_or_default();
        let (current, intact) = self
            .opened
            .read()
            .map(|o| (o.folder, o.index.check_intact().is_ok()))
            .unwrap_or_default();
        if identity == current && intact {
            return;
        }
        match QueryIndex::open(&self.dir) {
            Ok(index) => {
                if let Ok(mut opened) = self.opened.write() {
                    *opened = Opened {
                        index,
                        folder: identity,
                    };
                }
            }
            Err(error) => eprintln!(
                "saeidx serve: keeping the open index of {}: {error}",
                self.dir.display()
            ),
        }
    }
}

/// URL-safe, distinct names for the served folders (their file names).
fn slot_names(dirs: &[&Path]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for dir in dirs {
        let base: String = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "index".into()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No index folder was given.
    #[error("no index to serve: give at least one index folder")]
    NoIndex,
    /// An index could not be opened.
    #[error(transparent)]
    Query(#[from] QueryError),
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

/// Serves `indexes` on `server` with `threads` worker threads until the process ends.
pub fn serve(
    server: tiny_http::Server,
    indexes: Vec<ServedIndex>,
    threads: usize,
) -> Result<(), ServeError> {
    if indexes.is_empty() {
        return Err(ServeError::NoIndex);
    }
    let names = slot_names(&indexes.iter().map(|i| i.dir.as_path()).collect::<Vec<_>>());
    let mut slots = Vec::with_capacity(indexes.len());
    for (served, name) in indexes.into_iter().zip(names) {
        let index = QueryIndex::open(&served.dir)?;
        slots.push(Slot {
            name,
            opened: RwLock::new(Opened {
                index,
                folder: folder_identity(&served.dir).unwrap_or_default(),
            }),
            dir: served.dir,
            live: served.live.map(Mutex::new),
        });
    }
    let (server, slots) = (&server, slots.as_slice());
    std::thread::scope(|scope| {
        for _ in 1..threads.max(1) {
            scope.spawn(move || {
                for request in server.incoming_requests() {
                    handle(slots, request);
                }
            });
        }
        for request in server.incoming_requests() {
            handle(slots, request);
        }
    });
    Ok(())
}

/// Answers one request.
fn handle(slots: &[Slot], mut request: Request) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = params(query);
    // `/i/NAME/...` picks an index; other paths go to the first.
    let (slot, base, rest) = match path.strip_prefix("/i/") {
        Some(tail) => {
            let (name, rest) = tail.split_once('/').unwrap_or((tail, ""));
            let rest = if rest.is_empty() {
                "/"
            } else {
                &path[path.len() - rest.len() - 1..]
            };
            (
                slots.iter().find(|s| s.name == name),
                format!("/i/{name}"),
                rest,
            )
        }
        None => (slots.first(), String::new(), path),
    };
    let api = rest.starts_with("/api/");
    let reply = match slot {
        Some(slot) => {
            slot.refresh();
            let context = Context {
                slots,
                slot,
                base: &base,
            };
            context.route(request.method(), rest, &query, &body)
        }
        None => Err((404, format!("no index is served under {base}/"))),
    }
    .unwrap_or_else(|(status, message)| error_reply(api, status, &message));
    let header = Header::from_bytes("Content-Type", reply.content_type).expect("a valid header");
    let mut response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    if let Some(location) = reply.location
        && let Ok(header) = Header::from_bytes("Location", location)
    {
        response = response.with_header(header);
    }
    let _ = request.respond(response);
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
            (Method::Post, p) if p.starts_with("/labels/") || p.starts_with("/api/labels/") => {
                self.save_label(p, body)
            }
            // Browsers send a text area's line breaks as CRLF; the person typed newlines.
            (Method::Get, "/text") => {
                self.text(&param(query, "q").unwrap_or("").replace("\r\n", "\n"))
            }
            (Method::Get, _) => {
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
