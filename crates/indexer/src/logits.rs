//! The end of a run: each feature's logit effects (top and bottom output tokens through
//! the model's unembedding, see `saeidx_sae::logits`), written beside the query files as
//! `query/logit_effects.bin`. Shards have none; their merge gets them from
//! `saeidx query logits`.

use std::path::{Path, PathBuf};

use saeidx_format::logits::LOGIT_EFFECTS_PATH;
use saeidx_model::unembedding::Unembedding;
use saeidx_sae::logits::{LogitOptions, ModelIdentity, has_logit_effects, logit_effects};

use crate::{IndexError, job::LoadedJob};

/// Computes the logit effects of the job's SAE through its model's unembedding and
/// writes them into the index at `index_dir`, unless `keep_existing` and it has them.
/// Returns the file, or `None` for an SAE without logit effects (one on attention heads'
/// outputs before W_O, whose directions are not in the residual stream).
pub fn write_logit_effects(
    loaded: &LoadedJob,
    index_dir: &Path,
    keep_existing: bool,
    options: LogitOptions,
) -> Result<Option<PathBuf>, IndexError> {
    if !has_logit_effects(&loaded.sae, loaded.hook) {
        return Ok(None);
    }
    let path = index_dir.join(LOGIT_EFFECTS_PATH);
    if keep_existing && path.is_file() {
        return Ok(Some(path));
    }
    let unembedding = Unembedding::load(&loaded.model_files)?;
    let table = logit_effects(
        &loaded.sae,
        loaded.hook,
        &unembedding,
        &ModelIdentity {
            source: loaded.spec.model.source.clone(),
            weights_sha256: loaded.spec.model.weights_sha256.clone(),
        },
        &|id| loaded.tokenizer.token_text(id),
        options,
    )?;
    Ok(Some(table.write(index_dir)?))
}
