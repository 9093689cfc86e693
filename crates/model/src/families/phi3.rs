//! Phi-3 (`mlx_lm/models/phi3.py`): the Llama block with the query, key and value
//! projections fused in `qkv_proj` (all queries, then keys, then values) and gate and up
//! fused in `gate_up_proj` (gate first), head width `hidden_size / heads`, RoPE over
//! `partial_rotary_factor` of each head, with "longrope" (`su`) or linear scaling.
//!
//! Long-context ("longrope") checkpoints rotate with `long_factor` at every length, as
//! mlx-lm 0.32.2 does (Hugging Face switches to `short_factor` within the original
//! context).

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, check_heads, head_width, longrope, parse};
use crate::architecture::{Activation, Architecture, MlpInput, Projections, RopeSpec};

/// The Phi-3 family.
pub struct Phi3;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rms_norm_eps: f32,
    vocab_size: usize,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_traditional: bool,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default = "one")]
    partial_rotary_factor: f64,
    #[serde(default = "default_max")]
    max_position_embeddings: usize,
    #[serde(default = "default_original")]
    original_max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "silu")]
    hidden_act: String,
}

fn default_theta() -> f32 {
    10_000.0
}
fn one() -> f64 {
    1.0
}
fn default_max() -> usize {
    131_072
}
fn default_original() -> usize {
    4096
}
fn silu() -> String {
    "silu".into()
}

impl Config {
    fn rope(&self, dims: usize) -> Result<RopeSpec, String> {
        let plain = RopeSpec {
            traditional: self.rope_traditional,
            ..RopeSpec::plain(dims, self.rope_theta)
        };
        let Some(scaling) = self.rope_scaling.as_ref().filter(|s| !s.is_null()) else {
            return Ok(plain);
        };
        match scaling.get("type").and_then(Value::as_str) {
            Some("longrope") | Some("su") => longrope(
                dims,
                self.rope_theta,
                scaling,
                self.max_position_embeddings,
                self.original_max_position_embeddings,
            ),
            Some("linear") => {
                let factor = scaling
                    .get("factor")
                    .and_then(Value::as_f64)
                    .ok_or("linear rope_scaling needs factor")?;
                Ok(RopeSpec {
                    scale: 1.0 / factor as f32,
                    ..plain
                })
            }
            other => Err(format!(
                "Phi-3 rope_scaling type {other:?} (supported: longrope, su, linear)"
            )),
        }
    }
}

impl Family for Phi3 {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "phi3")?;
        let heads = c.num_attention_heads;
        let kv_heads = c.num_key_value_heads.unwrap_or(heads);
        let head_dim = head_width(c.hidden_size, heads)?;
        let rope_dims = (head_dim as f64 * c.partial_rotary_factor) as usize;
        check_heads(heads, kv_heads, head_dim, rope_dims)?;
        let mut arch = LlamaLayout {
            family: self.name(),
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            vocab_size: c.vocab_size,
            intermediate_size: c.intermediate_size,
            heads,
            kv_heads,
            head_dim,
            eps: c.rms_norm_eps,
            rope: c.rope(rope_dims)?,
            activation: Activation::from_hf(&c.hidden_act)?,
            tie_word_embeddings: Some(c.tie_word_embeddings),
        }
        .build();
        arch.attention.projections = Projections::Fused("qkv_proj".into());
        arch.mlp.input = MlpInput::FusedGated("gate_up_proj".into());
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "as the tokenizer says: Phi-3's tokenizer.json decides whether <s> is added"
    }
}
