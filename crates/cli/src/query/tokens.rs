//! `saeidx token-features`: the features of a token (or token sequence) over its
//! occurrences; and the token options of `top-texts`.

use anyhow::bail;
use clap::Args;
use saeidx_query::{TokenFeatureProfile, TokenFeaturesRequest, TokenPattern, limits::Limit};

use super::{ExclusionArgs, IndexArg, RestrictArgs, within};
use crate::{Output, print_json};

/// Which token(s): by text, id or regex (repeat one of them for a sequence).
#[derive(Args, Clone, Default)]
pub struct TokenArgs {
    /// A token's text, e.g. " Paris" (BPE tokens usually carry their leading space).
    #[arg(long = "token", value_name = "TEXT")]
    texts: Vec<String>,
    /// A token id.
    #[arg(long = "token-id", value_name = "ID")]
    ids: Vec<u32>,
    /// A regular expression over token texts, e.g. "^ [A-Z][a-z]+$".
    #[arg(long = "token-regex", value_name = "REGEX")]
    regexes: Vec<String>,
}

impl TokenArgs {
    /// The patterns given, in order (one kind only).
    pub(crate) fn patterns(&self) -> anyhow::Result<Vec<TokenPattern>> {
        let kinds = [
            !self.texts.is_empty(),
            !self.ids.is_empty(),
            !self.regexes.is_empty(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            bail!("give tokens by one of --token, --token-id, --token-regex");
        }
        Ok(self
            .texts
            .iter()
            .cloned()
            .map(TokenPattern::Text)
            .chain(self.ids.iter().copied().map(TokenPattern::Id))
            .chain(self.regexes.iter().cloned().map(TokenPattern::Regex))
            .collect())
    }

    /// At most one pattern (for `top-texts`).
    pub(crate) fn one(&self) -> anyhow::Result<Option<TokenPattern>> {
        let mut patterns = self.patterns()?;
        if patterns.len() > 1 {
            bail!("top-texts takes one token (--token, --token-id or --token-regex once)");
        }
        Ok(patterns.pop())
    }
}

/// `saeidx token-features`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  saeidx token-features --token \" Senate\"\n  saeidx token-features --token \" the\" --token \" Senate\" --k 10   # the features of \" Senate\" after \" the\"\n  saeidx token-features --token-regex \"^ [0-9]+$\" --where \"year >= 1900\" --json"
)]
pub struct TokenFeaturesArgs {
    #[command(flatten)]
    tokens: TokenArgs,
    #[arg(long, default_value_t = TokenFeaturesRequest::default().k, value_parser = within::<usize>(Limit::K),
        help = Limit::K.help("How many features"))]
    k: usize,
    #[arg(long, default_value_t = TokenFeaturesRequest::default().examples, value_parser = within::<usize>(Limit::Examples),
        help = Limit::Examples.help("Example contexts per feature"))]
    examples: usize,
    #[arg(long, default_value_t = TokenFeaturesRequest::default().context, value_parser = within::<u32>(Limit::Context),
        help = Limit::Context.help("Tokens of context on each side of an example"))]
    context: u32,
    #[command(flatten)]
    index: IndexArg,
    #[command(flatten)]
    exclusions: ExclusionArgs,
    #[command(flatten)]
    restrict: RestrictArgs,
    #[command(flatten)]
    output: Output,
}

/// `saeidx token-features`.
pub fn token_features(args: TokenFeaturesArgs) -> anyhow::Result<()> {
    let tokens = args.tokens.patterns()?;
    if tokens.is_empty() {
        bail!("say which token: --token TEXT, --token-id ID or --token-regex REGEX");
    }
    let index = args.index.open()?;
    let answer = index.token_features(&TokenFeaturesRequest {
        tokens,
        k: args.k,
        examples: args.examples,
        context: args.context,
        exclusions: args.exclusions.exclusions(),
        restrict: args.restrict.restriction(),
    })?;
    if args.output.json {
        return print_json(&answer);
    }
    print(&answer);
    Ok(())
}

fn print(answer: &TokenFeatureProfile) {
    println!(
        "{} occurrences (token ids {:?})",
        answer.occurrences, answer.token_ids
    );
    for (i, feature) in answer.features.iter().enumerate() {
        println!(
            "{:>3}. feature {:>6}  on {:.1}% ({}), mean {:.3}, max {:.3}{}",
            i + 1,
            feature.feature,
            100.0 * feature.frequency,
            feature.count,
            feature.mean_activation,
            feature.max_activation,
            feature
                .label
                .as_ref()
                .and_then(|l| l.name.as_ref())
                .map(|name| format!("  [{name}]"))
                .unwrap_or_default()
        );
        for hit in &feature.examples {
            println!("       {:.3}  {}", hit.activation, hit.snippet.marked());
        }
    }
}
