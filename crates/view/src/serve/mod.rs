//! `saeidx serve`: a local web UI and JSON API over one or more index folders.
//!
//! Each index is served under `/i/NAME/` (NAME: its folder name); the first index also
//! answers the same routes without the prefix. Pages: `/` (the index overview: provenance,
//! counts, feature densities, frequent, rare, labelled and sampled features, documents;
//! the served indexes, label search, a random feature, a text box), `/feature/F` (the
//! feature page with a label form and links to its examples' documents), `/doc/D?f=F`
//! (a document coloured by a feature, each token's features on click), `/search?q=` (labels containing the words), `/random`, `/text?q=` (a
//! text coloured by its strongest features, when live analysis is available), `/compare?with=NAME`
//! (this index's features compared with those of the served index NAME; see `compare`),
//! `/contrast?a=FILTER[&b=FILTER]` (the features over-represented in one set of documents
//! against another or the rest). The feature and search pages carry a filter box
//! (`where=FILTER`, `docs=D,...` in the URL; see `restricted`). The JSON
//! API (route table in `api`) answers every question with the answer type of
//! `saeidx_query`, as the command line's `--json` does. Form posts to
//! `/labels/F` save a label and return to the page. Labels are saved atomically with the
//! index. Errors are JSON (`{"error": ...}`) under `/api/` and pages elsewhere.
//!
//! The server runs on hyper and tokio ([`transport`]): connections are tasks, not threads
//! (a bounded number of them, idle ones closed), every answer is computed on a bounded pool
//! of blocking threads under a deadline, `TCP_NODELAY` is set, and request heads and bodies
//! have size limits. [`guard`] refuses requests for foreign `Host` names (DNS rebinding)
//! and cross-site writes (`Origin`, `Sec-Fetch-Site`). Readers share each index, a label
//! save holds it exclusively for the write. Before each request the server checks whether
//! the index folder was replaced (the nightly job publishes by an atomic rename) and
//! reopens it; answers in flight keep the old (unlinked) files mapped.

mod api;
mod browse;
mod compare;
mod form;
mod guard;
mod pages;
mod restricted;
mod routes;
mod slots;
mod transport;

use std::{
    net::{IpAddr, TcpListener},
    path::PathBuf,
    time::Duration,
};

use saeidx_query::QueryError;

pub use self::routes::LiveTexts;

/// An index folder to serve.
pub struct ServedIndex {
    /// The folder.
    pub dir: PathBuf,
    /// Live analysis through the index's model and SAE, if available.
    pub live: Option<Box<dyn LiveTexts>>,
}

/// How the server treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Answers computed at once (blocking threads); more requests wait their turn.
    pub threads: usize,
    /// Open connections at most; further clients wait in the listen queue.
    pub max_connections: usize,
    /// An answer not ready by then is a 503.
    pub request_timeout: Duration,
    /// A connection must send a request head within this time (idle keep-alive
    /// connections included), or it is closed.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub max_head_bytes: usize,
    /// Largest request body, bytes (a label is far smaller).
    pub max_body_bytes: usize,
    /// Host names accepted besides the loopback names and the listening address.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            threads: 4,
            max_connections: 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No index folder was given.
    #[error("no index to serve: give at least one index folder")]
    NoIndex,
    /// An index could not be opened.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The listening socket or the runtime failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `address` only accepts connections from this machine.
pub fn is_loopback(address: IpAddr) -> bool {
    address.is_loopback()
}

/// Serves `indexes` on `listener` until the process ends.
pub fn serve(
    listener: TcpListener,
    indexes: Vec<ServedIndex>,
    options: ServeOptions,
) -> Result<(), ServeError> {
    if indexes.is_empty() {
        return Err(ServeError::NoIndex);
    }
    let local = listener.local_addr()?;
    let slots = slots::open(indexes)?;
    let guard = guard::Guard::new(local, &options.allowed_hosts);
    let app = routes::App::new(slots, guard, options.clone());
    transport::run(listener, app, &options)
}
