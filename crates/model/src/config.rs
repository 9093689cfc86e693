//! `config.json` of the supported families (Hugging Face and mlx-community shapes).
//!
//! The `model_type` picks the family ([`crate::families`]), which reads the rest into an
//! [`Architecture`]; MLX's `quantization` entry is read here for every family.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ModelError,
    architecture::Architecture,
    families::{self, Family},
    hook::{HookError, HookPoint},
};

/// A model's `config.json`: its family, architecture and quantization.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `model_type` as written (`llama`, `gpt2`, `gemma2`, ...).
    pub model_type: String,
    /// The family that reads it.
    pub family: &'static dyn Family,
    /// The architecture it describes.
    pub architecture: Architecture,
    /// MLX affine quantization of the weights, when quantized.
    pub quantization: Option<QuantizationConfig>,
    /// The file as written (for display).
    pub raw: Value,
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
    pub modules: BTreeMap<String, Value>,
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

impl ModelConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let raw: Value = serde_json::from_str(&text).map_err(|e| ModelError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_value(raw).map_err(|error| match error {
            ModelError::Invalid { reason, .. } => ModelError::Invalid {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// Checks a parsed `config.json` (errors name no file).
    pub fn from_value(raw: Value) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::Invalid {
            path: "config.json".into(),
            reason,
        };
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no model_type".into()))?
            .to_string();
        let family = families::for_model_type(&model_type).map_err(ModelError::Unsupported)?;
        let architecture = family.architecture(&raw).map_err(invalid)?;
        if architecture.hidden_size == 0 || architecture.layers == 0 || architecture.vocab_size == 0
        {
            return Err(invalid(
                "the hidden size, the number of layers and the vocabulary must be positive".into(),
            ));
        }
        let quantization = quantization(&raw)?;
        Ok(Self {
            model_type,
            family,
            architecture,
            quantization,
            raw,
        })
    }

    /// Width of the residual stream.
    pub fn hidden_size(&self) -> usize {
        self.architecture.hidden_size
    }

    /// Number of blocks.
    pub fn num_layers(&self) -> usize {
        self.architecture.layers
    }

    /// Width of the activations at `hook` (see [`Architecture::hook_width`]).
    pub fn hook_width(&self, hook: &HookPoint) -> usize {
        self.architecture.hook_width(hook.kind)
    }

    /// Checks that `hook` exists in this model.
    pub fn check_hook(&self, hook: &HookPoint) -> Result<(), HookError> {
        self.architecture.check_hook(hook)
    }
}

/// MLX's `quantization` entry (mlx-lm also writes it as `quantization_config`); other
/// quantization schemes (bitsandbytes, GPTQ, AWQ, ...) are refused.
fn quantization(raw: &Value) -> Result<Option<QuantizationConfig>, ModelError> {
    let entry = match (raw.get("quantization"), raw.get("quantization_config")) {
        (Some(entry), _) => entry,
        (None, Some(entry)) if entry.get("quant_method").is_none() => entry,
        (None, Some(entry)) => {
            return Err(ModelError::Unsupported(format!(
                "weights quantized with {} (saeidx reads unquantized weights and MLX's affine \
                 quantization: use the original checkpoint or an mlx-community conversion)",
                entry["quant_method"]
            )));
        }
        (None, None) => return Ok(None),
    };
    let mut config: QuantizationConfig =
        serde_json::from_value(entry.clone()).map_err(|e| ModelError::Invalid {
            path: "config.json".into(),
            reason: format!("quantization entry: {e}"),
        })?;
    if let Some(mode) = config.modules.remove("mode")
        && mode != "affine"
    {
        return Err(ModelError::Unsupported(format!(
            "MLX quantization mode {mode} (saeidx reads the affine mode)"
        )));
    }
    Ok(Some(config))
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
