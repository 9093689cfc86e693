//! The model and SAE of an index, loaded, and texts run through them.

use std::path::Path;

use mlx_rs::Array;
use saeidx_activations::{Batcher, Exclusions, TokenizedDocument, extract};
use saeidx_corpus::{tokenizer::TextTokenizer, window::WindowPolicy};
use saeidx_format::{manifest::Manifest, tables::round_to_half_precision};
use saeidx_hub::HubSettings;
use saeidx_model::{
    checkpoint::Checkpoint,
    files::{self, ModelSource},
    hook::HookPoint,
    transformer::{Transformer, WeightStorage},
};
use saeidx_query::{AnalyzedText, AnalyzedToken};
use saeidx_sae::{formats, sae::Sae};

use crate::{LiveError, LiveSources, sources::load_index_sae};

/// One token of a live text with its codes.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveToken {
    /// Position in the text's tokens.
    pub position: u32,
    /// Token id.
    pub token: u32,
    /// Byte range of the token in the text.
    pub span: std::ops::Range<usize>,
    /// A special token (BOS, ...).
    pub special: bool,
    /// An attention-sink position (the first of a model window).
    pub sink: bool,
    /// Active features, strongest first (values rounded as the index stores them).
    pub features: Vec<u32>,
    /// Their values.
    pub values: Vec<f32>,
}

/// `text`'s live tokens as the query layer ranks them ([`AnalyzedText`]):
/// each token's piece runs from the end of the previous piece to the end of the token, so
/// the pieces concatenate to the text (a character split over two tokens shows once).
pub fn analyzed_text(text: &str, tokens: Vec<LiveToken>) -> AnalyzedText {
    let mut cursor = 0;
    let tokens = tokens
        .into_iter()
        .map(|t| {
            let end = t.span.end.max(cursor);
            let piece = text.get(cursor..end).unwrap_or_default().to_string();
            cursor = end;
            AnalyzedToken {
                position: t.position,
                text: piece,
                features: t.features,
                values: t.values,
                special: t.special,
                sink: t.sink,
            }
        })
        .collect();
    AnalyzedText {
        text: text.to_string(),
        tokens,
    }
}

/// The model files the manifest records (or `sources.model`), offline-first, checked
/// byte for byte against the index: weights SHA-256 and tokenizer SHA-256.
pub(crate) fn index_model_files(
    manifest: &Manifest,
    sources: &LiveSources,
    settings: &HubSettings,
) -> Result<files::ModelFiles, LiveError> {
    let model = sources.model.as_deref();
    let job = &manifest.job;
    // Where to look, in order: the recorded commit in the local cache (immutable, so
    // no network is needed, as huggingface_hub does for commit revisions), the
    // recorded revision in the cache (another machine's cache may name the same
    // weights by another commit), then the Hub. The weights' SHA-256 decides.
    let name = model.unwrap_or(&job.model.source);
    let cached = settings.cache_only();
    let recorded = if model.is_some() {
        vec![None]
    } else {
        vec![job.model.commit.clone(), job.model.revision.clone()]
    };
    let mut found = None;
    for revision in &recorded {
        if let Ok(files) = files::resolve(&ModelSource::parse(name, revision.clone()), &cached) {
            found = Some(files);
            break;
        }
    }
    let files = match found {
        Some(files) => files,
        None => {
            let revision = recorded.last().cloned().flatten();
            files::resolve(&ModelSource::parse(name, revision), settings)?
        }
    };
    if files.weights_sha256()? != job.model.weights_sha256 {
        return Err(LiveError::Mismatch {
            what: "model",
            detail: "weights differ from the index's",
        });
    }
    let tokenizer_sha = saeidx_format::checksum::sha256_file(&files.tokenizer)
        .map_err(LiveError::io(&files.tokenizer))?;
    if tokenizer_sha != job.tokenizer.sha256 {
        return Err(LiveError::Mismatch {
            what: "model",
            detail: "tokenizer differs from the index's",
        });
    }
    Ok(files)
}

/// The model and SAE an index was built with, loaded for live texts.
pub struct LiveAnalyzer {
    model: Transformer,
    tokenizer: TextTokenizer,
    hook: HookPoint,
    sae: Sae,
    window: WindowPolicy,
    batch_tokens: usize,
    prepend_bos: Option<u32>,
}

impl LiveAnalyzer {
    /// Loads the model and SAE that the manifest of the index in `index_dir` records
    /// (or those `sources` names) and checks that they are byte for byte the ones the
    /// index was built with: weights SHA-256, tokenizer SHA-256, SAE SHA-256.
    pub fn for_index(
        manifest: &Manifest,
        index_dir: &Path,
        sources: &LiveSources,
        settings: &HubSettings,
    ) -> Result<Self, LiveError> {
        let job = &manifest.job;
        let name = sources.model.as_deref().unwrap_or(&job.model.source);
        let files = index_model_files(manifest, sources, settings)?;
        let hook = HookPoint::parse(&job.hook, None).map_err(saeidx_model::ModelError::from)?;
        let checkpoint = Checkpoint::load(files.clone())?;
        let config = checkpoint.config.clone();
        let model = Transformer::from_checkpoint(
            checkpoint,
            Some(hook.layer),
            WeightStorage::for_default_device(),
        )?;
        let tokenizer = TextTokenizer::from_file(&files.tokenizer)?;
        let mut sae = load_index_sae(&job.sae, index_dir, &sources.sae, settings)?;
        // The same fitting to the model as the index job (e.g. centring the inputs of an
        // SAE trained on a TransformerLens-processed model); the checks passed then.
        formats::prepare(&mut sae, &config, name, hook, true)?;
        let own_added = tokenizer.added_ids()?;
        let prepend_bos = job
            .tokenizer
            .added_ids
            .first()
            .copied()
            .filter(|first| own_added.first() != Some(first));
        let window = WindowPolicy::new(job.window.length, job.window.overlap)?;
        Ok(Self {
            model,
            tokenizer,
            hook,
            sae,
            window,
            batch_tokens: job.batch_tokens,
            prepend_bos,
        })
    }

    /// The SAE's number of features.
    pub fn d_sae(&self) -> usize {
        self.sae.info.d_sae
    }

    /// Runs `text` through the model and SAE, as the query layer ranks it.
    pub fn analyze_text(&self, text: &str) -> Result<AnalyzedText, LiveError> {
        Ok(analyzed_text(text, self.analyze(text)?))
    }

    /// Runs `text` through the model and SAE exactly as the index job runs a document.
    pub fn analyze(&self, text: &str) -> Result<Vec<LiveToken>, LiveError> {
        let tokens = self.tokenizer.encode_document(text, self.prepend_bos)?;
        let sinks = self.window.sink_positions(tokens.ids.len());
        let mut out: Vec<LiveToken> = tokens
            .ids
            .iter()
            .zip(&tokens.spans)
            .zip(&tokens.special)
            .enumerate()
            .map(|(position, ((id, span), special))| LiveToken {
                position: position as u32,
                token: *id,
                span: span.clone(),
                special: *special,
                sink: sinks.contains(&position),
                features: Vec::new(),
                values: Vec::new(),
            })
            .collect();
        let document = TokenizedDocument {
            index: 0,
            ids: tokens.ids,
            special: tokens.special,
        };
        let mut batcher = Batcher::new(self.window, self.batch_tokens);
        batcher.push(&document);
        while let Some(batch) = batcher.next_any() {
            let extracted = extract(
                &self.model,
                self.hook,
                &batch,
                Exclusions {
                    window_start: false,
                    special_tokens: false,
                },
            )?;
            let n = extracted.position.len();
            if n == 0 {
                continue;
            }
            let x = Array::from_slice(&extracted.values, &[n as i32, extracted.width as i32]);
            let codes = self.sae.encode(&x)?;
            for t in 0..n {
                let mut active: Vec<(u32, f32)> = codes
                    .token(t)
                    .map(|(feature, value)| (feature, round_to_half_precision(value)))
                    .collect();
                active.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let token = &mut out[extracted.position[t] as usize];
                (token.features, token.values) = active.into_iter().unzip();
            }
        }
        Ok(out)
    }
}
