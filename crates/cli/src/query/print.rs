//! The answers as text for people (`--json` prints the answer types themselves).

use saeidx_query::{
    Explain, FeatureLabel, FeatureReport, Info, PerToken, Rank, Sample, SilentContexts,
    SubsetFeatures, TextHit, TopFeatures, TopTexts,
};

use crate::{Output, print_json};

fn label_text(label: Option<&FeatureLabel>) -> String {
    label
        .and_then(|l| l.name.clone().or(l.description.clone()))
        .map(|name| format!("  \"{name}\""))
        .unwrap_or_default()
}

fn hits(hits: &[TextHit]) {
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>3}. [{:.3}] {} (doc {}, position {}): {}",
            i + 1,
            hit.score,
            hit.id,
            hit.doc,
            hit.position,
            hit.snippet.marked()
        );
    }
}

/// A `top-texts` answer.
pub(super) fn top_texts(answer: &TopTexts) {
    println!(
        "feature {}{}: top {} texts by {}",
        answer.feature,
        label_text(answer.label.as_ref()),
        answer.texts.len(),
        match answer.rank {
            Rank::Token => "token activation",
            Rank::DocumentMax => "document max",
            Rank::DocumentSum => "document sum",
        }
    );
    hits(&answer.texts);
}

/// A feature's logit effects.
pub(super) fn logits(logits: &saeidx_query::FeatureLogits) {
    let list = |effects: &[saeidx_query::LogitEffect]| {
        effects
            .iter()
            .map(|e| format!("{:?} {:+.3}", e.token_text, e.value))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  promotes: {}", list(&logits.top));
    println!("  suppresses: {}", list(&logits.bottom));
}

/// A `silent` answer.
pub(super) fn silent(answer: &SilentContexts) {
    println!(
        "feature {}: {} contexts where it does not fire",
        answer.feature,
        answer.contexts.len()
    );
    hits(&answer.contexts);
}

/// A `top-features` answer (as JSON with `--json`).
pub(super) fn top_features(answer: &TopFeatures, output: Output) -> anyhow::Result<()> {
    if output.json {
        return print_json(answer);
    }
    for (i, ranked) in answer.features.iter().enumerate() {
        println!(
            "{:>3}. feature {:>6}  {:.3}  (max at {} {:?}, active on {} tokens){}",
            i + 1,
            ranked.feature,
            ranked.score,
            ranked.position,
            ranked.token_text,
            ranked.active_tokens,
            label_text(ranked.label.as_ref())
        );
    }
    Ok(())
}

/// A `top-features --where/--docs` answer (as JSON with `--json`).
pub(super) fn subset_features(answer: &SubsetFeatures, output: Output) -> anyhow::Result<()> {
    if output.json {
        return print_json(answer);
    }
    println!(
        "{} documents, {} counted tokens",
        answer.documents, answer.tokens
    );
    for (i, ranked) in answer.features.iter().enumerate() {
        println!(
            "{:>3}. feature {:>6}  {:.3}  (max in doc {} at {} {:?}, active on {} tokens){}",
            i + 1,
            ranked.feature,
            ranked.score,
            ranked.doc.unwrap_or_default(),
            ranked.position,
            ranked.token_text,
            ranked.active_tokens,
            label_text(ranked.label.as_ref())
        );
    }
    Ok(())
}

/// A `top-features --per-token` answer (as JSON with `--json`).
pub(super) fn per_token(answer: &PerToken, output: Output) -> anyhow::Result<()> {
    if output.json {
        return print_json(answer);
    }
    for token in &answer.tokens {
        let top: Vec<String> = token
            .features
            .iter()
            .map(|f| format!("{}:{:.2}", f.feature, f.activation))
            .collect();
        println!(
            "{:>5} {:<16} {}",
            token.position,
            format!("{:?}", token.token_text),
            top.join(" ")
        );
    }
    Ok(())
}

/// An `explain` answer.
pub(super) fn explain(answer: &Explain) {
    println!("{:?}\n", answer.text);
    for feature in &answer.features {
        println!(
            "feature {} ({:.3} on {:?}){}: fires most on",
            feature.feature,
            feature.activation,
            feature.token_text,
            label_text(feature.label.as_ref())
        );
        hits(&feature.top_texts);
        println!();
    }
}

/// A feature report.
pub(super) fn report(report: &FeatureReport) {
    let s = &report.stats;
    println!(
        "feature {}{}\n  active on {} tokens (density {:.5}) in {} documents; max {:.3}, mean {:.3}; {} postings with excluded tokens",
        s.feature,
        label_text(report.label.as_ref()),
        s.count,
        s.density,
        s.documents,
        s.max_activation,
        s.mean_activation,
        s.postings
    );
    if let Some(label) = &report.label {
        for (key, value) in [
            ("description", &label.description),
            ("confidence", &label.confidence),
            ("notes", &label.notes),
        ] {
            if let Some(value) = value {
                println!("  {key}: {value}");
            }
        }
    }
    histogram(&s.histogram, s.histogram_max);
    println!("  top examples:");
    hits(&report.top_texts);
    for band in &report.bands {
        println!(
            "  band {:.0}–{:.0}% from the top (activations {:.3}..{:.3}):",
            band.from * 100.0,
            band.to * 100.0,
            band.min_activation,
            band.max_activation
        );
        hits(&band.examples);
    }
    match &report.logits {
        Some(logits) => self::logits(logits),
        None => println!("  logit effects: none yet (build them: saeidx query logits INDEX)"),
    }
    println!("  neighbours (Jaccard over tokens):");
    for n in &report.neighbours {
        println!(
            "    feature {:>6}  {:.3}  ({} tokens together; it fires on {})",
            n.feature, n.jaccard, n.together, n.count
        );
    }
    match &report.decoder_neighbours {
        Some(neighbours) => {
            println!("  decoder neighbours (cosine of decoder directions):");
            for n in neighbours {
                println!("    feature {:>6}  {:.3}", n.feature, n.cosine);
            }
        }
        None => println!("  decoder neighbours: the index's SAE file was not found"),
    }
}

fn histogram(bins: &[u32], max: f64) {
    let peak = bins.iter().copied().max().unwrap_or(0).max(1);
    println!("  histogram over (0, {max}]:");
    let width = max / bins.len().max(1) as f64;
    for (bin, count) in bins.iter().enumerate() {
        println!(
            "    {:>8.3} {:>8} {}",
            width * (bin + 1) as f64,
            count,
            "#".repeat((*count as usize * 40).div_ceil(peak as usize))
        );
    }
}

/// A `sample` answer.
pub(super) fn sample(answer: &Sample) {
    for feature in &answer.features {
        println!(
            "feature {}{}: {} tokens, max {:.3}",
            feature.feature,
            label_text(feature.label.as_ref()),
            feature.stats.count,
            feature.stats.max_activation
        );
        hits(&feature.top_texts);
    }
}

/// An `info` answer.
pub(super) fn info(info: &Info) {
    let counts = &info.counts;
    println!(
        "{}: {} documents, {} tokens ({} counted), {} nonzero activations\nmodel {}  SAE {}  hook {}\n{} of {} features live, {} dead; {} labelled",
        info.index,
        counts.documents,
        counts.tokens,
        counts.content_tokens,
        counts.nonzeros,
        info.model,
        info.sae,
        info.hook,
        info.live_features,
        info.d_sae,
        info.dead_features,
        info.labels
    );
    if let Some(dead) = &info.dead {
        let ids: Vec<String> = dead.iter().map(u32::to_string).collect();
        println!("dead: {}", ids.join(" "));
    }
}
