//! Shared pieces of the benchmarks: where things are, timing, the peer's Python.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the repository")
        .to_path_buf()
}

/// The reference Python environment (`.venv`, made by `scripts/setup.sh --test-tools`).
pub fn reference_python() -> anyhow::Result<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh --test-tools`",
        python.display()
    );
    Ok(python)
}

/// Runs `work` once to warm up, then repeatedly for at least `budget` (and at least
/// `min_runs` times); returns the fastest run. On a shared machine other load only ever
/// slows a run down, so the fastest is the least noisy estimate of the work's own cost.
pub fn best_time(budget: Duration, min_runs: usize, mut work: impl FnMut()) -> Duration {
    work();
    let mut best = Duration::MAX;
    let mut runs = 0;
    let start = Instant::now();
    while runs < min_runs || start.elapsed() < budget {
        let run = Instant::now();
        work();
        best = best.min(run.elapsed());
        runs += 1;
    }
    best
}

/// The number in environment variable `name`, or `default` when it is unset or not a
/// number.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50 and p99 of `samples` (nearest rank); `samples` must not be empty.
pub fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The calling thread's CPU time so far.
pub fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes into the zeroed timespec it is given.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time);
        time
    };
    Duration::new(
        u64::try_from(time.tv_sec).unwrap_or(0),
        u32::try_from(time.tv_nsec).unwrap_or(0),
    )
}
