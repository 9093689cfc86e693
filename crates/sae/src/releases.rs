//! Published SAEs by name: SAELens's release table.
//!
//! SAELens names each published SAE `RELEASE/SAE_ID` (e.g.
//! `gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical`) and keeps the table
//! that maps the name to a Hub repo, a folder in it, the model, the loader that reads it
//! (`conversion_func`) and settings that override the SAE's own config, in
//! `pretrained_saes.yaml` inside its PyPI wheel. saeidx compiles in a pinned copy of that
//! file (`crates/sae/data/`, refreshed by `scripts/refresh-saelens-releases.sh`);
//! `SAEIDX_SAELENS_RELEASES=PATH` reads another copy instead.
//!
//! A release id resolves like SAELens's `get_repo_id_and_folder_name`,
//! `get_config_overrides` and `get_norm_scaling_factor`. Of the loaders, saeidx reads
//! SAELens's own folders (no `conversion_func`), Gemma Scope (`gemma_2`) and Gemma Scope 2
//! (`gemma_3`); the others are refused by name.

use std::{collections::BTreeMap, path::PathBuf, sync::OnceLock};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::SaeError;

/// The pinned table, as the `sae-lens` wheel ships it.
const PINNED: &str = include_str!("../data/pretrained_saes.yaml");
/// Which `sae-lens` wheel the pinned table comes from.
pub const PINNED_SOURCE: &str = include_str!("../data/pretrained_saes.source");
/// The environment variable naming another copy of the table.
pub const TABLE_ENV: &str = "SAEIDX_SAELENS_RELEASES";

/// How the files of a release are laid out (SAELens's `conversion_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// SAELens's own folders: `cfg.json` + `sae_weights.safetensors`.
    SaeLens,
    /// Gemma Scope: `params.npz` (`gemma_2`).
    GemmaScope,
    /// Gemma Scope 2: `params.safetensors` (`gemma_3`).
    GemmaScope2,
}

/// A release id resolved through the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The release (`gemma-scope-2b-pt-res-canonical`).
    pub release: String,
    /// The SAE within it (`layer_12/width_16k/canonical`).
    pub sae_id: String,
    /// The Hub repo holding it.
    pub repo_id: String,
    /// The folder in the repo.
    pub folder: String,
    /// The model the table names.
    pub model: String,
    /// How its files are laid out.
    pub layout: Layout,
    /// Values that replace the SAE config's.
    pub config_overrides: Map<String, Value>,
    /// The input scale of an `expected_average_only_in` SAE, when the table records it.
    pub norm_scaling_factor: Option<f32>,
    /// Its Neuronpedia id, when the table records it.
    pub neuronpedia: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReleaseEntry {
    repo_id: String,
    model: String,
    #[serde(default)]
    conversion_func: Option<String>,
    #[serde(default)]
    config_overrides: Option<Map<String, Value>>,
    saes: Vec<SaeEntry>,
}

#[derive(Debug, Deserialize)]
struct SaeEntry {
    id: Value,
    path: Value,
    #[serde(default)]
    neuronpedia: Option<String>,
    #[serde(default)]
    norm_scaling_factor: Option<f64>,
}

/// The release table.
#[derive(Debug)]
pub struct ReleaseTable {
    releases: BTreeMap<String, ReleaseEntry>,
    /// Where the table came from (the pinned wheel, or a file).
    pub origin: String,
}

/// A YAML scalar as SAELens reads it (`str(path)` for numbers).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl ReleaseTable {
    /// Parses a `pretrained_saes.yaml`.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SaeError> {
        let releases = serde_norway::from_str(text).map_err(|e| {
            SaeError::Invalid(format!("{origin} is not SAELens's release table: {e}"))
        })?;
        Ok(Self {
            releases,
            origin: origin.to_string(),
        })
    }

    /// The table in use: the file `SAEIDX_SAELENS_RELEASES` names, else the pinned copy.
    /// Parsed once per process.
    pub fn current() -> Result<&'static ReleaseTable, SaeError> {
        static TABLE: OnceLock<Result<ReleaseTable, String>> = OnceLock::new();
        let table = TABLE.get_or_init(|| match std::env::var_os(TABLE_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("{TABLE_ENV}={}: {e}", path.display()))
                    .and_then(|text| {
                        Self::from_yaml(&text, &path.display().to_string())
                            .map_err(|e| e.to_string())
                    })
            }
            None => {
                let origin = PINNED_SOURCE.lines().next().unwrap_or("sae-lens");
                Self::from_yaml(PINNED, &format!("the pinned table of {origin}"))
                    .map_err(|e| e.to_string())
            }
        });
        table.as_ref().map_err(|e| SaeError::Invalid(e.clone()))
    }

    /// Whether `name` is a release in the table.
    pub fn contains(&self, name: &str) -> bool {
        self.releases.contains_key(name)
    }

    /// Resolves `RELEASE/SAE_ID` (the SAE id may itself contain `/`).
    pub fn resolve(&self, spec: &str) -> Result<Release, SaeError> {
        let (release, sae_id) = spec.split_once('/').ok_or_else(|| {
            SaeError::Invalid(format!(
                "{spec:?} is not a release id: expected RELEASE/SAE_ID, e.g. \
                 gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical"
            ))
        })?;
        let entry = self.releases.get(release).ok_or_else(|| {
            let shared = |name: &str| {
                name.bytes()
                    .zip(release.bytes())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            let mut near: Vec<&str> = self.releases.keys().map(String::as_str).collect();
            near.sort_by_key(|name| std::cmp::Reverse(shared(name)));
            near.truncate(5);
            SaeError::Invalid(format!(
                "no release {release:?} in {} ({} releases){}",
                self.origin,
                self.releases.len(),
                if near.is_empty() {
                    String::new()
                } else {
                    format!("; similar: {}", near.join(", "))
                }
            ))
        })?;
        let sae = entry
            .saes
            .iter()
            .find(|sae| scalar(&sae.id) == sae_id)
            .ok_or_else(|| {
                let ids: Vec<String> = entry.saes.iter().take(5).map(|s| scalar(&s.id)).collect();
                SaeError::Invalid(format!(
                    "release {release} has no SAE {sae_id:?}; its {} ids include {}",
                    entry.saes.len(),
                    ids.join(", ")
                ))
            })?;
        let layout = match entry.conversion_func.as_deref() {
            None => Layout::SaeLens,
            Some("gemma_2") => Layout::GemmaScope,
            Some("gemma_3") => Layout::GemmaScope2,
            Some(other) => {
                return Err(SaeError::Unsupported(format!(
                    "release {release} is read by SAELens's {other:?} loader; saeidx reads \
                     SAELens folders, Gemma Scope (gemma_2) and Gemma Scope 2 (gemma_3)"
                )));
            }
        };
        let mut config_overrides = entry.config_overrides.clone().unwrap_or_default();
        if let Some(id) = &sae.neuronpedia {
            config_overrides.insert("neuronpedia_id".into(), Value::String(id.clone()));
        }
        Ok(Release {
            release: release.to_string(),
            sae_id: sae_id.to_string(),
            repo_id: entry.repo_id.clone(),
            folder: scalar(&sae.path),
            model: entry.model.clone(),
            layout,
            config_overrides,
            norm_scaling_factor: sae.norm_scaling_factor.map(|f| f as f32),
            neuronpedia: sae.neuronpedia.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_table_resolves_published_saes() {
        let table = ReleaseTable::current().unwrap();
        assert!(table.releases.len() > 100, "{}", table.releases.len());
        let scope = table
            .resolve("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
            .unwrap();
        assert_eq!(scope.repo_id, "google/gemma-scope-2b-pt-res");
        assert_eq!(scope.folder, "layer_12/width_16k/average_l0_82");
        assert_eq!(scope.model, "gemma-2-2b");
        assert_eq!(scope.layout, Layout::GemmaScope);

        let gpt2 = table
            .resolve("gpt2-small-res-jb/blocks.8.hook_resid_pre")
            .unwrap();
        assert_eq!(gpt2.repo_id, "jbloom/GPT2-Small-SAEs-Reformatted");
        assert_eq!(gpt2.folder, "blocks.8.hook_resid_pre");
        assert_eq!(gpt2.layout, Layout::SaeLens);
        assert_eq!(
            gpt2.config_overrides["model_from_pretrained_kwargs"]["center_writing_weights"],
            true
        );

        let scaled = table
            .resolve("gpt2-small-mlp-tm/blocks.0.hook_mlp_out")
            .unwrap();
        assert_eq!(
            scaled.norm_scaling_factor,
            Some(1.049_317_316_132_615_f64 as f32)
        );
    }

    #[test]
    fn unknown_names_and_other_loaders_are_clear_errors() {
        let table = ReleaseTable::current().unwrap();
        let error = table
            .resolve("gemma-scope-2b-pt-res-canonical/layer_99")
            .unwrap_err();
        assert!(
            error.to_string().contains("has no SAE \"layer_99\""),
            "{error}"
        );
        let error = table.resolve("gemma-scope-2b-pt-rez/layer_1").unwrap_err();
        assert!(
            error.to_string().contains("similar: gemma-scope-2b-pt-res"),
            "{error}"
        );
        let error = table.resolve("no-slash").unwrap_err();
        assert!(error.to_string().contains("RELEASE/SAE_ID"), "{error}");
        let llama_scope = table
            .releases
            .iter()
            .find(|(_, e)| e.conversion_func.as_deref() == Some("llama_scope"))
            .map(|(name, e)| format!("{name}/{}", scalar(&e.saes[0].id)))
            .unwrap();
        let error = table.resolve(&llama_scope).unwrap_err();
        assert!(
            error.to_string().contains("\"llama_scope\" loader"),
            "{error}"
        );
    }
}
