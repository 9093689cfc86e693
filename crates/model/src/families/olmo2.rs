//! OLMo 2 (`mlx_lm/models/olmo2.py`): no norm before attention or MLP, an RMSNorm on
//! each sublayer's output before it is added (`post_attention_layernorm`,
//! `post_feedforward_layernorm`: `hook_attn_out` / `hook_mlp_out` are the normed
//! outputs), RMSNorms on all query and all key values together (before splitting
//! heads), SwiGLU.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, RopeConfig, check_heads, head_width, parse};
use crate::architecture::{Activation, Architecture, QkNorm, QkNormScope};

/// The OLMo 2 family.
pub struct Olmo2;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
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
    #[serde(flatten)]
    rope: RopeConfig,
}

fn silu() -> String {
    "silu".into()
}

impl Family for Olmo2 {
    fn name(&self) -> &'static str {
        "olmo2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["olmo2"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "olmo2")?;
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
        arch.block.pre_attention_norm = None;
        arch.block.post_attention_norm = Some("post_attention_layernorm".into());
        arch.block.pre_mlp_norm = None;
        arch.block.post_mlp_norm = Some("post_feedforward_layernorm".into());
        arch.attention.qkv_bias = c.attention_bias;
        arch.attention.output_bias = c.attention_bias;
        arch.attention.qk_norm = Some(QkNorm {
            q: "q_norm".into(),
            k: "k_norm".into(),
            scope: QkNormScope::Whole,
        });
        arch.mlp.bias = c.mlp_bias;
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "as the tokenizer says: OLMo 2's tokenizer marks documents with <|endoftext|>"
    }
}
