//! An opened query index and the questions it answers.

use std::{
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use arrow_array::{
    Array, FixedSizeListArray, LargeBinaryArray, RecordBatch, StringArray,
    cast::AsArray,
    types::{Float32Type, Float64Type, UInt8Type, UInt32Type, UInt64Type},
};
use arrow_buffer::ScalarBuffer;
use rand::{SeedableRng, rngs::StdRng};
use saeidx_format::manifest::Manifest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    answers::FeatureRequest,
    build::histogram_bin,
    error::QueryError,
    layout::{
        FLAG_SINK, FLAG_SPECIAL, HISTOGRAM_BINS, QUERY_DIR, QUERY_FORMAT, QUERY_FORMAT_VERSION,
        QUERY_MANIFEST, QueryCounts, QueryFile, QueryManifest, index_data_sha256,
    },
    limits::Limit,
    mapped::MappedFile,
    rank::TokenCodes,
    registry::{FeatureLabel, Registry},
};

/// Which tokens answers leave out. By default both special tokens (BOS, ...) and
/// attention sinks (the first position of each document or model window) are left
/// out: their activations are artefacts, not content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Exclusions {
    /// Leave out special tokens.
    pub special: bool,
    /// Leave out attention-sink positions.
    pub sinks: bool,
}

impl Default for Exclusions {
    fn default() -> Self {
        Self {
            special: true,
            sinks: true,
        }
    }
}

impl Exclusions {
    /// Whether a token with these flags is left out.
    pub fn leaves_out(self, special: bool, sink: bool) -> bool {
        (self.special && special) || (self.sinks && sink)
    }

    pub(crate) fn mask(self) -> u8 {
        (if self.special { FLAG_SPECIAL } else { 0 }) | (if self.sinks { FLAG_SINK } else { 0 })
    }
}

/// How top texts are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rank {
    /// Each token on its own (a document can appear several times).
    #[default]
    Token,
    /// Each document by its largest activation.
    DocumentMax,
    /// Each document by the sum of its activations.
    DocumentSum,
}

/// A piece of a document around a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Snippet {
    /// The text of the context window.
    pub text: String,
    /// Byte range of the token within `text`.
    pub hit_start: usize,
    /// End of that range.
    pub hit_end: usize,
    /// Whether the document continues before `text`.
    pub more_before: bool,
    /// Whether it continues after.
    pub more_after: bool,
}

impl Snippet {
    /// The snippet on one line with the token marked `[[like this]]`.
    pub fn marked(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r', '\t'], " ");
        format!(
            "{}{}[[{}]]{}{}",
            if self.more_before { "…" } else { "" },
            one_line(&self.text[..self.hit_start]),
            one_line(&self.text[self.hit_start..self.hit_end]),
            one_line(&self.text[self.hit_end..]),
            if self.more_after { "…" } else { "" },
        )
    }
}

/// One text of a `top_texts` answer (and an example of a feature report).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TextHit {
    /// Document number.
    pub doc: u32,
    /// The document's stable id.
    pub id: String,
    /// Its source file.
    pub source: String,
    /// Position of the token in the document.
    pub position: u32,
    /// The token's id.
    pub token: u32,
    /// The feature's activation on the token.
    pub activation: f32,
    /// The ranking score (the activation, or the document's sum).
    pub score: f32,
    /// The context.
    pub snippet: Snippet,
}

/// A feature's statistics over the index's tokens.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureStats {
    /// Feature id.
    pub feature: u32,
    /// Tokens it is active on.
    pub count: u64,
    /// `count` over the tokens counted.
    pub density: f64,
    /// Documents it is active in.
    pub documents: u64,
    /// Largest activation.
    pub max_activation: f32,
    /// Mean activation where active.
    pub mean_activation: f32,
    /// Histogram of activations: equal bins over `(0, max]`.
    pub histogram: Vec<u32>,
    /// Active on excluded tokens too (all postings).
    pub postings: u64,
    /// The exclusions the statistics were computed with.
    pub exclusions: Exclusions,
}

/// Examples from one band of a feature's activation distribution.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct QuantileBand {
    /// Lower bound of the band, as a fraction from the top (0 = strongest).
    pub from: f64,
    /// Upper bound.
    pub to: f64,
    /// Largest activation in the band.
    pub max_activation: f32,
    /// Smallest activation in the band.
    pub min_activation: f32,
    /// Examples spread evenly over the band.
    pub examples: Vec<TextHit>,
}

/// A feature that fires on the same tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Neighbour {
    /// Feature id.
    pub feature: u32,
    /// Jaccard similarity of the two features' token sets.
    pub jaccard: f64,
    /// Tokens where both are active.
    pub together: u64,
    /// Tokens where the neighbour is active.
    pub count: u64,
}

/// A feature whose decoder direction is near another's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecoderNeighbour {
    /// Feature id.
    pub feature: u32,
    /// Cosine of the two features' decoder directions.
    pub cosine: f32,
}

/// The answer of `feature`: everything about one feature.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FeatureReport {
    /// Statistics.
    pub stats: FeatureStats,
    /// The registry's label.
    pub label: Option<FeatureLabel>,
    /// Strongest examples.
    pub top_texts: Vec<TextHit>,
    /// Examples across the activation distribution, from the top band down.
    pub bands: Vec<QuantileBand>,
    /// Co-activating features, most similar first.
    pub neighbours: Vec<Neighbour>,
    /// Features whose decoder directions are nearest by cosine, nearest first, as many
    /// as `neighbours` asks for (read from the SAE file the index records by
    /// `saeidx_compare::feature_report`, which the front ends answer with); `null` when
    /// that file was not available.
    pub decoder_neighbours: Option<Vec<DecoderNeighbour>>,
}

/// One token of a context window ([`QueryIndex::window`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowToken {
    /// Position in the document.
    pub position: u32,
    /// Its piece of the text.
    pub text: String,
    /// The feature's activation on it (0 when inactive).
    pub activation: f32,
    /// Bit 0: special token; bit 1: attention sink.
    pub flags: u8,
}

/// A memory-mapped, validated query index.
///
/// Every answer is checked, after it is computed, against the files having changed on
/// disk since they were opened ([`QueryIndex::check_intact`]): a file truncated or
/// rewritten in place under an open index gives [`QueryError::Changed`], never a crash
/// or a silently wrong answer. Answers that borrow from the files (`document`,
/// `document_codes`) are checked when they are returned; a caller that keeps them
/// while files may change calls `check_intact` again after using them.
pub struct QueryIndex {
    dir: PathBuf,
    manifest: Manifest,
    query: QueryManifest,
    registry: Registry,
    /// What `labels.json` was when `registry` was read from it (or written).
    registry_stamp: Option<RegistryStamp>,
    pub(crate) documents: Documents,
    pub(crate) tokens: Tokens,
    pub(crate) codes: Pairs,
    pub(crate) postings: Pairs,
    pub(crate) features: Features,
    /// Tokens neither special nor sinks, counted from `tokens.arrow` on first use and
    /// checked against the query manifest's `counts.content_tokens`.
    content_tokens: OnceLock<u64>,
}

pub(crate) struct Documents {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) id: StringArray,
    pub(crate) source: StringArray,
    pub(crate) text: LargeBinaryArray,
    pub(crate) first_token: ScalarBuffer<u64>,
    pub(crate) tokens: ScalarBuffer<u32>,
}

pub(crate) struct Tokens {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) doc: ScalarBuffer<u32>,
    pub(crate) position: ScalarBuffer<u32>,
    pub(crate) token: ScalarBuffer<u32>,
    pub(crate) start: ScalarBuffer<u32>,
    pub(crate) end: ScalarBuffer<u32>,
    pub(crate) flags: ScalarBuffer<u8>,
    pub(crate) first_code: ScalarBuffer<u64>,
}

/// A (u32 key, f32 value) file: codes (feature, value) or postings (token, value).
pub(crate) struct Pairs {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) key: ScalarBuffer<u32>,
    pub(crate) value: ScalarBuffer<f32>,
}

pub(crate) struct Features {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) first_posting: ScalarBuffer<u64>,
    pub(crate) postings: ScalarBuffer<u32>,
    pub(crate) count: ScalarBuffer<u32>,
    pub(crate) documents: ScalarBuffer<u32>,
    pub(crate) max: ScalarBuffer<f32>,
    pub(crate) sum: ScalarBuffer<f64>,
    pub(crate) histogram: ScalarBuffer<u32>,
}

fn u32s(batch: &RecordBatch, i: usize) -> ScalarBuffer<u32> {
    batch
        .column(i)
        .as_primitive::<UInt32Type>()
        .values()
        .clone()
}

fn u64s(batch: &RecordBatch, i: usize) -> ScalarBuffer<u64> {
    batch
        .column(i)
        .as_primitive::<UInt64Type>()
        .values()
        .clone()
}

fn f32s(batch: &RecordBatch, i: usize) -> ScalarBuffer<f32> {
    batch
        .column(i)
        .as_primitive::<Float32Type>()
        .values()
        .clone()
}

impl QueryIndex {
    /// Opens the query files of the index in `dir`, checking that they belong to its
    /// data (format, version, the index's data hash, counts) and that their framing is
    /// intact. Data chunks are checked when first used.
    #[expect(
        clippy::too_many_lines,
        reason = "split by the v2 query files (issue 14), which replace this reader"
    )]
    pub fn open(dir: &Path) -> Result<Self, QueryError> {
        let manifest = Manifest::read(dir).map_err(saeidx_format::verify::VerifyError::from)?;
        let query_dir = dir.join(QUERY_DIR);
        let query_path = query_dir.join(QUERY_MANIFEST);
        let bytes = match std::fs::read(&query_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(QueryError::NotBuilt {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(QueryError::io(&query_path)(e)),
        };
        let corrupt = |reason: String| QueryError::corrupt(&query_path, reason);
        let query: QueryManifest = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a query manifest: {e}")))?;
        if query.format != QUERY_FORMAT {
            return Err(corrupt(format!(
                "format {:?} is not {QUERY_FORMAT:?}",
                query.format
            )));
        }
        if query.format_version != QUERY_FORMAT_VERSION {
            return Err(QueryError::Version {
                path: query_path,
                found: query.format_version,
                expected: QUERY_FORMAT_VERSION,
            });
        }
        if query.chunk_bytes != crate::layout::CHUNK_BYTES {
            return Err(corrupt(format!("chunk size {}", query.chunk_bytes)));
        }
        if query.index_data_sha256 != index_data_sha256(&manifest) {
            return Err(corrupt(
                "built from other index data than this folder's (the Parquet files or the job changed)"
                    .into(),
            ));
        }
        let counts = query.counts;
        if counts.documents != manifest.counts.documents
            || counts.tokens != manifest.counts.tokens
            || counts.nonzeros != manifest.counts.nonzeros
            || counts.features != manifest.job.sae.d_sae as u64
        {
            return Err(corrupt(
                "its counts differ from the index manifest's".into(),
            ));
        }
        if counts.content_tokens > counts.tokens {
            return Err(corrupt(format!(
                "{} content tokens of {} tokens",
                counts.content_tokens, counts.tokens
            )));
        }
        // Documents and tokens are numbered with u32 in the files.
        if counts.documents > u64::from(u32::MAX) || counts.tokens > u64::from(u32::MAX) {
            return Err(corrupt("more documents or tokens than u32 numbers".into()));
        }
        if query.files.len() != QueryFile::ALL.len() {
            return Err(corrupt(format!("{} files listed", query.files.len())));
        }
        let expected_rows = [
            counts.documents,
            counts.tokens,
            counts.nonzeros,
            counts.nonzeros,
            counts.features,
        ];
        let mut opened = Vec::new();
        for ((file, record), rows) in QueryFile::ALL.iter().zip(&query.files).zip(expected_rows) {
            if record.rows != rows {
                return Err(corrupt(format!(
                    "{} has {} rows where the index needs {rows}",
                    record.name, record.rows
                )));
            }
            opened.push(MappedFile::open(&query_dir, *file, record)?);
        }
        let mut opened = opened.into_iter();
        let mut next = || opened.next().expect("one per query file");

        let (file, batch) = next();
        let documents = Documents {
            id: batch.column(0).as_string::<i32>().clone(),
            source: batch.column(1).as_string::<i32>().clone(),
            text: batch.column(2).as_binary::<i64>().clone(),
            first_token: u64s(&batch, 3),
            tokens: u32s(&batch, 4),
            file,
        };
        let (file, batch) = next();
        let tokens = Tokens {
            doc: u32s(&batch, 0),
            position: u32s(&batch, 1),
            token: u32s(&batch, 2),
            start: u32s(&batch, 3),
            end: u32s(&batch, 4),
            flags: batch.column(5).as_primitive::<UInt8Type>().values().clone(),
            first_code: u64s(&batch, 6),
            file,
        };
        let (file, batch) = next();
        let codes = Pairs {
            key: u32s(&batch, 0),
            value: f32s(&batch, 1),
            file,
        };
        let (file, batch) = next();
        let postings = Pairs {
            key: u32s(&batch, 0),
            value: f32s(&batch, 1),
            file,
        };
        let (file, batch) = next();
        let histogram = batch
            .column(6)
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .map(|list| list.values().as_primitive::<UInt32Type>().values().clone())
            .ok_or_else(|| corrupt("features.arrow has no histogram list".into()))?;
        let features = Features {
            first_posting: u64s(&batch, 0),
            postings: u32s(&batch, 1),
            count: u32s(&batch, 2),
            documents: u32s(&batch, 3),
            max: f32s(&batch, 4),
            sum: batch
                .column(5)
                .as_primitive::<Float64Type>()
                .values()
                .clone(),
            histogram,
            file,
        };
        // Stamped before it is read: a change in between shows as a change later.
        let registry_stamp = RegistryStamp::of(dir);
        let registry = Registry::load(dir, manifest.job.sae.d_sae)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            query,
            registry,
            registry_stamp,
            documents,
            tokens,
            codes,
            postings,
            features,
            content_tokens: OnceLock::new(),
        })
    }

    /// The five mapped files.
    fn files(&self) -> [&MappedFile; 5] {
        [
            &self.documents.file,
            &self.tokens.file,
            &self.codes.file,
            &self.postings.file,
            &self.features.file,
        ]
    }

    /// Checks every chunk of every query file against its checksum (so later answers
    /// verify nothing more). Returns the bytes checked.
    pub fn verify_chunks(&self) -> Result<u64, QueryError> {
        for file in self.files() {
            file.ensure_all()?;
        }
        self.answer(Ok(self.query.files.iter().map(|f| f.bytes).sum()))
    }

    /// Checks every chunk of every query file, then that the files agree with each
    /// other and with the query manifest in every row (what `saeidx verify` adds to the
    /// Parquet checks; see [`crate::consistency`]). Returns the bytes checked.
    pub fn verify_all(&self) -> Result<u64, QueryError> {
        self.verify_chunks()?;
        self.answer(self.check_consistency())?;
        self.answer(self.checked_content_tokens())?;
        Ok(self.query.files.iter().map(|f| f.bytes).sum())
    }

    /// An error if a query file was truncated or rewritten in place since the index was
    /// opened ([`QueryError::Changed`]): answers computed since then must be discarded
    /// and the index opened again. Every answer of this type is checked this way before
    /// it is returned; a server that keeps an index open calls this to decide to reopen
    /// it. Costs one `fstat` per file.
    pub fn check_intact(&self) -> Result<(), QueryError> {
        for file in self.files() {
            file.check_unchanged()?;
        }
        Ok(())
    }

    /// `result`, unless the files changed while it was computed.
    pub(crate) fn answer<T>(&self, result: Result<T, QueryError>) -> Result<T, QueryError> {
        self.check_intact()?;
        result
    }

    /// The index's totals, with `content_tokens` checked against the token flags.
    pub fn counts(&self) -> Result<QueryCounts, QueryError> {
        let content_tokens = self.answer(self.checked_content_tokens())?;
        Ok(QueryCounts {
            content_tokens,
            ..self.query.counts
        })
    }

    /// Tokens that are neither special nor sinks, counted from the flags once and
    /// required to equal the query manifest's count (a derived count is never trusted).
    fn checked_content_tokens(&self) -> Result<u64, QueryError> {
        if let Some(counted) = self.content_tokens.get() {
            return Ok(*counted);
        }
        let t = &self.tokens;
        t.file.ensure(t.flags.as_ref())?;
        let mask = Exclusions::default().mask();
        let counted = t.flags.iter().filter(|flags| **flags & mask == 0).count() as u64;
        if counted != self.query.counts.content_tokens {
            return Err(QueryError::corrupt(
                self.dir.join(QUERY_DIR).join(QUERY_MANIFEST),
                format!(
                    "counts.content_tokens is {} but tokens.arrow has {counted} tokens that are neither special nor sinks",
                    self.query.counts.content_tokens
                ),
            ));
        }
        Ok(*self.content_tokens.get_or_init(|| counted))
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The query manifest.
    pub fn query_manifest(&self) -> &QueryManifest {
        &self.query
    }

    /// The feature registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Replaces the registry and saves it with the index (atomically).
    pub fn save_registry(&mut self, registry: Registry) -> Result<PathBuf, QueryError> {
        let path = registry.save(&self.dir)?;
        self.registry = registry;
        self.registry_stamp = RegistryStamp::of(&self.dir);
        Ok(path)
    }

    /// Reads the registry again from the index folder (after another writer, such as
    /// a labelling run or another process's label edit, saved it).
    pub fn reload_registry(&mut self) -> Result<&Registry, QueryError> {
        let stamp = RegistryStamp::of(&self.dir);
        self.registry = Registry::load(&self.dir, self.d_sae())?;
        self.registry_stamp = stamp;
        Ok(&self.registry)
    }

    /// Whether `labels.json` changed on disk (written, replaced or removed by another
    /// writer) since the registry was read or saved: one `stat`.
    pub fn registry_changed(&self) -> bool {
        RegistryStamp::of(&self.dir) != self.registry_stamp
    }

    /// The SAE's number of features.
    pub fn d_sae(&self) -> usize {
        self.manifest.job.sae.d_sae
    }

    /// Documents in the index.
    pub fn documents(&self) -> u32 {
        // `open` refused counts past u32.
        u32::try_from(self.query.counts.documents).unwrap_or(u32::MAX)
    }

    pub(crate) fn feature_index(&self, feature: u32) -> Result<usize, QueryError> {
        if (feature as usize) < self.d_sae() {
            Ok(feature as usize)
        } else {
            Err(QueryError::FeatureOutOfRange {
                feature,
                d_sae: self.d_sae(),
            })
        }
    }

    pub(crate) fn corrupt(&self, file: QueryFile, reason: String) -> QueryError {
        QueryError::corrupt(self.dir.join(QUERY_DIR).join(file.name()), reason)
    }

    /// `values[i]`, its chunk verified.
    pub(crate) fn at<T: Copy>(
        &self,
        file: &MappedFile,
        which: QueryFile,
        values: &[T],
        i: usize,
    ) -> Result<T, QueryError> {
        let slice = values
            .get(i..i.saturating_add(1))
            .ok_or_else(|| self.corrupt(which, format!("row {i} is missing")))?;
        file.ensure(slice)?;
        Ok(slice[0])
    }

    /// `values[range]`, its chunks verified.
    pub(crate) fn range<'a, T>(
        &self,
        file: &MappedFile,
        which: QueryFile,
        values: &'a [T],
        start: u64,
        end: u64,
    ) -> Result<&'a [T], QueryError> {
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(start, end)| values.get(start..end))
            .ok_or_else(|| {
                self.corrupt(which, format!("rows {start}..{end} are outside the file"))
            })?;
        file.ensure(slice)?;
        Ok(slice)
    }

    /// The feature-major postings of `feature`: tokens and values, strongest first.
    pub(crate) fn feature_postings(&self, feature: usize) -> Result<(&[u32], &[f32]), QueryError> {
        let f = &self.features;
        let start = self.at(&f.file, QueryFile::Features, &f.first_posting, feature)?;
        let len = self.at(&f.file, QueryFile::Features, &f.postings, feature)?;
        let end = start.saturating_add(u64::from(len));
        let p = &self.postings;
        Ok((
            self.range(&p.file, QueryFile::Postings, &p.key, start, end)?,
            self.range(&p.file, QueryFile::Postings, &p.value, start, end)?,
        ))
    }

    /// The codes of global token `token`: features and values, strongest first.
    pub(crate) fn token_codes(&self, token: usize) -> Result<(&[u32], &[f32]), QueryError> {
        let t = &self.tokens;
        let start = self.at(&t.file, QueryFile::Tokens, &t.first_code, token)?;
        let end = if token + 1 < t.first_code.len() {
            self.at(&t.file, QueryFile::Tokens, &t.first_code, token + 1)?
        } else {
            self.query.counts.nonzeros
        };
        let c = &self.codes;
        let features = self.range(&c.file, QueryFile::Codes, &c.key, start, end)?;
        if let Some(bad) = features.iter().find(|f| **f as usize >= self.d_sae()) {
            return Err(self.corrupt(QueryFile::Codes, format!("feature {bad} out of range")));
        }
        Ok((
            features,
            self.range(&c.file, QueryFile::Codes, &c.value, start, end)?,
        ))
    }

    pub(crate) fn flags(&self, token: u32) -> Result<u8, QueryError> {
        let t = &self.tokens;
        self.at(&t.file, QueryFile::Tokens, &t.flags, token as usize)
    }

    /// The global token range of document `doc`.
    pub(crate) fn doc_tokens(&self, doc: u32) -> Result<(u64, u32), QueryError> {
        let d = &self.documents;
        if doc >= self.documents() {
            return Err(QueryError::UnknownDocument {
                doc: doc.to_string(),
                documents: u64::from(self.documents()),
                hint: "; documents are numbered from 0",
            });
        }
        let first = self.at(&d.file, QueryFile::Documents, &d.first_token, doc as usize)?;
        let count = self.at(&d.file, QueryFile::Documents, &d.tokens, doc as usize)?;
        if first.saturating_add(u64::from(count)) > self.query.counts.tokens {
            return Err(self.corrupt(
                QueryFile::Documents,
                format!("document {doc}'s tokens run past the end"),
            ));
        }
        Ok((first, count))
    }

    /// The number of the document with stable id `id`.
    pub fn document_by_id(&self, id: &str) -> Result<u32, QueryError> {
        self.answer(self.find_document(id))
    }

    fn find_document(&self, id: &str) -> Result<u32, QueryError> {
        let d = &self.documents;
        for doc in 0..self.documents() {
            if self.cell(&d.id, doc)? == id.as_bytes() {
                return Ok(doc);
            }
        }
        Err(QueryError::UnknownDocument {
            doc: format!("{id:?}"),
            documents: u64::from(self.documents()),
            hint: "; ids are the corpus's id field, or file:line",
        })
    }

    /// The bytes of document `doc` in a variable-size column (`id`, `source`, `text`),
    /// with its offsets checked against each other and the column's values (never
    /// trusting that they still are what arrow-rs validated when the file was opened).
    fn cell<'a, A: BytesColumn>(&'a self, column: &'a A, doc: u32) -> Result<&'a [u8], QueryError> {
        let file = &self.documents.file;
        let row = doc as usize;
        let offsets = column.offsets();
        let pair = offsets
            .get(row..row.saturating_add(2))
            .ok_or_else(|| self.corrupt(QueryFile::Documents, format!("row {doc} is missing")))?;
        file.ensure(pair)?;
        let values = column.bytes();
        let bytes = A::bounds(pair[0], pair[1])
            .and_then(|(start, end)| values.get(start..end))
            .ok_or_else(|| {
                self.corrupt(
                    QueryFile::Documents,
                    format!("row {doc}: offsets outside the column"),
                )
            })?;
        file.ensure(bytes)?;
        Ok(bytes)
    }

    /// Document `doc`'s id, source and text.
    pub fn document(&self, doc: u32) -> Result<(&str, &str, &str), QueryError> {
        self.answer(self.document_texts(doc))
    }

    pub(crate) fn document_texts<'a>(
        &'a self,
        doc: u32,
    ) -> Result<(&'a str, &'a str, &'a str), QueryError> {
        let d = &self.documents;
        self.doc_tokens(doc)?;
        let utf8 = |bytes: &'a [u8], what: &str| {
            std::str::from_utf8(bytes).map_err(|_| {
                self.corrupt(
                    QueryFile::Documents,
                    format!("document {doc}'s {what} is not UTF-8"),
                )
            })
        };
        Ok((
            utf8(self.cell(&d.id, doc)?, "id")?,
            utf8(self.cell(&d.source, doc)?, "source")?,
            utf8(self.cell(&d.text, doc)?, "text")?,
        ))
    }

    /// The snippet of `context` tokens each side of global token `token`.
    fn snippet(&self, token: u32, context: u32) -> Result<(u32, u32, u32, Snippet), QueryError> {
        let t = &self.tokens;
        let file = &t.file;
        let i = token as usize;
        let doc = self.at(file, QueryFile::Tokens, &t.doc, i)?;
        let position = self.at(file, QueryFile::Tokens, &t.position, i)?;
        let token_id = self.at(file, QueryFile::Tokens, &t.token, i)?;
        let (first, count) = self.doc_tokens(doc)?;
        if u64::from(token) != first + u64::from(position) || position >= count {
            return Err(self.corrupt(
                QueryFile::Tokens,
                format!("token {token} does not sit at its document position"),
            ));
        }
        let (_, _, text) = self.document_texts(doc)?;
        let low = position.saturating_sub(context);
        let high = position.saturating_add(context).min(count - 1);
        let at = |p: u32, column: &ScalarBuffer<u32>| -> Result<usize, QueryError> {
            let byte = self.at(
                file,
                QueryFile::Tokens,
                column,
                (first + u64::from(p)) as usize,
            )?;
            (byte as usize <= text.len())
                .then_some(byte as usize)
                .ok_or_else(|| {
                    self.corrupt(
                        QueryFile::Tokens,
                        format!("token {token}: bytes past the text"),
                    )
                })
        };
        let from = floor_char_boundary(text, at(low, &t.start)?);
        let to = ceil_char_boundary(text, at(high, &t.end)?.max(from));
        let hit_start = floor_char_boundary(text, at(position, &t.start)?).clamp(from, to);
        let hit_end = ceil_char_boundary(text, at(position, &t.end)?).clamp(hit_start, to);
        let snippet = Snippet {
            text: text[from..to].to_string(),
            hit_start: hit_start - from,
            hit_end: hit_end - from,
            more_before: from > 0,
            more_after: to < text.len(),
        };
        Ok((doc, position, token_id, snippet))
    }

    pub(crate) fn hit(
        &self,
        token: u32,
        activation: f32,
        score: f32,
        context: u32,
    ) -> Result<TextHit, QueryError> {
        let (doc, position, token_id, snippet) = self.snippet(token, context)?;
        let (id, source, _) = self.document_texts(doc)?;
        Ok(TextHit {
            doc,
            id: id.to_string(),
            source: source.to_string(),
            position,
            token: token_id,
            activation,
            score,
            snippet,
        })
    }

    /// The `k` texts where `feature` fires most strongly, ranked per `rank`, each with
    /// `context` tokens of context on each side (limits checked by the caller).
    pub(crate) fn ranked_texts(
        &self,
        feature: u32,
        k: usize,
        rank: Rank,
        context: u32,
        exclusions: Exclusions,
    ) -> Result<Vec<TextHit>, QueryError> {
        let f = self.feature_index(feature)?;
        let (tokens, values) = self.feature_postings(f)?;
        let mask = exclusions.mask();
        let mut chosen: Vec<(u32, f32, f32)> = Vec::with_capacity(k.min(tokens.len()));
        match rank {
            Rank::Token => {
                for (&token, &value) in tokens.iter().zip(values) {
                    if chosen.len() == k {
                        break;
                    }
                    if self.flags(token)? & mask == 0 {
                        chosen.push((token, value, value));
                    }
                }
            }
            Rank::DocumentMax => {
                let mut seen = std::collections::HashSet::new();
                for (&token, &value) in tokens.iter().zip(values) {
                    if chosen.len() == k {
                        break;
                    }
                    if self.flags(token)? & mask != 0 {
                        continue;
                    }
                    let doc = self.at(
                        &self.tokens.file,
                        QueryFile::Tokens,
                        &self.tokens.doc,
                        token as usize,
                    )?;
                    if seen.insert(doc) {
                        chosen.push((token, value, value));
                    }
                }
            }
            Rank::DocumentSum => {
                // Per document: (sum, strongest token, its value, first seen order).
                let mut by_doc: HashMap<u32, (f64, u32, f32)> = HashMap::new();
                for (&token, &value) in tokens.iter().zip(values) {
                    if self.flags(token)? & mask != 0 {
                        continue;
                    }
                    let doc = self.at(
                        &self.tokens.file,
                        QueryFile::Tokens,
                        &self.tokens.doc,
                        token as usize,
                    )?;
                    // Postings come strongest first, so the first token seen is the max.
                    let entry = by_doc.entry(doc).or_insert((0.0, token, value));
                    entry.0 += f64::from(value);
                }
                let mut docs: Vec<(u32, (f64, u32, f32))> = by_doc.into_iter().collect();
                docs.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
                chosen.extend(
                    docs.into_iter()
                        .take(k)
                        .map(|(_, (sum, token, value))| (token, value, sum as f32)),
                );
            }
        }
        chosen
            .into_iter()
            .map(|(token, value, score)| self.hit(token, value, score, context))
            .collect()
    }

    /// The per-token codes of document `doc` (optionally positions `tokens` only), each
    /// token's strongest first; tokens that `exclusions` leave out are skipped.
    pub fn document_codes(
        &self,
        doc: u32,
        tokens: Option<Range<u32>>,
        exclusions: Exclusions,
    ) -> Result<Vec<TokenCodes<'_>>, QueryError> {
        self.answer(self.codes_of_document(doc, tokens, exclusions))
    }

    pub(crate) fn codes_of_document(
        &self,
        doc: u32,
        tokens: Option<Range<u32>>,
        exclusions: Exclusions,
    ) -> Result<Vec<TokenCodes<'_>>, QueryError> {
        if let Some(range) = &tokens
            && range.start > range.end
        {
            return Err(QueryError::ReversedRange {
                start: range.start,
                end: range.end,
            });
        }
        let (first, count) = self.doc_tokens(doc)?;
        let range = tokens.unwrap_or(0..count);
        if range.end > count {
            return Err(QueryError::TokenRange {
                doc,
                start: range.start,
                end: range.end,
                tokens: count,
            });
        }
        let mask = exclusions.mask();
        let mut out = Vec::with_capacity(range.len());
        for position in range {
            let token = first + u64::from(position);
            if self.flags(token as u32)? & mask != 0 {
                continue;
            }
            let (features, values) = self.token_codes(token as usize)?;
            out.push(TokenCodes {
                position,
                features,
                values,
            });
        }
        Ok(out)
    }

    /// The tokens of document `doc` within `context` of `position`, each with its text
    /// piece and `feature`'s activation on it. Pieces concatenate to the window's text
    /// exactly: a piece takes the text from the end of the previous piece to the end of
    /// its token (spaces and any gap included), so tokens that share a UTF-8 character
    /// (byte-level BPE splits) show it once, on the first.
    pub fn window(
        &self,
        doc: u32,
        position: u32,
        context: u32,
        feature: u32,
    ) -> Result<Vec<WindowToken>, QueryError> {
        Limit::Context.check(context)?;
        self.answer(self.window_tokens(doc, position, context, feature))
    }

    fn window_tokens(
        &self,
        doc: u32,
        position: u32,
        context: u32,
        feature: u32,
    ) -> Result<Vec<WindowToken>, QueryError> {
        self.feature_index(feature)?;
        let (first, count) = self.doc_tokens(doc)?;
        if position >= count {
            return Err(QueryError::TokenRange {
                doc,
                start: position,
                end: position + 1,
                tokens: count,
            });
        }
        let (_, _, text) = self.document_texts(doc)?;
        let t = &self.tokens;
        let low = position.saturating_sub(context);
        let high = position.saturating_add(context).min(count - 1);
        let mut out = Vec::with_capacity((high - low + 1) as usize);
        let mut cursor: Option<usize> = None;
        for p in low..=high {
            let i = (first + u64::from(p)) as usize;
            let start =
                (self.at(&t.file, QueryFile::Tokens, &t.start, i)? as usize).min(text.len());
            let end =
                (self.at(&t.file, QueryFile::Tokens, &t.end, i)? as usize).clamp(start, text.len());
            let from = floor_char_boundary(text, cursor.unwrap_or(start));
            let to = ceil_char_boundary(text, end.max(from));
            cursor = Some(to);
            let (features, values) = self.token_codes(i)?;
            let activation = features
                .iter()
                .position(|f| *f == feature)
                .map_or(0.0, |at| values[at]);
            out.push(WindowToken {
                position: p,
                text: text[from..to].to_string(),
                activation,
                flags: self.at(&t.file, QueryFile::Tokens, &t.flags, i)?,
            });
        }
        Ok(out)
    }

    /// Document `doc`'s text and the stored byte range of its token at `position`.
    fn stored_span(&self, doc: u32, position: u32) -> Result<(&str, usize, usize), QueryError> {
        let (first, count) = self.doc_tokens(doc)?;
        if position >= count {
            return Err(QueryError::TokenRange {
                doc,
                start: position,
                end: position + 1,
                tokens: count,
            });
        }
        let t = &self.tokens;
        let i = (first + u64::from(position)) as usize;
        let (_, _, text) = self.document_texts(doc)?;
        let start = self.at(&t.file, QueryFile::Tokens, &t.start, i)? as usize;
        let end = self.at(&t.file, QueryFile::Tokens, &t.end, i)? as usize;
        Ok((text, start, end))
    }

    /// The token text of position `position` of document `doc`.
    pub fn token_text(&self, doc: u32, position: u32) -> Result<String, QueryError> {
        let (text, start, end) = self.answer(self.stored_span(doc, position))?;
        Ok(
            String::from_utf8_lossy(text.as_bytes().get(start..end).unwrap_or_default())
                .into_owned(),
        )
    }

    /// The byte range of position `position` of document `doc` within the document's
    /// text, widened to whole UTF-8 characters (as snippets mark their hit).
    pub fn token_span(&self, doc: u32, position: u32) -> Result<Range<usize>, QueryError> {
        let (text, start, end) = self.answer(self.stored_span(doc, position))?;
        let start = floor_char_boundary(text, start);
        Ok(start..ceil_char_boundary(text, end.max(start)))
    }

    /// Statistics of `feature` (from the stored statistics with the default exclusions,
    /// recomputed from the postings otherwise).
    pub fn feature_stats(
        &self,
        feature: u32,
        exclusions: Exclusions,
    ) -> Result<FeatureStats, QueryError> {
        self.answer(self.stats_of(feature, exclusions))
    }

    fn stats_of(&self, feature: u32, exclusions: Exclusions) -> Result<FeatureStats, QueryError> {
        let f = self.feature_index(feature)?;
        let file = &self.features.file;
        let which = QueryFile::Features;
        let postings = u64::from(self.at(file, which, &self.features.postings, f)?);
        let Computed {
            count,
            documents,
            max,
            sum,
            histogram,
        } = if exclusions == Exclusions::default() {
            let histogram = self.range(
                file,
                which,
                &self.features.histogram,
                (f * HISTOGRAM_BINS) as u64,
                ((f + 1) * HISTOGRAM_BINS) as u64,
            )?;
            Computed {
                count: u64::from(self.at(file, which, &self.features.count, f)?),
                documents: u64::from(self.at(file, which, &self.features.documents, f)?),
                max: self.at(file, which, &self.features.max, f)?,
                sum: self.at(file, which, &self.features.sum, f)?,
                histogram: histogram.to_vec(),
            }
        } else {
            self.computed_stats(f, exclusions)?
        };
        let counted = self.counted_tokens(exclusions)?;
        Ok(FeatureStats {
            feature,
            count,
            density: if counted == 0 {
                0.0
            } else {
                count as f64 / counted as f64
            },
            documents,
            max_activation: max,
            mean_activation: if count == 0 {
                0.0
            } else {
                (sum / count as f64) as f32
            },
            histogram,
            postings,
            exclusions,
        })
    }

    /// Tokens that `exclusions` leave in.
    fn counted_tokens(&self, exclusions: Exclusions) -> Result<u64, QueryError> {
        if exclusions == Exclusions::default() {
            return self.checked_content_tokens();
        }
        let t = &self.tokens;
        t.file.ensure(t.flags.as_ref())?;
        let mask = exclusions.mask();
        Ok(t.flags.iter().filter(|flags| **flags & mask == 0).count() as u64)
    }

    fn computed_stats(&self, f: usize, exclusions: Exclusions) -> Result<Computed, QueryError> {
        let kept = self.kept_postings(f, exclusions)?;
        let max = kept.iter().map(|(_, v)| *v).fold(0.0f32, f32::max);
        let mut histogram = vec![0u32; HISTOGRAM_BINS];
        let mut docs = std::collections::HashSet::new();
        let mut sum = 0.0f64;
        for &(token, value) in &kept {
            histogram[histogram_bin(value, max)] += 1;
            sum += f64::from(value);
            docs.insert(self.at(
                &self.tokens.file,
                QueryFile::Tokens,
                &self.tokens.doc,
                token as usize,
            )?);
        }
        Ok(Computed {
            count: kept.len() as u64,
            documents: docs.len() as u64,
            max,
            sum,
            histogram,
        })
    }

    /// Counted tokens feature `f` is active on (stored for the default exclusions).
    fn count(&self, f: usize, exclusions: Exclusions) -> Result<u64, QueryError> {
        if exclusions == Exclusions::default() {
            let file = &self.features.file;
            Ok(u64::from(self.at(
                file,
                QueryFile::Features,
                &self.features.count,
                f,
            )?))
        } else {
            Ok(self.kept_postings(f, exclusions)?.len() as u64)
        }
    }

    /// Tokens `feature` is active on (with `exclusions` applied), in postings order.
    pub(crate) fn kept_postings(
        &self,
        f: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<(u32, f32)>, QueryError> {
        let (tokens, values) = self.feature_postings(f)?;
        let mask = exclusions.mask();
        let mut kept = Vec::with_capacity(tokens.len());
        for (&token, &value) in tokens.iter().zip(values) {
            if self.flags(token)? & mask == 0 {
                kept.push((token, value));
            }
        }
        Ok(kept)
    }

    /// The `n` features whose token sets overlap `feature`'s most (Jaccard), computed
    /// from the codes of every token `feature` is active on.
    pub fn neighbours(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        Limit::Neighbours.check(n)?;
        let f = self.feature_index(feature)?;
        let kept = self.kept_postings(f, exclusions);
        self.answer(kept.and_then(|kept| self.neighbours_of(feature, &kept, n, exclusions)))
    }

    /// [`Self::neighbours`] of `feature`, whose counted postings are `kept`.
    fn neighbours_of(
        &self,
        feature: u32,
        kept: &[(u32, f32)],
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        let mut together: HashMap<u32, u64> = HashMap::new();
        for &(token, _) in kept {
            let (features, _) = self.token_codes(token as usize)?;
            for &other in features {
                if other != feature {
                    *together.entry(other).or_default() += 1;
                }
            }
        }
        let own = kept.len() as u64;
        let mut neighbours = Vec::with_capacity(together.len());
        for (other, both) in together {
            let count = self.count(other as usize, exclusions)?;
            let union = own + count - both.min(count);
            neighbours.push(Neighbour {
                feature: other,
                jaccard: if union == 0 {
                    0.0
                } else {
                    both as f64 / union as f64
                },
                together: both,
                count,
            });
        }
        neighbours.sort_by(|a, b| {
            b.jaccard
                .total_cmp(&a.jaccard)
                .then(a.feature.cmp(&b.feature))
        });
        neighbours.truncate(n);
        Ok(neighbours)
    }

    /// Everything about one feature (see [`FeatureRequest`]).
    pub(crate) fn report(&self, request: &FeatureRequest) -> Result<FeatureReport, QueryError> {
        let FeatureRequest {
            feature,
            examples,
            bands,
            per_band,
            neighbours,
            context,
            exclusions,
        } = *request;
        let stats = self.stats_of(feature, exclusions)?;
        let top_texts = self.ranked_texts(feature, examples, Rank::Token, context, exclusions)?;
        let kept = self.kept_postings(feature as usize, exclusions)?;
        let mut banded = Vec::with_capacity(bands);
        for band in 0..bands {
            let start = band * kept.len() / bands;
            let end = (band + 1) * kept.len() / bands;
            if start == end {
                continue;
            }
            let len = end - start;
            let picks = per_band.min(len);
            let mut chosen = Vec::with_capacity(picks);
            for i in 0..picks {
                let (token, value) = kept[start + i * len / picks];
                chosen.push(self.hit(token, value, value, context)?);
            }
            banded.push(QuantileBand {
                from: band as f64 / bands as f64,
                to: (band + 1) as f64 / bands as f64,
                max_activation: kept[start].1,
                min_activation: kept[end - 1].1,
                examples: chosen,
            });
        }
        Ok(FeatureReport {
            stats,
            label: self.registry.get(feature).cloned(),
            top_texts,
            bands: banded,
            neighbours: self.neighbours_of(feature, &kept, neighbours, exclusions)?,
            decoder_neighbours: None,
        })
    }

    /// `n` features chosen at random (seeded) among those active on some counted
    /// token, in increasing id order.
    pub fn sample_features(&self, n: usize, seed: u64) -> Result<Vec<u32>, QueryError> {
        Limit::Sample.check(n)?;
        let live = self.live_features()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut picked: Vec<u32> =
            rand::seq::index::sample(&mut rng, live.len(), n.min(live.len()))
                .into_iter()
                .map(|i| live[i])
                .collect();
        picked.sort_unstable();
        Ok(picked)
    }

    /// Features active on at least one counted (non-special, non-sink) token.
    pub fn live_features(&self) -> Result<Vec<u32>, QueryError> {
        self.features_where(|count| count > 0)
    }

    /// Features never active on a counted token (some may fire on sinks or special
    /// tokens only: see their `postings`).
    pub fn dead_features(&self) -> Result<Vec<u32>, QueryError> {
        self.features_where(|count| count == 0)
    }

    /// Features whose stored count satisfies `keep`, in increasing id order.
    fn features_where(&self, keep: impl Fn(u32) -> bool) -> Result<Vec<u32>, QueryError> {
        let f = &self.features;
        let counts = self.range(
            &f.file,
            QueryFile::Features,
            &f.count,
            0,
            self.d_sae() as u64,
        );
        self.answer(counts.map(|counts| {
            (0u32..)
                .zip(counts)
                .filter(|(_, count)| keep(**count))
                .map(|(i, _)| i)
                .collect()
        }))
    }
}

/// A feature's statistics before they become [`FeatureStats`].
struct Computed {
    count: u64,
    documents: u64,
    max: f32,
    sum: f64,
    histogram: Vec<u32>,
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// A variable-size column's raw offsets and bytes (read without arrow-rs's unchecked
/// accessors, so offsets are never trusted).
pub(crate) trait BytesColumn {
    /// The offset type.
    type Offset: Copy;
    /// Row `i` spans `offsets[i]..offsets[i + 1]` of `bytes`.
    fn offsets(&self) -> &[Self::Offset];
    /// The values.
    fn bytes(&self) -> &[u8];
    /// Two offsets as a byte range, if non-negative.
    fn bounds(start: Self::Offset, end: Self::Offset) -> Option<(usize, usize)>;
}

impl BytesColumn for StringArray {
    type Offset = i32;

    fn offsets(&self) -> &[i32] {
        self.value_offsets()
    }

    fn bytes(&self) -> &[u8] {
        self.values().as_slice()
    }

    fn bounds(start: i32, end: i32) -> Option<(usize, usize)> {
        usize::try_from(start).ok().zip(usize::try_from(end).ok())
    }
}

impl BytesColumn for LargeBinaryArray {
    type Offset = i64;

    fn offsets(&self) -> &[i64] {
        self.value_offsets()
    }

    fn bytes(&self) -> &[u8] {
        self.values().as_slice()
    }

    fn bounds(start: i64, end: i64) -> Option<(usize, usize)> {
        usize::try_from(start).ok().zip(usize::try_from(end).ok())
    }
}

/// What identifies the contents of an index's `labels.json` without reading it: the
/// file (inode), its size and its modification time. Registries are replaced by an
/// atomic rename, so every save gives a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RegistryStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl RegistryStamp {
    /// The stamp of `dir`'s registry file (`None` when there is none).
    fn of(dir: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.join(crate::registry::REGISTRY_FILE)).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}
