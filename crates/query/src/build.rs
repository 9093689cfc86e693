//! Building an index's query files from its Parquet tables.
//!
//! Every part is read through the index format's full verification (checksums,
//! schemas, numbering, bounds), so the query files are only ever built from data that
//! is exactly what the manifest describes. Tokens and codes stream to their files in
//! corpus order; the nonzero activations go through an external sort ([`crate::sort`])
//! that keeps at most [`BuildOptions::memory`] bytes of them in memory, spilling sorted
//! runs to the staging folder, and come out feature by feature for the postings and
//! the statistics. The folder is written atomically: `query/` is either the old
//! complete folder or the new one.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, LargeBinaryArray,
    LargeStringArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use saeidx_format::{
    atomic::StagedDir,
    manifest::Manifest,
    verify::{self, VerifyError, VerifyReport},
};
use serde::Serialize;

use crate::{
    blocks::{ChunkHashing, CodesWriter, PostingsWriter, TokenEntry, TokensWriter},
    by_token::piece,
    codec::{VALUE_CODE_BITS, code_value, pack_histogram, value_code},
    error::QueryError,
    layout::{
        CHUNK_BYTES, FLAG_SINK, FLAG_SPECIAL, HISTOGRAM_BINS, QUERY_DIR, QUERY_FORMAT,
        QUERY_FORMAT_VERSION, QUERY_MANIFEST, QueryCounts, QueryFile, QueryFileRecord,
        QueryManifest, index_data_sha256,
    },
    occurrences::OccurrenceStream,
    sort::{Posting, Sorter},
};

/// The default memory budget of a build's external sort: 1 GiB.
pub const DEFAULT_BUILD_MEMORY: u64 = 1 << 30;

/// How [`build_with`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// Bytes of nonzero activations the external sort holds in memory before it spills
    /// a sorted run to disk (the build's other memory: one Parquet part and the
    /// documents' ids and offsets; at the end, after the sort, the documents' texts).
    pub memory: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            memory: DEFAULT_BUILD_MEMORY,
        }
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    /// The `query/` folder.
    pub dir: PathBuf,
    /// Its totals.
    pub counts: QueryCounts,
    /// Bytes of all query files.
    pub bytes: u64,
    /// Sorted runs the external sort spilled to disk (0: it fit in memory).
    pub spilled_runs: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Builds (or rebuilds) the query files of the index in `index_dir` with the default
/// options, holding the folder's output lock ([`saeidx_format::lock`]): refused while
/// another process writes the index.
pub fn build(index_dir: &Path) -> Result<BuildSummary, QueryError> {
    build_with(index_dir, &BuildOptions::default())
}

/// [`build`] with `options`.
pub fn build_with(index_dir: &Path, options: &BuildOptions) -> Result<BuildSummary, QueryError> {
    let _lock = saeidx_format::lock::OutputLock::acquire(index_dir)?;
    build_unlocked_with(index_dir, options)
}

/// [`build`] for a folder the caller already writes exclusively (a run's work folder, a
/// merge's staging folder).
pub fn build_unlocked(index_dir: &Path) -> Result<BuildSummary, QueryError> {
    build_unlocked_with(index_dir, &BuildOptions::default())
}

/// [`build_unlocked`] with `options`.
pub fn build_unlocked_with(
    index_dir: &Path,
    options: &BuildOptions,
) -> Result<BuildSummary, QueryError> {
    let started = Instant::now();
    let manifest = Manifest::read(index_dir).map_err(VerifyError::from)?;
    verify::check_job(index_dir, &manifest)?;
    let d_sae = manifest.job.sae.d_sae;
    let query_dir = index_dir.join(QUERY_DIR);
    let staged = StagedDir::new(&query_dir)?;
    let sort_dir = staged.path().join("sort");
    // The occurrences are one per token, the postings one per nonzero: an eighth of
    // the budget sorts the first.
    let occurrences_memory = options.memory / 8;
    let mut stream = Stream::create(
        staged.path(),
        d_sae,
        Sorter::new(&sort_dir, options.memory - occurrences_memory),
        OccurrenceStream::new(&sort_dir.join("occurrences"), occurrences_memory),
    )?;
    let mut report = VerifyReport::default();
    for part in &manifest.parts {
        let tables = verify::read_part(index_dir, part, d_sae, &mut report)?;
        stream.add_part(&tables, part.first_doc)?;
    }
    stream.codes.flush()?;
    stream.occurrences.offsets(stream.codes.take_offsets())?;
    let spilled_runs = stream.sorter.spilled() + stream.occurrences.spilled();
    let Stream {
        documents,
        tokens,
        codes,
        sorter,
        occurrences,
        content_tokens,
        ..
    } = stream;
    let counts = QueryCounts {
        documents: documents.first_token.len() as u64,
        tokens: documents.tokens,
        content_tokens,
        nonzeros: 0,
        features: d_sae as u64,
    };
    let tokens = tokens.finish()?;
    let codes = codes.finish()?;
    let counts = QueryCounts {
        nonzeros: codes.rows,
        ..counts
    };
    let (postings, features) =
        write_postings(staged.path(), sorter, d_sae, &documents.first_token)?;
    let occurrences = occurrences.write(staged.path())?;
    if sort_dir.exists() {
        std::fs::remove_dir_all(&sort_dir).map_err(QueryError::io(&sort_dir))?;
    }
    let documents = write_arrow(staged.path(), QueryFile::Documents, documents.batch()?)?;
    let features = write_arrow(staged.path(), QueryFile::Features, features.batch()?)?;
    let mut files = vec![documents, tokens, codes, postings, features];
    files.extend(occurrences);
    let bytes = files.iter().map(|file| file.bytes).sum();
    write_manifest(staged.path(), &manifest, counts, files)?;
    carry_logit_effects(&query_dir, staged.path())?;
    let dir = staged.publish()?;
    Ok(BuildSummary {
        dir,
        counts,
        bytes,
        spilled_runs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes `query/manifest.json` into the staging folder.
fn write_manifest(
    dir: &Path,
    manifest: &Manifest,
    counts: QueryCounts,
    files: Vec<QueryFileRecord>,
) -> Result<(), QueryError> {
    let query = QueryManifest {
        format: QUERY_FORMAT.into(),
        format_version: QUERY_FORMAT_VERSION,
        saeidx_version: env!("CARGO_PKG_VERSION").into(),
        index_data_sha256: index_data_sha256(manifest),
        counts,
        chunk_bytes: CHUNK_BYTES,
        files,
    };
    let mut json = serde_json::to_vec_pretty(&query).expect("the query manifest serializes");
    json.push(b'\n');
    let path = dir.join(QUERY_MANIFEST);
    std::fs::write(&path, json).map_err(QueryError::io(&path))
}

/// Keeps the logit effects of the query files being replaced: they depend on the SAE
/// and the model only, which the manifest's hashes (checked when they are read) tie to
/// the index, not on the corpus data the query files are rebuilt from.
fn carry_logit_effects(old: &Path, staged: &Path) -> Result<(), QueryError> {
    let name = saeidx_format::logits::LOGIT_EFFECTS_FILE;
    let from = old.join(name);
    if from.is_file() {
        let to = staged.join(name);
        std::fs::copy(&from, &to).map_err(QueryError::io(&to))?;
    }
    Ok(())
}

/// The documents, collected for `documents.arrow`. Their texts (the bulk: ~4 bytes per
/// token) wait in a scratch file until the end, when the sort's memory is released.
struct Documents {
    ids: Vec<String>,
    sources: Vec<String>,
    text_offsets: Vec<i64>,
    text_path: PathBuf,
    text: BufWriter<File>,
    text_bytes: u64,
    first_token: Vec<u64>,
    doc_tokens: Vec<u32>,
    /// Tokens the documents hold.
    tokens: u64,
}

impl Documents {
    fn create(dir: &Path) -> Result<Self, QueryError> {
        let text_path = dir.join(".documents.texts");
        let file = File::create(&text_path).map_err(QueryError::io(&text_path))?;
        Ok(Self {
            ids: Vec::new(),
            sources: Vec::new(),
            text_offsets: Vec::new(),
            text: BufWriter::with_capacity(1 << 20, file),
            text_path,
            text_bytes: 0,
            first_token: Vec::new(),
            doc_tokens: Vec::new(),
            tokens: 0,
        })
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        if self.text_offsets.is_empty() {
            self.text_offsets.push(0);
        }
        let id = column::<StringArray>(batch, "id");
        let source = column::<StringArray>(batch, "source");
        let text = column::<LargeStringArray>(batch, "text");
        let tokens = column::<UInt32Array>(batch, "tokens");
        for row in 0..batch.num_rows() {
            self.ids.push(id.value(row).to_string());
            self.sources.push(source.value(row).to_string());
            let bytes = text.value(row).as_bytes();
            self.text
                .write_all(bytes)
                .map_err(QueryError::io(&self.text_path))?;
            self.text_bytes += bytes.len() as u64;
            self.text_offsets.push(self.text_bytes as i64);
            self.first_token.push(self.tokens);
            self.tokens += u64::from(tokens.value(row));
            self.doc_tokens.push(tokens.value(row));
        }
        if self.first_token.len() as u64 > u64::from(u32::MAX) {
            return Err(QueryError::TooLarge {
                what: "the number of documents",
                limit: u64::from(u32::MAX),
            });
        }
        Ok(())
    }

    fn batch(mut self) -> Result<RecordBatch, QueryError> {
        if self.text_offsets.is_empty() {
            self.text_offsets.push(0);
        }
        let path = self.text_path;
        self.text
            .into_inner()
            .map_err(|e| QueryError::io(&path)(e.into_error()))?;
        let text = std::fs::read(&path).map_err(QueryError::io(&path))?;
        std::fs::remove_file(&path).map_err(QueryError::io(&path))?;
        arrow_batch(
            QueryFile::Documents,
            vec![
                Arc::new(StringArray::from(self.ids)),
                Arc::new(StringArray::from(self.sources)),
                Arc::new(LargeBinaryArray::new(
                    OffsetBuffer::new(ScalarBuffer::from(self.text_offsets)),
                    Buffer::from_vec(text),
                    None,
                )),
                Arc::new(UInt64Array::from(self.first_token)),
                Arc::new(UInt32Array::from(self.doc_tokens)),
            ],
        )
    }
}

fn arrow_batch(file: QueryFile, columns: Vec<ArrayRef>) -> Result<RecordBatch, QueryError> {
    RecordBatch::try_new(file.schema(), columns).map_err(|source| QueryError::Arrow {
        path: PathBuf::from(file.name()),
        source,
    })
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .expect("verification checked the schema")
}

/// The parts, streamed in corpus order into the files that follow it.
struct Stream {
    documents: Documents,
    tokens: TokensWriter,
    codes: CodesWriter,
    sorter: Sorter,
    occurrences: OccurrenceStream,
    /// Tokens written so far.
    written: u64,
    content_tokens: u64,
}

impl Stream {
    fn create(
        dir: &Path,
        d_sae: usize,
        sorter: Sorter,
        occurrences: OccurrenceStream,
    ) -> Result<Self, QueryError> {
        Ok(Self {
            documents: Documents::create(dir)?,
            tokens: TokensWriter::create(dir)?,
            codes: CodesWriter::create(dir, d_sae)?,
            sorter,
            occurrences,
            written: 0,
            content_tokens: 0,
        })
    }

    /// Adds a part whose documents are numbered from `first_doc` (0 for the first part
    /// of an index; a segment's parts continue the numbers of the segments before it).
    fn add_part(&mut self, tables: &verify::PartTables, first_doc: u32) -> Result<(), QueryError> {
        let documents_before = self.documents.first_token.len();
        for batch in &tables.documents {
            self.documents.add(batch)?;
        }
        let first = self.written;
        let texts = part_texts(tables);
        let mut flags = Vec::new();
        for batch in &tables.tokens {
            let doc = column::<UInt32Array>(batch, "doc");
            let special = column::<BooleanArray>(batch, "special");
            let sink = column::<BooleanArray>(batch, "sink");
            let token = column::<UInt32Array>(batch, "token");
            let start = column::<UInt32Array>(batch, "start");
            let end = column::<UInt32Array>(batch, "end");
            for row in 0..batch.num_rows() {
                let mut bits = 0;
                if special.value(row) {
                    bits |= FLAG_SPECIAL;
                }
                if sink.value(row) {
                    bits |= FLAG_SINK;
                }
                if bits == 0 {
                    self.content_tokens += 1;
                }
                // Verification checked the document is in this part and start <= end
                // within its text.
                let text = texts[(doc.value(row) - first_doc) as usize];
                let (from, to) = (start.value(row), end.value(row));
                let number = first + flags.len() as u64;
                let id = token.value(row);
                self.occurrences
                    .token(number, id, bits, &piece(text, from, to));
                flags.push(bits);
                self.tokens.token(TokenEntry {
                    token: id,
                    start: from,
                    end: to,
                    flags: bits,
                })?;
            }
        }
        self.written += flags.len() as u64;
        self.add_codes(tables, first, &flags, (first_doc, documents_before))
    }

    /// Streams the part's codes (tokens `first..` with `flags`) to `codes.bin` and the
    /// sorter; the part's document `first_doc` is the folder's document `local`.
    fn add_codes(
        &mut self,
        tables: &verify::PartTables,
        first: u64,
        flags: &[u8],
        (first_doc, local): (u32, usize),
    ) -> Result<(), QueryError> {
        let mut next = first;
        let mut codes: Vec<(u32, u32)> = Vec::new();
        let mut current: Option<u64> = None;
        for batch in &tables.activations {
            let doc = column::<UInt32Array>(batch, "doc");
            let position = column::<UInt32Array>(batch, "position");
            let feature = column::<UInt32Array>(batch, "feature");
            let value = column::<Float32Array>(batch, "value");
            for row in 0..batch.num_rows() {
                // Verification guarantees the document is in this part, the position
                // inside it, and rows in token order.
                let row_doc = (doc.value(row) - first_doc) as usize + local;
                let token = self.documents.first_token[row_doc] + u64::from(position.value(row));
                if current != Some(token) {
                    if current.is_some() {
                        self.codes.token(std::mem::take(&mut codes))?;
                        next += 1;
                    }
                    while next < token {
                        self.codes.token(Vec::new())?;
                        next += 1;
                    }
                    current = Some(token);
                }
                let value = value.value(row);
                let code = value_code(value).ok_or(QueryError::Precision { value })?;
                codes.push((feature.value(row), code));
                let token_flags = flags[(token - first) as usize];
                self.sorter.push(Posting {
                    feature: feature.value(row),
                    token,
                    payload: code | (u32::from(token_flags) << VALUE_CODE_BITS),
                })?;
            }
        }
        if current.is_some() {
            self.codes.token(codes)?;
            next += 1;
        }
        while next < self.written {
            self.codes.token(Vec::new())?;
            next += 1;
        }
        self.occurrences.offsets(self.codes.take_offsets())
    }
}

/// The texts of a part's documents, in document order.
fn part_texts(tables: &verify::PartTables) -> Vec<&str> {
    tables
        .documents
        .iter()
        .flat_map(|batch| {
            let text = column::<LargeStringArray>(batch, "text");
            (0..batch.num_rows()).map(move |row| text.value(row))
        })
        .collect()
}

/// The statistics of the feature being drained, one posting at a time: content values
/// are counted per distinct value code (at most 2^19 of them, whatever the corpus), not
/// held per posting.
#[derive(Default)]
struct FeatureTally {
    postings: u64,
    documents: u32,
    doc_end: u64,
    values: BTreeMap<u32, u32>,
}

impl FeatureTally {
    /// Counts the next posting (tokens ascend) of a token with `flags`; `first_token`
    /// numbers the documents' tokens.
    fn push(&mut self, token: u64, code: u32, flags: u8, first_token: &[u64]) {
        self.postings += 1;
        if flags != 0 {
            return;
        }
        *self.values.entry(code).or_default() += 1;
        if token >= self.doc_end {
            // Tokens ascend: a token past the current document starts another one.
            let doc = first_token.partition_point(|first| *first <= token);
            self.doc_end = first_token.get(doc).copied().unwrap_or(u64::MAX);
            self.documents += 1;
        }
    }
}

/// Per-feature offsets and statistics (`features.arrow`).
struct Features {
    postings: Vec<u32>,
    count: Vec<u32>,
    documents: Vec<u32>,
    max: Vec<f32>,
    sum: Vec<f64>,
    /// Packed histograms ([`pack_histogram`]).
    histogram: Vec<Vec<u8>>,
    min: Vec<f32>,
}

impl Features {
    fn new(d_sae: usize) -> Self {
        Self {
            postings: Vec::with_capacity(d_sae),
            count: Vec::with_capacity(d_sae),
            documents: Vec::with_capacity(d_sae),
            max: Vec::with_capacity(d_sae),
            sum: Vec::with_capacity(d_sae),
            histogram: Vec::with_capacity(d_sae),
            min: Vec::with_capacity(d_sae),
        }
    }

    /// Adds the next feature, tallied by `tally`.
    fn add(&mut self, tally: FeatureTally) -> Result<(), QueryError> {
        let count = u32::try_from(tally.postings).map_err(|_| QueryError::TooLarge {
            what: "one feature's postings",
            limit: u64::from(u32::MAX),
        })?;
        self.postings.push(count);
        // Strongest first, as readers recompute it (equal values are the same code, so
        // adding a value `n` times in a row sums exactly as the sorted postings would).
        let mut content: Vec<(f32, u32)> = tally
            .values
            .into_iter()
            .map(|(code, n)| (code_value(code), n))
            .collect();
        content.sort_by(|a, b| b.0.total_cmp(&a.0));
        let max = content.first().map_or(0.0, |(value, _)| *value).max(0.0);
        let mut bins = [0u32; HISTOGRAM_BINS];
        let mut sum = 0.0f64;
        let mut total = 0u32;
        for &(value, n) in &content {
            for _ in 0..n {
                sum += f64::from(value);
            }
            bins[histogram_bin(value, max)] += n;
            total += n;
        }
        self.count.push(total);
        self.documents.push(tally.documents);
        self.max.push(max);
        self.sum.push(sum);
        self.histogram.push(pack_histogram(&bins));
        self.min
            .push(content.last().map_or(0.0, |(value, _)| *value).max(0.0));
        Ok(())
    }

    fn batch(self) -> Result<RecordBatch, QueryError> {
        let histogram = BinaryArray::from_iter_values(&self.histogram);
        arrow_batch(
            QueryFile::Features,
            vec![
                Arc::new(UInt32Array::from(self.postings)),
                Arc::new(UInt32Array::from(self.count)),
                Arc::new(UInt32Array::from(self.documents)),
                Arc::new(Float32Array::from(self.max)),
                Arc::new(Float64Array::from(self.sum)),
                Arc::new(histogram),
                Arc::new(Float32Array::from(self.min)),
            ],
        )
    }
}

/// Drains the sorter feature by feature into `postings.bin` and the statistics.
fn write_postings(
    dir: &Path,
    sorter: Sorter,
    d_sae: usize,
    first_token: &[u64],
) -> Result<(QueryFileRecord, Features), QueryError> {
    let mut writer = PostingsWriter::create(dir)?;
    let mut features = Features::new(d_sae);
    let mut tally = FeatureTally::default();
    let mut feature = 0usize;
    let value_mask = (1u32 << VALUE_CODE_BITS) - 1;
    let mut close = |writer: &mut PostingsWriter, tally: &mut FeatureTally| {
        writer.end_feature()?;
        features.add(std::mem::take(tally))
    };
    sorter.drain(|posting| {
        while feature < posting.feature as usize {
            close(&mut writer, &mut tally)?;
            feature += 1;
        }
        let code = posting.payload & value_mask;
        writer.push(posting.token, code)?;
        let flags = (posting.payload >> VALUE_CODE_BITS) as u8;
        tally.push(posting.token, code, flags, first_token);
        Ok(())
    })?;
    while feature < d_sae {
        close(&mut writer, &mut tally)?;
        feature += 1;
    }
    Ok((writer.finish()?, features))
}

/// A positive value's f32 as `m · 2^e`, `m` an integer (the significand).
fn significand_exponent(value: f32) -> (u64, i32) {
    let bits = value.to_bits();
    let biased = ((bits >> 23) & 0xff) as i32;
    let fraction = u64::from(bits & 0x7f_ffff);
    if biased == 0 {
        (fraction, -149)
    } else {
        (fraction | 1 << 23, biased - 150)
    }
}

/// The exponent of a histogram's upper edge: the smallest power of two at least `max`
/// (0 for `max <= 0`: an empty histogram).
pub(crate) fn histogram_exponent(max: f32) -> i32 {
    if max.is_nan() || max <= 0.0 {
        return 0;
    }
    let (m, e) = significand_exponent(max);
    // ceil(log2 m) for m >= 1.
    e + (u64::BITS - (m - 1).leading_zeros()) as i32
}

/// The upper edge of a histogram whose largest value is `max`: the smallest power of
/// two at least `max` (`2^⌈log2 max⌉`; 1 for an empty histogram).
pub(crate) fn histogram_top(max: f32) -> f64 {
    2f64.powi(histogram_exponent(max))
}

/// The histogram bin of `value` among [`HISTOGRAM_BINS`] equal bins over
/// `(0, 2^⌈log2 max⌉]`: bin `i` holds `(i·P/20, (i+1)·P/20]` for `P` that power of two,
/// computed exactly (integers, no rounding). Edges at powers of two let histograms of
/// parts of an index add up exactly: over a `P` that is `2^j` times a part's, the part's
/// bin `i` lies whole in bin `i >> j` ([`rebin`]).
pub(crate) fn histogram_bin(value: f32, max: f32) -> usize {
    let top = histogram_exponent(max);
    if value.is_nan() || value <= 0.0 || max <= 0.0 {
        return 0;
    }
    let (m, e) = significand_exponent(value);
    // ceil(20 · m · 2^(e - top)) - 1, clamped to the bins.
    let shift = top - e;
    let ceil = if shift <= 0 {
        HISTOGRAM_BINS as u64
    } else if shift >= 63 {
        1
    } else {
        let scaled = HISTOGRAM_BINS as u64 * m;
        (scaled + (1u64 << shift) - 1) >> shift
    };
    (ceil.clamp(1, HISTOGRAM_BINS as u64) - 1) as usize
}

/// Adds `bins` (over `(0, 2^from]`) to `into` (over `(0, 2^to]`, `to >= from`): bin `i`
/// lies whole in bin `i >> (to - from)`, so the sum is exact.
pub(crate) fn rebin(bins: &[u32], from: i32, into: &mut [u32], to: i32) {
    let shift = u32::try_from(to - from).unwrap_or(0).min(31);
    for (i, count) in bins.iter().enumerate() {
        into[i >> shift] += count;
    }
}

/// The histogram bin of `value` in query format version 2: equal bins over `(0, max]`
/// (f32 arithmetic), to verify version-2 files.
pub(crate) fn version_2_histogram_bin(value: f32, max: f32) -> usize {
    if max <= 0.0 {
        return 0;
    }
    (((value / max) * HISTOGRAM_BINS as f32).ceil() as usize).clamp(1, HISTOGRAM_BINS) - 1
}

/// The lowest bit any value of at least `min` can have (values keep 11 significant
/// bits, so the low 13 of their f32 bits are zero): sums of such values below `2^53`
/// times it are exact in f64, in any order.
pub(crate) fn value_unit(min: f32) -> f64 {
    let biased = ((min.to_bits() >> 23) & 0xff) as i32;
    2f64.powi(biased.max(1) - 137)
}

/// Writes `batch` as the Arrow IPC file `file` in `dir`, fsynced, and describes it.
fn write_arrow(
    dir: &Path,
    file: QueryFile,
    batch: RecordBatch,
) -> Result<QueryFileRecord, QueryError> {
    let path = dir.join(file.name());
    let handle = File::create(&path).map_err(QueryError::io(&path))?;
    let arrow_error = |source| QueryError::Arrow {
        path: path.clone(),
        source,
    };
    let mut writer = arrow_ipc::writer::FileWriter::try_new(
        ChunkHashing::new(BufWriter::with_capacity(1 << 20, handle)),
        &file.schema(),
    )
    .map_err(arrow_error)?;
    writer.write(&batch).map_err(arrow_error)?;
    writer.finish().map_err(arrow_error)?;
    let hashing = writer.into_inner().map_err(arrow_error)?;
    let (buffered, bytes, chunks) = hashing.finish().map_err(QueryError::io(&path))?;
    let mut handle = buffered
        .into_inner()
        .map_err(|e| QueryError::io(&path)(e.into_error()))?;
    handle.flush().map_err(QueryError::io(&path))?;
    handle.sync_all().map_err(QueryError::io(&path))?;
    Ok(QueryFileRecord {
        name: file.name().into(),
        bytes,
        rows: batch.num_rows() as u64,
        chunks_xxh3: chunks,
    })
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use twox_hash::XxHash3_64;

    use super::*;

    #[test]
    fn histogram_bins_cover_zero_to_a_power_of_two() {
        // Over (0, 16]: bins of 0.8.
        assert_eq!(histogram_top(10.0), 16.0);
        assert_eq!(histogram_bin(10.0, 10.0), 12);
        assert_eq!(histogram_bin(0.01, 10.0), 0);
        assert_eq!(histogram_bin(0.75, 10.0), 0);
        assert_eq!(histogram_bin(0.8125, 10.0), 1);
        assert_eq!(histogram_bin(16.0, 16.0), HISTOGRAM_BINS - 1);
        assert_eq!(histogram_top(16.0), 16.0);
        assert_eq!(histogram_top(0.75), 1.0);
        assert_eq!(histogram_bin(1.0, 0.0), 0);
        assert_eq!(histogram_top(0.0), 1.0);
        let tiny = f32::from_bits(1 << 13);
        assert_eq!(histogram_bin(tiny, tiny), HISTOGRAM_BINS - 1);
    }

    #[test]
    fn histograms_of_parts_add_up_to_the_whole() {
        // Values of 11 significant bits over many binary orders of magnitude.
        let values: Vec<f32> = (1..4000u32)
            .map(|i| f32::from_bits((0x3000_0000 + i * 0x1_e000) & !0x1fff))
            .collect();
        for parts in [2, 3, 7] {
            let max = values.iter().copied().fold(0.0, f32::max);
            let mut whole = [0u32; HISTOGRAM_BINS];
            for &v in &values {
                whole[histogram_bin(v, max)] += 1;
            }
            let mut summed = [0u32; HISTOGRAM_BINS];
            for part in 0..parts {
                let mine: Vec<f32> = values.iter().copied().skip(part).step_by(parts).collect();
                let part_max = mine.iter().copied().fold(0.0, f32::max);
                let mut bins = [0u32; HISTOGRAM_BINS];
                for &v in &mine {
                    bins[histogram_bin(v, part_max)] += 1;
                }
                rebin(
                    &bins,
                    histogram_exponent(part_max),
                    &mut summed,
                    histogram_exponent(max),
                );
            }
            assert_eq!(summed, whole, "{parts} parts");
        }
    }

    #[test]
    fn chunk_checksums_match_the_reader() {
        let data: Vec<u8> = (0..(CHUNK_BYTES as usize * 2 + 17))
            .map(|i| (i * 7) as u8)
            .collect();
        let mut hashing = ChunkHashing::new(Vec::new());
        for piece in data.chunks(4093) {
            hashing.write_all(piece).unwrap();
        }
        let (_, bytes, chunks) = hashing.finish().unwrap();
        assert_eq!(bytes, data.len() as u64);
        let expected: Vec<String> = data
            .chunks(CHUNK_BYTES as usize)
            .map(|chunk| {
                let mut hasher = XxHash3_64::new();
                hasher.write(chunk);
                format!("{:016x}", hasher.finish())
            })
            .collect();
        assert_eq!(chunks, expected);
    }
}
