//! Decoder-cosine neighbours of every feature of an SAE: `saeidx_compare::nearest`
//! (blocked products, running top-k) against the dense way (one `n × n` product of the
//! normalised decoder with itself, then a top-k per row: what a NumPy `W @ W.T` does),
//! each in a child process of its own, timed and measured by `wait4`'s peak RSS.
//!
//! Sizes: the default SAE's shape (8,192 × 576, random directions) on both sides, and a
//! 65,536-feature random SAE with the blocked product alone (the dense product would need
//! 16 GiB). `cargo bench -p saeidx-benches --bench decoder`.

use std::{
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::bail;
use saeidx_compare::{Decoder, nearest};
use saeidx_testkit::sae::random_decoder;

const K: usize = 10;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, n, d] = &args[..]
        && (mode == "blocked" || mode == "dense")
    {
        return run(mode, n.parse()?, d.parse()?);
    }
    println!("| features × width | way | time | peak RSS | checksum |");
    println!("|---|---|---|---|---|");
    for (n, d, dense) in [(8192, 576, true), (65_536, 576, false)] {
        let mut ways = vec!["blocked"];
        if dense {
            ways.push("dense");
        }
        let mut seen = Vec::new();
        for way in ways {
            let (seconds, kib, checksum) = child(way, n, d)?;
            println!(
                "| {n} × {d} | {way} | {seconds:.2} s | {:.0} MiB | {checksum} |",
                kib as f64 / 1024.0
            );
            seen.push((seconds, kib, checksum));
        }
        if let [blocked, dense] = &seen[..] {
            // Sums in another order may swap neighbours whose cosines tie to the last bit.
            println!(
                "| {n} × {d} | dense / blocked | {:.2}× | {:.1}× | {} |",
                dense.0 / blocked.0,
                dense.1 as f64 / blocked.1 as f64,
                if blocked.2 == dense.2 {
                    "same"
                } else {
                    "differ (rounding ties)"
                }
            );
        }
    }
    Ok(())
}

/// Runs one way in a child process: (seconds, peak RSS in KiB, checksum).
fn child(way: &str, n: usize, d: usize) -> anyhow::Result<(f64, i64, String)> {
    let child = Command::new(std::env::current_exe()?)
        .args([way, &n.to_string(), &d.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let output = child.wait_with_output_no_reap()?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, whose output is read and which is not yet reaped.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{way} {n} {d} failed (status {status})");
    }
    let text = output;
    let mut fields = text.split_whitespace();
    let seconds: f64 = fields.next().unwrap_or("0").parse()?;
    let checksum = fields.next().unwrap_or("").to_string();
    Ok((seconds, usage.ru_maxrss, checksum))
}

/// Reads a child's stdout to the end without waiting for (reaping) it.
trait ReadAll {
    fn wait_with_output_no_reap(self) -> std::io::Result<String>;
}

impl ReadAll for std::process::Child {
    fn wait_with_output_no_reap(mut self) -> std::io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut out) = self.stdout.take() {
            out.read_to_string(&mut text)?;
        }
        // `self` is dropped without `wait`: the caller reaps it with `wait4`.
        Ok(text)
    }
}

/// The child: builds the decoder, times one way, prints seconds and a checksum of the
/// neighbours (their ids), so both ways can be checked to agree.
fn run(mode: &str, n: usize, d: usize) -> anyhow::Result<()> {
    let decoder = Decoder::from_rows(random_decoder(n, d, 42), n, d)?;
    let start = Instant::now();
    let neighbours: Vec<Vec<u32>> = if mode == "blocked" {
        let all: Vec<u32> = (0..n as u32).collect();
        nearest(&decoder, &all, &decoder, K, true)
            .into_iter()
            .map(|row| row.into_iter().map(|x| x.feature).collect())
            .collect()
    } else {
        dense(&decoder)
    };
    let seconds = start.elapsed().as_secs_f64();
    let checksum = neighbours.iter().flatten().fold(0u64, |h, &f| {
        h.wrapping_mul(1_000_003).wrapping_add(u64::from(f))
    });
    println!("{seconds} {checksum:x}");
    Ok(())
}

/// The dense way: the whole `n × n` cosine matrix, then each row's top-k.
fn dense(decoder: &Decoder) -> Vec<Vec<u32>> {
    let (n, d) = (decoder.d_sae(), decoder.d_in());
    let rows = decoder.rows();
    let mut product = vec![0.0f32; n * n];
    // SAFETY: `rows` is n × d (row stride d), read as itself and as its transpose
    // (row stride 1, column stride d); `product` is n × n (row stride n); all in bounds.
    unsafe {
        matrixmultiply::sgemm(
            n,
            d,
            n,
            1.0,
            rows.as_ptr(),
            d as isize,
            1,
            rows.as_ptr(),
            1,
            d as isize,
            0.0,
            product.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    product
        .chunks_exact(n)
        .enumerate()
        .map(|(q, row)| {
            let mut order: Vec<u32> = (0..n as u32).filter(|&f| f as usize != q).collect();
            let stronger =
                |x: &u32, y: &u32| row[*y as usize].total_cmp(&row[*x as usize]).then(x.cmp(y));
            order.select_nth_unstable_by(K, stronger);
            order.truncate(K);
            order.sort_by(stronger);
            order
        })
        .collect()
}
