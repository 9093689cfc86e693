//! saeidx's tokenizer (rebuilt from the GGUF by saeidx) reproduces the reference ids that
//! `scripts/reference/tokenizer_reference.py` wrote: an independent Python build from the
//! GGUF metadata, itself checked against llama.cpp's own tokenizer.

use saeidx_corpus::tokenizer::TextTokenizer;
use saeidx_tests::{default_model, fixture};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    source: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    tokens: Vec<String>,
}

#[test]
fn matches_the_reference_ids_on_tricky_strings() {
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(fixture("tokenizer/smollm2_reference_ids.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        fixture.source["gguf_sha256"],
        saeidx_assets::defaults::SMOLLM2_GGUF_SHA256,
        "the fixture was written for another GGUF"
    );
    assert_eq!(fixture.source["llama_cpp_checked"], true);
    assert!(fixture.cases.len() >= 30);

    let tokenizer = TextTokenizer::from_file(&default_model().tokenizer).unwrap();
    let mut mismatches = Vec::new();
    for case in &fixture.cases {
        let tokens = tokenizer.encode(&case.text).unwrap();
        let pieces: Vec<String> = tokens
            .ids
            .iter()
            .map(|&id| tokenizer.token(id).unwrap_or_default())
            .collect();
        if tokens.ids != case.ids || pieces != case.tokens {
            mismatches.push(format!(
                "{:?}: got {:?} {:?}, reference {:?} {:?}",
                case.text, tokens.ids, pieces, case.ids, case.tokens
            ));
        }
        // Spans cover the text in order. Tokens that split a multi-byte character
        // (byte-level pieces) both cover that character, so they may overlap.
        let mut covered = String::new();
        let mut end = 0;
        for span in &tokens.spans {
            assert!(
                span.start <= end && span.end >= end,
                "{:?}: {span:?}",
                case.text
            );
            covered.push_str(&case.text[end..span.end]);
            end = span.end;
        }
        assert_eq!(covered, case.text, "spans of {:?}", case.text);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
