//! One sparse autoencoder in a format-independent form, and its per-token encoding.
//!
//! Every supported format reduces to the same computation on an activation `x`:
//!
//! 1. input transform: optionally centre each token (`x − mean(x)`, for SAEs trained on
//!    a TransformerLens model whose writing weights were centred), optionally
//!    standardize per dimension, `(x − mean) / std` (mlxterp `normalize_input`),
//!    optionally scale by a constant or per token (SAELens `normalize_activations`),
//!    optionally subtract the decoder bias (SAELens `apply_b_dec_to_input`, sparsify
//!    always);
//! 2. pre-activations `p = x' · W_enc + b_enc`;
//! 3. an activation rule that keeps some features of each token, see [`ActivationRule`].
//!
//! The rule is per token by construction: no token's codes depend on the other tokens of
//! its batch. BatchTopK SAEs, which pick the top `k × batch` values over a whole batch
//! while training, are encoded with a fixed threshold ([`ActivationRule::Threshold`]), the
//! rule they are trained to approximate; the threshold is recorded with the output.

use mlx_rs::{Array, Dtype};
use rayon::prelude::*;
use saeidx_model::hook::HookPoint;
use serde::Serialize;

use crate::SaeError;

/// How a top-k rule treats values equal to the k-th largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopKTies {
    /// Keep exactly k: among equal values at the boundary, lower feature ids win
    /// (SAELens, sparsify and saeidx's own SAEs).
    LowestIdFirst,
    /// Keep every value ≥ the k-th largest, so a token may keep more than k (mlxterp).
    KeepAll,
}

/// Which features of a token are active, given its pre-activations `p`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ActivationRule {
    /// Standard SAE: every `p_f > 0`, value `p_f`.
    Relu,
    /// The `k` largest positive `p_f`.
    TopK {
        /// Features kept per token.
        k: usize,
        /// Boundary ties.
        ties: TopKTies,
    },
    /// JumpReLU: `p_f > θ_f`, value `p_f` (one threshold per feature).
    JumpRelu {
        /// Thresholds `θ`, `[d_sae]`.
        #[serde(skip)]
        thresholds: Vec<f32>,
    },
    /// One threshold for all features: `p_f > θ` (and `p_f > 0`), value `p_f`. The
    /// per-token inference rule for BatchTopK SAEs.
    Threshold {
        /// θ.
        threshold: f32,
    },
    /// sparsify's `groupmax`: features form `k` consecutive equal groups; each group's
    /// largest positive value is kept (the first, on ties).
    GroupMax {
        /// Number of groups.
        k: usize,
    },
}

/// A per-token normalization of the input (SAELens `normalize_activations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowNormalization {
    /// None.
    #[default]
    None,
    /// `x · √d / ‖x‖` (SAELens `constant_norm_rescale`).
    UnitNorm,
    /// `(x − μ) / (σ + 1e-5)` with the token's mean and sample standard deviation
    /// (SAELens `layer_norm`).
    LayerNorm,
}

/// The input transform applied before the encoder, in this order.
#[derive(Debug, Clone, Default)]
pub struct InputTransform {
    /// Read only one attention head of an `attn.hook_z` activation: `(head, head_dim)`
    /// selects values `head · head_dim ..` of the concatenated heads (SAELens
    /// `hook_head_index`; set by [`crate::formats::prepare`]).
    pub head: Option<(usize, usize)>,
    /// Subtract each token's mean over its dimensions. TransformerLens's
    /// `center_writing_weights` makes every write to the residual stream of a LayerNorm
    /// model mean-free, so its activations are the model's minus their per-token mean;
    /// an SAE trained on them reads those (set by [`crate::formats::prepare`]).
    pub center: bool,
    /// Per-dimension `(mean, std)`: `x ← (x − mean) / std` (mlxterp `normalize_input`).
    pub standardize: Option<(Array, Array)>,
    /// Multiply `x` by this constant.
    pub scale: Option<f32>,
    /// A per-token normalization.
    pub row_normalization: RowNormalization,
    /// Subtract the decoder bias before the encoder.
    pub subtract_decoder_bias: bool,
}

/// Where an SAE came from and what it says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct SaeInfo {
    /// `mlxterp`, `saelens` or `sparsify`.
    pub format: String,
    /// The architecture as the format names it (e.g. `topk`, `jumprelu`, `BatchTopKSAE`).
    pub architecture: String,
    /// Input width.
    pub d_in: usize,
    /// Number of features.
    pub d_sae: usize,
    /// The hook the SAE was trained on, as written in its files.
    pub recorded_hook: Option<String>,
    /// That hook in saeidx's naming, when it could be placed.
    pub hook: Option<HookPoint>,
    /// The model the SAE was trained on, as written in its files.
    pub recorded_model: Option<String>,
    /// Local path or `repo[/subfolder]@commit` it was loaded from.
    pub source: String,
    /// SHA-256 over the SAE's files (weights and config).
    pub sha256: String,
    /// How its activations were produced in training, as far as its files say.
    pub trained: TrainedOn,
}

/// How an SAE's training activations were produced, for the settings that change what
/// the model computes (each `None` or `false` when the files do not say).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrainedOn {
    /// Every training context began with the BOS token (SAELens `prepend_bos`).
    pub prepend_bos: Option<bool>,
    /// Tokens per training context (SAELens `context_size`).
    pub context_size: Option<usize>,
    /// The model was loaded with TransformerLens's `center_writing_weights` (SAELens
    /// `model_from_pretrained_kwargs`).
    pub center_writing_weights: bool,
    /// The model was loaded with TransformerLens's `fold_value_biases` or
    /// `refactor_factored_attn_matrices`, which change `attn.hook_z`.
    pub processed_heads: bool,
    /// The SAE reads one attention head (SAELens `hook_head_index`).
    pub hook_head_index: Option<usize>,
}

/// A sparse autoencoder ready to encode.
pub struct Sae {
    /// Provenance and shape.
    pub info: SaeInfo,
    /// The per-token activation rule.
    pub rule: ActivationRule,
    /// Applied to inputs before the encoder.
    pub input: InputTransform,
    /// `[d_in, d_sae]`, f32.
    pub w_enc: Array,
    /// `[d_sae]`, f32.
    pub b_enc: Array,
    /// `[d_sae, d_in]`, f32.
    pub w_dec: Array,
    /// `[d_in]`, f32.
    pub b_dec: Array,
}

/// Sparse codes of `n` tokens, row-compressed: token `t`'s active features are
/// `features[offsets[t]..offsets[t + 1]]`, in increasing feature id, with `values` beside.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseCodes {
    /// `n + 1` offsets into `features` and `values`.
    pub offsets: Vec<usize>,
    /// Active feature ids.
    pub features: Vec<u32>,
    /// Their activations (all > 0).
    pub values: Vec<f32>,
}

impl SparseCodes {
    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The active `(feature, value)` pairs of token `t`.
    pub fn token(&self, t: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let range = self.offsets[t]..self.offsets[t + 1];
        self.features[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }

    /// Total number of active (token, feature) pairs.
    pub fn nonzeros(&self) -> usize {
        self.features.len()
    }
}

fn f32_array(array: Array) -> Result<Array, SaeError> {
    Ok(if array.dtype() == Dtype::Float32 {
        array
    } else {
        array.as_dtype(Dtype::Float32)?
    })
}

impl Sae {
    /// Assembles an SAE, checking that every tensor has the shape `d_in`/`d_sae` imply.
    pub fn new(
        info: SaeInfo,
        rule: ActivationRule,
        input: InputTransform,
        w_enc: Array,
        b_enc: Array,
        w_dec: Array,
        b_dec: Array,
    ) -> Result<Self, SaeError> {
        let (d_in, d_sae) = (info.d_in as i32, info.d_sae as i32);
        let check = |name: &str, array: &Array, shape: &[i32]| {
            if array.shape() == shape {
                Ok(())
            } else {
                Err(SaeError::Invalid(format!(
                    "{name} has shape {:?}, expected {shape:?} for d_in {d_in}, d_sae {d_sae}",
                    array.shape()
                )))
            }
        };
        check("the encoder", &w_enc, &[d_in, d_sae])?;
        check("the encoder bias", &b_enc, &[d_sae])?;
        check("the decoder", &w_dec, &[d_sae, d_in])?;
        check("the decoder bias", &b_dec, &[d_in])?;
        if let Some((mean, std)) = &input.standardize {
            check("the input mean", mean, &[d_in])?;
            check("the input std", std, &[d_in])?;
        }
        match &rule {
            ActivationRule::JumpRelu { thresholds } if thresholds.len() != info.d_sae => {
                return Err(SaeError::Invalid(format!(
                    "{} JumpReLU thresholds for {d_sae} features",
                    thresholds.len()
                )));
            }
            ActivationRule::TopK { k, .. } if *k == 0 || *k > info.d_sae => {
                return Err(SaeError::Invalid(format!(
                    "top-k with k = {k} for {d_sae} features"
                )));
            }
            ActivationRule::GroupMax { k } if *k == 0 || !info.d_sae.is_multiple_of(*k) => {
                return Err(SaeError::Invalid(format!(
                    "groupmax with k = {k} groups does not divide {d_sae} features"
                )));
            }
            _ => {}
        }
        let input = InputTransform {
            standardize: match input.standardize {
                Some((mean, std)) => Some((f32_array(mean)?, f32_array(std)?)),
                None => None,
            },
            ..input
        };
        let sae = Self {
            info,
            rule,
            input,
            w_enc: f32_array(w_enc)?,
            b_enc: f32_array(b_enc)?,
            w_dec: f32_array(w_dec)?,
            b_dec: f32_array(b_dec)?,
        };
        mlx_rs::transforms::eval([&sae.w_enc, &sae.b_enc, &sae.w_dec, &sae.b_dec])?;
        Ok(sae)
    }

    /// Pre-activations `[n, d_sae]` of activations `x` `[n, d_in]` (lazy).
    pub fn pre_activations(&self, x: &Array) -> Result<Array, SaeError> {
        let x = match self.input.head {
            Some((head, width)) => {
                let bounds = [(head * width) as i32, ((head + 1) * width) as i32];
                mlx_rs::ops::split_at_indices(x, &bounds, -1)?.swap_remove(1)
            }
            None => x.clone(),
        };
        let x = &x;
        let shape = x.shape();
        if shape.len() != 2 || shape[1] as usize != self.info.d_in {
            return Err(SaeError::WidthMismatch {
                expected: self.info.d_in,
                got: shape.last().copied().unwrap_or(0) as usize,
            });
        }
        let mut x = f32_array(x.clone())?;
        if self.input.center {
            x = x.subtract(x.mean_axis(-1, true)?)?;
        }
        if let Some((mean, std)) = &self.input.standardize {
            x = x.subtract(mean)?.divide(std)?;
        }
        if let Some(scale) = self.input.scale {
            x = x.multiply(Array::from_f32(scale))?;
        }
        let width = Array::from_f32(self.info.d_in as f32);
        match self.input.row_normalization {
            RowNormalization::None => {}
            RowNormalization::UnitNorm => {
                let norm = x.square()?.sum_axis(-1, true)?.sqrt()?;
                x = x.multiply(width.sqrt()?)?.divide(norm)?;
            }
            RowNormalization::LayerNorm => {
                let centered = x.subtract(x.mean_axis(-1, true)?)?;
                let degrees = Array::from_f32(self.info.d_in as f32 - 1.0);
                let std = centered
                    .square()?
                    .sum_axis(-1, true)?
                    .divide(degrees)?
                    .sqrt()?;
                x = centered.divide(std.add(Array::from_f32(1e-5))?)?;
            }
        }
        if self.input.subtract_decoder_bias {
            x = x.subtract(&self.b_dec)?;
        }
        Ok(x.matmul(&self.w_enc)?.add(&self.b_enc)?)
    }

    /// Encodes activations `x` `[n, d_in]` to sparse codes, token by token.
    pub fn encode(&self, x: &Array) -> Result<SparseCodes, SaeError> {
        let pre = self.pre_activations(x)?;
        pre.eval()?;
        let values = pre.try_as_slice::<f32>().map_err(|e| {
            mlx_rs::error::Exception::custom(format!("reading pre-activations: {e}"))
        })?;
        Ok(sparsify_rows(values, self.info.d_sae, &self.rule))
    }

    /// Reconstructs activations from sparse codes: `codes · W_dec + b_dec`, then the
    /// input transform undone (so the result is in the space of the inputs; centred
    /// inputs stay centred: their means are not kept).
    pub fn decode(&self, codes: &SparseCodes) -> Result<Array, SaeError> {
        if self.input.row_normalization != RowNormalization::None {
            return Err(SaeError::Unsupported(
                "decoding needs each input's own norm for this SAE's per-token normalization"
                    .into(),
            ));
        }
        let n = codes.tokens();
        let mut dense = vec![0f32; n * self.info.d_sae];
        for t in 0..n {
            for (feature, value) in codes.token(t) {
                dense[t * self.info.d_sae + feature as usize] = value;
            }
        }
        let dense = Array::from_slice(&dense, &[n as i32, self.info.d_sae as i32]);
        let mut x = dense.matmul(&self.w_dec)?.add(&self.b_dec)?;
        if let Some(scale) = self.input.scale {
            x = x.divide(Array::from_f32(scale))?;
        }
        if let Some((mean, std)) = &self.input.standardize {
            x = x.multiply(std)?.add(mean)?;
        }
        Ok(x)
    }
}

/// Applies `rule` to each row of row-major pre-activations `[n, width]`.
pub fn sparsify_rows(pre: &[f32], width: usize, rule: &ActivationRule) -> SparseCodes {
    let rows: Vec<Vec<(u32, f32)>> = pre
        .par_chunks(width)
        .map(|row| active_features(row, rule))
        .collect();
    let mut codes = SparseCodes {
        offsets: Vec::with_capacity(rows.len() + 1),
        ..SparseCodes::default()
    };
    codes.offsets.push(0);
    for row in rows {
        for (feature, value) in row {
            codes.features.push(feature);
            codes.values.push(value);
        }
        codes.offsets.push(codes.features.len());
    }
    codes
}

/// One token's active `(feature, value)` pairs, in increasing feature id.
fn active_features(row: &[f32], rule: &ActivationRule) -> Vec<(u32, f32)> {
    let positive = |threshold: f32| -> Vec<(u32, f32)> {
        row.iter()
            .enumerate()
            .filter(|(_, v)| **v > threshold)
            .map(|(f, v)| (f as u32, *v))
            .collect()
    };
    match rule {
        ActivationRule::Relu => positive(0.0),
        ActivationRule::Threshold { threshold } => positive(threshold.max(0.0)),
        ActivationRule::JumpRelu { thresholds } => row
            .iter()
            .zip(thresholds)
            .enumerate()
            .filter(|(_, (v, theta))| **v > **theta && **v > 0.0)
            .map(|(f, (v, _))| (f as u32, *v))
            .collect(),
        ActivationRule::GroupMax { k } => {
            let group = row.len() / k;
            row.chunks(group)
                .enumerate()
                .filter_map(|(g, values)| {
                    let (offset, best) = values.iter().enumerate().fold(
                        (0, f32::NEG_INFINITY),
                        |(i, best), (j, v)| {
                            if *v > best { (j, *v) } else { (i, best) }
                        },
                    );
                    (best > 0.0).then_some(((g * group + offset) as u32, best))
                })
                .collect()
        }
        ActivationRule::TopK { k, ties } => {
            let mut candidates = positive(0.0);
            if candidates.len() > *k {
                // Larger value first; equal values: lower feature id first.
                let order =
                    |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                candidates.select_nth_unstable_by(*k - 1, order);
                let kth = candidates[*k - 1].1;
                match ties {
                    TopKTies::LowestIdFirst => candidates.truncate(*k),
                    TopKTies::KeepAll => candidates.retain(|(_, v)| *v >= kth),
                }
                candidates.sort_unstable_by_key(|(f, _)| *f);
            }
            candidates
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rule: &ActivationRule, values: &[f32]) -> Vec<(u32, f32)> {
        active_features(values, rule)
    }

    #[test]
    fn rules_keep_the_right_features() {
        let values = [0.5, -1.0, 2.0, 0.0, 2.0, 1.0, 0.3];
        assert_eq!(
            row(&ActivationRule::Relu, &values),
            [(0, 0.5), (2, 2.0), (4, 2.0), (5, 1.0), (6, 0.3)]
        );
        assert_eq!(
            row(&ActivationRule::Threshold { threshold: 0.5 }, &values),
            [(2, 2.0), (4, 2.0), (5, 1.0)]
        );
        let thresholds = vec![0.4, 0.0, 3.0, 0.0, 1.0, 1.0, 0.0];
        assert_eq!(
            row(&ActivationRule::JumpRelu { thresholds }, &values),
            [(0, 0.5), (4, 2.0), (6, 0.3)]
        );
        assert_eq!(
            row(
                &ActivationRule::GroupMax { k: 2 },
                &[0.5, 0.9, 0.9, -1.0, -2.0, -3.0]
            ),
            [(1, 0.9)]
        );
        let top = |k, ties| row(&ActivationRule::TopK { k, ties }, &values);
        assert_eq!(top(2, TopKTies::LowestIdFirst), [(2, 2.0), (4, 2.0)]);
        // Ties at the boundary: lowest id wins, or every tie is kept.
        assert_eq!(top(1, TopKTies::LowestIdFirst), [(2, 2.0)]);
        assert_eq!(top(1, TopKTies::KeepAll), [(2, 2.0), (4, 2.0)]);
        // Never more than the positive values.
        assert_eq!(top(7, TopKTies::LowestIdFirst).len(), 5);
    }

    #[test]
    fn sparse_rows_are_compressed_in_order() {
        let pre = [
            1.0, 0.0, 2.0, /* */ 0.0, 0.0, 0.0, /* */ 0.0, 3.0, 0.0,
        ];
        let codes = sparsify_rows(&pre, 3, &ActivationRule::Relu);
        assert_eq!(codes.offsets, [0, 2, 2, 3]);
        assert_eq!(codes.features, [0, 2, 1]);
        assert_eq!(codes.tokens(), 3);
        assert_eq!(codes.token(2).collect::<Vec<_>>(), [(1, 3.0)]);
        assert_eq!(codes.nonzeros(), 3);
    }
}
