//! saeidx on cluster schedulers: a sharded index job as a Slurm array job (one task per
//! shard, each the ordinary `saeidx run --shard i/n`, which writes a segment) and a merge
//! job that runs after every task succeeded and publishes the shards as the index's
//! segments (`saeidx merge`: hard links, nothing rebuilt).
//!
//! [`slurm`] writes the scripts to `OUTPUT.slurm/` beside the output (logs in
//! `OUTPUT.slurm/logs/`) and, when asked, submits them with `sbatch`. Asked again after a
//! failure, it submits only the shards whose folder `OUTPUT.shards/i-of-n` is not finished
//! (their runs resume from the parts they recorded) and a new merge, replacing the merge
//! job that Slurm left waiting on the failed tasks (`DependencyNeverSatisfied`).
#![deny(missing_docs)]

mod progress;
mod scripts;
mod submit;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use saeidx_format::atomic;
use saeidx_indexer::job::JobFile;
use serde::{Deserialize, Serialize};

pub use progress::array_spec;

/// What to run on Slurm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmRequest {
    /// The job file (pipelines/*.toml).
    pub job: PathBuf,
    /// Number of shards: one array task each.
    pub shards: u32,
    /// The job's output folder, if another than the job file says.
    pub output: Option<PathBuf>,
    /// The `sbatch` options.
    pub sbatch: SbatchOptions,
    /// The saeidx binary the jobs run.
    pub saeidx: PathBuf,
    /// The working directory of the jobs.
    pub workdir: PathBuf,
    /// Submit with `sbatch` (else only write the scripts).
    pub submit: bool,
}

/// `sbatch` options of the shard tasks and the merge job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbatchOptions {
    /// `--partition` (both jobs).
    pub partition: Option<String>,
    /// `--time` per task (both jobs).
    pub time: Option<String>,
    /// `--cpus-per-task` (both jobs).
    pub cpus_per_task: Option<u32>,
    /// `--mem` (both jobs).
    pub mem: Option<String>,
    /// Any other options of the shard tasks.
    pub shard_args: Vec<String>,
    /// Any other options of the merge job (after the shared ones: they override them).
    pub merge_args: Vec<String>,
}

/// What [`slurm`] found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlurmOutcome {
    /// `OUTPUT.slurm/`: the scripts, `submitted.json` and `logs/`.
    pub scripts: PathBuf,
    /// The merged index folder.
    pub output: PathBuf,
    /// Number of shards.
    pub shards: u32,
    /// The merged index already exists (nothing was submitted).
    pub merged: bool,
    /// Shards whose folder is finished.
    pub finished_shards: Vec<u32>,
    /// The other shards.
    pub unfinished_shards: Vec<u32>,
    /// Parts each unfinished shard recorded (its run resumes after them).
    pub resumable_parts: BTreeMap<u32, usize>,
    /// What was submitted.
    pub submitted: Option<Submission>,
    /// The merge job of an earlier submission, cancelled because it waited on failed
    /// tasks forever.
    pub cancelled_merge_job: Option<String>,
    /// The script that submits the shards (given array indices) and the merge by hand.
    pub submit_script: PathBuf,
    /// The merge job's script.
    pub merge_script: PathBuf,
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
    /// A script or the submission record could not be written.
    #[error(transparent)]
    Write(#[from] atomic::AtomicWriteError),
    /// A folder could not be made or the job file read.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The job file is unusable.
    #[error(transparent)]
    Job(#[from] saeidx_indexer::IndexError),
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
pub struct Submission {
    /// The array job of the shards (absent when only the merge was submitted).
    pub shards_job: Option<String>,
    /// The shard indices it runs (`sbatch --array`).
    pub array: Option<String>,
    /// The merge job.
    pub merge_job: String,
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

    /// `OUTPUT.slurm/logs`.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// Writes the Slurm scripts of `request`'s job and, if asked, submits the unfinished
/// shards and the merge.
pub fn slurm(request: &SlurmRequest) -> Result<SlurmOutcome, SlurmError> {
    let job = std::path::absolute(&request.job).map_err(|source| SlurmError::Io {
        path: request.job.clone(),
        source,
    })?;
    let file = JobFile::read(&job)?;
    let output = request.output.as_ref().unwrap_or(&file.output);
    let output = std::path::absolute(output).map_err(|source| SlurmError::Io {
        path: output.clone(),
        source,
    })?;
    let layout = Layout {
        dir: sibling(&output, "slurm"),
        job,
        output,
        shards: request.shards,
    };
    scripts::write(&layout, request)?;
    let progress = progress::of(&layout.output, layout.shards)?;
    let unfinished: Vec<u32> = progress.unfinished.keys().copied().collect();
    let (submitted, cancelled_merge_job) = if request.submit && !progress.merged {
        let (submission, cancelled) = submit::submit(&layout, &unfinished)?;
        (Some(submission), cancelled)
    } else {
        (None, None)
    };
    Ok(SlurmOutcome {
        scripts: layout.dir.clone(),
        output: layout.output.clone(),
        shards: layout.shards,
        merged: progress.merged,
        finished_shards: progress.finished,
        unfinished_shards: unfinished,
        resumable_parts: progress.unfinished,
        submitted,
        cancelled_merge_job,
        submit_script: layout.submit_script(),
        merge_script: layout.merge_script(),
    })
}

/// `PATH.SUFFIX` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "index".into());
    path.with_file_name(format!("{name}.{suffix}"))
}
