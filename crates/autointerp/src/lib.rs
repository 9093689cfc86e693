//! Feature labels drafted by an LLM from what an index already holds, and scored
//! against it: for each feature, examples from its top and from every band of its
//! activation distribution with the firing tokens marked, and contexts where it stays
//! silent (the same words where it does not fire included), all read from the index
//! without running the subject model ([`evidence`]); a prompt of a stated version sent
//! to any OpenAI-compatible chat endpoint ([`llm`], [`prompts`]); the answer read into
//! the registry's shape with its provenance; and delphi's detection and fuzzing scores
//! ([`scoring`]) recorded with the label, their balanced accuracy setting its
//! confidence.
//!
//! [`run()`] drafts or scores many features: `concurrency` requests in flight,
//! retries with backoff, timeouts, token counts, progress, and a content-addressed
//! cache of every request and answer in the index's work folder ([`cache`]), so a rerun
//! or a resumed run sends nothing twice and a nightly run asks only about features
//! whose evidence changed. The registry's rules (a draft never replaces a person's
//! label unless asked) live with the registry in `saeidx_query::registry`.

pub mod cache;
pub mod evidence;
pub mod gateway;
pub mod llm;
pub mod prompts;
pub mod run;
pub mod scoring;

pub use evidence::{EvidenceOptions, FeatureEvidence};
pub use gateway::RequestStats;
pub use llm::{LlmError, LlmSettings};
pub use run::{
    FeatureOutcome, FeatureSelection, LabelReport, LabelRequest, Progress, Silent, Status, Task,
    WORK_DIR, run,
};

/// Why a labelling run could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum AutointerpError {
    /// A request that cannot be run, and what to change.
    #[error("{0}")]
    Invalid(String),
    /// The index could not answer, or its registry could not be saved.
    #[error(transparent)]
    Query(#[from] saeidx_query::QueryError),
}

/// The answer types of labelling runs, by the name of their schema file (for
/// `schemas/answers/`, beside the query library's).
pub fn answer_schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![("label-run", schemars::schema_for!(LabelReport))]
}
