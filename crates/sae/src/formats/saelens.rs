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
//!
//! The settings that change the numbers are read as SAELens 6 reads them, with a
//! release's `config_overrides` merged in: `normalize_activations` (with the release's
//! `norm_scaling_factor` for `expected_average_only_in`), `hook_head_index` (one head of
//! `attn.hook_z`), and, for the job and [`crate::formats::prepare`], `prepend_bos`,
//! `context_size` and TransformerLens's `model_from_pretrained_kwargs`
//! ([`crate::sae::TrainedOn`]).

use std::path::Path;

use mlx_rs::Array;
use saeidx_model::hook::HookPoint;
use serde_json::{Map, Value};

use crate::{
    SaeError,
    formats::{LoadOptions, read_json, read_tensors, take_tensor},
    sae::{ActivationRule, InputTransform, RowNormalization, Sae, SaeInfo, TopKTies, TrainedOn},
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

/// What a SAELens cfg says beyond its tensors, read as SAELens 6 reads it (release
/// overrides applied, pre-6 defaults filled in).
struct Settings {
    d_in: usize,
    d_sae: usize,
    architecture: String,
    k: usize,
    rescale: bool,
    row_normalization: RowNormalization,
    /// `normalize_activations = "expected_average_only_in"`: the factor to scale inputs by.
    scale: Option<f32>,
    apply_b_dec: bool,
    trained: TrainedOn,
}

/// Reads `cfg.json` and merges `overrides` (a release's `config_overrides`) into its top
/// level, as SAELens does.
fn read_config(dir: &Path, overrides: &Map<String, Value>) -> Result<Value, SaeError> {
    let mut config = read_json(&dir.join(CONFIG))?;
    let Some(top) = config.as_object_mut() else {
        return Err(SaeError::Invalid(format!("{CONFIG} is not a JSON object")));
    };
    top.extend(overrides.clone());
    Ok(config)
}

/// Whether the cfg predates SAELens 6 (no `sae_lens_version`, or one below 6).
fn pre_6(config: &Value) -> bool {
    let version = field(config, "sae_lens_version").and_then(Value::as_str);
    match version.and_then(|v| v.split('.').next()?.parse::<u32>().ok()) {
        Some(major) => major < 6,
        None => true,
    }
}

fn settings(config: &Value, options: &LoadOptions) -> Result<Settings, SaeError> {
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
    refuse_unsupported_sites(config)?;
    let (row_normalization, scale) = normalization(config, options.norm_scaling_factor)?;
    Ok(Settings {
        d_in,
        d_sae,
        architecture,
        k: number("k").or(old_k.map(|k| k as usize)).unwrap_or(100),
        rescale: config
            .get("rescale_acts_by_decoder_norm")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        row_normalization,
        scale,
        apply_b_dec: config
            .get("apply_b_dec_to_input")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        trained: trained_on(config)?,
    })
}

/// The head an SAE reads alone (`hook_head_index`), if any.
fn head_index(config: &Value) -> Option<&Value> {
    field(config, "hook_head_index").or_else(|| field(config, "hook_point_head_index"))
}

/// Refuses SAEs that read something saeidx does not compute: a single head of a hook
/// other than `attn.hook_z` (queries, keys, values, patterns), or fine-tuned scales.
fn refuse_unsupported_sites(config: &Value) -> Result<(), SaeError> {
    let hook = field(config, "hook_name")
        .or_else(|| field(config, "hook_point"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(head) = head_index(config)
        && !(hook.ends_with("attn.hook_z") && head.is_u64())
    {
        return Err(SaeError::Unsupported(format!(
            "an SAE on head {head} of {hook:?}: saeidx reads one head only of \
             blocks.L.attn.hook_z"
        )));
    }
    if config
        .get("finetuning_scaling_factor")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(SaeError::Unsupported(
            "an SAE with a fine-tuning scaling factor (finetuning_scaling_factor)".into(),
        ));
    }
    Ok(())
}

/// `normalize_activations`: a per-token normalization, or a constant input scale.
fn normalization(
    config: &Value,
    norm_scaling_factor: Option<f32>,
) -> Result<(RowNormalization, Option<f32>), SaeError> {
    let mode = match config.get("normalize_activations") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => "none",
        // Before SAELens 6, `true` meant what is now "expected_average_only_in".
        Some(Value::Bool(true)) => "expected_average_only_in",
        Some(Value::String(mode)) => mode.as_str(),
        Some(other) => return Err(SaeError::Invalid(format!("normalize_activations {other}"))),
    };
    Ok(match mode {
        "none" => (RowNormalization::None, None),
        "constant_norm_rescale" => (RowNormalization::UnitNorm, None),
        "layer_norm" => (RowNormalization::LayerNorm, None),
        "expected_average_only_in" => match norm_scaling_factor {
            Some(factor) => (RowNormalization::None, Some(factor)),
            None => {
                return Err(SaeError::Unsupported(
                    "normalize_activations = \"expected_average_only_in\" without its factor: \
                     this SAE's inputs were scaled by a constant that its files do not hold \
                     (SAELens folds it in when training ends; this file predates that). Load \
                     it by its SAELens release id, whose table records norm_scaling_factor, or \
                     give the factor as norm_scaling_factor in the job's [sae] table"
                        .into(),
                ));
            }
        },
        "covariance_whitening" => {
            return Err(SaeError::Unsupported(
                "normalize_activations = \"covariance_whitening\" with the whitening not folded \
                 into the weights (its statistics are not in the files)"
                    .into(),
            ));
        }
        other => {
            return Err(SaeError::Unsupported(format!(
                "normalize_activations {other:?}"
            )));
        }
    })
}

/// `prepend_bos`, `context_size` and TransformerLens's `center_writing_weights` (in
/// `model_from_pretrained_kwargs`: SAELens loads the model for an SAE with
/// `from_pretrained_no_processing(**kwargs)`, so only an explicit `true` centres).
fn trained_on(config: &Value) -> Result<TrainedOn, SaeError> {
    let prepend_bos = field(config, "prepend_bos")
        .and_then(Value::as_bool)
        .or(pre_6(config).then_some(true));
    let kwargs = field(config, "model_from_pretrained_kwargs");
    let processed = |key: &str| {
        kwargs
            .and_then(|kwargs| kwargs.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Ok(TrainedOn {
        prepend_bos,
        context_size: field(config, "context_size")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        center_writing_weights: processed("center_writing_weights"),
        processed_heads: processed("fold_value_biases")
            || processed("refactor_factored_attn_matrices"),
        hook_head_index: head_index(config)
            .and_then(Value::as_u64)
            .map(|h| h as usize),
    })
}

/// The tensors and activation rule of a SAELens SAE.
struct Encoder {
    rule: ActivationRule,
    w_enc: Array,
    b_enc: Array,
    w_dec: Array,
    b_dec: Array,
}

/// Reads the weights file for `settings`' architecture, folding TopK's decoder-norm
/// rescaling into the encoder (and out of the decoder).
fn read_encoder(
    weights_path: &Path,
    settings: &Settings,
    batchtopk_threshold: Option<f32>,
) -> Result<Encoder, SaeError> {
    let architecture = settings.architecture.as_str();
    let mut weights = read_tensors(weights_path)?;
    let mut w_enc = take_tensor(&mut weights, weights_path, "W_enc")?;
    let mut w_dec = take_tensor(&mut weights, weights_path, "W_dec")?;
    let b_dec = take_tensor(&mut weights, weights_path, "b_dec")?;
    let mut b_enc = match architecture {
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
        _ => take_tensor(&mut weights, weights_path, "b_enc")?,
    };
    let f32_values = |array: &Array| -> Result<Vec<f32>, SaeError> {
        let array = array.as_dtype(mlx_rs::Dtype::Float32)?;
        array.eval()?;
        Ok(array.as_slice::<f32>().to_vec())
    };
    let rule = match architecture {
        "standard" => ActivationRule::Relu,
        "topk" => ActivationRule::TopK {
            k: settings.k,
            ties: TopKTies::LowestIdFirst,
        },
        "jumprelu" => ActivationRule::JumpRelu {
            thresholds: f32_values(&take_tensor(&mut weights, weights_path, "threshold")?)?,
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
    if settings.rescale && matches!(architecture, "topk" | "batchtopk") {
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
    Ok(Encoder {
        rule,
        w_enc,
        b_enc,
        w_dec,
        b_dec,
    })
}

/// Loads a SAELens folder with `options` (a release's overrides and norm scaling factor,
/// the threshold of a BatchTopK training checkpoint).
pub fn load(dir: &Path, source: &str, options: &LoadOptions) -> Result<Sae, SaeError> {
    let config = read_config(dir, &options.config_overrides)?;
    let settings = settings(&config, options)?;
    let Encoder {
        rule,
        w_enc,
        b_enc,
        w_dec,
        b_dec,
    } = read_encoder(&dir.join(WEIGHTS), &settings, options.batchtopk_threshold)?;
    let Settings {
        d_in,
        d_sae,
        architecture,
        row_normalization,
        scale,
        apply_b_dec,
        trained,
        ..
    } = settings;
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
        trained,
    };
    Sae::new(
        info,
        rule,
        InputTransform {
            scale,
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
