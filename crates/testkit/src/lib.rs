//! Test helpers for saeidx's crates, used only as a dev-dependency.
//!
//! A separate crate rather than a `test-utils` feature of a library: a feature that only
//! tests enable makes Cargo build that library (and everything above it) twice in one
//! workspace build, once for the binary and once for the tests.
//!
//! - [`filters`]: random document metadata and filters with a brute-force evaluation;
//! - [`hub`]: a local stand-in for the Hugging Face Hub on 127.0.0.1;
//! - [`llm`]: a scripted OpenAI-compatible chat endpoint, for error cases;
//! - [`load`]: an HTTP/1.1 load generator for the web server;
//! - [`sae`]: SAE folders with a chosen decoder, recorded as a synthetic index's SAE;
//! - [`synthetic`]: valid index folders with random codes (no model), for tests and
//!   benchmarks of everything after the batch stage.
#![deny(missing_docs)]

pub mod filters;
pub mod hub;
pub mod llm;
pub mod load;
pub mod sae;
pub mod synthetic;
