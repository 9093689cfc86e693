//! `config.json` of Llama-family checkpoints (Hugging Face and mlx-community shapes).

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Model families whose checkpoints share the Llama layout.
const LLAMA_FAMILY: &[&str] = &["llama", "mistral"];

/// The hyperparameters of a Llama-family model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama` (or another family with the same layout).
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads; defaults to the query heads (no grouping).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    /// RoPE scaling (e.g. Llama 3's `{"rope_type": "llama3", ...}`), kept as written.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether the output projection reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Context length the model was trained for.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Whether attention projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether MLP projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// MLX affine quantization of the weights, when quantized.
    #[serde(default)]
    pub quantization: Option<QuantizationConfig>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

/// Bits and group size of MLX affine quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    /// Elements per group sharing a scale and bias.
    pub group_size: usize,
    /// Bits per weight.
    pub bits: usize,
}

/// A per-module override in the `quantization` entry: other settings, or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModuleQuantization {
    /// This module uses these settings.
    Quantized(Quantization),
    /// `false`: this module is not quantized.
    NotQuantized(bool),
}

/// The `quantization` entry: defaults plus per-module overrides keyed by module path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    /// Default group size.
    pub group_size: usize,
    /// Default bits.
    pub bits: usize,
    /// Overrides, e.g. `"model.embed_tokens": {"group_size": 32, "bits": 8}`.
    #[serde(flatten)]
    pub modules: BTreeMap<String, serde_json::Value>,
}

impl QuantizationConfig {
    /// The quantization of the module at `path`, if the checkpoint quantizes it.
    ///
    /// Whether a module is quantized at all is decided by the presence of its `scales`
    /// tensor (as mlx-lm does); this gives the settings to read it with.
    pub fn for_module(&self, path: &str) -> Result<Option<Quantization>, String> {
        match self.modules.get(path) {
            None => Ok(Some(Quantization {
                group_size: self.group_size,
                bits: self.bits,
            })),
            Some(value) => match serde_json::from_value::<ModuleQuantization>(value.clone()) {
                Ok(ModuleQuantization::Quantized(q)) => Ok(Some(q)),
                Ok(ModuleQuantization::NotQuantized(false)) => Ok(None),
                _ => Err(format!(
                    "quantization entry for {path} is not understood: {value}"
                )),
            },
        }
    }
}

impl LlamaConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let invalid = |reason: String| ModelError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let config: Self = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if !LLAMA_FAMILY.contains(&config.model_type.as_str()) {
            return Err(ModelError::Unsupported(format!(
                "model_type {:?} (supported: {})",
                config.model_type,
                LLAMA_FAMILY.join(", ")
            )));
        }
        let heads = config.num_attention_heads;
        let kv_heads = config.num_key_value_heads();
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !config.head_dim().is_multiple_of(2)
        {
            return Err(invalid(format!(
                "attention shape is inconsistent: {heads} query heads, {kv_heads} key/value \
                 heads, head dim {}",
                config.head_dim()
            )));
        }
        if config.hidden_size == 0 || config.num_hidden_layers == 0 || config.vocab_size == 0 {
            return Err(invalid(
                "hidden_size, num_hidden_layers and vocab_size must be positive".into(),
            ));
        }
        Ok(config)
    }

    /// Key/value heads (equal to query heads without grouped-query attention).
    pub fn num_key_value_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlx_community_quantization_entry() {
        let q: QuantizationConfig = serde_json::from_str(
            r#"{"group_size": 64, "bits": 4, "model.embed_tokens": {"group_size": 32, "bits": 8},
                "lm_head": false}"#,
        )
        .unwrap();
        assert_eq!(
            q.for_module("model.layers.0.mlp.up_proj").unwrap(),
            Some(Quantization {
                group_size: 64,
                bits: 4
            })
        );
        assert_eq!(
            q.for_module("model.embed_tokens").unwrap(),
            Some(Quantization {
                group_size: 32,
                bits: 8
            })
        );
        assert_eq!(q.for_module("lm_head").unwrap(), None);
    }
}
