//! sparsify (EleutherAI) folders: one per hookpoint (e.g. `layers.10/`), each with
//! `cfg.json` + `sae.safetensors`, inside a run folder whose `config.json` names the
//! `model`.
//!
//! Tensors `encoder.weight` `[d_sae, d_in]`, `encoder.bias`, `W_dec` `[d_sae, d_in]`,
//! `b_dec`. The cfg holds `d_in`, `k` (default 32), `num_latents` (0 means
//! `d_in × expansion_factor`, default 32), `activation` (`topk` or `groupmax`),
//! `transcode`. Encoding: `relu((x − b_dec) · encoderᵀ + b)`, then the `k` largest (or,
//! `groupmax`, the largest of each of `k` equal groups). The hookpoint is the folder name:
//! `layers.L` is the output of block L, `layers.L.mlp` its MLP output.

use std::path::Path;

use saeidx_model::hook::HookPoint;
use serde_json::Value;

use crate::{
    SaeError,
    formats::{read_json, read_tensors, take_tensor},
    sae::{ActivationRule, InputTransform, Sae, SaeInfo, TopKTies, TrainedOn},
};

/// The cfg file.
pub const CONFIG: &str = "cfg.json";
/// The weights file.
pub const WEIGHTS: &str = "sae.safetensors";

/// Whether `dir` looks like a sparsify hookpoint folder.
pub fn detect(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && dir.join(WEIGHTS).is_file()
}

/// Loads a sparsify hookpoint folder.
pub fn load(dir: &Path, source: &str) -> Result<Sae, SaeError> {
    let config = read_json(&dir.join(CONFIG))?;
    let number = |key: &str| config.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let d_in = number("d_in").ok_or_else(|| SaeError::Invalid("cfg.json has no d_in".into()))?;
    let d_sae = match number("num_latents").unwrap_or(0) {
        0 => d_in * number("expansion_factor").unwrap_or(32),
        latents => latents,
    };
    let k = number("k").unwrap_or(32);
    if flag("transcode") {
        return Err(SaeError::Unsupported(
            "sparsify transcoders (they map a module's input to its output)".into(),
        ));
    }
    if config.get("signed").and_then(Value::as_bool) == Some(true) {
        return Err(SaeError::Unsupported("sparsify's old signed SAEs".into()));
    }
    let activation = config
        .get("activation")
        .and_then(Value::as_str)
        .unwrap_or("topk");
    let rule = match activation {
        "topk" => ActivationRule::TopK {
            k,
            ties: TopKTies::LowestIdFirst,
        },
        "groupmax" => ActivationRule::GroupMax { k },
        other => {
            return Err(SaeError::Unsupported(format!(
                "sparsify activation {other:?}"
            )));
        }
    };
    let weights_path = dir.join(WEIGHTS);
    let mut weights = read_tensors(&weights_path)?;
    let encoder = take_tensor(&mut weights, &weights_path, "encoder.weight")?;
    let b_enc = take_tensor(&mut weights, &weights_path, "encoder.bias")?;
    let w_dec = take_tensor(&mut weights, &weights_path, "W_dec")?;
    let b_dec = take_tensor(&mut weights, &weights_path, "b_dec")?;

    let hookpoint = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("seed"))
        .or_else(|| {
            dir.parent()
                .and_then(Path::file_name)
                .map(|name| name.to_string_lossy().into_owned())
        });
    let run_config = dir
        .ancestors()
        .skip(1)
        .take(2)
        .map(|folder| folder.join("config.json"))
        .find(|path| path.is_file());
    let model = match run_config {
        Some(path) => read_json(&path)?
            .get("model")
            .and_then(Value::as_str)
            .map(String::from),
        None => None,
    };
    let info = SaeInfo {
        format: "sparsify".into(),
        architecture: activation.to_string(),
        d_in,
        d_sae,
        hook: hookpoint
            .as_deref()
            .and_then(|name| HookPoint::parse(name, None).ok()),
        recorded_hook: hookpoint,
        recorded_model: model,
        source: source.to_string(),
        sha256: crate::formats::files_sha256(dir, &[CONFIG, WEIGHTS])?,
        trained: TrainedOn::default(),
    };
    Sae::new(
        info,
        rule,
        InputTransform {
            subtract_decoder_bias: true,
            ..InputTransform::default()
        },
        encoder.t(),
        b_enc,
        w_dec,
        b_dec,
    )
}
