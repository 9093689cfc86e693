//! `saeidx cluster slurm` on a real Slurm: a single-node cluster (Debian's slurm-wlm and
//! munge) started on loopback by `scripts/slurm-local.sh`, the tiny model's job in 3
//! shards as an array job, one task cancelled mid-way, the same command resubmitting only
//! that shard (which resumes) and a new merge that publishes the shards as segments,
//! answering exactly as a single-process run; compacted, the one segment is
//! byte-identical to the single run's index.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use saeidx_query::SegmentedIndex;
use saeidx_tests::{
    asset_paths,
    job_fixture::{Setup, assert_same_index, saeidx_ok},
    repo_root,
    segment_answers::{live_ids, same_answers},
};
use serde_json::Value;

/// A running single-node Slurm; stopped (its jobs cancelled) when dropped, with its logs
/// printed first if the test is failing.
struct LocalSlurm {
    state: tempfile::TempDir,
    /// Folders whose `*.log` files are worth printing on failure.
    log_dirs: Vec<PathBuf>,
}

impl LocalSlurm {
    fn start() -> Self {
        let state = tempfile::Builder::new()
            .prefix("saeidx-slurm-")
            .tempdir()
            .unwrap();
        let slurm = Self {
            log_dirs: vec![state.path().join("log")],
            state,
        };
        let output = slurm.script("start");
        assert!(
            output.status.success(),
            "could not start a local Slurm: {}\n(install slurm-wlm and munge with `bash scripts/setup.sh --test-tools`)",
            String::from_utf8_lossy(&output.stderr)
        );
        slurm
    }

    fn script(&self, action: &str) -> std::process::Output {
        Command::new("bash")
            .arg(repo_root().join("scripts/slurm-local.sh"))
            .arg(action)
            .arg(self.state.path())
            .output()
            .unwrap()
    }

    fn conf(&self) -> PathBuf {
        self.state.path().join("slurm.conf")
    }

    /// Runs a Slurm client command against this cluster and returns its stdout.
    fn client(&self, tool: &str, args: &[&str]) -> String {
        let output = Command::new(tool)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `FIELD` of `scontrol show job -o ID` for each job (or array task) it lists.
    fn job_field(&self, id: &str, field: &str) -> Vec<String> {
        let prefix = format!("{field}=");
        self.client("scontrol", &["show", "job", "-o", id])
            .lines()
            .filter_map(|line| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(&prefix))
                    .map(str::to_string)
            })
            .collect()
    }

    /// The job's (or array's) tasks still queued or running.
    fn queued(&self, id: &str) -> Vec<String> {
        self.client("squeue", &["-h", "-j", id, "-o", "%i %T"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every `*.log` of the log folders, for a failing test's output.
    fn logs(&self) -> String {
        let mut text = String::new();
        for dir in &self.log_dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let content = fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = content.lines().rev().take(40).collect();
                text.push_str(&format!("==> {} <==\n", entry.path().display()));
                for line in tail.into_iter().rev() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }
}

impl Drop for LocalSlurm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Slurm and job logs:\n{}", self.logs());
        }
        let output = self.script("stop");
        if !output.status.success() {
            eprintln!(
                "stopping the local Slurm failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Waits up to `limit` for `ready`, polling every `every`.
fn wait_until(what: &str, limit: Duration, every: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(every);
    }
}

/// `saeidx cluster slurm JOB --shards 3 --output OUTPUT --submit --json` against `slurm`.
fn try_submit(
    slurm: &LocalSlurm,
    setup: &Setup,
    job: &Path,
    output: &Path,
) -> std::process::Output {
    Command::new(saeidx_tests::saeidx_binary())
        .args(["cluster", "slurm"])
        .arg(job)
        .args([
            "--shards",
            "3",
            "--cpus-per-task",
            "1",
            "--submit",
            "--json",
        ])
        .arg("--output")
        .arg(output)
        .current_dir(setup.path())
        .env("SLURM_CONF", slurm.conf())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

/// [`try_submit`], which must succeed; its JSON.
fn submit(slurm: &LocalSlurm, setup: &Setup, job: &Path, output: &Path) -> Value {
    let result = try_submit(slurm, setup, job, output);
    assert!(
        result.status.success(),
        "saeidx cluster slurm failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).unwrap()
}

/// A job over the first 24 addresses of the default corpus, one part each (8 per shard),
/// so that a shard runs long enough (seconds) to be cancelled between parts.
fn write_job(setup: &Setup) -> PathBuf {
    let job = format!(
        r#"output = "out/single"
hook = "blocks.1.hook_resid_post"

[model]
source = "model"

[sae]
path = "sae"
allow_mismatch = true

[corpus]
sources = [{{ path = "{}" }}]

[run]
max_documents = 24
part_bytes = 4000
window_length = 64
window_overlap = 8
batch_tokens = 512
"#,
        asset_paths().corpus().display()
    );
    let path = setup.path().join("slurm.toml");
    fs::write(&path, job).unwrap();
    path
}

fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
        .to_string()
}

#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
#[test]
fn slurm_array_job_resubmits_a_cancelled_shard_and_merges_the_single_run_index() {
    let setup = Setup::create();
    let job = write_job(&setup);
    saeidx_ok(&["run", job.to_str().unwrap(), "--json"], setup.path());
    let mut slurm = LocalSlurm::start();
    let output = setup.path().join("out/cluster");
    slurm
        .log_dirs
        .push(setup.path().join("out/cluster.slurm/logs"));

    let first = submit(&slurm, &setup, &job, &output);
    assert_eq!(first["unfinished_shards"], serde_json::json!([0, 1, 2]));
    assert_eq!(first["submitted"]["array"], "0-2");
    let array = string(&first["submitted"]["shards_job"]);
    let merge = string(&first["submitted"]["merge_job"]);
    // While they run, the command refuses to submit again.
    let busy = try_submit(&slurm, &setup, &job, &output);
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert_eq!(busy.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("still queued or running"), "{stderr}");

    // Cancel shard 1 once it has recorded a part, before it finishes.
    let shards = setup.path().join("out/cluster.shards");
    let recorded = || {
        fs::read_dir(shards.join(".1-of-3.partial/parts"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_until(
        "shard 1 to record a part",
        Duration::from_secs(120),
        Duration::from_millis(5),
        || recorded() > 0 || shards.join("1-of-3").exists(),
    );
    slurm.client("scancel", &[&format!("{array}_1")]);
    wait_until(
        "the shard tasks to end",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || slurm.queued(&array).is_empty(),
    );
    assert!(
        !shards.join("1-of-3").exists(),
        "shard 1 finished before it was cancelled: the run is too fast to interrupt"
    );
    let parts_before_resume = recorded();
    assert!(parts_before_resume > 0);
    let states = slurm.job_field(&array, "JobState");
    let tasks = slurm.job_field(&array, "ArrayTaskId");
    let state_of = |task: &str| &states[tasks.iter().position(|t| t == task).unwrap()];
    assert_eq!(state_of("1"), "CANCELLED", "{tasks:?} {states:?}");
    assert_eq!(
        (state_of("0"), state_of("2")),
        (&"COMPLETED".to_string(), &"COMPLETED".to_string())
    );
    // The merge now waits on a dependency that can never be met.
    wait_until(
        "the merge job to give up its dependency",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || slurm.job_field(&merge, "Reason") == ["DependencyNeverSatisfied"],
    );

    // The same command resubmits only shard 1 (which resumes) and a new merge.
    let second = submit(&slurm, &setup, &job, &output);
    assert_eq!(second["finished_shards"], serde_json::json!([0, 2]));
    assert_eq!(second["unfinished_shards"], serde_json::json!([1]));
    assert_eq!(second["resumable_parts"]["1"], parts_before_resume);
    assert_eq!(second["submitted"]["array"], "1");
    assert_eq!(second["cancelled_merge_job"], merge.as_str());
    let array = string(&second["submitted"]["shards_job"]);
    let merge = string(&second["submitted"]["merge_job"]);
    wait_until(
        "the new merge job to end",
        Duration::from_secs(180),
        Duration::from_millis(200),
        || slurm.queued(&merge).is_empty() && slurm.queued(&array).is_empty(),
    );
    assert_eq!(slurm.job_field(&merge, "JobState"), ["COMPLETED"]);
    let log = fs::read_to_string(
        setup
            .path()
            .join(format!("out/cluster.slurm/logs/shard-1-job-{array}.log")),
    )
    .unwrap();
    // "... tokens/s; C parts computed, R resumed)": it resumed from the recorded parts
    // and computed the rest of the shard (8 of the 24 parts).
    let (computed, resumed) = log
        .split_once("tokens/s; ")
        .and_then(|(_, rest)| rest.split_once(" parts computed, "))
        .and_then(|(computed, rest)| {
            Some((computed.parse::<usize>().ok()?, rest.split_once(' ')?.0))
        })
        .unwrap_or_else(|| panic!("no run summary in the resubmitted shard's log: {log}"));
    assert_eq!(resumed, parts_before_resume.to_string(), "{log}");
    assert_eq!(computed + parts_before_resume, 8, "{log}");

    // The shards are the index's segments, answering as the single run.
    let single = setup.path().join("out/single");
    let reference = SegmentedIndex::open(&single).unwrap();
    let ids = live_ids(&reference);
    {
        let sharded = SegmentedIndex::open(&output).unwrap();
        assert_eq!(sharded.segments().count(), 3);
        same_answers(&sharded, &reference, &ids);
    }
    saeidx_ok(
        &["verify", output.to_str().unwrap(), "--json"],
        setup.path(),
    );
    // Compacted: one segment, file for file the single run's index.
    let compacted = saeidx_ok(
        &["compact", output.to_str().unwrap(), "--json"],
        setup.path(),
    );
    let into = string(&compacted["merges"][0]["into"]);
    assert_same_index(&single, &output.join("segments").join(into));
    same_answers(&SegmentedIndex::open(&output).unwrap(), &reference, &ids);

    // Once merged, the command submits nothing.
    let third = submit(&slurm, &setup, &job, &output);
    assert_eq!(third["merged"], true);
    assert!(third["submitted"].is_null());
    assert_eq!(slurm.client("squeue", &["-h"]).trim(), "");

    // Without Slurm on PATH the scripts are still written, and the error says so.
    let missing = Command::new(saeidx_tests::saeidx_binary())
        .args(["cluster", "slurm"])
        .arg(&job)
        .args(["--shards", "2", "--submit", "--output"])
        .arg(setup.path().join("out/elsewhere"))
        .current_dir(setup.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sbatch is not on PATH"), "{stderr}");
    assert!(
        setup
            .path()
            .join("out/elsewhere.slurm/shards.sbatch")
            .is_file()
    );
}
