//! A labelling run over an index of segments sends the prompts a run over one index of
//! the same live documents sends (the same evidence: top examples, bands, same-token and
//! silent contexts, test texts) and saves the same labels and scores into the index
//! folder's `labels.json`.

use std::{collections::BTreeSet, path::Path, time::Duration};

use saeidx_autointerp::{
    EvidenceOptions, FeatureSelection, LabelRequest, LlmSettings, Silent, Status, Task, run,
};
use saeidx_format::segments::SegmentSet;
use saeidx_query::{AnyIndex, Registry, build};
use saeidx_testkit::{
    llm::{FakeLlm, sensible},
    synthetic::{
        SyntheticSpec, split_into_segments, write_synthetic_index, write_synthetic_index_without,
    },
};

const D_SAE: usize = 8;

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        documents: 24,
        tokens_per_document: (0, 40),
        documents_per_part: 8,
        feature_weights: vec![3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.5],
        k: 2,
        value_step: 0.25,
        seed: 1519,
    }
}

/// An index of three segments with `removed` deleted (`dir/seg`) and one index over the
/// same live documents (`dir/one`).
fn both(dir: &Path, removed: &BTreeSet<u32>) -> (AnyIndex, AnyIndex) {
    let whole = dir.join("whole");
    write_synthetic_index(&whole, &spec()).unwrap();
    let seg = dir.join("seg");
    let mut set = split_into_segments(&whole, &seg, &[0..1, 1..2, 2..3]).unwrap();
    for segment in &set.segments {
        build(&SegmentSet::segment_dir(&seg, &segment.name)).unwrap();
    }
    for segment in &mut set.segments {
        for &doc in removed {
            segment.delete(doc);
        }
    }
    set.publish(&seg).unwrap();
    let one = dir.join("one");
    write_synthetic_index_without(&one, &spec(), removed).unwrap();
    build(&one).unwrap();
    (AnyIndex::open(&seg).unwrap(), AnyIndex::open(&one).unwrap())
}

fn request(url: &str, task: Task) -> LabelRequest {
    LabelRequest {
        task,
        features: FeatureSelection::Live,
        llm: LlmSettings {
            url: url.into(),
            model: "fake-model".into(),
            timeout: Duration::from_secs(10),
            max_retries: 0,
            ..LlmSettings::default()
        },
        evidence: EvidenceOptions {
            top: 3,
            bands: 2,
            per_band: 2,
            same_token: 2,
            silent: 2,
            test: 4,
            context: 3,
            seed: 4,
        },
        concurrency: 1,
        per_prompt: 3,
        // Drafts first, then the scores in a run of their own.
        score: false,
        ..LabelRequest::default()
    }
}

/// Each labelled feature's name, explanation and scores as JSON (dates left out).
fn labels(dir: &Path) -> Vec<(u32, String)> {
    let registry = Registry::load(dir, D_SAE).unwrap();
    registry
        .iter()
        .map(|(feature, label)| {
            let mut scores = label.scores.clone();
            if let Some(scores) = &mut scores {
                scores.scored_at.clear();
            }
            let scores = serde_json::to_string(&scores).unwrap();
            let text = format!("{:?} {:?} {scores}", label.name, label.explanation());
            (feature, text)
        })
        .collect()
}

#[test]
fn a_labelling_run_over_segments_asks_and_saves_as_over_one_index() {
    let tmp = tempfile::tempdir().unwrap();
    let removed: BTreeSet<u32> = [1, 7, 8, 16, 20].into();
    let (seg, one) = both(tmp.path(), &removed);
    for task in [Task::Draft, Task::Score] {
        let ours = FakeLlm::start(|_, seen| sensible(seen));
        let theirs = FakeLlm::start(|_, seen| sensible(seen));
        let got = run(&seg, &request(ours.url(), task), &Silent).unwrap();
        let want = run(&one, &request(theirs.url(), task), &Silent).unwrap();
        let statuses = |report: &saeidx_autointerp::LabelReport| -> Vec<(u32, Status)> {
            report
                .features
                .iter()
                .map(|o| (o.feature, o.status))
                .collect()
        };
        assert_eq!(statuses(&got), statuses(&want), "{task:?}");
        assert!(got.stopped.is_none() && !got.features.is_empty());
        let (sent, expected) = (ours.seen(), theirs.seen());
        assert!(sent.len() >= D_SAE - 1, "{}", sent.len());
        assert_eq!(sent, expected, "{task:?}: the prompts differ");
    }
    let saved = labels(tmp.path().join("seg").as_path());
    assert_eq!(saved.len(), D_SAE);
    assert_eq!(saved, labels(&tmp.path().join("one")));
}
