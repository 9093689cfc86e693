//! The query commands: `top-texts`, `top-features`, `feature`, `document`, `overview`, `silent`, `explain`, `sample`,
//! `info`, `documents`, `query build`, `query logits`, `labels`, `render` and `serve`. Each parses its arguments into
//! a request of `saeidx_query`, asks the library, and prints the answer: as the answer
//! type's JSON with `--json` (the same value the web server's API returns), else as text.

mod browse;
mod compare;
mod contrast;
mod documents;
mod drafts;
mod labels;
mod logits;
mod print;
mod questions;
mod render;
mod serve;
mod tokens;

use std::{ops::Range, path::PathBuf, str::FromStr};

use crate::{Models, Sources};
use anyhow::Context;
use clap::{Args, ValueEnum};
use saeidx_query::{
    Aggregate, AnalyzedText, AnyIndex, DocRef, Exclusions, Rank, Restriction, limits::Limit,
};

pub use browse::{DocumentArgs, OverviewArgs, document, overview};
pub use compare::{CompareArgs, compare};
pub use contrast::{ContrastArgs, contrast};
pub use documents::{DocumentsArgs, documents};
pub use labels::{LabelsCommand, labels};
pub use logits::DEFAULT_LOGIT_K;
pub use questions::{
    ExplainArgs, FeatureArgs, InfoArgs, QueryCommand, SampleArgs, SilentArgs, TopFeaturesArgs,
    TopTextsArgs, explain, feature, info, query, sample, silent, top_features, top_texts,
};
pub use render::{RenderCommand, render};
pub use serve::{ServeArgs, serve};
pub use tokens::{TokenFeaturesArgs, token_features};

/// Which index to query.
#[derive(Args, Clone)]
pub struct IndexArg {
    /// The index folder.
    #[arg(long, env = "SAEIDX_INDEX", default_value = "indexes/default")]
    pub(crate) index: PathBuf,
}

/// A value parser for a size bounded by `limit`: the query library's own check, so
/// the command refuses exactly what the library (and the web server) would.
fn within<T>(limit: Limit) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + TryInto<u64> + Copy,
    T::Err: std::fmt::Display,
{
    move |text: &str| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|e| format!("{text:?} is not a count: {e}"))?;
        limit.check(value).map_err(|e| e.to_string())
    }
}

impl IndexArg {
    /// Opens the index, whatever its shape (one index, or an index of segments).
    pub(crate) fn open(&self) -> anyhow::Result<AnyIndex> {
        AnyIndex::open(&self.index).with_context(|| format!("opening {}", self.index.display()))
    }
}

/// Which tokens count (special tokens and attention sinks are left out by default).
#[derive(Args, Clone, Copy)]
pub struct ExclusionArgs {
    /// Count special tokens (BOS, ...) too.
    #[arg(long)]
    include_special: bool,
    /// Count attention-sink positions (the first token of each document or window) too.
    #[arg(long)]
    include_sinks: bool,
}

impl ExclusionArgs {
    pub(crate) fn exclusions(self) -> Exclusions {
        Exclusions {
            special: !self.include_special,
            sinks: !self.include_sinks,
        }
    }
}

/// Which documents a question looks at (all by default).
#[derive(Args, Clone, Default)]
pub struct RestrictArgs {
    /// Only the documents this filter selects, e.g. "year >= 1900 and party =
    /// 'Democratic'" (columns: doc, id, source, tokens and the index's metadata; see
    /// `saeidx documents --help`).
    #[arg(long = "where", value_name = "FILTER")]
    filter: Option<String>,
    /// Only these documents: numbers or ids, comma-separated (with --where: those of
    /// them it selects).
    #[arg(long, value_delimiter = ',', value_name = "DOCS")]
    docs: Vec<String>,
}

impl RestrictArgs {
    /// The restriction these arguments say.
    pub(crate) fn restriction(&self) -> Restriction {
        Restriction {
            filter: self.filter.clone(),
            docs: (!self.docs.is_empty()).then(|| self.docs.iter().map(|d| doc_ref(d)).collect()),
        }
    }
}

/// A document by number when `text` is one, else by id.
pub(crate) fn doc_ref(text: &str) -> DocRef {
    match text.trim().parse() {
        Ok(number) => DocRef::Number(number),
        Err(_) => DocRef::Id(text.to_string()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AggregateArg {
    /// The largest activation over the tokens (mlxterp's rule).
    Max,
    /// The sum over the tokens.
    Sum,
}

impl From<AggregateArg> for Aggregate {
    fn from(value: AggregateArg) -> Self {
        match value {
            AggregateArg::Max => Aggregate::Max,
            AggregateArg::Sum => Aggregate::Sum,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RankArg {
    /// Each token on its own.
    Token,
    /// Documents by their largest activation.
    DocMax,
    /// Documents by the sum of their activations.
    DocSum,
}

impl From<RankArg> for Rank {
    fn from(value: RankArg) -> Self {
        match value {
            RankArg::Token => Rank::Token,
            RankArg::DocMax => Rank::DocumentMax,
            RankArg::DocSum => Rank::DocumentSum,
        }
    }
}

fn parse_range(text: &str) -> Result<Range<u32>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not START..END"))?;
    let number = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    let (start, end) = (number(start)?, number(end)?);
    if start > end {
        return Err(saeidx_query::QueryError::ReversedRange { start, end }.to_string());
    }
    Ok(start..end)
}

/// `text` run live through `index`'s model and SAE (or those `sources` names, which must
/// be identical to the index's).
fn analyze(
    index: &AnyIndex,
    text: &str,
    sources: &Sources,
    models: &dyn Models,
) -> anyhow::Result<AnalyzedText> {
    index
        .model_source()
        .context("the index has no segments, so no model and SAE to analyze a text with")?;
    models.analyze(index, text, sources)
}
