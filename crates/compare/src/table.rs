//! A comparison as one Parquet table, for DuckDB, Polars and pandas (zstd, written
//! atomically). Schemas: `schemas/compare/matching.schema.json` (two SAEs: one row per
//! feature of A and candidate in B, and one row with a null `b_feature` for a feature
//! of A without candidates) and `schemas/compare/changes.schema.json` (two runs: one
//! row per feature that changed).

use std::{path::Path, sync::Arc};

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, RecordBatch, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};

use crate::{
    CompareError,
    answers::{Comparison, RunComparison, SaeComparison},
};

/// Writes `comparison` as a Parquet table at `path` (temporary name, fsync, rename).
pub fn write_parquet(comparison: &Comparison, path: &Path) -> Result<(), CompareError> {
    let batch = match comparison {
        Comparison::Saes(saes) => matching_batch(saes),
        Comparison::Runs(runs) => changes_batch(runs),
    }
    .map_err(|e| write_error(path, e))?;
    let mut bytes = Vec::new();
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
        .map_err(|e| write_error(path, e))?;
    writer.write(&batch).map_err(|e| write_error(path, e))?;
    writer.close().map_err(|e| write_error(path, e))?;
    saeidx_format::atomic::write_file(path, &bytes).map_err(|e| write_error(path, e))
}

fn write_error(path: &Path, error: impl std::fmt::Display) -> CompareError {
    CompareError::Write {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

/// One row per (feature of A, candidate in B).
fn matching_batch(saes: &SaeComparison) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let split_of: std::collections::HashMap<u32, &Vec<u32>> =
        saes.splits.iter().map(|s| (s.feature, &s.into)).collect();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut rank = Vec::new();
    let mut cosine = Vec::new();
    let mut pearson = Vec::new();
    let mut jaccard = Vec::new();
    let mut together = Vec::new();
    let mut score = Vec::new();
    let mut matched = Vec::new();
    let mut in_split = Vec::new();
    for feature in &saes.features {
        let rows: Vec<Option<&crate::answers::Candidate>> = if feature.candidates.is_empty() {
            vec![None]
        } else {
            feature.candidates.iter().map(Some).collect()
        };
        for (i, candidate) in rows.into_iter().enumerate() {
            a.push(feature.feature);
            b.push(candidate.map(|c| c.feature));
            rank.push(candidate.map(|_| i as u32));
            cosine.push(candidate.map(|c| c.decoder_cosine));
            pearson.push(candidate.and_then(|c| c.pearson));
            jaccard.push(candidate.and_then(|c| c.jaccard));
            together.push(candidate.and_then(|c| c.together));
            score.push(candidate.and_then(|c| c.score));
            matched.push(candidate.is_some_and(|c| feature.matched == Some(c.feature)));
            in_split.push(candidate.is_some_and(|c| {
                split_of
                    .get(&feature.feature)
                    .is_some_and(|into| into.contains(&c.feature))
            }));
        }
    }
    let schema = Schema::new(vec![
        field("a_feature", DataType::UInt32, false),
        field("b_feature", DataType::UInt32, true),
        field("rank", DataType::UInt32, true),
        field("decoder_cosine", DataType::Float32, true),
        field("pearson", DataType::Float64, true),
        field("jaccard", DataType::Float64, true),
        field("together", DataType::UInt64, true),
        field("score", DataType::Float64, true),
        field("matched", DataType::Boolean, false),
        field("split", DataType::Boolean, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(a)),
        Arc::new(UInt32Array::from(b)),
        Arc::new(UInt32Array::from(rank)),
        Arc::new(Float32Array::from(cosine)),
        Arc::new(Float64Array::from(pearson)),
        Arc::new(Float64Array::from(jaccard)),
        Arc::new(UInt64Array::from(together)),
        Arc::new(Float64Array::from(score)),
        Arc::new(BooleanArray::from(matched)),
        Arc::new(BooleanArray::from(in_split)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns)
}

/// One row per feature that changed between two runs.
fn changes_batch(runs: &RunComparison) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let c = &runs.changed;
    let u64s = |i: usize| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(c.iter().map(|x| x.count[i])))
    };
    let f64s = |i: usize| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            c.iter().map(|x| x.density[i]),
        ))
    };
    let max = |i: usize| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(
            c.iter().map(|x| x.max_activation[i]),
        ))
    };
    let mean = |i: usize| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(
            c.iter().map(|x| x.mean_activation[i]),
        ))
    };
    let schema = Schema::new(vec![
        field("feature", DataType::UInt32, false),
        field("count_a", DataType::UInt64, false),
        field("count_b", DataType::UInt64, false),
        field("density_a", DataType::Float64, false),
        field("density_b", DataType::Float64, false),
        field("max_a", DataType::Float32, false),
        field("max_b", DataType::Float32, false),
        field("mean_a", DataType::Float32, false),
        field("mean_b", DataType::Float32, false),
        field("new_examples", DataType::UInt32, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(c.iter().map(|x| x.feature))),
        u64s(0),
        u64s(1),
        f64s(0),
        f64s(1),
        max(0),
        max(1),
        mean(0),
        mean(1),
        Arc::new(UInt32Array::from_iter_values(
            c.iter().map(|x| x.new_examples.len() as u32),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), columns)
}
