//! An opened query index and the questions it answers.

use std::{
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use arrow_array::{
    Array, BinaryArray, FixedSizeListArray, LargeBinaryArray, RecordBatch, StringArray,
    cast::AsArray,
    types::{Float32Type, Float64Type, UInt32Type, UInt64Type},
};
use arrow_buffer::ScalarBuffer;
use rand::{SeedableRng, rngs::StdRng};
use saeidx_format::manifest::Manifest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    answers::FeatureRequest,
    blocks::{CodesFile, PostingsFile, TokenEntry, TokensFile},
    build::{histogram_bin, histogram_top},
    by_token::OnToken,
    codec::unpack_histogram,
    error::QueryError,
    layout::{
        FLAG_SINK, FLAG_SPECIAL, HISTOGRAM_BINS, OCCURRENCES_FORMAT_VERSION,
        OLDEST_QUERY_FORMAT_VERSION, QUERY_DIR, QUERY_FORMAT, QUERY_FORMAT_VERSION, QUERY_MANIFEST,
        QueryCounts, QueryFile, QueryManifest, index_data_sha256,
    },
    limits::Limit,
    mapped::MappedFile,
    occurrences::OccurrencesFile,
    rank::DecodedCodes,
    registry::{FeatureLabel, Registry},
    restrict::DocSet,
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

    /// Leaves out nothing.
    pub fn none() -> Self {
        Self {
            special: false,
            sinks: false,
        }
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
    /// Histogram of activations: equal bins over `(0, histogram_max]`.
    pub histogram: Vec<u32>,
    /// The histogram's upper edge: the smallest power of two at least `max_activation`
    /// (1 when the feature is not active), so that histograms of parts of an index (its
    /// segments) add up exactly.
    pub histogram_max: f64,
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
    /// The output tokens the feature's decoder direction promotes and suppresses;
    /// `null` when the index has no logit effects (`saeidx query logits` builds them).
    pub logits: Option<crate::logits::FeatureLogits>,
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
    pub(crate) tokens: TokensFile,
    pub(crate) codes: CodesFile,
    pub(crate) postings: PostingsFile,
    pub(crate) features: Features,
    /// `occurrences.bin`, when the folder has it (built before it, it has not).
    pub(crate) occurrences: Option<OccurrencesFile>,
    /// Tokens neither special nor sinks, counted from `tokens.bin` on first use and
    /// checked against the query manifest's `counts.content_tokens`.
    content_tokens: OnceLock<u64>,
    /// `query/logit_effects.bin`, once read and checked ([`crate::logits`]).
    pub(crate) logits_cache: OnceLock<Arc<saeidx_format::logits::LogitEffects>>,
    /// The Parquet documents table without texts, read when a filter first needs it.
    pub(crate) metadata: OnceLock<RecordBatch>,
    /// Every token id that occurs with its text, built when a token pattern needs it.
    pub(crate) vocabulary: OnceLock<crate::by_token::Vocabulary>,
    /// Every token id's occurrences, built when a token-conditioned question first
    /// needs them (`None`: too many tokens to hold).
    pub(crate) token_positions: OnceLock<Option<crate::by_token::TokenPositions>>,
}

pub(crate) struct Documents {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) id: StringArray,
    pub(crate) source: StringArray,
    pub(crate) text: LargeBinaryArray,
    pub(crate) first_token: ScalarBuffer<u64>,
    pub(crate) tokens: ScalarBuffer<u32>,
}

pub(crate) struct Features {
    pub(crate) file: Arc<MappedFile>,
    /// Where each feature's postings start (query formats before 5; later, the sum of
    /// the postings before it).
    pub(crate) first_posting: Option<ScalarBuffer<u64>>,
    pub(crate) postings: ScalarBuffer<u32>,
    pub(crate) count: ScalarBuffer<u32>,
    pub(crate) documents: ScalarBuffer<u32>,
    pub(crate) max: ScalarBuffer<f32>,
    pub(crate) sum: ScalarBuffer<f64>,
    pub(crate) histogram: Histograms,
    /// Smallest counted value (query format 3; `None` in version 2, whose histograms
    /// are binned over `(0, max]` and not used).
    pub(crate) min: Option<ScalarBuffer<f32>>,
}

/// Every feature's histogram as `features.arrow` stores it.
pub(crate) enum Histograms {
    /// [`HISTOGRAM_BINS`] u32 per feature (query formats before 5).
    Fixed(ScalarBuffer<u32>),
    /// One packed histogram per feature ([`crate::codec::pack_histogram`]).
    Packed(BinaryArray),
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

impl Documents {
    fn of(file: Arc<MappedFile>, batch: &RecordBatch) -> Self {
        Documents {
            id: batch.column(0).as_string::<i32>().clone(),
            source: batch.column(1).as_string::<i32>().clone(),
            text: batch.column(2).as_binary::<i64>().clone(),
            first_token: u64s(batch, 3),
            tokens: u32s(batch, 4),
            file,
        }
    }
}

impl Features {
    /// The columns of a batch with a schema of [`QueryFile::Features`] (checked).
    fn of(file: Arc<MappedFile>, batch: &RecordBatch) -> Option<Self> {
        let schema = batch.schema();
        let at = |name: &str| schema.index_of(name).ok();
        let column = batch.column(at("histogram")?);
        let histogram = match column.as_binary_opt::<i32>() {
            Some(packed) => Histograms::Packed(packed.clone()),
            None => Histograms::Fixed(
                column
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()?
                    .values()
                    .as_primitive::<UInt32Type>()
                    .values()
                    .clone(),
            ),
        };
        Some(Features {
            first_posting: at("first_posting").map(|i| u64s(batch, i)),
            postings: u32s(batch, at("postings")?),
            count: u32s(batch, at("count")?),
            documents: u32s(batch, at("documents")?),
            max: f32s(batch, at("max")?),
            sum: batch
                .column(at("sum")?)
                .as_primitive::<Float64Type>()
                .values()
                .clone(),
            histogram,
            min: at("min").map(|i| f32s(batch, i)),
            file,
        })
    }
}

/// Reads `query/manifest.json` of the index in `dir` and checks it against the index
/// manifest (format, version, data hash, counts, one record per file).
fn read_query_manifest(dir: &Path, manifest: &Manifest) -> Result<QueryManifest, QueryError> {
    let query_path = dir.join(QUERY_DIR).join(QUERY_MANIFEST);
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
    let version: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("not a query manifest: {e}")))?;
    if let Some(found) = version["format_version"].as_u64()
        && !(u64::from(OLDEST_QUERY_FORMAT_VERSION)..=u64::from(QUERY_FORMAT_VERSION))
            .contains(&found)
        && version["format"] == QUERY_FORMAT
    {
        return Err(QueryError::Version {
            path: query_path,
            found: u32::try_from(found).unwrap_or(u32::MAX),
            expected: QUERY_FORMAT_VERSION,
        });
    }
    let query: QueryManifest = serde_json::from_value(version)
        .map_err(|e| corrupt(format!("not a query manifest: {e}")))?;
    if query.format != QUERY_FORMAT {
        return Err(corrupt(format!(
            "format {:?} is not {QUERY_FORMAT:?}",
            query.format
        )));
    }
    if query.chunk_bytes != crate::layout::CHUNK_BYTES {
        return Err(corrupt(format!("chunk size {}", query.chunk_bytes)));
    }
    if query.index_data_sha256 != index_data_sha256(manifest) {
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
    // Documents and features are numbered with u32.
    if counts.documents > u64::from(u32::MAX) || counts.features > u64::from(u32::MAX) {
        return Err(corrupt(
            "more documents or features than u32 numbers".into(),
        ));
    }
    if !(QueryFile::REQUIRED..=QueryFile::ALL.len()).contains(&query.files.len()) {
        return Err(corrupt(format!("{} files listed", query.files.len())));
    }
    let expected_rows = [
        counts.documents,
        counts.tokens,
        counts.nonzeros,
        counts.nonzeros,
        counts.features,
        counts.tokens,
    ];
    for ((file, record), rows) in QueryFile::ALL.iter().zip(&query.files).zip(expected_rows) {
        if record.name != file.name() {
            return Err(corrupt(format!(
                "it lists {:?} where {:?} belongs",
                record.name,
                file.name()
            )));
        }
        if record.rows != rows {
            return Err(corrupt(format!(
                "{} has {} rows where the index needs {rows}",
                record.name, record.rows
            )));
        }
    }
    Ok(query)
}

impl QueryIndex {
    /// Opens the query files of the index in `dir`, checking that they belong to its
    /// data (format, version, the index's data hash, counts) and that their framing is
    /// intact. Data chunks are checked when first used.
    pub fn open(dir: &Path) -> Result<Self, QueryError> {
        let manifest = Manifest::read(dir).map_err(saeidx_format::verify::VerifyError::from)?;
        let query = read_query_manifest(dir, &manifest)?;
        let query_dir = dir.join(QUERY_DIR);
        let counts = query.counts;
        let record = |file: QueryFile| &query.files[file as usize];
        let version = query.format_version;
        let (file, batch) = MappedFile::open(
            &query_dir,
            QueryFile::Documents,
            record(QueryFile::Documents),
            version,
        )?;
        let documents = Documents::of(file, &batch);
        let (file, batch) = MappedFile::open(
            &query_dir,
            QueryFile::Features,
            record(QueryFile::Features),
            version,
        )?;
        let features = Features::of(file, &batch).ok_or_else(|| {
            QueryError::corrupt(
                query_dir.join(QueryFile::Features.name()),
                "features.arrow has no histogram list",
            )
        })?;
        let raw = |file: QueryFile| MappedFile::open_raw(&query_dir, file, record(file));
        let tokens = TokensFile::open(raw(QueryFile::Tokens)?, counts.tokens)?;
        let codes = CodesFile::open(
            raw(QueryFile::Codes)?,
            counts.tokens,
            counts.nonzeros,
            manifest.job.sae.d_sae,
        )?;
        features.file.ensure(features.postings.as_ref())?;
        let per_feature = features.postings.iter().map(|n| u64::from(*n)).collect();
        let postings = PostingsFile::open(raw(QueryFile::Postings)?, per_feature, counts.tokens)?;
        // Version 3's `occurrences.bin` had fixed-width records: such a folder is read
        // as one built before the file (occurrences from `tokens.bin` when first asked).
        let occurrences = match query.files.get(QueryFile::Occurrences as usize) {
            Some(record) if version >= OCCURRENCES_FORMAT_VERSION => Some(OccurrencesFile::open(
                MappedFile::open_raw(&query_dir, QueryFile::Occurrences, record)?,
                counts.tokens,
            )?),
            _ => None,
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
            occurrences,
            content_tokens: OnceLock::new(),
            logits_cache: OnceLock::new(),
            metadata: OnceLock::new(),
            vocabulary: OnceLock::new(),
            token_positions: OnceLock::new(),
        })
    }

    /// The mapped files.
    fn files(&self) -> impl Iterator<Item = &MappedFile> {
        [
            &self.documents.file,
            self.tokens.file(),
            self.codes.file(),
            self.postings.file(),
            &self.features.file,
        ]
        .into_iter()
        .chain(self.occurrences.as_ref().map(|file| file.file()))
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

    /// [`QueryIndex::check_intact`] for the files read under question ticket `ticket`
    /// or a newer one only ([`crate::reads`]).
    pub(crate) fn check_read_since(&self, ticket: u64) -> Result<(), QueryError> {
        for file in self.files().filter(|file| file.read_since(ticket)) {
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
        let counted = self.tokens_without(Exclusions::default().mask())?;
        if counted != self.query.counts.content_tokens {
            return Err(QueryError::corrupt(
                self.dir.join(QUERY_DIR).join(QUERY_MANIFEST),
                format!(
                    "counts.content_tokens is {} but tokens.bin has {counted} tokens that are neither special nor sinks",
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

    /// Changes the registry as it is on disk, under its lock ([`Registry::update`]:
    /// other writers' saved changes are kept), and keeps the result as this index's
    /// registry.
    pub fn update_registry<T>(
        &mut self,
        change: impl FnOnce(&mut Registry) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let (registry, value) = Registry::update(&self.dir, self.d_sae(), change)?;
        self.registry = registry;
        self.registry_stamp = RegistryStamp::of(&self.dir);
        Ok(value)
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

    /// The postings of `feature`: (token, value), strongest first, ties in token order.
    pub(crate) fn feature_postings(&self, feature: usize) -> Result<Vec<(u64, f32)>, QueryError> {
        self.postings.all(feature)
    }

    /// The codes of global token `token`: features and values, strongest first (ties
    /// by feature).
    pub(crate) fn token_codes(&self, token: u64) -> Result<(Vec<u32>, Vec<f32>), QueryError> {
        let mut out = (Vec::new(), Vec::new());
        self.codes
            .decode(token..token.saturating_add(1), |_, features, values| {
                let mut pairs: Vec<(u32, f32)> = features
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect();
                pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                out = pairs.into_iter().unzip();
                Ok(())
            })?;
        Ok(out)
    }

    /// The entry of global token `token` in `tokens.bin`.
    pub(crate) fn token_entry(&self, token: u64) -> Result<TokenEntry, QueryError> {
        self.tokens.entry(token)
    }

    pub(crate) fn flags(&self, token: u64) -> Result<u8, QueryError> {
        Ok(self.tokens.entry(token)?.flags)
    }

    /// Tokens whose flags have no bit of `mask`.
    pub(crate) fn tokens_without(&self, mask: u8) -> Result<u64, QueryError> {
        let mut counted = 0u64;
        self.tokens.scan(0..self.tokens.tokens(), |_, entry| {
            counted += u64::from(entry.flags & mask == 0);
            Ok(())
        })?;
        Ok(counted)
    }

    /// The document of global token `token` and the token's position in it.
    pub(crate) fn token_doc(&self, token: u64) -> Result<(u32, u32), QueryError> {
        let d = &self.documents;
        d.file.ensure(d.first_token.as_ref())?;
        // The last document starting at or before the token (empty documents share
        // their start with the next one, so the last of them is the one with tokens).
        let doc = d
            .first_token
            .partition_point(|first| *first <= token)
            .checked_sub(1)
            .ok_or_else(|| {
                self.corrupt(
                    QueryFile::Documents,
                    format!("no document holds token {token}"),
                )
            })?;
        let doc = u32::try_from(doc).unwrap_or(u32::MAX);
        let (first, count) = self.doc_tokens(doc)?;
        let position = u32::try_from(token - first)
            .ok()
            .filter(|position| *position < count)
            .ok_or_else(|| {
                self.corrupt(
                    QueryFile::Documents,
                    format!("no document holds token {token}"),
                )
            })?;
        Ok((doc, position))
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
    fn snippet(&self, token: u64, context: u32) -> Result<(u32, u32, u32, Snippet), QueryError> {
        let (doc, position) = self.token_doc(token)?;
        let token_id = self.token_entry(token)?.token;
        let (first, count) = self.doc_tokens(doc)?;
        let (_, _, text) = self.document_texts(doc)?;
        let low = position.saturating_sub(context);
        let high = position.saturating_add(context).min(count - 1);
        let span = |p: u32| -> Result<(usize, usize), QueryError> {
            let entry = self.token_entry(first + u64::from(p))?;
            let (start, end) = (entry.start as usize, entry.end as usize);
            (start <= end && end <= text.len())
                .then_some((start, end))
                .ok_or_else(|| {
                    self.corrupt(
                        QueryFile::Tokens,
                        format!("token {token}: bytes past the text"),
                    )
                })
        };
        let (hit_from, hit_to) = span(position)?;
        let from = floor_char_boundary(text, span(low)?.0);
        let to = ceil_char_boundary(text, span(high)?.1.max(from));
        let hit_start = floor_char_boundary(text, hit_from).clamp(from, to);
        let hit_end = ceil_char_boundary(text, hit_to).clamp(hit_start, to);
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
        token: u64,
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
        scope: Scope<'_>,
    ) -> Result<Vec<TextHit>, QueryError> {
        let f = self.feature_index(feature)?;
        let mask = exclusions.mask();
        let within = scope.within;
        let members = match scope.tokens {
            None => None,
            Some(ids) => match self.on_token(f, k, rank, exclusions, ids, within)? {
                OnToken::Chosen(chosen) => return self.hits(chosen, context),
                OnToken::Walk(members) => members,
            },
        };
        // Whether a posting's token counts: one of the token's occurrences (when they
        // are known), not left out, and of a wanted token id.
        let counts = |token: u64| -> Result<bool, QueryError> {
            if members
                .as_ref()
                .is_some_and(|m| m.binary_search(&token).is_err())
            {
                return Ok(false);
            }
            let entry = self.token_entry(token)?;
            if entry.flags & mask != 0 {
                return Ok(false);
            }
            match scope.tokens {
                None => Ok(true),
                Some(ids) => self.token_matches(ids, token, entry),
            }
        };
        let mut chosen: Vec<(u64, f32, f32)> = Vec::with_capacity(k.min(1024));
        match rank {
            Rank::Token => {
                self.postings
                    .strongest_among(f, within, members.as_deref(), |token, value| {
                        if chosen.len() == k {
                            return Ok(false);
                        }
                        if counts(token)? {
                            chosen.push((token, value, value));
                        }
                        Ok(chosen.len() < k)
                    })?;
            }
            Rank::DocumentMax => {
                let mut seen = std::collections::HashSet::new();
                self.postings
                    .strongest_among(f, within, members.as_deref(), |token, value| {
                        if chosen.len() == k {
                            return Ok(false);
                        }
                        if counts(token)? && seen.insert(self.token_doc(token)?.0) {
                            chosen.push((token, value, value));
                        }
                        Ok(chosen.len() < k)
                    })?;
            }
            Rank::DocumentSum => {
                // Per document: (sum, strongest token, its value).
                let mut by_doc: HashMap<u32, (f64, u64, f32)> = HashMap::new();
                for (token, value) in self.feature_postings(f)? {
                    if within.is_some_and(|set| !set.contains_token(token)) || !counts(token)? {
                        continue;
                    }
                    let (doc, _) = self.token_doc(token)?;
                    // Postings come strongest first, so the first token seen is the max.
                    let entry = by_doc.entry(doc).or_insert((0.0, token, value));
                    entry.0 += f64::from(value);
                }
                let mut docs: Vec<(u32, (f64, u64, f32))> = by_doc.into_iter().collect();
                docs.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
                chosen.extend(
                    docs.into_iter()
                        .take(k)
                        .map(|(_, (sum, token, value))| (token, value, sum as f32)),
                );
            }
        }
        self.hits(chosen, context)
    }

    /// The texts of chosen postings: (token, value, score).
    fn hits(&self, chosen: Vec<(u64, f32, f32)>, context: u32) -> Result<Vec<TextHit>, QueryError> {
        chosen
            .into_iter()
            .map(|(token, value, score)| self.hit(token, value, score, context))
            .collect()
    }

    /// The per-token codes of document `doc` (optionally positions `tokens` only), each
    /// token's features in increasing id order; tokens that `exclusions` leave out are
    /// skipped.
    pub fn document_codes(
        &self,
        doc: u32,
        tokens: Option<Range<u32>>,
        exclusions: Exclusions,
    ) -> Result<DecodedCodes, QueryError> {
        self.answer(self.codes_of_document(doc, tokens, exclusions))
    }

    pub(crate) fn codes_of_document(
        &self,
        doc: u32,
        tokens: Option<Range<u32>>,
        exclusions: Exclusions,
    ) -> Result<DecodedCodes, QueryError> {
        let mut out = DecodedCodes::default();
        self.each_document_token(doc, tokens, exclusions, |position, features, values| {
            out.push(position, features, values);
        })?;
        Ok(out)
    }

    /// Calls `each(position, features, values)` for each token of document `doc`
    /// (optionally positions `tokens` only) in position order, its features in
    /// increasing id order; tokens that `exclusions` leave out are skipped.
    pub(crate) fn each_document_token(
        &self,
        doc: u32,
        tokens: Option<Range<u32>>,
        exclusions: Exclusions,
        mut each: impl FnMut(u32, &[u32], &[f32]),
    ) -> Result<(), QueryError> {
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
        let span = first + u64::from(range.start)..first + u64::from(range.end);
        let mut kept = Vec::with_capacity(range.len());
        self.tokens.scan(span.clone(), |_, entry| {
            kept.push(entry.flags & mask == 0);
            Ok(())
        })?;
        self.codes.decode(span, |token, features, values| {
            let position = (token - first) as u32;
            if kept[(position - range.start) as usize] {
                each(position, features, values);
            }
            Ok(())
        })
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
        let low = position.saturating_sub(context);
        let high = position.saturating_add(context).min(count - 1);
        let mut out = Vec::with_capacity((high - low + 1) as usize);
        let mut cursor: Option<usize> = None;
        for p in low..=high {
            let i = first + u64::from(p);
            let entry = self.token_entry(i)?;
            let start = (entry.start as usize).min(text.len());
            let end = (entry.end as usize).clamp(start, text.len());
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
                flags: entry.flags,
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
        let entry = self.token_entry(first + u64::from(position))?;
        let (_, _, text) = self.document_texts(doc)?;
        Ok((text, entry.start as usize, entry.end as usize))
    }

    /// The token text of position `position` of document `doc`.
    pub fn token_text(&self, doc: u32, position: u32) -> Result<String, QueryError> {
        self.answer(self.text_of_token(doc, position))
    }

    /// [`Self::token_text`] for an answer that checks the files once when it is done.
    pub(crate) fn text_of_token(&self, doc: u32, position: u32) -> Result<String, QueryError> {
        let (text, start, end) = self.stored_span(doc, position)?;
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
        self.answer(self.stats_of(feature, exclusions, None))
    }

    /// Statistics of `feature` over the documents of `within` only (all when `None`);
    /// `count`, `density`, `documents`, the mean and the histogram count only their
    /// tokens, and `postings` their postings.
    pub fn feature_stats_within(
        &self,
        feature: u32,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<FeatureStats, QueryError> {
        self.answer(self.stats_of(feature, exclusions, within))
    }

    pub(crate) fn stats_of(
        &self,
        feature: u32,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<FeatureStats, QueryError> {
        let f = self.feature_index(feature)?;
        let file = &self.features.file;
        let which = QueryFile::Features;
        let postings = match within {
            None => u64::from(self.at(file, which, &self.features.postings, f)?),
            Some(set) => self.kept_postings(f, Exclusions::none(), Some(set))?.len() as u64,
        };
        let computed = match self.stored_stats(f)? {
            Some(stored) if exclusions == Exclusions::default() && within.is_none() => stored,
            _ => self.computed_stats(f, exclusions, within)?,
        };
        let counted = self.counted_tokens(exclusions, within)?;
        Ok(computed.stats(feature, counted, postings, exclusions))
    }

    /// Feature `f`'s stored statistics (default exclusions), `None` for query files of
    /// format version 2 (their histograms are binned otherwise).
    pub(crate) fn stored_stats(&self, f: usize) -> Result<Option<Computed>, QueryError> {
        if self.features.min.is_none() {
            return Ok(None);
        }
        let file = &self.features.file;
        let which = QueryFile::Features;
        let histogram = self.stored_histogram(f)?;
        Ok(Some(Computed {
            count: u64::from(self.at(file, which, &self.features.count, f)?),
            documents: u64::from(self.at(file, which, &self.features.documents, f)?),
            max: self.at(file, which, &self.features.max, f)?,
            sum: self.at(file, which, &self.features.sum, f)?,
            histogram,
        }))
    }

    /// Feature `f`'s stored histogram, its bytes verified.
    pub(crate) fn stored_histogram(&self, f: usize) -> Result<Vec<u32>, QueryError> {
        Ok(match &self.features.histogram {
            Histograms::Fixed(bins) => self
                .range(
                    &self.features.file,
                    QueryFile::Features,
                    bins,
                    (f * HISTOGRAM_BINS) as u64,
                    ((f + 1) * HISTOGRAM_BINS) as u64,
                )?
                .to_vec(),
            Histograms::Packed(column) => self.packed_histogram(column, f)?,
        })
    }

    /// Feature `f`'s packed histogram, its bytes verified and decoded.
    fn packed_histogram(&self, column: &BinaryArray, f: usize) -> Result<Vec<u32>, QueryError> {
        let file = &self.features.file;
        let which = QueryFile::Features;
        let bad = || self.corrupt(which, format!("feature {f}'s histogram does not decode"));
        let pair = column
            .value_offsets()
            .get(f..f.saturating_add(2))
            .ok_or_else(bad)?;
        file.ensure(pair)?;
        let bytes = usize::try_from(pair[0])
            .ok()
            .zip(usize::try_from(pair[1]).ok())
            .and_then(|(start, end)| column.values().get(start..end))
            .ok_or_else(bad)?;
        file.ensure(bytes)?;
        unpack_histogram(bytes, HISTOGRAM_BINS).ok_or_else(bad)
    }

    /// Tokens that `exclusions` leave in.
    pub(crate) fn counted_tokens(
        &self,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<u64, QueryError> {
        let Some(set) = within else {
            if exclusions == Exclusions::default() {
                return self.checked_content_tokens();
            }
            return self.tokens_without(exclusions.mask());
        };
        let mask = exclusions.mask();
        let mut counted = 0u64;
        for range in set.token_ranges() {
            self.tokens.scan(range.clone(), |_, entry| {
                counted += u64::from(entry.flags & mask == 0);
                Ok(())
            })?;
        }
        Ok(counted)
    }

    fn computed_stats(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<Computed, QueryError> {
        let kept = self.kept_postings(f, exclusions, within)?;
        let max = kept.iter().map(|(_, v)| *v).fold(0.0f32, f32::max);
        let mut histogram = vec![0u32; HISTOGRAM_BINS];
        let mut docs = std::collections::HashSet::new();
        let mut sum = 0.0f64;
        for &(token, value) in &kept {
            histogram[histogram_bin(value, max)] += 1;
            sum += f64::from(value);
            docs.insert(self.token_doc(token)?.0);
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
    pub(crate) fn count(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<u64, QueryError> {
        if exclusions == Exclusions::default() && within.is_none() {
            let file = &self.features.file;
            Ok(u64::from(self.at(
                file,
                QueryFile::Features,
                &self.features.count,
                f,
            )?))
        } else {
            Ok(self.kept_postings(f, exclusions, within)?.len() as u64)
        }
    }

    /// Tokens `feature` is active on (with `exclusions` applied, in the documents of
    /// `within` only), in postings order.
    pub(crate) fn kept_postings(
        &self,
        f: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<Vec<(u64, f32)>, QueryError> {
        let mut kept = self.feature_postings(f)?;
        if let Some(set) = within {
            kept.retain(|(token, _)| set.contains_token(*token));
        }
        let mask = exclusions.mask();
        let mut flags = Ok(());
        kept.retain(|(token, _)| match self.flags(*token) {
            Ok(bits) => bits & mask == 0,
            Err(e) => {
                flags = Err(e);
                false
            }
        });
        flags.map(|()| kept)
    }

    /// The `n` features whose token sets overlap `feature`'s most (Jaccard), computed
    /// from the codes of every token `feature` is active on.
    pub fn neighbours(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
    ) -> Result<Vec<Neighbour>, QueryError> {
        self.neighbours_within(feature, n, exclusions, None)
    }

    /// [`Self::neighbours`] over the documents of `within` only: both features' token
    /// sets are restricted to them.
    pub fn neighbours_within(
        &self,
        feature: u32,
        n: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<Vec<Neighbour>, QueryError> {
        Limit::Neighbours.check(n)?;
        let f = self.feature_index(feature)?;
        let kept = self.kept_postings(f, exclusions, within);
        self.answer(kept.and_then(|kept| self.neighbours_of(feature, &kept, n, exclusions, within)))
    }

    /// [`Self::neighbours`] of `feature`, whose counted postings are `kept`.
    fn neighbours_of(
        &self,
        feature: u32,
        kept: &[(u64, f32)],
        n: usize,
        exclusions: Exclusions,
        within: Option<&DocSet>,
    ) -> Result<Vec<Neighbour>, QueryError> {
        let mut together: HashMap<u32, u64> = HashMap::new();
        let mut tokens: Vec<u64> = kept.iter().map(|(token, _)| *token).collect();
        tokens.sort_unstable();
        for token in tokens {
            self.codes.decode(token..token + 1, |_, features, _| {
                for &other in features {
                    if other != feature {
                        *together.entry(other).or_default() += 1;
                    }
                }
                Ok(())
            })?;
        }
        let mut counted = Vec::with_capacity(together.len());
        for (other, both) in together {
            counted.push((other, both, self.count(other as usize, exclusions, within)?));
        }
        Ok(ranked_neighbours(kept.len() as u64, counted, n))
    }

    /// Everything about one feature (see [`FeatureRequest`]).
    pub(crate) fn report(
        &self,
        request: &FeatureRequest,
        within: Option<&DocSet>,
    ) -> Result<FeatureReport, QueryError> {
        let FeatureRequest {
            feature,
            examples,
            bands,
            per_band,
            neighbours,
            context,
            exclusions,
            restrict: _,
        } = *request;
        let stats = self.stats_of(feature, exclusions, within)?;
        let top_texts = self.ranked_texts(
            feature,
            examples,
            Rank::Token,
            context,
            exclusions,
            Scope::docs(within),
        )?;
        let kept = self.kept_postings(feature as usize, exclusions, within)?;
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
            neighbours: self.neighbours_of(feature, &kept, neighbours, exclusions, within)?,
            logits: self.feature_logits(feature)?,
            decoder_neighbours: None,
        })
    }

    /// `n` features chosen at random (seeded) among those active on some counted
    /// token, in increasing id order.
    pub fn sample_features(&self, n: usize, seed: u64) -> Result<Vec<u32>, QueryError> {
        let live = self.live_features()?;
        self.sample_among(&live, n, seed)
    }

    /// `n` of `live` chosen at random (seeded), in increasing id order.
    pub(crate) fn sample_among(
        &self,
        live: &[u32],
        n: usize,
        seed: u64,
    ) -> Result<Vec<u32>, QueryError> {
        sample_among(live, n, seed)
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

/// Which postings a top-texts question looks at, besides exclusions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scope<'a> {
    /// Only tokens of these documents.
    pub(crate) within: Option<&'a DocSet>,
    /// Only tokens with these ids.
    pub(crate) tokens: Option<&'a crate::by_token::TokenIds>,
}

impl<'a> Scope<'a> {
    /// Tokens of `within`'s documents (all when `None`).
    pub(crate) fn docs(within: Option<&'a DocSet>) -> Self {
        Self {
            within,
            tokens: None,
        }
    }
}

/// A feature's statistics before they become [`FeatureStats`].
pub(crate) struct Computed {
    pub(crate) count: u64,
    pub(crate) documents: u64,
    pub(crate) max: f32,
    pub(crate) sum: f64,
    pub(crate) histogram: Vec<u32>,
}

impl Computed {
    /// The answer, with `counted` tokens the density's denominator.
    pub(crate) fn stats(
        self,
        feature: u32,
        counted: u64,
        postings: u64,
        exclusions: Exclusions,
    ) -> FeatureStats {
        let count = self.count;
        FeatureStats {
            feature,
            count,
            density: if counted == 0 {
                0.0
            } else {
                count as f64 / counted as f64
            },
            documents: self.documents,
            max_activation: self.max,
            mean_activation: if count == 0 {
                0.0
            } else {
                (self.sum / count as f64) as f32
            },
            histogram: self.histogram,
            histogram_max: histogram_top(self.max),
            postings,
            exclusions,
        }
    }
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
pub(crate) struct RegistryStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl RegistryStamp {
    /// The stamp of `dir`'s registry file (`None` when there is none).
    pub(crate) fn of(dir: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.join(crate::registry::REGISTRY_FILE)).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// `n` of `live` chosen at random (seeded), in increasing id order.
pub(crate) fn sample_among(live: &[u32], n: usize, seed: u64) -> Result<Vec<u32>, QueryError> {
    Limit::Sample.check(n)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked: Vec<u32> = rand::seq::index::sample(&mut rng, live.len(), n.min(live.len()))
        .into_iter()
        .map(|i| live[i])
        .collect();
    picked.sort_unstable();
    Ok(picked)
}

/// The `n` features with the highest Jaccard index against a feature active on `own`
/// tokens, from `(feature, tokens active together, tokens the feature is active on)`;
/// ties by feature id.
pub(crate) fn ranked_neighbours(
    own: u64,
    counted: Vec<(u32, u64, u64)>,
    n: usize,
) -> Vec<Neighbour> {
    let mut neighbours: Vec<Neighbour> = counted
        .into_iter()
        .map(|(feature, together, count)| {
            let union = own + count - together.min(count);
            Neighbour {
                feature,
                jaccard: if union == 0 {
                    0.0
                } else {
                    together as f64 / union as f64
                },
                together,
                count,
            }
        })
        .collect();
    neighbours.sort_by(|a, b| {
        b.jaccard
            .total_cmp(&a.jaccard)
            .then(a.feature.cmp(&b.feature))
    });
    neighbours.truncate(n);
    neighbours
}
