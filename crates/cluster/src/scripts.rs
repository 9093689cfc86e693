//! The `#SBATCH` scripts: the shards' array job, the merge, and a submit script.

use std::{fs, path::Path};

use saeidx_format::atomic;

use crate::{Layout, SlurmError, SlurmRequest};

/// Quotes a value for a POSIX shell.
pub(crate) fn shell_quote(value: &str) -> String {
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
    request: &SlurmRequest,
    extra: &[String],
) -> Result<String, SlurmError> {
    let args = &request.sbatch;
    let workdir = &request.workdir;
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
pub(crate) fn write(layout: &Layout, request: &SlurmRequest) -> Result<(), SlurmError> {
    let shard_directives = directives(layout, request, &request.sbatch.shard_args)?;
    let merge_directives = directives(layout, request, &request.sbatch.merge_args)?;
    let binary = &request.saeidx;
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
         # Written by `saeidx cluster slurm`: publishes the {n} shards as the segments of the\n\
         # index (hard links: no data copied, nothing rebuilt; submit it with\n\
         # --dependency=afterok:<shards job>). `saeidx compact` merges them later if wanted.\n\
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
    fs::create_dir_all(&logs).map_err(|source| SlurmError::Io {
        path: logs.clone(),
        source,
    })?;
    atomic::write_file(&layout.shards_script(), shards.as_bytes())?;
    atomic::write_file(&layout.merge_script(), merge.as_bytes())?;
    atomic::write_file(&layout.submit_script(), submit.as_bytes())?;
    Ok(())
}
