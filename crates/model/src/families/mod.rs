//! Model families: each file reads one family's `config.json` into an [`Architecture`]
//! and says where its published tensors go.
//!
//! | family | `model_type` | facts |
//! |---|---|---|
//! | [`llama`] | `llama`, `mistral` | RMSNorm, grouped-query attention, RoPE (Llama 3 / linear scaling), SwiGLU |
//! | [`gpt2`] | `gpt2` | learned positions, LayerNorm, fused `c_attn`, Conv1D weights transposed in the HF layout |
//! | [`gpt_neox`] | `gpt_neox` | parallel attention + MLP, partial rotary, per-head fused QKV |
//! | [`gemma2`] | `gemma2` | √d embedding scale, (1 + w) RMSNorm around both sublayers, logit soft-capping, sliding windows on even layers |
//! | [`gemma3`] | `gemma3_text`, `gemma3` | Gemma 2's block with per-head q/k norms, 5 local : 1 global layers with their own RoPE bases |
//! | [`qwen2`] | `qwen2` | Llama with query/key/value biases |
//! | [`qwen3`] | `qwen3` | Llama with per-head q/k RMSNorm |
//! | [`phi3`] | `phi3` | fused `qkv_proj` and `gate_up_proj`, partial rotary, "longrope" scaling |
//! | [`olmo2`] | `olmo2` | norms after attention and MLP only, q/k RMSNorm over all heads |
//!
//! Every family computes as mlx-lm 0.32.2's `mlx_lm/models/<family>.py` does, except
//! where mlx-lm departs from the checkpoint's own definition (each family's docs say
//! where: GPT-NeoX's exact GELU, Gemma 2's sliding windows).

pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod gpt_neox;
pub mod llama;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::architecture::{
    Activation, Architecture, AttentionSpec, BlockSpec, EmbeddingScale, EmbeddingSpec,
    LayerAttention, LmHead, MlpInput, MlpSpec, NormKind, NormSpec, Projections, RopeSpec,
};

/// Where a tensor of a published checkpoint goes in the MLX layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// At this key, as stored.
    At(String),
    /// At this key, transposed (a Hugging Face Conv1D weight, `[in, out]`).
    Transposed(String),
    /// Not a parameter (a buffer some exporters save, e.g. a causal mask).
    Ignored,
}

/// One model family.
pub trait Family: Sync {
    /// The family's name (the mlx-lm module that computes it).
    fn name(&self) -> &'static str;

    /// The `model_type` values of `config.json` it reads.
    fn model_types(&self) -> &'static [&'static str];

    /// The architecture `config` describes.
    fn architecture(&self, config: &Value) -> Result<Architecture, String>;

    /// Where a checkpoint tensor goes: by default at its own key, with precomputed RoPE
    /// frequencies dropped. Families whose Hugging Face layout differs from mlx-lm's
    /// rename (and transpose) here, so both layouts load.
    fn place(&self, key: &str) -> Placement {
        if key.ends_with("rotary_emb.inv_freq") {
            Placement::Ignored
        } else {
            Placement::At(key.to_string())
        }
    }

    /// What the family's published tokenizers do about BOS, and what the model needs.
    fn bos(&self) -> &'static str;
}

impl std::fmt::Debug for dyn Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every supported family.
pub static FAMILIES: &[&dyn Family] = &[
    &llama::Llama,
    &gpt2::Gpt2,
    &gpt_neox::GptNeox,
    &gemma2::Gemma2,
    &gemma3::Gemma3Text,
    &gemma3::Gemma3,
    &qwen2::Qwen2,
    &qwen3::Qwen3,
    &phi3::Phi3,
    &olmo2::Olmo2,
];

/// The family that reads `model_type`, or an error listing the supported ones.
pub fn for_model_type(model_type: &str) -> Result<&'static dyn Family, String> {
    FAMILIES
        .iter()
        .copied()
        .find(|family| family.model_types().contains(&model_type))
        .ok_or_else(|| {
            format!(
                "model_type {model_type:?}; supported: {}",
                supported_model_types().join(", ")
            )
        })
}

/// Every `model_type` saeidx reads.
pub fn supported_model_types() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|family| family.model_types().iter().copied())
        .collect()
}

/// Deserializes a family's config struct, naming the family in the error.
pub(crate) fn parse<T: DeserializeOwned>(config: &Value, family: &str) -> Result<T, String> {
    T::deserialize(config).map_err(|e| format!("not a {family} config.json: {e}"))
}

/// RoPE settings as configs write them: `rope_theta`, `rope_scaling`, mlx-lm's
/// `rope_traditional`, and transformers 5's `rope_parameters` holding both.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RopeConfig {
    #[serde(default)]
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    rope_traditional: bool,
}

impl RopeConfig {
    /// The base frequency, or `default` when the config has none.
    pub(crate) fn theta(&self, default: Option<f32>) -> Result<f32, String> {
        self.rope_theta
            .or_else(|| {
                self.rope_parameters
                    .as_ref()
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
                    .map(|v| v as f32)
            })
            .or(default)
            .ok_or_else(|| "rope_theta is missing from config.json".to_string())
    }

    /// The scaling entry, if any (`rope_parameters` counts when it names a type).
    pub(crate) fn scaling(&self) -> Option<&Value> {
        self.rope_scaling.as_ref().filter(|s| !s.is_null()).or(self
            .rope_parameters
            .as_ref()
            .filter(|p| {
                p.get("rope_type")
                    .or_else(|| p.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|kind| kind != "default")
            }))
    }

    /// RoPE over `dims` dimensions as mlx-lm's `initialize_rope` builds it.
    pub(crate) fn spec(
        &self,
        dims: usize,
        default_theta: Option<f32>,
        max_position_embeddings: Option<usize>,
    ) -> Result<RopeSpec, String> {
        let mut rope = rope_with_scaling(
            dims,
            self.theta(default_theta)?,
            self.scaling(),
            max_position_embeddings,
        )?;
        rope.traditional = self.rope_traditional;
        Ok(rope)
    }
}

/// RoPE with a `rope_scaling` entry: `default`, `linear`, `llama3` or
/// `longrope`/`su`; any other kind is refused (it would change the numbers).
pub(crate) fn rope_with_scaling(
    dims: usize,
    base: f32,
    scaling: Option<&Value>,
    max_position_embeddings: Option<usize>,
) -> Result<RopeSpec, String> {
    let plain = RopeSpec::plain(dims, base);
    let Some(scaling) = scaling else {
        return Ok(plain);
    };
    let kind = scaling
        .get("type")
        .or_else(|| scaling.get("rope_type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let number = |key: &str, default: Option<f32>| -> Result<f32, String> {
        scaling
            .get(key)
            .and_then(Value::as_f64)
            .map(|v| v as f32)
            .or(default)
            .ok_or_else(|| format!("rope_scaling of type {kind} needs {key}"))
    };
    match kind {
        "default" => Ok(plain),
        "linear" => Ok(RopeSpec {
            scale: 1.0 / number("factor", None)?,
            ..plain
        }),
        "llama3" => Ok(RopeSpec {
            freqs: Some(llama3_periods(
                dims,
                base,
                number("factor", None)?,
                number("low_freq_factor", Some(1.0))?,
                number("high_freq_factor", Some(4.0))?,
                number("original_max_position_embeddings", Some(8192.0))?,
            )),
            ..plain
        }),
        "longrope" | "su" => {
            let original = number("original_max_position_embeddings", None)? as usize;
            let max = max_position_embeddings.ok_or_else(|| {
                "longrope scaling needs max_position_embeddings in config.json".to_string()
            })?;
            longrope(dims, base, scaling, max, original)
        }
        other => Err(format!(
            "rope_scaling type {other:?} (supported: default, linear, llama3, longrope)"
        )),
    }
}

/// Llama 3's RoPE frequency scaling, as periods (the form MLX's `rope` takes): long
/// wavelengths are stretched by `factor`, short ones kept, the band between interpolated.
pub(crate) fn llama3_periods(
    dims: usize,
    base: f32,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_context: f32,
) -> Vec<f32> {
    let low_freq_wavelength = original_context / low_freq_factor;
    let high_freq_wavelength = original_context / high_freq_factor;
    (0..dims)
        .step_by(2)
        .map(|i| {
            let freq = base.powf(i as f32 / dims as f32);
            let wavelength = 2.0 * std::f32::consts::PI * freq;
            if wavelength > low_freq_wavelength {
                freq * factor
            } else if wavelength > high_freq_wavelength {
                let smooth = (original_context / wavelength - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                freq / ((1.0 - smooth) / factor + smooth)
            } else {
                freq
            }
        })
        .collect()
}

/// Phi-3's "longrope" (`su`) scaling as mlx-lm's `SuScaledRoPE` computes it: the
/// periods multiplied by `long_factor` at every length, and the rotated dimensions of
/// queries and keys scaled by `√(1 + ln(max / original) / ln(original))` when the
/// context was extended. (Hugging Face uses `short_factor` for sequences within the
/// original context and honours a `long_mscale`; mlx-lm 0.32.2 does neither, and saeidx
/// follows mlx-lm.)
pub(crate) fn longrope(
    dims: usize,
    base: f32,
    scaling: &Value,
    max_position_embeddings: usize,
    original: usize,
) -> Result<RopeSpec, String> {
    let pairs = dims / 2;
    let long_factor: Vec<f32> = match scaling.get("long_factor") {
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_f64().map(|v| v as f32))
            .collect::<Option<_>>()
            .ok_or("rope_scaling.long_factor must be numbers")?,
        Some(Value::Number(n)) => vec![n.as_f64().unwrap_or(1.0) as f32; pairs],
        _ => return Err("longrope scaling needs long_factor".into()),
    };
    if long_factor.len() != pairs {
        return Err(format!(
            "rope_scaling.long_factor has {} values for {pairs} rotated pairs",
            long_factor.len()
        ));
    }
    let freqs = (0..pairs)
        .map(|i| long_factor[i] * base.powf((2 * i) as f32 / dims as f32))
        .collect();
    let factor = max_position_embeddings as f64 / original as f64;
    let input_scale = if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / (original as f64).ln()).sqrt() as f32
    };
    Ok(RopeSpec {
        freqs: Some(freqs),
        input_scale,
        ..RopeSpec::plain(dims, base)
    })
}

/// The Llama layout most families share: `model.embed_tokens`, `model.layers.L` with
/// `self_attn.{q,k,v,o}_proj` and `mlp.{gate,up,down}_proj`, RMSNorms
/// `input_layernorm` and `post_attention_layernorm`, `model.norm`, `lm_head`. Families
/// start from this and change what differs.
pub(crate) struct LlamaLayout {
    pub family: &'static str,
    pub hidden_size: usize,
    pub layers: usize,
    pub vocab_size: usize,
    pub intermediate_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub rope: RopeSpec,
    pub activation: Activation,
    pub tie_word_embeddings: Option<bool>,
}

impl LlamaLayout {
    pub(crate) fn build(self) -> Architecture {
        let name = |s: &str| s.to_string();
        Architecture {
            family: self.family,
            hidden_size: self.hidden_size,
            layers: self.layers,
            vocab_size: self.vocab_size,
            embedding: EmbeddingSpec {
                tokens: name("model.embed_tokens"),
                positions: None,
                scale: EmbeddingScale::None,
            },
            layer_prefix: name("model.layers"),
            norm: NormSpec {
                kind: NormKind::Rms,
                eps: self.eps,
            },
            block: BlockSpec {
                pre_attention_norm: Some(name("input_layernorm")),
                pre_mlp_norm: Some(name("post_attention_layernorm")),
                ..BlockSpec::default()
            },
            attention: AttentionSpec {
                module: name("self_attn"),
                heads: self.heads,
                kv_heads: self.kv_heads,
                head_dim: self.head_dim,
                projections: Projections::Separate {
                    q: name("q_proj"),
                    k: name("k_proj"),
                    v: name("v_proj"),
                },
                qkv_bias: false,
                output: name("o_proj"),
                output_bias: false,
                qk_norm: None,
                scale: (self.head_dim as f32).powf(-0.5),
                softcap: None,
                layers: vec![
                    LayerAttention {
                        rope: Some(self.rope),
                        window: None,
                    };
                    self.layers
                ],
            },
            mlp: MlpSpec {
                module: name("mlp"),
                input: MlpInput::Gated {
                    gate: name("gate_proj"),
                    up: name("up_proj"),
                },
                down: name("down_proj"),
                hidden: self.intermediate_size,
                bias: false,
                activation: self.activation,
            },
            final_norm: name("model.norm"),
            lm_head: Some(LmHead {
                module: name("lm_head"),
                required: self.tie_word_embeddings == Some(false),
            }),
        }
    }
}

/// Which layers use the sliding window: `layer_types` when the config lists them, else
/// `default(layer)`.
pub(crate) fn sliding_layers(
    layer_types: Option<&[String]>,
    layers: usize,
    default: impl Fn(usize) -> bool,
) -> Result<Vec<bool>, String> {
    match layer_types {
        None => Ok((0..layers).map(default).collect()),
        Some(types) if types.len() == layers => types
            .iter()
            .map(|kind| match kind.as_str() {
                "sliding_attention" => Ok(true),
                "full_attention" => Ok(false),
                other => Err(format!("layer type {other:?}")),
            })
            .collect(),
        Some(types) => Err(format!(
            "layer_types lists {} layers for {layers}",
            types.len()
        )),
    }
}

/// Checks the attention shape: heads group evenly and rotate whole pairs.
pub(crate) fn check_heads(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope_dims: usize,
) -> Result<(), String> {
    if heads == 0 || kv_heads == 0 || head_dim == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(format!(
            "attention shape is inconsistent: {heads} query heads, {kv_heads} key/value heads, \
             head dim {head_dim}"
        ));
    }
    if !rope_dims.is_multiple_of(2) || rope_dims > head_dim {
        return Err(format!(
            "RoPE over {rope_dims} of {head_dim} head dimensions: it rotates pairs within a head"
        ));
    }
    Ok(())
}

/// `hidden_size / heads`, refusing a width the heads do not divide.
pub(crate) fn head_width(hidden_size: usize, heads: usize) -> Result<usize, String> {
    if heads == 0 || !hidden_size.is_multiple_of(heads) {
        return Err(format!(
            "hidden size {hidden_size} is not divisible by {heads} heads"
        ));
    }
    Ok(hidden_size / heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_types_list_every_supported_family() {
        let error = for_model_type("mamba").err().unwrap();
        for model_type in [
            "llama",
            "mistral",
            "gpt2",
            "gpt_neox",
            "gemma2",
            "gemma3_text",
            "gemma3",
            "qwen2",
            "qwen3",
            "phi3",
            "olmo2",
        ] {
            assert!(error.contains(model_type), "{error}");
        }
        assert_eq!(for_model_type("mistral").unwrap().name(), "llama");
    }

    #[test]
    fn llama3_scaling_keeps_short_and_stretches_long_wavelengths() {
        // Llama 3.2's settings.
        let freqs = llama3_periods(64, 500_000.0, 32.0, 1.0, 4.0, 8192.0);
        assert_eq!(freqs.len(), 32);
        assert_eq!(freqs[0], 1.0);
        let plain = |i: usize| 500_000f32.powf(2.0 * i as f32 / 64.0);
        assert_eq!(freqs[1], plain(1));
        assert_eq!(freqs[31], plain(31) * 32.0);
        // In the smooth band, between the unscaled and the fully scaled frequency.
        let (smooth, i) = freqs
            .iter()
            .enumerate()
            .find(|(i, f)| **f != plain(*i) && **f != plain(*i) * 32.0)
            .map(|(i, f)| (*f, i))
            .expect("a frequency in the smooth band");
        assert!(smooth > plain(i) && smooth < plain(i) * 32.0);
    }

    #[test]
    fn unsupported_rope_scaling_is_refused_by_name() {
        let scaling = serde_json::json!({"type": "dynamic", "factor": 2.0});
        let error = rope_with_scaling(64, 10_000.0, Some(&scaling), Some(4096)).unwrap_err();
        assert!(error.contains("\"dynamic\""), "{error}");
        let longrope = serde_json::json!({
            "type": "longrope", "long_factor": [2.0, 2.0], "short_factor": [1.0, 1.0],
            "original_max_position_embeddings": 4096,
        });
        let rope = rope_with_scaling(4, 10_000.0, Some(&longrope), Some(131_072)).unwrap();
        assert_eq!(rope.freqs, Some(vec![2.0, 200.0]));
        let expected = (1.0 + (32f64).ln() / (4096f64).ln()).sqrt() as f32;
        assert_eq!(rope.input_scale, expected);
    }
}
