//! Every request of a run goes through one gateway: the cache first, then the endpoint
//! (its answer cached at once), with the run's counts of requests and tokens.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{
    cache::AnswerCache,
    llm::{ChatAnswer, ChatRequest, LlmClient, LlmError},
};

/// What a run asked, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestStats {
    /// Requests the run needed.
    pub asked: u64,
    /// Answered by the endpoint.
    pub sent: u64,
    /// Answered from the cache (nothing sent).
    pub cached: u64,
    /// Failed after their retries.
    pub failed: u64,
    /// Retries made.
    pub retries: u64,
    /// Prompt tokens sent.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Prompt tokens the cache saved.
    pub cached_prompt_tokens: u64,
    /// Generated tokens the cache saved.
    pub cached_completion_tokens: u64,
    /// Whether some counts are estimates (an endpoint that reports no usage).
    pub estimated_tokens: bool,
}

impl RequestStats {
    /// The share of requests the cache answered (1 when nothing was asked).
    pub fn cache_share(&self) -> f64 {
        if self.asked == 0 {
            1.0
        } else {
            self.cached as f64 / self.asked as f64
        }
    }
}

/// A request's answer and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The answer.
    pub answer: ChatAnswer,
    /// The request's cache key (SHA-256).
    pub key: String,
    /// Whether the cache answered.
    pub cached: bool,
}

/// A request that failed, and whether any other would fail the same way (a refusal that
/// retrying cannot fix, such as a wrong model name or key).
#[derive(Debug, Clone, PartialEq)]
pub struct AskFailed {
    /// What went wrong.
    pub error: LlmError,
    /// Whether the whole run should stop.
    pub fatal: bool,
}

/// The cache and the endpoint, with counts.
#[derive(Debug)]
pub struct Gateway {
    client: LlmClient,
    cache: AnswerCache,
    stats: Mutex<RequestStats>,
}

impl Gateway {
    /// A gateway to `client` through `cache`.
    pub fn new(client: LlmClient, cache: AnswerCache) -> Self {
        Self {
            client,
            cache,
            stats: Mutex::new(RequestStats::default()),
        }
    }

    /// The model name requests carry.
    pub fn model(&self) -> &str {
        &self.client.settings().model
    }

    /// The counts so far.
    pub fn stats(&self) -> RequestStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn count(&self, update: impl FnOnce(&mut RequestStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            update(&mut stats);
        }
    }

    /// The answer to `request`: cached, or sent and cached.
    pub fn ask(&self, request: &ChatRequest) -> Result<Asked, AskFailed> {
        let key = AnswerCache::key(request);
        self.count(|s| s.asked += 1);
        if let Some(answer) = self.cache.get(&key) {
            self.count(|s| {
                s.cached += 1;
                s.cached_prompt_tokens += answer.prompt_tokens;
                s.cached_completion_tokens += answer.completion_tokens;
            });
            return Ok(Asked {
                answer,
                key,
                cached: true,
            });
        }
        match self.client.complete(request) {
            Ok(done) => {
                let answer = done.answer;
                self.count(|s| {
                    s.sent += 1;
                    s.retries += u64::from(done.retries);
                    s.prompt_tokens += answer.prompt_tokens;
                    s.completion_tokens += answer.completion_tokens;
                    s.estimated_tokens |= !answer.usage_reported;
                });
                if let Err(error) = self.cache.put(&key, request, &answer) {
                    tracing::warn!("could not cache an answer ({error}); it will be asked again");
                }
                Ok(Asked {
                    answer,
                    key,
                    cached: false,
                })
            }
            Err(failed) => {
                self.count(|s| {
                    s.failed += 1;
                    s.retries += u64::from(failed.retries);
                });
                let fatal = !failed.error.retriable();
                Err(AskFailed {
                    error: failed.error,
                    fatal,
                })
            }
        }
    }
}
