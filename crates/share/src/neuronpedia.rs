//! Export to Neuronpedia's import format: the layout its importer
//! (`apps/webapp/app/api/admin/import`) reads, as written by Neuronpedia's own
//! converters (`utils/neuronpedia-utils`).
//!
//! ```text
//! OUT/<modelId>/<sourceId>/
//!   model.jsonl  sourceset.jsonl  source.jsonl     one JSON line each
//!   features/batch-N.jsonl.gz                      one line per feature
//!   activations/batch-N.jsonl.gz                   its examples (same N)
//!   explanations/batch-N.jsonl.gz                  labels, when the index has any
//! ```
//!
//! A source id is `<layer>-<set name>` (e.g. `15-res-saeidx`). An activation example is
//! a context window: its tokens' text pieces (they concatenate to the document text),
//! the feature's value on each (0 on special tokens and attention sinks, which rankings
//! leave out), the max, its index and the min. Examples are the top ones (`binMin` =
//! -1) and some from each activation band (`binMin`/`binMax` its range, `binContains`
//! its share), as SAEDashboard's exports have. Every line of a batch has the same keys
//! (the importer takes the columns from the first line) and ids are derived from the
//! index's data hash, the feature and the example, so a re-export is idempotent.
//! `schemas/neuronpedia/` holds a JSON Schema per record type.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use saeidx_format::atomic::{StagedDir, write_file, write_file_with};
use saeidx_query::{Exclusions, QueryIndex, layout::HISTOGRAM_BINS};
use serde_json::{Value, json};

use crate::ShareError;

/// Neuronpedia's seeded default user, which its own export scripts fall back to.
pub const DEFAULT_CREATOR_ID: &str = "clkht01d40000jv08hvalcvly";

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Neuronpedia's model id (e.g. `gpt2-small`).
    pub model_id: String,
    /// The source set's name (the part of the source id after the layer).
    pub set_name: String,
    /// The user the records belong to.
    pub creator_id: String,
    /// Features to export (`None`: every feature active on a counted token).
    pub features: Option<Vec<u32>>,
    /// Top examples per feature.
    pub top_examples: usize,
    /// Activation bands below the top.
    pub bands: usize,
    /// Examples per band.
    pub per_band: usize,
    /// Tokens of context on each side of an example's token.
    pub context: u32,
    /// Features per batch file.
    pub features_per_batch: usize,
}

impl Default for ExportRequest {
    fn default() -> Self {
        Self {
            model_id: String::new(),
            set_name: "res-saeidx".into(),
            creator_id: DEFAULT_CREATOR_ID.into(),
            features: None,
            top_examples: 20,
            bands: 5,
            per_band: 5,
            context: 32,
            features_per_batch: 128,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The source folder (`OUT/<modelId>/<sourceId>`).
    pub folder: PathBuf,
    /// The source id.
    pub source_id: String,
    /// Features written.
    pub features: usize,
    /// Activation examples written.
    pub activations: usize,
    /// Explanations (labels) written.
    pub explanations: usize,
    /// Batch files written.
    pub batches: usize,
}

/// The layer number in a hook name such as `blocks.15.hook_resid_post`.
fn hook_layer(hook: &str) -> Option<u32> {
    hook.split('.').nth(1)?.parse().ok()
}

/// Writes the export of `index` under `out`, replacing an earlier export of the same
/// source atomically.
pub fn export(
    index: &QueryIndex,
    request: &ExportRequest,
    out: &Path,
) -> Result<Exported, ShareError> {
    let invalid = |what: &str| ShareError::Invalid(what.to_string());
    let ok_id = |id: &str| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if !ok_id(&request.model_id) || !ok_id(&request.set_name) {
        return Err(invalid(
            "the model id and set name must be non-empty and use only letters, digits, '.', '_' and '-'",
        ));
    }
    if request.features_per_batch == 0 || request.top_examples == 0 {
        return Err(invalid(
            "features per batch and top examples must be at least 1",
        ));
    }
    let manifest = index.manifest();
    let hook = &manifest.job.hook;
    let layer = hook_layer(hook).ok_or_else(|| {
        ShareError::Invalid(format!(
            "cannot tell the layer of hook {hook:?} (expected blocks.N.…)"
        ))
    })?;
    let source_id = format!("{layer}-{}", request.set_name);
    let features = match &request.features {
        Some(features) => features.clone(),
        None => index.live_features()?,
    };
    let data_hash = &index.query_manifest().index_data_sha256;
    let id_prefix = format!("sx{}", &data_hash[..data_hash.len().min(10)]);
    let folder = out.join(&request.model_id).join(&source_id);
    let staged = StagedDir::new(&folder)?;
    let root = staged.path();
    let common = Common {
        model_id: &request.model_id,
        source_id: &source_id,
        creator_id: &request.creator_id,
    };

    write_file(
        &root.join("model.jsonl"),
        line(&json!({
            "id": request.model_id,
            "displayName": manifest.job.model.source,
            "displayNameShort": request.model_id,
            "creatorId": request.creator_id,
            "tlensId": Value::Null,
            "dimension": manifest.job.model.hidden_size,
            "layers": manifest.job.model.num_layers,
            "neuronsPerLayer": manifest.job.sae.d_sae,
            "visibility": "PUBLIC",
            "instruct": false,
            "inferenceEnabled": false,
        }))
        .as_bytes(),
    )?;
    write_file(
        &root.join("sourceset.jsonl"),
        line(&json!({
            "modelId": request.model_id,
            "name": request.set_name,
            "creatorId": request.creator_id,
            "creatorName": "saeidx",
            "hasDashboards": true,
            "visibility": "PUBLIC",
            "type": "sae",
            "description": format!("SAE {} at {hook}", manifest.job.sae.source),
            "urls": [],
        }))
        .as_bytes(),
    )?;
    let counts = index.query_manifest().counts;
    write_file(
        &root.join("source.jsonl"),
        line(&json!({
            "id": source_id,
            "modelId": request.model_id,
            "setName": request.set_name,
            "creatorId": request.creator_id,
            "hasDashboards": true,
            "inferenceEnabled": false,
            "visibility": "PUBLIC",
            "dataset": manifest.job.corpus.sources.join(", "),
            "num_prompts": counts.documents,
            "num_tokens_in_prompt": manifest.job.window.length,
            "notes": format!(
                "saeidx {} index: model {} (weights SHA-256 {}), SAE {} (SHA-256 {}), hook {hook}, {} tokens",
                manifest.saeidx_version, manifest.job.model.source,
                manifest.job.model.weights_sha256, manifest.job.sae.source,
                manifest.job.sae.sha256, counts.tokens
            ),
        }))
        .as_bytes(),
    )?;

    let mut exported = Exported {
        folder: folder.clone(),
        source_id: source_id.clone(),
        features: 0,
        activations: 0,
        explanations: 0,
        batches: 0,
    };
    for (batch, chunk) in features.chunks(request.features_per_batch).enumerate() {
        let mut feature_lines = Vec::with_capacity(chunk.len());
        let mut activation_lines = Vec::new();
        let mut explanation_lines = Vec::new();
        for &feature in chunk {
            let report = index.feature(
                feature,
                request.top_examples,
                request.bands,
                0,
                0,
                Exclusions::default(),
            )?;
            feature_lines.push(common.feature(&report.stats, hook));
            let mut examples = Vec::new();
            for hit in &report.top {
                examples.push((hit, -1.0, short(report.stats.max), -1.0));
            }
            for band in &report.quantiles {
                for hit in band.examples.iter().take(request.per_band) {
                    examples.push((hit, short(band.min), short(band.max), band.to - band.from));
                }
            }
            for (n, (hit, bin_min, bin_max, bin_contains)) in examples.into_iter().enumerate() {
                let window = index.window(hit.doc, hit.position, request.context, feature)?;
                let qualifying = window
                    .iter()
                    .position(|t| t.position == hit.position)
                    .unwrap_or(0);
                let tokens: Vec<&str> = window.iter().map(|t| t.text.as_str()).collect();
                let values: Vec<f64> = window
                    .iter()
                    .map(|t| {
                        if t.flags == 0 {
                            short(t.activation)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let (max_index, max) =
                    values
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f64::MIN),
                            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                        );
                let min = values.iter().copied().fold(f64::MAX, f64::min);
                activation_lines.push(json!({
                    "id": format!("{id_prefix}{feature:07x}{n:04x}"),
                    "modelId": common.model_id,
                    "layer": common.source_id,
                    "index": feature.to_string(),
                    "creatorId": common.creator_id,
                    "tokens": tokens,
                    "values": values,
                    "maxValue": max,
                    "maxValueTokenIndex": max_index,
                    "minValue": min,
                    "dataIndex": hit.id,
                    "dataSource": hit.source,
                    "binMin": bin_min,
                    "binMax": bin_max,
                    "binContains": bin_contains,
                    "qualifyingTokenIndex": qualifying,
                }));
            }
            if let Some(label) = &report.label {
                let description = match (&label.name, &label.description) {
                    (Some(name), Some(text)) => format!("{name}: {text}"),
                    (Some(text), None) | (None, Some(text)) => text.clone(),
                    (None, None) => continue,
                };
                explanation_lines.push(json!({
                    "id": format!("{id_prefix}{feature:07x}e"),
                    "modelId": common.model_id,
                    "layer": common.source_id,
                    "index": feature.to_string(),
                    "description": description,
                    "authorId": common.creator_id,
                    "notes": label.notes.clone().unwrap_or_default(),
                }));
            }
        }
        exported.features += feature_lines.len();
        exported.activations += activation_lines.len();
        exported.explanations += explanation_lines.len();
        for (kind, lines) in [
            ("features", &feature_lines),
            ("activations", &activation_lines),
            ("explanations", &explanation_lines),
        ] {
            if lines.is_empty() {
                continue;
            }
            let file = root.join(kind).join(format!("batch-{batch}.jsonl.gz"));
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(ShareError::io(parent))?;
            }
            write_file_with(&file, |out| {
                let mut gz = GzEncoder::new(out, Compression::new(5));
                for value in lines.iter() {
                    gz.write_all(line(value).as_bytes())?;
                }
                gz.finish().map(|_| ())
            })?;
            exported.batches += 1;
        }
    }
    staged.publish()?;
    Ok(exported)
}

/// The fields every record of one export shares.
struct Common<'a> {
    model_id: &'a str,
    source_id: &'a str,
    creator_id: &'a str,
}

impl Common<'_> {
    /// A feature's record: density, max and the activation histogram (bin centres and
    /// counts over the feature's nonzero values).
    fn feature(&self, stats: &saeidx_query::FeatureStats, hook: &str) -> Value {
        let width = stats.max / HISTOGRAM_BINS as f32;
        let centres: Vec<f64> = (0..stats.histogram.len())
            .map(|i| short((i as f32 + 0.5) * width))
            .collect();
        json!({
            "modelId": self.model_id,
            "layer": self.source_id,
            "index": stats.feature.to_string(),
            "creatorId": self.creator_id,
            "maxActApprox": short(stats.max),
            "frac_nonzero": stats.density,
            "freq_hist_data_bar_values": centres,
            "freq_hist_data_bar_heights": stats.histogram,
            "hookName": hook,
        })
    }
}

/// An `f32` as the shortest decimal that reads back as it (`2.3339844`, not the
/// `2.333984375` of its `f64` widening): smaller files, the same values.
fn short(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// A JSON line.
fn line(value: &Value) -> String {
    let mut text = value.to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_come_from_hook_names() {
        assert_eq!(hook_layer("blocks.15.hook_resid_post"), Some(15));
        assert_eq!(hook_layer("blocks.0.attn.hook_z"), Some(0));
        assert_eq!(hook_layer("embed"), None);
    }
}
