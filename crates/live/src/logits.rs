//! Logit effects for an index that has none (built before they existed, merged from
//! shards, or from `--rebuild`): the index's SAE and its model's unembedding, loaded as
//! live analysis loads them (checked by SHA-256), computed and written to
//! `query/logit_effects.bin`. Only the unembedding and final norm are read from the
//! model's weights.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_format::manifest::Manifest;
use saeidx_hub::HubSettings;
use saeidx_model::{config::ModelConfig, hook::HookPoint, unembedding::Unembedding};
use saeidx_sae::{
    formats,
    logits::{LogitOptions, ModelIdentity, logit_effects},
};

use crate::{LiveError, LiveSources, analyzer::index_model_files, sources::load_index_sae};

/// What [`build_logit_effects`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitsBuilt {
    /// The file.
    pub path: PathBuf,
    /// Features computed.
    pub features: usize,
    /// Tokens kept at each end.
    pub k: usize,
    /// The model's vocabulary.
    pub vocab_size: usize,
    /// The unembedding matrix used.
    pub unembedding: String,
    /// How the final norm entered.
    pub final_norm: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Computes the logit effects of the index in `index_dir` (its `manifest`) and writes
/// them to its `query/logit_effects.bin`, replacing any there.
pub fn build_logit_effects(
    manifest: &Manifest,
    index_dir: &Path,
    sources: &LiveSources,
    settings: &HubSettings,
    options: LogitOptions,
) -> Result<LogitsBuilt, LiveError> {
    let started = Instant::now();
    let job = &manifest.job;
    let files = index_model_files(manifest, sources, settings)?;
    let unembedding = Unembedding::load(&files)?;
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let config = ModelConfig::from_file(&files.config)?;
    let hook = HookPoint::parse(&job.hook, None).map_err(saeidx_model::ModelError::from)?;
    let mut sae = load_index_sae(&job.sae, index_dir, &sources.sae, settings)?;
    let name = sources.model.as_deref().unwrap_or(&job.model.source);
    formats::prepare(&mut sae, &config, name, hook, true)?;
    let table = logit_effects(
        &sae,
        hook,
        &unembedding,
        &ModelIdentity {
            source: job.model.source.clone(),
            weights_sha256: job.model.weights_sha256.clone(),
        },
        &|id| tokenizer.token_text(id),
        options,
    )?;
    let path = table.write(index_dir)?;
    Ok(LogitsBuilt {
        path,
        features: table.effects.len(),
        k: table.header.k as usize,
        vocab_size: unembedding.vocab_size,
        unembedding: unembedding.source,
        final_norm: unembedding.final_norm,
        seconds: started.elapsed().as_secs_f64(),
    })
}
