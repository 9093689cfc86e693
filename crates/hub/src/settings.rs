//! How to reach the Hub, read from the environment variables `huggingface_hub` uses.

use std::{path::PathBuf, time::Duration};

/// How to reach the Hub and where its cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// `$HF_HOME/hub`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE`: resolve from the cache only.
    pub offline: bool,
    /// `HF_TOKEN`, else the token file in `HF_HOME`.
    pub token: Option<String>,
    /// `HF_ENDPOINT` (default `https://huggingface.co`).
    pub endpoint: String,
    /// How long a repo listing may take before the Hub counts as unreachable
    /// (`HF_HUB_ETAG_TIMEOUT` seconds, default 10, as in `huggingface_hub`).
    pub timeout: Duration,
}

impl HubSettings {
    /// Reads `HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`, `HF_ENDPOINT` and
    /// `HF_HUB_ETAG_TIMEOUT`.
    pub fn from_env() -> Self {
        let cache = hf_hub::Cache::from_env();
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| is_true(&v));
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .or_else(|| cache.token());
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let timeout = std::env::var("HF_HUB_ETAG_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::from_secs(10), Duration::from_secs_f64);
        Self {
            cache_dir: cache.path().clone(),
            offline,
            token,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// The same settings, resolving from the cache only.
    pub fn cache_only(&self) -> Self {
        Self {
            offline: true,
            ..self.clone()
        }
    }
}

/// `huggingface_hub`'s truthy values.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}
