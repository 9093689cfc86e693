//! Gemma Scope folders: JumpReLU SAEs as Google DeepMind publishes them, read the way
//! SAELens's `gemma_2` and `gemma_3` loaders read them.
//!
//! - Gemma Scope (Gemma 2): `params.npz`, NumPy arrays `w_enc` `[d_in, d_sae]`, `w_dec`
//!   `[d_sae, d_in]`, `b_enc`, `b_dec`, `threshold`.
//! - Gemma Scope 2 (Gemma 3): `params.safetensors` with the same tensors, and sometimes a
//!   `config.json` naming the model.
//!
//! Encoding: `p = x · w_enc + b_enc` (the decoder bias is not subtracted), keep `p > θ`.
//! The files say nothing else: the model, layer and site come from where the folder sits,
//! as SAELens infers them — the repo (`google/gemma-scope-2b-pt-res`: residual stream,
//! `-mlp`: MLP output, `-att`: attention heads) and the `layer_L` in the path; Gemma Scope
//! 2 names the site in the path (`resid_post`, `mlp_out`, `attn_out`); attention SAEs
//! read the concatenated head outputs (`blocks.L.attn.hook_z`). Embedding SAEs and
//! transcoders are refused with the reason.

use std::{collections::HashMap, path::Path};

use mlx_rs::Array;
use saeidx_model::hook::{HookKind, HookPoint};
use serde_json::Value;

use crate::{
    SaeError,
    formats::{read_json, read_tensors, take_tensor},
    sae::{ActivationRule, InputTransform, Sae, SaeInfo, TrainedOn},
};

/// Gemma Scope's weights file.
pub const NPZ: &str = "params.npz";
/// Gemma Scope 2's weights file.
pub const SAFETENSORS: &str = "params.safetensors";

/// Whether `dir` holds a Gemma Scope SAE.
pub fn detect(dir: &Path) -> bool {
    dir.join(NPZ).is_file() || dir.join(SAFETENSORS).is_file()
}

/// What a folder's location says about the SAE, as SAELens infers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The model it was trained on.
    pub model: Option<String>,
    /// The hook, in SAELens's naming.
    pub hook: Option<String>,
}

/// Infers model and hook from `name`: the repo id and the folder inside it (or a local
/// path that keeps them), e.g. `google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82`.
pub fn placement(name: &str) -> Result<Placement, SaeError> {
    let lower = name.to_lowercase();
    if lower.contains("transcoder") || lower.contains("clt") {
        return Err(SaeError::Unsupported(
            "Gemma Scope transcoders (they map an MLP's input to its output)".into(),
        ));
    }
    if lower.contains("embedding") {
        return Err(SaeError::Unsupported(
            "Gemma Scope's embedding SAEs (hook_embed, trained on unscaled embeddings): \
             saeidx reads the scaled embeddings as blocks.0.hook_resid_pre"
                .into(),
        ));
    }
    let layer = lower
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find_map(|part| part.strip_prefix("layer_"))
        .and_then(|rest| rest.split('_').next())
        .and_then(|digits| digits.parse::<usize>().ok());
    let scope_2 = lower
        .split('/')
        .any(|part| part.starts_with("gemma-scope-2-"));
    let kind = if scope_2 {
        [
            ("resid_post", HookKind::ResidPost),
            ("mlp_out", HookKind::MlpOut),
            ("attn_out", HookKind::AttnZ),
        ]
        .into_iter()
        .find(|(site, _)| lower.contains(site))
    } else {
        let repo = lower
            .split('/')
            .find(|part| part.starts_with("gemma-scope"));
        repo.and_then(|repo| {
            [
                ("-res", HookKind::ResidPost),
                ("-mlp", HookKind::MlpOut),
                ("-att", HookKind::AttnZ),
            ]
            .into_iter()
            .find(|(site, _)| repo.contains(site))
        })
    };
    let hook = match (kind, layer) {
        (Some((_, kind)), Some(layer)) => Some(HookPoint { layer, kind }.name()),
        _ => None,
    };
    Ok(Placement {
        model: model_name(&lower, scope_2),
        hook,
    })
}

/// The model a Gemma Scope repo belongs to (`gemma-scope-2b-pt-res` → `gemma-2-2b`,
/// `gemma-scope-2-1b-it` → `google/gemma-3-1b-it`).
fn model_name(lower: &str, scope_2: bool) -> Option<String> {
    let repo = lower
        .split('/')
        .find(|part| part.starts_with("gemma-scope"))?;
    if scope_2 {
        let rest = repo.strip_prefix("gemma-scope-2-")?;
        let mut model = format!("google/gemma-3-{rest}");
        // As SAELens: the 270M model's repo has no -pt suffix.
        if model.contains("270m") {
            model = model.replace("-pt", "");
        }
        return Some(model);
    }
    let rest = repo.strip_prefix("gemma-scope-")?;
    let size = ["2b", "9b", "27b"]
        .into_iter()
        .find(|size| rest.starts_with(size))?;
    let tuned = if rest.contains("-it") { "-it" } else { "" };
    Some(format!("gemma-2-{size}{tuned}"))
}

/// Loads a Gemma Scope folder; `name` locates it (see [`placement`]).
pub fn load(dir: &Path, name: &str, source: &str) -> Result<Sae, SaeError> {
    let located = placement(name)?;
    let (file, mut weights) = if dir.join(NPZ).is_file() {
        (NPZ, read_npz(&dir.join(NPZ))?)
    } else {
        (SAFETENSORS, read_tensors(&dir.join(SAFETENSORS))?)
    };
    let path = dir.join(file);
    if let Some(scaling) = weights.remove("scaling_factor") {
        let values = scaling.as_slice::<f32>();
        if values.iter().any(|v| *v != 1.0) {
            return Err(SaeError::Unsupported(
                "a Gemma Scope SAE with a fine-tuning scaling_factor other than 1".into(),
            ));
        }
    }
    let w_enc = take_tensor(&mut weights, &path, "w_enc")?;
    let shape = w_enc.shape().to_vec();
    let [d_in, d_sae] = shape[..] else {
        return Err(SaeError::Invalid(format!(
            "{}: w_enc has shape {shape:?}, expected [d_in, d_sae]",
            path.display()
        )));
    };
    let threshold = take_tensor(&mut weights, &path, "threshold")?;
    let model = match dir.join("config.json").is_file() {
        true => configured_model(&read_json(&dir.join("config.json"))?).or(located.model),
        false => located.model,
    };
    let mut files = vec![file];
    if dir.join("config.json").is_file() {
        files.push("config.json");
    }
    let info = SaeInfo {
        format: "gemma-scope".into(),
        architecture: "jumprelu".into(),
        d_in: d_in as usize,
        d_sae: d_sae as usize,
        hook: located
            .hook
            .as_deref()
            .and_then(|hook| HookPoint::parse(hook, None).ok()),
        recorded_hook: located.hook,
        recorded_model: model,
        source: source.to_string(),
        sha256: crate::formats::files_sha256(dir, &files)?,
        // As SAELens's gemma_2 / gemma_3 loaders declare them.
        trained: TrainedOn {
            prepend_bos: Some(true),
            context_size: Some(1024),
            ..TrainedOn::default()
        },
    };
    Sae::new(
        info,
        ActivationRule::JumpRelu {
            thresholds: threshold.as_slice::<f32>().to_vec(),
        },
        InputTransform::default(),
        w_enc,
        take_tensor(&mut weights, &path, "b_enc")?,
        take_tensor(&mut weights, &path, "w_dec")?,
        take_tensor(&mut weights, &path, "b_dec")?,
    )
}

/// The model a Gemma Scope 2 `config.json` names, as SAELens normalizes it.
fn configured_model(config: &Value) -> Option<String> {
    let name = config.get("model_name")?.as_str()?;
    let mut name = name.replace("-v3", "-3");
    if !name.contains("google") {
        name = format!("google/{name}");
    }
    if name.contains("270m") {
        name = name.replace("-pt", "");
    }
    Some(name)
}

/// Reads every array of a NumPy `.npz` archive as f32 MLX arrays (f16, f32 or f64
/// stored, in C or Fortran order).
pub fn read_npz(path: &Path) -> Result<HashMap<String, Array>, SaeError> {
    Ok(crate::formats::mlx_arrays(saeidx_tensors::read_npz(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_model_and_hook_as_saelens_infers_them() {
        let located =
            placement("google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82").unwrap();
        assert_eq!(located.model.as_deref(), Some("gemma-2-2b"));
        assert_eq!(located.hook.as_deref(), Some("blocks.12.hook_resid_post"));
        let located =
            placement("google/gemma-scope-9b-it-mlp/layer_3/width_131k/average_l0_9").unwrap();
        assert_eq!(located.model.as_deref(), Some("gemma-2-9b-it"));
        assert_eq!(located.hook.as_deref(), Some("blocks.3.hook_mlp_out"));
        let located =
            placement("google/gemma-scope-2-270m-pt/resid_post/layer_5_width_16k_l0_small")
                .unwrap();
        assert_eq!(located.model.as_deref(), Some("google/gemma-3-270m"));
        assert_eq!(located.hook.as_deref(), Some("blocks.5.hook_resid_post"));
        let located = placement("/tmp/my-sae").unwrap();
        assert_eq!(
            located,
            Placement {
                model: None,
                hook: None
            }
        );
        let located =
            placement("google/gemma-scope-2b-pt-att/layer_3/width_16k/average_l0_80").unwrap();
        assert_eq!(located.hook.as_deref(), Some("blocks.3.attn.hook_z"));
        for refused in [
            "google/gemma-scope-2b-pt-res/embedding/width_4k/average_l0_6",
            "google/gemma-scope-2-4b-pt/transcoder_all/layer_0_width_16k_l0_big",
        ] {
            assert!(
                matches!(placement(refused), Err(SaeError::Unsupported(_))),
                "{refused}"
            );
        }
    }
}
