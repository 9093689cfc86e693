//! Qwen 3 (`mlx_lm/models/qwen3.py`): the Llama block with a per-head RMSNorm on
//! queries and keys (before RoPE), no biases, `head_dim` from the config.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, RopeConfig, check_heads, parse};
use crate::architecture::{Activation, Architecture, QkNorm, QkNormScope};

/// The Qwen 3 family.
pub struct Qwen3;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: usize,
    rms_norm_eps: f32,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default = "silu")]
    hidden_act: String,
    #[serde(flatten)]
    rope: RopeConfig,
}

fn silu() -> String {
    "silu".into()
}

impl Family for Qwen3 {
    fn name(&self) -> &'static str {
        "qwen3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["qwen3"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "qwen3")?;
        if c.attention_bias || c.use_sliding_window {
            return Err(
                "Qwen 3 with attention_bias or use_sliding_window (mlx-lm has neither)".into(),
            );
        }
        check_heads(
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.head_dim,
        )?;
        let mut arch = LlamaLayout {
            family: self.name(),
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            vocab_size: c.vocab_size,
            intermediate_size: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            eps: c.rms_norm_eps,
            rope: c.rope.spec(c.head_dim, None, c.max_position_embeddings)?,
            activation: Activation::from_hf(&c.hidden_act)?,
            tie_word_embeddings: Some(c.tie_word_embeddings),
        }
        .build();
        // mlx-lm's Qwen 3 rotates halves whatever `rope_traditional` says.
        for layer in &mut arch.attention.layers {
            if let Some(rope) = &mut layer.rope {
                rope.traditional = false;
            }
        }
        arch.attention.qk_norm = Some(QkNorm {
            q: "q_norm".into(),
            k: "k_norm".into(),
            scope: QkNormScope::PerHead,
        });
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "none: Qwen's tokenizers add no BOS (the model has no BOS token)"
    }
}
