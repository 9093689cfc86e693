//! The prompts, their versions, and how answers are read.
//!
//! Where they come from: the tasks are delphi's (EleutherAI, `delphi/explainers/default`
//! and `delphi/scorers/classifier`, read at commit 3c2e139): the explainer sees
//! examples with the tokens where the feature fires between `<<` and `>>` (runs of
//! consecutive tokens above 0.3 of the example's largest activation marked as one),
//! their strengths on a 0–10 scale (`ceil(10 · a / max)`), and counter-examples; the
//! scorers get numbered texts and answer a list of 0/1, one per text, read from the
//! first `[...]` in the answer. The wording and the worked examples are saeidx's own,
//! written and tried against the smallest explainer we test with (SmolLM2-135M): a
//! short system prompt, two worked examples as earlier turns of the chat (small models
//! copy the answer format from them, and fail to without them), the firing examples
//! last, right before the question, and a line listing the marked tokens. The answer
//! format keeps delphi's `[EXPLANATION]:` line and adds `[NAME]:` for the registry.
//!
//! Any change to the wording, the worked examples or the rendering of examples must
//! bump [`DRAFT_PROMPT_VERSION`] or [`SCORE_PROMPT_VERSION`]: labels record the version
//! that made them, and the cache keys change with the text anyway.

use crate::{
    evidence::{Example, FeatureEvidence},
    llm::ChatMessage,
};

/// The version of the drafting prompt.
pub const DRAFT_PROMPT_VERSION: &str = "saeidx-draft-1";
/// The version of the scoring prompts (detection and fuzzing).
pub const SCORE_PROMPT_VERSION: &str = "saeidx-score-1";

/// delphi's threshold: tokens above this fraction of the example's largest activation
/// are marked.
pub const MARK_FRACTION: f32 = 0.3;

const DRAFT_SYSTEM: &str = "You study one feature of a language model: a detector that fires on some tokens of a text. In the texts below, the tokens where it fires are marked <<like this>>. Say what the feature responds to: the words, their meaning or the context around them.
Answer with exactly two lines:
[NAME]: a short name in snake_case
[EXPLANATION]: one sentence saying when the feature fires";

const DRAFT_SHOTS: [(&str, &str); 2] = [
    (
        "The same words where the feature does not fire:\n1. in the month after the war\nOther texts where it does not fire:\n1. we met in the hall\nTexts where the feature fires:\n1. we met in<< March>> and again in<< May>>\n2. the report of<< January>> last\n3. until<< June>> of that year\nMarked tokens (strength 1-10): March (10), May (9), January (8), June (6)\nWhat does the feature respond to?",
        "[NAME]: month_names\n[EXPLANATION]: Names of months of the year.",
    ),
    (
        "The same words where the feature does not fire:\n1. a sail was seen on the horizon\nOther texts where it does not fire:\n1. the ship was in port\nTexts where the feature fires:\n1. the ship<< sailed>> for Boston\n2. they<< sailed>> at dawn\n3. the fleet will<< sail>> tomorrow\nMarked tokens (strength 1-10): sailed (10), sail (7)\nWhat does the feature respond to?",
        "[NAME]: sailing_verbs\n[EXPLANATION]: The verb sail in any tense.",
    ),
];

/// A label as the explainer wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftText {
    /// The short name.
    pub name: String,
    /// The explanation.
    pub description: String,
}

/// The drafting chat for a feature's evidence.
pub fn draft_messages(evidence: &FeatureEvidence) -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::new("system", DRAFT_SYSTEM)];
    for (question, answer) in DRAFT_SHOTS {
        messages.push(ChatMessage::new("user", question));
        messages.push(ChatMessage::new("assistant", answer));
    }
    messages.push(ChatMessage::new("user", draft_question(evidence)));
    messages
}

fn draft_question(evidence: &FeatureEvidence) -> String {
    let mut text = String::new();
    let (same, other) = evidence
        .silent
        .split_at(evidence.same_token.min(evidence.silent.len()));
    let mut section = |title: &str, examples: &[Example], render: &dyn Fn(&Example) -> String| {
        if examples.is_empty() {
            return;
        }
        text.push_str(title);
        text.push('\n');
        for (i, example) in examples.iter().enumerate() {
            text.push_str(&format!("{}. {}\n", i + 1, render(example)));
        }
    };
    section(
        "The same words where the feature does not fire:",
        same,
        &plain,
    );
    let title = if same.is_empty() {
        "Texts where the feature does not fire:"
    } else {
        "Other texts where it does not fire:"
    };
    section(title, other, &plain);
    section("Texts where the feature fires:", &evidence.explain, &|e| {
        marked(e, MARK_FRACTION)
    });
    text.push_str(&format!(
        "Marked tokens (strength 1-10): {}\nWhat does the feature respond to?",
        strengths(&evidence.explain, evidence.max)
    ));
    text
}

/// An example's text on one line.
pub fn plain(example: &Example) -> String {
    let text: String = example.tokens.iter().map(|t| t.text.as_str()).collect();
    one_line(&text)
}

/// An example with the tokens above `fraction` of its largest activation between `<<`
/// and `>>`, consecutive ones together (delphi's explainer highlighting).
pub fn marked(example: &Example, fraction: f32) -> String {
    let threshold = example.max() * fraction;
    let marks: Vec<bool> = example
        .tokens
        .iter()
        .map(|t| t.activation > threshold)
        .collect();
    highlight(example, &marks)
}

/// An example with the tokens `marks` flags between `<<` and `>>`, runs together.
pub fn highlight(example: &Example, marks: &[bool]) -> String {
    let mut out = String::new();
    let mut open = false;
    for (token, &mark) in example.tokens.iter().zip(marks) {
        if mark && !open {
            out.push_str("<<");
        } else if !mark && open {
            out.push_str(">>");
        }
        open = mark;
        out.push_str(&token.text);
    }
    if open {
        out.push_str(">>");
    }
    one_line(&out)
}

/// The marked tokens of `examples`, each once with its strongest strength
/// (`ceil(10 · a / max)`, delphi's normalisation), strongest first, at most 12.
fn strengths(examples: &[Example], max: f32) -> String {
    let mut best: Vec<(String, u32)> = Vec::new();
    for example in examples {
        let threshold = example.max() * MARK_FRACTION;
        for token in example.tokens.iter().filter(|t| t.activation > threshold) {
            let word = one_line(&token.text).trim().to_string();
            if word.is_empty() {
                continue;
            }
            let strength = (10.0 * token.activation / max.max(1e-6))
                .ceil()
                .clamp(1.0, 10.0) as u32;
            match best.iter_mut().find(|(w, _)| *w == word) {
                Some(entry) => entry.1 = entry.1.max(strength),
                None => best.push((word, strength)),
            }
        }
    }
    best.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    best.truncate(12);
    best.iter()
        .map(|(word, strength)| format!("{word} ({strength})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r', '\t'], " ").trim().to_string()
}

/// Reads `[NAME]:` and `[EXPLANATION]:` lines (brackets, case and Markdown emphasis
/// optional; an explanation on the line after its tag is taken too). The explanation is
/// required; a missing name is made from its first words.
pub fn parse_draft(answer: &str) -> Option<DraftText> {
    let lines: Vec<&str> = answer.lines().collect();
    let tagged = |tag: &str| -> Option<String> {
        for (i, line) in lines.iter().enumerate() {
            let bare = line.trim().trim_start_matches(['*', '#', '-', ' ', '[']);
            let lower = bare.to_lowercase();
            if let Some(rest) = lower.strip_prefix(tag) {
                let rest = rest.trim_start_matches([']', '*', ' ']);
                if let Some(value) = rest.strip_prefix(':') {
                    let start = bare.len() - value.len();
                    let value = clean(&bare[start..]);
                    if !value.is_empty() {
                        return Some(value);
                    }
                    return lines[i + 1..]
                        .iter()
                        .map(|l| clean(l))
                        .find(|l| !l.is_empty());
                }
            }
        }
        None
    };
    let description: String = tagged("explanation")?.chars().take(500).collect();
    if !description.chars().any(char::is_alphanumeric) {
        return None;
    }
    let name = tagged("name")
        .map(|n| n.replace(' ', "_"))
        .filter(|n| n.chars().any(char::is_alphanumeric))
        .unwrap_or_else(|| {
            description
                .split_whitespace()
                .take(4)
                .map(|w| {
                    w.chars()
                        .filter(|c| c.is_alphanumeric())
                        .collect::<String>()
                        .to_lowercase()
                })
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("_")
        });
    Some(DraftText {
        name: name.chars().take(80).collect(),
        description,
    })
}

fn clean(text: &str) -> String {
    text.trim()
        .trim_matches(['*', '"', '`', '\''])
        .trim()
        .to_string()
}

/// Which scorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scorer {
    /// Does the feature fire anywhere in the text?
    Detection,
    /// Are the marked tokens where it fires?
    Fuzzing,
}

const DETECTION_SYSTEM: &str = "You check a description of a feature of a language model. You get the description and numbered texts. For each text in turn, answer 1 if the feature described fires somewhere in it, 0 if not. Answer with a list such as [1,0,1] and nothing else.";

const FUZZING_SYSTEM: &str = "You check a description of a feature of a language model. You get the description and numbered texts in which some tokens are marked <<like this>>. For each text in turn, answer 1 if every marked token is one the description fits, 0 if any marked token is not. Answer with a list such as [1,0,1] and nothing else.";

const DETECTION_SHOTS: [(&str, &str); 2] = [
    (
        "Description: Names of months of the year.\nTexts:\n1. we met in March and again in May\n2. we met in the hall\n3. until June of that year\nAnswer:",
        "[1,0,1]",
    ),
    (
        "Description: The verb sail in any tense.\nTexts:\n1. the ship was in port\n2. they sailed at dawn\n3. a storm came\nAnswer:",
        "[0,1,0]",
    ),
];

const FUZZING_SHOTS: [(&str, &str); 2] = [
    (
        "Description: Names of months of the year.\nTexts:\n1. we met in<< March>> and again in<< May>>\n2. we met<< in>> the hall\n3. until<< June>> of that year\nAnswer:",
        "[1,0,1]",
    ),
    (
        "Description: The verb sail in any tense.\nTexts:\n1. the<< ship>> was in port\n2. they<< sailed>> at dawn\n3. a storm<< came>>\nAnswer:",
        "[0,1,0]",
    ),
];

/// The chat asking `scorer` about `texts` given `explanation`.
pub fn score_messages(scorer: Scorer, explanation: &str, texts: &[String]) -> Vec<ChatMessage> {
    let (system, shots) = match scorer {
        Scorer::Detection => (DETECTION_SYSTEM, DETECTION_SHOTS),
        Scorer::Fuzzing => (FUZZING_SYSTEM, FUZZING_SHOTS),
    };
    let mut messages = vec![ChatMessage::new("system", system)];
    for (question, answer) in shots {
        messages.push(ChatMessage::new("user", question));
        messages.push(ChatMessage::new("assistant", answer));
    }
    let mut question = format!("Description: {}\nTexts:\n", one_line(explanation));
    for (i, text) in texts.iter().enumerate() {
        question.push_str(&format!("{}. {text}\n", i + 1));
    }
    question.push_str("Answer:");
    messages.push(ChatMessage::new("user", question));
    messages
}

/// The tokens a scoring answer for `n` texts may need.
pub fn score_max_tokens(n: usize) -> u32 {
    (4 * n + 16) as u32
}

/// The 0/1 answers in the first `[...]` of `answer` (delphi's parse): `None` unless it
/// holds exactly `n` of them (`0`, `1`, `true`, `false`).
pub fn parse_predictions(answer: &str, n: usize) -> Option<Vec<bool>> {
    let start = answer.find('[')?;
    let end = start + answer[start..].find(']')?;
    let values: Option<Vec<bool>> = answer[start + 1..end]
        .split(',')
        .map(|item| match item.trim().to_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        })
        .collect();
    values.filter(|v| v.len() == n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::ExampleToken;

    fn example(pieces: &[(&str, f32)], centre: usize) -> Example {
        Example {
            doc: 0,
            position: centre as u32,
            token: 0,
            tokens: pieces
                .iter()
                .map(|(text, activation)| ExampleToken {
                    text: text.to_string(),
                    activation: *activation,
                })
                .collect(),
            centre,
        }
    }

    #[test]
    fn marks_runs_above_three_tenths_of_the_example_max() {
        let e = example(
            &[
                ("the", 0.0),
                (" tight", 4.0),
                (" end", 10.0),
                (" Rob", 3.0),
                ("\nGron", 5.0),
            ],
            2,
        );
        assert_eq!(marked(&e, MARK_FRACTION), "the<< tight end>> Rob<< Gron>>");
        assert_eq!(plain(&e), "the tight end Rob Gron");
        assert_eq!(strengths(&[e], 10.0), "end (10), Gron (5), tight (4)");
    }

    #[test]
    fn drafts_are_read_from_tagged_lines() {
        let answer = "[NAME]: friend_words\n[EXPLANATION]: The words friend and friends.";
        assert_eq!(
            parse_draft(answer),
            Some(DraftText {
                name: "friend_words".into(),
                description: "The words friend and friends.".into()
            })
        );
        let answer = "Sure!\n**Explanation:**\n\"Saving money or lives.\"";
        let draft = parse_draft(answer).unwrap();
        assert_eq!(draft.description, "Saving money or lives.");
        assert_eq!(draft.name, "saving_money_or_lives");
        for bad in ["The feature responds to United.", "[EXPLANATION]: ...", ""] {
            assert_eq!(parse_draft(bad), None, "{bad}");
        }
    }

    #[test]
    fn predictions_need_one_answer_per_text() {
        assert_eq!(
            parse_predictions("[1, 0,true]", 3),
            Some(vec![true, false, true])
        );
        assert_eq!(
            parse_predictions("I think [0,1] because", 2),
            Some(vec![false, true])
        );
        assert_eq!(parse_predictions("[1,0]", 3), None);
        assert_eq!(parse_predictions("[1,2,0]", 3), None);
        assert_eq!(parse_predictions("[1,1,2,3,4", 3), None);
        assert_eq!(parse_predictions("yes", 1), None);
    }

    #[test]
    fn score_prompts_number_the_texts() {
        let messages = score_messages(
            Scorer::Fuzzing,
            "friend\nwords",
            &["a<< b>>".into(), "c".into()],
        );
        assert_eq!(messages.len(), 6);
        assert_eq!(
            messages[5].content,
            "Description: friend words\nTexts:\n1. a<< b>>\n2. c\nAnswer:"
        );
    }
}
