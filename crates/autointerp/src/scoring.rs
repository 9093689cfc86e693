//! Detection and fuzzing, as delphi defines them (`delphi/scorers/classifier/`:
//! `detection.py`, `fuzz.py`, `sample.py`; the metrics of `delphi/log/result_analysis.py`),
//! computed on the index's examples.
//!
//! - **Detection**: the activating test examples and as many contexts where the
//!   feature is silent, shown as plain text; the LLM says for each whether the feature
//!   (as the label describes it) fires in it.
//! - **Fuzzing** (delphi's default kind): the activating test examples with their
//!   tokens at or above 0.3 of the example's largest activation marked, and the silent
//!   contexts with as many tokens marked as an activating example has active tokens on
//!   average (rounded up): the centre token, then others at random (seeded). The LLM
//!   says for each whether the marks are where the feature fires.
//!
//! Samples are shuffled (seeded) and asked `per_prompt` at a time. A batch whose answer
//! has no list of exactly one 0/1 per text counts all its samples as failed; failed
//! samples are left out of the confusion counts. The score is the balanced accuracy
//! `(TP/P + TN/N) / 2`, a class with no answered sample counting 0, as delphi computes
//! it; the counts are kept beside it.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use saeidx_query::registry::ScoreSummary;

use crate::{
    evidence::{Example, FeatureEvidence},
    prompts::{MARK_FRACTION, highlight, plain},
};

/// One text to classify, and the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The text as shown.
    pub text: String,
    /// Whether the right answer is 1 (the feature fires / the marks are right).
    pub activating: bool,
}

/// A sample and the LLM's answer (`None`: no usable answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction {
    /// The truth.
    pub activating: bool,
    /// The answer.
    pub predicted: Option<bool>,
}

/// Detection's samples: test examples (1) and silent contexts (0), as plain text.
pub fn detection_samples(evidence: &FeatureEvidence) -> Vec<Sample> {
    let active = evidence.test_active.iter().map(|e| Sample {
        text: plain(e),
        activating: true,
    });
    let silent = evidence.test_silent.iter().map(|e| Sample {
        text: plain(e),
        activating: false,
    });
    active.chain(silent).collect()
}

/// Fuzzing's samples: test examples marked where the feature fires (1) and silent
/// contexts marked on as many tokens as an example has active ones on average (0).
pub fn fuzzing_samples(evidence: &FeatureEvidence, seed: u64) -> Vec<Sample> {
    let tests = &evidence.test_active;
    if tests.is_empty() {
        return Vec::new();
    }
    let active: usize = tests.iter().map(Example::active_tokens).sum();
    let wrong = active.div_ceil(tests.len()).max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples: Vec<Sample> = tests
        .iter()
        .map(|e| {
            let threshold = e.max() * MARK_FRACTION;
            let marks: Vec<bool> = e.tokens.iter().map(|t| t.activation >= threshold).collect();
            Sample {
                text: highlight(e, &marks),
                activating: true,
            }
        })
        .collect();
    for e in &evidence.test_silent {
        samples.push(Sample {
            text: highlight(e, &wrong_marks(e, wrong, &mut rng)),
            activating: false,
        });
    }
    samples
}

/// `count` marks on a silent context: its centre, then other tokens at random.
fn wrong_marks(example: &Example, count: usize, rng: &mut StdRng) -> Vec<bool> {
    let mut marks = vec![false; example.tokens.len()];
    if marks.is_empty() {
        return marks;
    }
    let centre = example.centre.min(marks.len() - 1);
    marks[centre] = true;
    let mut others: Vec<usize> = (0..marks.len()).filter(|i| *i != centre).collect();
    others.shuffle(rng);
    for i in others.into_iter().take(count.saturating_sub(1)) {
        marks[i] = true;
    }
    marks
}

/// `samples` shuffled (seeded) and cut into prompts of `per_prompt`.
pub fn batches(mut samples: Vec<Sample>, per_prompt: usize, seed: u64) -> Vec<Vec<Sample>> {
    samples.shuffle(&mut StdRng::seed_from_u64(seed));
    samples
        .chunks(per_prompt.max(1))
        .map(<[Sample]>::to_vec)
        .collect()
}

/// The confusion counts and balanced accuracy of `predictions` (delphi's
/// `compute_confusion` and `compute_classification_metrics`).
pub fn summarize(predictions: &[Prediction]) -> ScoreSummary {
    let mut s = ScoreSummary::default();
    for p in predictions {
        match (p.activating, p.predicted) {
            (_, None) => s.failed += 1,
            (true, Some(true)) => s.true_positives += 1,
            (true, Some(false)) => s.false_negatives += 1,
            (false, Some(true)) => s.false_positives += 1,
            (false, Some(false)) => s.true_negatives += 1,
        }
    }
    let rate = |hit: u32, miss: u32| {
        if hit + miss == 0 {
            0.0
        } else {
            f64::from(hit) / f64::from(hit + miss)
        }
    };
    s.balanced_accuracy = (rate(s.true_positives, s.false_negatives)
        + rate(s.true_negatives, s.false_positives))
        / 2.0;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::ExampleToken;

    fn p(activating: bool, predicted: Option<bool>) -> Prediction {
        Prediction {
            activating,
            predicted,
        }
    }

    #[test]
    fn balanced_accuracy_on_constructed_answers() {
        // 4 activating: 3 called 1, 1 called 0; 6 silent: 4 called 0, 1 called 1, 1 failed.
        let mut predictions = vec![
            p(true, Some(true)),
            p(true, Some(true)),
            p(true, Some(true)),
            p(true, Some(false)),
        ];
        predictions.extend([
            p(false, Some(false)),
            p(false, Some(false)),
            p(false, Some(false)),
            p(false, Some(false)),
            p(false, Some(true)),
            p(false, None),
        ]);
        let s = summarize(&predictions);
        assert_eq!(
            (
                s.true_positives,
                s.false_negatives,
                s.true_negatives,
                s.false_positives,
                s.failed
            ),
            (3, 1, 4, 1, 1)
        );
        // (3/4 + 4/5) / 2
        assert!((s.balanced_accuracy - 0.775).abs() < 1e-12);
        // Always answering 1 is chance, whatever the class sizes.
        let always: Vec<Prediction> = (0..10).map(|i| p(i < 3, Some(true))).collect();
        assert_eq!(summarize(&always).balanced_accuracy, 0.5);
        // Perfect, and nothing answered (delphi counts an empty class as 0).
        let perfect: Vec<Prediction> = (0..6).map(|i| p(i % 2 == 0, Some(i % 2 == 0))).collect();
        assert_eq!(summarize(&perfect).balanced_accuracy, 1.0);
        let failed = summarize(&[p(true, None), p(false, None)]);
        assert_eq!((failed.balanced_accuracy, failed.failed), (0.0, 2));
        // Only positives answered: TPR / 2.
        assert_eq!(
            summarize(&[p(true, Some(true)), p(false, None)]).balanced_accuracy,
            0.5
        );
    }

    fn example(values: &[f32], centre: usize) -> Example {
        Example {
            doc: 0,
            position: centre as u32,
            token: 0,
            tokens: values
                .iter()
                .enumerate()
                .map(|(i, v)| ExampleToken {
                    text: format!(" t{i}"),
                    activation: *v,
                })
                .collect(),
            centre,
        }
    }

    #[test]
    fn fuzzing_marks_as_delphi_does() {
        let evidence = FeatureEvidence {
            feature: 1,
            count: 10,
            max: 10.0,
            explain: Vec::new(),
            silent: Vec::new(),
            same_token: 0,
            // 3 and 2 active tokens: the silent contexts get ceil(5/2) = 3 marks.
            test_active: vec![
                example(&[0.0, 3.0, 10.0, 1.0, 0.0], 2),
                example(&[0.0, 4.0, 0.0, 2.0, 0.0], 1),
            ],
            test_silent: vec![example(&[0.0; 5], 2)],
        };
        let samples = fuzzing_samples(&evidence, 7);
        // >= 0.3 of the example's max: 3.0 of 10 is marked, 1.0 is not.
        assert_eq!(samples[0].text, "t0<< t1 t2>> t3 t4");
        assert_eq!(samples[1].text, "t0<< t1>> t2<< t3>> t4");
        assert!(!samples[2].activating && samples[2].text.contains("<<"));
        let marks = wrong_marks(&evidence.test_silent[0], 3, &mut StdRng::seed_from_u64(7));
        assert!(marks[2], "the centre is always marked: {marks:?}");
        assert_eq!(marks.iter().filter(|m| **m).count(), 3);
        assert_eq!(fuzzing_samples(&evidence, 7), samples);
        let detection = detection_samples(&evidence);
        assert_eq!(detection.iter().filter(|s| s.activating).count(), 2);
        assert!(detection.iter().all(|s| !s.text.contains("<<")));
        let cut = batches(detection, 2, 1);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    }
}
