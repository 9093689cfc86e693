//! An OpenAI-compatible chat endpoint (`POST …/chat/completions`): OpenAI, vLLM,
//! llama.cpp's server, Ollama, `mlx_lm.server`.
//!
//! Requests are blocking ([`ureq`] 2, already in the build through hf-hub; the run's
//! worker threads give the concurrency). A request that fails in a way that may pass
//! (no connection, a timeout, HTTP 408, 429 or 5xx, a body that is not a chat
//! completion) is retried with exponential backoff and jitter, waiting at least what a
//! `Retry-After` header asks; other refusals (400, 401, 403, 404: a wrong model name or
//! key) are not. The API key is read from an environment variable, sent as a bearer
//! token, and never logged, printed or written (its `Debug` shows `***`).

use std::{fmt, time::Duration};

use rand::RngExt;
use serde::{Deserialize, Serialize};

/// Where the LLM is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmSettings {
    /// The endpoint: a base URL such as `http://127.0.0.1:8080/v1` or
    /// `https://api.openai.com/v1` (`/chat/completions` is appended; a URL with no path
    /// gets `/v1/chat/completions`), or the full `…/chat/completions` URL.
    pub url: String,
    /// The model name the endpoint knows (recorded with every label it drafts).
    pub model: String,
    /// The environment variable holding the API key (unset or empty: no key is sent).
    pub api_key_env: String,
    /// Sampling temperature (0: the most likely answer, as delphi scores).
    pub temperature: f64,
    /// The longest one request may take, connection included.
    pub timeout: Duration,
    /// Retries of a request that failed in a way that may pass.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub first_backoff: Duration,
    /// The longest wait between retries (a `Retry-After` may ask for more, up to 10 min).
    pub max_backoff: Duration,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080/v1".into(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            temperature: 0.0,
            timeout: Duration::from_secs(120),
            max_retries: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl LlmSettings {
    /// The full chat-completions URL.
    pub fn endpoint(&self) -> String {
        let url = self.url.trim_end_matches('/');
        if url.ends_with("/chat/completions") {
            return url.to_string();
        }
        let has_path = url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if has_path {
            format!("{url}/chat/completions")
        } else {
            format!("{url}/v1/chat/completions")
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat-completion request, exactly as sent (its canonical JSON is the cache key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: f64,
    /// The most tokens to generate.
    pub max_tokens: u32,
}

/// The endpoint's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatAnswer {
    /// The assistant's text.
    pub content: String,
    /// Why generation stopped (`stop`, `length`, ...), if the endpoint says.
    pub finish_reason: Option<String>,
    /// Prompt tokens (the endpoint's `usage`, or an estimate).
    pub prompt_tokens: u64,
    /// Generated tokens (likewise).
    pub completion_tokens: u64,
    /// Whether the token counts are the endpoint's own (else ~4 characters a token).
    pub usage_reported: bool,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// No answer: connection refused, DNS, a timeout.
    #[error(
        "could not reach the LLM endpoint {url} ({reason}): is the server running, and is --llm its address?"
    )]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An HTTP error status.
    #[error("the LLM endpoint {url} answered HTTP {status}: {body}{hint}")]
    Status {
        /// The endpoint.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
        /// What to check.
        hint: &'static str,
        /// Seconds a `Retry-After` header asked to wait.
        retry_after: Option<u64>,
    },
    /// A body that is not a chat completion.
    #[error(
        "the LLM endpoint {url} answered something that is not a chat completion ({reason}): {head}"
    )]
    Malformed {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        reason: String,
        /// The start of the body.
        head: String,
    },
}

impl LlmError {
    /// Whether retrying may help.
    pub fn retriable(&self) -> bool {
        match self {
            LlmError::Unreachable { .. } | LlmError::Malformed { .. } => true,
            LlmError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
        }
    }
}

/// The API key: kept out of every `Debug`, log line and file.
#[derive(Clone, Default)]
struct Secret(Option<String>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "***" } else { "none" })
    }
}

/// A client of one endpoint.
#[derive(Debug, Clone)]
pub struct LlmClient {
    settings: LlmSettings,
    endpoint: String,
    key: Secret,
    agent: ureq::Agent,
}

/// A request's answer and how many retries it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The answer.
    pub answer: ChatAnswer,
    /// Retries before it came.
    pub retries: u32,
}

/// A request that failed for good, with the retries it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    /// The last error.
    pub error: LlmError,
    /// Retries made.
    pub retries: u32,
}

impl LlmClient {
    /// A client for `settings`, its key read from the environment now.
    pub fn new(settings: LlmSettings) -> Self {
        let key = std::env::var(&settings.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty());
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(settings.timeout.min(Duration::from_secs(10)))
            .timeout(settings.timeout)
            .build();
        Self {
            endpoint: settings.endpoint(),
            settings,
            key: Secret(key),
            agent,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// Sends `request`, retrying failures that may pass.
    pub fn complete(&self, request: &ChatRequest) -> Result<Completed, Failed> {
        let body = serde_json::to_string(request).expect("requests serialize");
        let mut retries = 0;
        loop {
            match self.send(&body) {
                Ok(answer) => return Ok(Completed { answer, retries }),
                Err(error) if error.retriable() && retries < self.settings.max_retries => {
                    let wait = self.backoff(retries, &error);
                    tracing::warn!(
                        "{error}; retry {} of {} in {:.1} s",
                        retries + 1,
                        self.settings.max_retries,
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    retries += 1;
                }
                Err(error) => return Err(Failed { error, retries }),
            }
        }
    }

    /// The wait before retry `retry` (0-based): exponential with ±25 % jitter, at least
    /// what a `Retry-After` asked (up to 10 minutes).
    fn backoff(&self, retry: u32, error: &LlmError) -> Duration {
        let base = self
            .settings
            .first_backoff
            .saturating_mul(1u32 << retry.min(20))
            .min(self.settings.max_backoff);
        let jitter = rand::rng().random_range(0.75..1.25);
        let wait = base.mul_f64(jitter);
        match error {
            LlmError::Status {
                retry_after: Some(seconds),
                ..
            } => wait.max(Duration::from_secs((*seconds).min(600))),
            _ => wait,
        }
    }

    /// One attempt.
    fn send(&self, body: &str) -> Result<ChatAnswer, LlmError> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.key.0 {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        match request.send_string(body) {
            Ok(response) => {
                let text = response.into_string().map_err(|e| LlmError::Unreachable {
                    url: self.endpoint.clone(),
                    reason: format!("the answer was cut off: {e}"),
                })?;
                parse_answer(&self.endpoint, &text, body)
            }
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse().ok());
                let text = response.into_string().unwrap_or_default();
                Err(LlmError::Status {
                    url: self.endpoint.clone(),
                    status,
                    body: head(&text),
                    hint: status_hint(status),
                    retry_after,
                })
            }
            Err(ureq::Error::Transport(transport)) => Err(LlmError::Unreachable {
                url: self.endpoint.clone(),
                reason: transport.to_string(),
            }),
        }
    }
}

/// What to check for an HTTP error status.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the API key in the variable named by --api-key-env)",
        404 => " (check --llm, which should end in /v1, and --llm-model)",
        429 => " (rate limited; lower --concurrency)",
        _ => "",
    }
}

/// The first 300 characters of a body, on one line.
fn head(text: &str) -> String {
    let one_line: String = text.chars().take(300).collect();
    one_line.replace(['\n', '\r'], " ")
}

/// Reads a chat-completion body (`choices[0].message.content`, `usage`).
fn parse_answer(url: &str, text: &str, request: &str) -> Result<ChatAnswer, LlmError> {
    let malformed = |reason: &str| LlmError::Malformed {
        url: url.to_string(),
        reason: reason.to_string(),
        head: head(text),
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| malformed(&format!("not JSON: {e}")))?;
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| malformed("no choices"))?;
    let content = choice
        .pointer("/message/content")
        .and_then(|c| c.as_str())
        .ok_or_else(|| malformed("no message content"))?
        .to_string();
    let usage = value.get("usage");
    let count = |key: &str| usage.and_then(|u| u.get(key)).and_then(|n| n.as_u64());
    let (prompt_tokens, completion_tokens, usage_reported) =
        match (count("prompt_tokens"), count("completion_tokens")) {
            (Some(p), Some(c)) => (p, c, true),
            _ => (estimate_tokens(request), estimate_tokens(&content), false),
        };
    Ok(ChatAnswer {
        finish_reason: choice
            .get("finish_reason")
            .and_then(|r| r.as_str())
            .map(str::to_string),
        content,
        prompt_tokens,
        completion_tokens,
        usage_reported,
    })
}

/// Tokens in `text` by OpenAI's rule of thumb (about 4 characters a token), for
/// endpoints that report no usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_base_urls_and_full_ones() {
        let at = |url: &str| {
            LlmSettings {
                url: url.into(),
                ..LlmSettings::default()
            }
            .endpoint()
        };
        assert_eq!(
            at("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(
            at("http://127.0.0.1:8080/v1/"),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert_eq!(
            at("https://api.openai.com/v1"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            at("http://h/x/chat/completions"),
            "http://h/x/chat/completions"
        );
    }

    #[test]
    fn answers_are_read_with_or_without_usage() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"[1,0]"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        let answer = parse_answer("u", body, "{}").unwrap();
        assert_eq!(answer.content, "[1,0]");
        assert_eq!((answer.prompt_tokens, answer.completion_tokens), (12, 3));
        assert!(answer.usage_reported && answer.finish_reason.as_deref() == Some("stop"));
        let body = r#"{"choices":[{"message":{"content":"abcdefgh"}}]}"#;
        let answer = parse_answer("u", body, "0123456789").unwrap();
        assert_eq!((answer.prompt_tokens, answer.completion_tokens), (3, 2));
        assert!(!answer.usage_reported);
        for bad in [
            "<html>",
            r#"{"choices":[]}"#,
            r#"{"choices":[{"message":{}}]}"#,
        ] {
            let error = parse_answer("u", bad, "").unwrap_err();
            assert!(matches!(error, LlmError::Malformed { .. }) && error.retriable());
        }
    }

    #[test]
    fn the_key_never_shows_and_backoff_grows_to_its_cap() {
        let client = LlmClient {
            key: Secret(Some("sk-secret".into())),
            ..LlmClient::new(LlmSettings::default())
        };
        assert!(!format!("{client:?}").contains("sk-secret"));
        let error = LlmError::Unreachable {
            url: "u".into(),
            reason: "refused".into(),
        };
        let waits: Vec<f64> = (0..8)
            .map(|r| client.backoff(r, &error).as_secs_f64())
            .collect();
        assert!(waits[0] >= 0.75 && waits[0] <= 1.25, "{waits:?}");
        assert!(waits[3] >= 6.0 && waits[3] <= 10.0, "{waits:?}");
        assert!(waits[7] <= 75.0, "{waits:?}");
        let limited = LlmError::Status {
            url: "u".into(),
            status: 429,
            body: String::new(),
            hint: "",
            retry_after: Some(90),
        };
        assert!(client.backoff(0, &limited) >= Duration::from_secs(90));
        let refused = LlmError::Status {
            url: "u".into(),
            status: 401,
            body: String::new(),
            hint: "",
            retry_after: None,
        };
        assert!(!refused.retriable());
    }
}
