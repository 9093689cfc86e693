//! Qwen 2 and 2.5 (`mlx_lm/models/qwen2.py`): the Llama block with biases on the query,
//! key and value projections (none on the output), head width `hidden_size / heads`,
//! embeddings tied unless the config says otherwise.
//!
//! Hugging Face's optional `use_sliding_window` (off in the released models) is refused:
//! mlx-lm attends globally.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, RopeConfig, check_heads, head_width, parse};
use crate::architecture::{Activation, Architecture};

/// The Qwen 2 family.
pub struct Qwen2;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    rms_norm_eps: f32,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default = "silu")]
    hidden_act: String,
    #[serde(flatten)]
    rope: RopeConfig,
}

fn yes() -> bool {
    true
}

fn silu() -> String {
    "silu".into()
}

impl Family for Qwen2 {
    fn name(&self) -> &'static str {
        "qwen2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["qwen2"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "qwen2")?;
        if c.use_sliding_window {
            return Err("Qwen 2 with use_sliding_window = true (mlx-lm attends globally)".into());
        }
        let heads = c.num_attention_heads;
        let head_dim = head_width(c.hidden_size, heads)?;
        check_heads(heads, c.num_key_value_heads, head_dim, head_dim)?;
        let mut arch = LlamaLayout {
            family: self.name(),
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            vocab_size: c.vocab_size,
            intermediate_size: c.intermediate_size,
            heads,
            kv_heads: c.num_key_value_heads,
            head_dim,
            eps: c.rms_norm_eps,
            rope: c
                .rope
                .spec(head_dim, Some(1_000_000.0), c.max_position_embeddings)?,
            activation: Activation::from_hf(&c.hidden_act)?,
            tie_word_embeddings: Some(c.tie_word_embeddings),
        }
        .build();
        arch.attention.qkv_bias = true;
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "none: Qwen's tokenizers add no BOS (the model has no BOS token)"
    }
}
