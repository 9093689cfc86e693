//! The Neuronpedia export of an index of segments holds the records the export of one
//! index over the same live documents holds (feature rows, every activation example,
//! explanations, the source's counts); only the record ids differ, as they name the
//! data exported.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::Path,
};

use saeidx_format::segments::SegmentSet;
use saeidx_query::{AnyIndex, build};
use saeidx_share::neuronpedia::{ExportRequest, export};
use saeidx_testkit::synthetic::{
    SyntheticSpec, split_into_segments, write_synthetic_index, write_synthetic_index_without,
};
use serde_json::Value;

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        documents: 30,
        tokens_per_document: (0, 12),
        documents_per_part: 10,
        feature_weights: (0..16).map(|f| 1.0 + (f % 4) as f64).collect(),
        k: 3,
        value_step: 0.25,
        seed: 1518,
    }
}

const LABELS: &str =
    r#"{"2": {"name": "two", "description": "the second"}, "7": {"name": "seven"}}"#;

/// Every record of an export folder, by file kind, ids left out.
fn records(folder: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut all = BTreeMap::new();
    for name in ["model", "sourceset", "source"] {
        let text = std::fs::read_to_string(folder.join(format!("{name}.jsonl"))).unwrap();
        let lines = text.lines().map(|l| serde_json::from_str(l).unwrap());
        all.insert(name.to_string(), lines.collect());
    }
    for kind in ["features", "activations", "explanations"] {
        let mut files: Vec<_> = std::fs::read_dir(folder.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut lines = Vec::new();
        for file in files {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            for line in text.lines() {
                let mut record: Value = serde_json::from_str(line).unwrap();
                if kind != "features" {
                    assert!(record.as_object_mut().unwrap().remove("id").is_some());
                }
                lines.push(record);
            }
        }
        all.insert(kind.to_string(), lines);
    }
    all
}

#[test]
fn an_index_of_segments_exports_as_one_index() {
    let tmp = tempfile::tempdir().unwrap();
    let removed: BTreeSet<u32> = [2, 10, 11, 19, 25].into();
    let whole = tmp.path().join("whole");
    write_synthetic_index(&whole, &spec()).unwrap();
    let seg = tmp.path().join("seg");
    let mut set = split_into_segments(&whole, &seg, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&seg, &segment.name)).unwrap();
    }
    for segment in &mut set.segments {
        for &doc in &removed {
            segment.delete(doc);
        }
    }
    set.publish(&seg).unwrap();
    let one = tmp.path().join("one");
    write_synthetic_index_without(&one, &spec(), &removed).unwrap();
    build(&one).unwrap();
    for dir in [&seg, &one] {
        std::fs::write(dir.join("labels.json"), LABELS).unwrap();
    }
    let request = ExportRequest {
        model_id: "synthetic".into(),
        top_examples: 4,
        bands: 2,
        per_band: 2,
        context: 3,
        features_per_batch: 5,
        ..ExportRequest::default()
    };
    let out = tmp.path().join("out");
    let ours = export(&AnyIndex::open(&seg).unwrap(), &request, &out.join("seg")).unwrap();
    let theirs = export(&AnyIndex::open(&one).unwrap(), &request, &out.join("one")).unwrap();
    assert_eq!(
        (
            ours.features,
            ours.activations,
            ours.explanations,
            ours.batches
        ),
        (
            theirs.features,
            theirs.activations,
            theirs.explanations,
            theirs.batches
        )
    );
    assert!(
        theirs.features >= 12 && theirs.activations > 100,
        "{theirs:?}"
    );
    assert_eq!(theirs.explanations, 2);
    let got = records(&ours.folder);
    assert_eq!(got, records(&theirs.folder));
    assert_eq!(got["source"][0]["num_prompts"], 25);
    // Record ids name the data exported: the segment set's differ from the one index's.
    let id = |folder: &Path| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(folder.join("explanations/batch-0.jsonl.gz")).unwrap(),
        )
        .read_to_string(&mut text)
        .unwrap();
        serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["id"].clone()
    };
    assert_ne!(id(&ours.folder), id(&theirs.folder));
}
