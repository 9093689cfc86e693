//! Synthetic indexes: complete, valid index folders with random documents and sparse
//! codes drawn from a given feature-frequency distribution, written through the same
//! table writer and manifest as a real run. Tests use small ones to check answers
//! against brute force; the query benchmark uses a large one shaped like the default
//! SAE's measured feature frequencies. Nothing here runs a model; the manifest says so.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use rand::{
    Rng, RngExt, SeedableRng, distr::Distribution, distr::weighted::WeightedIndex, rngs::StdRng,
};
use rand_distr::weighted::WeightedAliasIndex;
use rayon::prelude::*;

use saeidx_format::{
    checksum::sha256_file,
    manifest::{
        CorpusRecord, Counts, FORMAT_NAME, FORMAT_VERSION, FileRecord, JobSpec, Manifest,
        ModelRecord, PartRecord, SaeRecord, TokenizerRecord, WindowRecord,
    },
    metadata::MetadataColumn,
    segments::{SegmentRecord, SegmentSet},
    tables::{ActivationRows, DocumentRows, Table, TableError, TableWriter, TokenRows},
};

/// The shape of a synthetic index.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Documents.
    pub documents: usize,
    /// Tokens per document, drawn uniformly from this range (inclusive).
    pub tokens_per_document: (usize, usize),
    /// Documents per part.
    pub documents_per_part: usize,
    /// Relative frequency of each feature (its length is the SAE width); a zero weight
    /// makes a dead feature.
    pub feature_weights: Vec<f64>,
    /// Active features per token (at most; fewer when the live features run out).
    pub k: usize,
    /// Distinct activation values are multiples of this step (a coarse step makes ties).
    pub value_step: f32,
    /// Random seed.
    pub seed: u64,
}

/// Why a synthetic index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    /// A table.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The manifest or a folder.
    #[error(transparent)]
    Write(#[from] saeidx_format::atomic::AtomicWriteError),
    /// Hashing a file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The spec.
    #[error("invalid synthetic spec: {0}")]
    Spec(String),
}

/// Words the synthetic texts are made of (some multi-byte, some with newlines).
const WORDS: [&str; 12] = [
    "the", "state", "union", "Congress", "naïve", "日本", "tax", "peace", "war\n", "é", "—",
    "trade",
];

/// Rewrites the codes drawn for one token (document, position, codes): how
/// [`write_synthetic_index_recoded`] derives an index whose codes are known functions of
/// another's (features permuted, one feature split in two, ...).
pub type Recode<'a> = dyn Fn(u32, u32, BTreeMap<u32, f32>) -> BTreeMap<u32, f32> + Sync + 'a;

/// How each token's features are drawn by frequency.
enum Sampler {
    /// A binary search over the cumulative weights per draw (what every test's seed was
    /// written with).
    Search(WeightedIndex<f64>),
    /// An alias table: one draw in constant time (benchmark-sized indexes).
    Alias(WeightedAliasIndex<f64>),
}

impl Sampler {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        match self {
            Self::Search(index) => index.sample(rng),
            Self::Alias(index) => index.sample(rng),
        }
    }
}

/// Generates and writes part `part` (documents `docs`).
#[allow(clippy::too_many_arguments)]
fn write_part(
    dir: &Path,
    part: u32,
    docs: std::ops::Range<usize>,
    spec: &SyntheticSpec,
    live: &[usize],
    sampler: Option<&Sampler>,
    k: usize,
    metadata: &[MetadataColumn],
    recode: &Recode<'_>,
    removed: &BTreeSet<u32>,
    quick: bool,
    rng: &mut StdRng,
) -> Result<PartRecord, SyntheticError> {
    // Documents in `removed` are drawn (so the others stay the same) but not written;
    // the others are numbered without them.
    let renumber = |d: usize| (d - removed.range(..d as u32).count()) as u32;
    let first_doc = renumber(docs.start);
    let mut kept = (
        DocumentRows::default(),
        TokenRows::default(),
        ActivationRows::default(),
    );
    let mut dropped = kept.clone();
    for d in docs {
        let rows = if removed.contains(&(d as u32)) {
            &mut dropped
        } else {
            &mut kept
        };
        let (documents, tokens, activations) = (&mut rows.0, &mut rows.1, &mut rows.2);
        let number = renumber(d);
        let count = rng.random_range(spec.tokens_per_document.0..=spec.tokens_per_document.1);
        let mut text = String::new();
        for position in 0..count {
            let (start, end) = if position == 0 {
                (0, 0)
            } else {
                if position > 1 {
                    text.push(' ');
                }
                let start = text.len();
                text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
                (start, text.len())
            };
            tokens.doc.push(number);
            tokens.position.push(position as u32);
            tokens.token.push(if position == 0 {
                1
            } else {
                100 + rng.random_range(0..1000)
            });
            tokens.start.push(start as u32);
            tokens.end.push(end as u32);
            tokens.special.push(position == 0);
            tokens.sink.push(position == 0);
            let mut chosen: BTreeMap<u32, f32> = BTreeMap::new();
            if let Some(sampler) = sampler {
                while chosen.len() < k {
                    let feature = live[sampler.sample(rng)] as u32;
                    let steps = rng.random_range(1..=40u32);
                    chosen.insert(feature, steps as f32 * spec.value_step);
                }
            }
            let chosen = recode(d as u32, position as u32, chosen);
            activations.push_token(number, position as u32, chosen);
        }
        documents.doc.push(number);
        documents.id.push(format!("doc-{d}"));
        documents.source.push("synthetic.jsonl".into());
        documents.text.push(text);
        documents.tokens.push(count as u32);
        if !metadata.is_empty() {
            documents.push_metadata(crate::filters::random_metadata(rng));
        }
    }
    write_tables(dir, (part, first_doc), metadata, quick, kept)
}

/// Writes the rows of part `part` (first document `first_doc`) as its three Parquet
/// files.
fn write_tables(
    dir: &Path,
    (part, first_doc): (u32, u32),
    metadata: &[MetadataColumn],
    quick: bool,
    rows: (DocumentRows, TokenRows, ActivationRows),
) -> Result<PartRecord, SyntheticError> {
    let (mut documents, mut tokens, mut activations) = rows;
    let rows = (
        documents.doc.len() as u64,
        tokens.doc.len() as u64,
        activations.len() as u64,
    );
    let mut files = Vec::new();
    for (table, count) in [
        (Table::Documents, rows.0),
        (Table::Tokens, rows.1),
        (Table::Activations, rows.2),
    ] {
        let relative = table.part_path(part);
        let path = dir.join(&relative);
        std::fs::create_dir_all(dir.join(table.dir()))?;
        let mut writer = match table {
            Table::Documents => TableWriter::create_documents(&path, metadata)?,
            _ if quick => TableWriter::create_quick(table, &path)?,
            _ => TableWriter::create(table, &path)?,
        };
        match table {
            Table::Documents => writer.write_documents(std::mem::take(&mut documents))?,
            Table::Tokens => writer.write_tokens(std::mem::take(&mut tokens))?,
            Table::Activations => writer.write_activations(std::mem::take(&mut activations))?,
        }
        writer.finish()?;
        files.push(FileRecord {
            path: relative,
            bytes: std::fs::metadata(&path)?.len(),
            sha256: sha256_file(&path)?,
            rows: count,
        });
    }
    Ok(PartRecord {
        part,
        first_doc,
        documents: rows.0,
        tokens: rows.1,
        nonzeros: rows.2,
        files,
    })
}

/// Writes a synthetic index into the (new or empty) folder `dir` and returns its
/// manifest. Each document starts with a BOS-like special token (empty span) that is
/// also the attention sink; every other token is one word of the text.
pub fn write_synthetic_index(dir: &Path, spec: &SyntheticSpec) -> Result<Manifest, SyntheticError> {
    write_index(
        dir,
        spec,
        &[],
        &|_, _, codes| codes,
        &BTreeSet::new(),
        false,
    )
}

/// [`write_synthetic_index`] without the documents `removed` (numbers of the full
/// index): the other documents are the same (same ids, texts and codes) and keep their
/// order, numbered without the removed ones. What a segmented index with `removed`
/// deleted must answer like.
pub fn write_synthetic_index_without(
    dir: &Path,
    spec: &SyntheticSpec,
    removed: &BTreeSet<u32>,
) -> Result<Manifest, SyntheticError> {
    write_index(dir, spec, &[], &|_, _, codes| codes, removed, false)
}

/// [`write_synthetic_index`] for benchmark indexes of billions of nonzeros: features are
/// drawn from an alias table (constant time per draw rather than a binary search; the
/// same distribution, other draws for the same seed) and the Parquet's activation values
/// are compressed at zstd level 3 ([`TableWriter::create_quick`]: ~7% larger than a
/// run's level 19, which took 95% of the writing time).
pub fn write_synthetic_index_quickly(
    dir: &Path,
    spec: &SyntheticSpec,
) -> Result<Manifest, SyntheticError> {
    write_index(dir, spec, &[], &|_, _, codes| codes, &BTreeSet::new(), true)
}

/// [`write_synthetic_index`] with random document metadata in the columns of
/// [`crate::filters::random_columns`] (declared in the manifest, nulls included).
pub fn write_synthetic_index_with_metadata(
    dir: &Path,
    spec: &SyntheticSpec,
) -> Result<Manifest, SyntheticError> {
    write_index(
        dir,
        spec,
        &crate::filters::random_columns(),
        &|_, _, codes| codes,
        &BTreeSet::new(),
        false,
    )
}

/// [`write_synthetic_index_with_metadata`] without the documents `removed` (see
/// [`write_synthetic_index_without`]): what a segmented index of the full one with
/// `removed` deleted must answer like, filters over the metadata included.
pub fn write_synthetic_index_with_metadata_without(
    dir: &Path,
    spec: &SyntheticSpec,
    removed: &BTreeSet<u32>,
) -> Result<Manifest, SyntheticError> {
    write_index(
        dir,
        spec,
        &crate::filters::random_columns(),
        &|_, _, codes| codes,
        removed,
        false,
    )
}

/// [`write_synthetic_index`] with each token's drawn codes passed through `recode`
/// (features of its answer must be below the spec's width): the same spec and seed give
/// the same documents and drawn codes, so two indexes written with different `recode`s
/// hold the same tokens with codes related as the functions say.
pub fn write_synthetic_index_recoded(
    dir: &Path,
    spec: &SyntheticSpec,
    recode: &Recode<'_>,
) -> Result<Manifest, SyntheticError> {
    write_index(dir, spec, &[], recode, &BTreeSet::new(), false)
}

/// [`write_synthetic_index_recoded`] without the documents `removed` (see
/// [`write_synthetic_index_without`]).
pub fn write_synthetic_index_recoded_without(
    dir: &Path,
    spec: &SyntheticSpec,
    recode: &Recode<'_>,
    removed: &BTreeSet<u32>,
) -> Result<Manifest, SyntheticError> {
    write_index(dir, spec, &[], recode, removed, false)
}

fn write_index(
    dir: &Path,
    spec: &SyntheticSpec,
    metadata: &[MetadataColumn],
    recode: &Recode<'_>,
    removed: &BTreeSet<u32>,
    quick: bool,
) -> Result<Manifest, SyntheticError> {
    let d_sae = spec.feature_weights.len();
    if d_sae == 0
        || spec.documents_per_part == 0
        || spec.tokens_per_document.0 > spec.tokens_per_document.1
    {
        return Err(SyntheticError::Spec(format!("{spec:?}")));
    }
    let live: Vec<usize> = (0..d_sae)
        .filter(|f| spec.feature_weights[*f] > 0.0)
        .collect();
    let weights = live.iter().map(|f| spec.feature_weights[*f]);
    let sampler = match (live.is_empty(), quick) {
        (true, _) => None,
        (false, false) => Some(Sampler::Search(
            WeightedIndex::new(weights).map_err(|e| SyntheticError::Spec(e.to_string()))?,
        )),
        (false, true) => Some(Sampler::Alias(
            WeightedAliasIndex::new(weights.collect())
                .map_err(|e| SyntheticError::Spec(e.to_string()))?,
        )),
    };
    let k = spec.k.min(live.len());
    let starts: Vec<usize> = (0..spec.documents)
        .step_by(spec.documents_per_part)
        .collect();
    // Parts are independent (each has its own seed), so they are written in parallel.
    let parts = starts
        .par_iter()
        .enumerate()
        .map(|(part, &doc)| {
            let end = (doc + spec.documents_per_part).min(spec.documents);
            let mut rng = StdRng::seed_from_u64(
                spec.seed ^ (part as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            write_part(
                dir,
                part as u32,
                doc..end,
                spec,
                &live,
                sampler.as_ref(),
                k,
                metadata,
                recode,
                removed,
                quick,
                &mut rng,
            )
        })
        .collect::<Result<Vec<PartRecord>, SyntheticError>>()?;
    let manifest = synthetic_manifest(spec, d_sae, k, parts, metadata);
    manifest.write(dir)?;
    Ok(manifest)
}

/// The manifest of a synthetic index of `parts`: no model ran, the SAE is `synthetic`.
fn synthetic_manifest(
    spec: &SyntheticSpec,
    d_sae: usize,
    k: usize,
    parts: Vec<PartRecord>,
    metadata: &[MetadataColumn],
) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        saeidx_version: env!("CARGO_PKG_VERSION").into(),
        job: JobSpec {
            model: ModelRecord {
                source: "synthetic (no model ran)".into(),
                revision: None,
                commit: None,
                weights_sha256: String::new(),
                stored_dtype: "none".into(),
                compute_dtype: "none".into(),
                model_type: "synthetic".into(),
                hidden_size: 16,
                hook_width: None,
                num_layers: 1,
            },
            tokenizer: TokenizerRecord {
                sha256: String::new(),
                added_ids: vec![1],
                policy: "synthetic: token 1 (special, empty span) starts every document".into(),
            },
            sae: SaeRecord {
                source: "synthetic".into(),
                location: None,
                format: "synthetic".into(),
                architecture: "topk".into(),
                sha256: String::new(),
                d_in: 16,
                d_sae,
                rule: format!("synthetic: {k} features per token drawn by frequency"),
                settings: Vec::new(),
                norm_scaling_factor: None,
            },
            hook: "blocks.0.hook_resid_post".into(),
            window: WindowRecord {
                length: 1 << 20,
                overlap: 0,
            },
            batch_tokens: 1 << 20,
            positions: "every token; position 0 is the sink".into(),
            values: format!("multiples of {}", spec.value_step),
            corpus: CorpusRecord {
                sources: vec![format!("synthetic seed {}", spec.seed)],
                files: Vec::new(),
                bad_records: "stop".into(),
                max_documents: None,
                part_bytes: 0,
                metadata: metadata.to_vec(),
            },
        },
        shard: None,
        corpus_parts: parts.len() as u64,
        counts: Counts::of_parts(&parts, 0),
        parts,
        timings: BTreeMap::new(),
    }
}

/// Writes the index in `whole` again into `dest` as a segmented index: segment `i`
/// (named `seg-i`) holds the parts `groups[i]` (hard links of `whole`'s files), and
/// `segments.json` names them all, nothing deleted. The segments still need their
/// query files (`saeidx_query::build` on each [`SegmentSet::segment_dir`]).
pub fn split_into_segments(
    whole: &Path,
    dest: &Path,
    groups: &[std::ops::Range<usize>],
) -> Result<SegmentSet, SyntheticError> {
    let manifest = Manifest::read(whole).map_err(|e| SyntheticError::Spec(e.to_string()))?;
    let mut set = SegmentSet::new(&manifest.job);
    for (i, group) in groups.iter().enumerate() {
        let name = format!("seg-{i}");
        let dir = SegmentSet::segment_dir(dest, &name);
        let parts = manifest.parts[group.clone()].to_vec();
        for file in parts.iter().flat_map(|p| &p.files) {
            let target = dir.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::hard_link(whole.join(&file.path), &target)?;
        }
        let counts = Counts::of_parts(&parts, 0);
        set.segments.push(SegmentRecord {
            name,
            first_doc: parts.first().map_or(0, |p| p.first_doc),
            documents: counts.documents,
            tokens: counts.tokens,
            deleted: Vec::new(),
        });
        Manifest {
            parts,
            counts,
            ..manifest.clone()
        }
        .write(&dir)?;
    }
    set.publish(dest)
        .map_err(|e| SyntheticError::Spec(e.to_string()))?;
    Ok(set)
}
