//! Building an index's query files from its Parquet tables.
//!
//! Every part is read through the index format's full verification (checksums,
//! schemas, numbering, bounds), so the query files are only ever built from data that
//! is exactly what the manifest describes. The build holds the codes and postings in
//! memory (about 16 bytes per nonzero activation at its peak) and writes the folder
//! atomically: `query/` is either the old complete folder or the new one.

use std::{
    fs::File,
    hash::Hasher,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array,
    LargeBinaryArray, LargeStringArray, RecordBatch, StringArray, UInt8Array, UInt32Array,
    UInt64Array,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};
use rayon::prelude::*;
use saeidx_format::{
    atomic::StagedDir,
    manifest::Manifest,
    verify::{self, VerifyError, VerifyReport},
};
use serde::Serialize;
use twox_hash::XxHash3_64;

use crate::{
    error::QueryError,
    layout::{
        CHUNK_BYTES, FLAG_SINK, FLAG_SPECIAL, HISTOGRAM_BINS, QUERY_DIR, QUERY_FORMAT,
        QUERY_FORMAT_VERSION, QUERY_MANIFEST, QueryCounts, QueryFile, QueryFileRecord,
        QueryManifest, index_data_sha256,
    },
};

/// What [`build`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSummary {
    /// The `query/` folder.
    pub dir: PathBuf,
    /// Its totals.
    pub counts: QueryCounts,
    /// Bytes of all query files.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Builds (or rebuilds) the query files of the index in `index_dir`, holding the
/// folder's output lock ([`saeidx_format::lock`]): refused while another process writes
/// the index.
pub fn build(index_dir: &Path) -> Result<BuildSummary, QueryError> {
    let _lock = saeidx_format::lock::OutputLock::acquire(index_dir)?;
    build_unlocked(index_dir)
}

/// [`build`] for a folder the caller already writes exclusively (a run's work folder, a
/// merge's staging folder).
pub fn build_unlocked(index_dir: &Path) -> Result<BuildSummary, QueryError> {
    let started = Instant::now();
    let manifest = Manifest::read(index_dir).map_err(VerifyError::from)?;
    verify::check_job(index_dir, &manifest)?;
    let d_sae = manifest.job.sae.d_sae;
    let mut data = Collected::default();
    let mut report = VerifyReport::default();
    for part in &manifest.parts {
        let tables = verify::read_part(index_dir, part, d_sae, &mut report)?;
        data.add_part(&tables)?;
    }
    data.finish_tokens();
    let counts = QueryCounts {
        documents: data.first_token.len() as u64,
        tokens: data.doc.len() as u64,
        content_tokens: data.flags.iter().filter(|flags| **flags == 0).count() as u64,
        nonzeros: data.features.len() as u64,
        features: d_sae as u64,
    };
    let postings = Postings::of(&data, d_sae);

    let query_dir = index_dir.join(QUERY_DIR);
    let staged = StagedDir::new(&query_dir)?;
    let mut files = Vec::new();
    let (documents, tokens, codes) = data.batches()?;
    files.push(write_file(staged.path(), QueryFile::Documents, documents)?);
    files.push(write_file(staged.path(), QueryFile::Tokens, tokens)?);
    files.push(write_file(staged.path(), QueryFile::Codes, codes)?);
    let (postings_batch, features_batch) = postings.batches()?;
    files.push(write_file(
        staged.path(),
        QueryFile::Postings,
        postings_batch,
    )?);
    files.push(write_file(
        staged.path(),
        QueryFile::Features,
        features_batch,
    )?);
    let bytes = files.iter().map(|file| file.bytes).sum();
    let query = QueryManifest {
        format: QUERY_FORMAT.into(),
        format_version: QUERY_FORMAT_VERSION,
        saeidx_version: env!("CARGO_PKG_VERSION").into(),
        index_data_sha256: index_data_sha256(&manifest),
        counts,
        chunk_bytes: CHUNK_BYTES,
        files,
    };
    let mut json = serde_json::to_vec_pretty(&query).expect("the query manifest serializes");
    json.push(b'\n');
    let manifest_path = staged.path().join(QUERY_MANIFEST);
    std::fs::write(&manifest_path, json).map_err(QueryError::io(&manifest_path))?;
    carry_logit_effects(&query_dir, staged.path())?;
    let dir = staged.publish()?;
    Ok(BuildSummary {
        dir,
        counts,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// Everything read from the parts, in corpus order.
#[derive(Default)]
struct Collected {
    ids: Vec<String>,
    sources: Vec<String>,
    text_offsets: Vec<i64>,
    text: Vec<u8>,
    first_token: Vec<u64>,
    doc_tokens: Vec<u32>,
    documented_tokens: u64,
    doc: Vec<u32>,
    position: Vec<u32>,
    token: Vec<u32>,
    start: Vec<u32>,
    end: Vec<u32>,
    flags: Vec<u8>,
    first_code: Vec<u64>,
    features: Vec<u32>,
    values: Vec<f32>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .expect("verification checked the schema")
}

impl Collected {
    fn add_part(&mut self, tables: &verify::PartTables) -> Result<(), QueryError> {
        if self.text_offsets.is_empty() {
            self.text_offsets.push(0);
        }
        for batch in &tables.documents {
            let id = column::<StringArray>(batch, "id");
            let source = column::<StringArray>(batch, "source");
            let text = column::<LargeStringArray>(batch, "text");
            let tokens = column::<UInt32Array>(batch, "tokens");
            for row in 0..batch.num_rows() {
                self.ids.push(id.value(row).to_string());
                self.sources.push(source.value(row).to_string());
                self.text.extend_from_slice(text.value(row).as_bytes());
                self.text_offsets.push(self.text.len() as i64);
                self.first_token.push(self.documented_tokens);
                self.documented_tokens += u64::from(tokens.value(row));
                self.doc_tokens.push(tokens.value(row));
            }
        }
        for batch in &tables.tokens {
            let special = column::<BooleanArray>(batch, "special");
            let sink = column::<BooleanArray>(batch, "sink");
            for (name, target) in [
                ("doc", &mut self.doc),
                ("position", &mut self.position),
                ("token", &mut self.token),
                ("start", &mut self.start),
                ("end", &mut self.end),
            ] {
                target.extend_from_slice(column::<UInt32Array>(batch, name).values());
            }
            for row in 0..batch.num_rows() {
                let mut flags = 0;
                if special.value(row) {
                    flags |= FLAG_SPECIAL;
                }
                if sink.value(row) {
                    flags |= FLAG_SINK;
                }
                self.flags.push(flags);
            }
        }
        if self.doc.len() as u64 >= u64::from(u32::MAX) {
            return Err(QueryError::TooLarge {
                what: "the number of tokens",
                limit: u64::from(u32::MAX) - 1,
            });
        }
        for batch in &tables.activations {
            let doc = column::<UInt32Array>(batch, "doc");
            let position = column::<UInt32Array>(batch, "position");
            let feature = column::<UInt32Array>(batch, "feature");
            let value = column::<Float32Array>(batch, "value");
            for row in 0..batch.num_rows() {
                // Verification guarantees the document is in this part and the
                // position inside it, and rows in token order.
                let token =
                    self.first_token[doc.value(row) as usize] + u64::from(position.value(row));
                self.open_token(token as usize);
                self.features.push(feature.value(row));
                self.values.push(value.value(row));
            }
        }
        Ok(())
    }

    /// Starts the codes of `token` (closing every token before it).
    fn open_token(&mut self, token: usize) {
        while self.first_code.len() <= token {
            self.close_last_token();
            self.first_code.push(self.features.len() as u64);
        }
    }

    /// Sorts the last opened token's codes by value, descending, then feature.
    fn close_last_token(&mut self) {
        let Some(&start) = self.first_code.last() else {
            return;
        };
        let start = start as usize;
        let mut pairs: Vec<(u32, f32)> = self.features[start..]
            .iter()
            .copied()
            .zip(self.values[start..].iter().copied())
            .collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, (feature, value)) in pairs.into_iter().enumerate() {
            self.features[start + i] = feature;
            self.values[start + i] = value;
        }
    }

    /// Gives every token (also those without codes) its `first_code`.
    fn finish_tokens(&mut self) {
        let tokens = self.doc.len();
        if tokens > 0 {
            self.open_token(tokens - 1);
        }
        self.close_last_token();
        if self.text_offsets.is_empty() {
            self.text_offsets.push(0);
        }
    }

    fn batches(&mut self) -> Result<(RecordBatch, RecordBatch, RecordBatch), QueryError> {
        let arrow = |file: QueryFile, columns: Vec<ArrayRef>| {
            RecordBatch::try_new(file.schema(), columns).map_err(|source| QueryError::Arrow {
                path: PathBuf::from(file.name()),
                source,
            })
        };
        let documents = arrow(
            QueryFile::Documents,
            vec![
                Arc::new(StringArray::from(std::mem::take(&mut self.ids))),
                Arc::new(StringArray::from(std::mem::take(&mut self.sources))),
                Arc::new(LargeBinaryArray::new(
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::take(&mut self.text_offsets))),
                    Buffer::from_vec(std::mem::take(&mut self.text)),
                    None,
                )),
                Arc::new(UInt64Array::from(std::mem::take(&mut self.first_token))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.doc_tokens))),
            ],
        )?;
        let tokens = arrow(
            QueryFile::Tokens,
            vec![
                Arc::new(UInt32Array::from(std::mem::take(&mut self.doc))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.position))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.token))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.start))),
                Arc::new(UInt32Array::from(std::mem::take(&mut self.end))),
                Arc::new(UInt8Array::from(std::mem::take(&mut self.flags))),
                Arc::new(UInt64Array::from(std::mem::take(&mut self.first_code))),
            ],
        )?;
        let codes = arrow(
            QueryFile::Codes,
            vec![
                Arc::new(UInt32Array::from(std::mem::take(&mut self.features))),
                Arc::new(Float32Array::from(std::mem::take(&mut self.values))),
            ],
        )?;
        Ok((documents, tokens, codes))
    }
}

/// Feature-major postings and per-feature statistics.
struct Postings {
    first_posting: Vec<u64>,
    postings: Vec<u32>,
    token: Vec<u32>,
    value: Vec<f32>,
    count: Vec<u32>,
    documents: Vec<u32>,
    max: Vec<f32>,
    sum: Vec<f64>,
    histogram: Vec<u32>,
}

impl Postings {
    fn of(data: &Collected, d_sae: usize) -> Self {
        let mut postings = vec![0u32; d_sae];
        for &feature in &data.features {
            postings[feature as usize] += 1;
        }
        let mut first_posting = Vec::with_capacity(d_sae);
        let mut total = 0u64;
        for &count in &postings {
            first_posting.push(total);
            total += u64::from(count);
        }
        // Scatter in token order, so each feature's postings start in token order and
        // a stable sort by value keeps ties in token order.
        let mut pairs = vec![(0u32, 0f32); data.features.len()];
        let mut cursor = first_posting.clone();
        let tokens = data.first_code.len();
        for token in 0..tokens {
            let start = data.first_code[token] as usize;
            let end = data
                .first_code
                .get(token + 1)
                .map_or(data.features.len(), |e| *e as usize);
            for code in start..end {
                let feature = data.features[code] as usize;
                pairs[cursor[feature] as usize] = (token as u32, data.values[code]);
                cursor[feature] += 1;
            }
        }
        let mut segments: Vec<&mut [(u32, f32)]> = Vec::with_capacity(d_sae);
        let mut rest = pairs.as_mut_slice();
        for &count in &postings {
            let (segment, tail) = rest.split_at_mut(count as usize);
            segments.push(segment);
            rest = tail;
        }
        segments
            .par_iter_mut()
            .for_each(|segment| segment.sort_by(|a, b| b.1.total_cmp(&a.1)));

        let mut stats = Postings {
            first_posting,
            postings,
            token: Vec::with_capacity(pairs.len()),
            value: Vec::with_capacity(pairs.len()),
            count: vec![0; d_sae],
            documents: vec![0; d_sae],
            max: vec![0.0; d_sae],
            sum: vec![0.0; d_sae],
            histogram: vec![0; d_sae * HISTOGRAM_BINS],
        };
        let mut seen_by = vec![u32::MAX; data.first_token.len()];
        for feature in 0..d_sae {
            let start = stats.first_posting[feature] as usize;
            let segment = &pairs[start..start + stats.postings[feature] as usize];
            let content = || {
                segment
                    .iter()
                    .filter(|(token, _)| data.flags[*token as usize] == 0)
            };
            let max = content().map(|(_, value)| *value).fold(0.0f32, f32::max);
            let bins = &mut stats.histogram[feature * HISTOGRAM_BINS..][..HISTOGRAM_BINS];
            for &(token, value) in content() {
                stats.count[feature] += 1;
                stats.sum[feature] += f64::from(value);
                bins[histogram_bin(value, max)] += 1;
                let doc = data.doc[token as usize] as usize;
                if seen_by[doc] != feature as u32 {
                    seen_by[doc] = feature as u32;
                    stats.documents[feature] += 1;
                }
            }
            stats.max[feature] = max;
        }
        for (token, value) in pairs {
            stats.token.push(token);
            stats.value.push(value);
        }
        stats
    }

    fn batches(self) -> Result<(RecordBatch, RecordBatch), QueryError> {
        let arrow = |file: QueryFile, columns: Vec<ArrayRef>| {
            RecordBatch::try_new(file.schema(), columns).map_err(|source| QueryError::Arrow {
                path: PathBuf::from(file.name()),
                source,
            })
        };
        let postings = arrow(
            QueryFile::Postings,
            vec![
                Arc::new(UInt32Array::from(self.token)),
                Arc::new(Float32Array::from(self.value)),
            ],
        )?;
        let histogram = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::UInt32, false)),
            HISTOGRAM_BINS as i32,
            Arc::new(UInt32Array::from(self.histogram)),
            None,
        )
        .map_err(|source| QueryError::Arrow {
            path: PathBuf::from(QueryFile::Features.name()),
            source,
        })?;
        let features = arrow(
            QueryFile::Features,
            vec![
                Arc::new(UInt64Array::from(self.first_posting)),
                Arc::new(UInt32Array::from(self.postings)),
                Arc::new(UInt32Array::from(self.count)),
                Arc::new(UInt32Array::from(self.documents)),
                Arc::new(Float32Array::from(self.max)),
                Arc::new(Float64Array::from(self.sum)),
                Arc::new(histogram),
            ],
        )?;
        Ok((postings, features))
    }
}

/// The histogram bin of `value` among [`HISTOGRAM_BINS`] equal bins over `(0, max]`.
pub(crate) fn histogram_bin(value: f32, max: f32) -> usize {
    if max <= 0.0 {
        return 0;
    }
    (((value / max) * HISTOGRAM_BINS as f32).ceil() as usize).clamp(1, HISTOGRAM_BINS) - 1
}

/// A writer that checksums what passes through it in [`CHUNK_BYTES`] chunks.
struct ChunkHashing<W: Write> {
    inner: W,
    hasher: XxHash3_64,
    in_chunk: u64,
    bytes: u64,
    chunks: Vec<String>,
}

impl<W: Write> ChunkHashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: XxHash3_64::new(),
            in_chunk: 0,
            bytes: 0,
            chunks: Vec::new(),
        }
    }

    fn close_chunk(&mut self) {
        let hasher = std::mem::replace(&mut self.hasher, XxHash3_64::new());
        self.chunks.push(format!("{:016x}", hasher.finish()));
        self.in_chunk = 0;
    }
}

impl<W: Write> Write for ChunkHashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = (CHUNK_BYTES - self.in_chunk) as usize;
        let n = self.inner.write(&buf[..buf.len().min(room)])?;
        self.hasher.write(&buf[..n]);
        self.in_chunk += n as u64;
        self.bytes += n as u64;
        if self.in_chunk == CHUNK_BYTES {
            self.close_chunk();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `batch` as the Arrow IPC file `file` in `dir`, fsynced, and describes it.
fn write_file(
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
    let mut hashing = writer.into_inner().map_err(arrow_error)?;
    hashing.flush().map_err(QueryError::io(&path))?;
    if hashing.in_chunk > 0 {
        hashing.close_chunk();
    }
    let handle = hashing
        .inner
        .into_inner()
        .map_err(|e| QueryError::io(&path)(e.into_error()))?;
    handle.sync_all().map_err(QueryError::io(&path))?;
    Ok(QueryFileRecord {
        name: file.name().into(),
        bytes: hashing.bytes,
        rows: batch.num_rows() as u64,
        chunks_xxh3: hashing.chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_cover_zero_to_max() {
        assert_eq!(histogram_bin(10.0, 10.0), HISTOGRAM_BINS - 1);
        assert_eq!(histogram_bin(0.01, 10.0), 0);
        assert_eq!(histogram_bin(0.5, 10.0), 0);
        assert_eq!(histogram_bin(0.51, 10.0), 1);
        assert_eq!(histogram_bin(1.0, 0.0), 0);
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
        hashing.close_chunk();
        let expected: Vec<String> = data
            .chunks(CHUNK_BYTES as usize)
            .map(|chunk| format!("{:016x}", XxHash3_64::oneshot(chunk)))
            .collect();
        assert_eq!(hashing.chunks, expected);
    }
}
