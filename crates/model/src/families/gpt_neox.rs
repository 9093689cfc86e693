//! GPT-NeoX and Pythia (`mlx_lm/models/gpt_neox.py`): LayerNorm, attention and MLP in
//! parallel on the block's input (`use_parallel_residual`, the default: no `resid_mid`),
//! one fused `query_key_value` projection laid out per head as `[query, key, value]`,
//! RoPE over the first `rotary_pct` of each head, biases everywhere, untied `embed_out`.
//!
//! mlx-lm 0.32.2 uses the tanh approximation of GELU whatever the config says; Hugging
//! Face's GPT-NeoX (and TransformerLens, on which Pythia SAEs were trained) uses the
//! exact GELU for `hidden_act = "gelu"`, Pythia's setting. saeidx follows the config.
//!
//! The Hugging Face layout names blocks `gpt_neox.layers.L`; mlx-lm's are `model.h.L`.

use serde::Deserialize;
use serde_json::Value;

use super::{Family, Placement, check_heads, head_width, parse};
use crate::architecture::{
    Activation, Architecture, AttentionSpec, BlockSpec, EmbeddingScale, EmbeddingSpec,
    LayerAttention, LmHead, MlpInput, MlpSpec, NormKind, NormSpec, Projections, RopeSpec,
};

/// The GPT-NeoX family.
pub struct GptNeox;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    layer_norm_eps: f32,
    vocab_size: usize,
    #[serde(default)]
    intermediate_size: Option<usize>,
    #[serde(alias = "rope_theta", default = "default_base")]
    rotary_emb_base: f32,
    #[serde(alias = "partial_rotary_factor", default = "one")]
    rotary_pct: f64,
    #[serde(default = "yes")]
    use_parallel_residual: bool,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default = "yes")]
    attention_bias: bool,
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn default_base() -> f32 {
    10_000.0
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

fn gelu() -> String {
    "gelu".into()
}

impl Family for GptNeox {
    fn name(&self) -> &'static str {
        "gpt_neox"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gpt_neox"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let c: Config = parse(config, "gpt_neox")?;
        if c.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            return Err("GPT-NeoX with rope_scaling (mlx-lm and saeidx rotate unscaled)".into());
        }
        if !c.attention_bias || c.tie_word_embeddings {
            return Err(
                "a GPT-NeoX variant without attention biases or with tied embeddings".into(),
            );
        }
        let heads = c.num_attention_heads;
        let head_dim = head_width(c.hidden_size, heads)?;
        let rope_dims = (head_dim as f64 * c.rotary_pct) as usize;
        check_heads(heads, heads, head_dim, rope_dims)?;
        let name = |s: &str| s.to_string();
        Ok(Architecture {
            family: self.name(),
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            vocab_size: c.vocab_size,
            embedding: EmbeddingSpec {
                tokens: name("model.embed_in"),
                positions: None,
                scale: EmbeddingScale::None,
            },
            layer_prefix: name("model.h"),
            norm: NormSpec {
                kind: NormKind::Layer,
                eps: c.layer_norm_eps,
            },
            block: BlockSpec {
                pre_attention_norm: Some(name("input_layernorm")),
                pre_mlp_norm: Some(name("post_attention_layernorm")),
                parallel: c.use_parallel_residual,
                ..BlockSpec::default()
            },
            attention: AttentionSpec {
                module: name("attention"),
                heads,
                kv_heads: heads,
                head_dim,
                projections: Projections::FusedPerHead(name("query_key_value")),
                qkv_bias: true,
                output: name("dense"),
                output_bias: true,
                qk_norm: None,
                scale: (head_dim as f32).powf(-0.5),
                softcap: None,
                layers: vec![
                    LayerAttention {
                        rope: Some(RopeSpec::plain(rope_dims, c.rotary_emb_base)),
                        window: None,
                    };
                    c.num_hidden_layers
                ],
            },
            mlp: MlpSpec {
                module: name("mlp"),
                input: MlpInput::Plain {
                    up: name("dense_h_to_4h"),
                },
                down: name("dense_4h_to_h"),
                hidden: c.intermediate_size.unwrap_or(4 * c.hidden_size),
                bias: true,
                activation: Activation::from_hf(&c.hidden_act)?,
            },
            final_norm: name("model.final_layer_norm"),
            lm_head: Some(LmHead {
                module: name("model.embed_out"),
                required: true,
            }),
        })
    }

    fn place(&self, key: &str) -> Placement {
        const BUFFERS: &[&str] = &[
            ".attention.bias",
            ".attention.masked_bias",
            ".attention.rotary_emb.inv_freq",
        ];
        if BUFFERS.iter().any(|suffix| key.ends_with(suffix)) {
            return Placement::Ignored;
        }
        let key = if key.starts_with("model.") {
            key.to_string()
        } else {
            format!("model.{key}")
        };
        Placement::At(
            key.replace(".gpt_neox.layers.", ".h.")
                .replace(".gpt_neox.", "."),
        )
    }

    fn bos(&self) -> &'static str {
        "none: Pythia's tokenizer adds no BOS; TransformerLens (and SAELens SAEs trained with it) \
         prepend <|endoftext|>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_move_to_mlx_lm_names() {
        let family = GptNeox;
        for (published, placed) in [
            (
                "gpt_neox.layers.2.attention.query_key_value.weight",
                "model.h.2.attention.query_key_value.weight",
            ),
            ("gpt_neox.embed_in.weight", "model.embed_in.weight"),
            (
                "gpt_neox.final_layer_norm.bias",
                "model.final_layer_norm.bias",
            ),
            ("embed_out.weight", "model.embed_out.weight"),
            (
                "model.h.0.mlp.dense_4h_to_h.bias",
                "model.h.0.mlp.dense_4h_to_h.bias",
            ),
        ] {
            assert_eq!(family.place(published), Placement::At(placed.into()));
        }
        assert_eq!(
            family.place("gpt_neox.layers.0.attention.rotary_emb.inv_freq"),
            Placement::Ignored
        );
    }

    #[test]
    fn a_parallel_block_has_no_resid_mid() {
        let config = serde_json::json!({
            "model_type": "gpt_neox", "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "layer_norm_eps": 1e-5, "vocab_size": 32,
            "rotary_pct": 0.25, "max_position_embeddings": 64,
        });
        let config = crate::config::ModelConfig::from_value(config).unwrap();
        let rope = config.architecture.attention.layers[0]
            .rope
            .as_ref()
            .unwrap();
        assert_eq!(rope.dims, 4);
        let hook = |kind| crate::hook::HookPoint { layer: 1, kind };
        let error = config
            .check_hook(&hook(crate::hook::HookKind::ResidMid))
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no residual stream between them"),
            "{error}"
        );
        assert!(
            config
                .check_hook(&hook(crate::hook::HookKind::MlpOut))
                .is_ok()
        );
    }
}
