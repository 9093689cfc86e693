//! Live analysis of new texts: a text that is not in an index goes through the same
//! tokenizer policy, windows, model, hook and SAE that built the index, so its codes
//! compare with the index's own. What the web server, the Python package and
//! `top-features --text` need, without the batch pipeline.
//!
//! - [`LiveAnalyzer::for_index`] loads the model and SAE an index records (checked by
//!   SHA-256: weights, tokenizer, SAE), offline-first through `saeidx-hub`;
//! - [`LiveAnalyzer::analyze_text`] runs a text and returns it as the query layer ranks it
//!   ([`saeidx_query::AnalyzedText`]: each token's piece of the text and codes);
//! - [`build_logit_effects`] computes an index's logit effects from its SAE and its
//!   model's unembedding (`saeidx query logits`);
//! - [`LiveWorker`] keeps an analyzer on a thread of its own for callers on any thread.
#![deny(missing_docs)]

mod analyzer;
mod error;
mod logits;
mod sources;
mod worker;

pub use analyzer::{LiveAnalyzer, LiveToken, analyzed_text};
pub use error::LiveError;
pub use logits::{LogitsBuilt, build_logit_effects};
pub use sources::LiveSources;
pub use worker::{LiveWorker, LiveWorkerError};
