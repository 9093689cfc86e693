//! GGUF (llama.cpp) Llama checkpoints → MLX checkpoint folders that mlx-lm and saeidx load.
//!
//! MLX's GGUF reader returns Q4_0/Q4_1/Q8_0 tensors as MLX affine-quantized triples
//! (`weight` packed in u32, `scales`, `biases`, groups of 32) in `[out, in]` order, so the
//! conversion is lossless: it renames tensors to Hugging Face names, undoes llama.cpp's
//! row permutation of the query/key projections, and records each module's bits and
//! group size in `config.json`'s `quantization` entry (the shape of mlx-community
//! checkpoints). Every tensor of the file must be accounted for; an unknown one is an
//! error rather than silently dropped.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use mlx_rs::{Array, Dtype, io::GgufFile};
use serde_json::{Value, json};

use crate::{ImportError, tokenizer::GgufTokenizer};

/// The Llama hyperparameters a GGUF file declares (`llama.*` metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHyperparameters {
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct ConversionSummary {
    /// The model's hyperparameters.
    pub hyperparameters: LlamaHyperparameters,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Number of tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Bits per weight of each quantized module, by module path.
    pub quantized_bits: BTreeMap<String, u32>,
    /// Whether the output projection is tied to the token embedding.
    pub tied_embeddings: bool,
}

/// Reads an integer metadata value.
fn meta_int(file: &GgufFile, key: &str) -> Result<Option<i64>, ImportError> {
    match file.get_metadata_array(key)? {
        Some(value) => Ok(Some(value.try_item_cast::<i64>().map_err(|e| {
            ImportError::Gguf(format!("metadata {key} is not an integer: {e}"))
        })?)),
        None => Ok(None),
    }
}

/// Reads a float metadata value.
fn meta_f32(file: &GgufFile, key: &str) -> Result<Option<f32>, ImportError> {
    match file.get_metadata_array(key)? {
        Some(value) => Ok(Some(value.try_item_cast::<f32>().map_err(|e| {
            ImportError::Gguf(format!("metadata {key} is not a number: {e}"))
        })?)),
        None => Ok(None),
    }
}

/// Reads a positive integer metadata value that must be present.
fn required_usize(file: &GgufFile, key: &str) -> Result<usize, ImportError> {
    match meta_int(file, key)? {
        Some(value) if value > 0 => Ok(value as usize),
        Some(value) => Err(ImportError::Gguf(format!(
            "metadata {key} = {value} is not positive"
        ))),
        None => Err(ImportError::Gguf(format!("metadata {key} is missing"))),
    }
}

/// Reads the `llama.*` hyperparameters, checking they are consistent.
pub fn llama_hyperparameters(file: &GgufFile) -> Result<LlamaHyperparameters, ImportError> {
    let architecture = file.get_metadata_string("general.architecture")?;
    if architecture.as_deref() != Some("llama") {
        return Err(ImportError::Unsupported(format!(
            "GGUF architecture {architecture:?}: only Llama-family (\"llama\") models are supported"
        )));
    }
    let hidden_size = required_usize(file, "llama.embedding_length")?;
    let num_attention_heads = required_usize(file, "llama.attention.head_count")?;
    let num_key_value_heads = match meta_int(file, "llama.attention.head_count_kv")? {
        Some(heads) if heads > 0 => heads as usize,
        _ => num_attention_heads,
    };
    let head_dim = match meta_int(file, "llama.rope.dimension_count")? {
        Some(dim) if dim > 0 => dim as usize,
        _ => hidden_size / num_attention_heads,
    };
    if num_attention_heads % num_key_value_heads != 0 || head_dim % 2 != 0 {
        return Err(ImportError::Gguf(format!(
            "inconsistent attention shape: {num_attention_heads} query heads, \
             {num_key_value_heads} key/value heads, head dim {head_dim}"
        )));
    }
    Ok(LlamaHyperparameters {
        num_layers: required_usize(file, "llama.block_count")?,
        hidden_size,
        intermediate_size: required_usize(file, "llama.feed_forward_length")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        max_position_embeddings: required_usize(file, "llama.context_length")?,
        rope_theta: meta_f32(file, "llama.rope.freq_base")?.unwrap_or(10_000.0),
        rms_norm_eps: meta_f32(file, "llama.attention.layer_norm_rms_epsilon")?.ok_or_else(
            || ImportError::Gguf("llama.attention.layer_norm_rms_epsilon is missing".into()),
        )?,
    })
}

/// Where a GGUF tensor goes in the Hugging Face Llama layout, and its input width.
struct Destination {
    /// Module path, e.g. `model.layers.3.self_attn.q_proj`.
    module: String,
    /// Input width of a linear/embedding module (to infer quantization bits).
    input_width: usize,
    /// Heads whose rows llama.cpp permuted (query and key projections).
    permuted_heads: Option<usize>,
}

fn destination(name: &str, hp: &LlamaHyperparameters) -> Option<Destination> {
    let module = |module: String, input_width: usize, permuted_heads: Option<usize>| {
        Some(Destination {
            module,
            input_width,
            permuted_heads,
        })
    };
    match name {
        "token_embd" => return module("model.embed_tokens".into(), hp.hidden_size, None),
        "output_norm" => return module("model.norm".into(), 0, None),
        "output" => return module("lm_head".into(), hp.hidden_size, None),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if layer >= hp.num_layers {
        return None;
    }
    let attention_width = hp.num_attention_heads * hp.head_dim;
    let (suffix, input_width, permuted_heads) = match part {
        "attn_q" => (
            "self_attn.q_proj",
            hp.hidden_size,
            Some(hp.num_attention_heads),
        ),
        "attn_k" => (
            "self_attn.k_proj",
            hp.hidden_size,
            Some(hp.num_key_value_heads),
        ),
        "attn_v" => ("self_attn.v_proj", hp.hidden_size, None),
        "attn_output" => ("self_attn.o_proj", attention_width, None),
        "ffn_gate" => ("mlp.gate_proj", hp.hidden_size, None),
        "ffn_up" => ("mlp.up_proj", hp.hidden_size, None),
        "ffn_down" => ("mlp.down_proj", hp.intermediate_size, None),
        "attn_norm" => ("input_layernorm", 0, None),
        "ffn_norm" => ("post_attention_layernorm", 0, None),
        _ => return None,
    };
    module(
        format!("model.layers.{layer}.{suffix}"),
        input_width,
        permuted_heads,
    )
}

/// Undoes llama.cpp's RoPE row permutation of a query/key projection tensor.
///
/// llama.cpp stores each head's rows as `[2, head_dim/2]` interleaved pairs; Hugging Face
/// keeps `[head_dim/2, 2]`. Rows are the output dimension, so the same reshuffle applies to
/// packed weights, scales and biases alike.
fn unpermute_rows(tensor: &Array, heads: usize) -> Result<Array, ImportError> {
    let shape = tensor.shape();
    let (rows, cols) = (shape[0], shape[1]);
    let heads = heads as i32;
    if rows % (2 * heads) != 0 {
        return Err(ImportError::Gguf(format!(
            "cannot un-permute a tensor with {rows} rows into {heads} heads"
        )));
    }
    Ok(tensor
        .reshape(&[heads, rows / heads / 2, 2, cols])?
        .swap_axes(1, 2)?
        .reshape(&[rows, cols])?)
}

/// A module's quantization, inferred from its packed weight and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Quantization {
    bits: u32,
    group_size: u32,
}

fn infer_quantization(
    module: &str,
    weight: &Array,
    scales: &Array,
    input_width: usize,
) -> Result<Quantization, ImportError> {
    let packed = *weight.shape().last().unwrap_or(&0) as usize;
    let groups = *scales.shape().last().unwrap_or(&0) as usize;
    let valid = weight.dtype() == Dtype::Uint32
        && input_width > 0
        && groups > 0
        && (packed * 32).is_multiple_of(input_width)
        && input_width.is_multiple_of(groups);
    let quantization = Quantization {
        bits: if valid {
            (packed * 32 / input_width) as u32
        } else {
            0
        },
        group_size: if valid {
            (input_width / groups) as u32
        } else {
            0
        },
    };
    if !valid || ![2, 3, 4, 5, 6, 8].contains(&quantization.bits) {
        return Err(ImportError::Gguf(format!(
            "{module}: packed weight {:?} ({:?}) and scales {:?} do not describe an MLX \
             quantization of input width {input_width}",
            weight.shape(),
            weight.dtype(),
            scales.shape()
        )));
    }
    Ok(quantization)
}

/// Converts a Llama GGUF file into an MLX checkpoint in `out_dir`: `model.safetensors`,
/// `config.json`, and the tokenizer files from [`crate::tokenizer`].
pub fn convert(gguf_path: &Path, out_dir: &Path) -> Result<ConversionSummary, ImportError> {
    let file = GgufFile::load(gguf_path)?;
    let hp = llama_hyperparameters(&file)?;
    let tokenizer = GgufTokenizer::from_gguf(&file)?;
    let vocab_size = tokenizer.vocab_size();
    let converted = convert_tensors(&file, &hp)?;
    let tied_embeddings = !converted
        .tensors
        .keys()
        .any(|key| key.starts_with("lm_head."));
    let mut config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hp.hidden_size,
        "intermediate_size": hp.intermediate_size,
        "num_hidden_layers": hp.num_layers,
        "num_attention_heads": hp.num_attention_heads,
        "num_key_value_heads": hp.num_key_value_heads,
        "head_dim": hp.head_dim,
        "max_position_embeddings": hp.max_position_embeddings,
        "rms_norm_eps": hp.rms_norm_eps,
        "rope_theta": hp.rope_theta,
        "rope_scaling": null,
        "vocab_size": vocab_size,
        "tie_word_embeddings": tied_embeddings,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": tokenizer.bos_token_id(),
        "eos_token_id": tokenizer.eos_token_id(),
        "source": {
            "format": "gguf",
            "file": gguf_path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "name": file.get_metadata_string("general.name")?,
        },
    });
    if let Some(quantization) = quantization_config(&converted.quantizations) {
        config["quantization"] = quantization.clone();
        // transformers reads the same entry under this name.
        config["quantization_config"] = quantization;
    }
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    let summary = ConversionSummary {
        hyperparameters: hp,
        vocab_size,
        tensors: converted.tensors.len(),
        quantized_bits: converted
            .quantizations
            .iter()
            .map(|(module, q)| (module.clone(), q.bits))
            .collect(),
        tied_embeddings,
    };
    Array::save_safetensors(
        converted.tensors,
        &metadata,
        out_dir.join("model.safetensors"),
    )?;
    crate::write_json(&out_dir.join("config.json"), &config)?;
    tokenizer.write(out_dir)?;
    Ok(summary)
}

/// A GGUF file's tensors under their MLX names, with each quantized module's settings.
struct ConvertedTensors {
    /// Ordered, so the written file is byte-identical from run to run.
    tensors: BTreeMap<String, Array>,
    quantizations: BTreeMap<String, Quantization>,
}

/// Groups the file's tensors into (weight, scales, biases) per module and moves each to
/// its MLX name, undoing GGUF's head permutation where it applies.
fn convert_tensors(
    file: &GgufFile,
    hp: &LlamaHyperparameters,
) -> Result<ConvertedTensors, ImportError> {
    let mut converted = ConvertedTensors {
        tensors: BTreeMap::new(),
        quantizations: BTreeMap::new(),
    };
    let mut triples: BTreeMap<String, HashMap<String, Array>> = BTreeMap::new();
    for (name, array) in file.arrays()? {
        let (base, part) = name
            .rsplit_once('.')
            .filter(|(_, part)| matches!(*part, "weight" | "scales" | "biases"))
            .ok_or_else(|| ImportError::Gguf(format!("unexpected tensor name {name:?}")))?;
        triples
            .entry(base.to_string())
            .or_default()
            .insert(part.to_string(), array);
    }
    for (base, mut parts) in triples {
        let target = destination(&base, hp).ok_or_else(|| {
            ImportError::Unsupported(format!(
                "GGUF tensor {base:?} has no place in a {}-layer Llama model",
                hp.num_layers
            ))
        })?;
        let weight = parts
            .remove("weight")
            .ok_or_else(|| ImportError::Gguf(format!("{base}: scales/biases without weight")))?;
        let quantized = match (parts.remove("scales"), parts.remove("biases")) {
            (Some(scales), Some(biases)) => Some((scales, biases)),
            (None, None) => None,
            _ => {
                return Err(ImportError::Gguf(format!(
                    "{base}: a quantized tensor needs both scales and biases"
                )));
            }
        };
        let permute = |tensor: Array| match target.permuted_heads {
            Some(heads) => unpermute_rows(&tensor, heads),
            None => Ok(tensor),
        };
        let module = &target.module;
        if let Some((scales, biases)) = quantized {
            let quantization = infer_quantization(module, &weight, &scales, target.input_width)?;
            converted.quantizations.insert(module.clone(), quantization);
            let tensors = &mut converted.tensors;
            tensors.insert(format!("{module}.scales"), permute(scales)?);
            tensors.insert(format!("{module}.biases"), permute(biases)?);
        }
        converted
            .tensors
            .insert(format!("{module}.weight"), permute(weight)?);
    }
    Ok(converted)
}

/// The `quantization` entry of `config.json`: the most common quantization is the
/// default; modules that differ are listed by path, which is how mlx-lm reads
/// per-module settings. `None` for an unquantized model.
fn quantization_config(quantizations: &BTreeMap<String, Quantization>) -> Option<Value> {
    let mut counts: BTreeMap<Quantization, usize> = BTreeMap::new();
    for quantization in quantizations.values() {
        *counts.entry(*quantization).or_default() += 1;
    }
    let default = counts
        .iter()
        .max_by_key(|(quantization, count)| (**count, std::cmp::Reverse(**quantization)))
        .map(|(quantization, _)| *quantization)?;
    let mut config = serde_json::Map::new();
    config.insert("group_size".into(), json!(default.group_size));
    config.insert("bits".into(), json!(default.bits));
    for (module, q) in quantizations {
        if *q != default {
            config.insert(
                module.clone(),
                json!({"group_size": q.group_size, "bits": q.bits}),
            );
        }
    }
    Some(Value::Object(config))
}

#[cfg(test)]
mod tests {
    use mlx_rs::io::GgufMetadataValue;

    use super::*;

    const HIDDEN: i32 = 8;
    const HEADS: i32 = 2;
    const KV_HEADS: i32 = 1;
    const HEAD_DIM: i32 = 4;
    const FFN: i32 = 16;

    fn scalar_u32(value: u32) -> GgufMetadataValue {
        GgufMetadataValue::Array(Array::from_slice(&[value], &[]))
    }

    fn strings(values: &[&str]) -> GgufMetadataValue {
        GgufMetadataValue::Strings(values.iter().map(|v| v.to_string()).collect())
    }

    /// HF → llama.cpp row order: the inverse of [`unpermute_rows`].
    fn permute_rows(tensor: &Array, heads: i32) -> Array {
        let (rows, cols) = (tensor.shape()[0], tensor.shape()[1]);
        tensor
            .reshape(&[heads, 2, rows / heads / 2, cols])
            .unwrap()
            .swap_axes(1, 2)
            .unwrap()
            .reshape(&[rows, cols])
            .unwrap()
    }

    fn counting(rows: i32, cols: i32) -> Array {
        let values: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        Array::from_slice(&values, &[rows, cols])
    }

    /// A one-block Llama GGUF whose q/k projections hold distinct values in HF order
    /// (returned) and are stored permuted, as llama.cpp's converter writes them.
    fn tiny_gguf(path: &Path, architecture: &str, extra_tensor: bool) -> (Array, Array) {
        let mut file = GgufFile::new().unwrap();
        file.insert_metadata(
            "general.architecture",
            GgufMetadataValue::String(architecture.into()),
        )
        .unwrap();
        for (key, value) in [
            ("llama.block_count", 1),
            ("llama.context_length", 64),
            ("llama.embedding_length", HIDDEN as u32),
            ("llama.feed_forward_length", FFN as u32),
            ("llama.attention.head_count", HEADS as u32),
            ("llama.attention.head_count_kv", KV_HEADS as u32),
            ("llama.rope.dimension_count", HEAD_DIM as u32),
            ("tokenizer.ggml.bos_token_id", 1),
            ("tokenizer.ggml.eos_token_id", 1),
        ] {
            file.insert_metadata(key, scalar_u32(value)).unwrap();
        }
        let eps = GgufMetadataValue::Array(Array::from_slice(&[1e-5f32], &[]));
        file.insert_metadata("llama.attention.layer_norm_rms_epsilon", eps)
            .unwrap();
        file.insert_metadata(
            "tokenizer.ggml.model",
            GgufMetadataValue::String("gpt2".into()),
        )
        .unwrap();
        file.insert_metadata(
            "tokenizer.ggml.pre",
            GgufMetadataValue::String("smollm".into()),
        )
        .unwrap();
        let tokens = [
            "<|endoftext|>",
            "<|im_start|>",
            "a",
            "b",
            "Ġ",
            "ab",
            "Ġab",
            "1",
            "2",
        ];
        file.insert_metadata("tokenizer.ggml.tokens", strings(&tokens))
            .unwrap();
        file.insert_metadata("tokenizer.ggml.merges", strings(&["a b", "Ġ ab"]))
            .unwrap();
        let types = Array::from_slice(&[3i32, 3, 1, 1, 1, 1, 1, 1, 1], &[9]);
        file.insert_metadata("tokenizer.ggml.token_type", GgufMetadataValue::Array(types))
            .unwrap();

        let q = counting(HEADS * HEAD_DIM, HIDDEN);
        let k = counting(KV_HEADS * HEAD_DIM, HIDDEN);
        let ones = |shape: &[i32]| Array::ones::<f32>(shape).unwrap();
        let mut insert = |name: &str, array: &Array| file.insert_array(name, array).unwrap();
        insert("token_embd.weight", &ones(&[tokens.len() as i32, HIDDEN]));
        insert("blk.0.attn_q.weight", &permute_rows(&q, HEADS));
        insert("blk.0.attn_k.weight", &permute_rows(&k, KV_HEADS));
        insert("blk.0.attn_v.weight", &ones(&[KV_HEADS * HEAD_DIM, HIDDEN]));
        insert(
            "blk.0.attn_output.weight",
            &ones(&[HIDDEN, HEADS * HEAD_DIM]),
        );
        insert("blk.0.ffn_gate.weight", &ones(&[FFN, HIDDEN]));
        insert("blk.0.ffn_up.weight", &ones(&[FFN, HIDDEN]));
        insert("blk.0.ffn_down.weight", &ones(&[HIDDEN, FFN]));
        insert("blk.0.attn_norm.weight", &ones(&[HIDDEN]));
        insert("blk.0.ffn_norm.weight", &ones(&[HIDDEN]));
        insert("output_norm.weight", &ones(&[HIDDEN]));
        if extra_tensor {
            insert("blk.0.attn_q_norm.weight", &ones(&[HIDDEN]));
        }
        file.save(path).unwrap();
        (q, k)
    }

    #[test]
    fn converts_and_unpermutes_query_and_key_rows() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        let (q, k) = tiny_gguf(&gguf, "llama", false);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let summary = convert(&gguf, &out).unwrap();
        assert_eq!(summary.tensors, 11);
        assert!(summary.tied_embeddings);
        assert!(summary.quantized_bits.is_empty());

        let weights = Array::load_safetensors(out.join("model.safetensors")).unwrap();
        let q_proj = &weights["model.layers.0.self_attn.q_proj.weight"];
        let k_proj = &weights["model.layers.0.self_attn.k_proj.weight"];
        assert_eq!(q_proj.as_slice::<f32>(), q.as_slice::<f32>());
        assert_eq!(k_proj.as_slice::<f32>(), k.as_slice::<f32>());

        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["model_type"], "llama");
        assert_eq!(config["num_key_value_heads"], 1);
        assert_eq!(config["head_dim"], 4);
        assert_eq!(config["vocab_size"], 9);
        assert_eq!(config["rms_norm_eps"].as_f64().unwrap() as f32, 1e-5);
        assert!(config.get("quantization").is_none());

        let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        let encoding = tokenizer.encode("<|im_start|>ab ab12", true).unwrap();
        assert_eq!(encoding.get_ids(), [1, 5, 6, 7, 8]);
        let tokenizer_config: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(tokenizer_config["bos_token"], "<|im_start|>");
        assert_eq!(tokenizer_config["add_bos_token"], false);
    }

    #[test]
    fn conversion_is_byte_for_byte_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("tiny.gguf");
        tiny_gguf(&gguf, "llama", false);
        let digests: Vec<String> = (0..2)
            .map(|run| {
                let out = dir.path().join(format!("out{run}"));
                std::fs::create_dir(&out).unwrap();
                convert(&gguf, &out).unwrap();
                saeidx_format::checksum::sha256_file(&out.join("model.safetensors")).unwrap()
            })
            .collect();
        assert_eq!(digests[0], digests[1]);
    }

    #[test]
    fn unknown_tensors_and_architectures_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();

        let gguf = dir.path().join("extra.gguf");
        tiny_gguf(&gguf, "llama", true);
        let error = convert(&gguf, &out).unwrap_err();
        assert!(error.to_string().contains("blk.0.attn_q_norm"), "{error}");

        let gguf = dir.path().join("qwen.gguf");
        tiny_gguf(&gguf, "qwen2", false);
        let error = convert(&gguf, &out).unwrap_err();
        assert!(matches!(error, ImportError::Unsupported(_)), "{error}");
    }
}
