//! The Llama forward pass, run with MLX up to the hook points asked for and no further.
//!
//! The computation is mlx-lm's (`mlx_lm/models/llama.py`): RMSNorm, grouped-query
//! attention with RoPE (optionally Llama 3's frequency scaling) through MLX's fused
//! kernels, a SiLU-gated MLP, each sublayer added to the residual stream. Everything is
//! computed in f32. On the CPU backend quantized weights are dequantized once at load:
//! MLX's quantized matmul is much slower there than an f32 GEMM through OpenBLAS.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mlx_rs::{
    Array, Device, DeviceType, Dtype, Stream,
    fast::{self, ScaledDotProductAttentionMask},
    nn, ops,
};

use crate::{
    ModelError,
    checkpoint::Checkpoint,
    config::{LlamaConfig, Quantization},
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
        let gpu = Device::try_default()
            .and_then(|device| device.get_type())
            .is_ok_and(|kind| matches!(kind, DeviceType::Gpu));
        if gpu {
            WeightStorage::KeepQuantized
        } else {
            WeightStorage::Float32
        }
    }
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
}

struct Block {
    input_norm: Array,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_norm: Array,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// Rotary position embedding settings.
struct Rope {
    dims: i32,
    base: Option<f32>,
    scale: f32,
    /// Per-pair frequencies (Llama 3 scaling); replaces `base` when set.
    freqs: Option<Array>,
}

impl Rope {
    fn new(config: &LlamaConfig) -> Result<Self, ModelError> {
        let dims = config.head_dim() as i32;
        let base = config.rope_theta;
        let plain = |scale: f32| Rope {
            dims,
            base: Some(base),
            scale,
            freqs: None,
        };
        let Some(scaling) = config.rope_scaling.as_ref().filter(|s| !s.is_null()) else {
            return Ok(plain(1.0));
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|kind| kind.as_str())
            .unwrap_or("default");
        let number = |key: &str, default: Option<f32>| -> Result<f32, ModelError> {
            scaling
                .get(key)
                .and_then(|value| value.as_f64())
                .map(|value| value as f32)
                .or(default)
                .ok_or_else(|| ModelError::Unsupported(format!("rope_scaling needs {key}")))
        };
        match kind {
            "default" => Ok(plain(1.0)),
            "linear" => Ok(plain(1.0 / number("factor", None)?)),
            "llama3" => {
                let factor = number("factor", None)?;
                let low = number("low_freq_factor", Some(1.0))?;
                let high = number("high_freq_factor", Some(4.0))?;
                let original = number("original_max_position_embeddings", Some(8192.0))?;
                let freqs = llama3_frequencies(dims as usize, base, factor, low, high, original);
                Ok(Rope {
                    dims,
                    base: None,
                    scale: 1.0,
                    freqs: Some(Array::from_slice(&freqs, &[freqs.len() as i32])),
                })
            }
            other => Err(ModelError::Unsupported(format!(
                "rope_scaling type {other:?} (supported: default, linear, llama3)"
            ))),
        }
    }

    fn apply(&self, x: &Array) -> Result<Array, ModelError> {
        Ok(fast::rope(
            x,
            self.dims,
            false,
            self.base,
            self.scale,
            0,
            self.freqs.as_ref(),
        )?)
    }
}

/// Llama 3's RoPE frequency scaling: long wavelengths are stretched by `factor`, short
/// ones kept, and the band between interpolated smoothly. Returns one frequency
/// (as a period multiplier, the form MLX's `rope` takes) per rotated pair.
fn llama3_frequencies(
    dims: usize,
    base: f32,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_context: f32,
) -> Vec<f32> {
    let low_freq_wavelength = original_context / low_freq_factor;
    let high_freq_wavelength = original_context / high_freq_factor;
    (0..dims)
        .step_by(2)
        .map(|i| {
            let freq = base.powf(i as f32 / dims as f32);
            let wavelength = 2.0 * std::f32::consts::PI * freq;
            if wavelength > low_freq_wavelength {
                freq * factor
            } else if wavelength > high_freq_wavelength {
                let smooth = (original_context / wavelength - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                freq / ((1.0 - smooth) / factor + smooth)
            } else {
                freq
            }
        })
        .collect()
}

/// A Llama-family model loaded for the forward pass, up to a given layer.
pub struct Llama {
    config: LlamaConfig,
    embed_tokens: Array,
    blocks: Vec<Block>,
    rope: Rope,
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
        let gpu = Device::try_default()
            .and_then(|device| device.get_type())
            .is_ok_and(|kind| matches!(kind, DeviceType::Gpu));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let set_blas_threads = openblas_thread_setter();
        let streams = if gpu || cores == 1 || set_blas_threads.is_none() {
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

/// Activations for each requested hook point: `[batch, tokens, hidden]` in f32.
pub type HookActivations = BTreeMap<HookPoint, Array>;

impl Llama {
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
        let layers = config.num_hidden_layers;
        if let Some(layer) = last_layer.filter(|layer| *layer >= layers) {
            return Err(HookError::LayerOutOfRange { layer, layers }.into());
        }
        let kept_layers = last_layer.map_or(layers, |layer| layer + 1);
        let rope = Rope::new(&config)?;
        let mut weights = Weights {
            tensors: &mut tensors,
            quantized: &quantized,
            storage,
        };
        let embed_tokens = weights.matrix("model.embed_tokens")?;
        let mut blocks = Vec::with_capacity(kept_layers);
        for layer in 0..kept_layers {
            let path = |name: &str| format!("model.layers.{layer}.{name}");
            let (attention_bias, mlp_bias) = (config.attention_bias, config.mlp_bias);
            blocks.push(Block {
                input_norm: weights.vector(&path("input_layernorm.weight"))?,
                q_proj: weights.linear(&path("self_attn.q_proj"), attention_bias)?,
                k_proj: weights.linear(&path("self_attn.k_proj"), attention_bias)?,
                v_proj: weights.linear(&path("self_attn.v_proj"), attention_bias)?,
                o_proj: weights.linear(&path("self_attn.o_proj"), attention_bias)?,
                post_attention_norm: weights.vector(&path("post_attention_layernorm.weight"))?,
                gate_proj: weights.linear(&path("mlp.gate_proj"), mlp_bias)?,
                up_proj: weights.linear(&path("mlp.up_proj"), mlp_bias)?,
                down_proj: weights.linear(&path("mlp.down_proj"), mlp_bias)?,
            });
        }
        // Materialize the converted weights now, once, rather than inside the first batch.
        let mut arrays: Vec<&Array> = vec![&embed_tokens];
        for block in &blocks {
            arrays.extend([&block.input_norm, &block.post_attention_norm]);
            for linear in [
                &block.q_proj,
                &block.k_proj,
                &block.v_proj,
                &block.o_proj,
                &block.gate_proj,
                &block.up_proj,
                &block.down_proj,
            ] {
                match linear {
                    Linear::Dense { weight, .. } | Linear::Quantized { weight, .. } => {
                        arrays.push(weight)
                    }
                }
            }
        }
        mlx_rs::transforms::eval(arrays)?;
        Ok(Self {
            config,
            embed_tokens,
            blocks,
            rope,
            parallelism: Parallelism::for_default_device(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
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
        if deepest >= self.blocks.len() {
            if deepest >= self.config.num_hidden_layers {
                return Err(HookError::LayerOutOfRange {
                    layer: deepest,
                    layers: self.config.num_hidden_layers,
                }
                .into());
            }
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
        let shape = tokens.shape();
        let (batch, length) = (shape[0], shape[1]);
        let mut out = HookActivations::new();
        let mut record = |layer: usize, kind: HookKind, value: &Array| {
            let hook = HookPoint { layer, kind };
            if hooks.contains(&hook) {
                out.insert(hook, value.clone());
            }
        };
        let heads = self.config.num_attention_heads as i32;
        let kv_heads = self.config.num_key_value_heads() as i32;
        let head_dim = self.config.head_dim() as i32;
        let scale = (head_dim as f32).powf(-0.5);
        let eps = self.config.rms_norm_eps;

        let mut h = self
            .embed_tokens
            .take_axis(tokens.as_dtype(Dtype::Uint32)?, 0)?;
        for (layer, block) in self.blocks.iter().enumerate().take(deepest + 1) {
            record(layer, HookKind::ResidPre, &h);
            let x = fast::rms_norm(&h, Some(&block.input_norm), eps)?;
            let split_heads = |y: Array, n: i32| -> Result<Array, ModelError> {
                Ok(y.reshape(&[batch, length, n, head_dim])?
                    .transpose_axes(&[0, 2, 1, 3])?)
            };
            let q = self
                .rope
                .apply(&split_heads(block.q_proj.forward(&x)?, heads)?)?;
            let k = self
                .rope
                .apply(&split_heads(block.k_proj.forward(&x)?, kv_heads)?)?;
            let v = split_heads(block.v_proj.forward(&x)?, kv_heads)?;
            let attended = fast::scaled_dot_product_attention(
                q,
                k,
                v,
                scale,
                ScaledDotProductAttentionMask::Causal,
                None,
            )?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[batch, length, heads * head_dim])?;
            let attn_out = block.o_proj.forward(&attended)?;
            record(layer, HookKind::AttnOut, &attn_out);
            h = h.add(&attn_out)?;
            record(layer, HookKind::ResidMid, &h);
            let x = fast::rms_norm(&h, Some(&block.post_attention_norm), eps)?;
            let gated =
                nn::silu(block.gate_proj.forward(&x)?)?.multiply(block.up_proj.forward(&x)?)?;
            let mlp_out = block.down_proj.forward(&gated)?;
            record(layer, HookKind::MlpOut, &mlp_out);
            h = h.add(&mlp_out)?;
            record(layer, HookKind::ResidPost, &h);
        }
        Ok(out)
    }
}

/// Takes a checked checkpoint's tensors apart into the forward pass's parameters.
struct Weights<'a> {
    tensors: &'a mut HashMap<String, Array>,
    quantized: &'a BTreeMap<String, Quantization>,
    storage: WeightStorage,
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

    /// A norm weight or bias, in f32.
    fn vector(&mut self, key: &str) -> Result<Array, ModelError> {
        f32_array(self.take(key)?)
    }

    /// A module's weight matrix in f32, dequantized if it is stored quantized.
    fn matrix(&mut self, module: &str) -> Result<Array, ModelError> {
        let weight = self.take(&format!("{module}.weight"))?;
        match self.quantized.get(module) {
            Some(settings) => dequantize(
                &weight,
                &self.take(&format!("{module}.scales"))?,
                &self.take(&format!("{module}.biases"))?,
                settings,
            ),
            None => f32_array(weight),
        }
    }

    fn linear(&mut self, module: &str, has_bias: bool) -> Result<Linear, ModelError> {
        let bias = match has_bias {
            true => Some(self.vector(&format!("{module}.bias"))?),
            false => None,
        };
        Ok(match (self.quantized.get(module), self.storage) {
            (Some(settings), WeightStorage::KeepQuantized) => Linear::Quantized {
                weight: self.take(&format!("{module}.weight"))?,
                scales: self.vector(&format!("{module}.scales"))?,
                biases: self.vector(&format!("{module}.biases"))?,
                settings: *settings,
                bias,
            },
            _ => Linear::Dense {
                weight: self.matrix(module)?,
                bias,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_short_and_stretches_long_wavelengths() {
        // Llama 3.2's settings.
        let freqs = llama3_frequencies(64, 500_000.0, 32.0, 1.0, 4.0, 8192.0);
        assert_eq!(freqs.len(), 32);
        assert_eq!(freqs[0], 1.0);
        let plain = |i: usize| 500_000f32.powf(2.0 * i as f32 / 64.0);
        assert_eq!(freqs[1], plain(1));
        assert_eq!(freqs[31], plain(31) * 32.0);
        // In the smooth band, between the unscaled and the fully scaled frequency.
        let (smooth, i) = freqs
            .iter()
            .enumerate()
            .find(|(i, f)| **f != plain(*i) && **f != plain(*i) * 32.0)
            .map(|(i, f)| (*f, i))
            .expect("a frequency in the smooth band");
        assert!(smooth > plain(i) && smooth < plain(i) * 32.0);
    }
}
