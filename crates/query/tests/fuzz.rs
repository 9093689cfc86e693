//! A long, seeded, reproducible mutation run over the query-file and manifest readers
//! (a stable-toolchain stand-in for cargo-fuzz, which needs nightly).
//!
//! Each case copies nothing: it mutates one file of a small valid index in a scratch
//! folder (a query file, `query/manifest.json` or `manifest.json`: bit flips, bytes and
//! integers set to edge values, truncation, junk, deleted and duplicated ranges, JSON
//! values replaced or removed), then **recomputes the checksums** the readers check
//! first (each query file's size and chunk xxh3 in the query manifest, and the query
//! manifest's hash of the index manifest), so the mutation reaches the parsers behind
//! them. Then it opens the index and asks every kind of question, runs full
//! verification, and restores the files. A case passes when every call returns (an
//! answer or an error); a panic is recorded with its case number, and a signal or an
//! abort ends the process (the test harness reports it).
//!
//! CI runs a few thousand cases. The long run (README, "Queries"):
//!
//! ```text
//! SAEIDX_FUZZ_CASES=1000000 SAEIDX_FUZZ_SEED=1 \
//!   cargo test --release -p saeidx-query --test fuzz -- --nocapture
//! ```
//!
//! `SAEIDX_FUZZ_FIRST=N` starts at case N (with the same seed every case is the same
//! mutation, so a failing case is replayed with `SAEIDX_FUZZ_FIRST=N SAEIDX_FUZZ_CASES=1`).

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    time::Instant,
};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use saeidx_format::manifest::Manifest;
use saeidx_query::{
    Aggregate, Exclusions, QueryIndex, Rank, build,
    layout::{CHUNK_BYTES, QUERY_DIR, QUERY_MANIFEST, QueryFile, index_data_sha256},
    verify_query_files,
};
use saeidx_query::{DocRef, FeatureRequest, TopFeaturesRequest, TopTextsRequest};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use twox_hash::XxHash3_64;

/// Cases CI runs (the long run sets `SAEIDX_FUZZ_CASES`).
const CI_CASES: u64 = 3_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A small valid index (every kind of row: empty documents, ties, dead features,
/// multi-byte text), written once; its files' bytes by relative path.
fn pristine(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let spec = SyntheticSpec {
        documents: 10,
        tokens_per_document: (0, 9),
        documents_per_part: 4,
        feature_weights: (0..12)
            .map(|f| {
                if f % 5 == 4 {
                    0.0
                } else {
                    1.0 / (1.0 + f as f64)
                }
            })
            .collect(),
        k: 3,
        value_step: 0.25,
        seed: 11,
    };
    write_synthetic_index(dir, &spec).unwrap();
    build(dir).unwrap();
    let mut files = HashMap::new();
    for name in std::iter::once(PathBuf::from("manifest.json")).chain(
        QueryFile::ALL
            .iter()
            .map(|f| f.name())
            .chain([QUERY_MANIFEST])
            .map(|name| Path::new(QUERY_DIR).join(name)),
    ) {
        files.insert(name.clone(), std::fs::read(dir.join(&name)).unwrap());
    }
    files
}

/// Integers worth writing over a length, offset or count.
const EDGES: [u64; 14] = [
    0,
    1,
    2,
    7,
    8,
    255,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x1_0000_0000,
    0x7FFF_FFFF_FFFF_FFFF,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 7,
];

/// One byte-level mutation of `bytes`.
fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut StdRng) {
    let len = bytes.len();
    let at = |rng: &mut StdRng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..8u32) {
        0 | 1 if len > 0 => {
            let i = at(rng);
            bytes[i] ^= 1u8 << rng.random_range(0..8u32);
        }
        2 if len > 0 => {
            let i = at(rng);
            bytes[i] = rng.random();
        }
        3 | 4 if len >= 8 => {
            // An aligned little-endian integer set to an edge value (or near its old one).
            let width = if rng.random_bool(0.5) { 4 } else { 8 };
            let i = (at(rng) / width * width).min(len - width);
            let old = bytes[i..i + width]
                .iter()
                .rev()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b));
            let value = match rng.random_range(0..3u32) {
                0 => EDGES[rng.random_range(0..EDGES.len())],
                1 => old.wrapping_add(rng.random_range(1..=16)),
                _ => old.wrapping_sub(rng.random_range(1..=16)),
            };
            bytes[i..i + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        5 => bytes.truncate(at(rng)),
        6 => {
            let junk = rng.random_range(1..64);
            let value: u8 = if rng.random_bool(0.5) {
                0
            } else {
                rng.random()
            };
            let i = at(rng);
            bytes.splice(i..i, std::iter::repeat_n(value, junk));
        }
        _ if len > 1 => {
            let start = at(rng);
            let end = rng.random_range(start..=len.min(start + 64));
            if rng.random_bool(0.5) {
                bytes.drain(start..end);
            } else {
                let copy = bytes[start..end].to_vec();
                let i = at(rng);
                bytes.splice(i..i, copy);
            }
        }
        _ => bytes.push(rng.random()),
    }
}

/// One structural mutation of a JSON document: a value replaced by an edge value, a
/// key removed, or an array element removed or duplicated.
fn mutate_json(value: &mut serde_json::Value, rng: &mut StdRng) {
    use serde_json::Value;
    let mut leaves = Vec::new();
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(value, &mut Vec::new(), &mut leaves);
    let path = &leaves[rng.random_range(0..leaves.len())];
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut parent = &mut *value;
    for key in parent_path {
        parent = match parent {
            Value::Object(map) => map.get_mut(key).unwrap(),
            Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
            _ => return,
        };
    }
    let replacement = match rng.random_range(0..9u32) {
        0 => Value::from(EDGES[rng.random_range(0..EDGES.len())]),
        1 => Value::from(-1),
        2 => Value::from(rng.random_range(0..64u64)),
        3 => Value::from(1e300),
        4 => Value::Null,
        5 => Value::from("x"),
        6 => Value::Array(Vec::new()),
        _ => {
            match parent {
                Value::Object(map) => {
                    map.remove(last);
                }
                Value::Array(items) => {
                    let i: usize = last.parse().unwrap();
                    if rng.random_bool(0.5) {
                        items.remove(i);
                    } else {
                        let copy = items[i].clone();
                        items.insert(i, copy);
                    }
                }
                _ => {}
            }
            return;
        }
    };
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), replacement);
        }
        Value::Array(items) => items[last.parse::<usize>().unwrap()] = replacement,
        _ => {}
    }
}

/// Makes the checksums agree with the (mutated) files again: each query file's size
/// and chunk checksums in the query manifest, and its hash of the index manifest.
fn recompute_checksums(dir: &Path) {
    let path = dir.join(QUERY_DIR).join(QUERY_MANIFEST);
    let Ok(mut query) =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap_or_default())
    else {
        return;
    };
    if let Some(files) = query.get_mut("files").and_then(|f| f.as_array_mut()) {
        for record in files.iter_mut() {
            let Some(name) = record.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            if !QueryFile::ALL.iter().any(|f| f.name() == name) {
                continue;
            }
            let bytes = std::fs::read(dir.join(QUERY_DIR).join(name)).unwrap_or_default();
            let chunks: Vec<String> = bytes
                .chunks(CHUNK_BYTES as usize)
                .map(|chunk| format!("{:016x}", XxHash3_64::oneshot(chunk)))
                .collect();
            if let Some(record) = record.as_object_mut() {
                record.insert("bytes".into(), bytes.len().into());
                record.insert("chunks_xxh3".into(), chunks.into());
            }
        }
    }
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(
        &std::fs::read(dir.join("manifest.json")).unwrap_or_default(),
    ) && let Some(query) = query.as_object_mut()
    {
        query.insert(
            "index_data_sha256".into(),
            index_data_sha256(&manifest).into(),
        );
    }
    std::fs::write(&path, serde_json::to_vec(&query).unwrap()).unwrap();
}

/// How far a case got.
#[derive(Debug, Default, Clone, Copy)]
struct Reach {
    /// Cases whose index opened.
    opened: u64,
    /// Questions answered (by an opened index).
    answered: u64,
    /// Questions refused with an error (by an opened index).
    refused: u64,
}

/// Asks the index every kind of question; the answers themselves are not checked (a
/// mutated index may answer differently), only that each call returns.
fn ask_everything(dir: &Path) -> Reach {
    let mut reach = Reach::default();
    let _ = verify_query_files(dir);
    let Ok(index) = QueryIndex::open(dir) else {
        return reach;
    };
    reach.opened = 1;
    let mut tally = |ok: bool| {
        if ok {
            reach.answered += 1;
        } else {
            reach.refused += 1;
        }
    };
    let d_sae = index.d_sae() as u32;
    let all = Exclusions {
        special: false,
        sinks: false,
    };
    for feature in 0..=d_sae {
        for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
            tally(
                index
                    .top_texts(&TopTextsRequest {
                        feature,
                        k: 4,
                        rank,
                        context: 2,
                        exclusions: Exclusions::default(),
                        restrict: Default::default(),
                        token: Default::default(),
                    })
                    .map(|answer| answer.texts)
                    .is_ok(),
            );
        }
        tally(
            index
                .feature(&FeatureRequest {
                    feature,
                    examples: 2,
                    bands: 3,
                    per_band: 2,
                    neighbours: 3,
                    context: 1,
                    exclusions: Exclusions::default(),
                    restrict: Default::default(),
                })
                .is_ok(),
        );
        tally(index.feature_stats(feature, all).is_ok());
        tally(index.neighbours(feature, 3, all).is_ok());
    }
    for doc in 0..=index.documents().min(16) {
        tally(
            index
                .top_features(
                    &DocRef::Number(doc),
                    &TopFeaturesRequest {
                        k: 5,
                        aggregate: Aggregate::Sum,
                        tokens: None,
                        exclusions: Exclusions::default(),
                    },
                )
                .map(|answer| answer.features)
                .is_ok(),
        );
        tally(
            index
                .top_features(
                    &DocRef::Number(doc),
                    &TopFeaturesRequest {
                        k: 5,
                        aggregate: Aggregate::Max,
                        tokens: Some(1..3),
                        exclusions: all,
                    },
                )
                .map(|answer| answer.features)
                .is_ok(),
        );
        tally(index.document(doc).is_ok());
        tally(index.window(doc, 1, 2, 1).is_ok());
        tally(index.token_text(doc, 0).is_ok());
        tally(index.token_span(doc, 1).is_ok());
    }
    tally(index.document_by_id("doc-3").is_ok());
    tally(index.sample_features(3, 1).is_ok());
    tally(index.live_features().is_ok());
    tally(index.dead_features().is_ok());
    tally(index.counts().is_ok());
    tally(index.check_intact().is_ok());
    tally(index.verify_all().is_ok());
    reach
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The case's random generator: the same (seed, case) always gives the same mutation.
fn case_rng(seed: u64, case: u64) -> StdRng {
    let mut hasher =
        std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
    hasher.write_u64(seed);
    hasher.write_u64(case);
    StdRng::seed_from_u64(hasher.finish())
}

/// Runs cases `first..first + cases` (every `stride`-th from `offset`) in `dir`;
/// returns (case, panic message) for each panic, and how far the cases got.
fn run_cases(
    dir: &Path,
    files: &HashMap<PathBuf, Vec<u8>>,
    seed: u64,
    cases: std::ops::Range<u64>,
    stride: u64,
    offset: u64,
    reach: &mut Reach,
) -> Vec<(u64, String)> {
    let mut names: Vec<&PathBuf> = files.keys().collect();
    names.sort();
    let mut panics = Vec::new();
    let mut case = cases.start + offset;
    while case < cases.end {
        let mut rng = case_rng(seed, case);
        // Query files 5 of 8 times, the query manifest 2, the index manifest 1.
        let target = match rng.random_range(0..8u32) {
            0..=4 => Path::new(QUERY_DIR)
                .join(QueryFile::ALL[rng.random_range(0..QueryFile::ALL.len())].name()),
            5 | 6 => Path::new(QUERY_DIR).join(QUERY_MANIFEST),
            _ => PathBuf::from("manifest.json"),
        };
        let mut bytes = files[&target].clone();
        let json = target.extension().is_some_and(|e| e == "json");
        for _ in 0..rng.random_range(1..=3u32) {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(mut value) if json && rng.random_bool(0.7) => {
                    mutate_json(&mut value, &mut rng);
                    bytes = serde_json::to_vec_pretty(&value).unwrap();
                }
                _ => mutate_bytes(&mut bytes, &mut rng),
            }
        }
        std::fs::write(dir.join(&target), &bytes).unwrap();
        // Most cases get their checksums recomputed, so the mutation reaches the
        // parsers; the rest test that the checksums catch it.
        if rng.random_bool(0.9) {
            recompute_checksums(dir);
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| ask_everything(dir))) {
            Ok(got) => {
                reach.opened += got.opened;
                reach.answered += got.answered;
                reach.refused += got.refused;
            }
            Err(_) => panics.push((case, LAST_PANIC.with(|p| p.borrow().clone()))),
        }
        for name in &names {
            std::fs::write(dir.join(name), &files[*name]).unwrap();
        }
        case += stride;
    }
    panics
}

#[test]
fn readers_survive_mutated_inputs_with_recomputed_checksums() {
    let cases = env_u64("SAEIDX_FUZZ_CASES", CI_CASES);
    let seed = env_u64("SAEIDX_FUZZ_SEED", 1);
    let first = env_u64("SAEIDX_FUZZ_FIRST", 0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // A memory-backed folder when there is one: every case writes files.
    let scratch_root = Path::new("/dev/shm");
    let make_dir = || {
        if scratch_root.is_dir() {
            tempfile::tempdir_in(scratch_root).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        }
    };
    let origin = make_dir();
    let origin = origin.path();
    let files = pristine(origin);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        // With RUST_BACKTRACE=1 (for replaying a case), where it panicked.
        let message = format!("{info}\n{}", std::backtrace::Backtrace::capture());
        LAST_PANIC.with(|p| *p.borrow_mut() = message);
    }));
    let started = Instant::now();
    eprintln!(
        "fuzz: cases {first}..{} with seed {seed} on {threads} threads",
        first + cases
    );
    let (panics, reach): (Vec<(u64, String)>, Reach) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|offset| {
                let (files, make_dir) = (&files, &make_dir);
                scope.spawn(move || {
                    let scratch = make_dir();
                    for (name, bytes) in files {
                        let path = scratch.path().join(name);
                        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                        std::fs::write(path, bytes).unwrap();
                    }
                    // The Parquet files are read by nothing here but must exist.
                    copy_tree(origin, scratch.path());
                    let mut panics = Vec::new();
                    let mut reach = Reach::default();
                    let block = 10_000;
                    let mut start = first;
                    while start < first + cases {
                        let end = (start + block).min(first + cases);
                        panics.extend(run_cases(
                            scratch.path(),
                            files,
                            seed,
                            start..end,
                            threads,
                            (offset + threads - start % threads) % threads,
                            &mut reach,
                        ));
                        if offset == 0 && cases > block {
                            eprintln!(
                                "fuzz: {end} cases, {} panics, {:.0} s",
                                panics.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                        start = end;
                    }
                    (panics, reach)
                })
            })
            .collect();
        let mut all = (Vec::new(), Reach::default());
        for worker in workers {
            let (panics, reach) = worker.join().unwrap();
            all.0.extend(panics);
            all.1.opened += reach.opened;
            all.1.answered += reach.answered;
            all.1.refused += reach.refused;
        }
        all
    });
    std::panic::set_hook(previous_hook);
    eprintln!(
        "fuzz: {cases} cases in {:.1} s: {} panics, 0 signals or aborts (the process is alive); \
         {} opened an index, which answered {} questions and refused {}",
        started.elapsed().as_secs_f64(),
        panics.len(),
        reach.opened,
        reach.answered,
        reach.refused
    );
    assert!(
        panics.is_empty(),
        "{} cases panicked (replay one with SAEIDX_FUZZ_SEED={seed} SAEIDX_FUZZ_FIRST=N SAEIDX_FUZZ_CASES=1): {:#?}",
        panics.len(),
        &panics[..panics.len().min(20)]
    );
}

/// Copies every file under `from` that `to` does not have yet.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else if !target.exists() {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
