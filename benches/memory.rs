//! Peak memory of a 2B-class model's middle (and last) layer: `saeidx activations` to
//! `blocks.12.hook_resid_post` (and 25) of a random checkpoint with Gemma 2 2B's exact shape
//! (26 layers, d_model 2304, vocabulary 256,000; Hugging Face layout, bf16, 4 shards),
//! against mlx-lm 0.32.2 loading the same checkpoint as its users do (`load_model`,
//! weights as stored) and running the same blocks. Both are child processes measured
//! with `wait4`'s peak RSS.
//!
//! saeidx reads only the blocks up to the hook (the other 13 are checked by shape and
//! never read) and keeps the embedding as stored, converting only the rows a batch uses;
//! the weights it computes with are f32. The checkpoint (5.2 GB) is written once into
//! `target/bench-data/` and reused.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};
use mlx_rs::{Array, Dtype, random};
use saeidx_benches::{reference_python, repo_root};

const LAYERS: i32 = 26;
const HIDDEN: i32 = 2304;
const FFN: i32 = 9216;
const HEADS: i32 = 8;
const KV_HEADS: i32 = 4;
const HEAD_DIM: i32 = 256;
const VOCAB: i32 = 256_000;
const HOOK_LAYER: usize = 12;
const TEXT: &str = "The capital of France is Paris, and the capital of Italy is Rome. \
    Both cities are famous for their museums.";

fn main() -> anyhow::Result<()> {
    let binary = repo_root().join("target/release/saeidx");
    if !binary.is_file() {
        bail!(
            "{} is missing: cargo build --release -p saeidx-cli -p saeidx-cli-model",
            binary.display()
        );
    }
    let model = repo_root().join("target/bench-data/gemma-2-2b-shape-random-bf16");
    if !model.join("done").is_file() {
        eprintln!(
            "writing a random Gemma 2 2B-shaped checkpoint to {} ...",
            model.display()
        );
        write_checkpoint(&model)?;
    }
    let gib = |kib: i64| kib as f64 / (1024.0 * 1024.0);
    println!("| model | hook | saeidx peak RSS | mlx-lm peak RSS (bf16 as loaded) | ratio |");
    println!("|---|---|---|---|---|");
    for layer in [HOOK_LAYER, LAYERS as usize - 1] {
        let hook = format!("blocks.{layer}.hook_resid_post");
        let ours = peak_rss(
            Command::new(&binary)
                .args(["activations", "--model"])
                .arg(&model)
                .args(["--hook", &hook, "--text", TEXT, "--json"])
                .env("HF_HUB_OFFLINE", "1"),
        )?;
        let peer = peak_rss(
            Command::new(reference_python()?)
                .arg(repo_root().join("benches/mlx_lm_memory.py"))
                .arg(&model)
                .args(["--layer", &layer.to_string(), "--tokens", "24"]),
        )?;
        println!(
            "| Gemma 2 2B shape, bf16, 5.2 GB | {hook} | {:.2} GiB | {:.2} GiB | {:.2}× |",
            gib(ours),
            gib(peer),
            ours as f64 / peer as f64
        );
    }
    Ok(())
}

/// Runs `command` to completion and returns its peak RSS in KiB.
fn peak_rss(command: &mut Command) -> anyhow::Result<i64> {
    let child = command.stdout(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{command:?} failed (status {status})");
    }
    Ok(usage.ru_maxrss)
}

/// The parameters of one block, Hugging Face names, `[rows, cols]` (norms `[cols]`).
fn block_tensors(layer: i32) -> Vec<(String, Vec<i32>)> {
    let p = format!("model.layers.{layer}");
    let mut tensors: Vec<(String, Vec<i32>)> = [
        ("self_attn.q_proj", HEADS * HEAD_DIM, HIDDEN),
        ("self_attn.k_proj", KV_HEADS * HEAD_DIM, HIDDEN),
        ("self_attn.v_proj", KV_HEADS * HEAD_DIM, HIDDEN),
        ("self_attn.o_proj", HIDDEN, HEADS * HEAD_DIM),
        ("mlp.gate_proj", FFN, HIDDEN),
        ("mlp.up_proj", FFN, HIDDEN),
        ("mlp.down_proj", HIDDEN, FFN),
    ]
    .into_iter()
    .map(|(name, rows, cols)| (format!("{p}.{name}.weight"), vec![rows, cols]))
    .collect();
    for norm in [
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    ] {
        tensors.push((format!("{p}.{norm}.weight"), vec![HIDDEN]));
    }
    tensors
}

/// Writes the checkpoint: config, the default model's tokenizer, 4 bf16 shards and the
/// index, then a `done` marker.
fn write_checkpoint(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = serde_json::json!({
        "model_type": "gemma2", "hidden_size": HIDDEN, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "rms_norm_eps": 1e-6,
        "vocab_size": VOCAB, "rope_theta": 10000.0, "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        "sliding_window": 4096, "max_position_embeddings": 8192, "bos_token_id": 2,
        "hidden_activation": "gelu_pytorch_tanh", "torch_dtype": "bfloat16",
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let tokenizer = default_tokenizer()?;
    std::fs::copy(&tokenizer, dir.join("tokenizer.json"))?;
    let mut all = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
    all.extend((0..LAYERS).flat_map(block_tensors));
    all.push(("model.norm.weight".into(), vec![HIDDEN]));
    let shards = 4;
    let per_shard = all.len().div_ceil(shards);
    let mut weight_map = BTreeMap::new();
    random::seed(1)?;
    for (index, chunk) in all.chunks(per_shard).enumerate() {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", index + 1);
        let mut tensors = BTreeMap::new();
        for (key, shape) in chunk {
            let std = if shape.len() == 1 { 0.1 } else { 0.02 };
            let value = random::normal::<f32>(shape, None, None, None)?
                .multiply(Array::from_f32(std))?
                .as_dtype(Dtype::Bfloat16)?;
            value.eval()?;
            tensors.insert(key.clone(), value);
            weight_map.insert(key.clone(), name.clone());
        }
        Array::save_safetensors(&tensors, None, dir.join(&name))?;
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())?;
    std::fs::write(dir.join("done"), "")?;
    Ok(())
}

/// The default model's tokenizer from the Hugging Face cache (set-up places it).
fn default_tokenizer() -> anyhow::Result<PathBuf> {
    let settings = saeidx_hub::HubSettings::from_env();
    let source = saeidx_model::files::ModelSource::Hub {
        repo_id: saeidx_assets::defaults::DEFAULT_MODEL_REPO.into(),
        revision: None,
    };
    let files = saeidx_model::files::resolve(&source, &settings.cache_only())
        .context("the default model (run scripts/setup.sh)")?;
    Ok(files.tokenizer)
}
