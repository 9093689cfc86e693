#!/usr/bin/env bash
# README command (b): set up (with the Python reference tools), then every check CI
# runs: formatting, lints, and all tests (unit, integration, doc, Python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --test-tools
# Tests use the default assets that set-up placed in the Hugging Face cache; they must
# never reach for the network.
export HF_HUB_OFFLINE=1
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# No crate declares a dependency its code does not use.
.tools/bin/cargo-machete
# The end-to-end tests run the saeidx binary itself.
cargo build --release -p saeidx-cli -p saeidx-cli-model
# MLX's CPU backend compiles fused kernels on first use into a cache every process shares
# (/tmp/mlx), and a process can load a library another one is still writing ("file too
# short") when both compile the same kernel at once. Compile the model's kernels once
# before tests run in parallel.
./target/release/saeidx activations --hook blocks.15.hook_resid_post --text 'warm-up' >/dev/null
# The Python package: its wheel built with maturin, tested with pytest in a venv. Before
# the Rust tests, which ask the installed package too (tests/front_ends.rs).
bash scripts/python-test.sh
# The model families' fidelity test (12 s) compiles the GELU kernels of GPT-2, GPT-NeoX
# and Gemma, in Rust and in mlx-lm, that later tests share; run it alone first.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release -p saeidx-tests --test families_reference
else
  cargo test --release -p saeidx-tests --test families_reference
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast --lib --bins --tests
fi
cargo test --release --workspace --doc
