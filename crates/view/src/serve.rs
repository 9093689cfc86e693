//! `saeidx serve`: a local web UI and JSON API over an index folder.
//!
//! Pages: `/` (counts, label search, a random feature, a text box), `/feature/F` (the
//! feature page with a label form), `/search?q=` (labels containing the words),
//! `/random`, `/text?q=` (a text coloured by its strongest features, when live analysis
//! is available). JSON: `GET /api/info`, `GET /api/feature/F`,
//! `GET /api/top-texts?feature=F&k=K`, `GET /api/top-features?doc=D&k=K`,
//! `POST /api/labels/F` (a label object, as in `sae_features.json`). Form posts to
//! `/labels/F` save a label and return to the page. Labels are saved atomically with the
//! index.
//!
//! Requests are answered one at a time. Before each, the server checks whether the index
//! folder was replaced (the nightly job publishes by an atomic rename) and reopens it;
//! pages already being read keep their (unlinked) files mapped, so nothing breaks
//! mid-answer.

use std::{os::unix::fs::MetadataExt, path::Path};

use saeidx_query::{
    Aggregate, Exclusions, FeatureLabel, QueryError, QueryIndex, Rank, TokenCodes, rank_features,
};
use tiny_http::{Header, Method, Request, Response};

use crate::{TextToken, escape, page, render_feature_linked, render_text};

/// Live analysis of new texts (the model is not this crate's business): each token's
/// piece of the text and its codes, strongest first.
pub trait LiveTexts {
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

/// The opened index and what identifies the folder it came from.
struct Opened {
    index: QueryIndex,
    folder: (u64, i64),
}

fn folder_identity(dir: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(dir).ok()?;
    Some((meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000))
}

/// A reply: status, content type, body.
type Reply = (u16, &'static str, Vec<u8>);

fn html(status: u16, body: String) -> Reply {
    (status, "text/html; charset=utf-8", body.into_bytes())
}

fn json(status: u16, value: serde_json::Value) -> Reply {
    (status, "application/json", value.to_string().into_bytes())
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

/// Serves the index in `dir` on `server` until the process ends.
pub fn serve(
    server: tiny_http::Server,
    dir: &Path,
    mut live: Option<Box<dyn LiveTexts>>,
) -> Result<(), QueryError> {
    let mut opened = Opened {
        index: QueryIndex::open(dir)?,
        folder: folder_identity(dir).unwrap_or_default(),
    };
    for mut request in server.incoming_requests() {
        // The nightly job may have published a new index under the same name.
        let identity = folder_identity(dir).unwrap_or_default();
        if identity != opened.folder {
            match QueryIndex::open(dir) {
                Ok(index) => {
                    opened = Opened {
                        index,
                        folder: identity,
                    }
                }
                Err(error) => eprintln!("saeidx serve: keeping the open index: {error}"),
            }
        }
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let (status, content_type, bytes) = answer(
            &mut opened.index,
            dir,
            &request,
            &body,
            live.as_mut().map(|l| -> &mut dyn LiveTexts { l.as_mut() }),
        );
        let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
        let mut response = Response::from_data(bytes)
            .with_status_code(status)
            .with_header(header);
        if status == 303 {
            let location = response_location(&request);
            response = response
                .with_header(Header::from_bytes("Location", location).expect("a valid header"));
        }
        let _ = request.respond(response);
    }
    Ok(())
}

/// Where a 303 answer sends the browser.
fn response_location(request: &Request) -> String {
    let path = request.url().split('?').next().unwrap_or("/");
    match path.strip_prefix("/labels/") {
        Some(feature) => format!("/feature/{feature}"),
        None => "/".into(),
    }
}

fn answer(
    index: &mut QueryIndex,
    dir: &Path,
    request: &Request,
    body: &str,
    live: Option<&mut dyn LiveTexts>,
) -> Reply {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = params(query);
    let api = path.starts_with("/api/");
    let result = route(index, dir, request.method(), path, &query, body, live);
    result.unwrap_or_else(|(status, message)| error_reply(api, status, &message))
}

type Failure = (u16, String);

fn failed(error: QueryError) -> Failure {
    let status = match error {
        QueryError::FeatureOutOfRange { .. }
        | QueryError::UnknownDocument { .. }
        | QueryError::TokenRange { .. } => 404,
        QueryError::Registry { .. } => 400,
        _ => 500,
    };
    (status, error.to_string())
}

fn number(text: Option<&str>, what: &str) -> Result<u32, Failure> {
    text.and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| (400, format!("{what} must be a number")))
}

fn route(
    index: &mut QueryIndex,
    dir: &Path,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &str,
    live: Option<&mut dyn LiveTexts>,
) -> Result<Reply, Failure> {
    let exclusions = Exclusions::default();
    let feature_link = |f: u32| format!("/feature/{f}");
    match (method, path) {
        (Method::Get, "/") => Ok(html(200, home(index))),
        (Method::Get, "/random") => {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let pick = index.sample(1, seed).map_err(failed)?;
            let feature = pick.first().copied().unwrap_or(0);
            Ok(html(
                200,
                format!(
                    "<!DOCTYPE html><meta http-equiv=\"refresh\" content=\"0; url=/feature/{feature}\"><a href=\"/feature/{feature}\">feature {feature}</a>"
                ),
            ))
        }
        (Method::Get, "/search") => {
            let q = param(query, "q").unwrap_or("").to_lowercase();
            let mut body = format!("<h1>Labels matching “{}”</h1><ul>", escape(&q));
            for (feature, label) in index.registry().iter() {
                let text = format!(
                    "{} {} {}",
                    label.name.as_deref().unwrap_or(""),
                    label.description.as_deref().unwrap_or(""),
                    label.notes.as_deref().unwrap_or("")
                );
                if q.split_whitespace()
                    .all(|word| text.to_lowercase().contains(word))
                {
                    body.push_str(&format!(
                        "<li><a href=\"/feature/{feature}\">feature {feature}</a> {}</li>",
                        escape(label.name.as_deref().unwrap_or(""))
                    ));
                }
            }
            body.push_str("</ul><p><a href=\"/\">home</a></p>");
            Ok(html(200, page("saeidx: search", &body)))
        }
        (Method::Get, "/text") => {
            let text = param(query, "q").unwrap_or("");
            let Some(live) = live else {
                return Err((503, "live analysis is not available in this server (start it where the index's model and SAE are)".into()));
            };
            let tokens = live.analyze(text).map_err(|e| (500, e))?;
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
                    values: features
                        .iter()
                        .map(|f| {
                            t.features
                                .iter()
                                .position(|g| g == f)
                                .map_or(0.0, |i| t.values[i])
                        })
                        .collect(),
                    skipped: t.skipped,
                })
                .collect();
            Ok(html(
                200,
                render_text(index.registry(), text, &features, &pieces),
            ))
        }
        (Method::Get, "/api/info") => {
            let counts = index.query_manifest().counts;
            Ok(json(
                200,
                serde_json::json!({
                    "index": dir, "counts": counts, "hook": index.manifest().job.hook,
                    "model": index.manifest().job.model.source, "sae": index.manifest().job.sae.source,
                    "labels": index.registry().len(),
                }),
            ))
        }
        (Method::Get, "/api/top-texts") => {
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
        (Method::Get, "/api/top-features") => {
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
        (Method::Get, p) if p.starts_with("/api/feature/") => {
            let feature = number(p.strip_prefix("/api/feature/"), "feature")?;
            let report = index
                .feature(feature, 5, 4, 10, 8, exclusions)
                .map_err(failed)?;
            Ok(json(200, serde_json::to_value(report).unwrap_or_default()))
        }
        (Method::Get, p) if p.starts_with("/feature/") => {
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
                "<h2>Label</h2><form method=\"post\" action=\"/labels/{feature}\">{}{}{}{}<button>save</button></form><p><a href=\"/\">home</a> · <a href=\"/random\">random feature</a></p>",
                field("name", &label.name),
                field("description", &label.description),
                field("confidence", &label.confidence),
                field("notes", &label.notes)
            );
            render_feature_linked(index, &report, 10, &feature_link, &form)
                .map(|page| html(200, page))
                .map_err(failed)
        }
        (Method::Post, p) if p.starts_with("/labels/") || p.starts_with("/api/labels/") => {
            let api = p.starts_with("/api/");
            let feature = number(p.rsplit('/').next(), "feature")?;
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
                Ok((303, "text/html; charset=utf-8", Vec::new()))
            }
        }
        _ => Err((404, format!("no page at {path}"))),
    }
}

fn home(index: &QueryIndex) -> String {
    let counts = index.query_manifest().counts;
    let manifest = index.manifest();
    let mut body = format!(
        "<h1>saeidx</h1><p class=\"meta\">{} · {} · SAE {} ({} features) · {} documents, {} tokens, {} nonzeros</p>\
<form action=\"/search\"><input name=\"q\" placeholder=\"search labels\"> <button>search</button></form>\
<p><a href=\"/random\">a random feature</a></p>\
<form action=\"/text\"><textarea name=\"q\" rows=\"3\" cols=\"70\" placeholder=\"a text to analyse\"></textarea><br><button>analyse</button></form>\
<h2>Labelled features</h2><ul>",
        escape(&manifest.job.model.source),
        escape(&manifest.job.hook),
        escape(&manifest.job.sae.source),
        manifest.job.sae.d_sae,
        counts.documents,
        counts.tokens,
        counts.nonzeros
    );
    for (feature, label) in index.registry().iter() {
        body.push_str(&format!(
            "<li><a href=\"/feature/{feature}\">feature {feature}</a> {}</li>",
            escape(label.name.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</ul>");
    page("saeidx", &body)
}
