//! The index job's pipeline: three threads joined by bounded channels.
//!
//! 1. **Reader**: reads documents, numbers them, cuts parts ([`Partitioner`]), skips
//!    parts that belong to another shard or are already done, and tokenizes the rest
//!    (documents in parallel with rayon).
//! 2. **Compute** (the calling thread, which owns the MLX model): windows and batches
//!    each part's documents, runs the model to the hook, encodes with the SAE, and turns
//!    codes into rows in the activations table's order (doc, position, then
//!    `feature_sort_key`).
//! 3. **Writer**: writes the part's three Parquet files (encoding and zstd happen here,
//!    overlapping the next batch's compute), flushes, renames and records the part.
//!
//! Channels hold at most [`PARTS_AHEAD`] tokenized parts and [`BATCHES_AHEAD`] batches
//! of rows, so memory is bounded by the part size, not the corpus size.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
    time::Instant,
};

use mlx_rs::Array;
use rayon::prelude::*;
use saeidx_activations::{Batcher, Exclusions, TokenizedDocument, extract};
use saeidx_corpus::{
    CorpusError, documents::Document, tokenizer::TextTokenizer, window::WindowPolicy,
};
use saeidx_format::{
    manifest::{Counts, FORMAT_NAME, FORMAT_VERSION, JobSpec, Manifest, PartRecord, ShardRecord},
    metadata::MetadataColumn,
    tables::{ActivationRows, DocumentRows, Table, TableWriter, TokenRows},
};
use saeidx_model::{hook::HookPoint, transformer::Transformer};
use saeidx_sae::sae::Sae;

use crate::{
    IndexError,
    parts::{Part, Partitioner, Shard},
    workdir::WorkDir,
};

/// Tokenized parts the reader may prepare ahead of the compute thread.
pub const PARTS_AHEAD: usize = 1;
/// Batches of rows the compute thread may hand to the writer ahead of it.
pub const BATCHES_AHEAD: usize = 4;

/// A source of documents in corpus order.
pub trait DocumentSource: Iterator<Item = Result<Document, CorpusError>> + Send {
    /// Bad records skipped so far (under a skip policy).
    fn skipped(&self) -> u64;
}

/// What computes activations: the model, its tokenizer, the hook and the SAE.
pub struct Engine<'a> {
    /// The model (loaded up to the hook's layer).
    pub model: &'a Transformer,
    /// Its tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// The hook point.
    pub hook: HookPoint,
    /// The SAE.
    pub sae: &'a Sae,
    /// A BOS id to put before every document that does not start with it.
    pub prepend_bos: Option<u32>,
}

/// Progress of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A work folder left by a different job (an interrupted run of another job file,
    /// or of this one before its corpus was corrected) was discarded: the run starts
    /// over. It never mixes parts of different jobs.
    StartedOver {
        /// What differed.
        reason: String,
    },
    /// A part was skipped: already done (resumed) or another shard's.
    PartSkipped {
        /// Its text bytes.
        text_bytes: u64,
    },
    /// A batch went through model and SAE.
    Batch {
        /// Tokens in it.
        tokens: u64,
        /// Nonzero activations.
        nonzeros: u64,
        /// Its share of the part's text bytes (the part's bytes spread over its
        /// batches by tokens, so progress moves within a single large document).
        text_bytes: u64,
    },
    /// A part's documents finished compute.
    PartComputed {
        /// Its text bytes not yet reported by its batches.
        text_bytes: u64,
    },
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The published index folder.
    pub destination: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Parts computed by this run.
    pub computed_parts: usize,
    /// Parts found done from an earlier, interrupted run.
    pub resumed_parts: usize,
    /// The destination already held this exact index: nothing was done.
    pub up_to_date: bool,
}

/// Where the output of `shard` of a job writing to `destination` goes: the destination
/// itself for a whole run, `DEST.shards/I-of-N` for a shard.
pub fn shard_destination(destination: &Path, shard: Shard) -> PathBuf {
    if shard == Shard::WHOLE {
        return destination.to_path_buf();
    }
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    destination
        .with_file_name(format!("{name}.shards"))
        .join(format!("{}-of-{}", shard.index, shard.count))
}

/// A part ready for compute.
struct TokenizedPart {
    part: u32,
    first_doc: u32,
    text_bytes: u64,
    documents: Vec<TokenizedDocument>,
    document_rows: DocumentRows,
    token_rows: TokenRows,
}

/// How the reader turns texts into the token ids the model sees.
#[derive(Clone, Copy)]
struct Tokenization<'a> {
    tokenizer: &'a TextTokenizer,
    window: WindowPolicy,
    prepend_bos: Option<u32>,
}

/// What the reader sends the compute thread.
enum FromReader {
    /// A part to compute.
    Part(Box<TokenizedPart>),
    /// A part skipped (done earlier, or another shard's), for progress.
    Skipped { text_bytes: u64 },
}

/// What the reader found in the whole corpus.
struct ReadTotals {
    documents: u64,
    parts: u32,
    skipped: u64,
}

enum ToWriter {
    Start(Box<TokenizedPartFiles>),
    Rows(ActivationRows),
    End,
}

struct TokenizedPartFiles {
    part: u32,
    first_doc: u32,
    documents: DocumentRows,
    tokens: TokenRows,
}

/// Where and how a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Which shard this process indexes ([`Shard::WHOLE`] for all).
    pub shard: Shard,
    /// Replace an index of a different job at the destination. Without it such an index
    /// is an error: appending is not supported, and a different corpus, model or SAE
    /// must never be mixed into (or silently swapped for) an existing index (an
    /// incremental run goes through [`crate::append`]).
    pub replace: bool,
    /// The number of the first document (0 for an index; the index's next number for
    /// a segment appended to it).
    pub first_doc: u32,
    /// How the query files are built at the end (every run's output, a shard's too: it
    /// is a segment of the index).
    pub query_build: saeidx_query::BuildOptions,
    /// The number of parts the whole corpus is cut into ([`crate::parts::count_parts`]):
    /// a shard needs it to know its block of parts ([`Shard::parts`]); `None` for
    /// [`Shard::WHOLE`].
    pub corpus_parts: Option<u32>,
}

impl RunOptions {
    /// The parts this run indexes.
    fn block(&self) -> Result<std::ops::Range<u32>, IndexError> {
        match (self.corpus_parts, self.shard == Shard::WHOLE) {
            (_, true) => Ok(0..u32::MAX),
            (Some(parts), false) => Ok(self.shard.parts(parts)),
            (None, false) => Err(IndexError::Merge(format!(
                "shard {} needs the corpus's number of parts (parts::count_parts)",
                self.shard
            ))),
        }
    }
}

/// Indexes the documents of `source` into `destination` (or its shard folder), resuming
/// an interrupted run of the same job; see the module docs.
pub fn run(
    engine: &Engine<'_>,
    job: &JobSpec,
    source: impl DocumentSource,
    destination: &Path,
    options: RunOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<RunSummary, IndexError> {
    let started = Instant::now();
    let shard = options.shard;
    let block = options.block()?;
    let shard_record = (shard != Shard::WHOLE).then_some(ShardRecord {
        index: shard.index,
        count: shard.count,
    });
    let destination = shard_destination(destination, shard);
    let _lock = saeidx_format::lock::OutputLock::acquire(&destination)?;
    if let Some(up_to_date) = check_existing(&destination, job, shard_record, options.replace)? {
        return Ok(up_to_date);
    }
    let window =
        WindowPolicy::new(job.window.length, job.window.overlap).map_err(IndexError::Window)?;
    let work = WorkDir::open(&destination, job, shard_record)?;
    if let Some(reason) = work.started_over() {
        on_event(Event::StartedOver {
            reason: reason.to_string(),
        });
    }
    let done = work.completed_parts()?;
    let resumed_parts = done.len();
    let mut timings = BTreeMap::new();

    let (part_tx, part_rx) = sync_channel::<FromReader>(PARTS_AHEAD);
    let (row_tx, row_rx) = sync_channel::<ToWriter>(BATCHES_AHEAD);
    let (totals, new_parts, compute_times) = std::thread::scope(|scope| {
        let done_parts: Vec<u32> = done.keys().copied().collect();
        let tokenization = Tokenization {
            tokenizer: engine.tokenizer,
            window,
            prepend_bos: engine.prepend_bos,
        };
        let owned = (block.clone(), options.first_doc);
        let reader = scope
            .spawn(move || read_parts(source, &tokenization, job, owned, &done_parts, part_tx));
        let writer = scope.spawn(|| write_parts(&work, &job.corpus.metadata, row_rx));
        let computed = compute_parts(engine, job, window, part_rx, row_tx, on_event);
        let read = reader.join().map_err(|_| IndexError::Thread("reader"));
        let written = writer.join().map_err(|_| IndexError::Thread("writer"));
        // The first failure in data-flow order explains the others (a closed channel).
        let totals = read??;
        let (records, write_seconds) = written??;
        let compute_times = computed?;
        Ok::<_, IndexError>((totals, records, (compute_times, write_seconds)))
    })?;
    if totals.documents == 0 {
        let described = describe_empty(job, totals.skipped);
        work.discard()?;
        return Err(IndexError::EmptyCorpus(described));
    }
    let ((waiting_s, model_s, sae_s), write_s) = (compute_times.0, compute_times.1);
    let computed_parts = new_parts.len();
    let parts = collect_parts(
        done,
        new_parts,
        &totals,
        (shard, block, options.corpus_parts),
    )
    .map_err(|reason| IndexError::Corrupt {
        path: work.path().to_path_buf(),
        reason,
    })?;
    let counts = Counts::of_parts(&parts, totals.skipped);
    timings.insert("wait_for_reader_s".into(), waiting_s);
    timings.insert("model_s".into(), model_s);
    timings.insert("sae_s".into(), sae_s);
    timings.insert("write_s".into(), write_s);
    timings.insert("wall_s".into(), started.elapsed().as_secs_f64());
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        saeidx_version: env!("CARGO_PKG_VERSION").into(),
        job: job.clone(),
        shard: shard_record,
        corpus_parts: u64::from(totals.parts),
        counts,
        parts,
        timings,
    };
    manifest
        .check_consistency()
        .map_err(|reason| IndexError::Corrupt {
            path: work.path().to_path_buf(),
            reason,
        })?;
    let destination = work.publish(&manifest, &options.query_build)?;
    Ok(RunSummary {
        destination,
        manifest,
        computed_parts,
        resumed_parts,
        up_to_date: false,
    })
}

/// The summary of an up-to-date index of this job at `destination`, `None` when there
/// is nothing there (or `replace` lets the run rebuild it), or the error that another
/// job's index is there.
fn check_existing(
    destination: &Path,
    job: &JobSpec,
    shard_record: Option<ShardRecord>,
    replace: bool,
) -> Result<Option<RunSummary>, IndexError> {
    let Ok(existing) = Manifest::read(destination) else {
        return Ok(None);
    };
    if existing.job == *job && existing.shard == shard_record {
        return Ok(Some(RunSummary {
            manifest: existing,
            destination: destination.to_path_buf(),
            computed_parts: 0,
            resumed_parts: 0,
            up_to_date: true,
        }));
    }
    if replace {
        return Ok(None);
    }
    Err(IndexError::OtherJob {
        path: destination.to_path_buf(),
        reason: format!(
            "{}; appending to an index is not supported: pass --replace to rebuild it with this job",
            crate::workdir::describe_difference(&existing.job, job, existing.shard, shard_record)
        ),
    })
}

/// The parts done earlier and now, in order, checked to be exactly the shard's parts and
/// (for a whole index) to hold every document the reader read.
fn collect_parts(
    done: BTreeMap<u32, PartRecord>,
    new_parts: Vec<PartRecord>,
    totals: &ReadTotals,
    (shard, block, counted): (Shard, std::ops::Range<u32>, Option<u32>),
) -> Result<Vec<PartRecord>, String> {
    if let Some(counted) = counted.filter(|_| shard != Shard::WHOLE)
        && counted != totals.parts
    {
        return Err(format!(
            "the corpus was cut into {} parts, but {counted} when they were counted before the run (did the corpus change while indexing?)",
            totals.parts
        ));
    }
    let mut parts = done;
    for record in new_parts {
        parts.insert(record.part, record);
    }
    let expected: Vec<u32> = (0..totals.parts).filter(|p| block.contains(p)).collect();
    let found: Vec<u32> = parts.keys().copied().collect();
    if found != expected {
        return Err(format!(
            "parts {found:?} were produced where {expected:?} were expected (did the corpus change while indexing?)"
        ));
    }
    let parts: Vec<PartRecord> = parts.into_values().collect();
    let documents: u64 = parts.iter().map(|part| part.documents).sum();
    if shard == Shard::WHOLE && documents != totals.documents {
        return Err(format!(
            "the parts hold {documents} documents but the corpus has {}",
            totals.documents
        ));
    }
    Ok(parts)
}

/// What an empty run read, for its error message.
fn describe_empty(job: &JobSpec, skipped: u64) -> String {
    let corpus = &job.corpus;
    let mut what = format!(
        "{} corpus file(s) in {}",
        corpus.files.len(),
        corpus.sources.join(", ")
    );
    if skipped > 0 {
        what.push_str(&format!(", {skipped} bad records skipped"));
    }
    if let Some(limit) = corpus.max_documents {
        what.push_str(&format!(", max_documents = {limit}"));
    }
    what
}

/// Spreads a part's text bytes over its batches in proportion to their tokens, for
/// progress within a part (a single large document is a part of its own).
#[derive(Debug)]
pub(crate) struct PartProgress {
    text_bytes: u64,
    tokens: u64,
    done: u64,
    reported: u64,
}

impl PartProgress {
    /// A part of `text_bytes` bytes of text and `tokens` tokens.
    pub(crate) fn new(text_bytes: u64, tokens: u64) -> Self {
        Self {
            text_bytes,
            tokens,
            done: 0,
            reported: 0,
        }
    }

    /// The bytes `tokens` more computed tokens stand for.
    pub(crate) fn advance(&mut self, tokens: u64) -> u64 {
        self.done = self.done.saturating_add(tokens).min(self.tokens);
        let due = if self.tokens == 0 {
            0
        } else {
            (u128::from(self.text_bytes) * u128::from(self.done) / u128::from(self.tokens)) as u64
        };
        let step = due.saturating_sub(self.reported);
        self.reported = self.reported.max(due);
        step
    }

    /// The bytes not reported yet (all of them, once the part is done).
    pub(crate) fn finish(self) -> u64 {
        self.text_bytes.saturating_sub(self.reported)
    }
}

/// The reader thread: returns the corpus totals.
fn read_parts(
    source: impl DocumentSource,
    tokenization: &Tokenization<'_>,
    job: &JobSpec,
    (block, first_doc): (std::ops::Range<u32>, u32),
    done: &[u32],
    parts: SyncSender<FromReader>,
) -> Result<ReadTotals, IndexError> {
    let mut partitioner = Partitioner::starting_at(job.corpus.part_bytes, first_doc);
    let limit = job.corpus.max_documents.unwrap_or(u64::MAX);
    let mut source = source;
    // Returns false once the compute thread has stopped (its error is the one reported).
    let handle = |part: Part| -> Result<bool, IndexError> {
        let text_bytes = part
            .documents
            .iter()
            .map(|d| d.document.text.len() as u64)
            .sum();
        let message = if !block.contains(&part.part) || done.contains(&part.part) {
            FromReader::Skipped { text_bytes }
        } else {
            FromReader::Part(Box::new(tokenize_part(part, tokenization, text_bytes)?))
        };
        Ok(parts.send(message).is_ok())
    };
    let mut documents = 0u64;
    let mut parts_total = 0u32;
    let mut stopped = false;
    while documents < limit && !stopped {
        let Some(document) = source.next() else { break };
        documents += 1;
        if let Some(part) = partitioner.push(document?) {
            parts_total += 1;
            stopped = !handle(part)?;
        }
    }
    if !stopped && let Some(part) = partitioner.finish() {
        parts_total += 1;
        handle(part)?;
    }
    Ok(ReadTotals {
        documents,
        parts: parts_total,
        skipped: source.skipped(),
    })
}

/// Tokenizes a part's documents in parallel and builds its document and token rows.
fn tokenize_part(
    part: Part,
    tokenization: &Tokenization<'_>,
    text_bytes: u64,
) -> Result<TokenizedPart, IndexError> {
    let Tokenization {
        tokenizer,
        window,
        prepend_bos,
    } = *tokenization;
    let encoded: Vec<_> = part
        .documents
        .par_iter()
        .map(|numbered| tokenizer.encode_document(&numbered.document.text, prepend_bos))
        .collect::<Result<_, _>>()?;
    let mut document_rows = DocumentRows::default();
    let mut token_rows = TokenRows::default();
    let mut documents = Vec::with_capacity(encoded.len());
    for (numbered, tokens) in part.documents.into_iter().zip(encoded) {
        let count = tokens.ids.len();
        let sinks = window.sink_positions(count);
        for (position, ((id, span), special)) in tokens
            .ids
            .iter()
            .zip(&tokens.spans)
            .zip(&tokens.special)
            .enumerate()
        {
            token_rows.doc.push(numbered.doc);
            token_rows.position.push(position as u32);
            token_rows.token.push(*id);
            token_rows.start.push(span.start as u32);
            token_rows.end.push(span.end as u32);
            token_rows.special.push(*special);
            token_rows.sink.push(sinks.contains(&position));
        }
        documents.push(TokenizedDocument {
            index: numbered.doc as usize,
            ids: tokens.ids,
            special: tokens.special,
        });
        document_rows.doc.push(numbered.doc);
        document_rows.id.push(numbered.document.id);
        document_rows.source.push(numbered.document.source);
        document_rows.text.push(numbered.document.text);
        document_rows.tokens.push(count as u32);
        document_rows.push_metadata(numbered.document.metadata);
    }
    Ok(TokenizedPart {
        part: part.part,
        first_doc: part.first_doc,
        text_bytes,
        documents,
        document_rows,
        token_rows,
    })
}

/// The compute thread's work; returns seconds spent waiting for the reader (reading and
/// tokenizing not hidden behind compute), in the model and in the SAE.
fn compute_parts(
    engine: &Engine<'_>,
    job: &JobSpec,
    window: WindowPolicy,
    parts: Receiver<FromReader>,
    writer: SyncSender<ToWriter>,
    on_event: &mut dyn FnMut(Event),
) -> Result<(f64, f64, f64), IndexError> {
    let (mut waiting, mut model, mut sae) = (0.0, 0.0, 0.0);
    let closed = || IndexError::Thread("writer");
    loop {
        let waited = Instant::now();
        let Ok(message) = parts.recv() else { break };
        waiting += waited.elapsed().as_secs_f64();
        let part = match message {
            FromReader::Part(part) => *part,
            FromReader::Skipped { text_bytes } => {
                on_event(Event::PartSkipped { text_bytes });
                continue;
            }
        };
        writer
            .send(ToWriter::Start(Box::new(TokenizedPartFiles {
                part: part.part,
                first_doc: part.first_doc,
                documents: part.document_rows,
                tokens: part.token_rows,
            })))
            .map_err(|_| closed())?;
        let mut batcher = Batcher::new(window, job.batch_tokens);
        for document in &part.documents {
            batcher.push(document);
        }
        let part_tokens = part.documents.iter().map(|d| d.ids.len() as u64).sum();
        let mut progress = PartProgress::new(part.text_bytes, part_tokens);
        while let Some(batch) = batcher.next_any() {
            let started = Instant::now();
            let extracted = extract(
                engine.model,
                engine.hook,
                &batch,
                Exclusions {
                    window_start: false,
                    special_tokens: false,
                },
            )?;
            let encoded = Instant::now();
            model += (encoded - started).as_secs_f64();
            let n = extracted.document.len();
            let rows = if n == 0 {
                ActivationRows::default()
            } else {
                let x = Array::from_slice(&extracted.values, &[n as i32, extracted.width as i32]);
                let codes = engine.sae.encode(&x)?;
                let mut rows = ActivationRows::default();
                for t in 0..n {
                    rows.push_token(extracted.document[t], extracted.position[t], codes.token(t));
                }
                rows
            };
            sae += encoded.elapsed().as_secs_f64();
            on_event(Event::Batch {
                tokens: n as u64,
                nonzeros: rows.len() as u64,
                text_bytes: progress.advance(n as u64),
            });
            writer.send(ToWriter::Rows(rows)).map_err(|_| closed())?;
        }
        writer.send(ToWriter::End).map_err(|_| closed())?;
        on_event(Event::PartComputed {
            text_bytes: progress.finish(),
        });
    }
    Ok((waiting, model, sae))
}

/// The writer thread: writes each part's files and records the part.
fn write_parts(
    work: &WorkDir,
    metadata: &[MetadataColumn],
    rows: Receiver<ToWriter>,
) -> Result<(Vec<PartRecord>, f64), IndexError> {
    let mut records = Vec::new();
    let mut seconds = 0.0;
    // The open part: its number, first document, document count and writers.
    let mut open: Option<(u32, u32, u64, [TableWriter; 3])> = None;
    for message in rows {
        let started = Instant::now();
        match message {
            ToWriter::Start(files) => {
                let create =
                    |table: Table| TableWriter::create(table, &work.part_file(table, files.part).0);
                let documents_path = work.part_file(Table::Documents, files.part).0;
                let mut writers = [
                    TableWriter::create_documents(&documents_path, metadata)?,
                    create(Table::Tokens)?,
                    create(Table::Activations)?,
                ];
                let TokenizedPartFiles {
                    part,
                    first_doc,
                    documents,
                    tokens,
                } = *files;
                let document_count = documents.doc.len() as u64;
                writers[0].write_documents(documents)?;
                writers[1].write_tokens(tokens)?;
                open = Some((part, first_doc, document_count, writers));
            }
            ToWriter::Rows(batch) => {
                if let Some((_, _, _, writers)) = open.as_mut()
                    && !batch.is_empty()
                {
                    writers[2].write_activations(batch)?;
                }
            }
            ToWriter::End => {
                if let Some((part, first_doc, document_count, writers)) = open.take() {
                    let [documents, tokens, activations] = writers;
                    let rows = [documents.finish()?, tokens.finish()?, activations.finish()?];
                    records.push(work.complete_part(part, first_doc, rows, document_count)?);
                }
            }
        }
        seconds += started.elapsed().as_secs_f64();
    }
    Ok((records, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parts_bytes_are_spread_over_its_batches() {
        // One 5 MB document of 1.2M tokens in batches of 2,048 tokens.
        let (bytes, tokens) = (5_000_000u64, 1_200_000u64);
        let mut progress = PartProgress::new(bytes, tokens);
        let mut reported = Vec::new();
        let mut left = tokens;
        while left > 0 {
            let batch = left.min(2048);
            reported.push(progress.advance(batch));
            left -= batch;
        }
        assert!(
            reported[0] > 8_000,
            "the first batch moves the bar: {}",
            reported[0]
        );
        let total: u64 = reported.iter().sum::<u64>() + progress.finish();
        assert_eq!(total, bytes);
        let mut empty = PartProgress::new(10, 0);
        assert_eq!(empty.advance(5), 0);
        assert_eq!(empty.finish(), 10);
    }
}
