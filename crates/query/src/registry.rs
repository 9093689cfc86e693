//! The feature registry: what researchers have learned about features, stored with the
//! index as `labels.json` in the shape of mlxterp's `sae_features.json`:
//!
//! ```json
//! {"1234": {"name": "geographic_locations", "description": "...",
//!           "examples": ["Paris, France"], "confidence": "high", "notes": "..."}}
//! ```
//!
//! The file is outside the checksummed data (labels are edited, the data is not) and is
//! replaced atomically on every change.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::QueryError;

/// The registry's file name in an index folder.
pub const REGISTRY_FILE: &str = "labels.json";

/// What is known about one feature (every field optional, as in mlxterp's registry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FeatureLabel {
    /// A short name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it responds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Example texts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// How sure the labeller is (`high`, `medium`, `low`, or free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The labels of an index's features.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    labels: BTreeMap<u32, FeatureLabel>,
}

impl Registry {
    /// The registry of the index in `dir` (empty if it has none yet); ids must be below
    /// `d_sae`.
    pub fn load(dir: &Path, d_sae: usize) -> Result<Self, QueryError> {
        let path = dir.join(REGISTRY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path, d_sae),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(QueryError::io(path)(e)),
        }
    }

    /// Parses a registry in mlxterp's `sae_features.json` shape (feature ids as keys).
    pub fn parse(bytes: &[u8], path: &Path, d_sae: usize) -> Result<Self, QueryError> {
        let invalid = |reason: String| QueryError::Registry {
            path: path.to_path_buf(),
            reason,
        };
        let raw: BTreeMap<String, FeatureLabel> = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "not a feature registry ({{\"<feature id>\": {{\"name\": ..., \"description\": ...}}}}): {e}"
            ))
        })?;
        let mut labels = BTreeMap::new();
        for (key, label) in raw {
            let feature: u32 = key
                .trim()
                .parse()
                .map_err(|_| invalid(format!("key {key:?} is not a feature id")))?;
            if feature as usize >= d_sae {
                return Err(invalid(format!(
                    "feature {feature} is outside this SAE's {d_sae} features"
                )));
            }
            labels.insert(feature, label);
        }
        Ok(Self { labels })
    }

    /// The label of `feature`, if any.
    pub fn get(&self, feature: u32) -> Option<&FeatureLabel> {
        self.labels.get(&feature)
    }

    /// Every labelled feature, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &FeatureLabel)> {
        self.labels.iter().map(|(feature, label)| (*feature, label))
    }

    /// Number of labelled features.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no feature is labelled.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sets (or, with an empty label, removes) the label of `feature`.
    pub fn set(&mut self, feature: u32, label: FeatureLabel) {
        if label == FeatureLabel::default() {
            self.labels.remove(&feature);
        } else {
            self.labels.insert(feature, label);
        }
    }

    /// Adds every label of `other`, replacing labels of the same features.
    pub fn merge(&mut self, other: Registry) {
        self.labels.extend(other.labels);
    }

    /// The registry as mlxterp's `sae_features.json` (pretty JSON, ids as keys).
    pub fn to_json(&self) -> Vec<u8> {
        let raw: BTreeMap<String, &FeatureLabel> = self
            .labels
            .iter()
            .map(|(feature, label)| (feature.to_string(), label))
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&raw).expect("labels serialize");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the registry into the index folder `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, QueryError> {
        let path = dir.join(REGISTRY_FILE);
        saeidx_format::atomic::write_file(&path, &self.to_json())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_mlxterp_shape() {
        let json = br#"{"1234": {"name": "geographic_locations",
            "description": "Activates on city and country names",
            "examples": ["Paris, France"], "confidence": "high",
            "notes": "Especially strong for European locations"},
            "5678": {"name": "mathematical_notation", "confidence": "medium"}}"#;
        let registry = Registry::parse(json, Path::new("x"), 8192).unwrap();
        assert_eq!(registry.len(), 2);
        assert_eq!(
            registry.get(5678).unwrap().confidence.as_deref(),
            Some("medium")
        );
        let again = Registry::parse(&registry.to_json(), Path::new("x"), 8192).unwrap();
        assert_eq!(again, registry);
    }

    #[test]
    fn refuses_ids_outside_the_sae_and_other_shapes() {
        let error = Registry::parse(br#"{"9000": {"name": "x"}}"#, Path::new("x"), 8192)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("outside this SAE's 8192 features"),
            "{error}"
        );
        let error = Registry::parse(br#"[1, 2]"#, Path::new("x"), 8192)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a feature registry"), "{error}");
        let error = Registry::parse(br#"{"abc": {}}"#, Path::new("x"), 8192)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a feature id"), "{error}");
    }
}
