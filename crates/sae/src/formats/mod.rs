//! The SAE file formats researchers bring, found on disk, on the Hugging Face Hub, or by
//! SAELens release id.
//!
//! [`load`] detects the format of a folder: mlxterp (`config.json` with `d_hidden` +
//! `weights.safetensors`), SAELens (`cfg.json` + `sae_weights.safetensors`), sparsify
//! (`cfg.json` + `sae.safetensors`) or Gemma Scope (`params.npz`, `params.safetensors`).
//! A Hub source (`org/repo`, optionally with a subfolder such as `layers.10`) is resolved
//! offline-first through `saeidx-hub` first (`HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`; the
//! cached snapshot when the Hub cannot answer); a release id (`RELEASE/SAE_ID`) through
//! SAELens's release table ([`crate::releases`]) to such a folder. [`prepare`] then
//! refuses an SAE whose width, model or hook does not match the model and hook it is used
//! with, and adapts its input to how it was trained.

pub mod gemma_scope;
pub mod mlxterp;
pub mod saelens;
pub mod sparsify;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use mlx_rs::Array;
use saeidx_hub::{HubSettings, Listing, RepoKind, RepoRef};
use saeidx_model::{
    architecture::NormKind,
    config::ModelConfig,
    hook::{HookKind, HookPoint},
};
use saeidx_tensors::FloatTensor;
use serde_json::Value;

use crate::{
    SaeError,
    releases::{Layout, ReleaseTable},
    sae::Sae,
};

/// Where an SAE comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaeSource {
    /// A local folder.
    Local(PathBuf),
    /// A folder of a Hugging Face model repo.
    Hub {
        /// `org/name`.
        repo_id: String,
        /// Folder inside the repo (`""` for its root).
        subfolder: String,
        /// Branch, tag or commit; `None` means `main`.
        revision: Option<String>,
    },
    /// A SAELens release id, `RELEASE/SAE_ID`, resolved through SAELens's release table
    /// ([`crate::releases`]) to a folder of a Hub repo.
    Release {
        /// `RELEASE/SAE_ID`.
        id: String,
        /// Branch, tag or commit of the repo; `None` means `main`.
        revision: Option<String>,
    },
}

impl SaeSource {
    /// An existing folder is local; `RELEASE/SAE_ID` whose release is in SAELens's table
    /// is a release id; otherwise `org/name[/subfolder...]` on the Hub.
    pub fn parse(spec: &str, revision: Option<String>) -> Self {
        if Path::new(spec).is_dir() {
            return Self::Local(PathBuf::from(spec));
        }
        let release = spec.split('/').next().unwrap_or_default();
        if ReleaseTable::current().is_ok_and(|table| table.contains(release)) {
            return Self::Release {
                id: spec.to_string(),
                revision,
            };
        }
        let mut parts = spec.splitn(3, '/');
        let (org, name, subfolder) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        Self::Hub {
            repo_id: format!("{org}/{name}"),
            subfolder: subfolder.trim_matches('/').to_string(),
            revision,
        }
    }
}

impl std::fmt::Display for SaeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Hub {
                repo_id, subfolder, ..
            } if subfolder.is_empty() => write!(f, "{repo_id}"),
            Self::Hub {
                repo_id, subfolder, ..
            } => write!(f, "{repo_id}/{subfolder}"),
            Self::Release { id, .. } => write!(f, "{id}"),
        }
    }
}

/// How to read SAEs whose files leave something open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The per-token threshold for BatchTopK SAEs (see
    /// [`crate::sae::ActivationRule::Threshold`]).
    pub batchtopk_threshold: Option<f32>,
    /// The constant SAELens's `normalize_activations = "expected_average_only_in"`
    /// scaled inputs by, when the files predate folding it into the weights (a release
    /// table's `norm_scaling_factor`).
    pub norm_scaling_factor: Option<f32>,
    /// Values that replace the SAELens cfg's (a release table's `config_overrides`).
    pub config_overrides: serde_json::Map<String, Value>,
}

/// Loads an SAE from a local folder, the Hub or a SAELens release id, detecting its
/// format. A release's table entry supplies the repo and folder, config overrides, a
/// norm scaling factor (unless `options` gives one) and the model when the files name
/// none.
pub fn load(
    source: &SaeSource,
    settings: &HubSettings,
    mut options: LoadOptions,
) -> Result<Sae, SaeError> {
    let SaeSource::Release { id, revision } = source else {
        return load_folder(source, settings, &options);
    };
    let release = ReleaseTable::current()?.resolve(id)?;
    options
        .config_overrides
        .extend(release.config_overrides.clone());
    options.norm_scaling_factor = options.norm_scaling_factor.or(release.norm_scaling_factor);
    let hub = SaeSource::Hub {
        repo_id: release.repo_id.clone(),
        subfolder: release.folder.clone(),
        revision: revision.clone(),
    };
    let mut sae = load_folder(&hub, settings, &options)?;
    let expected = match release.layout {
        Layout::SaeLens => "saelens",
        Layout::GemmaScope | Layout::GemmaScope2 => "gemma-scope",
    };
    if sae.info.format != expected {
        return Err(SaeError::Invalid(format!(
            "release {id} should be a {expected} folder, but {hub} holds a {} SAE",
            sae.info.format
        )));
    }
    sae.info.source = format!("{id} = {}", sae.info.source);
    sae.info.recorded_model.get_or_insert(release.model);
    Ok(sae)
}

/// Loads an SAE folder, local or of a Hub repo, detecting its format.
fn load_folder(
    source: &SaeSource,
    settings: &HubSettings,
    options: &LoadOptions,
) -> Result<Sae, SaeError> {
    let (dir, described, located) = match source {
        SaeSource::Local(dir) => (
            dir.clone(),
            dir.display().to_string(),
            dir.display().to_string(),
        ),
        SaeSource::Hub {
            repo_id,
            subfolder,
            revision,
        } => {
            let repo = RepoRef::new(RepoKind::Model, repo_id, revision.as_deref());
            let snapshot = saeidx_hub::resolve(settings, &repo, |listing| {
                download_sae_files(listing, subfolder)
            })?;
            (
                snapshot.dir.join(subfolder),
                format!("{source}@{}", snapshot.commit),
                format!("{repo_id}/{subfolder}"),
            )
        }
        SaeSource::Release { .. } => unreachable!("releases resolve to Hub folders first"),
    };
    if !dir.is_dir() {
        return Err(SaeError::Invalid(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    if mlxterp::detect(&dir) {
        mlxterp::load(&dir, &described, options.batchtopk_threshold)
    } else if saelens::detect(&dir) {
        saelens::load(&dir, &described, options)
    } else if sparsify::detect(&dir) {
        sparsify::load(&dir, &described)
    } else if gemma_scope::detect(&dir) {
        gemma_scope::load(&dir, &located, &described)
    } else {
        Err(SaeError::Invalid(format!(
            "{} holds no SAE saeidx knows: expected mlxterp (config.json + weights.safetensors), \
             SAELens (cfg.json + sae_weights.safetensors), sparsify (cfg.json + sae.safetensors) \
             or Gemma Scope (params.npz, or params.safetensors)",
            dir.display()
        )))
    }
}

/// Downloads the SAE files of `subfolder` (its JSON and safetensors files, Gemma Scope's
/// `params.npz`, and the parent folder's `config.json` that some formats keep there).
fn download_sae_files(listing: &Listing, subfolder: &str) -> Result<(), SaeError> {
    let prefix = if subfolder.is_empty() {
        String::new()
    } else {
        format!("{subfolder}/")
    };
    let parent_config = subfolder
        .rsplit_once('/')
        .map(|(parent, _)| format!("{parent}/config.json"))
        .unwrap_or_else(|| "config.json".into());
    let wanted: Vec<&String> = listing
        .files
        .iter()
        .filter(|file| {
            let in_folder = file.strip_prefix(&prefix).is_some_and(|rest| {
                !rest.contains('/')
                    && (rest.ends_with(".json")
                        || rest.ends_with(".safetensors")
                        || rest == gemma_scope::NPZ)
            });
            in_folder || **file == parent_config
        })
        .collect();
    if wanted.is_empty() {
        return Err(SaeError::Invalid(format!(
            "{} has no SAE files under {subfolder:?}",
            listing.repo()
        )));
    }
    for file in wanted {
        listing.get(file)?;
    }
    Ok(())
}

/// TransformerLens names (as SAELens records them) of models whose Hub name differs
/// by more than the organisation.
const TRANSFORMER_LENS_NAMES: &[(&str, &str)] =
    &[("gpt2-small", "gpt2"), ("mistral-7b", "mistral-7b-v0.1")];

/// The base name of a model id: its last path segment, lowercase, with quantization and
/// format suffixes removed (`org/SmolLM2-135M-Instruct-mlx-4bit` → `smollm2-135m-instruct`),
/// and TransformerLens's aliases replaced by the Hub name (`gpt2-small` → `gpt2`).
fn model_base_name(model: &str) -> String {
    const SUFFIXES: &[&str] = &[
        "mlx",
        "4bit",
        "8bit",
        "bf16",
        "fp16",
        "f16",
        "f32",
        "fp32",
        "q4",
        "q8",
        "q4_1",
        "q8_0",
        "gguf",
        "quantized",
    ];
    let name = model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_lowercase();
    let mut parts: Vec<&str> = name.split(['-', '_', '.']).collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| SUFFIXES.contains(p)) {
        parts.pop();
    }
    let base = parts.join("-");
    TRANSFORMER_LENS_NAMES
        .iter()
        .find(|(alias, _)| *alias == base)
        .map_or(base, |(_, name)| name.to_string())
}

/// Checks that `sae` fits `model` (named `model_name`) at `hook`, as
/// [`check_compatible`] does, then adapts its input to how the model's activations were
/// produced in training. Returns what was applied, in words for the manifest.
///
/// - SAELens's `hook_head_index` on `attn.hook_z`: the SAE reads that head's values.
/// - TransformerLens's `center_writing_weights` (recorded by SAELens): on a LayerNorm
///   model every write to the residual stream was made mean-free, so each input at a
///   residual-width hook is centred per token; TransformerLens skips it on other models,
///   and so does this. Its `fold_value_biases` / `refactor_factored_attn_matrices`
///   change `attn.hook_z` of models with value biases: refused there.
/// - mlxterp reads the *module* outputs `self_attn` / `mlp`; where a family normalizes
///   them before adding them to the residual stream (Gemma 2/3, OLMo 2) those differ
///   from saeidx's `hook_attn_out` / `hook_mlp_out`, and the SAE is refused.
pub fn prepare(
    sae: &mut Sae,
    model: &ModelConfig,
    model_name: &str,
    hook: HookPoint,
    allow_mismatch: bool,
) -> Result<Vec<String>, SaeError> {
    let mut applied = Vec::new();
    let head_dim = model.architecture.attention.head_dim;
    let width = match sae.info.trained.hook_head_index {
        Some(head)
            if hook.kind != HookKind::AttnZ || head >= model.architecture.attention.heads =>
        {
            return Err(SaeError::Mismatch(format!(
                "the SAE reads attention head {head} of attn.hook_z, not {hook} of a model \
                 with {} heads",
                model.architecture.attention.heads
            )));
        }
        Some(head) => {
            sae.input.head = Some((head, head_dim));
            applied.push(format!(
                "hook_head_index {head}: the SAE reads head {head} of {hook}"
            ));
            head_dim
        }
        None => model.hook_width(&hook),
    };
    check_compatible(sae, width, model_name, hook, allow_mismatch)?;
    refuse_module_outputs(sae, model, hook)?;
    applied.extend(apply_transformer_lens_processing(sae, model, hook)?);
    if let Some(scale) = sae.input.scale {
        applied.push(format!(
            "normalize_activations expected_average_only_in: inputs scaled by {scale}"
        ));
    }
    Ok(applied)
}

/// Refuses an mlxterp SAE on a module output that saeidx's hook reads after a post-norm.
fn refuse_module_outputs(sae: &Sae, model: &ModelConfig, hook: HookPoint) -> Result<(), SaeError> {
    let block = &model.architecture.block;
    let post_normed = match hook.kind {
        HookKind::AttnOut => block.post_attention_norm.is_some(),
        HookKind::MlpOut => block.post_mlp_norm.is_some(),
        _ => false,
    };
    let module_output = sae
        .info
        .recorded_hook
        .as_deref()
        .is_some_and(|name| !name.starts_with("blocks."));
    if sae.info.format == "mlxterp" && module_output && post_normed {
        return Err(SaeError::Unsupported(format!(
            "an mlxterp SAE on the {} module's output of a {} model: that output is normalized \
             before it joins the residual stream, and saeidx's {hook} is the normalized one",
            if hook.kind == HookKind::MlpOut {
                "mlp"
            } else {
                "self_attn"
            },
            model.family.name()
        )));
    }
    Ok(())
}

/// Applies (or refuses) the TransformerLens weight processing the SAE was trained with.
fn apply_transformer_lens_processing(
    sae: &mut Sae,
    model: &ModelConfig,
    hook: HookPoint,
) -> Result<Vec<String>, SaeError> {
    let trained = &sae.info.trained;
    let heads = hook.kind == HookKind::AttnZ;
    if heads && trained.processed_heads && model.architecture.attention.qkv_bias {
        return Err(SaeError::Unsupported(
            "an SAE on attn.hook_z of a TransformerLens model loaded with fold_value_biases or \
             refactor_factored_attn_matrices: its hook_z lacks the value biases this model has"
                .into(),
        ));
    }
    if !trained.center_writing_weights {
        return Ok(Vec::new());
    }
    let applied = if heads {
        "center_writing_weights: nothing to do at attn.hook_z (it is not written to the \
         residual stream)"
    } else if model.architecture.norm.kind == NormKind::Layer {
        sae.input.center = true;
        "center_writing_weights: each input is centred per token, as TransformerLens's \
         processed model writes it"
    } else {
        "center_writing_weights: nothing to do, the model has no LayerNorm (TransformerLens \
         skips it too)"
    };
    Ok(vec![applied.to_string()])
}

/// Checks that `sae` reads activations of width `d_model` of a model named `model` at
/// `hook`.
///
/// The width must always match. A recorded model or hook that differs is refused unless
/// `allow_mismatch`; model names are compared by base name, so a quantized or converted
/// copy of the recorded model (`...-mlx-4bit`) is accepted.
pub fn check_compatible(
    sae: &Sae,
    d_model: usize,
    model: &str,
    hook: HookPoint,
    allow_mismatch: bool,
) -> Result<(), SaeError> {
    if sae.info.d_in != d_model {
        return Err(SaeError::WidthMismatch {
            expected: sae.info.d_in,
            got: d_model,
        });
    }
    if allow_mismatch {
        return Ok(());
    }
    if let Some(recorded) = &sae.info.recorded_model
        && model_base_name(recorded) != model_base_name(model)
    {
        return Err(SaeError::Mismatch(format!(
            "the SAE was trained on model {recorded:?}, not {model:?}"
        )));
    }
    match (sae.info.hook, &sae.info.recorded_hook) {
        (Some(recorded), _) if recorded != hook => Err(SaeError::Mismatch(format!(
            "the SAE was trained at {recorded}, not at {hook}"
        ))),
        (None, Some(recorded)) => Err(SaeError::Mismatch(format!(
            "the SAE was trained at {recorded:?}, which saeidx cannot place; {hook} may differ"
        ))),
        _ => Ok(()),
    }
}

/// Reads a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value, SaeError> {
    let text = std::fs::read_to_string(path).map_err(|source| SaeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| SaeError::Invalid(format!("{}: {e}", path.display())))
}

/// Reads every tensor of a safetensors file as f32 MLX arrays, whatever its stored float
/// type (F64, F32, F16, BF16: MLX's own reader refuses F64, which SAELens uses for
/// `topk_threshold`).
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Array>, SaeError> {
    Ok(mlx_arrays(saeidx_tensors::read_safetensors(path)?))
}

/// Tensors read by `saeidx_tensors` as f32 MLX arrays of the same shapes.
pub(crate) fn mlx_arrays(tensors: Vec<(String, FloatTensor)>) -> HashMap<String, Array> {
    tensors
        .into_iter()
        .map(|(name, tensor)| {
            let shape: Vec<i32> = tensor.shape.iter().map(|&d| d as i32).collect();
            (name, Array::from_slice(&tensor.values, &shape))
        })
        .collect()
}

/// Removes a tensor from loaded weights, or says which file lacks it.
pub(crate) fn take_tensor(
    weights: &mut HashMap<String, Array>,
    file: &Path,
    key: &str,
) -> Result<Array, SaeError> {
    weights
        .remove(key)
        .ok_or_else(|| SaeError::Invalid(format!("{} has no tensor {key}", file.display())))
}

/// SHA-256 over `"{name} {sha256}\n"` lines of the given files of `dir`.
pub(crate) fn files_sha256(dir: &Path, files: &[&str]) -> Result<String, SaeError> {
    Ok(saeidx_tensors::files_sha256(dir, files)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_compare_by_base_name() {
        assert_eq!(
            model_base_name("saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"),
            "smollm2-135m-instruct"
        );
        assert_eq!(
            model_base_name("HuggingFaceTB/SmolLM2-135M-Instruct"),
            "smollm2-135m-instruct"
        );
        assert_ne!(
            model_base_name("google/gemma-2-2b"),
            model_base_name("gpt2")
        );
        assert_eq!(
            model_base_name("gpt2-small"),
            model_base_name("openai-community/gpt2")
        );
        assert_eq!(
            model_base_name("pythia-70m-deduped"),
            model_base_name("EleutherAI/pythia-70m-deduped")
        );
    }

    #[test]
    fn hub_specs_split_repo_and_subfolder() {
        assert_eq!(
            SaeSource::parse("EleutherAI/sae-llama/layers.10", None),
            SaeSource::Hub {
                repo_id: "EleutherAI/sae-llama".into(),
                subfolder: "layers.10".into(),
                revision: None
            }
        );
        assert_eq!(SaeSource::parse("org/name", None).to_string(), "org/name");
    }
}
