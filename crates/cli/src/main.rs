//! `saeidx`: index which SAE features fire on which tokens of a corpus, once, and answer
//! questions about them in milliseconds.
//!
//! This executable links no MLX, so that a new process answers a question quickly: it
//! runs every command answered from index files, and hands each command that runs a
//! model to `saeidx-model` beside it (same arguments; see the library's documentation).
//! Exit status: 0 on success, 2 on error (with a message that says what to do).

use std::{ffi::OsString, os::unix::process::CommandExt, path::Path, path::PathBuf};

use clap::{CommandFactory, Parser};
use saeidx_cli::{Cli, Command, ComputedLogits, MODEL_BINARY, Models, Sources};
use saeidx_format::manifest::Manifest;
use saeidx_query::{AnalyzedText, AnyIndex};

fn main() -> std::process::ExitCode {
    saeidx_cli::start();
    // `saeidx help run` is the help of a command saeidx-model defines.
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "help") && args.get(2).is_some_and(runs_a_model) {
        return saeidx_cli::exit(Err(hand_over()));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(_) => Err(hand_over()),
        Command::Index(command) => saeidx_cli::run(*command, &HandOver),
    };
    saeidx_cli::exit(result)
}

/// Whether `name` is a command `saeidx-model` runs (they take their arguments untouched,
/// help included).
fn runs_a_model(name: &OsString) -> bool {
    Cli::command()
        .find_subcommand(name)
        .is_some_and(clap::Command::is_disable_help_flag_set)
}

/// `saeidx-model` beside this executable.
fn model_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(MODEL_BINARY))
}

/// Replaces this process by `saeidx-model` with the same arguments (and the same
/// program name, so messages and help read `saeidx`); returns only what went wrong.
fn hand_over() -> anyhow::Error {
    let binary = match model_binary() {
        Ok(binary) => binary,
        Err(error) => return error.context("finding this executable's folder"),
    };
    if !binary.is_file() {
        return anyhow::anyhow!(
            "this command runs a model, which {MODEL_BINARY} does, and {} is missing: \
             install it beside saeidx (`cargo build --release -p saeidx-cli-model`)",
            binary.display()
        );
    }
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "saeidx".into());
    let error = std::process::Command::new(&binary)
        .arg0(name)
        .args(args)
        .exec();
    anyhow::Error::new(error).context(format!("running {}", binary.display()))
}

/// A question that needs a model: the whole command goes to `saeidx-model`.
struct HandOver;

impl Models for HandOver {
    fn analyze(&self, _: &AnyIndex, _: &str, _: &Sources) -> anyhow::Result<AnalyzedText> {
        Err(hand_over())
    }

    fn live_texts(
        &self,
        _: &Manifest,
        _: &Path,
        _: Sources,
    ) -> anyhow::Result<Box<dyn saeidx_view::serve::LiveTexts>> {
        Err(hand_over())
    }

    fn logit_effects(
        &self,
        _: &Manifest,
        _: &Path,
        _: &Sources,
        _: usize,
    ) -> anyhow::Result<ComputedLogits> {
        Err(hand_over())
    }
}
