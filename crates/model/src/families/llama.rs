//! Llama and Mistral (`mlx_lm/models/llama.py`): RMSNorm before attention and MLP,
//! grouped-query attention with RoPE (optionally Llama 3 or linear scaling), SwiGLU,
//! optional attention/MLP biases, tied or untied embeddings, and sliding-window layers
//! where `layer_types` names them.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, RopeConfig, check_heads, head_width, parse, sliding_layers};
use crate::architecture::{Activation, Architecture};

/// The Llama family.
pub struct Llama;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f32,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default = "silu")]
    hidden_act: String,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(flatten)]
    rope: RopeConfig,
}

fn silu() -> String {
    "silu".into()
}

impl Family for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["llama", "mistral"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "llama")?;
        let heads = c.num_attention_heads;
        let kv_heads = c.num_key_value_heads.unwrap_or(heads);
        let head_dim = match c.head_dim {
            Some(dim) => dim,
            None => head_width(c.hidden_size, heads)?,
        };
        check_heads(heads, kv_heads, head_dim, head_dim)?;
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
            rope: c
                .rope
                .spec(head_dim, Some(10_000.0), c.max_position_embeddings)?,
            activation: Activation::from_hf(&c.hidden_act)?,
            tie_word_embeddings: c.tie_word_embeddings,
        }
        .build();
        arch.attention.qkv_bias = c.attention_bias;
        arch.attention.output_bias = c.attention_bias;
        arch.mlp.bias = c.mlp_bias;
        // As mlx-lm: only layers `layer_types` marks as sliding use `sliding_window` (a
        // Mistral 7B v0.1 config's window alone changes nothing).
        let sliding = sliding_layers(c.layer_types.as_deref(), c.num_hidden_layers, |_| false)?;
        for (layer, sliding) in arch.attention.layers.iter_mut().zip(sliding) {
            layer.window = c.sliding_window.filter(|_| sliding);
        }
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "the tokenizer decides: Llama 2/3 tokenizers add <s> / <|begin_of_text|>; SmolLM2's adds none"
    }
}
