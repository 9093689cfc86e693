//! `saeidx sae ...`: train SAEs, inspect SAE folders.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use saeidx_corpus::{tokenizer::TextTokenizer, window::WindowPolicy};
use saeidx_format::checksum::sha256_file;
use saeidx_hub::HubSettings;
use saeidx_model::files::{self, ModelSource};
use saeidx_model::{
    checkpoint::Checkpoint,
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_sae::{
    formats::{self, LoadOptions, SaeSource},
    train::{Provenance, TrainConfig, TrainOutput, train_on_corpus},
};

use serde_json::json;

use saeidx_cli::{Output, print_json};

use crate::{AssetsDir, ModelArgs};

#[derive(Subcommand)]
pub enum SaeCommand {
    /// Train a TopK SAE on a model's activations at one hook over a JSONL corpus.
    #[command(after_help = "Examples:\n  \
        saeidx sae train --hook blocks.15.hook_resid_post --out sae-l15\n  \
        saeidx sae train --hook mlp --layer 10 --d-sae 16384 --k 64 --train-tokens 5000000 --out sae-l10-mlp\n\n\
        The first position of every window (an attention sink) and special tokens never\n\
        enter training. Every --holdout-every-th document is held out for evaluation.\n\
        Checkpoints go to --checkpoint-dir (default OUT.checkpoints); rerunning the same\n\
        command resumes from the last one.")]
    Train(TrainArgs),
    /// Load an SAE (mlxterp, SAELens or sparsify; local folder or Hub repo[/subfolder])
    /// and print what it is: format, widths, activation rule, recorded model and hook.
    #[command(after_help = "Examples:\n  \
        saeidx sae inspect crates/assets/default-sae/smollm2-135m-l15-resid-post-8k-k32\n  \
        saeidx sae inspect EleutherAI/sae-llama-3-8b-32x/layers.10 --json\n  \
        saeidx sae inspect ./my-sae --model saeidx-default/SmolLM2-135M-Instruct-mlx-4bit --hook blocks.15.hook_resid_post")]
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// A local SAE folder, or a Hub repo id with an optional subfolder (org/name/sub).
    sae: String,
    /// Branch, tag or commit of a Hub repo.
    #[arg(long)]
    revision: Option<String>,
    /// Per-token threshold for BatchTopK SAEs.
    #[arg(long)]
    batchtopk_threshold: Option<f32>,
    /// Check that the SAE fits this model (repo id or folder) ...
    #[arg(long, requires = "hook")]
    model: Option<String>,
    /// ... at this hook.
    #[arg(long)]
    hook: Option<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Hook point (blocks.L.hook_resid_post, mlp with --layer, ...).
    #[arg(long)]
    hook: String,
    /// Layer for component hook names.
    #[arg(long)]
    layer: Option<usize>,
    /// The corpus (JSONL with a "text" field; default: the embedded corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[command(flatten)]
    assets: AssetsDir,
    /// Where to write the SAE (an mlxterp folder).
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint folder (default: OUT.checkpoints).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Number of features.
    #[arg(long, default_value_t = TrainConfig::default().d_sae)]
    d_sae: usize,
    /// Active features per token.
    #[arg(long, default_value_t = TrainConfig::default().k)]
    k: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    learning_rate: f32,
    /// Tokens per optimizer step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Training tokens.
    #[arg(long, default_value_t = TrainConfig::default().train_tokens)]
    train_tokens: usize,
    /// Held-out tokens to evaluate.
    #[arg(long, default_value_t = TrainConfig::default().eval_tokens)]
    eval_tokens: usize,
    /// Hold out every n-th document.
    #[arg(long, default_value_t = TrainConfig::default().holdout_every)]
    holdout_every: usize,
    /// Tokens per model window.
    #[arg(long, default_value_t = TrainConfig::default().window.length)]
    window_length: usize,
    /// Context-only tokens at the start of each later window.
    #[arg(long, default_value_t = TrainConfig::default().window.overlap)]
    window_overlap: usize,
    /// Padded tokens per model batch.
    #[arg(long, default_value_t = TrainConfig::default().model_batch_tokens)]
    model_batch_tokens: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    checkpoint_every: usize,
    /// Store the weights in f16 (half the size).
    #[arg(long)]
    f16: bool,
    #[command(flatten)]
    output: Output,
}

pub fn run(command: SaeCommand) -> anyhow::Result<()> {
    match command {
        SaeCommand::Train(args) => train(args),
        SaeCommand::Inspect(args) => inspect(args),
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let settings = HubSettings::from_env();
    let source = SaeSource::parse(&args.sae, args.revision.clone());
    let mut sae = formats::load(
        &source,
        &settings,
        LoadOptions {
            batchtopk_threshold: args.batchtopk_threshold,
            ..LoadOptions::default()
        },
    )?;
    let fits = match (&args.model, &args.hook) {
        (Some(model), Some(hook)) => {
            let hook = HookPoint::parse(hook, None)?;
            let files = files::resolve(&ModelSource::parse(model, None), &settings)?;
            let config = saeidx_model::config::ModelConfig::from_file(&files.config)?;
            let applied = formats::prepare(&mut sae, &config, model, hook, false)?;
            Some(json!({"fits": format!("fits {model} at {hook}"), "applied": applied}))
        }
        _ => None,
    };
    if args.output.json {
        return print_json(&serde_json::json!({
            "info": sae.info,
            "rule": sae.rule,
            "input": {
                "center": sae.input.center,
                "standardize": sae.input.standardize.is_some(),
                "scale": sae.input.scale,
                "row_normalization": sae.input.row_normalization,
                "subtract_decoder_bias": sae.input.subtract_decoder_bias,
            },
            "check": fits,
        }));
    }
    let info = &sae.info;
    println!(
        "{}  ({} format, {})",
        info.source, info.format, info.architecture
    );
    println!(
        "d_in {}  d_sae {}  sha256 {}",
        info.d_in, info.d_sae, info.sha256
    );
    println!("rule {}", serde_json::to_string(&sae.rule)?);
    println!(
        "recorded model {}  hook {}",
        info.recorded_model.as_deref().unwrap_or("(none)"),
        match (&info.hook, &info.recorded_hook) {
            (Some(hook), _) => hook.name(),
            (None, Some(recorded)) => format!("{recorded} (no saeidx equivalent)"),
            (None, None) => "(none)".into(),
        }
    );
    println!(
        "trained with prepend_bos {}  context_size {}  center_writing_weights {}",
        info.trained
            .prepend_bos
            .map_or("(not recorded)".to_string(), |b| b.to_string()),
        info.trained
            .context_size
            .map_or("(not recorded)".to_string(), |n| n.to_string()),
        info.trained.center_writing_weights
    );
    if let Some(fits) = fits {
        println!("{}", fits["fits"].as_str().unwrap_or_default());
        for applied in fits["applied"].as_array().into_iter().flatten() {
            println!("  applied: {}", applied.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

impl TrainArgs {
    /// The training settings the arguments give.
    fn config(&self) -> anyhow::Result<TrainConfig> {
        Ok(TrainConfig {
            d_sae: self.d_sae,
            k: self.k,
            learning_rate: self.learning_rate,
            batch_size: self.batch_size,
            train_tokens: self.train_tokens,
            eval_tokens: self.eval_tokens,
            holdout_every: self.holdout_every,
            window: WindowPolicy::new(self.window_length, self.window_overlap)?,
            model_batch_tokens: self.model_batch_tokens,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            save_f16: self.f16,
            ..TrainConfig::default()
        })
    }
}

/// A progress bar over `tokens` training tokens (hidden for `--json`).
fn training_bar(json: bool, tokens: usize) -> ProgressBar {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(tokens as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} tokens ({per_sec}, ETA {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let hook = HookPoint::parse(&args.hook, args.layer)?;
    let files = args.model.resolve()?;
    let corpus = args
        .corpus
        .clone()
        .unwrap_or_else(|| args.assets.default_corpus());
    anyhow::ensure!(
        corpus.is_file(),
        "corpus {} not found (run `saeidx assets prepare`, or pass --corpus)",
        corpus.display()
    );
    let config = args.config()?;
    let provenance = Provenance {
        model: files.source.to_string(),
        model_commit: files.commit.clone(),
        model_weights_sha256: files.weights_sha256()?,
        corpus: corpus.clone(),
        corpus_sha256: sha256_file(&corpus)
            .with_context(|| format!("reading {}", corpus.display()))?,
    };
    let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
    let checkpoint = Checkpoint::load(files)?;
    checkpoint.config.check_hook(&hook)?;
    let model = Transformer::from_checkpoint(
        checkpoint,
        Some(hook.layer),
        WeightStorage::for_default_device(),
    )?;
    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut name = args.out.as_os_str().to_owned();
        name.push(".checkpoints");
        PathBuf::from(name)
    });

    let bar = training_bar(args.output.json, config.train_tokens);
    let report = train_on_corpus(
        &model,
        &tokenizer,
        hook,
        &corpus,
        &config,
        TrainOutput {
            provenance: &provenance,
            checkpoint_dir: &checkpoint_dir,
            out: &args.out,
        },
        &mut |step| {
            bar.set_position(step.tokens as u64);
            bar.set_message(format!(
                "step {} FVU {:.3} dead {:.1}%",
                step.step,
                step.fvu,
                step.dead_fraction * 100.0
            ));
        },
    )
    .context("training the SAE")?;
    bar.finish_and_clear();
    if args.output.json {
        return print_json(&report);
    }
    let metrics = &report.metrics;
    println!("wrote {}", args.out.display());
    println!(
        "held-out ({} tokens): FVU {:.4}, L0 {:.1}, dead on held-out {:.2}%, dead in training {:.2}%",
        metrics.tokens,
        metrics.fvu,
        metrics.l0,
        metrics.dead_on_eval * 100.0,
        metrics.dead_in_training * 100.0
    );
    println!(
        "{} steps, {} tokens, {:.0} s",
        report.steps, report.tokens, report.seconds
    );
    Ok(())
}
