//! `saeidx serve`: the local web UI and JSON API over one or more indexes.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use saeidx_query::AnyIndex;

use super::IndexArg;
use crate::{Models, Sources};

/// `saeidx serve`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    saeidx serve                                   # indexes/default on http://127.0.0.1:8080/\n  \
    saeidx serve indexes/default indexes/sotu-all  # two indexes: /i/default/, /i/sotu-all/\n  \
    saeidx serve --port 9000 --no-live             # without loading the model\n  \
    saeidx serve --listen 0.0.0.0 --allow-host box.lan  # reachable from other machines\n\n\
Pages: / (search, random feature, text box), /feature/F (label form), /search?q=,\n\
/random, /text?q=. JSON (the answers `--json` prints): /api/indexes, /api/info,\n\
/api/top-texts?feature=F, /api/top-features?doc=D, /api/text?q=TEXT, /api/feature/F,\n\
/api/sample, /api/explain?q=TEXT, GET and POST /api/labels/F.\n\
Each index is also under /i/NAME/ (NAME: its folder name).\n\n\
Limits: request heads of 16 KiB, bodies of 64 KiB (413 beyond), answers within\n\
--timeout seconds (503 beyond), --max-connections open connections, idle connections\n\
closed after 30 s. Requests naming another Host are refused (421), and writes from\n\
other sites (Origin, Sec-Fetch-Site) too (403).")]
pub struct ServeArgs {
    /// Index folders to serve (default: --index).
    indexes: Vec<PathBuf>,
    /// Address to listen on: loopback by default, since the UI edits labels. Another
    /// address makes the server reachable from other machines (with a warning).
    #[arg(long, visible_alias = "bind", default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// Port (0: any free port, printed when serving starts).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Answers computed at once; more requests wait their turn.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Open connections at most (further clients wait in the listen queue).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// Seconds an answer may take before the client gets 503.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Another host name this server answers to (for --listen on a named machine).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Serve without loading the models and SAEs (no live texts).
    #[arg(long)]
    no_live: bool,
    /// An SAE folder for live texts, for indexes whose SAE is not where their manifest
    /// records it (repeatable; each index uses the one identical to its own).
    #[arg(long = "sae")]
    saes: Vec<PathBuf>,
    #[command(flatten)]
    index: IndexArg,
}

/// `saeidx serve`.
pub fn serve(args: ServeArgs, models: &dyn Models) -> anyhow::Result<()> {
    let dirs = if args.indexes.is_empty() {
        vec![args.index.index.clone()]
    } else {
        args.indexes.clone()
    };
    let mut served = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let index = AnyIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let source = index
            .model_source()
            .map(|(manifest, dir)| (manifest.clone(), dir.to_path_buf()));
        let live: Option<Box<dyn saeidx_view::serve::LiveTexts>> = if args.no_live {
            None
        } else if let Some((manifest, model_dir)) = source {
            let sources = Sources {
                model: None,
                sae: args.saes.clone(),
            };
            match models.live_texts(&manifest, &model_dir, sources) {
                Ok(live) => Some(live),
                Err(error) => {
                    eprintln!(
                        "warning: live texts (/text) are off for {}: {error}",
                        dir.display()
                    );
                    None
                }
            }
        } else {
            None
        };
        served.push(saeidx_view::serve::ServedIndex { dir, live });
    }
    let listener = std::net::TcpListener::bind((args.listen, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.listen, args.port))?;
    // With --port 0 the system picks a free port; the line says which.
    let listening = listener.local_addr()?;
    if !saeidx_view::serve::is_loopback(args.listen) {
        eprintln!(
            "warning: listening on {listening}: other machines can read these indexes and \
             edit their labels"
        );
    }
    let names: Vec<String> = served.iter().map(|s| s.dir.display().to_string()).collect();
    println!(
        "serving {} on http://{listening}/ (Ctrl-C to stop)",
        names.join(", ")
    );
    let options = saeidx_view::serve::ServeOptions {
        threads: usize::from(args.threads),
        max_connections: args.max_connections as usize,
        request_timeout: std::time::Duration::from_secs(args.timeout),
        allowed_hosts: args.allow_hosts,
        ..Default::default()
    };
    saeidx_view::serve::serve(listener, served, options)?;
    Ok(())
}
