//! A content-addressed cache of LLM requests and their answers, in the index's work
//! folder (`INDEX/autointerp/cache/`):
//!
//! ```text
//! cache/3f/3f9c…e1.json   {"key", "request", "answer", "answered_at"}
//! ```
//!
//! The key is the SHA-256 of the request's canonical JSON (model, messages, temperature,
//! token limit; never the endpoint's address or the API key), so the same question is
//! asked once, whichever server or run asks it: a rerun, or a run resumed after `kill
//! -9`, sends only what has no answer yet. Each answer is written atomically the moment
//! it arrives (temporary name, fsync, rename), so an interrupted run loses at most the
//! requests in flight. An entry that cannot be read is treated as missing and
//! rewritten.

use std::path::{Path, PathBuf};

use saeidx_format::{atomic, checksum::sha256_hex};
use serde::{Deserialize, Serialize};

use crate::llm::{ChatAnswer, ChatRequest};

/// The cache's folder inside an index's work folder.
pub const CACHE_DIR: &str = "cache";

/// One cached exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    key: String,
    request: ChatRequest,
    answer: ChatAnswer,
    answered_at: String,
}

/// The cache in one folder.
#[derive(Debug, Clone)]
pub struct AnswerCache {
    dir: PathBuf,
}

impl AnswerCache {
    /// The cache in `dir` (created on the first answer).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of `request`: the SHA-256 of its canonical JSON.
    pub fn key(request: &ChatRequest) -> String {
        sha256_hex(&serde_json::to_vec(request).expect("requests serialize"))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(key.get(..2).unwrap_or("00"))
            .join(format!("{key}.json"))
    }

    /// The cached answer to the request with `key`, if any.
    pub fn get(&self, key: &str) -> Option<ChatAnswer> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.key == key => Some(entry.answer),
            _ => {
                tracing::warn!(
                    "ignoring the unreadable cache entry {} (it will be asked again)",
                    path.display()
                );
                None
            }
        }
    }

    /// Stores `answer` to `request` (key `key`) atomically.
    pub fn put(
        &self,
        key: &str,
        request: &ChatRequest,
        answer: &ChatAnswer,
    ) -> Result<(), atomic::AtomicWriteError> {
        let entry = Entry {
            key: key.to_string(),
            request: request.clone(),
            answer: answer.clone(),
            answered_at: saeidx_query::registry::now_utc(),
        };
        let bytes = serde_json::to_vec(&entry).expect("cache entries serialize");
        atomic::write_file(&self.path(key), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ChatMessage;

    #[test]
    fn answers_are_found_by_the_requests_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AnswerCache::new(dir.path());
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new("user", "hello")],
            temperature: 0.0,
            max_tokens: 8,
        };
        let key = AnswerCache::key(&request);
        assert_eq!(key.len(), 64);
        assert!(cache.get(&key).is_none());
        let answer = ChatAnswer {
            content: "hi".into(),
            finish_reason: Some("stop".into()),
            prompt_tokens: 3,
            completion_tokens: 1,
            usage_reported: true,
        };
        cache.put(&key, &request, &answer).unwrap();
        assert_eq!(cache.get(&key), Some(answer));
        let other = ChatRequest {
            max_tokens: 9,
            ..request
        };
        assert_ne!(AnswerCache::key(&other), key);
        // A damaged entry is a miss, not an error.
        std::fs::write(cache.path(&key), b"{\"key\": 1").unwrap();
        assert!(cache.get(&key).is_none());
    }
}
