//! Reading an index's logit effects (`query/logit_effects.bin`, see
//! [`saeidx_format::logits`]): the output tokens each feature's decoder direction
//! promotes and suppresses. The query layer only reads the file; it is computed where
//! the model's unembedding is loaded (`saeidx index run`, `saeidx query logits`).

use std::sync::Arc;

use saeidx_format::logits::{LOGIT_EFFECTS_PATH, LogitEffects};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{QueryError, index::QueryIndex};

/// One output token of a feature's logit effects.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LogitEffect {
    /// The token id.
    pub token: u32,
    /// The token as text.
    pub token_text: String,
    /// `(W_dec[f] ⊙ γ) · W_U[token]`: the feature's direct effect on the token's logit
    /// per unit of activation.
    pub value: f32,
}

/// A feature's logit effects: the tokens its decoder direction promotes most and
/// suppresses most, through the final norm's weight and the unembedding.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureLogits {
    /// Largest effects, largest first.
    pub top: Vec<LogitEffect>,
    /// Smallest (most negative) effects, smallest first.
    pub bottom: Vec<LogitEffect>,
    /// The unembedding matrix used and how the final norm entered.
    pub method: String,
}

impl QueryIndex {
    /// The index's logit effects, read and checked on first use (the file's SAE and
    /// model hashes must be the index's); `None` when the index has none (build them
    /// with `saeidx query logits`).
    pub fn logit_effects(&self) -> Result<Option<Arc<LogitEffects>>, QueryError> {
        if let Some(effects) = self.logits_cache.get() {
            return Ok(Some(effects.clone()));
        }
        let path = self.dir().join(LOGIT_EFFECTS_PATH);
        if !path.is_file() {
            return Ok(None);
        }
        let effects = LogitEffects::read(&path)?;
        let header = effects.header();
        let job = &self.manifest().job;
        let stale = |what| QueryError::StaleLogitEffects {
            path: path.clone(),
            what,
        };
        if header.sae_sha256 != job.sae.sha256 || header.d_sae as usize != self.d_sae() {
            return Err(stale("SAE"));
        }
        if header.model_weights_sha256 != job.model.weights_sha256 {
            return Err(stale("model"));
        }
        Ok(Some(
            self.logits_cache.get_or_init(|| Arc::new(effects)).clone(),
        ))
    }

    /// Feature `feature`'s logit effects, `None` when the index has none.
    pub fn feature_logits(&self, feature: u32) -> Result<Option<FeatureLogits>, QueryError> {
        self.feature_index(feature)?;
        let Some(effects) = self.logit_effects()? else {
            return Ok(None);
        };
        let header = effects.header();
        let convert = |list: Vec<(u32, &str, f32)>| {
            list.into_iter()
                .map(|(token, text, value)| LogitEffect {
                    token,
                    token_text: text.to_string(),
                    value,
                })
                .collect()
        };
        Ok(effects.feature(feature).map(|(top, bottom)| FeatureLogits {
            top: convert(top),
            bottom: convert(bottom),
            method: format!(
                "{}; unembedding {}; final norm: {}",
                header.direction, header.unembedding, header.final_norm
            ),
        }))
    }
}
