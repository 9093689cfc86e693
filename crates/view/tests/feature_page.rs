//! A feature page of a synthetic index: every example's token pieces concatenate to the
//! document text around the hit, the marked token is the hit's, labels are escaped, and
//! neighbours link to their pages.

use saeidx_query::{
    AnyIndex, Exclusions, FeatureLabel, FeatureRequest, QueryIndex, Registry, build,
};
use saeidx_testkit::synthetic::{SyntheticSpec, write_synthetic_index};
use saeidx_view::{feature_file, render_feature};

#[test]
fn feature_pages_show_faithful_coloured_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        documents: 12,
        tokens_per_document: (5, 60),
        documents_per_part: 5,
        feature_weights: (0..24).map(|f| 1.0 + f as f64).collect(),
        k: 4,
        value_step: 0.25,
        seed: 8,
    };
    write_synthetic_index(dir.path(), &spec).unwrap();
    build(dir.path()).unwrap();
    let mut index = QueryIndex::open(dir.path()).unwrap();
    let mut registry = Registry::default();
    registry.set(
        3,
        FeatureLabel {
            name: Some("<b onmouseover=alert(1)>bold</b>".into()),
            ..FeatureLabel::default()
        },
    );
    index.save_registry(registry).unwrap();
    let index = AnyIndex::One(index);
    let report = index
        .feature(&FeatureRequest {
            feature: 3,
            examples: 3,
            bands: 2,
            per_band: 3,
            neighbours: 4,
            context: 3,
            exclusions: Exclusions::default(),
            restrict: Default::default(),
        })
        .unwrap();
    let html = render_feature(&index, &report, 3).unwrap();
    assert!(html.contains("&lt;b onmouseover=alert(1)&gt;bold&lt;/b&gt;"));
    assert!(!html.contains("<b onmouseover"));
    let examples =
        report.top_texts.len() + report.bands.iter().map(|b| b.examples.len()).sum::<usize>();
    assert!(examples > 0);
    assert_eq!(html.matches("class=\"tok hit\"").count(), examples);
    for n in &report.neighbours {
        assert!(html.contains(&format!("href=\"{}\"", feature_file(n.feature))));
    }
    // Window pieces are the document's text, exactly, and the hit piece is the token's.
    for hit in &report.top_texts {
        let window = index.window(hit.doc, hit.position, 3, 3).unwrap();
        let joined: String = window.iter().map(|t| t.text.as_str()).collect();
        let (_, _, text) = index.document(hit.doc).unwrap();
        assert!(text.contains(&joined), "{joined:?}");
        let piece = &window
            .iter()
            .find(|t| t.position == hit.position)
            .unwrap()
            .text;
        assert!(piece.ends_with(&hit.snippet.text[hit.snippet.hit_start..hit.snippet.hit_end]));
        assert_eq!(
            window
                .iter()
                .find(|t| t.position == hit.position)
                .unwrap()
                .activation,
            hit.activation
        );
    }
}
