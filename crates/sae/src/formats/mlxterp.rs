//! mlxterp's SAE folders (what `InterpretableModel.load_sae(path)` reads).
//!
//! A folder with `config.json` (`d_model`, `d_hidden`, `class` = `SAE` or
//! `BatchTopKSAE`, `k`, `normalize_input`, `tied_weights`, and `metadata` with `layer`,
//! `component`, `model_name`, ...) and `weights.safetensors`: `encoder.weight`
//! `[d_hidden, d_model]`, `encoder.bias`, `decoder.weight` `[d_model, d_hidden]` (or, tied,
//! `decoder_bias` with the encoder's transpose), `decoder.bias`, `input_mean`, `input_std`.
//!
//! mlxterp encodes `x' = (x − mean) / (std + 1e-8)` when `normalize_input`, then
//! `h = relu(x' · encoderᵀ + b)`, then keeps every `h ≥` the k-th largest (ties kept).
//! It does not subtract the decoder bias before encoding, so saeidx folds that into the
//! encoder bias when it saves an SAE that does.

use std::path::Path;

use mlx_rs::{Array, Dtype};
use saeidx_format::atomic::StagedDir;
use saeidx_model::hook::{HookKind, HookPoint};
use serde_json::{Value, json};

use crate::{
    SaeError,
    formats::{files_sha256, read_json, read_tensors, take_tensor},
    sae::{ActivationRule, InputTransform, RowNormalization, Sae, SaeInfo, TopKTies, TrainedOn},
};

/// mlxterp adds this to `input_std` when normalizing inputs.
const STD_EPSILON: f32 = 1e-8;

fn read_config(dir: &Path) -> Result<Value, SaeError> {
    read_json(&dir.join("config.json"))
}

/// Whether `dir` looks like an mlxterp SAE folder.
pub fn detect(dir: &Path) -> bool {
    dir.join("weights.safetensors").is_file()
        && read_config(dir).is_ok_and(|config| config.get("d_hidden").is_some())
}

/// The hook an mlxterp SAE records: `metadata.layer` + `metadata.component`, or a
/// saeidx hook name in `metadata.hook`.
fn recorded_hook(metadata: &Value) -> (Option<String>, Option<HookPoint>) {
    if let Some(name) = metadata.get("hook").and_then(Value::as_str) {
        return (Some(name.to_string()), HookPoint::parse(name, None).ok());
    }
    let layer = metadata.get("layer").and_then(Value::as_u64);
    let component = metadata.get("component").and_then(Value::as_str);
    match (layer, component) {
        (Some(layer), Some(component)) => (
            Some(format!("layer {layer} {component}")),
            HookPoint::parse(component, Some(layer as usize)).ok(),
        ),
        _ => (None, None),
    }
}

/// Loads an mlxterp SAE folder. A `BatchTopKSAE` needs `batchtopk_threshold` (the
/// per-token rule, see [`ActivationRule::Threshold`]).
pub fn load(dir: &Path, source: &str, batchtopk_threshold: Option<f32>) -> Result<Sae, SaeError> {
    let config = read_config(dir)?;
    let number = |key: &str| config.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let d_in =
        number("d_model").ok_or_else(|| SaeError::Invalid("config.json has no d_model".into()))?;
    let d_sae = number("d_hidden")
        .ok_or_else(|| SaeError::Invalid("config.json has no d_hidden".into()))?;
    let class = config
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or("SAE")
        .to_string();
    let k = number("k").unwrap_or(100);
    let normalize = config
        .get("normalize_input")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let tied = config
        .get("tied_weights")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let rule = match class.as_str() {
        // mlxterp skips top-k when k ≥ width: a plain ReLU then.
        "SAE" if k >= d_sae => ActivationRule::Relu,
        "SAE" => ActivationRule::TopK {
            k,
            ties: TopKTies::KeepAll,
        },
        "BatchTopKSAE" => ActivationRule::Threshold {
            threshold: batchtopk_threshold.ok_or_else(|| {
                SaeError::Unsupported(
                    "a BatchTopK SAE picks k × batch features over a whole batch, so a text's \
                     codes would depend on the rest of its batch; give the per-token \
                     threshold it approximates with --batchtopk-threshold"
                        .into(),
                )
            })?,
        },
        other => {
            return Err(SaeError::Unsupported(format!(
                "mlxterp SAE class {other:?}"
            )));
        }
    };

    let weights_path = dir.join("weights.safetensors");
    let mut weights = read_tensors(&weights_path)?;
    let mut take = |key: &str| take_tensor(&mut weights, &weights_path, key);
    let encoder = take("encoder.weight")?;
    let b_enc = take("encoder.bias")?;
    let (w_dec, b_dec) = if tied {
        (encoder.clone(), take("decoder_bias")?)
    } else {
        (take("decoder.weight")?.t(), take("decoder.bias")?)
    };
    let standardize = if normalize {
        let mean = take("input_mean")?;
        let std = take("input_std")?.add(Array::from_f32(STD_EPSILON))?;
        Some((mean, std))
    } else {
        None
    };
    let metadata = config.get("metadata").cloned().unwrap_or(Value::Null);
    let (recorded_hook, hook) = recorded_hook(&metadata);
    let info = SaeInfo {
        format: "mlxterp".into(),
        architecture: class,
        d_in,
        d_sae,
        recorded_hook,
        hook,
        recorded_model: metadata
            .get("model_name")
            .or_else(|| metadata.get("model"))
            .and_then(Value::as_str)
            .map(String::from),
        source: source.to_string(),
        sha256: files_sha256(dir, &["config.json", "weights.safetensors"])?,
        trained: TrainedOn::default(),
    };
    Sae::new(
        info,
        rule,
        InputTransform {
            standardize,
            subtract_decoder_bias: false,
            ..InputTransform::default()
        },
        encoder.t(),
        b_enc,
        w_dec,
        b_dec,
    )
}

/// Writes `sae` as an mlxterp folder at `out` (atomically): a top-k SAE with `k`,
/// `normalize_input` and `metadata` (merged with the hook as mlxterp's `layer` and
/// `component` when it has a name for it), its weights stored as `dtype`.
pub fn save(
    sae: &Sae,
    k: usize,
    metadata: Value,
    dtype: Dtype,
    out: &Path,
) -> Result<(), SaeError> {
    let d_in = sae.info.d_in as i32;
    // mlxterp has no pre-encoder bias: fold `− b_dec · W_enc` into the encoder bias.
    let b_enc = if sae.input.subtract_decoder_bias {
        sae.b_enc.subtract(
            sae.b_dec
                .reshape(&[1, d_in])?
                .matmul(&sae.w_enc)?
                .reshape(&[-1])?,
        )?
    } else {
        sae.b_enc.clone()
    };
    let (mean, std) = match &sae.input.standardize {
        Some((mean, std)) => (mean.clone(), std.subtract(Array::from_f32(STD_EPSILON))?),
        None => (Array::zeros::<f32>(&[d_in])?, Array::ones::<f32>(&[d_in])?),
    };
    if sae.input.scale.is_some() || sae.input.row_normalization != RowNormalization::None {
        return Err(SaeError::Unsupported(
            "mlxterp folders record only a per-dimension input normalization".into(),
        ));
    }
    let tensors = [
        ("encoder.weight", sae.w_enc.t()),
        ("encoder.bias", b_enc),
        ("decoder.weight", sae.w_dec.t()),
        ("decoder.bias", sae.b_dec.clone()),
        ("input_mean", mean),
        ("input_std", std),
    ]
    .into_iter()
    .map(|(name, tensor)| Ok((name, tensor.as_dtype(dtype)?)))
    .collect::<Result<Vec<_>, SaeError>>()?;
    let mut metadata = match metadata {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(hook) = sae.info.hook {
        metadata.insert("hook".into(), json!(hook.name()));
        metadata.insert("layer".into(), json!(hook.layer));
        let component = match hook.kind {
            HookKind::MlpOut => Some("mlp"),
            HookKind::AttnOut => Some("self_attn"),
            HookKind::ResidPost => Some("residual"),
            HookKind::ResidPre | HookKind::ResidMid | HookKind::AttnZ => None,
        };
        if let Some(component) = component {
            metadata.insert("component".into(), json!(component));
        }
    }
    if let Some(model) = &sae.info.recorded_model {
        metadata.entry("model_name").or_insert(json!(model));
    }
    let config = json!({
        "d_model": sae.info.d_in,
        "d_hidden": sae.info.d_sae,
        "class": "SAE",
        "k": k,
        "normalize_input": sae.input.standardize.is_some(),
        "tied_weights": false,
        "metadata": metadata,
    });
    let staged = StagedDir::new(out)?;
    Array::save_safetensors(tensors, None, staged.path().join("weights.safetensors"))
        .map_err(|e| SaeError::Invalid(format!("cannot write weights: {e}")))?;
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialize");
    std::fs::write(staged.path().join("config.json"), text).map_err(|source| SaeError::Io {
        path: out.join("config.json"),
        source,
    })?;
    staged.publish()?;
    Ok(())
}
