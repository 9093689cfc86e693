//! Export to Neuronpedia's import format: the files its importer
//! (`apps/webapp/app/api/admin/import`) reads from `v1/<modelId>/<sourceId>/` of its S3
//! bucket, as written by Neuronpedia's own converters (`utils/neuronpedia-utils`).
//!
//! ```text
//! OUT/<modelId>/<sourceId>/
//!   model.jsonl  sourceset.jsonl  source.jsonl     one JSON line each
//!   features/batch-N.jsonl.gz                      one line per feature
//!   activations/batch-N.jsonl.gz                   its examples (same N)
//!   explanations/batch-N.jsonl.gz                  labels, when the index has any
//! ```
//!
//! The importer creates the model, source set and source rows through Prisma (which
//! rejects a field the table lacks) when they do not exist yet, then inserts each batch
//! file with `INSERT … SELECT … FROM jsonb_to_recordset(…) ON CONFLICT DO NOTHING`, its
//! columns taken from the file's first line (keys that are no column are dropped).
//! So every record here has only column names as keys, every line of a batch has the
//! same keys, every NOT NULL column without a default is present, and the row ids are
//! unique per model, source and feature: exporting one index under two set names or
//! model ids imports both in full, and re-importing the same export adds nothing.
//! `schemas/neuronpedia/` states the records as JSON Schemas; `tests/neuronpedia.rs`
//! imports exports into a PostgreSQL holding Neuronpedia's tables.
//!
//! A source id is `<layer>-<set name>` (e.g. `15-res-saeidx`). An activation example is
//! a context window: its tokens' text pieces (they concatenate to the document text),
//! the feature's value on each (0 on special tokens and attention sinks, which rankings
//! leave out), the max, its index and the min. Examples are the top ones (`binMin` =
//! -1) and some from each activation band (`binMin`/`binMax` its range, `binContains`
//! its share), as SAEDashboard's exports have. Labels become explanations written by
//! the creator, with no explanation type; a drafted label's LLM, prompt and scores go
//! into the notes, and into `explanationModelName` only when the export is told the
//! instance knows that name (Neuronpedia's foreign key to `ExplanationModelType`).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use saeidx_format::{
    atomic::{StagedDir, write_file, write_file_with},
    checksum::sha256_hex,
    manifest::JobSpec,
};
use saeidx_query::{
    AnyIndex, Exclusions, FeatureLabel, FeatureReport, FeatureRequest, FeatureStats, TextHit,
    index::WindowToken,
    layout::HISTOGRAM_BINS,
    registry::{Origin, ScoreSummary},
};
use serde_json::{Value, json};

use crate::ShareError;

/// Neuronpedia's seeded default user, which its own export scripts fall back to.
pub const DEFAULT_CREATOR_ID: &str = "clkht01d40000jv08hvalcvly";

/// The longest model id Neuronpedia accepts.
const MAX_ID_LEN: usize = 128;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Neuronpedia's model id (e.g. `gpt2-small`): lower-case letters, digits, `-`, `_`.
    pub model_id: String,
    /// The source set's name (the part of the source id after the layer).
    pub set_name: String,
    /// The user the records belong to.
    pub creator_id: String,
    /// Who made the model, as Neuronpedia shows it (`None`: the organisation of the
    /// model's Hugging Face repo, or `""` for a local model folder, as Neuronpedia's own
    /// exporter writes).
    pub owner: Option<String>,
    /// Whether the model is instruction-tuned (`None`: whether its name has a word
    /// `instruct`, `it` or `chat`, as in `SmolLM2-135M-Instruct` or `gemma-2-2b-it`).
    pub instruct: Option<bool>,
    /// The dataset the examples come from, as Neuronpedia shows it (`None`: the corpus
    /// files' names and SHA-256 prefixes).
    pub dataset: Option<String>,
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
    /// Write the LLM that drafted a label (accepted or not yet reviewed) as its
    /// `explanationModelName`. Off by default: Neuronpedia refuses a name its
    /// `ExplanationModelType` table lacks (a foreign key), so only a name the instance
    /// knows (e.g. `gpt-4o-mini`) may go there; the notes always name the LLM.
    pub explanation_model_names: bool,
}

impl Default for ExportRequest {
    fn default() -> Self {
        Self {
            model_id: String::new(),
            set_name: "res-saeidx".into(),
            creator_id: DEFAULT_CREATOR_ID.into(),
            owner: None,
            instruct: None,
            dataset: None,
            features: None,
            top_examples: 20,
            bands: 5,
            per_band: 5,
            context: 32,
            features_per_batch: 128,
            explanation_model_names: false,
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

/// Checks `id` against Neuronpedia's rule for model ids (its Prisma schema's validator:
/// letters, digits, `-` and `_`, 1 to 128 characters, lower-cased): it must already be
/// lower case, since the id names the export's folder and every record.
pub fn check_model_id(id: &str) -> Result<(), ShareError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
    if ok {
        return Ok(());
    }
    Err(ShareError::Invalid(format!(
        "{id:?} is not a Neuronpedia model id: use 1 to {MAX_ID_LEN} lower-case letters, digits, '-' and '_' (e.g. {:?})",
        suggested_id(id)
    )))
}

/// Checks a source set name: Neuronpedia's id characters, and no `__` (in a source id,
/// `__` starts extra information that is not part of the set's name).
fn check_set_name(name: &str) -> Result<(), ShareError> {
    check_model_id(name).map_err(|_| {
        ShareError::Invalid(format!(
            "{name:?} cannot be a Neuronpedia source set name: use lower-case letters, digits, '-' and '_' (e.g. {:?})",
            suggested_id(name)
        ))
    })?;
    if name.contains("__") {
        return Err(ShareError::Invalid(format!(
            "{name:?} cannot be a Neuronpedia source set name: in a source id, '__' starts extra information after the set's name; use single '_'"
        )));
    }
    Ok(())
}

/// `id` made valid: lower case, other characters replaced by `-`.
fn suggested_id(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_ID_LEN)
        .collect();
    if id.is_empty() { "my-model".into() } else { id }
}

impl ExportRequest {
    /// Checks what can be checked without the index: the ids against Neuronpedia's
    /// rules, the creator, the batch and example counts.
    pub fn check(&self) -> Result<(), ShareError> {
        check_model_id(&self.model_id)?;
        check_set_name(&self.set_name)?;
        if self.creator_id.is_empty() {
            return Err(ShareError::Invalid(
                "the creator id must name a Neuronpedia user".into(),
            ));
        }
        if self.features_per_batch == 0 || self.top_examples == 0 {
            return Err(ShareError::Invalid(
                "features per batch and top examples must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The layer number in a hook name such as `blocks.15.hook_resid_post`.
fn hook_layer(hook: &str) -> Option<u32> {
    hook.split('.').nth(1)?.parse().ok()
}

/// Writes the export of `index` under `out`, replacing an earlier export of the same
/// source atomically.
pub fn export(
    index: &AnyIndex,
    request: &ExportRequest,
    out: &Path,
) -> Result<Exported, ShareError> {
    request.check()?;
    let target = Target::new(index, request)?;
    let features = match &request.features {
        Some(features) => features.clone(),
        None => index.live_features()?,
    };
    let folder = out.join(&request.model_id).join(&target.source_id);
    let staged = StagedDir::new(&folder)?;
    let root = staged.path();
    for (name, record) in [
        ("model.jsonl", target.model_record(index.job(), request)),
        ("sourceset.jsonl", target.sourceset_record(index.job())),
        ("source.jsonl", target.source_record(index, request)?),
    ] {
        write_file(&root.join(name), line(&record).as_bytes())?;
    }
    let mut exported = Exported {
        folder: folder.clone(),
        source_id: target.source_id.clone(),
        features: 0,
        activations: 0,
        explanations: 0,
        batches: 0,
    };
    for (number, chunk) in features.chunks(request.features_per_batch).enumerate() {
        let mut batch = Batch::default();
        for &feature in chunk {
            batch.add(index, request, &target, feature)?;
        }
        exported.features += batch.features.len();
        exported.activations += batch.activations.len();
        exported.explanations += batch.explanations.len();
        exported.batches += batch.write(root, number)?;
    }
    staged.publish()?;
    Ok(exported)
}

/// Where the records of one export go, and what they all share.
struct Target<'a> {
    model_id: &'a str,
    explanation_model_names: bool,
    set_name: &'a str,
    source_id: String,
    creator_id: &'a str,
    hook: &'a str,
    /// What makes record ids unique: the index's data, the model and the source.
    id_seed: String,
}

impl<'a> Target<'a> {
    fn new(index: &'a AnyIndex, request: &'a ExportRequest) -> Result<Self, ShareError> {
        let hook = index.job().hook.as_str();
        let layer = hook_layer(hook).ok_or_else(|| {
            ShareError::Invalid(format!(
                "cannot tell the layer of hook {hook:?} (expected blocks.N.…)"
            ))
        })?;
        let source_id = format!("{layer}-{}", request.set_name);
        let id_seed = format!("{}\n{}\n{source_id}", index.data_sha256(), request.model_id);
        Ok(Self {
            model_id: &request.model_id,
            explanation_model_names: request.explanation_model_names,
            set_name: &request.set_name,
            source_id,
            creator_id: &request.creator_id,
            hook,
            id_seed,
        })
    }

    /// A row id (Neuronpedia's are 25-character cuids; any text will do) derived from
    /// the index's data, the model, the source, the feature and `what`: the same
    /// export always gives the same ids, and no two rows of any exports share one.
    fn record_id(&self, feature: u32, what: &str) -> String {
        let digest = sha256_hex(format!("{}\n{feature}\n{what}", self.id_seed).as_bytes());
        format!("sx{}", &digest[..23])
    }

    /// The `Model` row. `neuronsPerLayer` is the model's MLP width, which an index does
    /// not record: 0, as Neuronpedia's own "new model" route writes.
    fn model_record(&self, job: &JobSpec, request: &ExportRequest) -> Value {
        let model = &job.model;
        // A Hub repo id has a resolved commit; a local folder has none.
        let repo = model.commit.is_some().then_some(model.source.as_str());
        let name = model_name(&model.source);
        let owner = match (&request.owner, repo) {
            (Some(owner), _) => owner.clone(),
            (None, Some(repo)) => repo.split('/').next().unwrap_or_default().to_string(),
            (None, None) => String::new(),
        };
        json!({
            "id": self.model_id,
            "displayName": name,
            "displayNameShort": self.model_id,
            "creatorId": self.creator_id,
            "owner": owner,
            "tlensId": Value::Null,
            "dimension": model.hidden_size,
            "layers": model.num_layers,
            "neuronsPerLayer": 0,
            "visibility": "PUBLIC",
            "instruct": request.instruct.unwrap_or_else(|| looks_instruct(name)),
            "inferenceEnabled": false,
        })
    }

    /// The `SourceSet` row.
    fn sourceset_record(&self, job: &JobSpec) -> Value {
        let sae = &job.sae;
        json!({
            "modelId": self.model_id,
            "name": self.set_name,
            "creatorId": self.creator_id,
            "creatorName": "saeidx",
            "hasDashboards": true,
            "visibility": "PUBLIC",
            "type": "sae",
            "description": format!(
                "SAE with {} features at {}, dashboards by saeidx",
                sae.d_sae, self.hook
            ),
            "urls": [],
        })
    }

    /// The `Source` row: the SAE at this layer, with where its examples come from.
    fn source_record(
        &self,
        index: &AnyIndex,
        request: &ExportRequest,
    ) -> Result<Value, ShareError> {
        let job = index.job();
        let version = index.saeidx_version().unwrap_or(env!("CARGO_PKG_VERSION"));
        let counts = index.counts()?;
        let documents = i32::try_from(counts.documents).map_err(|_| {
            ShareError::Invalid(format!(
                "{} documents do not fit Neuronpedia's num_prompts (a 32-bit integer)",
                counts.documents
            ))
        })?;
        Ok(json!({
            "id": self.source_id,
            "modelId": self.model_id,
            "setName": self.set_name,
            "creatorId": self.creator_id,
            "hasDashboards": true,
            "inferenceEnabled": false,
            "visibility": "PUBLIC",
            "dataset": pg_text(&request.dataset.clone().unwrap_or_else(|| corpus_files(job))),
            "num_prompts": documents,
            "num_tokens_in_prompt": job.window.length,
            "notes": pg_text(&format!(
                "saeidx {} index of {} tokens: model {} (weights SHA-256 {}), SAE {} (SHA-256 {}), hook {}",
                version, counts.tokens, shareable(&job.model.source),
                job.model.weights_sha256, shareable(&job.sae.source), job.sae.sha256, self.hook
            )),
        }))
    }

    /// A feature's `Neuron` row: density, max and the activation histogram (bin centres
    /// and counts over the feature's nonzero values).
    fn feature_record(&self, stats: &FeatureStats) -> Value {
        let width = stats.histogram_max / HISTOGRAM_BINS as f64;
        let centres: Vec<f64> = (0..stats.histogram.len())
            .map(|i| short(((i as f64 + 0.5) * width) as f32))
            .collect();
        json!({
            "modelId": self.model_id,
            "layer": self.source_id,
            "index": stats.feature.to_string(),
            "sourceSetName": self.set_name,
            "creatorId": self.creator_id,
            "maxActApprox": short(stats.max_activation),
            "frac_nonzero": stats.density,
            "freq_hist_data_bar_values": centres,
            "freq_hist_data_bar_heights": stats.histogram,
            "hookName": self.hook,
        })
    }

    /// Example `n` of `feature` as an `Activation` row, from its context window.
    fn activation_record(
        &self,
        feature: u32,
        n: usize,
        example: &Example,
        window: &[WindowToken],
    ) -> Value {
        let hit = example.hit;
        let qualifying = window
            .iter()
            .position(|t| t.position == hit.position)
            .unwrap_or(0);
        let tokens: Vec<String> = window.iter().map(|t| pg_text(&t.text)).collect();
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
            values.iter().enumerate().fold(
                (0, f64::MIN),
                |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                },
            );
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        json!({
            "id": self.record_id(feature, &format!("activation {n}")),
            "modelId": self.model_id,
            "layer": self.source_id,
            "index": feature.to_string(),
            "creatorId": self.creator_id,
            "tokens": tokens,
            "values": values,
            "maxValue": max,
            "maxValueTokenIndex": max_index,
            "minValue": min,
            "dataIndex": pg_text(&hit.id),
            "dataSource": pg_text(&hit.source),
            "binMin": example.bin_min,
            "binMax": example.bin_max,
            "binContains": example.bin_contains,
            "qualifyingTokenIndex": qualifying,
        })
    }

    /// A label as an `Explanation` row (`None` for a label without name or description),
    /// written by the creator with no explanation type. The notes keep the label's
    /// notes, confidence and, for a drafted label, its LLM, prompt, date, review and
    /// scores; the LLM is the `explanationModelName` only when asked (see
    /// [`ExportRequest::explanation_model_names`]) and the label is the LLM's text.
    fn explanation_record(&self, feature: u32, label: &FeatureLabel) -> Option<Value> {
        let description = label.explanation()?;
        let mut notes: Vec<String> = label
            .notes
            .iter()
            .cloned()
            .chain(label.confidence.iter().map(|c| format!("confidence: {c}")))
            .collect();
        notes.extend(provenance_notes(label));
        let model_name = label
            .provenance
            .as_ref()
            .filter(|p| self.explanation_model_names && p.origin != Origin::Edited)
            .map(|p| pg_text(&p.llm));
        Some(json!({
            "id": self.record_id(feature, "explanation"),
            "modelId": self.model_id,
            "layer": self.source_id,
            "index": feature.to_string(),
            "description": pg_text(&description),
            "authorId": self.creator_id,
            "notes": (!notes.is_empty()).then(|| pg_text(&notes.join("\n"))),
            "typeName": Value::Null,
            "explanationModelName": model_name,
        }))
    }
}

/// Note lines for a drafted label's provenance and a label's current scores.
fn provenance_notes(label: &FeatureLabel) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(p) = &label.provenance {
        let review = match (p.origin, &p.reviewed_at) {
            (Origin::Drafted, _) => "not reviewed".to_string(),
            (Origin::Accepted, at) => format!("accepted {}", at.as_deref().unwrap_or("")),
            (Origin::Edited, at) => format!("edited {}", at.as_deref().unwrap_or("")),
        };
        lines.push(format!(
            "drafted by {} (prompt {}, {}); {}",
            p.llm,
            p.prompt_version,
            p.drafted_at,
            review.trim_end()
        ));
    }
    if let Some(scores) = label.scores.as_ref().filter(|_| label.scores_current()) {
        let score = |name: &str, s: &Option<ScoreSummary>| {
            s.map(|s| format!("{name} {:.3}", s.balanced_accuracy))
        };
        let parts: Vec<String> = [
            score("detection", &scores.detection),
            score("fuzzing", &scores.fuzzing),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            lines.push(format!(
                "scores (balanced accuracy, {}, {}): {}",
                scores.llm,
                scores.prompt_version,
                parts.join(", ")
            ));
        }
    }
    lines
}

/// An activation example and the band it stands for.
struct Example<'a> {
    hit: &'a TextHit,
    /// The band's lowest value (-1 for a top example).
    bin_min: f64,
    /// The band's highest value.
    bin_max: f64,
    /// The band's share of the feature's activations (-1 for a top example).
    bin_contains: f64,
}

/// A feature's examples: the top ones, then up to `per_band` from each band.
fn examples(report: &FeatureReport, per_band: usize) -> Vec<Example<'_>> {
    let top = report.top_texts.iter().map(|hit| Example {
        hit,
        bin_min: -1.0,
        bin_max: short(report.stats.max_activation),
        bin_contains: -1.0,
    });
    let bands = report.bands.iter().flat_map(|band| {
        band.examples.iter().take(per_band).map(|hit| Example {
            hit,
            bin_min: short(band.min_activation),
            bin_max: short(band.max_activation),
            bin_contains: band.to - band.from,
        })
    });
    top.chain(bands).collect()
}

/// The records of one batch of features.
#[derive(Default)]
struct Batch {
    features: Vec<Value>,
    activations: Vec<Value>,
    explanations: Vec<Value>,
}

impl Batch {
    /// Adds `feature`'s row, examples and explanation.
    fn add(
        &mut self,
        index: &AnyIndex,
        request: &ExportRequest,
        target: &Target,
        feature: u32,
    ) -> Result<(), ShareError> {
        // Band examples are spread over each band as for the top examples' count, then
        // the first `per_band` kept (the export's sampling since its first version).
        let report = index.feature(&FeatureRequest {
            feature,
            examples: request.top_examples,
            bands: request.bands,
            per_band: request.top_examples,
            neighbours: 0,
            context: 0,
            exclusions: Exclusions::default(),
            restrict: Default::default(),
        })?;
        self.features.push(target.feature_record(&report.stats));
        for (n, example) in examples(&report, request.per_band).iter().enumerate() {
            let hit = example.hit;
            let window = index.window(hit.doc, hit.position, request.context, feature)?;
            let record = target.activation_record(feature, n, example, &window);
            self.activations.push(record);
        }
        if let Some(label) = &report.label
            && let Some(record) = target.explanation_record(feature, label)
        {
            self.explanations.push(record);
        }
        Ok(())
    }

    /// Writes the batch's files as `KIND/batch-NUMBER.jsonl.gz` under `root` (none for an
    /// empty kind); returns how many.
    fn write(&self, root: &Path, number: usize) -> Result<usize, ShareError> {
        let mut written = 0;
        for (kind, lines) in [
            ("features", &self.features),
            ("activations", &self.activations),
            ("explanations", &self.explanations),
        ] {
            if lines.is_empty() {
                continue;
            }
            let dir = root.join(kind);
            fs::create_dir_all(&dir).map_err(ShareError::io(&dir))?;
            write_file_with(&dir.join(format!("batch-{number}.jsonl.gz")), |out| {
                let mut gz = GzEncoder::new(out, Compression::new(5));
                for value in lines {
                    gz.write_all(line(value).as_bytes())?;
                }
                gz.finish().map(|_| ())
            })?;
            written += 1;
        }
        Ok(written)
    }
}

/// A model's name: the last part of its Hub repo id or folder.
fn model_name(source: &str) -> &str {
    source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(source)
}

/// A model or SAE source as others can read it: a Hub repo id as it is, a path on the
/// indexing machine (absolute, or with `.` or `..` parts) by its last part only.
fn shareable(source: &str) -> &str {
    let local =
        source.starts_with(['/', '~']) || source.split('/').any(|part| part == "." || part == "..");
    if local { model_name(source) } else { source }
}

/// Whether a model name marks an instruction-tuned model: a word (between `-`, `_`, `.`)
/// `instruct`, `it` or `chat`, in any case.
fn looks_instruct(name: &str) -> bool {
    name.split(['-', '_', '.']).any(|word| {
        ["instruct", "it", "chat"]
            .iter()
            .any(|mark| word.eq_ignore_ascii_case(mark))
    })
}

/// The corpus as Neuronpedia's `dataset` shows it: the files' names (not where they
/// were on the indexing machine) with SHA-256 prefixes, the first three of them.
fn corpus_files(job: &JobSpec) -> String {
    let files = &job.corpus.files;
    let mut names: Vec<String> = files
        .iter()
        .take(3)
        .map(|f| {
            format!(
                "{} (SHA-256 {})",
                f.name,
                &f.sha256[..f.sha256.len().min(12)]
            )
        })
        .collect();
    if files.len() > 3 {
        names.push(format!("{} more files", files.len() - 3));
    }
    names.join(", ")
}

/// Text as PostgreSQL can store it: NUL, which a `text` value cannot hold (Neuronpedia's
/// importer replaces `\u0000` before inserting), becomes a space.
fn pg_text(text: &str) -> String {
    text.replace('\0', " ")
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

    #[test]
    fn model_ids_follow_neuronpedias_rule() {
        for id in ["gpt2-small", "smollm2-135m-instruct", "gemma_2_2b", "7"] {
            assert!(check_model_id(id).is_ok(), "{id}");
        }
        for (id, suggestion) in [
            ("SmolLM2-135M", "smollm2-135m"),
            ("llama3.1-8b", "llama3-1-8b"),
            ("my model", "my-model"),
            ("", "my-model"),
        ] {
            let error = check_model_id(id).unwrap_err().to_string();
            assert!(error.contains("lower-case letters"), "{error}");
            assert!(error.contains(&format!("{suggestion:?}")), "{error}");
        }
        assert!(check_model_id(&"a".repeat(129)).is_err());
        assert!(check_set_name("res-saeidx").is_ok());
        assert!(check_set_name("res_16k").is_ok());
        let error = check_set_name("res__16k").unwrap_err().to_string();
        assert!(error.contains("'__'"), "{error}");
        assert!(check_set_name("Res.A").is_err());
    }

    #[test]
    fn instruct_models_are_told_by_their_names() {
        for name in [
            "SmolLM2-135M-Instruct-mlx-4bit",
            "gemma-2-2b-it",
            "Qwen1.5-0.5B-Chat",
            "Llama-3.2-1B-instruct",
        ] {
            assert!(looks_instruct(name), "{name}");
        }
        for name in [
            "gpt2",
            "SmolLM2-135M",
            "pythia-70m-deduped",
            "model",
            "Instructor",
        ] {
            assert!(!looks_instruct(name), "{name}");
        }
        assert_eq!(
            model_name("saeidx-default/SmolLM2-135M-Instruct-mlx-4bit"),
            "SmolLM2-135M-Instruct-mlx-4bit"
        );
        assert_eq!(model_name("/tmp/models/tiny/"), "tiny");
        assert_eq!(shareable("/tmp/models/tiny"), "tiny");
        assert_eq!(shareable("pipelines/../crates/sae-8k"), "sae-8k");
        assert_eq!(shareable("org/sae-repo/layer_8"), "org/sae-repo/layer_8");
    }

    #[test]
    fn postgres_text_holds_no_nul() {
        assert_eq!(pg_text("a\0b"), "a b");
        assert_eq!(pg_text("plain"), "plain");
    }
}
