//! `saeidx cluster slurm`: a sharded index job as a Slurm array job (one task per shard,
//! each the ordinary `saeidx run --shard i/n`) and a merge job that runs after every
//! task succeeded.
//!
//! The scripts go to `OUTPUT.slurm/` beside the output (logs in `OUTPUT.slurm/logs/`).
//! With `--submit` they are submitted with `sbatch`; running the same command again after
//! a failure submits only the shards whose folder `OUTPUT.shards/i-of-n` is not finished
//! (their runs resume from the parts they recorded) and a new merge, replacing the merge
//! job that Slurm left waiting on the failed tasks (`DependencyNeverSatisfied`).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use clap::{Args, Subcommand};
use saeidx_format::{atomic, manifest::Manifest};
use saeidx_indexer::{job::JobFile, parts::Shard, pipeline::shard_destination, workdir::work_path};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Output, print_json};

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

/// Why the Slurm scripts could not be written or submitted.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command is not installed here.
    #[error(
        "{tool} is not on PATH (is this a Slurm login node?); the scripts are written: submit them from a machine with Slurm with `bash {}`",
        submit_script.display()
    )]
    ToolMissing {
        /// The command.
        tool: &'static str,
        /// The submit script that was written.
        submit_script: PathBuf,
    },
    /// A Slurm command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A Slurm command could not be started.
    #[error("could not run {tool}: {source}")]
    Spawn {
        /// The command.
        tool: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The submission could not be recorded (for resubmission).
    #[error("submitted, but could not record the job ids: {0}")]
    Record(#[from] atomic::AtomicWriteError),
    /// sbatch succeeded but printed no job id.
    #[error("`{command}` printed no job id (printed {stdout:?})")]
    NoJobId {
        /// The command line.
        command: String,
        /// What it printed.
        stdout: String,
    },
    /// An earlier submission of this output is still in the queue.
    #[error(
        "jobs of the earlier submission are still queued or running ({jobs}); wait for them (squeue) or cancel them (scancel), then run this again"
    )]
    StillQueued {
        /// The jobs with their states.
        jobs: String,
    },
    /// The shard folder holds finished shards of a different split.
    #[error(
        "{} holds finished shards of a {found}-way split ({names}); remove them or use --shards {found}",
        dir.display()
    )]
    OtherSplit {
        /// The shard folder.
        dir: PathBuf,
        /// Their number of shards.
        found: u32,
        /// The shard folders.
        names: String,
    },
    /// A value that cannot go into an `#SBATCH` line.
    #[error("{what} {value:?} cannot go into an #SBATCH line (it contains {reason})")]
    Unscriptable {
        /// The option or path.
        what: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What one array submission covers, and the jobs a submission made (`submitted.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Submission {
    /// The array job of the shards (absent when only the merge was submitted).
    shards_job: Option<String>,
    /// The shard indices it runs (`sbatch --array`).
    array: Option<String>,
    /// The merge job.
    merge_job: String,
}

/// Where everything of a Slurm run lives.
struct Layout {
    /// The job file (absolute).
    job: PathBuf,
    /// The merged index (absolute).
    output: PathBuf,
    /// `OUTPUT.slurm`: scripts, `submitted.json` and `logs/`.
    dir: PathBuf,
    shards: u32,
}

impl Layout {
    fn shards_script(&self) -> PathBuf {
        self.dir.join("shards.sbatch")
    }

    fn merge_script(&self) -> PathBuf {
        self.dir.join("merge.sbatch")
    }

    fn submit_script(&self) -> PathBuf {
        self.dir.join("submit.sh")
    }

    fn record(&self) -> PathBuf {
        self.dir.join("submitted.json")
    }

    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// The shards' progress as found on disk.
#[derive(Debug, PartialEq)]
struct Progress {
    /// The merged index exists.
    merged: bool,
    /// Shards whose folder is finished.
    finished: Vec<u32>,
    /// The other shards, with the parts their work folder recorded (they resume there).
    unfinished: BTreeMap<u32, usize>,
}

/// `saeidx cluster ...`.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Slurm(args) => slurm(args),
    }
}

fn slurm(args: SlurmArgs) -> anyhow::Result<()> {
    let job = std::path::absolute(&args.job)?;
    let file = JobFile::read(&job)?;
    let output = std::path::absolute(args.output.as_ref().unwrap_or(&file.output))?;
    let binary = match &args.saeidx {
        Some(path) => std::path::absolute(path)?,
        None => std::env::current_exe().context("finding this saeidx binary")?,
    };
    let layout = Layout {
        dir: sibling(&output, "slurm"),
        job,
        output,
        shards: args.shards,
    };
    let workdir = std::env::current_dir()?;
    write_scripts(&layout, &args, &binary, &workdir)?;
    let progress = progress(&layout.output, layout.shards)?;
    let unfinished: Vec<u32> = progress.unfinished.keys().copied().collect();
    let submission = if args.submit && !progress.merged {
        Some(submit(&layout, &unfinished)?)
    } else {
        None
    };
    if args.output_format.json {
        return print_json(&json!({
            "scripts": layout.dir,
            "shards": layout.shards,
            "merged": progress.merged,
            "finished_shards": progress.finished,
            "unfinished_shards": unfinished,
            "resumable_parts": progress.unfinished,
            "submitted": submission.as_ref().map(|(s, _)| s),
            "cancelled_merge_job": submission.as_ref().and_then(|(_, c)| c.as_ref()),
        }));
    }
    println!("wrote {}", layout.dir.display());
    if progress.merged {
        println!(
            "{} already holds the merged index: nothing to submit (remove it to rebuild)",
            layout.output.display()
        );
        return Ok(());
    }
    println!(
        "{} of {} shards finished; unfinished: {}",
        progress.finished.len(),
        layout.shards,
        describe_unfinished(&progress.unfinished)
    );
    match submission {
        Some((submission, cancelled)) => {
            if let Some(old) = cancelled {
                println!("cancelled merge job {old}, which waited on failed tasks");
            }
            if let (Some(id), Some(array)) = (&submission.shards_job, &submission.array) {
                println!("submitted shards {array} as array job {id}");
            }
            println!(
                "submitted the merge as job {} (runs after the shards succeed); logs in {}",
                submission.merge_job,
                layout.logs().display()
            );
        }
        None if unfinished.is_empty() => println!(
            "submit the merge with: sbatch {}",
            layout.merge_script().display()
        ),
        None => println!(
            "submit with: bash {} {}",
            layout.submit_script().display(),
            array_spec(&unfinished)
        ),
    }
    Ok(())
}

/// `PATH.SUFFIX` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    path.with_file_name(format!("{name}.{suffix}"))
}

/// Which shards are finished (a published shard folder) and how far the others got.
fn progress(output: &Path, shards: u32) -> Result<Progress, SlurmError> {
    let shard_dir = sibling(output, "shards");
    let mut others: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir(&shard_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let count = name
            .split_once("-of-")
            .and_then(|(_, count)| count.parse::<u32>().ok());
        if let Some(count) = count
            && count != shards
            && Manifest::read(&entry.path()).is_ok()
        {
            others.entry(count).or_default().push(name);
        }
    }
    if let Some((found, names)) = others.into_iter().next() {
        return Err(SlurmError::OtherSplit {
            dir: shard_dir,
            found,
            names: names.join(", "),
        });
    }
    let mut finished = Vec::new();
    let mut unfinished = BTreeMap::new();
    for index in 0..shards {
        let folder = shard_destination(
            output,
            Shard {
                index,
                count: shards,
            },
        );
        let done = Manifest::read(&folder).is_ok_and(|manifest| {
            manifest
                .shard
                .is_some_and(|s| (s.index, s.count) == (index, shards))
        });
        if done {
            finished.push(index);
        } else {
            // Part records are `part-NNNNN.json` (a record being written has a temporary name).
            let recorded = fs::read_dir(work_path(&folder).join("parts"))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
                        .count()
                })
                .unwrap_or(0);
            unfinished.insert(index, recorded);
        }
    }
    Ok(Progress {
        merged: Manifest::read(output).is_ok(),
        finished,
        unfinished,
    })
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

/// Slurm's array syntax for sorted indices: runs become ranges (`0-3,5,7-8`).
fn array_spec(indices: &[u32]) -> String {
    let mut spec = String::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        while i + 1 < indices.len() && indices[i + 1] == indices[i] + 1 {
            i += 1;
        }
        if !spec.is_empty() {
            spec.push(',');
        }
        match indices[i] {
            end if end == start => write!(spec, "{start}"),
            end => write!(spec, "{start}-{end}"),
        }
        .expect("writing to a String");
        i += 1;
    }
    spec
}

/// Quotes a value for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Checks that a value can stand in an `#SBATCH` line as one word (sbatch splits those
/// lines at blanks and expands `%` patterns in file names).
fn sbatch_word<'a>(what: &'static str, value: &'a str) -> Result<&'a str, SlurmError> {
    let reason = if value.chars().any(char::is_whitespace) {
        Some("whitespace")
    } else if value.contains(['"', '\'', '\\']) {
        Some("quotes or backslashes")
    } else if value.contains('%') {
        Some("%")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SlurmError::Unscriptable {
            what,
            value: value.into(),
            reason,
        }),
        None => Ok(value),
    }
}

/// `#SBATCH` lines of a script: the options both jobs share, then `extra`.
fn directives(
    layout: &Layout,
    args: &SlurmArgs,
    workdir: &Path,
    extra: &[String],
) -> Result<String, SlurmError> {
    let mut lines = vec![format!(
        "--chdir={}",
        sbatch_word("working directory", &workdir.to_string_lossy())?
    )];
    if let Some(partition) = &args.partition {
        lines.push(format!(
            "--partition={}",
            sbatch_word("--partition", partition)?
        ));
    }
    if let Some(time) = &args.time {
        lines.push(format!("--time={}", sbatch_word("--time", time)?));
    }
    if let Some(cpus) = args.cpus_per_task {
        lines.push(format!("--cpus-per-task={cpus}"));
    }
    if let Some(mem) = &args.mem {
        lines.push(format!("--mem={}", sbatch_word("--mem", mem)?));
    }
    for arg in extra {
        if arg.contains(['\n', '\r']) {
            return Err(SlurmError::Unscriptable {
                what: "--sbatch-arg",
                value: arg.clone(),
                reason: "a line break",
            });
        }
        lines.push(arg.clone());
    }
    // The logs folder goes into both scripts' --output lines.
    sbatch_word("output folder", &layout.logs().to_string_lossy())?;
    Ok(lines
        .iter()
        .map(|line| format!("#SBATCH {line}\n"))
        .collect())
}

/// A Slurm job name from the output folder's name (letters, digits, `._-`).
fn job_name(kind: &str, output: &Path) -> String {
    let name: String = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("saeidx-{kind}-{name}")
}

/// Writes `shards.sbatch`, `merge.sbatch` and `submit.sh` into `OUTPUT.slurm/`
/// (atomically) and creates its `logs/` folder.
fn write_scripts(
    layout: &Layout,
    args: &SlurmArgs,
    binary: &Path,
    workdir: &Path,
) -> anyhow::Result<()> {
    let shard_directives = directives(layout, args, workdir, &args.sbatch_args)?;
    let merge_directives = directives(layout, args, workdir, &args.merge_sbatch_args)?;
    let logs = layout.logs();
    let saeidx = shell_quote(&binary.to_string_lossy());
    let job = shell_quote(&layout.job.to_string_lossy());
    let output = shell_quote(&layout.output.to_string_lossy());
    let n = layout.shards;
    let last = n - 1;
    let shards = format!(
        "#!/bin/bash\n\
         # Written by `saeidx cluster slurm`: array task i indexes shard i of {n} of the job.\n\
         # A task that is rerun resumes from the parts its shard recorded.\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={logs}/shard-%a-job-%A.log\n\
         {shard_directives}\
         set -euo pipefail\n\
         exec {saeidx} run {job} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --output {output}\n",
        name = job_name("shards", &layout.output),
        logs = logs.display(),
    );
    let merge = format!(
        "#!/bin/bash\n\
         # Written by `saeidx cluster slurm`: merges the {n} shards into the index (submit it\n\
         # with --dependency=afterok:<shards job>).\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --output={logs}/merge-job-%j.log\n\
         {merge_directives}\
         set -euo pipefail\n\
         exec {saeidx} merge {output}\n",
        name = job_name("merge", &layout.output),
        logs = logs.display(),
    );
    let submit = format!(
        "#!/bin/sh\n\
         # Written by `saeidx cluster slurm`: submits the shards (all, or the array indices\n\
         # given, e.g. `bash submit.sh 1,3`) and the merge after them. `saeidx cluster slurm\n\
         # ... --submit` does the same and by itself resubmits only unfinished shards.\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         shards=$(sbatch --parsable --array=\"${{1:-0-{last}}}\" shards.sbatch)\n\
         merge=$(sbatch --parsable --dependency=\"afterok:${{shards%%;*}}\" merge.sbatch)\n\
         echo \"shards: array job ${{shards%%;*}}; merge: job ${{merge%%;*}}\"\n"
    );
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    atomic::write_file(&layout.shards_script(), shards.as_bytes())?;
    atomic::write_file(&layout.merge_script(), merge.as_bytes())?;
    atomic::write_file(&layout.submit_script(), submit.as_bytes())?;
    Ok(())
}

/// Runs a Slurm command and returns its stdout.
fn slurm_command(
    layout: &Layout,
    tool: &'static str,
    args: &[String],
) -> Result<String, SlurmError> {
    let output = Command::new(tool).args(args).output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            SlurmError::ToolMissing {
                tool,
                submit_script: layout.submit_script(),
            }
        } else {
            SlurmError::Spawn {
                tool,
                source: error,
            }
        }
    })?;
    if !output.status.success() {
        return Err(SlurmError::Failed {
            command: format!("{tool} {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `sbatch --parsable ARGS SCRIPT`, returning the job id.
fn sbatch(layout: &Layout, args: &[String], script: &Path) -> Result<String, SlurmError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend_from_slice(args);
    all.push(script.to_string_lossy().into_owned());
    let stdout = slurm_command(layout, "sbatch", &all)?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = stdout.trim().split(';').next().unwrap_or_default();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlurmError::NoJobId {
            command: format!("sbatch {}", all.join(" ")),
            stdout,
        });
    }
    Ok(id.to_string())
}

/// The queued or running jobs (or array tasks) of job `id`: `(id, state, reason)`.
fn queued(layout: &Layout, id: &str) -> Result<Vec<(String, String, String)>, SlurmError> {
    let args = ["-h", "-j", id, "-o", "%i|%T|%r"].map(String::from);
    match slurm_command(layout, "squeue", &args) {
        Ok(stdout) => Ok(stdout
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '|').map(|f| f.trim().to_string());
                Some((fields.next()?, fields.next()?, fields.next()?))
            })
            .collect()),
        // A job that ended long ago is no longer known at all.
        Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => Ok(vec![]),
        Err(error) => Err(error),
    }
}

/// Submits the unfinished shards (if any) and a merge after them. An earlier
/// submission's merge job that waits forever on failed tasks is cancelled; an earlier
/// submission still running is an error. Returns the submission and the cancelled job.
fn submit(layout: &Layout, unfinished: &[u32]) -> Result<(Submission, Option<String>), SlurmError> {
    let mut cancelled = None;
    let earlier: Option<Submission> = fs::read(layout.record())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let Some(earlier) = earlier {
        let mut active = Vec::new();
        if let Some(shards_job) = &earlier.shards_job {
            active.extend(queued(layout, shards_job)?);
        }
        let merge = queued(layout, &earlier.merge_job)?;
        let stale = active.is_empty()
            && merge.iter().all(|(_, state, reason)| {
                state == "PENDING" && reason == "DependencyNeverSatisfied"
            });
        if stale && !merge.is_empty() {
            slurm_command(layout, "scancel", std::slice::from_ref(&earlier.merge_job))?;
            cancelled = Some(earlier.merge_job.clone());
        } else {
            active.extend(merge);
        }
        if !active.is_empty() {
            let jobs: Vec<String> = active
                .iter()
                .map(|(id, state, reason)| format!("{id} {state} ({reason})"))
                .collect();
            return Err(SlurmError::StillQueued {
                jobs: jobs.join(", "),
            });
        }
    }
    let (shards_job, array) = if unfinished.is_empty() {
        (None, None)
    } else {
        let array = array_spec(unfinished);
        let id = sbatch(
            layout,
            &[format!("--array={array}")],
            &layout.shards_script(),
        )?;
        (Some(id), Some(array))
    };
    let dependency: Vec<String> = shards_job
        .iter()
        .map(|id| format!("--dependency=afterok:{id}"))
        .collect();
    let merge_job = sbatch(layout, &dependency, &layout.merge_script())?;
    let submission = Submission {
        shards_job,
        array,
        merge_job,
    };
    let json = serde_json::to_vec_pretty(&submission).expect("a submission serializes");
    atomic::write_file(&layout.record(), &json)?;
    Ok((submission, cancelled))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SlurmArgs,
    }

    fn layout(dir: &Path, shards: u32) -> Layout {
        let output = dir.join("out/index");
        Layout {
            job: dir.join("job.toml"),
            dir: sibling(&output, "slurm"),
            output,
            shards,
        }
    }

    #[test]
    fn array_specs_compress_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 3]), "1,3");
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_spec(&[4]), "4");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn scripts_run_the_shards_and_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path(), 4);
        let args = Cli::parse_from([
            "x",
            "job.toml",
            "--shards",
            "4",
            "--partition",
            "gpu",
            "--time",
            "01:00:00",
            "--cpus-per-task",
            "8",
            "--sbatch-arg=--gres=gpu:1",
            "--merge-sbatch-arg=--partition=cpu",
        ])
        .args;
        write_scripts(&layout, &args, Path::new("/opt/saeidx"), Path::new("/work")).unwrap();
        let shards = fs::read_to_string(layout.shards_script()).unwrap();
        for line in [
            "#SBATCH --array=0-3",
            "#SBATCH --chdir=/work",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=01:00:00",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --job-name=saeidx-shards-index",
        ] {
            assert!(shards.contains(line), "{line} in\n{shards}");
        }
        let run = format!(
            "exec '/opt/saeidx' run '{}' --shard \"${{SLURM_ARRAY_TASK_ID}}/4\" --output '{}'",
            layout.job.display(),
            layout.output.display()
        );
        assert!(shards.contains(&run), "{shards}");
        let merge = fs::read_to_string(layout.merge_script()).unwrap();
        assert!(merge.contains(&format!(
            "exec '/opt/saeidx' merge '{}'",
            layout.output.display()
        )));
        // The merge gets the shared options, then its own (which override them).
        let (shared, own) = (
            merge.find("#SBATCH --partition=gpu").unwrap(),
            merge.find("#SBATCH --partition=cpu").unwrap(),
        );
        assert!(shared < own, "{merge}");
        assert!(!merge.contains("--gres") && !shards.contains("--partition=cpu"));
        assert!(!merge.contains("--array"));
        assert!(layout.logs().is_dir());
        // Every script is valid shell.
        for script in [
            layout.shards_script(),
            layout.merge_script(),
            layout.submit_script(),
        ] {
            let status = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(status.success(), "{}", script.display());
        }
    }

    #[test]
    fn values_that_break_sbatch_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = Cli::parse_from(["x", "job.toml", "--shards", "2", "--time", "1 h"]).args;
        let error = write_scripts(
            &layout(dir.path(), 2),
            &args,
            Path::new("/s"),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("--time \"1 h\""), "{error}");
        let spaced = dir.path().join("my indexes");
        let args = Cli::parse_from(["x", "job.toml", "--shards", "2"]).args;
        let error = write_scripts(&layout(&spaced, 2), &args, Path::new("/s"), Path::new("/w"))
            .unwrap_err();
        assert!(error.to_string().contains("whitespace"), "{error}");
    }

    #[test]
    fn progress_counts_recorded_parts_of_unfinished_shards() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path(), 3);
        let parts = layout
            .output
            .with_file_name("index.shards/.1-of-3.partial/parts");
        fs::create_dir_all(&parts).unwrap();
        for part in ["part-00001.json", "part-00004.json"] {
            fs::write(parts.join(part), "{}").unwrap();
        }
        assert_eq!(
            progress(&layout.output, 3).unwrap(),
            Progress {
                merged: false,
                finished: vec![],
                unfinished: BTreeMap::from([(0, 0), (1, 2), (2, 0)]),
            }
        );
    }
}
