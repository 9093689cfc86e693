//! A scripted stand-in for an OpenAI-compatible chat endpoint on 127.0.0.1, for the
//! failures a real server rarely shows on demand: error statuses, rate limits, bodies
//! that are not JSON, answers that do not parse. A test gives it a function from the
//! request (its number from 0, its JSON body, its `Authorization` header) to a
//! [`Reply`]; [`sensible`] answers drafting and scoring prompts in their formats. The
//! happy path is tested against a real server (`mlx_lm.server`), not this one.

use std::{
    io::Cursor,
    sync::{Arc, Mutex},
};

use serde_json::Value;

/// What the fake endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A chat completion whose message is this text.
    Chat(String),
    /// An error status with a short body, and a `Retry-After` header if given.
    Status(u16, Option<u64>),
    /// HTTP 200 with exactly this body.
    Raw(String),
}

/// A request as the fake endpoint saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The request's JSON body.
    pub body: Value,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// The fake endpoint; it stops when dropped.
pub struct FakeLlm {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    url: String,
}

impl FakeLlm {
    /// Starts answering with `script` on a free loopback port.
    pub fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a loopback port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (server, seen) = (server.clone(), seen.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let request_seen = Seen {
                        body: serde_json::from_str(&body).unwrap_or(Value::Null),
                        authorization: request
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv("Authorization"))
                            .map(|h| h.value.to_string()),
                    };
                    let number = {
                        let mut seen = seen.lock().expect("seen lock");
                        seen.push(request_seen.clone());
                        seen.len() - 1
                    };
                    let _ = request.respond(response(script(number, &request_seen)));
                }
            })
        };
        Self {
            server,
            thread: Some(thread),
            seen,
            url: format!("http://127.0.0.1:{port}/v1"),
        }
    }

    /// The base URL (`http://127.0.0.1:PORT/v1`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn response(reply: Reply) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let json =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    match reply {
        Reply::Chat(text) => tiny_http::Response::from_string(chat_body(&text)).with_header(json),
        Reply::Raw(body) => tiny_http::Response::from_string(body).with_header(json),
        Reply::Status(status, retry_after) => {
            let mut response =
                tiny_http::Response::from_string(format!("{{\"error\": \"status {status}\"}}"))
                    .with_status_code(status)
                    .with_header(json);
            if let Some(seconds) = retry_after {
                response = response.with_header(
                    tiny_http::Header::from_bytes("Retry-After", seconds.to_string())
                        .expect("a valid header"),
                );
            }
            response
        }
    }
}

/// A chat-completion body whose message is `text`, with usage.
pub fn chat_body(text: &str) -> String {
    serde_json::json!({
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    })
    .to_string()
}

/// The last message of a request's chat.
pub fn last_message(seen: &Seen) -> String {
    seen.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// An answer in the expected format: a label for a drafting prompt, a list of 1s (one
/// per numbered text) for a scoring prompt.
pub fn sensible(seen: &Seen) -> Reply {
    let last = last_message(seen);
    if let Some(texts) = last.strip_prefix("Description:") {
        let n = texts
            .lines()
            .filter(|line| {
                line.split_once(". ")
                    .is_some_and(|(number, _)| number.parse::<u32>().is_ok())
            })
            .count();
        Reply::Chat(format!("[{}]", vec!["1"; n].join(",")))
    } else {
        Reply::Chat("[NAME]: test_feature\n[EXPLANATION]: Tokens of the test corpus.".into())
    }
}
