//! Incremental runs: a job run again on its existing index indexes only what changed.
//!
//! Documents are identified by their id and the SHA-256 of their text. A run over an
//! index of the same job (same model, weights, tokenizer, SAE, hook, windowing: see
//! [`saeidx_format::segments::same_job`]) first compares the corpus with the index's
//! live documents ([`plan`]): *new* documents (an id the index lacks) and *changed* ones
//! (same id, other text) go through the model into a new segment, numbered after the
//! index's last document; the old versions of changed documents and *removed* ones (ids
//! the corpus lacks) are deleted; *unchanged* ones cost nothing. The new segment is a
//! complete index folder written by the ordinary pipeline (so a killed run resumes its
//! parts); `segments.json` then names it and the deletions in one atomic rename.
//!
//! An index written before segments (a folder with `manifest.json` only) becomes
//! segment `seg-000000` at its first append: its files are hard-linked under
//! `segments/seg-000000/`, the set is published, and the old top-level files are then
//! removed (a reader that opened them keeps its mapped files).

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use saeidx_corpus::{CorpusError, documents::Document};
use saeidx_format::{
    checksum::sha256_hex,
    manifest::{JobSpec, MANIFEST_FILE, Manifest},
    segments::{SegmentRecord, SegmentSet, same_job},
    tables::Table,
};
use serde::Serialize;

use crate::{
    IndexError,
    parts::Shard,
    pipeline::{self, DocumentSource, Engine, Event, RunOptions},
};

/// What an incremental run found, before it computed anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Documents whose id the index lacks.
    pub new: u64,
    /// Documents whose text differs from the index's (re-indexed; the old version
    /// deleted).
    pub changed: u64,
    /// Documents of the index the corpus no longer has (deleted).
    pub removed: u64,
    /// Documents the index already holds as they are.
    pub unchanged: u64,
}

impl Changes {
    /// Whether the index already matches the corpus.
    pub fn nothing(&self) -> bool {
        self.new == 0 && self.changed == 0 && self.removed == 0
    }
}

/// What to do: which corpus documents to index, which index documents to delete.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The counts.
    pub changes: Changes,
    /// Positions in the corpus (from 0, in reading order) of the documents to index.
    pub index: Vec<u64>,
    /// Global numbers of the documents to delete, increasing.
    pub delete: Vec<u32>,
}

/// The content hash of a document: the SHA-256 of its text.
pub fn content_hash(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// Compares `corpus` (the job's documents, in reading order, at most `limit`) with the
/// live documents of the index in `dir`.
pub fn plan(
    dir: &Path,
    corpus: impl Iterator<Item = Result<Document, CorpusError>>,
    limit: Option<u64>,
) -> Result<Plan, IndexError> {
    let index = saeidx_query::SegmentedIndex::open(dir)?;
    let mut live: HashMap<String, (u32, String)> = HashMap::new();
    index.each_live_document(|doc, id, text| {
        live.insert(id.to_string(), (doc, content_hash(text)));
    })?;
    let mut plan = Plan::default();
    let mut seen = HashSet::new();
    for (position, document) in (0u64..).zip(corpus.take(limit.unwrap_or(u64::MAX) as usize)) {
        let document = document?;
        match live.get(&document.id) {
            Some((doc, hash)) if *hash == content_hash(&document.text) => {
                plan.changes.unchanged += 1;
                seen.insert(*doc);
            }
            Some((doc, _)) => {
                plan.changes.changed += 1;
                plan.index.push(position);
                plan.delete.push(*doc);
                seen.insert(*doc);
            }
            None => {
                plan.changes.new += 1;
                plan.index.push(position);
            }
        }
    }
    for (doc, _) in live.values() {
        if !seen.contains(doc) {
            plan.changes.removed += 1;
            plan.delete.push(*doc);
        }
    }
    plan.delete.sort_unstable();
    Ok(plan)
}

/// The corpus documents at the positions of a plan, in order.
struct Selected<S> {
    source: S,
    wanted: std::iter::Peekable<std::vec::IntoIter<u64>>,
    position: u64,
}

impl<S: DocumentSource> Iterator for Selected<S> {
    type Item = Result<Document, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let wanted = *self.wanted.peek()?;
            let document = self.source.next()?;
            if document.is_err() {
                return Some(document);
            }
            let position = self.position;
            self.position += 1;
            if position == wanted {
                self.wanted.next();
                return Some(document);
            }
        }
    }
}

impl<S: DocumentSource> DocumentSource for Selected<S> {
    fn skipped(&self) -> u64 {
        self.source.skipped()
    }
}

/// What [`append`] did.
#[derive(Debug, Clone, Serialize)]
pub struct AppendSummary {
    /// The index folder.
    pub index: PathBuf,
    /// What the run found.
    pub changes: Changes,
    /// The segment written (`None`: no new or changed documents).
    pub segment: Option<String>,
    /// Parts the new segment's run computed and resumed.
    pub computed_parts: usize,
    /// Parts found done by an earlier, interrupted run.
    pub resumed_parts: usize,
    /// `segments.json`'s generation after the run (`None`: nothing was published).
    pub generation: Option<u64>,
    /// Live segments after the run.
    pub segments: usize,
    /// Live documents after the run.
    pub documents: u64,
    /// Seconds in the model and the SAE (0 when nothing was computed).
    pub model_s: f64,
}

/// Whether `dir` holds an index (segmented or not) that a run of `job` appends to:
/// `Ok(true)` for the same job, `Ok(false)` when there is no index, and the reason when
/// it is another job's.
pub fn appends_to(dir: &Path, job: &JobSpec) -> Result<bool, IndexError> {
    let existing = match SegmentSet::read(dir)? {
        Some(set) => set.job,
        None => match Manifest::read(dir) {
            Ok(manifest) if manifest.shard.is_none() => manifest.job,
            _ => return Ok(false),
        },
    };
    same_job(&existing, job).map(|()| true).map_err(|reason| IndexError::OtherJob {
        path: dir.to_path_buf(),
        reason: format!(
            "{reason}; an index's segments must share model, weights, tokenizer, SAE, hook and windowing: pass --replace to rebuild it with this job"
        ),
    })
}

/// Where an incremental run writes.
#[derive(Debug, Clone, Copy)]
pub struct AppendTo<'a> {
    /// The index folder.
    pub dir: &'a Path,
    /// How the new segment's query files are built.
    pub query_build: saeidx_query::BuildOptions,
}

/// Runs `job` incrementally on the index in `to.dir` (see the module docs):
/// `plan_source` and `source` read the same corpus (once to compare, once to index).
/// `on_changes` hears what was found before anything is computed.
pub fn append(
    engine: &Engine<'_>,
    job: &JobSpec,
    plan_source: impl DocumentSource,
    source: impl DocumentSource,
    to: AppendTo<'_>,
    on_changes: &mut dyn FnMut(&Changes),
    on_event: &mut dyn FnMut(Event),
) -> Result<AppendSummary, IndexError> {
    let destination = to.dir;
    let lock = saeidx_format::lock::OutputLock::acquire(destination)?;
    let plan = plan(destination, plan_source, job.corpus.max_documents)?;
    on_changes(&plan.changes);
    let mut set = current_set(destination)?;
    let name = format!("seg-{:06}", set.generation + 1);
    if set.generation > 0 {
        // What a compaction retired a grace period ago, and what killed writers left
        // (this run's own unfinished segment is resumed, not deleted).
        let own = [name.clone(), format!(".{name}.partial")];
        crate::compact::clean(destination, &mut set, crate::compact::DEFAULT_GRACE, &own)?;
    }
    let mut summary = AppendSummary {
        index: destination.to_path_buf(),
        changes: plan.changes,
        segment: None,
        computed_parts: 0,
        resumed_parts: 0,
        generation: None,
        segments: set.segments.len(),
        documents: set.live_documents(),
        model_s: 0.0,
    };
    if plan.changes.nothing() {
        return Ok(summary);
    }
    if !plan.index.is_empty() {
        let segment_dir = SegmentSet::segment_dir(destination, &name);
        let first_doc = u32::try_from(set.next_doc()).map_err(|_| IndexError::Corrupt {
            path: destination.to_path_buf(),
            reason: "the index numbers 2^32 documents: compact it first".into(),
        })?;
        let selected = Selected {
            source,
            wanted: plan.index.clone().into_iter().peekable(),
            position: 0,
        };
        let options = RunOptions {
            shard: Shard::WHOLE,
            replace: false,
            first_doc,
            query_build: to.query_build,
            corpus_parts: None,
        };
        let run = pipeline::run(engine, job, selected, &segment_dir, options, on_event)?;
        let counts = run.manifest.counts;
        set.segments.push(SegmentRecord {
            name: name.clone(),
            first_doc,
            documents: counts.documents,
            tokens: counts.tokens,
            deleted: Vec::new(),
        });
        summary.segment = Some(name);
        summary.computed_parts = run.computed_parts;
        summary.resumed_parts = run.resumed_parts;
        summary.model_s = ["model_s", "sae_s"]
            .iter()
            .filter_map(|k| run.manifest.timings.get(*k))
            .sum();
    }
    for segment in &mut set.segments {
        for &doc in &plan.delete {
            segment.delete(doc);
        }
    }
    set.job = saeidx_format::segments::shared_job(job);
    set.publish(destination)?;
    remove_legacy_files(destination)?;
    drop(lock);
    summary.generation = Some(set.generation);
    summary.segments = set.segments.len();
    summary.documents = set.live_documents();
    Ok(summary)
}

/// The index's segment set; an index without one becomes segment `seg-000000` (its
/// files hard-linked under `segments/`, not yet published).
fn current_set(dir: &Path) -> Result<SegmentSet, IndexError> {
    if let Some(set) = SegmentSet::read(dir)? {
        // Left by an append killed between its publish and this cleanup.
        remove_legacy_files(dir)?;
        return Ok(set);
    }
    let manifest = Manifest::read(dir)?;
    let name = "seg-000000";
    let segment = SegmentSet::segment_dir(dir, name);
    if segment.exists() {
        // Left by an append killed before it published: made again from the original.
        fs::remove_dir_all(&segment).map_err(IndexError::io(&segment))?;
    }
    for entry in legacy_entries() {
        let from = dir.join(entry);
        if from.exists() {
            link_tree(&from, &segment.join(entry))?;
        }
    }
    saeidx_format::atomic::sync_dir(&segment)?;
    let mut set = SegmentSet::new(&manifest.job);
    set.segments.push(SegmentRecord {
        name: name.into(),
        first_doc: manifest.parts.first().map_or(0, |p| p.first_doc),
        documents: manifest.counts.documents,
        tokens: manifest.counts.tokens,
        deleted: Vec::new(),
    });
    Ok(set)
}

/// What an index folder written before segments holds besides its labels.
fn legacy_entries() -> [&'static str; 5] {
    [
        MANIFEST_FILE,
        Table::Documents.dir(),
        Table::Tokens.dir(),
        Table::Activations.dir(),
        saeidx_query::layout::QUERY_DIR,
    ]
}

/// Removes the top-level index files a segmented folder no longer reads.
fn remove_legacy_files(dir: &Path) -> Result<(), IndexError> {
    for entry in legacy_entries() {
        let path = dir.join(entry);
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(IndexError::io(&path))?;
        } else if path.exists() {
            fs::remove_file(&path).map_err(IndexError::io(&path))?;
        }
    }
    Ok(())
}

/// Hard-links (or copies, across file systems) `from` to `to`, folders recursively.
pub(crate) fn link_tree(from: &Path, to: &Path) -> Result<(), IndexError> {
    if from.is_dir() {
        fs::create_dir_all(to).map_err(IndexError::io(to))?;
        for entry in fs::read_dir(from).map_err(IndexError::io(from))? {
            let entry = entry.map_err(IndexError::io(from))?;
            link_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(IndexError::io(parent))?;
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(IndexError::io(to))?;
    }
    Ok(())
}
