//! The forward pass of every supported family, run with MLX up to the hook points asked
//! for and no further.
//!
//! One implementation reads the family's [`Architecture`]: embeddings (scaled, plus
//! learned positions), then per block the norms around attention and MLP, sequential or
//! parallel; attention with separate or fused projections, optional query/key norms,
//! RoPE (full or partial, scaled), grouped-query heads, soft-capping and sliding windows;
//! a plain or gated MLP. Everything is computed in f32. On the CPU backend quantized
//! weights are dequantized once at load: MLX's quantized matmul is much slower there than
//! an f32 GEMM through OpenBLAS. Token (and position) embeddings stay as stored and only
//! the rows a batch uses are converted, which is exact and saves the f32 copy of a large
//! vocabulary.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mlx_rs::{
    Array, Device, DeviceType, Dtype, Stream,
    fast::{self, ScaledDotProductAttentionMask},
    nn, ops,
};

use crate::{
    ModelError,
    architecture::{
        Activation, Architecture, AttentionSpec, EmbeddingScale, MlpInput, NormKind, NormSpec,
        Projections, QkNormScope, RopeSpec,
    },
    checkpoint::Checkpoint,
    config::{ModelConfig, Quantization},
    hook::{HookError, HookKind, HookPoint},
};

/// How weights are kept in memory for the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStorage {
    /// Every weight in f32 (quantized ones dequantized at load): fastest on CPU.
    Float32,
    /// Quantized weights stay quantized (`quantized_matmul`); others in f32. Less memory,
    /// and the faster choice on GPU backends.
    KeepQuantized,
}

impl WeightStorage {
    /// [`WeightStorage::Float32`] on the CPU backend, [`WeightStorage::KeepQuantized`] on a GPU.
    pub fn for_default_device() -> Self {
        if default_device_is_gpu() {
            WeightStorage::KeepQuantized
        } else {
            WeightStorage::Float32
        }
    }
}

fn default_device_is_gpu() -> bool {
    Device::try_default()
        .and_then(|device| device.get_type())
        .is_ok_and(|kind| matches!(kind, DeviceType::Gpu))
}

/// A linear map `x · Wᵀ (+ b)`.
enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        settings: Quantization,
        bias: Option<Array>,
    },
}

impl Linear {
    fn forward(&self, x: &Array) -> Result<Array, ModelError> {
        let (product, bias) = match self {
            Linear::Dense { weight, bias } => (x.matmul(weight.t())?, bias),
            Linear::Quantized {
                weight,
                scales,
                biases,
                settings,
                bias,
            } => (
                ops::quantized_matmul(
                    x,
                    weight,
                    scales,
                    biases,
                    true,
                    settings.group_size as i32,
                    settings.bits as i32,
                )?,
                bias,
            ),
        };
        Ok(match bias {
            Some(bias) => product.add(bias)?,
            None => product,
        })
    }

    fn weight(&self) -> &Array {
        match self {
            Linear::Dense { weight, .. } | Linear::Quantized { weight, .. } => weight,
        }
    }
}

/// An embedding table kept as stored; rows are converted to f32 when looked up.
enum Table {
    Dense(Array),
    Quantized {
        weight: Array,
        scales: Array,
        biases: Array,
        settings: Quantization,
    },
}

impl Table {
    fn collect_arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        match self {
            Table::Dense(weight) => out.push(weight),
            Table::Quantized {
                weight,
                scales,
                biases,
                ..
            } => out.extend([weight, scales, biases]),
        }
    }

    /// Rows `ids` (any integer shape) in f32, `[..ids, width]`.
    fn rows(&self, ids: &Array) -> Result<Array, ModelError> {
        match self {
            Table::Dense(weight) => f32_array(weight.take_axis(ids, 0)?),
            Table::Quantized {
                weight,
                scales,
                biases,
                settings,
            } => dequantize(
                &weight.take_axis(ids, 0)?,
                &scales.take_axis(ids, 0)?,
                &biases.take_axis(ids, 0)?,
                settings,
            ),
        }
    }
}

/// A norm over the last axis.
struct Norm {
    kind: NormKind,
    /// The scale, in f32 (`1 + weight` for Gemma's norms).
    weight: Array,
    bias: Option<Array>,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &Array) -> Result<Array, ModelError> {
        Ok(match self.kind {
            NormKind::Rms | NormKind::RmsPlusOne => {
                fast::rms_norm(x, Some(&self.weight), self.eps)?
            }
            NormKind::Layer => fast::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps)?,
        })
    }
}

/// Rotary position embedding of one layer.
struct Rope {
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
    input_scale: f32,
}

impl Rope {
    fn new(spec: &RopeSpec) -> Self {
        Self {
            dims: spec.dims as i32,
            traditional: spec.traditional,
            base: spec.freqs.is_none().then_some(spec.base),
            scale: spec.scale,
            freqs: spec
                .freqs
                .as_ref()
                .map(|f| Array::from_slice(f, &[f.len() as i32])),
            input_scale: spec.input_scale,
        }
    }

    /// Rotates `x` `[batch, heads, tokens, head_dim]` (positions from 0).
    fn apply(&self, x: &Array) -> Result<Array, ModelError> {
        let x = if self.input_scale == 1.0 {
            x.clone()
        } else {
            let width = *x.shape().last().unwrap_or(&0);
            let factor = Array::from_f32(self.input_scale);
            if self.dims == width {
                x.multiply(&factor)?
            } else {
                let parts = ops::split_at_indices(x, &[self.dims], -1)?;
                ops::concatenate(&[parts[0].multiply(&factor)?, parts[1].clone()], -1)?
            }
        };
        Ok(fast::rope(
            &x,
            self.dims,
            self.traditional,
            self.base,
            self.scale,
            0,
            self.freqs.as_ref(),
        )?)
    }
}

/// How queries, keys and values are projected.
enum QkvWeights {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
    FusedPerHead(Linear),
}

/// One block's attention.
struct Attention {
    qkv: QkvWeights,
    output: Linear,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    rope: Option<Rope>,
    window: Option<usize>,
}

/// The MLP's input projections.
enum MlpWeights {
    Plain(Linear),
    Gated { gate: Linear, up: Linear },
    FusedGated(Linear),
}

/// One block's MLP.
struct Mlp {
    input: MlpWeights,
    down: Linear,
}

struct Block {
    pre_attention_norm: Option<Norm>,
    post_attention_norm: Option<Norm>,
    pre_mlp_norm: Option<Norm>,
    post_mlp_norm: Option<Norm>,
    attention: Attention,
    mlp: Mlp,
}

/// Token embeddings, learned positions and the embedding scale.
struct Embedding {
    tokens: Table,
    positions: Option<Table>,
    scale: EmbeddingScale,
}

/// A model of any supported family loaded for the forward pass, up to a given layer.
pub struct Transformer {
    config: ModelConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    /// How a batch's rows are shared among MLX streams.
    parallelism: Parallelism,
}

/// How a batch's rows are shared out on the default device.
///
/// MLX runs element-wise work (norms, RoPE, softmax, activations) on one thread per
/// stream, so with a single stream on the CPU backend a second core idles through
/// everything but the matrix products. On the CPU, saeidx therefore gives a batch one MLX
/// stream per core, each calling a single-threaded BLAS: measured on 2 cores, about
/// 1.3–1.6× the tokens/s of one stream with a 2-thread BLAS. A single sequence cannot be
/// split, so it runs on one stream with a BLAS thread per core. GPU backends use one
/// stream.
struct Parallelism {
    streams: Vec<Stream>,
    /// OpenBLAS's `openblas_set_num_threads`, when OpenBLAS is the BLAS in use.
    set_blas_threads: Option<extern "C" fn(libc::c_int)>,
}

impl Parallelism {
    fn for_default_device() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let set_blas_threads = openblas_thread_setter();
        let streams = if default_device_is_gpu() || cores == 1 || set_blas_threads.is_none() {
            vec![Stream::thread_local_or_default()]
        } else {
            (0..cores)
                .map(|_| Stream::new_with_device(&Device::cpu()))
                .collect()
        };
        Self {
            streams,
            set_blas_threads,
        }
    }

    /// The streams to use for `rows` rows, with BLAS threads set to match.
    fn streams_for(&self, rows: usize) -> &[Stream] {
        let used = self.streams.len().min(rows).max(1);
        if let (Some(set_threads), true) = (self.set_blas_threads, self.streams.len() > 1) {
            let threads = if used == 1 { self.streams.len() } else { 1 };
            set_threads(threads as libc::c_int);
        }
        &self.streams[..used]
    }
}

/// OpenBLAS's thread-count setter, looked up at run time: the symbol exists only where
/// OpenBLAS is loaded (Linux, through mlx-link-args); elsewhere (Accelerate, GPU builds)
/// there is nothing to set.
fn openblas_thread_setter() -> Option<extern "C" fn(libc::c_int)> {
    let name = c"openblas_set_num_threads";
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded
    // symbol tables; the symbol, when present, has OpenBLAS's `void (int)` signature.
    unsafe {
        let symbol = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        (!symbol.is_null())
            .then(|| std::mem::transmute::<*mut libc::c_void, extern "C" fn(libc::c_int)>(symbol))
    }
}

/// Activations for each requested hook point: `[batch, tokens, width]` in f32 (the
/// residual stream's width, or all heads' for `attn.hook_z`).
pub type HookActivations = BTreeMap<HookPoint, Array>;

impl Transformer {
    /// Builds the model from a checked checkpoint, keeping only the blocks up to
    /// `last_layer` (all when `None`): layers after the last hook are never loaded.
    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        last_layer: Option<usize>,
        storage: WeightStorage,
    ) -> Result<Self, ModelError> {
        let Checkpoint {
            config,
            mut tensors,
            quantized,
            ..
        } = checkpoint;
        let arch = &config.architecture;
        let layers = arch.layers;
        if let Some(layer) = last_layer.filter(|layer| *layer >= layers) {
            return Err(HookError::LayerOutOfRange { layer, layers }.into());
        }
        let kept_layers = last_layer.map_or(layers, |layer| layer + 1);
        let mut weights = Weights {
            tensors: &mut tensors,
            quantized: &quantized,
            storage,
            norm: arch.norm,
        };
        let embedding = Embedding {
            tokens: weights.table(&arch.embedding.tokens)?,
            positions: match &arch.embedding.positions {
                Some((module, _)) => Some(weights.table(module)?),
                None => None,
            },
            scale: arch.embedding.scale,
        };
        let blocks = (0..kept_layers)
            .map(|layer| weights.block(arch, layer))
            .collect::<Result<Vec<_>, _>>()?;
        // Materialize the converted weights now, once, rather than inside the first batch.
        let mut arrays: Vec<&Array> = Vec::new();
        for table in std::iter::once(&embedding.tokens).chain(&embedding.positions) {
            table.collect_arrays(&mut arrays);
        }
        for block in &blocks {
            block.collect_arrays(&mut arrays);
        }
        mlx_rs::transforms::eval(arrays)?;
        Ok(Self {
            config,
            embedding,
            blocks,
            parallelism: Parallelism::for_default_device(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The number of blocks loaded (the last hook layer + 1, or all).
    pub fn loaded_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Runs token ids `[batch, tokens]` (int32 or uint32) through the blocks needed and
    /// returns the activations at every hook in `hooks`.
    ///
    /// Each row is its own sequence starting at position 0, attending causally: with
    /// right-padding, no real token ever attends to padding or to another row. Nothing
    /// after the deepest hook is computed. The rows are shared out among the model's MLX
    /// streams and evaluated together.
    pub fn forward(
        &self,
        tokens: &Array,
        hooks: &BTreeSet<HookPoint>,
    ) -> Result<HookActivations, ModelError> {
        let Some(deepest) = hooks.iter().map(|hook| hook.layer).max() else {
            return Ok(HookActivations::new());
        };
        for hook in hooks {
            self.config.check_hook(hook)?;
        }
        if deepest >= self.blocks.len() {
            return Err(ModelError::Unsupported(format!(
                "hook layer {deepest} was not loaded: the model was loaded up to layer {}",
                self.blocks.len() - 1
            )));
        }
        let shape = tokens.shape();
        if shape.len() != 2 {
            return Err(ModelError::Unsupported(format!(
                "token ids must be [batch, tokens], got shape {shape:?}"
            )));
        }
        if let Some((_, positions)) = &self.config.architecture.embedding.positions
            && shape[1] as usize > *positions
        {
            return Err(ModelError::Unsupported(format!(
                "{} tokens in one sequence, but this {} model has {positions} learned \
                 positions: use windows of at most {positions} tokens",
                shape[1], self.config.model_type
            )));
        }
        let rows = shape[0] as usize;
        let streams = self.parallelism.streams_for(rows);
        let groups = streams.len();
        let parts = if groups == 1 {
            vec![tokens.clone()]
        } else {
            let bounds: Vec<i32> = (1..groups).map(|g| (g * rows / groups) as i32).collect();
            ops::split_at_indices(tokens, &bounds, 0)?
        };
        let mut partials = Vec::with_capacity(groups);
        for (part, stream) in parts.iter().zip(streams) {
            partials.push(mlx_rs::with_stream(stream, || {
                self.forward_rows(part, hooks, deepest)
            })?);
        }
        let pending: Vec<&Array> = partials.iter().flat_map(|p| p.values()).collect();
        mlx_rs::transforms::eval(pending)?;
        let mut out = HookActivations::new();
        for hook in hooks {
            let pieces: Vec<&Array> = partials.iter().map(|p| &p[hook]).collect();
            let joined = match pieces.as_slice() {
                [single] => (*single).clone(),
                many => ops::concatenate(many, 0)?,
            };
            out.insert(*hook, joined);
        }
        let joined: Vec<&Array> = out.values().collect();
        mlx_rs::transforms::eval(joined)?;
        Ok(out)
    }

    /// Builds (without evaluating) the graph for one group of rows.
    fn forward_rows(
        &self,
        tokens: &Array,
        hooks: &BTreeSet<HookPoint>,
        deepest: usize,
    ) -> Result<HookActivations, ModelError> {
        let mut out = HookActivations::new();
        let mut record = |layer: usize, kind: HookKind, value: &Array| {
            let hook = HookPoint { layer, kind };
            if hooks.contains(&hook) {
                out.insert(hook, value.clone());
            }
        };
        let mut h = self.embed(tokens)?;
        let arch = &self.config.architecture;
        for (layer, block) in self.blocks.iter().enumerate().take(deepest + 1) {
            // At the deepest layer, stop as soon as the hooks asked for are computed.
            let needs = |kinds: &[HookKind]| {
                layer < deepest
                    || hooks
                        .iter()
                        .any(|hook| hook.layer == layer && kinds.contains(&hook.kind))
            };
            let needs_mlp = needs(&[HookKind::MlpOut, HookKind::ResidPost]);
            record(layer, HookKind::ResidPre, &h);
            let after_resid_pre = [
                HookKind::AttnZ,
                HookKind::AttnOut,
                HookKind::ResidMid,
                HookKind::MlpOut,
                HookKind::ResidPost,
            ];
            if !needs(&after_resid_pre) {
                break;
            }
            let attn_in = apply_norm(&block.pre_attention_norm, &h)?;
            let (heads, attended) = block.attention.forward(&attn_in, &arch.attention)?;
            record(layer, HookKind::AttnZ, &heads);
            let attn_out = apply_norm(&block.post_attention_norm, &attended)?;
            record(layer, HookKind::AttnOut, &attn_out);
            let mlp_in_of = |residual: &Array| apply_norm(&block.pre_mlp_norm, residual);
            if arch.block.parallel {
                if !needs_mlp {
                    break;
                }
                let mlp_out = apply_norm(
                    &block.post_mlp_norm,
                    &block.mlp.forward(&mlp_in_of(&h)?, &arch.mlp)?,
                )?;
                record(layer, HookKind::MlpOut, &mlp_out);
                h = attn_out.add(&mlp_out)?.add(&h)?;
            } else {
                h = h.add(&attn_out)?;
                record(layer, HookKind::ResidMid, &h);
                if !needs_mlp {
                    break;
                }
                let mlp_out = apply_norm(
                    &block.post_mlp_norm,
                    &block.mlp.forward(&mlp_in_of(&h)?, &arch.mlp)?,
                )?;
                record(layer, HookKind::MlpOut, &mlp_out);
                h = h.add(&mlp_out)?;
            }
            record(layer, HookKind::ResidPost, &h);
        }
        Ok(out)
    }

    /// Token embeddings (scaled, plus learned positions) of `tokens` `[batch, length]`.
    fn embed(&self, tokens: &Array) -> Result<Array, ModelError> {
        let length = tokens.shape()[1];
        let mut h = self
            .embedding
            .tokens
            .rows(&tokens.as_dtype(Dtype::Uint32)?)?;
        if let Some(positions) = &self.embedding.positions {
            let ids = Array::arange::<_, u32>(None, length, None)?;
            h = h.add(positions.rows(&ids)?)?;
        }
        if let EmbeddingScale::By(scale) = self.embedding.scale {
            h = h.multiply(Array::from_f32(scale))?;
        }
        Ok(h)
    }
}

fn apply_norm(norm: &Option<Norm>, x: &Array) -> Result<Array, ModelError> {
    match norm {
        Some(norm) => norm.forward(x),
        None => Ok(x.clone()),
    }
}

impl Attention {
    /// Attention of `x` `[batch, tokens, hidden]`: the heads' outputs concatenated
    /// (`attn.hook_z`), and their output projection, before any post-norm.
    fn forward(&self, x: &Array, spec: &AttentionSpec) -> Result<(Array, Array), ModelError> {
        let shape = x.shape();
        let (batch, length) = (shape[0], shape[1]);
        let (heads, kv_heads) = (spec.heads as i32, spec.kv_heads as i32);
        let head_dim = spec.head_dim as i32;
        let (mut q, mut k, v) = match &self.qkv {
            QkvWeights::Separate { q, k, v } => (q.forward(x)?, k.forward(x)?, v.forward(x)?),
            QkvWeights::Fused(qkv) => {
                let q_width = spec.q_width() as i32;
                let bounds = [q_width, q_width + spec.kv_width() as i32];
                let mut parts = ops::split_at_indices(qkv.forward(x)?, &bounds, -1)?.into_iter();
                let mut next = || parts.next().expect("split into three");
                (next(), next(), next())
            }
            QkvWeights::FusedPerHead(qkv) => {
                let per_head = qkv
                    .forward(x)?
                    .reshape(&[batch, length, heads, 3 * head_dim])?;
                let mut parts = ops::split_equal(per_head, 3, -1)?.into_iter();
                let mut next = || parts.next().expect("split into three");
                (next(), next(), next())
            }
        };
        let scope = spec.qk_norm.as_ref().map(|n| n.scope);
        if scope == Some(QkNormScope::Whole) {
            q = apply_norm(&self.q_norm, &q)?;
            k = apply_norm(&self.k_norm, &k)?;
        }
        let split_heads = |y: Array, n: i32| y.reshape(&[batch, length, n, head_dim]);
        let (mut q, mut k, v) = (
            split_heads(q, heads)?,
            split_heads(k, kv_heads)?,
            split_heads(v, kv_heads)?,
        );
        if scope == Some(QkNormScope::PerHead) {
            q = apply_norm(&self.q_norm, &q)?;
            k = apply_norm(&self.k_norm, &k)?;
        }
        let to_heads_first = |y: Array| y.transpose_axes(&[0, 2, 1, 3]);
        let (mut q, mut k, v) = (to_heads_first(q)?, to_heads_first(k)?, to_heads_first(v)?);
        if let Some(rope) = &self.rope {
            q = rope.apply(&q)?;
            k = rope.apply(&k)?;
        }
        let window = self.window.filter(|window| (*window as i32) < length);
        let attended = match (spec.softcap, window) {
            (None, None) => fast::scaled_dot_product_attention(
                q,
                k,
                v,
                spec.scale,
                ScaledDotProductAttentionMask::Causal,
                None,
            )?,
            (None, Some(window)) => {
                let mask = causal_mask(length, Some(window))?;
                fast::scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    spec.scale,
                    ScaledDotProductAttentionMask::Array(&mask),
                    None,
                )?
            }
            (Some(cap), _) => softcapped_attention(&q, &k, &v, spec, cap, window)?,
        };
        let merged =
            attended
                .transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[batch, length, heads * head_dim])?;
        let projected = self.output.forward(&merged)?;
        Ok((merged, projected))
    }
}

/// `[tokens, tokens]` booleans: query `i` sees key `j` when `j ≤ i` (and `i − j < window`).
fn causal_mask(length: i32, window: Option<usize>) -> Result<Array, ModelError> {
    let keys = Array::arange::<_, i32>(None, length, None)?.expand_dims(0)?;
    let queries = Array::arange::<_, i32>(None, length, None)?.expand_dims(1)?;
    let mut mask = queries.ge(&keys)?;
    if let Some(window) = window {
        mask = mask.logical_and(&queries.lt(keys.add(Array::from_int(window as i32))?)?)?;
    }
    Ok(mask)
}

/// Attention with logits soft-capped to `cap · tanh(logits / cap)`, computed as mlx-lm's
/// Gemma 2 does (queries scaled first, grouped heads broadcast, precise softmax).
fn softcapped_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    spec: &AttentionSpec,
    cap: f32,
    window: Option<usize>,
) -> Result<Array, ModelError> {
    let shape = q.shape();
    let (batch, heads, length, head_dim) = (shape[0], shape[1], shape[2], shape[3]);
    let kv_heads = spec.kv_heads as i32;
    let repeats = heads / kv_heads;
    let mut q = q.multiply(Array::from_f32(spec.scale))?;
    let (mut k, mut v) = (k.clone(), v.clone());
    if repeats > 1 {
        q = q.reshape(&[batch, kv_heads, repeats, length, head_dim])?;
        k = k.expand_dims(2)?;
        v = v.expand_dims(2)?;
    }
    let cap_array = Array::from_f32(cap);
    let scores = q.matmul(k.swap_axes(-1, -2)?)?;
    let scores = ops::tanh(scores.divide(&cap_array)?)?.multiply(&cap_array)?;
    let mask = causal_mask(length, window)?;
    let scores = ops::select(&mask, &scores, Array::from_f32(f32::MIN))?;
    let weights = ops::softmax_axis(&scores, -1, true)?;
    let out = weights.matmul(&v)?;
    Ok(if repeats > 1 {
        out.reshape(&[batch, heads, length, head_dim])?
    } else {
        out
    })
}

impl Mlp {
    fn forward(&self, x: &Array, spec: &crate::architecture::MlpSpec) -> Result<Array, ModelError> {
        let act = |y: Array| -> Result<Array, ModelError> {
            Ok(match spec.activation {
                Activation::Silu => nn::silu(y)?,
                Activation::Gelu => nn::gelu(y)?,
                Activation::GeluTanh => nn::gelu_approximate(y)?,
                Activation::Relu => nn::relu(y)?,
            })
        };
        let hidden = match &self.input {
            MlpWeights::Plain(up) => act(up.forward(x)?)?,
            MlpWeights::Gated { gate, up } => act(gate.forward(x)?)?.multiply(up.forward(x)?)?,
            MlpWeights::FusedGated(gate_up) => {
                let halves = ops::split_equal(gate_up.forward(x)?, 2, -1)?;
                act(halves[0].clone())?.multiply(&halves[1])?
            }
        };
        self.down.forward(&hidden)
    }
}

impl Block {
    /// Every weight array, to evaluate at load.
    fn collect_arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        for norm in [
            &self.pre_attention_norm,
            &self.post_attention_norm,
            &self.pre_mlp_norm,
            &self.post_mlp_norm,
            &self.attention.q_norm,
            &self.attention.k_norm,
        ]
        .into_iter()
        .flatten()
        {
            out.push(&norm.weight);
            out.extend(norm.bias.as_ref());
        }
        let mut linears: Vec<&Linear> = vec![&self.attention.output, &self.mlp.down];
        match &self.attention.qkv {
            QkvWeights::Separate { q, k, v } => linears.extend([q, k, v]),
            QkvWeights::Fused(l) | QkvWeights::FusedPerHead(l) => linears.push(l),
        }
        match &self.mlp.input {
            MlpWeights::Plain(l) | MlpWeights::FusedGated(l) => linears.push(l),
            MlpWeights::Gated { gate, up } => linears.extend([gate, up]),
        }
        out.extend(linears.into_iter().map(Linear::weight));
    }
}

/// Takes a checked checkpoint's tensors apart into the forward pass's parameters.
struct Weights<'a> {
    tensors: &'a mut HashMap<String, Array>,
    quantized: &'a BTreeMap<String, Quantization>,
    storage: WeightStorage,
    norm: NormSpec,
}

impl Weights<'_> {
    fn take(&mut self, key: &str) -> Result<Array, ModelError> {
        self.tensors
            .remove(key)
            .ok_or_else(|| ModelError::WeightsMismatch {
                model: "the checkpoint".into(),
                reason: format!("missing {key}"),
            })
    }

    /// A bias or norm weight, in f32.
    fn vector(&mut self, key: &str) -> Result<Array, ModelError> {
        f32_array(self.take(key)?)
    }

    fn norm(&mut self, module: &str) -> Result<Norm, ModelError> {
        let weight = self.vector(&format!("{module}.weight"))?;
        let (weight, bias) = match self.norm.kind {
            NormKind::Rms => (weight, None),
            NormKind::RmsPlusOne => (weight.add(Array::from_f32(1.0))?, None),
            NormKind::Layer => (weight, Some(self.vector(&format!("{module}.bias"))?)),
        };
        Ok(Norm {
            kind: self.norm.kind,
            weight,
            bias,
            eps: self.norm.eps,
        })
    }

    fn optional_norm(&mut self, module: Option<String>) -> Result<Option<Norm>, ModelError> {
        module.map(|module| self.norm(&module)).transpose()
    }

    /// An embedding table as stored.
    fn table(&mut self, module: &str) -> Result<Table, ModelError> {
        let weight = self.take(&format!("{module}.weight"))?;
        Ok(match self.quantized.get(module) {
            Some(settings) => Table::Quantized {
                weight,
                scales: self.take(&format!("{module}.scales"))?,
                biases: self.take(&format!("{module}.biases"))?,
                settings: *settings,
            },
            None => Table::Dense(weight),
        })
    }

    fn linear(&mut self, module: &str, has_bias: bool) -> Result<Linear, ModelError> {
        let bias = match has_bias {
            true => Some(self.vector(&format!("{module}.bias"))?),
            false => None,
        };
        let weight = self.take(&format!("{module}.weight"))?;
        Ok(match (self.quantized.get(module), self.storage) {
            (Some(settings), WeightStorage::KeepQuantized) => Linear::Quantized {
                weight,
                scales: self.vector(&format!("{module}.scales"))?,
                biases: self.vector(&format!("{module}.biases"))?,
                settings: *settings,
                bias,
            },
            (Some(settings), WeightStorage::Float32) => Linear::Dense {
                weight: dequantize(
                    &weight,
                    &self.take(&format!("{module}.scales"))?,
                    &self.take(&format!("{module}.biases"))?,
                    settings,
                )?,
                bias,
            },
            (None, _) => Linear::Dense {
                weight: f32_array(weight)?,
                bias,
            },
        })
    }

    /// Block `layer`'s parameters.
    fn block(&mut self, arch: &Architecture, layer: usize) -> Result<Block, ModelError> {
        let spec = &arch.attention;
        let attn = |name: &str| arch.block_module(layer, &format!("{}.{name}", spec.module));
        let mlp = |name: &str| arch.block_module(layer, &format!("{}.{name}", arch.mlp.module));
        let qkv = match &spec.projections {
            Projections::Separate { q, k, v } => QkvWeights::Separate {
                q: self.linear(&attn(q), spec.qkv_bias)?,
                k: self.linear(&attn(k), spec.qkv_bias)?,
                v: self.linear(&attn(v), spec.qkv_bias)?,
            },
            Projections::Fused(name) => QkvWeights::Fused(self.linear(&attn(name), spec.qkv_bias)?),
            Projections::FusedPerHead(name) => {
                QkvWeights::FusedPerHead(self.linear(&attn(name), spec.qkv_bias)?)
            }
        };
        let (q_norm, k_norm) = match &spec.qk_norm {
            Some(qk) => (
                Some(self.norm(&attn(&qk.q))?),
                Some(self.norm(&attn(&qk.k))?),
            ),
            None => (None, None),
        };
        let layer_attention = &spec.layers[layer];
        let attention = Attention {
            qkv,
            output: self.linear(&attn(&spec.output), spec.output_bias)?,
            q_norm,
            k_norm,
            rope: layer_attention.rope.as_ref().map(Rope::new),
            window: layer_attention.window,
        };
        let bias = arch.mlp.bias;
        let input = match &arch.mlp.input {
            MlpInput::Plain { up } => MlpWeights::Plain(self.linear(&mlp(up), bias)?),
            MlpInput::Gated { gate, up } => MlpWeights::Gated {
                gate: self.linear(&mlp(gate), bias)?,
                up: self.linear(&mlp(up), bias)?,
            },
            MlpInput::FusedGated(name) => MlpWeights::FusedGated(self.linear(&mlp(name), bias)?),
        };
        let block_norm = |name: &Option<String>| name.as_ref().map(|n| arch.block_module(layer, n));
        Ok(Block {
            pre_attention_norm: self.optional_norm(block_norm(&arch.block.pre_attention_norm))?,
            post_attention_norm: self.optional_norm(block_norm(&arch.block.post_attention_norm))?,
            pre_mlp_norm: self.optional_norm(block_norm(&arch.block.pre_mlp_norm))?,
            post_mlp_norm: self.optional_norm(block_norm(&arch.block.post_mlp_norm))?,
            attention,
            mlp: Mlp {
                input,
                down: self.linear(&mlp(&arch.mlp.down), bias)?,
            },
        })
    }
}

fn f32_array(array: Array) -> Result<Array, ModelError> {
    Ok(if array.dtype() == Dtype::Float32 {
        array
    } else {
        array.as_dtype(Dtype::Float32)?
    })
}

/// Dequantizes an MLX affine-quantized matrix to f32. Scales and biases are widened to f32
/// first, so the result is exactly what an f32 `quantized_matmul` multiplies by.
fn dequantize(
    weight: &Array,
    scales: &Array,
    biases: &Array,
    settings: &Quantization,
) -> Result<Array, ModelError> {
    let scales = scales.as_dtype(Dtype::Float32)?;
    let biases = biases.as_dtype(Dtype::Float32)?;
    Ok(ops::dequantize(
        weight,
        &scales,
        &biases,
        settings.group_size as i32,
        settings.bits as i32,
    )?)
}
