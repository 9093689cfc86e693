//! The model's unembedding alone: the output projection (`lm_head`, or the token
//! embedding when the two are tied) and the final norm's weight, for computing what a
//! direction in the residual stream does to the output logits without loading (or
//! running) the blocks.
//!
//! Only these tensors are materialized: MLX reads safetensors lazily, and every other
//! tensor is dropped unread. A quantized matrix is dequantized to f32 (scales and biases
//! in f32 first, as the forward pass does).
//!
//! **The final norm.** A direction `d` added to the last residual stream reaches the
//! logits through the final norm and `W_U`. The norm's normalization divides by a
//! statistic of the whole input (its RMS, or its standard deviation), which depends on
//! the token, not on the feature; its weight `γ` does not. So, as SAEDashboard and
//! Neuronpedia do (TransformerLens folds `γ` into `W_U`), the effect is computed as
//! `(d ⊙ γ) · W_Uᵀ`: RMSNorm multiplies by `γ`, Gemma's RMSNorm by `1 + γ`, LayerNorm by
//! `γ` (its bias adds the same vector to every token's logits whatever the feature, so it
//! is left out). Gemma 2's final logit soft-capping is not applied either: it is a
//! monotone squashing of the whole logit, not part of a direction's effect.

use std::collections::HashMap;

use mlx_rs::{Array, Dtype, ops};

use crate::{
    ModelError, architecture::NormKind, checkpoint::placed_tensors, config::ModelConfig,
    files::ModelFiles,
};

/// A model's unembedding `W_U` and final norm weight, in f32.
pub struct Unembedding {
    /// `W_U` as stored: `[vocab, hidden]` (each row a token's output direction).
    pub weight: Array,
    /// What each residual dimension is multiplied by before `W_U`: the final norm's
    /// effective weight (`γ`, or `1 + γ` for Gemma), `[hidden]`.
    pub norm_scale: Array,
    /// Which matrix `weight` is (`lm_head.weight`, or the tied token embedding).
    pub source: String,
    /// How the final norm entered, in words.
    pub final_norm: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// The vocabulary.
    pub vocab_size: usize,
}

impl Unembedding {
    /// Loads the unembedding and final norm weight of the model in `files`.
    pub fn load(files: &ModelFiles) -> Result<Self, ModelError> {
        let config = ModelConfig::from_file(&files.config)?;
        let arch = &config.architecture;
        let head = arch.lm_head.as_ref().map(|head| head.module.clone());
        let tokens = arch.embedding.tokens.clone();
        let norm = arch.final_norm.clone();
        let wanted = |key: &str| {
            [head.as_deref(), Some(tokens.as_str()), Some(norm.as_str())]
                .into_iter()
                .flatten()
                .any(|module| {
                    key.strip_prefix(module)
                        .is_some_and(|rest| matches!(rest, ".weight" | ".scales" | ".biases"))
                })
        };
        let tensors = placed_tensors(files, &config, wanted)?;
        let mismatch = |reason: String| ModelError::WeightsMismatch {
            model: files.source.to_string(),
            reason,
        };
        let untied = head
            .as_ref()
            .filter(|module| tensors.contains_key(&format!("{module}.weight")));
        let (module, source) = match untied {
            Some(module) => (module.clone(), format!("{module}.weight")),
            None => (tokens.clone(), format!("{tokens}.weight (tied embedding)")),
        };
        let weight = matrix(&config, &tensors, &module).map_err(&mismatch)?;
        let expected = [arch.vocab_size as i32, arch.hidden_size as i32];
        if weight.shape() != expected {
            return Err(mismatch(format!(
                "{source} has shape {:?}, expected {expected:?}",
                weight.shape()
            )));
        }
        let gamma = tensors
            .get(&format!("{norm}.weight"))
            .ok_or_else(|| mismatch(format!("missing {norm}.weight")))?
            .as_dtype(Dtype::Float32)?;
        if gamma.shape() != [arch.hidden_size as i32] {
            return Err(mismatch(format!(
                "{norm}.weight has shape {:?}, expected [{}]",
                gamma.shape(),
                arch.hidden_size
            )));
        }
        let (norm_scale, final_norm) = match arch.norm.kind {
            NormKind::Rms => (
                gamma,
                format!("{norm} (RMSNorm): its weight γ multiplied in"),
            ),
            NormKind::RmsPlusOne => (
                gamma.add(Array::from_f32(1.0))?,
                format!("{norm} (Gemma RMSNorm): 1 + its weight γ multiplied in"),
            ),
            NormKind::Layer => (
                gamma,
                format!("{norm} (LayerNorm): its weight γ multiplied in, its bias left out"),
            ),
        };
        mlx_rs::transforms::eval([&weight, &norm_scale])?;
        Ok(Self {
            weight,
            norm_scale,
            source,
            final_norm,
            hidden_size: arch.hidden_size,
            vocab_size: arch.vocab_size,
        })
    }
}

/// Module `module`'s weight matrix in f32, dequantized when it is quantized.
fn matrix(
    config: &ModelConfig,
    tensors: &HashMap<String, Array>,
    module: &str,
) -> Result<Array, String> {
    let get = |name: &str| {
        tensors
            .get(&format!("{module}.{name}"))
            .ok_or_else(|| format!("missing {module}.{name}"))
    };
    let weight = get("weight")?;
    if !tensors.contains_key(&format!("{module}.scales")) {
        return weight.as_dtype(Dtype::Float32).map_err(|e| e.to_string());
    }
    let settings = config
        .quantization
        .as_ref()
        .ok_or_else(|| format!("{module} is quantized but config.json has no quantization entry"))?
        .for_module(module)?
        .ok_or_else(|| format!("{module} is quantized but config.json says it is not"))?;
    let as_f32 = |a: &Array| a.as_dtype(Dtype::Float32).map_err(|e| e.to_string());
    ops::dequantize(
        weight,
        &as_f32(get("scales")?)?,
        &as_f32(get("biases")?)?,
        settings.group_size as i32,
        settings.bits as i32,
    )
    .map_err(|e| e.to_string())
}
