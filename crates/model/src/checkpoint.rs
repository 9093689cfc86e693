//! Loading a checkpoint's tensors and checking them against the architecture.
//!
//! Tensors are read from every safetensors file, moved to the MLX layout by the family
//! ([`crate::families::Family::place`]: renamed, Conv1D weights transposed, buffers
//! dropped), then every parameter the config implies must be present with the right
//! shape and dtype (quantized triples included), and every tensor must belong to one: a
//! misnamed key is an error here, never a silently random weight later. Reading is lazy:
//! layers after the deepest hook are checked by shape but never read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mlx_rs::{Array, Dtype};

use crate::{
    ModelError,
    architecture::{Architecture, MlpInput, NormKind, Projections, QkNormScope},
    config::{ModelConfig, Quantization},
    families::Placement,
    files::ModelFiles,
};

/// What kind of parameters a module holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// `weight` `[out, in]` (or a quantized triple), optionally `bias` `[out]`.
    Linear {
        /// Input width.
        inputs: usize,
        /// Output width.
        outputs: usize,
        /// Whether a `bias` is expected.
        bias: bool,
    },
    /// `weight` `[rows, width]` (or a quantized triple).
    Embedding {
        /// Number of rows (the vocabulary, or the positions).
        rows: usize,
        /// Width of each row.
        width: usize,
    },
    /// A norm's `weight` `[width]`, and `bias` for LayerNorm.
    Norm {
        /// Width.
        width: usize,
        /// Whether a `bias` is expected.
        bias: bool,
    },
}

/// One module of the model, by its path in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// E.g. `model.layers.0.self_attn.q_proj`.
    pub path: String,
    /// Its parameters.
    pub kind: ModuleKind,
    /// Whether a checkpoint may leave it out (a tied model's `lm_head`).
    pub optional: bool,
}

/// The modules a model of architecture `arch` has, in forward order.
pub fn expected_modules(arch: &Architecture) -> Vec<ModuleSpec> {
    let hidden = arch.hidden_size;
    let attention = &arch.attention;
    let (q_width, kv_width) = (attention.q_width(), attention.kv_width());
    let linear = |inputs, outputs, bias| ModuleKind::Linear {
        inputs,
        outputs,
        bias,
    };
    let norm = |width| ModuleKind::Norm {
        width,
        bias: arch.norm.kind == NormKind::Layer,
    };
    let mut modules = Vec::new();
    let mut add = |path: String, kind: ModuleKind| {
        modules.push(ModuleSpec {
            path,
            kind,
            optional: false,
        })
    };
    add(
        arch.embedding.tokens.clone(),
        ModuleKind::Embedding {
            rows: arch.vocab_size,
            width: hidden,
        },
    );
    if let Some((module, positions)) = &arch.embedding.positions {
        add(
            module.clone(),
            ModuleKind::Embedding {
                rows: *positions,
                width: hidden,
            },
        );
    }
    for layer in 0..arch.layers {
        let block = |name: &str| arch.block_module(layer, name);
        let attn = |name: &str| block(&format!("{}.{name}", attention.module));
        let mlp = |name: &str| block(&format!("{}.{name}", arch.mlp.module));
        let b = &arch.block;
        for name in [&b.pre_attention_norm, &b.post_attention_norm]
            .into_iter()
            .flatten()
        {
            add(block(name), norm(hidden));
        }
        match &attention.projections {
            Projections::Separate { q, k, v } => {
                add(attn(q), linear(hidden, q_width, attention.qkv_bias));
                add(attn(k), linear(hidden, kv_width, attention.qkv_bias));
                add(attn(v), linear(hidden, kv_width, attention.qkv_bias));
            }
            Projections::Fused(name) | Projections::FusedPerHead(name) => add(
                attn(name),
                linear(hidden, q_width + 2 * kv_width, attention.qkv_bias),
            ),
        }
        if let Some(qk) = &attention.qk_norm {
            let (q, k) = match qk.scope {
                QkNormScope::PerHead => (attention.head_dim, attention.head_dim),
                QkNormScope::Whole => (q_width, kv_width),
            };
            add(attn(&qk.q), norm(q));
            add(attn(&qk.k), norm(k));
        }
        add(
            attn(&attention.output),
            linear(q_width, hidden, attention.output_bias),
        );
        for name in [&b.pre_mlp_norm, &b.post_mlp_norm].into_iter().flatten() {
            add(block(name), norm(hidden));
        }
        let (m, width) = (&arch.mlp, arch.mlp.hidden);
        match &m.input {
            MlpInput::Plain { up } => add(mlp(up), linear(hidden, width, m.bias)),
            MlpInput::Gated { gate, up } => {
                add(mlp(gate), linear(hidden, width, m.bias));
                add(mlp(up), linear(hidden, width, m.bias));
            }
            MlpInput::FusedGated(name) => add(mlp(name), linear(hidden, 2 * width, m.bias)),
        }
        add(mlp(&m.down), linear(width, hidden, m.bias));
    }
    add(arch.final_norm.clone(), norm(hidden));
    if let Some(head) = &arch.lm_head {
        modules.push(ModuleSpec {
            path: head.module.clone(),
            kind: linear(hidden, arch.vocab_size, false),
            optional: !head.required,
        });
    }
    modules
}

/// A loaded checkpoint whose tensors match its config.
pub struct Checkpoint {
    /// Where the files came from.
    pub files: ModelFiles,
    /// The parsed `config.json`.
    pub config: ModelConfig,
    /// Every parameter tensor, by its key in the MLX layout.
    pub tensors: HashMap<String, Array>,
    /// Quantization of each quantized module, by path.
    pub quantized: BTreeMap<String, Quantization>,
}

/// Counts that describe a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointSummary {
    /// Number of parameter tensors.
    pub tensors: usize,
    /// Parameters of the model (a quantized weight counts its logical elements).
    pub parameters: u64,
    /// Bytes of tensor data as stored.
    pub stored_bytes: u64,
    /// Number of quantized modules for each `"{bits}-bit/g{group_size}"`.
    pub quantized_modules: BTreeMap<String, usize>,
    /// Number of modules stored in floating point.
    pub float_modules: usize,
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16)
}

/// The tensors of the weight files in `files` that `wanted` keeps, by their place in
/// the MLX layout (`config`'s family places and transposes them); a tensor that
/// appears twice is an error.
pub(crate) fn placed_tensors(
    files: &ModelFiles,
    config: &ModelConfig,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Array>, ModelError> {
    let mut tensors = HashMap::new();
    for shard in &files.weights {
        let loaded = Array::load_safetensors(shard).map_err(|e| ModelError::Invalid {
            path: shard.clone(),
            reason: format!("not a readable safetensors file: {e}"),
        })?;
        for (key, tensor) in loaded {
            let (placed, tensor) = match config.family.place(&key) {
                Placement::Ignored => continue,
                Placement::At(placed) => (placed, tensor),
                Placement::Transposed(placed) => (placed, tensor.t()),
            };
            if !wanted(&placed) {
                continue;
            }
            if tensors.insert(placed.clone(), tensor).is_some() {
                return Err(ModelError::Invalid {
                    path: shard.clone(),
                    reason: format!(
                        "tensor {key} (as {placed}) appears more than once in the checkpoint"
                    ),
                });
            }
        }
    }
    Ok(tensors)
}

impl Checkpoint {
    /// Loads all weight files, places their tensors in the MLX layout and checks them
    /// against the config.
    pub fn load(files: ModelFiles) -> Result<Self, ModelError> {
        let config = ModelConfig::from_file(&files.config)?;
        let tensors = placed_tensors(&files, &config, |_| true)?;
        let quantized =
            check_tensors(&config, &tensors).map_err(|reason| ModelError::WeightsMismatch {
                model: files.source.to_string(),
                reason,
            })?;
        Ok(Self {
            files,
            config,
            tensors,
            quantized,
        })
    }

    /// Counts of tensors, parameters, bytes and quantized modules.
    pub fn summary(&self) -> CheckpointSummary {
        let mut quantized_modules = BTreeMap::new();
        for q in self.quantized.values() {
            *quantized_modules
                .entry(format!("{}-bit/g{}", q.bits, q.group_size))
                .or_default() += 1;
        }
        let modules: Vec<ModuleSpec> = expected_modules(&self.config.architecture)
            .into_iter()
            .filter(|m| !m.optional || self.tensors.contains_key(&format!("{}.weight", m.path)))
            .collect();
        let parameters: u64 = modules
            .iter()
            .map(|module| match module.kind {
                ModuleKind::Linear {
                    inputs,
                    outputs,
                    bias,
                } => inputs * outputs + if bias { outputs } else { 0 },
                ModuleKind::Embedding { rows, width } => rows * width,
                ModuleKind::Norm { width, bias } => width * if bias { 2 } else { 1 },
            } as u64)
            .sum();
        let matrices = modules
            .iter()
            .filter(|m| !matches!(m.kind, ModuleKind::Norm { .. }))
            .count();
        CheckpointSummary {
            tensors: self.tensors.len(),
            parameters,
            stored_bytes: self.tensors.values().map(|t| t.nbytes() as u64).sum(),
            quantized_modules,
            float_modules: matrices - self.quantized.len(),
        }
    }

    /// How the weights are stored: `mlx-affine-{bits}bit-group{size}` when quantized,
    /// else the token embedding's dtype (`float32`, `bfloat16`, ...).
    pub fn stored_dtype(&self) -> String {
        match &self.config.quantization {
            Some(q) => format!("mlx-affine-{}bit-group{}", q.bits, q.group_size),
            None => self
                .tensors
                .get(&format!(
                    "{}.weight",
                    self.config.architecture.embedding.tokens
                ))
                .map(|t| format!("{:?}", t.dtype()).to_lowercase())
                .unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// Checks every expected parameter and flags unexpected tensors. Returns the quantized
/// modules' settings.
fn check_tensors(
    config: &ModelConfig,
    tensors: &HashMap<String, Array>,
) -> Result<BTreeMap<String, Quantization>, String> {
    let mut check = TensorCheck {
        tensors,
        used: BTreeSet::new(),
        problems: Vec::new(),
    };
    let mut quantized = BTreeMap::new();
    for module in expected_modules(&config.architecture) {
        if module.optional && !tensors.contains_key(&format!("{}.weight", module.path)) {
            continue;
        }
        if let Some(settings) = check.module(config, &module)? {
            quantized.insert(module.path.clone(), settings);
        }
    }
    let mut problems = check.problems;
    let mut unexpected: Vec<&String> = tensors
        .keys()
        .filter(|key| !check.used.contains(key.as_str()))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        problems.push(format!(
            "{} tensors belong to no parameter of a {}-layer {} model, e.g. {:?}",
            unexpected.len(),
            config.num_layers(),
            config.model_type,
            &unexpected[..unexpected.len().min(5)]
        ));
    }
    if problems.is_empty() {
        Ok(quantized)
    } else {
        let count = problems.len();
        problems.truncate(8);
        Err(format!("{count} problems: {}", problems.join("; ")))
    }
}

/// Checks tensors against the parameters a model expects, collecting every problem.
struct TensorCheck<'a> {
    tensors: &'a HashMap<String, Array>,
    /// The tensors some parameter accounted for.
    used: BTreeSet<&'a str>,
    problems: Vec<String>,
}

impl TensorCheck<'_> {
    /// Expects tensor `key` with `shape` and a dtype `dtype_ok` accepts (`what` names it).
    fn expect(
        &mut self,
        key: String,
        shape: &[usize],
        dtype_ok: &dyn Fn(Dtype) -> bool,
        what: &str,
    ) {
        let Some((name, tensor)) = self.tensors.get_key_value(&key) else {
            self.problems.push(format!("missing {key}"));
            return;
        };
        self.used.insert(name.as_str());
        let actual: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
        if actual != shape {
            self.problems
                .push(format!("{key} has shape {actual:?}, expected {shape:?}"));
        } else if !dtype_ok(tensor.dtype()) {
            self.problems.push(format!(
                "{key} has dtype {:?}, expected {what}",
                tensor.dtype()
            ));
        }
    }

    /// Checks one module's tensors; returns its quantization when it is quantized.
    fn module(
        &mut self,
        config: &ModelConfig,
        module: &ModuleSpec,
    ) -> Result<Option<Quantization>, String> {
        let path = &module.path;
        let (rows, inputs, bias) = match module.kind {
            ModuleKind::Norm { width, bias } => {
                self.expect(format!("{path}.weight"), &[width], &is_float, "a float");
                if bias {
                    self.expect(format!("{path}.bias"), &[width], &is_float, "a float");
                }
                return Ok(None);
            }
            ModuleKind::Linear {
                inputs,
                outputs,
                bias,
            } => (outputs, inputs, bias),
            ModuleKind::Embedding { rows, width } => (rows, width, false),
        };
        let quantized = if self.tensors.contains_key(&format!("{path}.scales")) {
            Some(self.quantized(config, path, rows, inputs)?)
        } else {
            self.expect(
                format!("{path}.weight"),
                &[rows, inputs],
                &is_float,
                "a float",
            );
            None
        };
        if bias {
            self.expect(format!("{path}.bias"), &[rows], &is_float, "a float");
        }
        Ok(quantized)
    }

    /// Checks a quantized module's packed weight, scales and biases against the
    /// settings config.json gives it.
    fn quantized(
        &mut self,
        config: &ModelConfig,
        path: &str,
        rows: usize,
        inputs: usize,
    ) -> Result<Quantization, String> {
        let settings = config
            .quantization
            .as_ref()
            .ok_or_else(|| {
                format!("{path} is quantized but config.json has no quantization entry")
            })?
            .for_module(path)?
            .ok_or_else(|| format!("{path} is quantized but config.json says it is not"))?;
        if !inputs.is_multiple_of(settings.group_size)
            || !(inputs * settings.bits).is_multiple_of(32)
        {
            return Err(format!(
                "{path}: input width {inputs} does not fit {}-bit groups of {}",
                settings.bits, settings.group_size
            ));
        }
        let groups = inputs / settings.group_size;
        self.expect(
            format!("{path}.weight"),
            &[rows, inputs * settings.bits / 32],
            &|d| d == Dtype::Uint32,
            "uint32 (packed)",
        );
        self.expect(
            format!("{path}.scales"),
            &[rows, groups],
            &is_float,
            "a float",
        );
        self.expect(
            format!("{path}.biases"),
            &[rows, groups],
            &is_float,
            "a float",
        );
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mlx_rs::ops::quantize;
    use serde_json::json;

    use super::*;
    use crate::files::{ModelSource, resolve};
    use saeidx_hub::HubSettings;

    const HIDDEN: i32 = 64;
    const FFN: i32 = 128;
    const VOCAB: i32 = 96;

    fn tiny_config(quantized: bool) -> serde_json::Value {
        let mut config = json!({
            "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": FFN,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "vocab_size": VOCAB, "tie_word_embeddings": true,
        });
        if quantized {
            config["quantization"] = json!({"group_size": 32, "bits": 4, "model.embed_tokens": {"group_size": 32, "bits": 8}});
        }
        config
    }

    fn tiny_tensors(quantized: bool) -> HashMap<String, Array> {
        let kv = HIDDEN / 2;
        let mut tensors = HashMap::new();
        let mut add_matrix = |path: &str, rows: i32, cols: i32, bits: i32| {
            let weight = Array::ones::<f32>(&[rows, cols]).unwrap();
            if quantized {
                let (w, scales, biases) = quantize(&weight, 32, bits).unwrap();
                tensors.insert(format!("{path}.weight"), w);
                tensors.insert(format!("{path}.scales"), scales);
                tensors.insert(format!("{path}.biases"), biases);
            } else {
                tensors.insert(format!("{path}.weight"), weight);
            }
        };
        add_matrix("model.embed_tokens", VOCAB, HIDDEN, 8);
        for (name, rows, cols) in [
            ("self_attn.q_proj", HIDDEN, HIDDEN),
            ("self_attn.k_proj", kv, HIDDEN),
            ("self_attn.v_proj", kv, HIDDEN),
            ("self_attn.o_proj", HIDDEN, HIDDEN),
            ("mlp.gate_proj", FFN, HIDDEN),
            ("mlp.up_proj", FFN, HIDDEN),
            ("mlp.down_proj", HIDDEN, FFN),
        ] {
            add_matrix(&format!("model.layers.0.{name}"), rows, cols, 4);
        }
        for norm in [
            "model.layers.0.input_layernorm",
            "model.layers.0.post_attention_layernorm",
            "model.norm",
        ] {
            tensors.insert(
                format!("{norm}.weight"),
                Array::ones::<f32>(&[HIDDEN]).unwrap(),
            );
        }
        tensors
    }

    fn write_model(dir: &Path, config: &serde_json::Value, tensors: &HashMap<String, Array>) {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        Array::save_safetensors(tensors, None, dir.join("model.safetensors")).unwrap();
    }

    fn load(dir: &Path) -> Result<Checkpoint, ModelError> {
        let source = ModelSource::Local(dir.to_path_buf());
        Checkpoint::load(resolve(&source, &HubSettings::from_env())?)
    }

    #[test]
    fn float_and_quantized_checkpoints_load() {
        for quantized in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_model(
                dir.path(),
                &tiny_config(quantized),
                &tiny_tensors(quantized),
            );
            let checkpoint = load(dir.path()).unwrap();
            let summary = checkpoint.summary();
            let expected_parameters = (VOCAB * HIDDEN
                + 2 * HIDDEN * HIDDEN
                + 2 * (HIDDEN / 2) * HIDDEN
                + 3 * FFN * HIDDEN
                + 3 * HIDDEN) as u64;
            assert_eq!(summary.parameters, expected_parameters);
            if quantized {
                assert_eq!(summary.quantized_modules.get("4-bit/g32"), Some(&7));
                assert_eq!(summary.quantized_modules.get("8-bit/g32"), Some(&1));
                assert_eq!(summary.float_modules, 0);
            } else {
                assert!(summary.quantized_modules.is_empty());
                assert_eq!(summary.float_modules, 8);
            }
        }
    }

    fn mismatch(config: serde_json::Value, tensors: HashMap<String, Array>) -> String {
        let dir = tempfile::tempdir().unwrap();
        write_model(dir.path(), &config, &tensors);
        match load(dir.path()) {
            Err(error @ ModelError::WeightsMismatch { .. }) => error.to_string(),
            Err(other) => panic!("expected a weights mismatch, got {other}"),
            Ok(_) => panic!("expected a weights mismatch, got a loaded checkpoint"),
        }
    }

    #[test]
    fn misnamed_missing_or_misshapen_weights_are_errors() {
        let mut renamed = tiny_tensors(false);
        let weight = renamed.remove("model.layers.0.mlp.up_proj.weight").unwrap();
        renamed.insert("model.layers.0.mlp.upproj.weight".into(), weight);
        let message = mismatch(tiny_config(false), renamed);
        assert!(
            message.contains("missing model.layers.0.mlp.up_proj.weight"),
            "{message}"
        );
        assert!(
            message.contains("model.layers.0.mlp.upproj.weight"),
            "{message}"
        );

        let mut misshapen = tiny_tensors(false);
        misshapen.insert(
            "model.norm.weight".into(),
            Array::ones::<f32>(&[HIDDEN + 1]).unwrap(),
        );
        let message = mismatch(tiny_config(false), misshapen);
        assert!(
            message.contains("model.norm.weight has shape [65]"),
            "{message}"
        );

        // An untied model needs lm_head.
        let mut untied = tiny_config(false);
        untied["tie_word_embeddings"] = json!(false);
        let message = mismatch(untied, tiny_tensors(false));
        assert!(message.contains("missing lm_head.weight"), "{message}");

        // Quantized tensors with the wrong bits in config.json.
        let mut wrong_bits = tiny_config(true);
        wrong_bits["quantization"]["model.embed_tokens"] = json!({"group_size": 32, "bits": 4});
        let message = mismatch(wrong_bits, tiny_tensors(true));
        assert!(
            message.contains("model.embed_tokens.weight has shape"),
            "{message}"
        );
    }

    #[test]
    fn corrupt_or_missing_weight_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_model(dir.path(), &tiny_config(false), &tiny_tensors(false));
        let weights = dir.path().join("model.safetensors");
        let mut bytes = std::fs::read(&weights).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&weights, &bytes).unwrap();
        let error = load(dir.path())
            .err()
            .expect("a truncated file is an error");
        assert!(matches!(error, ModelError::Invalid { .. }), "{error}");

        std::fs::write(&weights, b"not safetensors at all").unwrap();
        let error = load(dir.path()).err().expect("garbage is an error");
        assert!(error.to_string().contains("model.safetensors"), "{error}");

        std::fs::remove_file(&weights).unwrap();
        let error = load(dir.path()).err().expect("a missing file is an error");
        assert!(matches!(error, ModelError::MissingFile { .. }), "{error}");
    }

    #[test]
    fn unsupported_model_type_lists_the_families() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tiny_config(false);
        config["model_type"] = json!("mamba");
        write_model(dir.path(), &config, &tiny_tensors(false));
        let error = load(dir.path()).err().expect("mamba is not supported");
        assert!(matches!(error, ModelError::Unsupported(_)), "{error}");
        let message = error.to_string();
        assert!(message.contains("\"mamba\""), "{message}");
        assert!(
            message.contains("gpt_neox") && message.contains("gemma2"),
            "{message}"
        );
    }
}
