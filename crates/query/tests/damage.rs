//! Damaged query files (bit flips, truncation, junk, edited manifests) never make the
//! reader panic or answer wrongly: opening fails, or every answer is an error or the
//! undamaged index's answer, and full verification finds any changed byte.

use std::{path::Path, sync::OnceLock};

use proptest::prelude::*;
use saeidx_query::{
    Aggregate, Exclusions, QueryIndex, Rank, build,
    layout::{QUERY_DIR, QUERY_MANIFEST, QueryFile},
};
use saeidx_query::{
    DocRef, FeatureRequest, TokenFeaturesRequest, TokenPattern, TopFeaturesRequest, TopTextsRequest,
};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};

/// A pristine index with multi-chunk codes and postings files, built once.
fn pristine() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            documents: 300,
            tokens_per_document: (60, 140),
            documents_per_part: 100,
            feature_weights: (0..96)
                .map(|f| {
                    if f % 9 == 0 {
                        0.0
                    } else {
                        1.0 / (1.0 + f as f64)
                    }
                })
                .collect(),
            k: 8,
            value_step: 0.125,
            seed: 5,
        };
        write_synthetic_index(dir.path(), &spec).unwrap();
        build(dir.path()).unwrap();
        dir
    })
    .path()
}

/// Every answer a battery of queries gives, as JSON (errors as their message kind).
fn answers(index: &QueryIndex) -> Vec<Result<String, ()>> {
    let json = |value: Result<serde_json::Value, saeidx_query::QueryError>| {
        value.map(|v| v.to_string()).map_err(|_| ())
    };
    let mut out = Vec::new();
    for feature in [1, 2, 5, 40, 95] {
        for rank in [Rank::Token, Rank::DocumentMax, Rank::DocumentSum] {
            out.push(json(
                index
                    .top_texts(&TopTextsRequest {
                        feature,
                        k: 5,
                        rank,
                        context: 3,
                        exclusions: Exclusions::default(),
                        restrict: Default::default(),
                        token: Default::default(),
                    })
                    .map(|answer| answer.texts)
                    .map(|hits| serde_json::to_value(hits).unwrap()),
            ));
        }
        out.push(json(
            index
                .feature(&FeatureRequest {
                    feature,
                    examples: 2,
                    bands: 3,
                    per_band: 2,
                    neighbours: 3,
                    context: 2,
                    exclusions: Exclusions::default(),
                    restrict: Default::default(),
                })
                .map(|r| serde_json::to_value(r).unwrap()),
        ));
    }
    for doc in [0, 150, 299] {
        out.push(json(
            index
                .top_features(
                    &DocRef::Number(doc),
                    &TopFeaturesRequest {
                        k: 8,
                        aggregate: Aggregate::Sum,
                        tokens: None,
                        exclusions: Exclusions::default(),
                    },
                )
                .map(|answer| answer.features)
                .map(|r| serde_json::to_value(r).unwrap()),
        ));
        out.push(json(
            index
                .document(doc)
                .map(|(id, source, text)| serde_json::json!([id, source, text])),
        ));
    }
    out.push(json(index.live_features().map(|l| serde_json::json!(l))));
    out.extend(token_answers(index));
    out
}

/// Token-conditioned answers (they read `occurrences.bin`).
fn token_answers(index: &QueryIndex) -> Vec<Result<String, ()>> {
    let json = |value: Result<serde_json::Value, saeidx_query::QueryError>| {
        value.map(|v| v.to_string()).map_err(|_| ())
    };
    let mut out = Vec::new();
    for (feature, token) in [
        (1, TokenPattern::Id(100)),
        (5, TokenPattern::Id(555)),
        (2, TokenPattern::Id(1)),
        (40, TokenPattern::Text("the".into())),
        (3, TokenPattern::Regex("^t".into())),
    ] {
        for rank in [Rank::Token, Rank::DocumentSum] {
            out.push(json(
                index
                    .top_texts(&TopTextsRequest {
                        feature,
                        k: 5,
                        rank,
                        context: 2,
                        token: Some(token.clone()),
                        ..TopTextsRequest::default()
                    })
                    .map(|answer| serde_json::to_value(answer.texts).unwrap()),
            ));
        }
    }
    out.push(json(
        index
            .token_features(&TokenFeaturesRequest {
                tokens: vec![TokenPattern::Id(300)],
                k: 5,
                ..TokenFeaturesRequest::default()
            })
            .map(|answer| serde_json::to_value(answer).unwrap()),
    ));
    out
}

fn original_answers() -> &'static Vec<Result<String, ()>> {
    static ANSWERS: OnceLock<Vec<Result<String, ()>>> = OnceLock::new();
    ANSWERS.get_or_init(|| answers(&QueryIndex::open(pristine()).unwrap()))
}

/// A damaged copy of the pristine index.
fn damaged(damage: impl FnOnce(&Path)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in walk(pristine()) {
        let target = copy.path().join(entry.strip_prefix(pristine()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    damage(&copy.path().join(QUERY_DIR));
    copy
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Opening fails, or every answer is an error or the original answer.
fn check_never_wrong(dir: &Path, must_fail_verification: bool) {
    let Ok(index) = QueryIndex::open(dir) else {
        return;
    };
    for (got, original) in answers(&index).iter().zip(original_answers()) {
        if let Ok(got) = got {
            assert_eq!(
                Ok(got),
                original.as_ref(),
                "a damaged index answered differently"
            );
        }
    }
    if must_fail_verification {
        assert!(
            index.verify_all().is_err(),
            "verification missed a changed byte"
        );
    }
}

fn file_strategy() -> impl Strategy<Value = QueryFile> {
    prop::sample::select(QueryFile::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn bit_flips_are_caught(file in file_strategy(), at in 0.0f64..1.0, bit in 0u8..8) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] ^= 1 << bit;
            std::fs::write(&path, bytes).unwrap();
        });
        check_never_wrong(dir.path(), true);
    }

    #[test]
    fn truncation_and_junk_are_caught(file in file_strategy(), keep in 0.0f64..1.0, junk in 0usize..64) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate((bytes.len() as f64 * keep) as usize);
            bytes.extend(std::iter::repeat_n(0xA5u8, junk));
            std::fs::write(&path, bytes).unwrap();
        });
        assert!(QueryIndex::open(dir.path()).is_err(), "a resized file opened");
    }

    #[test]
    fn edited_manifests_are_caught(at in 0.0f64..1.0, byte in any::<u8>()) {
        let dir = damaged(|query| {
            let path = query.join(QUERY_MANIFEST);
            let mut bytes = std::fs::read(&path).unwrap();
            let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] = byte;
            std::fs::write(&path, bytes).unwrap();
        });
        check_never_wrong(dir.path(), false);
    }
}

#[test]
fn swapped_files_are_caught() {
    let dir = damaged(|query| {
        std::fs::copy(
            query.join(QueryFile::Codes.name()),
            query.join(QueryFile::Postings.name()),
        )
        .unwrap();
    });
    check_never_wrong(dir.path(), true);
}

#[test]
fn query_files_of_other_data_are_refused() {
    let dir = damaged(|_| {});
    let other = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 3,
        tokens_per_document: (2, 4),
        documents_per_part: 3,
        feature_weights: vec![1.0; 96],
        k: 2,
        value_step: 0.5,
        seed: 9,
    };
    write_synthetic_index(other.path(), &spec).unwrap();
    build(other.path()).unwrap();
    std::fs::remove_dir_all(dir.path().join(QUERY_DIR)).unwrap();
    std::fs::rename(other.path().join(QUERY_DIR), dir.path().join(QUERY_DIR)).unwrap();
    let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("built from other index data"), "{error}");
}

/// Makes the query manifest's sizes and chunk checksums agree with the files again,
/// so that damage reaches the readers behind the checksums.
fn recompute_checksums(query: &Path) {
    use saeidx_query::layout::{CHUNK_BYTES, QueryManifest};
    let path = query.join(QUERY_MANIFEST);
    let mut manifest: QueryManifest =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for record in &mut manifest.files {
        let bytes = std::fs::read(query.join(&record.name)).unwrap();
        record.bytes = bytes.len() as u64;
        record.chunks_xxh3 = bytes
            .chunks(CHUNK_BYTES as usize)
            .map(|chunk| format!("{:016x}", twox_hash::XxHash3_64::oneshot(chunk)))
            .collect();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

/// Where, in an Arrow IPC file of one record batch, the message's buffer list starts,
/// and where the message body starts.
fn buffer_list(bytes: &[u8]) -> (usize, usize, usize) {
    let len = bytes.len();
    let footer_len = i32::from_le_bytes(bytes[len - 10..len - 6].try_into().unwrap()) as usize;
    let footer = arrow_ipc::root_as_footer(&bytes[len - 10 - footer_len..len - 10]).unwrap();
    let block = footer.recordBatches().unwrap().get(0);
    let (offset, meta) = (block.offset() as usize, block.metaDataLength() as usize);
    let message = arrow_ipc::root_as_message(&bytes[offset + 8..offset + meta]).unwrap();
    let buffers = message.header_as_record_batch().unwrap().buffers().unwrap();
    let at = buffers.bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    (at, buffers.len(), offset + meta)
}

#[test]
fn inconsistent_arrow_framing_with_valid_checksums_is_an_error_not_a_panic() {
    for file in QueryFile::ALL.into_iter().filter(|file| file.is_arrow()) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            // The last buffer's length (each entry: offset i64, length i64) far past
            // the body: arrow-rs would slice past its buffer and panic.
            let (at, count, _) = buffer_list(&bytes);
            let length = at + (count - 1) * 16 + 8;
            bytes[length..length + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            std::fs::write(&path, bytes).unwrap();
            recompute_checksums(query);
        });
        let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
        assert!(
            error.contains(file.name()) && error.contains("outside the"),
            "{error}"
        );
    }
}

#[test]
fn inconsistent_offsets_with_valid_checksums_are_errors_not_panics() {
    // Feature 0's postings count (the first value of features.arrow's first column)
    // set past every posting, checksums recomputed: its blocks no longer add up.
    let dir = damaged(|query| {
        let path = query.join(QueryFile::Features.name());
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, _, body) = buffer_list(&bytes);
        // Buffer 1 is the first column's values (validity, values per column).
        let values =
            body + u64::from_le_bytes(bytes[at + 16..at + 16 + 8].try_into().unwrap()) as usize;
        bytes[values..values + 4].copy_from_slice(&(u32::MAX - 3).to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        recompute_checksums(query);
    });
    let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("postings.bin"), "{error}");
}

/// Where block file `file`'s `bytes` keep their (packed) directory, and how many
/// 8-byte pieces it spans: per 64 entries a u64 base, the entries in `width` bits, then
/// `width` (u64).
fn directory(file: QueryFile, bytes: &[u8]) -> (usize, usize) {
    let (entries, width) = directory_entries(file, bytes);
    let size = entries.div_ceil(64) * 8 + (entries * width).div_ceil(8) + 8;
    (bytes.len() - 64 - size, size / 8)
}

/// Where block `block` of block file `file` starts.
fn block_start(file: QueryFile, bytes: &[u8], block: usize) -> usize {
    let (entries, width) = directory_entries(file, bytes);
    let (start, _) = directory(file, bytes);
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let base = word(start + block / 64 * 8);
    let bit = block * width;
    let packed = start + entries.div_ceil(64) * 8 + bit / 8;
    let mut window = [0u8; 16];
    let end = (packed + 16).min(bytes.len() - 72);
    window[..end - packed].copy_from_slice(&bytes[packed..end]);
    let relative = (u128::from_le_bytes(window) >> (bit % 8)) as u64 & ((1u64 << width) - 1);
    (base + relative) as usize
}

/// Block file `file`'s directory entries and their width in bits.
fn directory_entries(file: QueryFile, bytes: &[u8]) -> (usize, usize) {
    let trailer = bytes.len() - 64;
    let field = |i: usize| {
        u64::from_le_bytes(
            bytes[trailer + i * 8..trailer + i * 8 + 8]
                .try_into()
                .unwrap(),
        )
    };
    let blocks = match file {
        QueryFile::Tokens => field(0).div_ceil(4096),
        QueryFile::Codes => field(2),
        // The block of which ids occur, then one per id that occurs.
        QueryFile::Occurrences => field(2) + 1,
        // The postings' blocks, then the blocks of block maxima and block order.
        _ => field(2) + 2,
    };
    let width = u64::from_le_bytes(bytes[trailer - 8..trailer].try_into().unwrap());
    (blocks as usize + 1, width as usize)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Block directories, trailers and block contents changed behind valid checksums:
    /// every answer is an error or the undamaged answer, and verification fails.
    #[test]
    fn inconsistent_block_files_with_valid_checksums_are_errors_not_panics(
        file in prop::sample::select(vec![
            QueryFile::Tokens,
            QueryFile::Codes,
            QueryFile::Postings,
            QueryFile::Occurrences,
        ]),
        place in 0usize..3,
        at in 0.0f64..1.0,
        value in prop::sample::select(vec![0u64, 1, 7, 8, 255, 1 << 20, 1 << 40, u64::MAX]),
        bit in 0u8..8,
    ) {
        let dir = damaged(|query| {
            let path = query.join(file.name());
            let mut bytes = std::fs::read(&path).unwrap();
            let (start, entries) = directory(file, &bytes);
            match place {
                // A directory offset.
                0 => {
                    let i = start + ((entries as f64 * at) as usize).min(entries - 1) * 8;
                    bytes[i..i + 8].copy_from_slice(&value.to_le_bytes());
                }
                // A trailer field.
                1 => {
                    let i = bytes.len() - 64 + ((7.0 * at) as usize).min(6) * 8;
                    bytes[i..i + 8].copy_from_slice(&value.to_le_bytes());
                }
                // A bit of a block.
                _ => {
                    let i = 8 + ((start - 8) as f64 * at) as usize;
                    bytes[i.min(start - 1)] ^= 1 << bit;
                }
            }
            std::fs::write(&path, bytes).unwrap();
            recompute_checksums(query);
        });
        let Ok(index) = QueryIndex::open(dir.path()) else {
            return Ok(());
        };
        // Answers are computed without a panic; a changed directory or trailer that
        // changes a successful answer fails verification (a changed bit inside a
        // block, such as a token id, may change an answer the checksums vouched for).
        let changed = answers(&index)
            .iter()
            .zip(original_answers())
            .any(|(got, original)| got.is_ok() && got != original);
        if place != 2 && changed {
            prop_assert!(index.verify_all().is_err());
        }
    }
}

#[test]
fn verification_checks_every_row_behind_the_checksums() {
    // A statistic changed and its checksums recomputed: the chunks verify, the rows
    // do not (the stored max of feature 1 no longer equals its postings' max).
    let dir = damaged(|query| {
        let path = query.join(QueryFile::Features.name());
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, _, body) = buffer_list(&bytes);
        // Buffer 7 holds the `max` column's values (validity, values per column).
        let max = body
            + u64::from_le_bytes(bytes[at + 7 * 16..at + 7 * 16 + 8].try_into().unwrap()) as usize;
        let feature_1 = max + 4;
        let value = f32::from_le_bytes(bytes[feature_1..feature_1 + 4].try_into().unwrap());
        bytes[feature_1..feature_1 + 4].copy_from_slice(&(value * 2.0).to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        recompute_checksums(query);
    });
    let index = QueryIndex::open(dir.path()).unwrap();
    let error = index.verify_all().unwrap_err().to_string();
    assert!(error.contains("feature 1's statistics"), "{error}");
    let pristine_index = QueryIndex::open(pristine()).unwrap();
    assert!(pristine_index.verify_all().is_ok());
}

#[test]
fn verify_refuses_a_query_folder_without_its_manifest() {
    let dir = damaged(|query| std::fs::remove_file(query.join(QUERY_MANIFEST)).unwrap());
    let error = saeidx_query::verify_query_files(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("manifest.json") && error.contains("missing"),
        "{error}"
    );
    // A Parquet-only folder (no query folder at all) is a valid index without them.
    std::fs::remove_dir_all(dir.path().join(QUERY_DIR)).unwrap();
    assert_eq!(saeidx_query::verify_query_files(dir.path()).unwrap(), None);
    assert!(
        saeidx_query::verify_query_files(pristine())
            .unwrap()
            .unwrap()
            > 0
    );
}

#[test]
fn a_buffer_holding_part_of_a_value_is_an_error_not_a_panic() {
    // The documents' id offsets (buffer 1: i32 values) two bytes longer, inside the
    // body's padding: arrow-rs's size checks pass, its typed view would assert.
    let dir = damaged(|query| {
        let path = query.join(QueryFile::Documents.name());
        let mut bytes = std::fs::read(&path).unwrap();
        let (at, _, _) = buffer_list(&bytes);
        let length = at + 16 + 8;
        let old = u64::from_le_bytes(bytes[length..length + 8].try_into().unwrap());
        bytes[length..length + 8].copy_from_slice(&(old + 2).to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        recompute_checksums(query);
    });
    let error = QueryIndex::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("values of 4 bytes"), "{error}");
}

#[test]
fn occurrences_changed_behind_valid_checksums_fail_verification() {
    // In the block of the 40th id that occurs: its number of texts, the first bit of its
    // first occurrence, and its flags.
    for place in 0..3 {
        let dir = damaged(|query| {
            let path = query.join(QueryFile::Occurrences.name());
            let mut bytes = std::fs::read(&path).unwrap();
            let block = block_start(QueryFile::Occurrences, &bytes, 40);
            let varint = |cursor: &mut usize| {
                let mut value = 0usize;
                for shift in (0..).step_by(7) {
                    let byte = bytes[*cursor];
                    *cursor += 1;
                    value |= usize::from(byte & 0x7f) << shift;
                    if byte < 0x80 {
                        return value;
                    }
                }
                unreachable!()
            };
            let mut cursor = block;
            for _ in 0..varint(&mut cursor) {
                cursor += varint(&mut cursor);
            }
            varint(&mut cursor);
            let flags = cursor;
            match place {
                0 => bytes[block] ^= 1,
                1 => bytes[flags + 2] ^= 1,
                _ => bytes[flags] ^= 1,
            }
            std::fs::write(&path, bytes).unwrap();
            recompute_checksums(query);
        });
        if let Ok(index) = QueryIndex::open(dir.path()) {
            let error = index.verify_all().unwrap_err().to_string();
            assert!(error.contains("occurrences.bin"), "{place}: {error}");
        }
    }
}
