//! The shape of a dense decoder-only transformer, as a table every family fills in.
//!
//! A family's file ([`crate::families`]) reads its `config.json` and returns an
//! [`Architecture`]: module names in the MLX layout (the names mlx-lm's model classes use),
//! which norms sit where, how attention projects, rotates, scales and masks, and what the
//! MLP computes. The forward pass ([`crate::transformer`]) and the checkpoint check
//! ([`crate::checkpoint`]) read only this table, so a new family is one file.

use crate::hook::{HookError, HookKind, HookPoint};

/// How a norm normalizes (every norm of a model, query/key norms included, is one kind).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// RMSNorm scaled by its `weight`.
    Rms,
    /// RMSNorm scaled by `1 + weight` (Gemma).
    RmsPlusOne,
    /// LayerNorm with `weight` and `bias`.
    Layer,
}

/// The model's norms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormSpec {
    /// The kind.
    pub kind: NormKind,
    /// Epsilon.
    pub eps: f32,
}

/// Which norms a block has around its sublayers, by module name inside the block
/// (`input_layernorm`, `ln_1`, ...), and whether attention and MLP run in parallel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockSpec {
    /// Applied to the residual stream before attention.
    pub pre_attention_norm: Option<String>,
    /// Applied to attention's output before it is added (Gemma 2/3, OLMo 2).
    pub post_attention_norm: Option<String>,
    /// Applied before the MLP.
    pub pre_mlp_norm: Option<String>,
    /// Applied to the MLP's output before it is added (Gemma 2/3, OLMo 2).
    pub post_mlp_norm: Option<String>,
    /// Attention and MLP both read the block's input and add to it together (GPT-NeoX's
    /// `use_parallel_residual`): there is no `resid_mid`.
    pub parallel: bool,
}

/// How the query, key and value projections are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Projections {
    /// Three modules, e.g. `q_proj`, `k_proj`, `v_proj`.
    Separate {
        /// Query projection.
        q: String,
        /// Key projection.
        k: String,
        /// Value projection.
        v: String,
    },
    /// One module whose output is all queries, then all keys, then all values
    /// (GPT-2's `c_attn`, Phi-3's `qkv_proj`).
    Fused(String),
    /// One module whose output is, per head, its query, key and value (GPT-NeoX's
    /// `query_key_value`: `[heads, 3, head_dim]`).
    FusedPerHead(String),
}

/// Where query/key norms apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormScope {
    /// Over each head's `head_dim` values (Qwen 3, Gemma 3).
    PerHead,
    /// Over all heads' values together, before splitting heads (OLMo 2).
    Whole,
}

/// Query/key norms.
#[derive(Debug, Clone, PartialEq)]
pub struct QkNorm {
    /// Module name of the query norm inside the attention module.
    pub q: String,
    /// Module name of the key norm.
    pub k: String,
    /// What they normalize over.
    pub scope: QkNormScope,
}

/// Rotary position embedding of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    /// Dimensions rotated at the start of each head (all of them unless partial).
    pub dims: usize,
    /// Rotate interleaved pairs instead of the two halves.
    pub traditional: bool,
    /// Base frequency; ignored when `freqs` is set.
    pub base: f32,
    /// Positions are multiplied by this (linear scaling: 1 / factor).
    pub scale: f32,
    /// Per-pair periods replacing `base` (Llama 3 and Phi-3 "longrope" scaling).
    pub freqs: Option<Vec<f32>>,
    /// The rotated dimensions of queries and keys are multiplied by this first (Phi-3's
    /// long-context scaling); 1 otherwise.
    pub input_scale: f32,
}

impl RopeSpec {
    /// Plain RoPE over `dims` dimensions with `base`.
    pub fn plain(dims: usize, base: f32) -> Self {
        Self {
            dims,
            traditional: false,
            base,
            scale: 1.0,
            freqs: None,
            input_scale: 1.0,
        }
    }
}

/// What one layer's attention looks at and how positions enter it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerAttention {
    /// Rotary embedding; `None` for models with learned absolute positions (GPT-2).
    pub rope: Option<RopeSpec>,
    /// Sliding window: a query sees only the keys less than this many positions back.
    pub window: Option<usize>,
}

/// The attention sublayer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Module name inside the block (`self_attn`, `attn`, `attention`).
    pub module: String,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// The projections.
    pub projections: Projections,
    /// Whether the query/key/value projections have biases.
    pub qkv_bias: bool,
    /// The output projection's module name (`o_proj`, `c_proj`, `dense`).
    pub output: String,
    /// Whether the output projection has a bias.
    pub output_bias: bool,
    /// Query/key norms.
    pub qk_norm: Option<QkNorm>,
    /// Attention logits are multiplied by this.
    pub scale: f32,
    /// Logits are soft-capped to `cap · tanh(logits / cap)` (Gemma 2).
    pub softcap: Option<f32>,
    /// Per layer: RoPE and window (layers differ in Gemma 2/3).
    pub layers: Vec<LayerAttention>,
}

impl AttentionSpec {
    /// Width of all query heads together.
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// The MLP's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (gated: SwiGLU).
    Silu,
    /// GELU, exact (erf).
    Gelu,
    /// GELU, tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
}

impl Activation {
    /// Hugging Face's `hidden_act` / `activation_function` names.
    pub fn from_hf(name: &str) -> Result<Self, String> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_approx" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(format!(
                    "activation {other:?} (supported: silu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)"
                ));
            }
        })
    }
}

/// How the MLP's input projections are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum MlpInput {
    /// `act(up(x))` (GPT-2, GPT-NeoX).
    Plain {
        /// The up projection.
        up: String,
    },
    /// `act(gate(x)) · up(x)`.
    Gated {
        /// The gate projection.
        gate: String,
        /// The up projection.
        up: String,
    },
    /// Gated, with gate and up in one module, gate first (Phi-3's `gate_up_proj`).
    FusedGated(String),
}

/// The MLP sublayer.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpSpec {
    /// Module name inside the block (`mlp`).
    pub module: String,
    /// Input projections.
    pub input: MlpInput,
    /// The down projection's module name.
    pub down: String,
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Whether the projections have biases.
    pub bias: bool,
    /// The nonlinearity.
    pub activation: Activation,
}

/// How the embedding output is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EmbeddingScale {
    /// Not scaled.
    None,
    /// Multiplied by this (Gemma: √hidden_size, as mlx-lm rounds it).
    By(f32),
}

/// Token (and position) embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    /// The token embedding module (`model.embed_tokens`, `model.wte`, ...).
    pub tokens: String,
    /// Learned absolute positions: the module and how many positions it has (GPT-2).
    pub positions: Option<(String, usize)>,
    /// Scaling of the token embeddings.
    pub scale: EmbeddingScale,
}

/// A model family's whole architecture for one `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// The family (`llama`, `gpt2`, ...), as [`crate::families`] names it.
    pub family: &'static str,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Embeddings.
    pub embedding: EmbeddingSpec,
    /// Prefix of block modules: block `L` is `{layer_prefix}.{L}`.
    pub layer_prefix: String,
    /// The norms' kind.
    pub norm: NormSpec,
    /// Norm placement in a block.
    pub block: BlockSpec,
    /// Attention.
    pub attention: AttentionSpec,
    /// MLP.
    pub mlp: MlpSpec,
    /// The final norm's module.
    pub final_norm: String,
    /// The output projection's module when the checkpoint has one; `required` when the
    /// embeddings are not tied.
    pub lm_head: Option<LmHead>,
}

/// The output projection (never computed: saeidx stops at the deepest hook, but its
/// shape is checked).
#[derive(Debug, Clone, PartialEq)]
pub struct LmHead {
    /// Module path.
    pub module: String,
    /// Whether the checkpoint must have it (untied embeddings).
    pub required: bool,
}

impl Architecture {
    /// The module path of block `layer`'s sublayer `name` (`model.layers.3.mlp`).
    pub fn block_module(&self, layer: usize, name: &str) -> String {
        format!("{}.{layer}.{name}", self.layer_prefix)
    }

    /// Width of the activations at a hook of `kind`: all heads' for `attn.hook_z`, the
    /// residual stream's otherwise.
    pub fn hook_width(&self, kind: HookKind) -> usize {
        match kind {
            HookKind::AttnZ => self.attention.q_width(),
            _ => self.hidden_size,
        }
    }

    /// Checks that `hook` exists in this model: its layer is in range and its kind
    /// exists in the block (a parallel block has no `resid_mid`).
    pub fn check_hook(&self, hook: &HookPoint) -> Result<(), HookError> {
        hook.check_layers(self.layers)?;
        if self.block.parallel && hook.kind == HookKind::ResidMid {
            return Err(HookError::NotInFamily {
                hook: hook.name(),
                family: self.family.to_string(),
                reason: "attention and MLP run in parallel on the block's input, so there \
                         is no residual stream between them"
                    .into(),
            });
        }
        Ok(())
    }
}
