//! The scripts, the array syntax, refusals and progress, without Slurm.

use std::{collections::BTreeMap, fs, path::Path, process::Command};

use crate::{Layout, SbatchOptions, SlurmRequest, array_spec, progress, scripts, sibling};

fn layout(dir: &Path, shards: u32) -> Layout {
    let output = dir.join("out/index");
    Layout {
        job: dir.join("job.toml"),
        dir: sibling(&output, "slurm"),
        output,
        shards,
    }
}

fn request(shards: u32, sbatch: SbatchOptions) -> SlurmRequest {
    SlurmRequest {
        job: "job.toml".into(),
        shards,
        output: None,
        sbatch,
        saeidx: "/opt/saeidx".into(),
        workdir: "/work".into(),
        submit: false,
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
    assert_eq!(scripts::shell_quote("/a b/it's"), r"'/a b/it'\''s'");
}

#[test]
fn scripts_run_the_shards_and_the_merge() {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path(), 4);
    let sbatch = SbatchOptions {
        partition: Some("gpu".into()),
        time: Some("01:00:00".into()),
        cpus_per_task: Some(8),
        mem: None,
        shard_args: vec!["--gres=gpu:1".into()],
        merge_args: vec!["--partition=cpu".into()],
    };
    scripts::write(&layout, &request(4, sbatch)).unwrap();
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
        "exec '/opt/saeidx' merge '{}'\n",
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
    let spaced_time = SbatchOptions {
        time: Some("1 h".into()),
        ..SbatchOptions::default()
    };
    let error = scripts::write(&layout(dir.path(), 2), &request(2, spaced_time)).unwrap_err();
    assert!(error.to_string().contains("--time \"1 h\""), "{error}");
    let spaced = dir.path().join("my indexes");
    let error =
        scripts::write(&layout(&spaced, 2), &request(2, SbatchOptions::default())).unwrap_err();
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
    let found = progress::of(&layout.output, 3).unwrap();
    assert!(!found.merged && found.finished.is_empty());
    assert_eq!(found.unfinished, BTreeMap::from([(0, 0), (1, 2), (2, 0)]));
}
