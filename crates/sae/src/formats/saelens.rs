//! SAELens folders: `cfg.json` + `sae_weights.safetensors`.
//!
//! Tensors `W_enc` `[d_in, d_sae]`, `W_dec` `[d_sae, d_in]`, `b_enc`, `b_dec`, plus
//! `threshold` (JumpReLU) or `topk_threshold` (BatchTopK training checkpoints). The cfg
//! names the `architecture` (`standard`, `topk`, `jumprelu`, `batchtopk`; `gated` and
//! transcoders are refused), `apply_b_dec_to_input` (default true),
//! `normalize_activations`, `k` (default 100) and `rescale_acts_by_decoder_norm`
//! (default false); SAELens 6 keeps `hook_name` and `model_name` under `metadata`, older
//! files at the top level with `activation_fn_str`/`activation_fn_kwargs`.
//!
//! Encoding: normalize → subtract `b_dec` (when applied) → `p = x · W_enc + b_enc` →
//! standard `relu(p)`; topk the `k` largest (scaled by decoder row norms when
//! `rescale_acts_by_decoder_norm`), relu; jumprelu `p > θ`. The decoder-norm rescale is
//! folded into the encoder (and undone in the decoder) at load.

use std::path::Path;

use mlx_rs::Array;
use saeidx_model::hook::HookPoint;
use serde_json::Value;

use crate::{
    SaeError,
    formats::{read_json, read_tensors, take_tensor},
    sae::{ActivationRule, InputTransform, RowNormalization, Sae, SaeInfo, TopKTies},
};

/// The cfg and weights file names.
pub const CONFIG: &str = "cfg.json";
/// The weights file.
pub const WEIGHTS: &str = "sae_weights.safetensors";

/// Whether `dir` looks like a SAELens folder.
pub fn detect(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && dir.join(WEIGHTS).is_file()
}

/// A cfg key from SAELens 6's `metadata` or an older file's top level.
fn field<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config
        .get("metadata")
        .and_then(|m| m.get(key))
        .filter(|v| !v.is_null())
        .or_else(|| config.get(key).filter(|v| !v.is_null()))
}

/// Loads a SAELens folder; `batchtopk_threshold` overrides the threshold of a BatchTopK
/// training checkpoint.
pub fn load(dir: &Path, source: &str, batchtopk_threshold: Option<f32>) -> Result<Sae, SaeError> {
    let config = read_json(&dir.join(CONFIG))?;
    let number = |key: &str| config.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let d_in = number("d_in").ok_or_else(|| SaeError::Invalid("cfg.json has no d_in".into()))?;
    let d_sae = number("d_sae").ok_or_else(|| SaeError::Invalid("cfg.json has no d_sae".into()))?;
    let activation = config
        .get("activation_fn_str")
        .or_else(|| config.get("activation_fn"))
        .and_then(Value::as_str);
    let old_k = config
        .get("activation_fn_kwargs")
        .and_then(|kwargs| kwargs.get("k"))
        .and_then(Value::as_u64);
    let mut architecture = config
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("standard")
        .to_string();
    if activation == Some("topk") && old_k.is_some() {
        architecture = "topk".into();
    }
    if activation == Some("tanh-relu") {
        return Err(SaeError::Unsupported(
            "a pre-6 SAELens file with activation tanh-relu (SAELens 6 itself reads it as plain ReLU)"
                .into(),
        ));
    }
    if config.get("reshape_activations").and_then(Value::as_str) == Some("hook_z") {
        return Err(SaeError::Unsupported(
            "an SAE on attention head outputs (hook_z): saeidx has no hook there".into(),
        ));
    }
    let k = number("k").or(old_k.map(|k| k as usize)).unwrap_or(100);
    let rescale = config
        .get("rescale_acts_by_decoder_norm")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let row_normalization = match config.get("normalize_activations") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => RowNormalization::None,
        Some(Value::String(mode)) => match mode.as_str() {
            // Folded into the weights when training ends; nothing to do at load.
            "none" | "expected_average_only_in" | "covariance_whitening" => RowNormalization::None,
            "constant_norm_rescale" => RowNormalization::UnitNorm,
            "layer_norm" => RowNormalization::LayerNorm,
            other => {
                return Err(SaeError::Unsupported(format!(
                    "normalize_activations {other:?}"
                )));
            }
        },
        Some(other) => {
            return Err(SaeError::Invalid(format!("normalize_activations {other}")));
        }
    };

    let weights_path = dir.join(WEIGHTS);
    let mut weights = read_tensors(&weights_path)?;
    let mut w_enc = take_tensor(&mut weights, &weights_path, "W_enc")?;
    let mut w_dec = take_tensor(&mut weights, &weights_path, "W_dec")?;
    let b_dec = take_tensor(&mut weights, &weights_path, "b_dec")?;
    let mut b_enc = match architecture.as_str() {
        "gated" => {
            return Err(SaeError::Unsupported(
                "gated SAEs (two encoder paths); saeidx runs ReLU, TopK, BatchTopK and JumpReLU"
                    .into(),
            ));
        }
        kind if kind.contains("transcoder") => {
            return Err(SaeError::Unsupported(
                "transcoders (they map one hook's activations to another's)".into(),
            ));
        }
        _ => take_tensor(&mut weights, &weights_path, "b_enc")?,
    };
    let f32_values = |array: &Array| -> Result<Vec<f32>, SaeError> {
        let array = array.as_dtype(mlx_rs::Dtype::Float32)?;
        array.eval()?;
        Ok(array.as_slice::<f32>().to_vec())
    };
    let rule = match architecture.as_str() {
        "standard" => ActivationRule::Relu,
        "topk" => ActivationRule::TopK {
            k,
            ties: TopKTies::LowestIdFirst,
        },
        "jumprelu" => ActivationRule::JumpRelu {
            thresholds: f32_values(&take_tensor(&mut weights, &weights_path, "threshold")?)?,
        },
        "batchtopk" => {
            let stored = match weights.remove("topk_threshold") {
                Some(threshold) => Some(f32_values(&threshold)?[0]),
                None => None,
            };
            ActivationRule::Threshold {
                threshold: batchtopk_threshold.or(stored).ok_or_else(|| {
                    SaeError::Unsupported(
                        "a BatchTopK SAE without its topk_threshold: give the per-token \
                         threshold with --batchtopk-threshold"
                            .into(),
                    )
                })?,
            }
        }
        other => {
            return Err(SaeError::Unsupported(format!(
                "SAELens architecture {other:?}"
            )));
        }
    };
    if rescale && matches!(architecture.as_str(), "topk" | "batchtopk") {
        // p_j · ‖W_dec[j]‖ = x · (W_enc[:, j] ‖W_dec[j]‖) + b_enc[j] ‖W_dec[j]‖, and the
        // decoder reads z_j / ‖W_dec[j]‖.
        let norms = w_dec
            .as_dtype(mlx_rs::Dtype::Float32)?
            .square()?
            .sum_axis(1, None)?
            .sqrt()?;
        w_enc = w_enc.as_dtype(mlx_rs::Dtype::Float32)?.multiply(&norms)?;
        b_enc = b_enc.as_dtype(mlx_rs::Dtype::Float32)?.multiply(&norms)?;
        w_dec = w_dec
            .as_dtype(mlx_rs::Dtype::Float32)?
            .divide(norms.reshape(&[-1, 1])?)?;
    }
    let recorded_hook = field(&config, "hook_name")
        .or_else(|| field(&config, "hook_point"))
        .and_then(Value::as_str)
        .map(String::from);
    let info = SaeInfo {
        format: "saelens".into(),
        architecture,
        d_in,
        d_sae,
        hook: recorded_hook
            .as_deref()
            .and_then(|name| HookPoint::parse(name, None).ok()),
        recorded_hook,
        recorded_model: field(&config, "model_name")
            .and_then(Value::as_str)
            .map(String::from),
        source: source.to_string(),
        sha256: crate::formats::files_sha256(dir, &[CONFIG, WEIGHTS])?,
    };
    let apply_b_dec = config
        .get("apply_b_dec_to_input")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Sae::new(
        info,
        rule,
        InputTransform {
            row_normalization,
            subtract_decoder_bias: apply_b_dec,
            ..InputTransform::default()
        },
        w_enc,
        b_enc,
        w_dec,
        b_dec,
    )
}
