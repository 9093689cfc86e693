//! Training a TopK SAE on activations streamed from a model over a corpus.
//!
//! The recipe follows Gao et al., "Scaling and evaluating sparse autoencoders" (2024):
//!
//! - encoder `p = (x − b_dec) · W_enc + b_enc`, the `k` largest positive `p` kept,
//!   decoder `x̂ = z · W_dec + b_dec`, decoder rows kept at unit norm after every step;
//! - loss: squared error normalized by the batch's variance (a per-batch FVU), plus the
//!   AuxK loss: the residual `x − x̂` reconstructed from the top `aux_k` pre-activations of
//!   *dead* features (not fired for `dead_after_tokens` tokens), weighted by
//!   `aux_coefficient`, which brings dead features back;
//! - AdamW; the encoder initialized as the decoder's transpose.
//!
//! Inputs are centered and scaled by one constant (the mean vector and the RMS norm of
//! the centered training activations) and the SAE records both as mlxterp's
//! `input_mean` / `input_std`, so it encodes raw activations. Attention-sink positions
//! (the first position of every window) and special tokens never enter training.
//! Every `holdout_every`-th document is held out; evaluation reports the fraction of
//! variance unexplained (FVU, in the raw activation space), mean L0, and the dead
//! fraction, on held-out tokens.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use mlx_rs::{
    Array,
    builder::Builder,
    macros::ModuleParameters,
    module::{ModuleParameters as _, Param},
    nn,
    ops::{self, indexing::topk_axis},
    optimizers::{AdamW, AdamWBuilder, Optimizer, OptimizerState},
    random, stop_gradient,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_activations::{Batcher, Exclusions, TokenizedDocument, extract};
use saeidx_corpus::{JsonlDocuments, JsonlFields, tokenizer::TextTokenizer, window::WindowPolicy};
use saeidx_format::atomic::StagedDir;
use saeidx_model::{hook::HookPoint, transformer::Transformer};
use serde::{Deserialize, Serialize};

use crate::{
    SaeError,
    sae::{ActivationRule, InputTransform, Sae, SaeInfo, TopKTies, TrainedOn},
};

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of features.
    pub d_sae: usize,
    /// Active features per token.
    pub k: usize,
    /// AdamW learning rate.
    pub learning_rate: f32,
    /// Tokens per optimizer step.
    pub batch_size: usize,
    /// Training tokens in all (the run stops there or when the corpus ends).
    pub train_tokens: usize,
    /// Held-out tokens evaluated.
    pub eval_tokens: usize,
    /// Every n-th document (index % n == 0) is held out for evaluation.
    pub holdout_every: usize,
    /// Dead features used by the AuxK loss.
    pub aux_k: usize,
    /// Weight of the AuxK loss.
    pub aux_coefficient: f32,
    /// A feature is dead after this many training tokens without firing.
    pub dead_after_tokens: usize,
    /// Activations buffered and shuffled before training draws from them (tokens).
    pub shuffle_buffer: usize,
    /// Window length and overlap the model sees.
    pub window: WindowPolicy,
    /// Padded tokens per model batch.
    pub model_batch_tokens: usize,
    /// Seed for initialization and shuffling.
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Store the final weights in f16 (half the size) rather than f32.
    pub save_f16: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            d_sae: 8192,
            k: 32,
            learning_rate: 1e-3,
            batch_size: 1024,
            train_tokens: 2_000_000,
            eval_tokens: 16_384,
            holdout_every: 20,
            aux_k: 256,
            aux_coefficient: 1.0 / 32.0,
            dead_after_tokens: 200_000,
            shuffle_buffer: 131_072,
            window: WindowPolicy {
                length: 128,
                overlap: 16,
            },
            model_batch_tokens: 2048,
            seed: 0,
            checkpoint_every: 200,
            save_f16: false,
        }
    }
}

/// Held-out quality of an SAE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − x̄‖², raw activation space.
    pub fvu: f64,
    /// Mean number of active features per token.
    pub l0: f64,
    /// Fraction of features that never fired on the held-out tokens.
    pub dead_on_eval: f64,
    /// Fraction of features dead by the training criterion at the end of training.
    pub dead_in_training: f64,
    /// Held-out tokens evaluated.
    pub tokens: usize,
}

/// What one step reports to the progress callback.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// Optimizer steps done.
    pub step: usize,
    /// Training tokens consumed.
    pub tokens: usize,
    /// The step's normalized reconstruction error (per-batch FVU).
    pub fvu: f32,
    /// Fraction of features currently dead.
    pub dead_fraction: f64,
}

/// A source of activation rows for training or evaluation.
pub trait ActivationSource {
    /// Width of each row.
    fn width(&self) -> usize;
    /// The next rows, row-major; `None` at the end.
    fn next_rows(&mut self) -> Result<Option<Vec<f32>>, SaeError>;
    /// How far the source has read, in its own units (documents, for a corpus).
    fn position(&self) -> usize;
    /// Skips to a position saved by [`ActivationSource::position`] (resuming a run).
    fn skip_to(&mut self, position: usize) -> Result<(), SaeError>;
}

/// Hook activations of a model over a JSONL corpus, attention-sink positions and
/// special tokens left out.
pub struct ActivationStream<'a> {
    model: &'a Transformer,
    tokenizer: &'a TextTokenizer,
    hook: HookPoint,
    documents: JsonlDocuments,
    index: usize,
    holdout: Holdout,
    holdout_every: usize,
    batcher: Batcher,
    exhausted: bool,
    documents_read: usize,
}

/// Which documents a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdout {
    /// Documents with index % n != 0.
    Train,
    /// Documents with index % n == 0.
    Eval,
}

const EXCLUSIONS: Exclusions = Exclusions {
    window_start: true,
    special_tokens: true,
};

impl<'a> ActivationStream<'a> {
    /// Streams the hook activations of `corpus` (JSONL) documents selected by `holdout`.
    pub fn open(
        model: &'a Transformer,
        tokenizer: &'a TextTokenizer,
        hook: HookPoint,
        corpus: &Path,
        holdout: Holdout,
        config: &TrainConfig,
    ) -> Result<Self, SaeError> {
        Ok(Self {
            model,
            tokenizer,
            hook,
            documents: JsonlDocuments::open(corpus, JsonlFields::default())?,
            index: 0,
            holdout,
            holdout_every: config.holdout_every.max(2),
            batcher: Batcher::new(config.window, config.model_batch_tokens),
            exhausted: false,
            documents_read: 0,
        })
    }

    fn next_document(&mut self) -> Result<Option<TokenizedDocument>, SaeError> {
        loop {
            let Some(document) = self.documents.next() else {
                return Ok(None);
            };
            let document = document?;
            let index = self.index;
            self.index += 1;
            let held_out = index.is_multiple_of(self.holdout_every);
            if held_out != (self.holdout == Holdout::Eval) {
                continue;
            }
            self.documents_read += 1;
            return Ok(Some(TokenizedDocument::new(
                index,
                &document.text,
                self.tokenizer,
            )?));
        }
    }
}

impl ActivationSource for ActivationStream<'_> {
    fn width(&self) -> usize {
        self.model.config().hook_width(&self.hook)
    }

    fn position(&self) -> usize {
        self.documents_read
    }

    fn skip_to(&mut self, documents: usize) -> Result<(), SaeError> {
        while self.documents_read < documents {
            if self.next_document()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn next_rows(&mut self) -> Result<Option<Vec<f32>>, SaeError> {
        loop {
            let batch = match self.batcher.next_full() {
                Some(batch) => Some(batch),
                None if self.exhausted => self.batcher.next_any(),
                None => {
                    match self.next_document()? {
                        Some(document) => self.batcher.push(&document),
                        None => self.exhausted = true,
                    }
                    continue;
                }
            };
            let Some(batch) = batch else {
                return Ok(None);
            };
            let extracted = extract(self.model, self.hook, &batch, EXCLUSIONS)?;
            if !extracted.values.is_empty() {
                return Ok(Some(extracted.values));
            }
        }
    }
}

/// The trainable parameters.
#[derive(Debug, Clone, ModuleParameters)]
struct Params {
    #[param]
    w_enc: Param<Array>,
    #[param]
    b_enc: Param<Array>,
    #[param]
    w_dec: Param<Array>,
    #[param]
    b_dec: Param<Array>,
}

/// Unit-norm rows.
fn normalize_rows(w: &Array) -> Result<Array, SaeError> {
    let norms = w.square()?.sum_axis(1, true)?.sqrt()?;
    Ok(w.divide(ops::maximum(&norms, Array::from_f32(1e-8))?)?)
}

/// `mask` of the top `k` positive values of each row of `pre` (values ≥ the k-th).
fn top_k_mask(pre: &Array, k: i32) -> Result<Array, mlx_rs::error::Exception> {
    let kth = topk_axis(pre, k, -1)?.min_axis(-1, true)?;
    let mask = pre.ge(&kth)?.logical_and(pre.gt(Array::from_f32(0.0))?)?;
    stop_gradient(mask.as_dtype(mlx_rs::Dtype::Float32)?)
}

/// Input normalization: center by the mean, scale by one constant.
#[derive(Debug, Clone)]
struct Normalizer {
    mean: Vec<f32>,
    scale: f32,
}

impl Normalizer {
    /// Mean vector and RMS norm of the centered rows, per dimension.
    fn fit(rows: &[f32], width: usize) -> Self {
        let n = (rows.len() / width).max(1) as f64;
        let mut mean = vec![0f64; width];
        for row in rows.chunks(width) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut squares = 0f64;
        for row in rows.chunks(width) {
            for (m, v) in mean.iter().zip(row) {
                squares += (*v as f64 - m).powi(2);
            }
        }
        let scale = (squares / n / width as f64).sqrt().max(1e-12) as f32;
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            scale,
        }
    }

    fn apply(&self, rows: &[f32], width: usize) -> Array {
        let normalized: Vec<f32> = rows
            .chunks(width)
            .flat_map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .map(|(v, m)| (v - m) / self.scale)
            })
            .collect();
        Array::from_slice(&normalized, &[(rows.len() / width) as i32, width as i32])
    }
}

/// Trainer state saved with each checkpoint, to resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resume {
    step: usize,
    tokens: usize,
    documents_read: usize,
    since_fired: Vec<u64>,
    mean: Vec<f32>,
    scale: f32,
    config: TrainConfig,
    hook: HookPoint,
}

impl Resume {
    /// Counts one optimizer step over `rows` rows: features that fired (`fired`, per
    /// feature) restart their dead clock, the others age by `rows` tokens.
    fn record_step(&mut self, fired: &[f32], rows: usize, documents_read: usize) {
        for (since, count) in self.since_fired.iter_mut().zip(fired) {
            *since = if *count > 0.0 {
                0
            } else {
                *since + rows as u64
            };
        }
        self.step += 1;
        self.tokens += rows;
        self.documents_read = documents_read;
    }
}

/// Everything about the finished run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Held-out metrics.
    pub metrics: EvalMetrics,
    /// Optimizer steps.
    pub steps: usize,
    /// Training tokens consumed.
    pub tokens: usize,
    /// Wall-clock seconds (this process).
    pub seconds: f64,
    /// The settings.
    pub config: TrainConfig,
}

/// What the trained SAE is, for its metadata.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The model's repo id or path.
    pub model: String,
    /// The model's resolved commit.
    pub model_commit: Option<String>,
    /// SHA-256 of the model's weights.
    pub model_weights_sha256: String,
    /// The corpus file.
    pub corpus: PathBuf,
    /// SHA-256 of the corpus file.
    pub corpus_sha256: String,
}

/// Where a training run's results go.
#[derive(Debug, Clone, Copy)]
pub struct TrainOutput<'a> {
    /// What the trained SAE is, for its metadata.
    pub provenance: &'a Provenance,
    /// The folder of checkpoints, resumed from when it holds one of the same settings.
    pub checkpoint_dir: &'a Path,
    /// The SAE's folder (mlxterp format).
    pub out: &'a Path,
}

/// Trains a TopK SAE on `hook` activations of `model` over `corpus` (JSONL): every
/// `holdout_every`-th document is held out for evaluation, the rest stream into training.
/// See [`train`].
pub fn train_on_corpus(
    model: &Transformer,
    tokenizer: &TextTokenizer,
    hook: HookPoint,
    corpus: &Path,
    config: &TrainConfig,
    output: TrainOutput<'_>,
    progress: &mut dyn FnMut(StepReport),
) -> Result<TrainReport, SaeError> {
    let mut training =
        ActivationStream::open(model, tokenizer, hook, corpus, Holdout::Train, config)?;
    let mut held_out =
        ActivationStream::open(model, tokenizer, hook, corpus, Holdout::Eval, config)?;
    train(&mut training, &mut held_out, hook, config, output, progress)
}

/// Trains a TopK SAE on rows from `training`, evaluates it on rows from `held_out`,
/// checkpoints into `output.checkpoint_dir` every `checkpoint_every` steps (resuming from
/// it when it holds a checkpoint of the same settings), and writes the final SAE to
/// `output.out` in mlxterp format with its provenance and metrics as metadata.
pub fn train(
    training: &mut dyn ActivationSource,
    held_out: &mut dyn ActivationSource,
    hook: HookPoint,
    config: &TrainConfig,
    output: TrainOutput<'_>,
    progress: &mut dyn FnMut(StepReport),
) -> Result<TrainReport, SaeError> {
    let started = Instant::now();
    let width = training.width();
    if config.k == 0 || config.k > config.d_sae || config.aux_k == 0 {
        return Err(SaeError::Invalid(format!(
            "k = {} and aux_k = {} must be between 1 and d_sae = {}",
            config.k, config.aux_k, config.d_sae
        )));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    random::seed(config.seed)?;
    let mut optimizer = adamw(config)?;
    let mut buffer: Vec<f32> = Vec::with_capacity(config.shuffle_buffer * width);
    let (mut params, normalizer, mut state) =
        match read_checkpoint(output.checkpoint_dir, config, hook, &mut optimizer)? {
            Some((params, state)) => {
                training.skip_to(state.documents_read)?;
                let normalizer = Normalizer {
                    mean: state.mean.clone(),
                    scale: state.scale,
                };
                (params, normalizer, state)
            }
            None => start_fresh(training, &mut buffer, config, hook)?,
        };
    let mut step_fn = nn::value_and_grad(sae_loss(config));
    let mut source_ended = false;
    while state.tokens < config.train_tokens {
        if buffer.len() < config.batch_size * width && !source_ended {
            source_ended = fill(training, &mut buffer, config.shuffle_buffer * width)?;
        }
        let available = buffer.len() / width;
        if available == 0 {
            break;
        }
        let rows = config
            .batch_size
            .min(available)
            .min(config.train_tokens - state.tokens);
        let batch = draw_rows(&mut buffer, &mut rng, rows, width);
        let x = normalizer.apply(&batch, width);
        let dead: Vec<bool> = state
            .since_fired
            .iter()
            .map(|&since| since as usize >= config.dead_after_tokens)
            .collect();
        let dead = Array::from_slice(&dead, &[config.d_sae as i32]);
        let (values, gradients) = step_fn(&mut params, (x, dead))?;
        optimizer.update(&mut params, gradients)?;
        *params.w_dec = normalize_rows(&params.w_dec)?;
        let mut to_eval: Vec<&Array> = params.parameters().flatten().into_values().collect();
        to_eval.extend(values.iter());
        mlx_rs::transforms::eval(to_eval)?;
        state.record_step(values[2].as_slice::<f32>(), rows, training.position());
        progress(StepReport {
            step: state.step,
            tokens: state.tokens,
            fvu: values[1].item_exact::<f32>(),
            dead_fraction: dead_fraction(&state.since_fired, config.dead_after_tokens),
        });
        if state.step % config.checkpoint_every.max(1) == 0 {
            write_checkpoint(output.checkpoint_dir, &params, &mut optimizer, &state)?;
        }
    }
    let sae = to_sae(&params, &normalizer, config, hook, output.provenance)?;
    ship(sae, held_out, config, &state, started, output)
}

/// A new run's parameters, normalizer and state: the normalizer is fitted on the first
/// shuffle buffer of `training` (left in `buffer`), decoder rows are random unit vectors
/// and the encoder starts as the decoder's transpose scaled by 0.1.
fn start_fresh(
    training: &mut dyn ActivationSource,
    buffer: &mut Vec<f32>,
    config: &TrainConfig,
    hook: HookPoint,
) -> Result<(Params, Normalizer, Resume), SaeError> {
    let width = training.width();
    fill(training, buffer, config.shuffle_buffer * width)?;
    if buffer.is_empty() {
        return Err(SaeError::Invalid(
            "the corpus yields no training tokens".into(),
        ));
    }
    let normalizer = Normalizer::fit(buffer, width);
    let w_dec = normalize_rows(&random::normal::<f32>(
        &[config.d_sae as i32, width as i32],
        None,
        None,
        None,
    )?)?;
    let params = Params {
        w_enc: Param::new(w_dec.t().multiply(Array::from_f32(0.1))?),
        b_enc: Param::new(Array::zeros::<f32>(&[config.d_sae as i32])?),
        w_dec: Param::new(w_dec),
        b_dec: Param::new(Array::zeros::<f32>(&[width as i32])?),
    };
    let state = Resume {
        step: 0,
        tokens: 0,
        documents_read: 0,
        since_fired: vec![0; config.d_sae],
        mean: normalizer.mean.clone(),
        scale: normalizer.scale,
        config: config.clone(),
        hook,
    };
    Ok((params, normalizer, state))
}

/// The training loss of a TopK SAE with the AuxK term: given parameters, a batch `x` and
/// the dead-feature mask, returns `[loss, fvu, per-feature firing counts]`.
fn sae_loss(
    config: &TrainConfig,
) -> impl FnMut(&mut Params, (Array, Array)) -> Result<Vec<Array>, mlx_rs::error::Exception> + use<>
{
    let k = config.k as i32;
    let aux_k = config.aux_k.min(config.d_sae) as i32;
    let aux_coefficient = config.aux_coefficient;
    move |params: &mut Params, (x, dead): (Array, Array)| {
        let pre = x
            .subtract(&*params.b_dec)?
            .matmul(&*params.w_enc)?
            .add(&*params.b_enc)?;
        let mask = top_k_mask(&pre, k)?;
        let z = pre.multiply(&mask)?;
        let x_hat = z.matmul(&*params.w_dec)?.add(&*params.b_dec)?;
        let error = x.subtract(&x_hat)?;
        let variance = x.subtract(x.mean_axis(0, true)?)?.square()?.sum(None)?;
        let fvu = error.square()?.sum(None)?.divide(&variance)?;
        // AuxK: the dead features' best guesses at what the live ones miss.
        let pre_dead = ops::select(&dead, &pre, Array::from_f32(f32::NEG_INFINITY))?;
        let aux_mask = top_k_mask(&pre_dead, aux_k)?;
        let residual = stop_gradient(&error)?;
        let residual_hat = pre.multiply(&aux_mask)?.matmul(&*params.w_dec)?;
        let aux = residual
            .subtract(&residual_hat)?
            .square()?
            .sum(None)?
            .divide(residual.square()?.sum(None)?.add(Array::from_f32(1e-12))?)?;
        let any_dead = stop_gradient(dead.any(None)?.as_dtype(mlx_rs::Dtype::Float32)?)?;
        let loss = fvu.add(
            aux.multiply(any_dead)?
                .multiply(Array::from_f32(aux_coefficient))?,
        )?;
        Ok(vec![loss, fvu, mask.sum_axis(0, None)?])
    }
}

/// Draws `rows` random rows of `width` values out of `buffer` (each row once: the drawn
/// row's place is filled by the last row).
fn draw_rows(buffer: &mut Vec<f32>, rng: &mut StdRng, rows: usize, width: usize) -> Vec<f32> {
    let mut batch = Vec::with_capacity(rows * width);
    for _ in 0..rows {
        let remaining = buffer.len() / width;
        let pick = rng.random_range(0..remaining);
        let last = remaining - 1;
        batch.extend_from_slice(&buffer[pick * width..(pick + 1) * width]);
        if pick != last {
            let (head, tail) = buffer.split_at_mut(last * width);
            head[pick * width..(pick + 1) * width].copy_from_slice(&tail[..width]);
        }
        buffer.truncate(last * width);
    }
    batch
}

/// Evaluates exactly what is shipped (the SAE as written and, with f16, rounded) on
/// `held_out`, then writes it to `output.out` with its provenance and metrics.
fn ship(
    sae: Sae,
    held_out: &mut dyn ActivationSource,
    config: &TrainConfig,
    state: &Resume,
    started: Instant,
    output: TrainOutput<'_>,
) -> Result<TrainReport, SaeError> {
    let dead_in_training = dead_fraction(&state.since_fired, config.dead_after_tokens);
    let dtype = if config.save_f16 {
        mlx_rs::Dtype::Float16
    } else {
        mlx_rs::Dtype::Float32
    };
    let shipped = tempfile::tempdir().map_err(|source| SaeError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let shipped_dir = shipped.path().join("sae");
    crate::formats::mlxterp::save(&sae, config.k, serde_json::Value::Null, dtype, &shipped_dir)?;
    let shipped_sae = crate::formats::mlxterp::load(&shipped_dir, "evaluation copy", None)?;
    let metrics = evaluate(held_out, config, &shipped_sae, dead_in_training)?;
    let report = TrainReport {
        metrics,
        steps: state.step,
        tokens: state.tokens,
        seconds: started.elapsed().as_secs_f64(),
        config: config.clone(),
    };
    let provenance = output.provenance;
    let metadata = serde_json::json!({
        "model_name": provenance.model,
        "model_commit": provenance.model_commit,
        "model_weights_sha256": provenance.model_weights_sha256,
        "corpus": provenance.corpus.display().to_string(),
        "corpus_sha256": provenance.corpus_sha256,
        "trained_by": format!("saeidx {}", env!("CARGO_PKG_VERSION")),
        "training": report,
        "excluded_positions": "the first position of every window (attention sink) and special tokens",
    });
    crate::formats::mlxterp::save(&sae, config.k, metadata, dtype, output.out)?;
    Ok(report)
}

fn adamw(config: &TrainConfig) -> Result<AdamW, SaeError> {
    AdamWBuilder::new(config.learning_rate)
        .weight_decay(0.0)
        .build()
        .map_err(|e| SaeError::Invalid(format!("optimizer settings: {e:?}")))
}

fn dead_fraction(since_fired: &[u64], dead_after: usize) -> f64 {
    let dead = since_fired
        .iter()
        .filter(|&&since| since as usize >= dead_after)
        .count();
    dead as f64 / since_fired.len().max(1) as f64
}

/// Tops `buffer` up to `capacity` values from `source`; returns whether the source ended.
fn fill(
    source: &mut dyn ActivationSource,
    buffer: &mut Vec<f32>,
    capacity: usize,
) -> Result<bool, SaeError> {
    while buffer.len() < capacity {
        match source.next_rows()? {
            Some(rows) => buffer.extend_from_slice(&rows),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// The SAE as saeidx encodes it: raw activations in, the normalization recorded as the
/// input transform.
fn to_sae(
    params: &Params,
    normalizer: &Normalizer,
    config: &TrainConfig,
    hook: HookPoint,
    provenance: &Provenance,
) -> Result<Sae, SaeError> {
    let width = normalizer.mean.len();
    let info = SaeInfo {
        format: "mlxterp".into(),
        architecture: "SAE".into(),
        d_in: width,
        d_sae: config.d_sae,
        recorded_hook: Some(hook.name()),
        hook: Some(hook),
        recorded_model: Some(provenance.model.clone()),
        source: "trained by saeidx".into(),
        sha256: String::new(),
        trained: TrainedOn::default(),
    };
    Sae::new(
        info,
        ActivationRule::TopK {
            k: config.k,
            ties: TopKTies::KeepAll,
        },
        InputTransform {
            standardize: Some((
                Array::from_slice(&normalizer.mean, &[width as i32]),
                Array::from_slice(&vec![normalizer.scale; width], &[width as i32]),
            )),
            subtract_decoder_bias: true,
            ..InputTransform::default()
        },
        params.w_enc.as_ref().clone(),
        params.b_enc.as_ref().clone(),
        params.w_dec.as_ref().clone(),
        params.b_dec.as_ref().clone(),
    )
}

/// Held-out FVU (raw space), L0 and dead fraction.
fn evaluate(
    held_out: &mut dyn ActivationSource,
    config: &TrainConfig,
    sae: &Sae,
    dead_in_training: f64,
) -> Result<EvalMetrics, SaeError> {
    let width = held_out.width();
    let mut rows = Vec::new();
    fill(held_out, &mut rows, config.eval_tokens * width)?;
    rows.truncate(config.eval_tokens * width);
    let n = rows.len() / width;
    if n == 0 {
        return Err(SaeError::Invalid(
            "no held-out tokens to evaluate: the corpus needs more documents".into(),
        ));
    }
    let mut fired = vec![false; config.d_sae];
    let (mut error, mut variance, mut active) = (0f64, 0f64, 0usize);
    let mut mean = vec![0f64; width];
    for row in rows.chunks(width) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64 / n as f64;
        }
    }
    for chunk in rows.chunks(4096 * width) {
        let x = Array::from_slice(chunk, &[(chunk.len() / width) as i32, width as i32]);
        let codes = sae.encode(&x)?;
        let x_hat = sae.decode(&codes)?;
        x_hat.eval()?;
        for (original, reconstructed) in chunk
            .chunks(width)
            .zip(x_hat.as_slice::<f32>().chunks(width))
        {
            for ((v, r), m) in original.iter().zip(reconstructed).zip(&mean) {
                error += (*v as f64 - *r as f64).powi(2);
                variance += (*v as f64 - m).powi(2);
            }
        }
        active += codes.nonzeros();
        for feature in &codes.features {
            fired[*feature as usize] = true;
        }
    }
    Ok(EvalMetrics {
        fvu: error / variance,
        l0: active as f64 / n as f64,
        dead_on_eval: fired.iter().filter(|f| !**f).count() as f64 / config.d_sae as f64,
        dead_in_training,
        tokens: n,
    })
}

const CHECKPOINT_PARAMS: &str = "params.safetensors";
const CHECKPOINT_OPTIMIZER: &str = "optimizer.safetensors";
const CHECKPOINT_STATE: &str = "state.json";

/// Saves parameters, optimizer state and trainer state into `dir`, replacing the previous
/// checkpoint atomically.
fn write_checkpoint(
    dir: &Path,
    params: &Params,
    optimizer: &mut AdamW,
    state: &Resume,
) -> Result<(), SaeError> {
    let staged = StagedDir::new(dir)?;
    let tensors: Vec<(String, Array)> = params
        .parameters()
        .flatten()
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    let write_error =
        |e: mlx_rs::error::IoError| SaeError::Invalid(format!("cannot write a checkpoint: {e}"));
    Array::save_safetensors(tensors, None, staged.path().join(CHECKPOINT_PARAMS))
        .map_err(write_error)?;
    optimizer
        .state_mut()
        .save_safetensors(staged.path().join(CHECKPOINT_OPTIMIZER))
        .map_err(write_error)?;
    let state_path = staged.path().join(CHECKPOINT_STATE);
    std::fs::write(
        &state_path,
        serde_json::to_vec(state).expect("serializable"),
    )
    .map_err(|source| SaeError::Io {
        path: state_path,
        source,
    })?;
    staged.publish()?;
    Ok(())
}

/// Reads the checkpoint in `dir` into parameters, optimizer state and trainer state;
/// `None` when there is none. A checkpoint of other settings is an error.
fn read_checkpoint(
    dir: &Path,
    config: &TrainConfig,
    hook: HookPoint,
    optimizer: &mut AdamW,
) -> Result<Option<(Params, Resume)>, SaeError> {
    let state_path = dir.join(CHECKPOINT_STATE);
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state: Resume = serde_json::from_str(&text)
        .map_err(|e| SaeError::Invalid(format!("{}: {e}", state_path.display())))?;
    if state.config != *config || state.hook != hook {
        return Err(SaeError::Invalid(format!(
            "{} holds a run with other settings or another hook: choose another \
             --checkpoint-dir or delete it",
            dir.display()
        )));
    }
    let read_error = |e: mlx_rs::error::IoError| {
        SaeError::Invalid(format!("unreadable checkpoint in {}: {e}", dir.display()))
    };
    let mut tensors = Array::load_safetensors(dir.join(CHECKPOINT_PARAMS)).map_err(read_error)?;
    let mut take = |key: &str| {
        tensors.remove(key).map(Param::new).ok_or_else(|| {
            SaeError::Invalid(format!("the checkpoint in {} has no {key}", dir.display()))
        })
    };
    let params = Params {
        w_enc: take("w_enc")?,
        b_enc: take("b_enc")?,
        w_dec: take("w_dec")?,
        b_dec: take("b_dec")?,
    };
    optimizer
        .state_mut()
        .load_safetensors(dir.join(CHECKPOINT_OPTIMIZER))
        .map_err(read_error)?;
    Ok(Some((params, state)))
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;
    use crate::formats::mlxterp;

    /// Rows built from a hidden sparse dictionary: `offset + Σ_{4 atoms} magnitude · atom`
    /// plus a little noise. A good SAE recovers them almost exactly.
    struct Synthetic {
        dictionary: Vec<Vec<f32>>,
        offset: Vec<f32>,
        rng: StdRng,
        rows_per_call: usize,
        produced: usize,
        limit: usize,
    }

    impl Synthetic {
        fn new(seed: u64, limit: usize) -> Self {
            let mut rng = StdRng::seed_from_u64(42);
            let dictionary = (0..64)
                .map(|_| {
                    let atom: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let norm = atom.iter().map(|v| v * v).sum::<f32>().sqrt();
                    atom.into_iter().map(|v| v / norm).collect()
                })
                .collect();
            let offset = (0..32).map(|i| i as f32 * 0.5).collect();
            Self {
                dictionary,
                offset,
                rng: StdRng::seed_from_u64(seed),
                rows_per_call: 512,
                produced: 0,
                limit,
            }
        }
    }

    impl ActivationSource for Synthetic {
        fn width(&self) -> usize {
            32
        }

        fn next_rows(&mut self) -> Result<Option<Vec<f32>>, SaeError> {
            if self.produced >= self.limit {
                return Err(mlx_rs::error::Exception::custom("simulated crash").into());
            }
            let mut rows = Vec::with_capacity(self.rows_per_call * 32);
            for _ in 0..self.rows_per_call {
                let mut row = self.offset.clone();
                for _ in 0..4 {
                    let atom = &self.dictionary[self.rng.random_range(0..64)];
                    let magnitude = self.rng.random_range(1.0..3.0f32);
                    for (r, a) in row.iter_mut().zip(atom) {
                        *r += magnitude * a;
                    }
                }
                for r in row.iter_mut() {
                    *r += self.rng.random_range(-0.01..0.01f32);
                }
                rows.extend(row);
            }
            self.produced += self.rows_per_call;
            Ok(Some(rows))
        }

        fn position(&self) -> usize {
            self.produced
        }

        fn skip_to(&mut self, position: usize) -> Result<(), SaeError> {
            while self.produced < position {
                self.next_rows()?;
            }
            Ok(())
        }
    }

    fn config(train_tokens: usize) -> TrainConfig {
        TrainConfig {
            d_sae: 128,
            k: 4,
            learning_rate: 3e-3,
            batch_size: 256,
            train_tokens,
            eval_tokens: 2048,
            aux_k: 16,
            dead_after_tokens: 5_000,
            shuffle_buffer: 4096,
            checkpoint_every: 50,
            ..TrainConfig::default()
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            model: "synthetic".into(),
            model_commit: None,
            model_weights_sha256: "0".repeat(64),
            corpus: "synthetic".into(),
            corpus_sha256: "0".repeat(64),
        }
    }

    fn run(config: &TrainConfig, checkpoints: &Path, out: &Path) -> TrainReport {
        let hook = HookPoint::parse("blocks.1.hook_resid_post", None).unwrap();
        let mut steps = 0;
        train(
            &mut Synthetic::new(1, usize::MAX),
            &mut Synthetic::new(2, usize::MAX),
            hook,
            config,
            TrainOutput {
                provenance: &provenance(),
                checkpoint_dir: checkpoints,
                out,
            },
            &mut |_| steps += 1,
        )
        .unwrap()
    }

    #[test]
    fn recovers_a_sparse_dictionary_and_saves_an_mlxterp_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sae");
        let report = run(&config(60_000), &dir.path().join("checkpoints"), &out);
        assert!(report.metrics.fvu < 0.1, "FVU {}", report.metrics.fvu);
        assert!(
            report.metrics.l0 <= 4.0 + 1e-9 && report.metrics.l0 > 3.0,
            "L0 {}",
            report.metrics.l0
        );
        assert_eq!(report.tokens, 60_000);

        // The saved folder encodes like the trained SAE and carries its provenance.
        let loaded = mlxterp::load(&out, "test", None).unwrap();
        assert_eq!((loaded.info.d_in, loaded.info.d_sae), (32, 128));
        assert_eq!(loaded.info.hook.unwrap().name(), "blocks.1.hook_resid_post");
        assert_eq!(loaded.info.recorded_model.as_deref(), Some("synthetic"));
        let rows = Synthetic::new(3, usize::MAX).next_rows().unwrap().unwrap();
        let x = Array::from_slice(&rows, &[512, 32]);
        let codes = loaded.encode(&x).unwrap();
        let x_hat = loaded.decode(&codes).unwrap();
        x_hat.eval().unwrap();
        let (mut error, mut total) = (0f64, 0f64);
        for (a, b) in rows.iter().zip(x_hat.as_slice::<f32>()) {
            error += ((a - b) as f64).powi(2);
            total += (*a as f64).powi(2);
        }
        assert!(error / total < 0.01, "relative error {}", error / total);
        let config_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config_json["class"], "SAE");
        assert_eq!(config_json["k"], 4);
        assert_eq!(config_json["metadata"]["layer"], 1);
        assert_eq!(config_json["metadata"]["component"], "residual");
        assert!(
            config_json["metadata"]["training"]["metrics"]["fvu"]
                .as_f64()
                .unwrap()
                < 0.1
        );
    }

    #[test]
    fn resumes_from_its_checkpoint_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let hook = HookPoint::parse("blocks.1.hook_resid_post", None).unwrap();
        let config = config(40_000);
        // The source dies after 30,000 rows: steps up to 100 are checkpointed.
        let error = train(
            &mut Synthetic::new(1, 30_000),
            &mut Synthetic::new(2, usize::MAX),
            hook,
            &config,
            TrainOutput {
                provenance: &provenance(),
                checkpoint_dir: &checkpoints,
                out: &dir.path().join("crashed"),
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(error.to_string().contains("simulated crash"), "{error}");
        assert!(!dir.path().join("crashed").exists(), "no half-written SAE");
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(checkpoints.join(CHECKPOINT_STATE)).unwrap(),
        )
        .unwrap();
        assert_eq!(state["step"], 100);

        // Other settings against that checkpoint are refused.
        let error = train(
            &mut Synthetic::new(1, usize::MAX),
            &mut Synthetic::new(2, usize::MAX),
            hook,
            &TrainConfig {
                k: 5,
                ..config.clone()
            },
            TrainOutput {
                provenance: &provenance(),
                checkpoint_dir: &checkpoints,
                out: &dir.path().join("other"),
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(error.to_string().contains("other settings"), "{error}");

        // The same settings continue at step 101 and finish the 40,000 tokens.
        let mut steps = Vec::new();
        let report = train(
            &mut Synthetic::new(1, usize::MAX),
            &mut Synthetic::new(2, usize::MAX),
            hook,
            &config,
            TrainOutput {
                provenance: &provenance(),
                checkpoint_dir: &checkpoints,
                out: &dir.path().join("resumed"),
            },
            &mut |report| steps.push(report.step),
        )
        .unwrap();
        assert_eq!(steps.first(), Some(&101));
        assert_eq!(report.tokens, 40_000);
        assert!(report.metrics.fvu < 0.2, "FVU {}", report.metrics.fvu);
        assert!(dir.path().join("resumed/weights.safetensors").is_file());
    }
}
