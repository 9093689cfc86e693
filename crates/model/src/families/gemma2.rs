//! Gemma 2 (`mlx_lm/models/gemma2.py`): token embeddings scaled by √hidden_size,
//! RMSNorms that scale by `1 + weight`, norms both before and after attention and MLP
//! (what a sublayer adds to the residual stream is its *post*-normed output: that is
//! `hook_attn_out` / `hook_mlp_out`, as in TransformerLens and Gemma Scope), attention
//! scaled by `query_pre_attn_scalar^-½` with logits soft-capped at
//! `attn_logit_softcapping`, a GELU-tanh gated MLP, tied embeddings.
//!
//! Layers alternate sliding-window (even layers, `sliding_window` tokens, 4096 in the
//! released models) and global attention, as Hugging Face's Gemma 2 computes it.
//! mlx-lm 0.32.2 attends globally in every layer; the two agree on windows of up to
//! `sliding_window` tokens.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, LlamaLayout, RopeConfig, check_heads, parse, sliding_layers};
use crate::architecture::{Activation, Architecture, EmbeddingScale, NormKind};

/// The Gemma 2 family.
pub struct Gemma2;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    head_dim: usize,
    rms_norm_eps: f32,
    vocab_size: usize,
    num_key_value_heads: usize,
    #[serde(default = "default_scalar")]
    query_pre_attn_scalar: f32,
    #[serde(default = "default_window")]
    sliding_window: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(alias = "hidden_activation", default = "gelu_tanh")]
    hidden_act: String,
    #[serde(flatten)]
    rope: RopeConfig,
}

fn default_scalar() -> f32 {
    144.0
}

fn default_window() -> usize {
    4096
}

fn gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}

/// The soft-capping of a Gemma config: absent means mlx-lm's default `default`, `null`
/// means none.
pub(crate) fn softcap(config: &Value, default: Option<f32>) -> Result<Option<f32>, String> {
    match config.get("attn_logit_softcapping") {
        None => Ok(default),
        Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .map(|cap| Some(cap as f32))
            .ok_or_else(|| format!("attn_logit_softcapping {value} is not a number")),
    }
}

impl Family for Gemma2 {
    fn name(&self) -> &'static str {
        "gemma2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "gemma2")?;
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
            rope: c.rope.spec(c.head_dim, Some(10_000.0), None)?,
            activation: Activation::from_hf(&c.hidden_act)?,
            tie_word_embeddings: Some(true),
        }
        .build();
        make_gemma(&mut arch);
        arch.embedding.scale = EmbeddingScale::By((c.hidden_size as f64).sqrt() as f32);
        arch.attention.scale = c.query_pre_attn_scalar.powf(-0.5);
        arch.attention.softcap = softcap(config, Some(50.0))?;
        let sliding = sliding_layers(c.layer_types.as_deref(), c.num_hidden_layers, |layer| {
            layer % 2 == 0
        })?;
        for (layer, sliding) in arch.attention.layers.iter_mut().zip(sliding) {
            layer.window = sliding.then_some(c.sliding_window);
        }
        Ok(arch)
    }

    fn bos(&self) -> &'static str {
        "<bos>, required: Gemma's tokenizer adds it, and the model is not meant to run without it"
    }
}

/// What Gemma 2 and 3 change in the Llama layout: (1 + w) RMSNorms before and after
/// both sublayers, and an embedding scaled by √hidden_size (set by the caller, which
/// knows how the family rounds it).
pub(crate) fn make_gemma(arch: &mut Architecture) {
    arch.norm.kind = NormKind::RmsPlusOne;
    arch.block.pre_attention_norm = Some("input_layernorm".into());
    arch.block.post_attention_norm = Some("post_attention_layernorm".into());
    arch.block.pre_mlp_norm = Some("pre_feedforward_layernorm".into());
    arch.block.post_mlp_norm = Some("post_feedforward_layernorm".into());
}
