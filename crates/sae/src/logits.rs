//! Logit effects: which output tokens each feature promotes and suppresses, read off
//! its decoder direction through the model's unembedding, with no corpus and no forward
//! pass (SAEDashboard's and Neuronpedia's "logits" lists).
//!
//! For feature `f` the direction is its decoder row mapped back to the hook's activation
//! space (the input transform undone: divided by a constant input scale, multiplied by
//! mlxterp's per-dimension standard deviation), and its effect on the logits is
//! `(W_dec[f] ⊙ γ) · W_Uᵀ`, with the final norm's weight `γ` as
//! [`saeidx_model::unembedding`] explains. This is the direct path only: the blocks
//! between the hook and the output are not run (as in both dashboards). Per-token
//! normalizations (SAELens `normalize_activations`) scale a direction by a positive
//! per-token factor: token order is unchanged, values are in the SAE's units.
//!
//! Computed in blocks of features (one `[block, d_in] × [d_in, vocab]` product at a
//! time, so memory stays at one block of logits), each row's `k` largest and smallest
//! kept.

use std::collections::BTreeMap;

use mlx_rs::Array;
use rayon::prelude::*;
use saeidx_format::logits::{
    FeatureEffects, LOGIT_EFFECTS_PATH, LogitEffects, LogitEffectsError, LogitEffectsHeader,
};
use saeidx_model::{
    hook::{HookKind, HookPoint},
    unembedding::Unembedding,
};

use crate::{SaeError, sae::Sae};

/// How logit effects are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitOptions {
    /// Tokens kept at each end (top and bottom).
    pub k: usize,
    /// Features per matrix product.
    pub block: usize,
}

impl Default for LogitOptions {
    fn default() -> Self {
        Self { k: 10, block: 256 }
    }
}

/// Every feature's top and bottom tokens, ready to write
/// ([`saeidx_format::logits::LogitEffects::write`]).
#[derive(Debug, Clone)]
pub struct LogitTable {
    /// What produced it.
    pub header: LogitEffectsHeader,
    /// One entry per feature.
    pub effects: Vec<FeatureEffects>,
    /// The texts of the tokens the entries name.
    pub token_texts: BTreeMap<u32, String>,
}

impl LogitTable {
    /// Writes the table as the logit effects file of the index in `index_dir`
    /// (`query/logit_effects.bin`), atomically.
    pub fn write(&self, index_dir: &std::path::Path) -> Result<std::path::PathBuf, SaeError> {
        let path = index_dir.join(LOGIT_EFFECTS_PATH);
        LogitEffects::write(&path, &self.header, &self.effects, &self.token_texts).map_err(
            |error| match error {
                LogitEffectsError::Write(error) => SaeError::Write(error),
                other => SaeError::Invalid(other.to_string()),
            },
        )?;
        Ok(path)
    }
}

/// The model a table is computed for, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Repo id or folder.
    pub source: String,
    /// SHA-256 of its weights.
    pub weights_sha256: String,
}

/// Computes the logit effects of every feature of `sae`, read at `hook`, through
/// `unembedding`; `token_text` names each token that ends up in a list.
pub fn logit_effects(
    sae: &Sae,
    hook: HookPoint,
    unembedding: &Unembedding,
    model: &ModelIdentity,
    token_text: &dyn Fn(u32) -> String,
    options: LogitOptions,
) -> Result<LogitTable, SaeError> {
    let (scale, direction) = direction_scale(sae, hook, unembedding)?;
    let d_sae = sae.info.d_sae;
    let vocab = unembedding.vocab_size;
    let k = options.k.min(vocab);
    if k == 0 || options.block == 0 {
        return Err(SaeError::Invalid(
            "logit effects need k ≥ 1 and a block of at least one feature".into(),
        ));
    }
    let per_dimension = scale.multiply(&unembedding.norm_scale)?;
    let unembedding_t = unembedding.weight.t();
    let mut effects = Vec::with_capacity(d_sae);
    for start in (0..d_sae).step_by(options.block) {
        let end = (start + options.block).min(d_sae);
        let ids: Vec<i32> = (start as i32..end as i32).collect();
        let rows = sae
            .w_dec
            .take_axis(Array::from_slice(&ids, &[ids.len() as i32]), 0)?;
        let logits = rows.multiply(&per_dimension)?.matmul(&unembedding_t)?;
        logits.eval()?;
        let values = logits.as_slice::<f32>();
        let block: Vec<FeatureEffects> = values
            .par_chunks(vocab)
            .enumerate()
            .map(|(row, values)| extremes(values, k, start + row))
            .collect::<Result<_, _>>()?;
        effects.extend(block);
    }
    let mut token_texts = BTreeMap::new();
    for entry in &effects {
        for &(token, _) in entry.top.iter().chain(&entry.bottom) {
            token_texts
                .entry(token)
                .or_insert_with(|| token_text(token));
        }
    }
    Ok(LogitTable {
        header: LogitEffectsHeader {
            d_sae: d_sae as u32,
            k: k as u32,
            vocab_size: vocab as u32,
            sae_sha256: sae.info.sha256.clone(),
            model: model.source.clone(),
            model_weights_sha256: model.weights_sha256.clone(),
            unembedding: unembedding.source.clone(),
            final_norm: unembedding.final_norm.clone(),
            direction,
        },
        effects,
        token_texts,
    })
}

/// Whether `sae` at `hook` has logit effects: its decoder directions live in the
/// residual stream (not so for attention heads' outputs before W_O, `attn.hook_z`).
pub fn has_logit_effects(sae: &Sae, hook: HookPoint) -> bool {
    hook.kind != HookKind::AttnZ && sae.input.head.is_none()
}

/// The per-dimension factor that maps a decoder row to the hook's activation space,
/// and a description of it; refuses hooks whose directions do not live in the residual
/// stream.
fn direction_scale(
    sae: &Sae,
    hook: HookPoint,
    unembedding: &Unembedding,
) -> Result<(Array, String), SaeError> {
    if !has_logit_effects(sae, hook) {
        return Err(SaeError::Unsupported(format!(
            "logit effects of an SAE on {} (attention heads' outputs before W_O): its decoder \
             directions are not in the residual stream",
            hook.name()
        )));
    }
    if sae.info.d_in != unembedding.hidden_size {
        return Err(SaeError::WidthMismatch {
            expected: unembedding.hidden_size,
            got: sae.info.d_in,
        });
    }
    let mut scale = Array::ones::<f32>(&[sae.info.d_in as i32])?;
    let mut steps = vec!["W_dec rows".to_string()];
    if let Some(factor) = sae.input.scale {
        scale = scale.divide(Array::from_f32(factor))?;
        steps.push(format!("divided by the input scale {factor}"));
    }
    if let Some((_, std)) = &sae.input.standardize {
        scale = scale.multiply(std)?;
        steps.push("multiplied by the input standard deviation".into());
    }
    if sae.input.row_normalization != crate::sae::RowNormalization::None {
        steps.push("in the SAE's per-token normalized units (token order is the model's)".into());
    }
    Ok((scale, steps.join(", ")))
}

/// The `k` largest (largest first) and smallest (smallest first) values of one row of
/// logits, lower token ids first on ties; non-finite values are an error.
fn extremes(values: &[f32], k: usize, feature: usize) -> Result<FeatureEffects, SaeError> {
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(SaeError::Invalid(format!(
            "feature {feature}'s logit for token {bad} is {}: the decoder or the unembedding \
             holds non-finite values",
            values[bad]
        )));
    }
    let pick = |descending: bool| {
        let order = |a: &u32, b: &u32| {
            let (x, y) = (values[*a as usize], values[*b as usize]);
            let by_value = if descending {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            };
            by_value.then(a.cmp(b))
        };
        let mut ids: Vec<u32> = (0..values.len() as u32).collect();
        if k < ids.len() {
            ids.select_nth_unstable_by(k - 1, order);
            ids.truncate(k);
        }
        ids.sort_by(order);
        ids.into_iter()
            .map(|id| (id, values[id as usize]))
            .collect::<Vec<_>>()
    };
    Ok(FeatureEffects {
        top: pick(true),
        bottom: pick(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_keep_k_at_each_end_lower_ids_first_on_ties() {
        let values = [0.5, -1.0, 2.0, 2.0, -1.0, 0.0];
        let effects = extremes(&values, 3, 0).unwrap();
        assert_eq!(effects.top, vec![(2, 2.0), (3, 2.0), (0, 0.5)]);
        assert_eq!(effects.bottom, vec![(1, -1.0), (4, -1.0), (5, 0.0)]);
        let all = extremes(&values, 6, 0).unwrap();
        assert_eq!(all.top.len(), 6);
        assert_eq!(all.bottom[5], (3, 2.0));
        let error = extremes(&[1.0, f32::NAN], 1, 7).unwrap_err();
        assert!(error.to_string().contains("feature 7"), "{error}");
    }
}
