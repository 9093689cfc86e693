//! The feature registry: what researchers have learned about features, stored with the
//! index as `labels.json` in the shape of mlxterp's `sae_features.json`:
//!
//! ```json
//! {"1234": {"name": "geographic_locations", "description": "...",
//!           "examples": ["Paris, France"], "confidence": "high", "notes": "..."}}
//! ```
//!
//! Labels drafted by an LLM (`saeidx labels draft`) carry two more keys, both optional so
//! that every older `labels.json` still loads: `provenance` (which LLM, prompt version
//! and date; whether a person has accepted or edited the draft since) and `scores` (how
//! well the label predicts where the feature fires: detection and fuzzing against the
//! index). A label without `provenance` was written by a person. The rules of who may
//! overwrite what live here: a draft never replaces a label a person wrote, accepted or
//! edited unless asked ([`Registry::propose_draft`]); a person's edit of a draft marks it
//! reviewed ([`Registry::edit`]); scores of an earlier text are dropped when the text
//! changes. [`Registry::to_mlxterp_json`] writes the five mlxterp keys only.
//!
//! The file is outside the checksummed data (labels are edited, the data is not) and is
//! replaced atomically on every change. Writers change it through [`Registry::update`],
//! which holds an exclusive lock on [`REGISTRY_LOCK`] from reading to saving, so that a
//! labelling run, the server and a person's edit at the same time never lose each
//! other's changes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::QueryError;

/// The registry's file name in an index folder.
pub const REGISTRY_FILE: &str = "labels.json";

/// The lock file in an index folder that writers of [`REGISTRY_FILE`] hold while they
/// read, change and save it (an advisory `flock`, released by the kernel however the
/// holder exits; the file itself stays).
pub const REGISTRY_LOCK: &str = ".labels.lock";

/// The labelling work folder of an index (`saeidx labels draft`'s cache of LLM answers),
/// carried with the registry when the nightly job replaces the index.
pub const WORK_DIR: &str = "autointerp";

/// What is known about one feature (every field optional, as in mlxterp's registry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// How an LLM drafted the label; absent for a label a person wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The label's scores against the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<LabelScores>,
}

/// Where a drafted label came from, and whether a person has reviewed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    /// Drafted (not reviewed yet), accepted or edited by a person.
    pub origin: Origin,
    /// The explainer LLM, as named to its endpoint.
    pub llm: String,
    /// The version of the prompt that drafted it.
    pub prompt_version: String,
    /// When it was drafted (RFC 3339, UTC).
    pub drafted_at: String,
    /// SHA-256 of the drafting request: the same evidence, LLM and prompt give the same
    /// request, so a later run knows when a feature's examples changed.
    pub request_sha256: String,
    /// When a person accepted or edited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<String>,
}

/// Who stands behind a drafted label now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// As the LLM wrote it; a later draft may replace it.
    Drafted,
    /// A person accepted it unchanged.
    Accepted,
    /// A person changed it.
    Edited,
}

/// How well a label's text predicts where its feature fires, scored against the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LabelScores {
    /// The text that was scored ([`FeatureLabel::explanation`]); scores of another text
    /// are stale.
    pub explanation: String,
    /// The LLM that scored it.
    pub llm: String,
    /// The version of the scoring prompts.
    pub prompt_version: String,
    /// When (RFC 3339, UTC).
    pub scored_at: String,
    /// Detection: the LLM tells contexts where the feature fires from ones where it does
    /// not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<ScoreSummary>,
    /// Fuzzing: the LLM tells contexts marked where the feature fires from ones marked
    /// elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzing: Option<ScoreSummary>,
}

/// One score: the confusion counts of the LLM's answers and their balanced accuracy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScoreSummary {
    /// (true-positive rate + true-negative rate) / 2 over the answered samples, a class
    /// with no answered sample counting 0 (delphi's definition); 0.5 is chance.
    pub balanced_accuracy: f64,
    /// Activating samples called activating.
    pub true_positives: u32,
    /// Non-activating samples called non-activating.
    pub true_negatives: u32,
    /// Non-activating samples called activating.
    pub false_positives: u32,
    /// Activating samples called non-activating.
    pub false_negatives: u32,
    /// Samples without a usable answer (left out of the counts above).
    pub failed: u32,
}

impl ScoreSummary {
    /// Samples with a usable answer.
    pub fn answered(&self) -> u32 {
        self.true_positives + self.true_negatives + self.false_positives + self.false_negatives
    }
}

impl FeatureLabel {
    /// The text a scorer is given and Neuronpedia shows: `name: description`, or
    /// whichever of the two is there (`None` when both are blank).
    pub fn explanation(&self) -> Option<String> {
        let present = |text: &Option<String>| text.clone().filter(|t| !t.trim().is_empty());
        match (present(&self.name), present(&self.description)) {
            (Some(name), Some(text)) => Some(format!("{name}: {text}")),
            (Some(text), None) | (None, Some(text)) => Some(text),
            (None, None) => None,
        }
    }

    /// Whether this is an LLM's draft that no person has reviewed.
    pub fn is_draft(&self) -> bool {
        self.provenance
            .as_ref()
            .is_some_and(|p| p.origin == Origin::Drafted)
    }

    /// The fields a person writes (mlxterp's five), without provenance or scores.
    pub fn text_fields(&self) -> FeatureLabel {
        FeatureLabel {
            provenance: None,
            scores: None,
            ..self.clone()
        }
    }

    /// Whether the scores are for the label's current text.
    pub fn scores_current(&self) -> bool {
        self.scores
            .as_ref()
            .is_some_and(|s| Some(&s.explanation) == self.explanation().as_ref())
    }
}

impl LabelScores {
    /// The confidence the scores stand for: the mean balanced accuracy of the scores
    /// with answered samples, `high` from 0.8, `medium` from 0.65, `low` below (0.5 is
    /// chance); `None` when no sample was answered.
    pub fn confidence(&self) -> Option<&'static str> {
        let values: Vec<f64> = [self.detection, self.fuzzing]
            .iter()
            .flatten()
            .filter(|s| s.answered() > 0)
            .map(|s| s.balanced_accuracy)
            .collect();
        if values.is_empty() {
            return None;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Some(if mean >= 0.8 {
            "high"
        } else if mean >= 0.65 {
            "medium"
        } else {
            "low"
        })
    }
}

/// The time now as RFC 3339 (UTC, seconds), as provenance and scores record it.
pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The labels of an index's features.
#[derive(Debug, Clone, Default, PartialEq)]
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

    /// The registry as `labels.json`: mlxterp's `sae_features.json` shape (pretty JSON,
    /// ids as keys) with each label's provenance and scores.
    pub fn to_json(&self) -> Vec<u8> {
        pretty(
            self.labels
                .iter()
                .map(|(feature, label)| (feature, label.clone())),
        )
    }

    /// The registry as mlxterp's `sae_features.json`: the five keys mlxterp knows
    /// (provenance and scores left out).
    pub fn to_mlxterp_json(&self) -> Vec<u8> {
        pretty(
            self.labels
                .iter()
                .map(|(feature, label)| (feature, label.text_fields())),
        )
    }

    /// Offers an LLM's `draft` for `feature`: it replaces no label, or an unreviewed
    /// draft; a label a person wrote, accepted or edited only with `overwrite_human`.
    /// Returns whether the draft was taken.
    pub fn propose_draft(
        &mut self,
        feature: u32,
        draft: FeatureLabel,
        overwrite_human: bool,
    ) -> bool {
        let free = self
            .labels
            .get(&feature)
            .is_none_or(|old| old.is_draft() || overwrite_human);
        if free {
            self.labels.insert(feature, draft);
        }
        free
    }

    /// Records `scores` on `feature`'s label, if the label still has the text they
    /// scored; the scores set the confidence of a draft, or of a label without one.
    /// Returns whether they were recorded.
    pub fn set_scores(&mut self, feature: u32, scores: LabelScores) -> bool {
        let Some(label) = self.labels.get_mut(&feature) else {
            return false;
        };
        if label.explanation().as_ref() != Some(&scores.explanation) {
            return false;
        }
        if label.is_draft() || label.confidence.is_none() {
            label.confidence = scores
                .confidence()
                .map(str::to_string)
                .or(label.confidence.take());
        }
        label.scores = Some(scores);
        true
    }

    /// A person's edit of `feature`'s label (`fields`: the five text fields; an empty
    /// label removes it). A draft becomes accepted if its text is unchanged, edited
    /// otherwise, reviewed at `now`; scores of a changed text are dropped.
    pub fn edit(&mut self, feature: u32, fields: FeatureLabel, now: &str) {
        let mut label = fields.text_fields();
        if let Some(old) = self.labels.get(&feature) {
            let unchanged = old.text_fields() == label;
            label.provenance = old.provenance.clone().map(|mut p| {
                p.origin = match (p.origin, unchanged) {
                    (_, false) => Origin::Edited,
                    (Origin::Drafted, true) => Origin::Accepted,
                    (origin, true) => origin,
                };
                p.reviewed_at = Some(now.to_string());
                p
            });
            if old.explanation() == label.explanation() {
                label.scores = old.scores.clone();
            }
        }
        self.set(feature, label);
    }

    /// A person accepts `feature`'s draft as it is. Returns whether there was a draft.
    pub fn accept(&mut self, feature: u32, now: &str) -> bool {
        match self.labels.get_mut(&feature) {
            Some(label) if label.is_draft() => {
                if let Some(p) = label.provenance.as_mut() {
                    p.origin = Origin::Accepted;
                    p.reviewed_at = Some(now.to_string());
                }
                true
            }
            _ => false,
        }
    }

    /// Reads the registry of the index folder `dir` as it is on disk, lets `change` edit
    /// it, and saves it if it changed, holding the exclusive lock [`REGISTRY_LOCK`] from
    /// the read to the rename: concurrent writers (a labelling run, the server, another
    /// process) wait for each other and each keeps what the others saved. Nothing is
    /// written when `change` fails. Returns the registry as it now is on disk and
    /// `change`'s value.
    pub fn update<T, E: From<QueryError>>(
        dir: &Path,
        d_sae: usize,
        change: impl FnOnce(&mut Registry) -> Result<T, E>,
    ) -> Result<(Registry, T), E> {
        let lock_path = dir.join(REGISTRY_LOCK);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(QueryError::io(lock_path.clone()))?;
        lock.lock().map_err(QueryError::io(lock_path))?;
        let before = Registry::load(dir, d_sae)?;
        let mut registry = before.clone();
        let value = change(&mut registry)?;
        if registry != before {
            registry.save(dir)?;
        }
        Ok((registry, value))
    }

    /// Writes the registry into the index folder `dir` atomically. Callers that read
    /// the registry first use [`Registry::update`] instead, which keeps concurrent
    /// writers' changes.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, QueryError> {
        let path = dir.join(REGISTRY_FILE);
        saeidx_format::atomic::write_file(&path, &self.to_json())?;
        Ok(path)
    }
}

fn pretty<'a>(labels: impl Iterator<Item = (&'a u32, FeatureLabel)>) -> Vec<u8> {
    let raw: BTreeMap<String, FeatureLabel> = labels
        .map(|(feature, label)| (feature.to_string(), label))
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&raw).expect("labels serialize");
    bytes.push(b'\n');
    bytes
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

    fn draft(name: &str) -> FeatureLabel {
        FeatureLabel {
            name: Some(name.into()),
            description: Some(format!("{name} words")),
            provenance: Some(Provenance {
                origin: Origin::Drafted,
                llm: "some-llm".into(),
                prompt_version: "draft-1".into(),
                drafted_at: "2026-11-30T00:00:00Z".into(),
                request_sha256: "ab".repeat(32),
                reviewed_at: None,
            }),
            ..FeatureLabel::default()
        }
    }

    fn scores(explanation: &str, detection: f64, fuzzing: f64) -> LabelScores {
        let summary = |balanced_accuracy| ScoreSummary {
            balanced_accuracy,
            true_positives: 1,
            ..ScoreSummary::default()
        };
        LabelScores {
            explanation: explanation.into(),
            llm: "some-llm".into(),
            prompt_version: "score-1".into(),
            scored_at: "2026-11-30T00:00:00Z".into(),
            detection: Some(summary(detection)),
            fuzzing: Some(summary(fuzzing)),
        }
    }

    #[test]
    fn drafts_never_replace_what_a_person_wrote_unless_asked() {
        let mut registry = Registry::default();
        let human = FeatureLabel {
            name: Some("mine".into()),
            ..FeatureLabel::default()
        };
        registry.set(1, human.clone());
        assert!(!registry.propose_draft(1, draft("llm"), false));
        assert_eq!(registry.get(1), Some(&human));
        assert!(registry.propose_draft(2, draft("first"), false));
        assert!(registry.propose_draft(2, draft("second"), false));
        assert_eq!(registry.get(2).unwrap().name.as_deref(), Some("second"));
        // Accepted and edited drafts belong to a person now.
        assert!(registry.accept(2, "2026-12-01T00:00:00Z"));
        assert!(!registry.accept(2, "2026-12-01T00:00:00Z"));
        assert!(!registry.propose_draft(2, draft("third"), false));
        let provenance = registry.get(2).unwrap().provenance.clone().unwrap();
        assert_eq!(provenance.origin, Origin::Accepted);
        assert_eq!(
            provenance.reviewed_at.as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        assert!(registry.propose_draft(1, draft("asked"), true));
        assert_eq!(registry.get(1).unwrap().name.as_deref(), Some("asked"));
    }

    #[test]
    fn a_persons_edit_marks_the_draft_reviewed_and_drops_stale_scores() {
        let mut registry = Registry::default();
        registry.propose_draft(3, draft("nation"), false);
        assert!(registry.set_scores(3, scores("nation: nation words", 0.9, 0.7)));
        let label = registry.get(3).unwrap();
        assert_eq!(label.confidence.as_deref(), Some("high"));
        assert!(label.scores_current());
        // Saving the same text accepts it, scores kept.
        let same = label.text_fields();
        registry.edit(3, same.clone(), "2026-12-01T00:00:00Z");
        let label = registry.get(3).unwrap();
        assert_eq!(label.provenance.as_ref().unwrap().origin, Origin::Accepted);
        assert!(label.scores.is_some());
        // A new description: edited, scores of the old text dropped.
        let changed = FeatureLabel {
            description: Some("the Union".into()),
            ..same
        };
        registry.edit(3, changed, "2026-12-02T00:00:00Z");
        let label = registry.get(3).unwrap();
        assert_eq!(label.provenance.as_ref().unwrap().origin, Origin::Edited);
        assert!(label.scores.is_none() && !label.is_draft());
        // Scores of another text are refused; a person's confidence stays.
        assert!(!registry.set_scores(3, scores("nation: nation words", 0.5, 0.5)));
        registry.set(
            4,
            FeatureLabel {
                description: Some("x".into()),
                confidence: Some("medium".into()),
                ..FeatureLabel::default()
            },
        );
        assert!(registry.set_scores(4, scores("x", 0.5, 0.6)));
        assert_eq!(
            registry.get(4).unwrap().confidence.as_deref(),
            Some("medium")
        );
        registry.edit(5, FeatureLabel::default(), "now");
        assert!(registry.get(5).is_none());
    }

    #[test]
    fn confidence_follows_the_mean_balanced_accuracy() {
        assert_eq!(scores("x", 0.8, 0.8).confidence(), Some("high"));
        assert_eq!(scores("x", 0.9, 0.5).confidence(), Some("medium"));
        assert_eq!(scores("x", 0.6, 0.6).confidence(), Some("low"));
        let none = LabelScores {
            detection: None,
            fuzzing: None,
            ..scores("x", 0.0, 0.0)
        };
        assert_eq!(none.confidence(), None);
        let unanswered = LabelScores {
            fuzzing: Some(ScoreSummary {
                failed: 10,
                ..ScoreSummary::default()
            }),
            ..scores("x", 0.9, 0.0)
        };
        assert_eq!(unanswered.confidence(), Some("high"));
    }

    #[test]
    fn provenance_round_trips_and_the_mlxterp_export_keeps_five_keys() {
        let mut registry = Registry::default();
        registry.propose_draft(7, draft("nation"), false);
        registry.set_scores(7, scores("nation: nation words", 0.75, 0.65));
        let again = Registry::parse(&registry.to_json(), Path::new("x"), 8192).unwrap();
        assert_eq!(again, registry);
        let exported: serde_json::Value =
            serde_json::from_slice(&registry.to_mlxterp_json()).unwrap();
        let keys: Vec<&String> = exported["7"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["confidence", "description", "name"]);
        assert_eq!(exported["7"]["confidence"], "medium");
    }

    #[test]
    fn concurrent_updates_keep_every_writers_change() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for writer in 0..4u32 {
                let dir = dir.path();
                scope.spawn(move || {
                    for step in 0..25u32 {
                        Registry::update(dir, 8192, |registry| {
                            let label = FeatureLabel {
                                name: Some(format!("writer {writer} step {step}")),
                                ..FeatureLabel::default()
                            };
                            registry.set(writer * 100 + step, label);
                            Ok::<_, QueryError>(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let saved = Registry::load(dir.path(), 8192).unwrap();
        assert_eq!(saved.len(), 100);
        assert_eq!(
            saved.get(317).unwrap().name.as_deref(),
            Some("writer 3 step 17")
        );
    }

    #[test]
    fn a_failed_update_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let failed = Registry::update(dir.path(), 8192, |registry| {
            registry.set(1, draft("x"));
            Err::<(), _>(QueryError::NoDraft { feature: 1 })
        });
        assert!(matches!(failed, Err(QueryError::NoDraft { feature: 1 })));
        assert!(!dir.path().join(REGISTRY_FILE).exists());
    }
}
