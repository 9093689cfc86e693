//! GPT-2 (`mlx_lm/models/gpt2.py`): learned absolute positions added to the token
//! embeddings, LayerNorm before attention and MLP, one fused `c_attn` projection (all
//! queries, then keys, then values) with biases, a 4×-wide GELU-tanh MLP, tied
//! embeddings.
//!
//! The Hugging Face layout stores `h.L...` (or `transformer.h.L...`) without mlx-lm's
//! `model.` prefix, and its `c_attn`, `c_proj` and `c_fc` weights as Conv1D `[in, out]`
//! matrices: they are transposed at load, as mlx-lm's `sanitize` does. The causal-mask
//! buffers (`attn.bias`, `attn.masked_bias`) are not parameters.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, Placement, check_heads, head_width, parse};
use crate::architecture::{
    Activation, Architecture, AttentionSpec, BlockSpec, EmbeddingScale, EmbeddingSpec,
    LayerAttention, LmHead, MlpInput, MlpSpec, NormKind, NormSpec, Projections,
};

/// The GPT-2 family.
pub struct Gpt2;

#[derive(Deserialize)]
struct Config {
    n_embd: usize,
    n_head: usize,
    n_layer: usize,
    n_positions: usize,
    layer_norm_epsilon: f32,
    vocab_size: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    activation_function: String,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}

fn gelu_new() -> String {
    "gelu_new".into()
}

fn yes() -> bool {
    true
}

/// Modules whose Hugging Face weights are Conv1D `[in, out]` matrices.
const CONV1D: &[&str] = &[
    ".attn.c_attn.weight",
    ".attn.c_proj.weight",
    ".mlp.c_fc.weight",
    ".mlp.c_proj.weight",
];

impl Family for Gpt2 {
    fn name(&self) -> &'static str {
        "gpt2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "gpt2")?;
        if !c.scale_attn_weights || c.scale_attn_by_inverse_layer_idx {
            return Err("a GPT-2 variant with scale_attn_weights = false or \
                 scale_attn_by_inverse_layer_idx = true (mlx-lm and saeidx scale by 1/√head_dim)"
                .into());
        }
        let head_dim = head_width(c.n_embd, c.n_head)?;
        check_heads(c.n_head, c.n_head, head_dim, 0)?;
        let name = |s: &str| s.to_string();
        Ok(Architecture {
            family: self.name(),
            hidden_size: c.n_embd,
            layers: c.n_layer,
            vocab_size: c.vocab_size,
            embedding: EmbeddingSpec {
                tokens: name("model.wte"),
                positions: Some((name("model.wpe"), c.n_positions)),
                scale: EmbeddingScale::None,
            },
            layer_prefix: name("model.h"),
            norm: NormSpec {
                kind: NormKind::Layer,
                eps: c.layer_norm_epsilon,
            },
            block: BlockSpec {
                pre_attention_norm: Some(name("ln_1")),
                pre_mlp_norm: Some(name("ln_2")),
                ..BlockSpec::default()
            },
            attention: AttentionSpec {
                module: name("attn"),
                heads: c.n_head,
                kv_heads: c.n_head,
                head_dim,
                projections: Projections::Fused(name("c_attn")),
                qkv_bias: true,
                output: name("c_proj"),
                output_bias: true,
                qk_norm: None,
                scale: (head_dim as f32).powf(-0.5),
                softcap: None,
                layers: vec![
                    LayerAttention {
                        rope: None,
                        window: None
                    };
                    c.n_layer
                ],
            },
            mlp: MlpSpec {
                module: name("mlp"),
                input: MlpInput::Plain { up: name("c_fc") },
                down: name("c_proj"),
                hidden: c.n_inner.unwrap_or(4 * c.n_embd),
                bias: true,
                activation: Activation::from_hf(&c.activation_function)?,
            },
            final_norm: name("model.ln_f"),
            lm_head: None::<LmHead>,
        })
    }

    fn place(&self, key: &str) -> Placement {
        if key.starts_with("model.") {
            return Placement::At(key.to_string());
        }
        let key = key.strip_prefix("transformer.").unwrap_or(key);
        if key.ends_with(".attn.bias")
            || key.ends_with(".attn.masked_bias")
            || key == "lm_head.weight"
        {
            return Placement::Ignored;
        }
        let placed = format!("model.{key}");
        if CONV1D.iter().any(|suffix| key.ends_with(suffix)) {
            Placement::Transposed(placed)
        } else {
            Placement::At(placed)
        }
    }

    fn bos(&self) -> &'static str {
        "none: GPT-2's tokenizer adds no BOS; TransformerLens (and SAELens SAEs trained with it) \
         prepend <|endoftext|>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_place_the_same_parameters() {
        let family = Gpt2;
        assert_eq!(
            family.place("h.3.attn.c_attn.weight"),
            Placement::Transposed("model.h.3.attn.c_attn.weight".into())
        );
        assert_eq!(
            family.place("transformer.h.3.mlp.c_proj.weight"),
            Placement::Transposed("model.h.3.mlp.c_proj.weight".into())
        );
        assert_eq!(
            family.place("h.3.attn.c_attn.bias"),
            Placement::At("model.h.3.attn.c_attn.bias".into())
        );
        assert_eq!(family.place("h.3.attn.bias"), Placement::Ignored);
        assert_eq!(
            family.place("wte.weight"),
            Placement::At("model.wte.weight".into())
        );
        assert_eq!(
            family.place("model.h.3.attn.c_attn.weight"),
            Placement::At("model.h.3.attn.c_attn.weight".into())
        );
    }
}
