//! `saeidx cluster slurm`: parses the options, calls `saeidx_cluster::slurm` and says
//! what it found and did.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use saeidx_cluster::{SbatchOptions, SlurmOutcome, SlurmRequest, array_spec};

use saeidx_cli::{Output, print_json};

/// Cluster schedulers.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Write (and with --submit, submit) a Slurm array job of the job's shards and a
    /// merge job that runs after them; run again to resubmit only unfinished shards.
    #[command(after_help = "Examples:\n  \
        saeidx cluster slurm pipelines/default.toml --shards 8 --output /shared/indexes/sotu\n  \
        saeidx cluster slurm pipelines/default.toml --shards 8 --output /shared/indexes/sotu \\\n      \
            --partition cpu --time 02:00:00 --cpus-per-task 4 --mem 8G --submit\n  \
        # after a failure, the same command submits only the unfinished shards\n\n\
        The output must be on a file system every node sees. Jobs inherit this shell's\n\
        environment (HF_HOME, HF_HUB_OFFLINE, ...) and working directory.")]
    Slurm(SlurmArgs),
}

/// `saeidx cluster slurm` options.
#[derive(Args)]
pub struct SlurmArgs {
    /// The job file (pipelines/*.toml).
    job: PathBuf,
    /// Number of shards: one array task each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: u32,
    /// Override the job's output folder (on a file system every node sees).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Slurm partition (sbatch --partition).
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per task (sbatch --time, e.g. 02:00:00).
    #[arg(long)]
    time: Option<String>,
    /// CPUs per task (sbatch --cpus-per-task).
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// Memory per node (sbatch --mem, e.g. 8G).
    #[arg(long)]
    mem: Option<String>,
    /// Any other sbatch option for the shard tasks (repeatable; e.g.
    /// --sbatch-arg=--gres=gpu:1 --sbatch-arg=--account=lab).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Any other sbatch option for the merge job (repeatable; it comes after the options
    /// above, so it overrides them: e.g. --merge-sbatch-arg=--partition=cpu).
    #[arg(
        long = "merge-sbatch-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    merge_sbatch_args: Vec<String>,
    /// The saeidx binary the jobs run (default: this one).
    #[arg(long, value_name = "PATH")]
    saeidx: Option<PathBuf>,
    /// Submit with sbatch (default: only write the scripts and say how to submit them).
    #[arg(long)]
    submit: bool,
    #[command(flatten)]
    output_format: Output,
}

/// `saeidx cluster ...`.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Slurm(args) => slurm(args),
    }
}

fn slurm(args: SlurmArgs) -> anyhow::Result<()> {
    let saeidx = match args.saeidx {
        Some(path) => std::path::absolute(path)?,
        None => front_binary()?,
    };
    let request = SlurmRequest {
        job: args.job,
        shards: args.shards,
        output: args.output,
        sbatch: SbatchOptions {
            partition: args.partition,
            time: args.time,
            cpus_per_task: args.cpus_per_task,
            mem: args.mem,
            shard_args: args.sbatch_args,
            merge_args: args.merge_sbatch_args,
        },
        saeidx,
        workdir: std::env::current_dir()?,
        submit: args.submit,
    };
    let outcome = saeidx_cluster::slurm(&request)?;
    if args.output_format.json {
        return print_json(&outcome);
    }
    print_outcome(&outcome);
    Ok(())
}

/// The `saeidx` the jobs run by default: the one beside this executable (which handed
/// it this command), else this executable itself.
fn front_binary() -> anyhow::Result<PathBuf> {
    let this = std::env::current_exe().context("finding this saeidx binary")?;
    let front = this.with_file_name("saeidx");
    Ok(if front.is_file() { front } else { this })
}

fn print_outcome(outcome: &SlurmOutcome) {
    println!("wrote {}", outcome.scripts.display());
    if outcome.merged {
        println!(
            "{} already holds the merged index: nothing to submit (remove it to rebuild)",
            outcome.output.display()
        );
        return;
    }
    println!(
        "{} of {} shards finished; unfinished: {}",
        outcome.finished_shards.len(),
        outcome.shards,
        describe_unfinished(&outcome.resumable_parts)
    );
    if let Some(old) = &outcome.cancelled_merge_job {
        println!("cancelled merge job {old}, which waited on failed tasks");
    }
    match &outcome.submitted {
        Some(submission) => {
            if let (Some(id), Some(array)) = (&submission.shards_job, &submission.array) {
                println!("submitted shards {array} as array job {id}");
            }
            println!(
                "submitted the merge as job {} (runs after the shards succeed); logs in {}",
                submission.merge_job,
                outcome.scripts.join("logs").display()
            );
        }
        None if outcome.unfinished_shards.is_empty() => println!(
            "submit the merge with: sbatch {}",
            outcome.merge_script.display()
        ),
        None => println!(
            "submit with: bash {} {}",
            outcome.submit_script.display(),
            array_spec(&outcome.unfinished_shards)
        ),
    }
}

fn describe_unfinished(unfinished: &BTreeMap<u32, usize>) -> String {
    if unfinished.is_empty() {
        return "none".into();
    }
    let shards: Vec<String> = unfinished
        .iter()
        .map(|(shard, parts)| match parts {
            0 => shard.to_string(),
            parts => format!("{shard} (resumes after {parts} parts)"),
        })
        .collect();
    shards.join(", ")
}
