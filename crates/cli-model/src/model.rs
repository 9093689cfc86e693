//! `saeidx model ...`.

use clap::Subcommand;
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_model::checkpoint::Checkpoint;
use serde_json::json;

use saeidx_cli::{Output, print_json};

use crate::ModelArgs;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Resolve a model (local folder or HF repo id), check every weight against its
    /// config, and show its shape and how it tokenizes text.
    #[command(after_help = "Examples:\n  \
        saeidx model inspect --text 'The capital of France is Paris.'\n  \
        HF_HUB_OFFLINE=1 saeidx model inspect --model mlx-community/SmolLM2-135M-Instruct --json\n  \
        saeidx model inspect --model ./my-model-folder")]
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
        /// Text to tokenize (repeatable).
        #[arg(long)]
        text: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    let ModelCommand::Inspect {
        model,
        text,
        output,
    } = command;
    let files = model.resolve()?;
    let source = files.source.clone();
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let checkpoint = Checkpoint::load(files)?;
    let summary = checkpoint.summary();
    let config = &checkpoint.config;
    let arch = &config.architecture;
    let files = &checkpoint.files;

    let mut tokenized = Vec::new();
    for text in &text {
        let tokens = tokenizer.encode(text)?;
        let pieces: Vec<&str> = tokens
            .spans
            .iter()
            .map(|span| &text[span.clone()])
            .collect();
        tokenized.push((text, tokens, pieces));
    }

    if output.json {
        return print_json(&json!({
            "source": source.to_string(),
            "commit": files.commit,
            "dir": files.dir,
            "config": config.raw,
            "family": config.family.name(),
            "bos": config.family.bos(),
            "head_dim": arch.attention.head_dim,
            "num_key_value_heads": arch.attention.kv_heads,
            "checkpoint": summary,
            "tokenizer": { "vocab_size": tokenizer.vocab_size() },
            "texts": tokenized.iter().map(|(text, tokens, pieces)| json!({
                "text": text,
                "ids": tokens.ids,
                "pieces": pieces,
                "special": tokens.special,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("model       {source}");
    if let Some(commit) = &files.commit {
        println!("commit      {commit}");
    }
    println!("folder      {}", files.dir.display());
    println!(
        "family      {} (model_type {}); BOS: {}",
        config.family.name(),
        config.model_type,
        config.family.bos()
    );
    println!(
        "shape       {} layers, d_model {}, {} query / {} key-value heads of {}, MLP {}, vocab {}",
        arch.layers,
        arch.hidden_size,
        arch.attention.heads,
        arch.attention.kv_heads,
        arch.attention.head_dim,
        arch.mlp.hidden,
        arch.vocab_size
    );
    let quantized: Vec<String> = summary
        .quantized_modules
        .iter()
        .map(|(kind, count)| format!("{count} × {kind}"))
        .collect();
    println!(
        "weights     {} tensors, {:.1} M parameters, {:.1} MB stored; quantized: {}; float: {}",
        summary.tensors,
        summary.parameters as f64 / 1e6,
        summary.stored_bytes as f64 / 1e6,
        if quantized.is_empty() {
            "none".to_string()
        } else {
            quantized.join(", ")
        },
        summary.float_modules
    );
    for (text, tokens, pieces) in &tokenized {
        println!("\ntext        {text:?}");
        println!("tokens      {}", tokens.ids.len());
        for ((id, piece), special) in tokens.ids.iter().zip(pieces).zip(&tokens.special) {
            let mark = if *special { " (special)" } else { "" };
            println!("  {id:>6}  {piece:?}{mark}");
        }
    }
    Ok(())
}
