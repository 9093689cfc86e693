//! `saeidx activations`: a text's activations at one hook point, token by token.

use std::collections::BTreeSet;

use anyhow::Context;
use clap::Args;
use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_model::{
    batch::PaddedBatch,
    checkpoint::Checkpoint,
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use serde_json::json;

use saeidx_cli::{Output, print_json};

use crate::ModelArgs;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx activations --hook blocks.15.hook_resid_post --text 'The capital of France is Paris.'\n  \
    saeidx activations --hook mlp --layer 10 --text 'Paris' --values --json\n  \
    saeidx activations --model openai-community/gpt2 --hook blocks.8.hook_resid_pre --text 'Hi'")]
pub struct ActivationsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Hook point: blocks.L.hook_{resid_pre,attn_out,resid_mid,mlp_out,resid_post},
    /// blocks.L.attn.hook_z (the heads' outputs), a module
    /// path (model.layers.L.mlp), or a component (mlp, attn, residual) with --layer.
    #[arg(long)]
    hook: String,
    /// Layer for component hook names (mlxterp style: --hook mlp --layer 10).
    #[arg(long)]
    layer: Option<usize>,
    /// The text to run.
    #[arg(long)]
    text: String,
    /// Also print every token's activation vector.
    #[arg(long)]
    values: bool,
    #[command(flatten)]
    output: Output,
}

pub fn run(args: ActivationsArgs) -> anyhow::Result<()> {
    let hook = HookPoint::parse(&args.hook, args.layer)?;
    let files = args.model.resolve()?;
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let checkpoint = Checkpoint::load(files.clone())?;
    checkpoint.config.check_hook(&hook)?;
    let model = Transformer::from_checkpoint(
        checkpoint,
        Some(hook.layer),
        WeightStorage::for_default_device(),
    )?;
    let tokens = tokenizer.encode(&args.text)?;
    anyhow::ensure!(!tokens.ids.is_empty(), "the text has no tokens");
    let batch = PaddedBatch::new(&[&tokens.ids])?;
    let activations = model
        .forward(&batch.tokens, &BTreeSet::from([hook]))
        .context("running the model")?;
    let width = model.config().hook_width(&hook);
    let values = batch.unpad(&activations[&hook])?.remove(0);
    let rows: Vec<&[f32]> = values.chunks(width).collect();
    let norms: Vec<f32> = rows
        .iter()
        .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    let pieces: Vec<&str> = tokens
        .spans
        .iter()
        .map(|span| &args.text[span.clone()])
        .collect();

    if args.output.json {
        let tokens_json: Vec<_> = (0..rows.len())
            .map(|t| {
                let mut token = json!({
                    "position": t,
                    "id": tokens.ids[t],
                    "text": pieces[t],
                    "special": tokens.special[t],
                    "norm": norms[t],
                });
                if args.values {
                    token["values"] = json!(rows[t]);
                }
                token
            })
            .collect();
        return print_json(&json!({
            "model": files.source.to_string(),
            "commit": files.commit,
            "hook": hook.name(),
            "width": width,
            "tokens": tokens_json,
        }));
    }
    println!(
        "model {}  hook {hook}  width {width}  tokens {}",
        files.source,
        rows.len()
    );
    println!("{:>5} {:>7}  {:<20} {:>12}", "pos", "id", "token", "norm");
    for t in 0..rows.len() {
        let note = if t == 0 {
            "  (first position: attention sink)"
        } else {
            ""
        };
        println!(
            "{t:>5} {:>7}  {:<20} {:>12.4}{note}",
            tokens.ids[t],
            format!("{:?}", pieces[t]),
            norms[t]
        );
        if args.values {
            let formatted: Vec<String> = rows[t].iter().map(|v| format!("{v:.5}")).collect();
            println!("      [{}]", formatted.join(", "));
        }
    }
    Ok(())
}
