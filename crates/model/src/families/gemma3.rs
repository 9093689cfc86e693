//! Gemma 3 (`mlx_lm/models/gemma3_text.py`, and `gemma3.py` for the multimodal
//! checkpoints of the 4B and larger models, whose language model this reads): Gemma 2's
//! block (√d-scaled embeddings, (1 + w) RMSNorms before and after both sublayers,
//! GELU-tanh gated MLP) with per-head (1 + w) RMSNorms on queries and keys, no logit
//! soft-capping, and a repeating pattern of `sliding_window_pattern − 1` local layers
//! (sliding window, RoPE base `rope_local_base_freq`) then one global layer (RoPE base
//! `rope_theta` with `rope_scaling`).
//!
//! The embedding scale is √hidden_size rounded to bfloat16, as mlx-lm computes it (and
//! as the released bfloat16 weights run). The multimodal checkpoints' vision tower and
//! projector are not loaded.

use serde::Deserialize;
use serde_json::Value;

use super::{
    Family, LlamaLayout, Placement, RopeConfig, check_heads, gemma2, parse, rope_with_scaling,
    sliding_layers,
};
use crate::architecture::{
    Activation, Architecture, EmbeddingScale, QkNorm, QkNormScope, RopeSpec,
};

/// Gemma 3's text-only checkpoints (`model_type` `gemma3_text`: 270M, 1B).
pub struct Gemma3Text;

/// Gemma 3's multimodal checkpoints (`model_type` `gemma3`: 4B, 12B, 27B).
pub struct Gemma3;

#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    #[serde(default = "default_head_dim")]
    head_dim: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f32,
    vocab_size: usize,
    num_key_value_heads: usize,
    #[serde(default = "default_local_base")]
    rope_local_base_freq: f32,
    #[serde(default = "default_scalar")]
    query_pre_attn_scalar: f32,
    #[serde(default = "default_window")]
    sliding_window: usize,
    #[serde(default = "default_pattern")]
    sliding_window_pattern: usize,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    max_position_embeddings: Option<usize>,
    #[serde(alias = "hidden_activation", default = "gelu_tanh")]
    hidden_act: String,
    #[serde(flatten)]
    rope: RopeConfig,
}

fn default_head_dim() -> usize {
    256
}
fn default_eps() -> f32 {
    1e-6
}
fn default_local_base() -> f32 {
    10_000.0
}
fn default_scalar() -> f32 {
    256.0
}
fn default_window() -> usize {
    512
}
fn default_pattern() -> usize {
    6
}
fn gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}

/// The language model of a Gemma 3 text config.
fn text_architecture(config: &Value, family: &'static str) -> Result<Architecture, String> {
    let c: Config = parse(config, family)?;
    let head_dim = c.head_dim;
    check_heads(
        c.num_attention_heads,
        c.num_key_value_heads,
        head_dim,
        head_dim,
    )?;
    if c.sliding_window_pattern == 0 {
        return Err("sliding_window_pattern must be positive".into());
    }
    if gemma2::softcap(config, None)?.is_some() {
        return Err("Gemma 3 with attn_logit_softcapping (mlx-lm and saeidx apply none)".into());
    }
    let global_rope = rope_with_scaling(
        head_dim,
        c.rope.theta(Some(1_000_000.0))?,
        c.rope.scaling(),
        c.max_position_embeddings,
    )?;
    let local_rope = RopeSpec::plain(head_dim, c.rope_local_base_freq);
    let mut arch = LlamaLayout {
        family,
        hidden_size: c.hidden_size,
        layers: c.num_hidden_layers,
        vocab_size: c.vocab_size,
        intermediate_size: c.intermediate_size,
        heads: c.num_attention_heads,
        kv_heads: c.num_key_value_heads,
        head_dim,
        eps: c.rms_norm_eps,
        rope: global_rope.clone(),
        activation: Activation::from_hf(&c.hidden_act)?,
        tie_word_embeddings: None,
    }
    .build();
    gemma2::make_gemma(&mut arch);
    let scale = half::bf16::from_f64((c.hidden_size as f64).sqrt()).to_f32();
    arch.embedding.scale = EmbeddingScale::By(scale);
    arch.attention.scale = c.query_pre_attn_scalar.powf(-0.5);
    arch.attention.qk_norm = Some(QkNorm {
        q: "q_norm".into(),
        k: "k_norm".into(),
        scope: QkNormScope::PerHead,
    });
    let pattern = c.sliding_window_pattern;
    let sliding = sliding_layers(c.layer_types.as_deref(), c.num_hidden_layers, |i| {
        (i + 1) % pattern != 0
    })?;
    for (layer, sliding) in arch.attention.layers.iter_mut().zip(sliding) {
        if sliding {
            layer.window = Some(c.sliding_window);
            layer.rope = Some(local_rope.clone());
        }
    }
    Ok(arch)
}

impl Family for Gemma3Text {
    fn name(&self) -> &'static str {
        "gemma3_text"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma3_text"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        text_architecture(config, self.name())
    }

    fn bos(&self) -> &'static str {
        "<bos>, required: Gemma's tokenizer adds it, and the model is not meant to run without it"
    }
}

/// Prefix of the language model's modules in the multimodal checkpoints.
const LANGUAGE_MODEL: &str = "language_model.";

impl Family for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma3"]
    }

    fn architecture(&self, config: &Value) -> Result<Architecture, String> {
        let mut text = config
            .get("text_config")
            .cloned()
            .ok_or("a gemma3 config.json without text_config")?;
        // As mlx-lm's gemma3.ModelArgs: the top-level vocabulary wins, and two head
        // counts have defaults.
        let vocab = config.get("vocab_size").cloned().unwrap_or(262_208.into());
        text["vocab_size"] = vocab;
        for (key, default) in [("num_attention_heads", 8), ("num_key_value_heads", 4)] {
            if text.get(key).is_none() {
                text[key] = default.into();
            }
        }
        let mut arch = text_architecture(&text, self.name())?;
        arch.embedding.tokens = format!("{LANGUAGE_MODEL}{}", arch.embedding.tokens);
        arch.layer_prefix = format!("{LANGUAGE_MODEL}{}", arch.layer_prefix);
        arch.final_norm = format!("{LANGUAGE_MODEL}{}", arch.final_norm);
        if let Some(head) = &mut arch.lm_head {
            head.module = format!("{LANGUAGE_MODEL}{}", head.module);
        }
        Ok(arch)
    }

    fn place(&self, key: &str) -> Placement {
        // transformers ≥ 4.52 saves `model.language_model.X` for `language_model.model.X`.
        let key = match key.strip_prefix("model.language_model.") {
            Some(rest) => format!("{LANGUAGE_MODEL}model.{rest}"),
            None => key.to_string(),
        };
        let tower = [
            "vision_tower.",
            "multi_modal_projector.",
            "model.vision_tower.",
            "model.multi_modal_projector.",
        ];
        if tower.iter().any(|prefix| key.starts_with(prefix)) || key == "lm_head.weight" {
            Placement::Ignored
        } else {
            Placement::At(key)
        }
    }

    fn bos(&self) -> &'static str {
        Gemma3Text.bos()
    }
}
