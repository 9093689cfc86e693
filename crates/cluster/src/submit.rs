//! Submitting with `sbatch`, and finding what an earlier submission left in the queue.

use std::{fs, path::Path, process::Command};

use saeidx_format::atomic;

use crate::{Layout, SlurmError, Submission, progress::array_spec};

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
pub(crate) fn submit(
    layout: &Layout,
    unfinished: &[u32],
) -> Result<(Submission, Option<String>), SlurmError> {
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
